//! Where podiumd keeps its event log: sled in the data directory (the default: one binary,
//! nothing else to run), or a NATS JetStream cluster (`--log nats://host:4222,...`), which
//! keeps three copies on three machines so that losing one loses nothing.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use podium_eventlog::{
    CLUSTER_KEY_LEN, EventLog, NatsEventLog, NatsLease, NatsOptions, SharedBlobs, SharedSecrets,
    SledEventLog, SledOptions,
};
use serde::Serialize;

use crate::{Config, ServerError, backup};

/// The log flags.
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct LogFlags {
    /// Where the event log lives: `sled` (in the data directory), or a NATS JetStream cluster
    /// as its servers' URLs, comma-separated (`nats://10.0.0.1:4222,nats://10.0.0.2:4222`).
    /// The cluster needs NATS 2.14 or later; see deploy/nats/.
    #[arg(long = "log", env = "PODIUM_LOG", default_value = "sled", value_parser = parse_log)]
    pub log: LogChoice,

    /// Names what podiumd keeps on the NATS cluster: the JetStream stream of that name and the
    /// key-value bucket `<prefix>-ids`. Two podium installations may share a cluster under two
    /// prefixes.
    #[arg(long, env = "PODIUM_NATS_PREFIX", default_value = "podium")]
    pub nats_prefix: String,

    /// The servers' monitoring URLs (`http://host:8222`, comma-separated), where podiumd
    /// checks at start that every server holding the log syncs each write to disk.
    #[arg(long, env = "PODIUM_NATS_MONITOR", value_delimiter = ',')]
    pub nats_monitor: Vec<String>,

    /// Copies of every event on the cluster: 3 survives the loss of any one server.
    #[arg(long, env = "PODIUM_NATS_REPLICAS", default_value = "3",
          value_parser = clap::value_parser!(u64).range(1..=5))]
    pub nats_replicas: u64,

    /// A NATS credentials file (`.creds`), for a cluster with accounts.
    #[arg(long, env = "PODIUM_NATS_CREDENTIALS")]
    pub nats_credentials: Option<PathBuf>,

    /// A PEM file of the certificate authorities that sign the NATS servers' certificates.
    #[arg(long, env = "PODIUM_NATS_TLS_CA")]
    pub nats_tls_ca: Option<PathBuf>,

    /// Refuse a NATS server that does not offer TLS.
    #[arg(long, env = "PODIUM_NATS_REQUIRE_TLS")]
    pub nats_require_tls: bool,

    /// Run on NATS servers that do not sync every write (or whose monitoring podiumd cannot
    /// read): an acknowledged event can then be lost if the cluster's machines lose power.
    #[arg(long, env = "PODIUM_UNSAFE_LAZY_SYNC")]
    pub unsafe_lazy_sync: bool,

    /// A file of 32 random bytes (or 64 hex digits) that every podiumd node of one NATS log is
    /// given, and the cluster is not: it seals the secrets the nodes share there (token
    /// signing keys, anonymous polls' voter keys). Make it once with
    /// `head -c 32 /dev/urandom > cluster.key`. Required with `--log nats://...`.
    #[arg(long, env = "PODIUM_CLUSTER_KEY_FILE")]
    pub cluster_key_file: Option<PathBuf>,

    /// This node's name among the podiumd nodes of one NATS log (logs, the status engine's
    /// lease). Default: the host's name and the gRPC port.
    #[arg(long, env = "PODIUM_NODE_NAME")]
    pub node_name: Option<String>,

    /// Several podiumd nodes on one NATS log run the status engine on one node at a time:
    /// when that node stops renewing its lease for this long (seconds), another takes over.
    /// Shorter moves the engine sooner; too short for the network moves it needlessly.
    #[arg(long, env = "PODIUM_ENGINE_LEASE", default_value = "3",
          value_parser = parse_lease)]
    pub engine_lease: f64,
}

fn parse_lease(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && (0.5..=60.0).contains(s))
        .ok_or_else(|| format!("{text:?} is not a number of seconds from 0.5 to 60"))
}

/// The host's name, or `podiumd` when it cannot be read.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty() && !name.contains(char::is_whitespace))
        .unwrap_or_else(|| "podiumd".into())
}

impl LogFlags {
    /// This node's name: as given, or the host's name and the gRPC port.
    pub fn node(&self, listen: SocketAddr) -> String {
        self.node_name
            .clone()
            .unwrap_or_else(|| format!("{}:{}", host_name(), listen.port()))
    }
}

/// The cluster key in `path`: 32 bytes, raw or as 64 hex digits.
fn read_cluster_key(path: &std::path::Path) -> Result<[u8; CLUSTER_KEY_LEN], ServerError> {
    let bytes = std::fs::read(path).map_err(|e| {
        ServerError::Config(format!(
            "cannot read the cluster key {}: {e}",
            path.display()
        ))
    })?;
    let text = std::str::from_utf8(&bytes)
        .map(str::trim)
        .unwrap_or_default();
    let hex = (text.len() == 2 * CLUSTER_KEY_LEN)
        .then(|| hex::decode(text).ok())
        .flatten();
    hex.unwrap_or(bytes).try_into().map_err(|_| {
        ServerError::Config(format!(
            "the cluster key {} is neither 32 bytes nor 64 hex digits",
            path.display()
        ))
    })
}

/// Which log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogChoice {
    Sled,
    /// The cluster's client URLs.
    Nats(Vec<String>),
}

