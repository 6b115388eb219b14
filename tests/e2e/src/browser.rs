//! A real Chromium (Debian's `chromium`, driven through `chromedriver` over WebDriver) for the
//! page tests: a phone or a projector screen, with or without JavaScript, in a language, plus
//! screenshots under `target/screenshots/` and axe-core's WCAG checks.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{Context, bail};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::PATIENCE;

/// The screen a page is seen on.
#[derive(Debug, Clone, Copy)]
pub enum Screen {
    /// A small phone: 360 x 640 CSS pixels.
    Phone,
    /// A hall's projector: 1920 x 1080.
    Projector,
}

/// One browser, with a profile (cookies) of its own.
pub struct Browser {
    driver: Child,
    pub client: Client,
    base: String,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Where screenshots go: `target/screenshots/` of the workspace.
pub fn screenshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/screenshots")
}

impl Browser {
    /// Opens a browser on `base` (`http://127.0.0.1:port`) that asks for pages in `lang`.
    pub async fn open(
        base: &str,
        screen: Screen,
        javascript: bool,
        lang: &str,
    ) -> anyhow::Result<Self> {
        // chromedriver is spoken to over plain HTTP, but fantoccini's client needs a provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let port = free_port()?;
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting chromedriver: install Debian's chromium and chromium-driver (.ci/run does)")?;
        let mut args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            format!("--lang={lang}"),
        ];
        let mut options = json!({
            "binary": "/usr/bin/chromium",
            "prefs": { "intl.accept_languages": lang },
        });
        match screen {
            Screen::Phone => {
                options["mobileEmulation"] = json!({
                    "deviceMetrics": { "width": 360, "height": 640, "pixelRatio": 2.0, "touch": true },
                });
            }
            Screen::Projector => args.push("--window-size=1920,1080".to_owned()),
        }
        if !javascript {
            options["prefs"]["profile.managed_default_content_settings.javascript"] = json!(2);
        }
        options["args"] = json!(args);
        let mut capabilities = serde_json::Map::new();
        // axe-core on a long page takes a while on a busy two-core machine.
        capabilities.insert("timeouts".to_owned(), json!({ "script": 120_000 }));
        // podiumd under TLS in a test shows a certificate of a CA made for that test.
        capabilities.insert("acceptInsecureCerts".to_owned(), json!(true));
        capabilities.insert("goog:chromeOptions".to_owned(), options);
        let url = format!("http://127.0.0.1:{port}");
        let deadline = tokio::time::Instant::now() + PATIENCE;
        let client = loop {
            match ClientBuilder::rustls()?
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                Err(error) if tokio::time::Instant::now() > deadline => {
                    bail!("chromedriver on {url} did not start a session: {error}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        Ok(Self {
            driver,
            client,
            base: base.to_owned(),
        })
    }

    pub async fn goto(&self, path: &str) -> anyhow::Result<()> {
        self.goto_url(&format!("{}{path}", self.base)).await
    }

    /// Navigates to `url` whole, on another server than the one the browser was opened on.
    pub async fn goto_url(&self, url: &str) -> anyhow::Result<()> {
        // On a loaded machine chromedriver has once reported a navigation as failed ("no such
        // element: html") while the page was still loading (CI run 18): it is asked once more,
        // and a second failure is the test's.
        if let Err(first) = self.client.goto(url).await {
            eprintln!("navigation to {url} failed ({first}); trying once more");
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            self.client.goto(url).await?;
        }
        Ok(())
    }

