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
        default_value = "access,agenda,feed,status"
    )]
    pub services: Vec<ServiceName>,

    /// Log format on stderr. Filter with RUST_LOG (default "info").
    #[arg(long, env = "PODIUM_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// After a restart, how long live sessions keep their source while speakers' agents
    /// reconnect, before any failover rule fires.
    #[arg(long, env = "PODIUM_RECONNECT_GRACE", value_parser = parse_seconds, default_value = "5")]
    pub reconnect_grace: Duration,

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

impl Config {
    pub fn runs(&self, service: ServiceName) -> bool {
        self.services.contains(&service)
    }
}
