//! A real OBS Studio for the bridge's tests: Debian's `obs-studio` under its own `Xvfb`, with a
//! fresh configuration for each test (the recipe of `shared/obs-under-xvfb.md`): a 320x240
//! canvas, the websocket on a free loopback port with a password, and four scenes (Speaker,
//! Backup, Recording with the media input "Talk", Slate). Test media comes from `ffmpeg`.

use std::{
    fs,
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::OnceLock,
    time::Duration,
};

use anyhow::{Context, bail};
use nix::{sys::signal::Signal, unistd::Pid};
use podium_bridge::Obs;

pub const PASSWORD: &str = "podium-test";
pub const MEDIA_INPUT: &str = "Talk";

/// A running OBS on its own X display; stopped (SIGINT, then SIGKILL) on drop.
pub struct ObsStudio {
    home: tempfile::TempDir,
    xvfb: Child,
    display: String,
    obs: Option<Child>,
    pub port: u16,
}

impl ObsStudio {
    pub async fn start() -> anyhow::Result<Self> {
        let home = tempfile::tempdir()?;
        // Xvfb picks a free display and writes its number to stdout.
        let mut xvfb = Command::new("Xvfb")
            .args([
                "-displayfd",
                "1",
                "-screen",
                "0",
                "640x480x24",
                "-nolisten",
                "tcp",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start Xvfb (apt-get install xvfb)")?;
        let mut line = String::new();
        BufReader::new(xvfb.stdout.take().context("Xvfb stdout")?).read_line(&mut line)?;
        let display = format!(":{}", line.trim());
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        write_config(home.path(), port)?;
        let mut obs = Self {
            home,
            xvfb,
            display,
            obs: None,
            port,
        };
        obs.launch().await?;
        Ok(obs)
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts OBS and waits until its websocket answers (the scenes are loaded by then).
    async fn launch(&mut self) -> anyhow::Result<()> {
        let log = fs::File::create(self.home.path().join("obs.log"))?;
        let child = Command::new("obs")
            .args([
                "--multi",
                "--disable-missing-files-check",
                "--collection",
                "Test",
                "--profile",
                "Test",
                "--scene",
                "Speaker",
            ])
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("HOME", self.home.path())
            .env("DISPLAY", &self.display)
            .env("LIBGL_ALWAYS_SOFTWARE", "1")
            .current_dir(self.home.path())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start obs (apt-get install obs-studio)")?;
        self.obs = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if Obs::connect(&self.address(), Some(PASSWORD)).await.is_ok() {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                let log = fs::read_to_string(self.home.path().join("obs.log")).unwrap_or_default();
                bail!("OBS did not answer on its websocket within 60 s; its log:\n{log}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A connection of the test's own, as a person at the OBS machine.
    pub async fn connect(&self) -> anyhow::Result<Obs> {
        Ok(Obs::connect(&self.address(), Some(PASSWORD)).await?)
    }

    /// Kills OBS outright, as a crash would.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.obs.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Starts OBS again on the same configuration and port.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill()?;
        // A killed OBS saved nothing: the same fresh configuration loads again.
        write_config(self.home.path(), self.port)?;
        self.launch().await
    }
}

impl Drop for ObsStudio {
    fn drop(&mut self) {
        if let Some(mut child) = self.obs.take() {
            let _ = nix::sys::signal::kill(Pid::from_raw(child.id() as i32), Signal::SIGINT);
            for _ in 0..50 {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = self.xvfb.kill();
        let _ = self.xvfb.wait();
    }
}

fn write_config(home: &Path, port: u16) -> anyhow::Result<()> {
    let base = home.join(".config/obs-studio");
    fs::create_dir_all(base.join("basic/profiles/Test"))?;
    fs::create_dir_all(base.join("basic/scenes"))?;
    fs::write(
        base.join("global.ini"),
        format!(
            "[General]\nFirstRun=true\nLastVersion=486539266\nConfirmOnExit=false\n\n\
             [Basic]\nProfile=Test\nProfileDir=Test\nSceneCollection=Test\nSceneCollectionFile=Test\n\n\
             [BasicWindow]\nPreviewEnabled=false\n\n\
             [OBSWebSocket]\nFirstLoad=false\nServerEnabled=true\nServerPort={port}\n\
             AlertsEnabled=false\nAuthRequired=true\nServerPassword={PASSWORD}\n"
        ),
    )?;
    fs::write(
        base.join("basic/profiles/Test/basic.ini"),
        "[General]\nName=Test\n\n[Video]\nBaseCX=320\nBaseCY=240\nOutputCX=320\nOutputCY=240\nFPSType=1\nFPSInt=15\n",
    )?;
    let scene = |name: &str, item: &str| {
        format!(
            r#"{{"id":"scene","name":"{name}","settings":{{"id_counter":1,"items":[{{"name":"{item}","id":1,"visible":true,"bounds_type":2,"bounds":{{"x":320,"y":240}}}}]}}}}"#
        )
    };
    let color = |name: &str, argb: u32| {
        format!(
            r#"{{"id":"color_source_v3","name":"{name}","settings":{{"color":{argb},"width":320,"height":240}}}}"#
        )
    };
    let sources = [
        scene("Speaker", "SpeakerBG"),
        scene("Backup", "BackupBG"),
        scene("Recording", MEDIA_INPUT),
        scene("Slate", "SlateBG"),
        color("SpeakerBG", 0xff0000ff),
        color("BackupBG", 0xff00ff00),
        color("SlateBG", 0xffff0000),
        format!(
            r#"{{"id":"ffmpeg_source","name":"{MEDIA_INPUT}","mixers":255,"settings":{{"is_local_file":true,"local_file":"","looping":false,"restart_on_activate":false,"close_when_inactive":false}}}}"#
        ),
    ];
    fs::write(
        base.join("basic/scenes/Test.json"),
        format!(
            r#"{{"name":"Test","current_scene":"Speaker","current_program_scene":"Speaker","current_transition":"Cut",
            "scene_order":[{{"name":"Speaker"}},{{"name":"Backup"}},{{"name":"Recording"}},{{"name":"Slate"}}],
            "sources":[{}],"transitions":[]}}"#,
            sources.join(",")
        ),
    )?;
    Ok(())
}

/// A 60-second 320x240 test pattern with a tone, H.264 and AAC in MP4, made once per run, with
/// a keyframe every 0.2 s: OBS seeks to the keyframe before the target.
pub fn talk_mp4() -> anyhow::Result<PathBuf> {
    static MEDIA: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    MEDIA
        .get_or_init(|| make_talk().map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(|e| anyhow::anyhow!("{e}"))
}

fn make_talk() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("podium-e2e-media-{}", std::process::id()));
    fs::create_dir_all(&dir)?;
    let path = dir.join("talk.mp4");
    ffmpeg(
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=30",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
            "-t",
            "60",
            "-c:v",
            "libx264",
            "-g",
            "6",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
        ],
        &path,
    )?;
    Ok(path)
}

/// Runs `ffmpeg ARGS OUT`, quietly, replacing OUT.
pub fn ffmpeg(args: &[&str], out: &Path) -> anyhow::Result<()> {
    let status = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y"])
        .args(args)
        .arg(out)
        .status()
        .context("cannot run ffmpeg (apt-get install ffmpeg)")?;
    if !status.success() {
        bail!("ffmpeg failed to make {}: {status}", out.display());
    }
    Ok(())
}