    /// The path (and query) of the page shown now.
    pub async fn path(&self) -> anyhow::Result<String> {
        let url = self.client.current_url().await?;
        Ok(match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        })
    }

    pub async fn fill(&self, css: &str, text: &str) -> anyhow::Result<()> {
        let field = self
            .client
            .find(Locator::Css(css))
            .await
            .with_context(|| css.to_owned())?;
        field.clear().await?;
        field.send_keys(text).await?;
        Ok(())
    }

    pub async fn click(&self, css: &str) -> anyhow::Result<()> {
        let found = self.client.find(Locator::Css(css)).await;
        let element = match found {
            Ok(element) => element,
            Err(error) => {
                let page = self.text("main").await.unwrap_or_default();
                let path = self.path().await.unwrap_or_default();
                bail!("{css}: {error}; {path}: {page}");
            }
        };
        element.click().await?;
        Ok(())
    }

    /// Clicks a form's button and waits for the page that answers it: until the document is a
    /// new one, so the next look is never at the page the form was on.
    pub async fn submit(&self, css: &str) -> anyhow::Result<()> {
        // The page may itself still be arriving (a link's redirect that sets the session
        // cookie): chromedriver finds no document for a moment, so look again until it has one.
        let deadline = tokio::time::Instant::now() + PATIENCE;
        let before = loop {
            match self.client.find(Locator::Css("html")).await {
                Ok(html) => break html.element_id(),
                Err(error) if tokio::time::Instant::now() > deadline => return Err(error.into()),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        self.click(css).await?;
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Ok(now) = self.client.find(Locator::Css("html")).await
                && now.element_id() != before
            {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("no new page {PATIENCE:?} after submitting {css}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Presses `key` (a character or a [`fantoccini::key::Key`]) on whatever has the focus, as
    /// a keyboard would.
    pub async fn press(&self, key: impl Into<char>) -> anyhow::Result<()> {
        let focused = self.client.active_element().await?;
        focused.send_keys(&key.into().to_string()).await?;
        Ok(())
    }

    /// Presses Tab until the focused element matches `css`; fails after `limit` presses.
    pub async fn tab_to(&self, css: &str, limit: usize) -> anyhow::Result<()> {
        for _ in 0..limit {
            if self.focused_matches(css).await? {
                return Ok(());
            }
            self.press(fantoccini::key::Key::Tab).await?;
        }
        bail!("{limit} presses of Tab never reached {css}")
    }

    /// Whether the focused element matches `css`.
    pub async fn focused_matches(&self, css: &str) -> anyhow::Result<bool> {
        let matches = self
            .on_selector(
                "return document.activeElement !== null && document.activeElement.matches(arguments[0]);",
                css,
            )
            .await?;
        Ok(matches.as_bool().unwrap_or(false))
    }

    /// What `script` returns, given the selector `css` as `arguments[0]`.
    async fn on_selector(&self, script: &str, css: &str) -> anyhow::Result<serde_json::Value> {
        Ok(self.client.execute(script, vec![json!(css)]).await?)
    }

    /// The visible text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> anyhow::Result<String> {
        Ok(self
            .client
            .find(Locator::Css(css))
            .await
            .with_context(|| css.to_owned())?
            .text()
            .await?)
    }

    /// The text of the first element matching `css`, whether shown or not: what a screen
    /// reader is given by a visually hidden line.
    pub async fn text_content(&self, css: &str) -> anyhow::Result<String> {
        let found = self
            .on_selector(
                "return document.querySelector(arguments[0])?.textContent ?? null;",
                css,
            )
            .await?;
        found
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no {css}"))
    }

    /// Waits until an element matches `css`; fails after [`PATIENCE`].
    pub async fn wait_for(&self, css: &str) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while self.client.find(Locator::Css(css)).await.is_err() {
            if tokio::time::Instant::now() > deadline {
                bail!("nothing matches {css} after {PATIENCE:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Waits until the first element matching `css` shows `wanted`; fails after [`PATIENCE`].
    pub async fn wait_for_text(&self, css: &str, wanted: &str) -> anyhow::Result<()> {
        self.wait_until_reads(css, wanted, false).await
    }

    /// Waits until the first element matching `css` holds `wanted`, shown or visually
    /// hidden; fails after [`PATIENCE`].
    pub async fn wait_for_text_content(&self, css: &str, wanted: &str) -> anyhow::Result<()> {
        self.wait_until_reads(css, wanted, true).await
    }

    async fn wait_until_reads(&self, css: &str, wanted: &str, hidden: bool) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let shown = if hidden {
                self.text_content(css).await
            } else {
                self.text(css).await
            }
            .unwrap_or_default();
            if shown.contains(wanted) {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                let page = self.text("main").await.unwrap_or_default();
                let path = self.path().await.unwrap_or_default();
                bail!("{css} shows {shown:?}, not {wanted:?}, after {PATIENCE:?}; {path}: {page}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Writes a PNG of the page as `target/screenshots/{name}.png`.
    pub async fn screenshot(&self, name: &str) -> anyhow::Result<()> {
        let png = self.client.screenshot().await?;
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(format!("{name}.png")), png)?;
        Ok(())
    }

    /// The controls a thumb would tap on the page shown now (buttons, selects, and the label of
    /// each radio and checkbox, which is what takes the tap beside a small box) that are less
    /// than 44 CSS pixels high or wide, as "text: width x height" lines. Hidden ones are skipped.
    pub async fn small_tap_targets(&self) -> anyhow::Result<Vec<String>> {
        let found = self
            .client
            .execute(
                "const small = [];
                 for (const el of document.querySelectorAll(
                     'button, .button, select, input[type=radio], input[type=checkbox]')) {
                   const target = (el.type === 'radio' || el.type === 'checkbox')
                     ? (el.labels && el.labels[0]) || el : el;
                   const r = target.getBoundingClientRect();
                   if (r.width === 0 || r.height === 0) continue;
                   if (r.width < 43.5 || r.height < 43.5) {
                     small.push((target.textContent || el.id).trim().slice(0, 40) + ': '
                       + r.width.toFixed(0) + ' x ' + r.height.toFixed(0));
                   }
                 }
                 return small;",
                vec![],
            )
            .await?;
        Ok(serde_json::from_value(found)?)
    }

    /// axe-core's violations of WCAG 2.0, 2.1 and 2.2, levels A and AA, on the page shown now, as
    /// "rule: elements" lines. axe-core comes from npm, pinned in `tests/e2e/web/`.
    pub async fn accessibility_violations(&self) -> anyhow::Result<Vec<String>> {
        let path =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("web/node_modules/axe-core/axe.min.js");
        let axe = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "{}: run `npm ci` in tests/e2e/web (.ci/run does)",
                path.display()
            )
        })?;
        self.client.execute(&axe, vec![]).await?;
        let found = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, { runOnly: { type: 'tag',
                     values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa'] } })
                   .then(r => done(r.violations.map(v => v.id + ': ' + v.help + ' at '
                       + v.nodes.map(n => n.target.join(' ')).join(', '))))
                   .catch(e => done(['axe failed: ' + e]));",
                vec![],
            )
            .await?;
        Ok(serde_json::from_value(found)?)
    }

    pub async fn close(mut self) -> anyhow::Result<()> {
        let client = self.client.clone();
        client.close().await?;
        let _ = self.driver.kill();
        Ok(())
    }
}