fn parse_log(value: &str) -> Result<LogChoice, String> {
    if value == "sled" {
        return Ok(LogChoice::Sled);
    }
    let urls: Vec<String> = value.split(',').map(|u| u.trim().to_owned()).collect();
    for url in &urls {
        let rest = ["nats://", "tls://"]
            .iter()
            .find_map(|scheme| url.strip_prefix(scheme))
            .ok_or_else(|| {
                format!(
                    "{url:?} is neither `sled` nor a NATS URL (nats://host:port or tls://host:port)"
                )
            })?;
        if rest.is_empty() || rest.contains('/') {
            return Err(format!(
                "{url:?}: a NATS URL is nats://host:port, with no path"
            ));
        }
    }
    Ok(LogChoice::Nats(urls))
}

/// The open log, with what only its backend can do.
pub enum LogStore {
    Sled(Arc<SledEventLog>),
    Nats(Arc<NatsEventLog>),
}

impl LogStore {
    /// Opens the log the configuration names.
    pub async fn open(config: &Config) -> Result<Self, ServerError> {
        let flags = &config.log;
        Ok(match &flags.log {
            LogChoice::Sled => Self::Sled(Arc::new(SledEventLog::open(
                backup::log_path(&config.data_dir),
                SledOptions {
                    cache_bytes: config.log_cache,
                    reserve_bytes: config.disk_reserve,
                    ..SledOptions::default()
                },
            )?)),
            LogChoice::Nats(servers) => {
                // The keys, snapshots and recordings stay in the data directory, which sled
                // would otherwise have made.
                podium_eventlog::durable::create_dir_all(&config.data_dir).map_err(|e| {
                    ServerError::Config(format!(
                        "cannot create the data directory {}: {e}",
                        config.data_dir.display()
                    ))
                })?;
                let options = NatsOptions {
                    servers: servers.clone(),
                    prefix: flags.nats_prefix.clone(),
                    replicas: flags.nats_replicas as usize,
                    credentials: flags.nats_credentials.clone(),
                    tls_ca: flags.nats_tls_ca.clone(),
                    require_tls: flags.nats_require_tls,
                    monitors: flags.nats_monitor.clone(),
                    unsafe_lazy_sync: flags.unsafe_lazy_sync,
                    ..NatsOptions::default()
                };
                Self::Nats(Arc::new(NatsEventLog::open(options).await?))
            }
        })
    }

    /// The status engine's lease, on a log several nodes share (NATS); `None` on sled, whose
    /// one process runs the engine itself.
    pub async fn engine_lease(
        &self,
        config: &Config,
    ) -> Result<Option<Arc<NatsLease>>, ServerError> {
        let Self::Nats(log) = self else {
            return Ok(None);
        };
        let flags = &config.log;
        let node = flags.node(config.listen);
        let ttl = Duration::from_secs_f64(flags.engine_lease);
        let lease = log
            .lease(node.clone(), ttl, flags.nats_replicas as usize)
            .await?;
        tracing::info!(node = %node, lease_ms = ttl.as_millis() as u64, "status engine lease kept on the cluster");
        Ok(Some(Arc::new(lease)))
    }

    /// The secrets the nodes of a NATS log share, sealed with the cluster key; `None` on sled,
    /// whose one node keeps its keys in its data directory.
    pub async fn secrets(
        &self,
        config: &Config,
    ) -> Result<Option<Arc<SharedSecrets>>, ServerError> {
        let Self::Nats(log) = self else {
            return Ok(None);
        };
        let flags = &config.log;
        let path = flags.cluster_key_file.as_ref().ok_or_else(|| {
            ServerError::Config(
                "--log nats://... needs --cluster-key-file: a file of 32 random bytes that every \
                 podiumd node is given (head -c 32 /dev/urandom > cluster.key)"
                    .into(),
            )
        })?;
        let key = read_cluster_key(path)?;
        let secrets = log.secrets(&key, flags.nats_replicas as usize).await?;
        Ok(Some(Arc::new(secrets)))
    }

    /// The recordings every node of a NATS log can fetch; `None` on sled.
    pub async fn blobs(&self, config: &Config) -> Result<Option<Arc<SharedBlobs>>, ServerError> {
        let Self::Nats(log) = self else {
            return Ok(None);
        };
        let blobs = log.blobs(config.log.nats_replicas as usize).await?;
        Ok(Some(Arc::new(blobs)))
    }

    /// The log, as services use it.
    pub fn log(&self) -> Arc<dyn EventLog> {
        match self {
            Self::Sled(log) => log.clone(),
            Self::Nats(log) => log.clone(),
        }
    }

    /// The backend's name, as the node's diagnostics report it.
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Sled(_) => "sled",
            Self::Nats(_) => "nats",
        }
    }

    /// Closes the log: sled flushes and stops its writer; the NATS log stops following the
    /// cluster (every acknowledged append is already there).
    pub fn close(&self) -> Result<(), ServerError> {
        match self {
            Self::Sled(log) => log.close()?,
            Self::Nats(log) => log.close(),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_is_sled_or_a_list_of_nats_urls() {
        assert_eq!(parse_log("sled"), Ok(LogChoice::Sled));
        assert_eq!(
            parse_log("nats://10.0.0.1:4222, tls://n2.example.org:4222"),
            Ok(LogChoice::Nats(vec![
                "nats://10.0.0.1:4222".into(),
                "tls://n2.example.org:4222".into()
            ]))
        );
        for bad in [
            "",
            "postgres://db",
            "nats://",
            "nats://host:4222/path",
            "sled,nats://a:1",
        ] {
            assert!(parse_log(bad).is_err(), "{bad}");
        }
    }
}
