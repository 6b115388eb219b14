//! podiumd's `/metrics` in tests: a scrape over plain HTTP, one sample's value, and Prometheus'
//! own linter (`promtool check metrics`, from Debian's `prometheus` package) on the text.

use std::{
    io::Write,
    process::{Command, Stdio},
};

use anyhow::{Context, bail};

use crate::{Podiumd, http};

/// The text of `GET /metrics`.
pub async fn scrape(server: &Podiumd) -> anyhow::Result<String> {
    let reply = http::request(&server.addr, "GET", "/metrics", &[], "").await?;
    if reply.status != 200 {
        bail!("/metrics answered {}: {}", reply.status, reply.body);
    }
    Ok(reply.body)
}

/// The value of the sample `series` (`name{label="value",...}` exactly as rendered, or a bare
/// name), 0 when it is absent: a counter not yet incremented is not rendered.
pub fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}

/// Runs `promtool check metrics` on `text`; its complaints are the error.
pub fn promtool_check(text: &str) -> anyhow::Result<()> {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run promtool (apt-get install prometheus)")?;
    child
        .stdin
        .take()
        .context("promtool's stdin")?
        .write_all(text.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "promtool check metrics: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Every metric name the Grafana dashboard in `deploy/grafana/podium.json` queries, with the
/// `_bucket`, `_sum` and `_count` of histograms taken back to the histogram's name.
pub fn dashboard_metrics() -> anyhow::Result<Vec<String>> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/grafana/podium.json");
    let dashboard: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path)?)
        .with_context(|| format!("{} is not JSON", path.display()))?;
    let mut names = Vec::new();
    let panels = dashboard["panels"].as_array().context("no panels")?;
    for target in panels
        .iter()
        .filter_map(|p| p["targets"].as_array())
        .flatten()
    {
        let expr = target["expr"].as_str().context("a target without expr")?;
        for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("podium_") || word.starts_with("process_") {
                let name = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| word.strip_suffix(suffix))
                    .unwrap_or(word);
                names.push(name.to_owned());
            }
        }
    }
    names.sort();
    names.dedup();
    Ok(names)
}
