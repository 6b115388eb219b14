//! The harness of podium's end-to-end tests: builds the real `podiumd` and `podium` binaries,
//! starts `podiumd` on an ephemeral loopback port with a temporary data directory, and stops it
//! with the signal a test asks for. Nothing of podium is mocked.

#![forbid(unsafe_code)]

pub mod board;
pub mod browser;
pub mod http;
pub mod metrics;
pub mod obs;
mod show;

pub use show::{
    Attendee, CONFERENCE, NewPoll, OTHER_CONFERENCE, Odc, Show, ShowBuilder, Speaker, Talk,
    add_room, add_speaker, ballot, from_now, join, open_poll, text, ts, unchanged,
};

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::OnceLock,
    time::Duration,
};

use anyhow::{Context, bail};
use nix::{sys::signal::Signal, unistd::Pid};
use podium_client::Client;

/// The directory holding the workspace's binaries for this build profile.
fn bin_dir() -> anyhow::Result<&'static Path> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(|| build_binaries().map_err(|e| format!("{e:#}")))
        .as_deref()
        .map_err(|e| anyhow::anyhow!("{e}"))
}

/// Builds `podiumd` and `podium` with the same cargo and profile as the running test, so the
/// test never runs a stale binary.
fn build_binaries() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/e2e-<hash>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .context("test binary has no target dir")?
        .to_path_buf();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command.args([
        "build",
        "--quiet",
        "-p",
        "podium-server",
        "-p",
        "podium-cli",
        "--bins",
    ]);
    if dir.file_name().is_some_and(|n| n == "release") {
        command.arg("--release");
    }
    let status = command.status().context("cannot run cargo build")?;
    if !status.success() {
        bail!("cargo build of podiumd and podium failed: {status}");
    }
    Ok(dir)
}

/// Path of a workspace binary (`podiumd`, `podium`).
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    Ok(bin_dir()?.join(name))
}

/// A running `podiumd` with its own data directory.
pub struct Podiumd {
    child: Option<Child>,
    pub addr: String,
    pub data_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
    extra_args: Vec<String>,
}

impl Podiumd {
    /// Starts podiumd on 127.0.0.1:0 in a fresh temporary data directory.
    pub fn start() -> anyhow::Result<Self> {
        Self::start_with(&[])
    }

    /// Like [`Podiumd::start`], with extra command-line arguments.
    pub fn start_with(args: &[&str]) -> anyhow::Result<Self> {
        let temp = tempfile::tempdir()?;
        let mut server = Self {
            child: None,
            addr: String::new(),
            data_dir: temp.path().join("data"),
            _temp: Some(temp),
            extra_args: args.iter().map(|s| (*s).to_owned()).collect(),
        };
        server.spawn()?;
        Ok(server)
    }

    /// Starts podiumd with its data in `data_dir` (which the caller owns, e.g. a small file
    /// system mounted for a test), with extra command-line arguments.
    pub fn start_in(data_dir: &Path, args: &[&str]) -> anyhow::Result<Self> {
        let mut server = Self {
            child: None,
            addr: String::new(),
            data_dir: data_dir.to_path_buf(),
            _temp: None,
            extra_args: args.iter().map(|s| (*s).to_owned()).collect(),
        };
        server.spawn()?;
        Ok(server)
    }

    /// Starts the process: on a new ephemeral port the first time, on the same address after a
    /// restart so that connected clients can reconnect.
    fn spawn(&mut self) -> anyhow::Result<()> {
        let listen = if self.addr.is_empty() {
            "127.0.0.1:0".to_owned()
        } else {
            self.addr.clone()
        };
        let mut child = Command::new(binary("podiumd")?)
            .arg("--listen")
            .arg(listen)
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.extra_args)
            // The fixtures' conferences took place in 2024: their attendees may still join
            // (tokens end this long after the last session). A test of the margin passes
            // --attendee-token-margin-hours, which wins over the environment.
            .env("PODIUM_ATTENDEE_TOKEN_MARGIN_HOURS", "876000")
            .env(
                "RUST_LOG",
                std::env::var("PODIUM_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start podiumd")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let addr = line
            .trim()
            .strip_prefix("podiumd listening on ")
            .with_context(|| format!("podiumd did not start: {line:?}"))?
            .to_owned();
        self.addr = addr;
        self.child = Some(child);
        Ok(())
    }

