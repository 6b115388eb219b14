//! The podiumd a scenario starts for itself: the binary built next to the load generator, on
//! `127.0.0.1:0`, with a temporary data directory that goes away with it. Its log goes to a file
//! in that directory so that it does not mix with the figures; when it fails to start, the error
//! carries the log.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{Context, anyhow, bail};
use tokio::{
    io::{AsyncBufReadExt, BufReader, Lines},
    process::{Child, ChildStdout, Command},
};

use crate::Podium;

/// How long podiumd may take to say it is listening.
const STARTUP: Duration = Duration::from_secs(30);

/// The `podiumd` binary beside the running executable (`target/<profile>/podiumd`; a test
/// binary lives one level down, in `deps/`).
pub fn beside_current_exe() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the running executable")?;
    let mut dir = exe
        .parent()
        .context("the running executable has no directory")?;
    if dir.ends_with("deps") {
        dir = dir.parent().unwrap_or(dir);
    }
    let podiumd = dir.join(format!("podiumd{}", std::env::consts::EXE_SUFFIX));
    if !podiumd.is_file() {
        bail!(
            "no podiumd beside {}: build it with `cargo build --release -p podium-server -p podium-loadgen`, \
             or measure a running podiumd with --addr and --token",
            exe.display()
        );
    }
    Ok(podiumd)
}

/// A podiumd this process started; killed when dropped.
pub struct LocalPodiumd {
    _child: Child,
    /// Held so that podiumd never writes to a closed pipe.
    _stdout: Lines<BufReader<ChildStdout>>,
    podium: Podium,
    binary: PathBuf,
    dir: PathBuf,
    log_path: PathBuf,
    /// The temporary directory `dir` is in, when this podiumd owns it.
    _data: Option<tempfile::TempDir>,
}

impl LocalPodiumd {
    /// Starts `binary` on 127.0.0.1:0 in a fresh temporary data directory and waits until it
    /// is listening.
    pub async fn start(binary: &Path) -> anyhow::Result<Self> {
        let data = tempfile::Builder::new()
            .prefix("podium-loadgen-")
            .tempdir()
            .context("cannot create a temporary data directory")?;
        let dir = data.path().to_path_buf();
        Self::start_in(binary, &dir, "podiumd.log", Some(data)).await
    }

    /// Starts `binary` on `<dir>/data`, which may hold a log already, logging to `<dir>/<log>`;
    /// `data`, if given, is removed when this is dropped.
    pub async fn start_in(
        binary: &Path,
        dir: &Path,
        log: &str,
        data: Option<tempfile::TempDir>,
    ) -> anyhow::Result<Self> {
        Self::start_with(binary, dir, log, data, &[], None).await
    }

