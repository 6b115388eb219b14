//! podiumd's configuration: flags, each with an environment variable, and their defaults.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

/// Which services a podiumd process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ServiceName {
    /// Tokens and joining (`podium.v1.Access`).
    Access,
    /// Conferences, rooms, speakers, sessions (`podium.v1.Agenda`).
    Agenda,
    /// The public event feed (`podium.v1.EventFeed`).
    Feed,
    /// Presence, the failover engine, switching and readiness (`podium.v1.Presence`,
    /// `podium.v1.Stage`, `podium.v1.Recordings`).
    Status,
    /// Live polls and their results (`podium.v1.Polls`).
    Feedback,
}

#[derive(Debug, Clone, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// podiumd: the podium control plane server.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "podiumd", version, about)]
pub struct Config {
    /// Directory for the event log, the token signing key and the admin token.
    #[arg(long, env = "PODIUM_DATA_DIR", default_value = "./podium-data")]
    pub data_dir: PathBuf,

    /// Address to listen on for gRPC.
    #[arg(long, env = "PODIUM_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,

    /// A fixed admin token. Without it, podiumd generates one on first start and writes it to
    /// <data-dir>/admin.token (readable by its owner only).
    #[arg(long, env = "PODIUM_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Services to run in this process (comma-separated); all by default.
    #[arg(
        long,
        env = "PODIUM_SERVICES",
        value_delimiter = ',',
        default_value = "access,agenda,feed,status,feedback"
    )]
    pub services: Vec<ServiceName>,

    /// Log format on stderr. Filter with RUST_LOG (default "info").
    #[arg(long, env = "PODIUM_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// After a restart, how long live sessions keep their source while speakers' agents
    /// reconnect, before any failover rule fires.
    #[arg(long, env = "PODIUM_RECONNECT_GRACE", value_parser = parse_seconds, default_value = "5")]
    pub reconnect_grace: Duration,

    /// Largest recording an upload may store, in bytes (suffixes KiB, MiB, GiB accepted).
    #[arg(long, env = "PODIUM_MAX_RECORDING_BYTES", value_parser = parse_bytes, default_value = "4GiB")]
    pub max_recording_bytes: u64,

    /// Memory the event log (sled) may use to cache its pages, in bytes (suffixes KiB, MiB, GiB
    /// accepted). Reads beyond it go to disk.
    #[arg(long, env = "PODIUM_LOG_CACHE", value_parser = parse_bytes, default_value = "256MiB")]
    pub log_cache: u64,

    /// Free space the data directory's file system must keep (suffixes KiB, MiB, GiB
    /// accepted): below it appends are refused with UNAVAILABLE before the log writes, and
    /// accepted again once space is freed.
    #[arg(long, env = "PODIUM_DISK_RESERVE", value_parser = parse_bytes, default_value = "64MiB")]
    pub disk_reserve: u64,

    /// On SIGINT or SIGTERM, how long open streams get to end before podiumd stops anyway.
    #[arg(long, env = "PODIUM_DRAIN_TIMEOUT", value_parser = parse_seconds, default_value = "10")]
    pub drain_timeout: Duration,
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0 && *s <= 3600.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("{text:?} is not a number of seconds between 0 and 3600"))
}

/// `4294967296`, `4GiB`, `500MiB`, `64KiB`.
fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (number, unit) = [
        ("KiB", 1u64 << 10),
        ("MiB", 1 << 20),
        ("GiB", 1 << 30),
        ("B", 1),
    ]
    .into_iter()
    .find_map(|(suffix, unit)| text.strip_suffix(suffix).map(|n| (n.trim(), unit)))
    .unwrap_or((text, 1));
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{text:?} is not a size in bytes like 4294967296, 4GiB or 500MiB"))
}

impl Config {
    pub fn runs(&self, service: ServiceName) -> bool {
        self.services.contains(&service)
    }
}