    /// The name this podiumd gives its pages' session cookie (`podium_session_<port>`).
    pub fn session_cookie(&self) -> String {
        http::cookie_name(&self.addr, "podium_session")
    }

    /// The admin token podiumd generated on first start.
    pub fn admin_token(&self) -> anyhow::Result<String> {
        let token = std::fs::read_to_string(self.data_dir.join("admin.token"))?;
        Ok(token.trim().to_owned())
    }

    /// A client with the admin token.
    pub async fn admin(&self) -> anyhow::Result<Client> {
        Ok(Client::connect(&self.addr, Some(self.admin_token()?)).await?)
    }

    /// A client with `token`.
    pub async fn client(&self, token: Option<String>) -> anyhow::Result<Client> {
        Ok(Client::connect(&self.addr, token).await?)
    }

    /// Sends `signal` and waits for the process to exit, without blocking the async runtime:
    /// the test's clients must go on answering the server's GOAWAY while it drains.
    pub async fn stop(&mut self, signal: Signal) -> anyhow::Result<ExitStatus> {
        let mut child = self.child.take().context("podiumd is not running")?;
        nix::sys::signal::kill(Pid::from_raw(child.id() as i32), signal)?;
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if tokio::time::Instant::now() > deadline {
                let _ = child.kill();
                bail!("podiumd did not exit within {PATIENCE:?} of {signal}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops podiumd with SIGTERM and starts it again on the same data directory and address.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        let status = self.stop(Signal::SIGTERM).await?;
        if !status.success() {
            bail!("podiumd exited with {status} on SIGTERM");
        }
        self.spawn()
    }

    /// Starts podiumd again on the same data directory and address after [`Podiumd::stop`].
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            bail!("podiumd is still running");
        }
        self.spawn()
    }

    /// Kills podiumd with SIGKILL and starts it again.
    pub async fn crash_and_restart(&mut self) -> anyhow::Result<()> {
        self.stop(Signal::SIGKILL).await?;
        self.spawn()
    }

    /// Sends `signal` and returns at once: SIGSTOP freezes podiumd, SIGCONT wakes it.
    pub fn signal(&self, signal: Signal) -> anyhow::Result<()> {
        let child = self.child.as_ref().context("podiumd is not running")?;
        self::signal(child, signal)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is still running (it has not exited, by a panic or otherwise).
    pub fn is_running(&mut self) -> anyhow::Result<bool> {
        match self.child.as_mut() {
            Some(child) => Ok(child.try_wait()?.is_none()),
            None => Ok(false),
        }
    }

    /// The process's memory figures from `/proc/<pid>/status`, in bytes.
    pub fn memory(&self) -> anyhow::Result<Memory> {
        let pid = self.pid().context("podiumd is not running")?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let field = |name: &str| -> anyhow::Result<u64> {
            let line = status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .with_context(|| format!("no {name} in /proc/{pid}/status"))?;
            let kib: u64 = line
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse()
                .with_context(|| format!("bad {name} line {line:?}"))?;
            Ok(kib * 1024)
        };
        Ok(Memory {
            rss: field("VmRSS:")?,
            peak: field("VmHWM:")?,
        })
    }
}

impl Drop for Podiumd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Resident memory of a process, in bytes.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    /// VmRSS: resident now.
    pub rss: u64,
    /// VmHWM: the most it was ever resident.
    pub peak: u64,
}

/// The `podium` CLI with `args`, against `server` with `token`, with no standard input and no
/// conference but what `args` name.
fn cli_command(server: &Podiumd, token: &str, args: &[&str]) -> anyhow::Result<Command> {
    let mut command = Command::new(binary("podium")?);
    command
        .args(args)
        .env("PODIUM_ADDR", &server.addr)
        .env("PODIUM_TOKEN", token)
        .env("PODIUM_CONFIG", server.data_dir.join("cli-config.toml"))
        .env_remove("PODIUM_CONFERENCE")
        .stdin(Stdio::null());
    Ok(command)
}

