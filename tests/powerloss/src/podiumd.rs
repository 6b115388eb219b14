//! A real podiumd process on a data directory: started, and killed with SIGKILL. Its stderr
//! goes to a file outside the file system under test, so that when it refuses to start the
//! test can read why.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use nix::{sys::signal::Signal, unistd::Pid};

/// How long podiumd gets to exit after SIGKILL.
const PATIENCE: Duration = Duration::from_secs(20);

/// A running podiumd.
pub struct Podiumd {
    child: Child,
    pub addr: String,
}

/// What became of an attempt to start podiumd.
pub enum Started {
    Running(Podiumd),
    /// It exited before listening; its stderr.
    Refused(String),
}

impl Podiumd {
    /// Starts `binary` on `data_dir`, on a free loopback port, with the rate limits lifted (the
    /// storm's attendees vote far faster than people). Waits for `podiumd listening on`.
    pub fn start(binary: &Path, data_dir: &Path, stderr: &Path) -> anyhow::Result<Started> {
        let log = std::fs::File::create(stderr)
            .with_context(|| format!("cannot create {}", stderr.display()))?;
        let mut child = Command::new(binary)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--rate-ballots", "4000000000"])
            .args(["--rate-questions", "4000000000"])
            .args(["--rate-joins", "4000000000"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot run {}", binary.display()))?;
        let stdout = child.stdout.take().context("podiumd has no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        match line.trim().strip_prefix("podiumd listening on ") {
            Some(addr) => Ok(Started::Running(Self {
                addr: addr.to_owned(),
                child,
            })),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                let why = std::fs::read_to_string(stderr).unwrap_or_default();
                Ok(Started::Refused(why))
            }
        }
    }

    /// SIGKILL, then waits for the process to be gone: nothing it had not written survives
    /// in it, and nothing it had written is synced by it any more.
    pub fn kill(mut self) -> anyhow::Result<()> {
        nix::sys::signal::kill(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL)?;
        let deadline = Instant::now() + PATIENCE;
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                bail!("podiumd did not exit within {PATIENCE:?} of SIGKILL");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }
}

impl Drop for Podiumd {
    /// A test that stops on an error leaves no podiumd behind.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Where podiumd's stderr goes for one start.
pub fn stderr_path(work: &Path, start: u32) -> PathBuf {
    work.join(format!("podiumd-{start}.stderr"))
}