    /// As [`start_in`](Self::start_in), with more flags, and the admin token given to it
    /// (`--admin-token`) instead of the one it makes.
    pub async fn start_with(
        binary: &Path,
        dir: &Path,
        log: &str,
        data: Option<tempfile::TempDir>,
        args: &[String],
        admin_token: Option<&str>,
    ) -> anyhow::Result<Self> {
        let log_path = dir.join(log);
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let mut child = Command::new(binary)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(dir.join("data"))
            // The vote storm measures the durable path: each simulated attendee re-votes far
            // faster than a person, which the per-attendee rate limit would refuse.
            .args(["--rate-ballots", "4000000000", "--rate-joins", "4000000000"])
            // The web fan-out's watchers are thousands of pages of one attendee's sign-in.
            .args(["--max-page-streams", "4000000000"])
            .args(args)
            .args(
                admin_token
                    .map(|token| ["--admin-token", token])
                    .into_iter()
                    .flatten(),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let stdout = child.stdout.take().context("podiumd has no stdout")?;
        let mut stdout = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(STARTUP, stdout.next_line())
            .await
            .map_err(|_| anyhow!("podiumd did not start listening within {STARTUP:?}"))
            .and_then(|line| Ok(line?));
        let addr = match line {
            Ok(Some(line)) => line
                .strip_prefix("podiumd listening on ")
                .map(str::to_owned),
            _ => None,
        };
        let Some(addr) = addr else {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            bail!(
                "podiumd ({}) did not start; its log:\n{}",
                binary.display(),
                log.trim_end()
            );
        };
        let admin_token = match admin_token {
            Some(token) => token.to_owned(),
            None => {
                let token_path = dir.join("data").join("admin.token");
                tokio::fs::read_to_string(&token_path)
                    .await
                    .with_context(|| format!("cannot read {}", token_path.display()))?
                    .trim()
                    .to_owned()
            }
        };
        Ok(Self {
            _child: child,
            _stdout: stdout,
            podium: Podium { addr, admin_token },
            binary: binary.to_owned(),
            dir: dir.to_owned(),
            log_path,
            _data: data,
        })
    }

    /// podiumd's process id, for reading its memory.
    pub fn pid(&self) -> Option<u32> {
        self._child.id()
    }

    pub fn podium(&self) -> &Podium {
        &self.podium
    }

    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// The temporary directory holding the data directory and the log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What podiumd logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Kills podiumd with SIGKILL, as a machine that dies does, and waits until it is gone.
    pub async fn kill(mut self) -> anyhow::Result<()> {
        self._child.kill().await.context("cannot kill podiumd")
    }

    /// Stops podiumd as an operator would, with SIGTERM, and waits for it to exit: a clean
    /// shutdown, which leaves snapshots of the read models.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let pid = self._child.id().context("podiumd has already exited")?;
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .await
            .context("cannot run kill")?;
        if !status.success() {
            bail!("kill -TERM {pid} failed: {status}");
        }
        let exited = self._child.wait().await.context("waiting for podiumd")?;
        if !exited.success() {
            bail!("podiumd exited with {exited}; its log:\n{}", self.log());
        }
        Ok(())
    }
}

/// Several podiumd nodes this process started on a three-server NATS JetStream cluster on
/// loopback (it needs `nats-server` 2.14 or later), each with a data directory of its own;
/// everything stops when dropped.
pub struct LocalNodes {
    nodes: Vec<LocalPodiumd>,
    podiums: Vec<Podium>,
    _data: tempfile::TempDir,
    _cluster: podium_natscluster::NatsCluster,
}

impl LocalNodes {
    /// Starts the cluster and `n` nodes of `binary` on it, all given `admin` as admin token.
    pub async fn start(binary: &Path, n: usize, admin: &str) -> anyhow::Result<Self> {
        let cluster = tokio::task::spawn_blocking(|| podium_natscluster::NatsCluster::start(3))
            .await
            .context("the cluster's start panicked")?
            .context("cannot start a three-server NATS JetStream cluster")?;
        let data = tempfile::Builder::new()
            .prefix("podium-loadgen-nodes-")
            .tempdir()
            .context("cannot create a temporary directory")?;
        let args = cluster
            .podiumd_args()
            .context("cannot write the cluster key")?;
        let mut nodes = Vec::with_capacity(n);
        for i in 1..=n {
            let dir = data.path().join(format!("node-{i}"));
            std::fs::create_dir_all(&dir)?;
            nodes.push(
                LocalPodiumd::start_with(binary, &dir, "podiumd.log", None, &args, Some(admin))
                    .await?,
            );
        }
        let podiums = nodes.iter().map(|node| node.podium().clone()).collect();
        Ok(Self {
            nodes,
            podiums,
            _data: data,
            _cluster: cluster,
        })
    }

    /// The nodes, as scenarios reach them.
    pub fn podiums(&self) -> &[Podium] {
        &self.podiums
    }

    /// The nodes' process ids.
    pub fn pids(&self) -> Vec<u32> {
        self.nodes.iter().filter_map(LocalPodiumd::pid).collect()
    }
}

/// The scenarios time podiumd from one process's clock over loopback; another network would be
/// measured along with it.
pub async fn require_loopback(addr: &str) -> anyhow::Result<()> {
    let host_port = addr.strip_prefix("http://").unwrap_or(addr);
    let resolved: Vec<_> = tokio::net::lookup_host(host_port)
        .await
        .with_context(|| format!("cannot resolve --addr {addr}; use host:port"))?
        .collect();
    if resolved.is_empty() || resolved.iter().any(|a| !a.ip().is_loopback()) {
        bail!("--addr {addr} is not a loopback address; podium-loadgen measures on loopback only");
    }
    Ok(())
}