/// Runs the `podium` CLI against `server` with `token`; returns (success, stdout, stderr).
pub fn cli(server: &Podiumd, token: &str, args: &[&str]) -> anyhow::Result<(bool, String, String)> {
    let output = cli_command(server, token, args)?.output()?;
    Ok((
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

/// Starts the `podium` CLI against `server` as a separate process (a speaker agent, a
/// watcher), so that a test can kill or stop it with real signals.
pub fn cli_process(server: &Podiumd, token: &str, args: &[&str]) -> anyhow::Result<Child> {
    Ok(cli_command(server, token, args)?
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?)
}

/// The `podium` CLI running against `server` (a watcher), its standard output read line by
/// line as it prints; killed when dropped.
pub struct CliLines {
    child: Child,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    /// What it wrote to its standard error, for the message of a failed [`CliLines::find`].
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

/// Starts the `podium` CLI against `server` with `token`, reading what it prints.
pub fn cli_lines(server: &Podiumd, token: &str, args: &[&str]) -> anyhow::Result<CliLines> {
    let mut child = cli_command(server, token, args)?
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().context("the CLI's standard output")?;
    let errors = child.stderr.take().context("the CLI's standard error")?;
    let (send, lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if send.send(line).is_err() {
                break;
            }
        }
    });
    let stderr = std::sync::Arc::<std::sync::Mutex<String>>::default();
    let written = stderr.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(errors).lines().map_while(Result::ok) {
            let mut written = written.lock().unwrap_or_else(|e| e.into_inner());
            written.push_str(&line);
            written.push('\n');
        }
    });
    Ok(CliLines {
        child,
        lines,
        stderr,
    })
}

impl CliLines {
    /// The next line that contains `wanted`, waiting up to [`PATIENCE`]; the lines before it
    /// are skipped (the last few are in the error, with the CLI's standard error).
    pub async fn find(&mut self, wanted: &str) -> anyhow::Result<String> {
        let mut skipped = std::collections::VecDeque::new();
        let found = tokio::time::timeout(PATIENCE, async {
            while let Some(line) = self.lines.recv().await {
                if line.contains(wanted) {
                    return Some(line);
                }
                if skipped.len() == 5 {
                    skipped.pop_front();
                }
                skipped.push_back(line);
            }
            None
        })
        .await;
        let stderr = self.stderr.lock().unwrap_or_else(|e| e.into_inner());
        let seen = || format!("last lines {skipped:?}, standard error {stderr:?}");
        match found {
            Ok(Some(line)) => Ok(line),
            Ok(None) => bail!("the CLI ended without a line with {wanted:?}; {}", seen()),
            Err(_) => bail!("no line with {wanted:?} in time; {}", seen()),
        }
    }
}

impl Drop for CliLines {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `signal` to a child process.
pub fn signal(child: &Child, signal: Signal) -> anyhow::Result<()> {
    nix::sys::signal::kill(Pid::from_raw(child.id() as i32), signal)?;
    Ok(())
}

/// How long a test waits for something that should happen at once before it gives up.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// `podiumd restore FILE --data-dir DIR`, as the README writes it: whether it succeeded, its
/// stdout and stderr.
pub fn restore(file: &Path, data_dir: &Path) -> (bool, String, String) {
    let output = Command::new(binary("podiumd").expect("podiumd is built"))
        .arg("restore")
        .arg(file)
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("PODIUM_DATA_DIR")
        .output()
        .expect("podiumd restore runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Every file under `dir`, however deep.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("a readable directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}

/// Whether `bytes` hold `needle` (as UTF-8) anywhere.
pub fn holds(bytes: &[u8], needle: &str) -> bool {
    bytes
        .windows(needle.len().max(1))
        .any(|w| w == needle.as_bytes())
}
