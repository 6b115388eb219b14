//! podiumd's configuration: flags, each with an environment variable, and their defaults.

use std::{net::SocketAddr, num::NonZeroU32, path::PathBuf, time::Duration};

use serde::Serialize;

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
    #[arg(
        long,
        env = "PODIUM_DATA_DIR",
        default_value = "./podium-data",
        global = true
    )]
    pub data_dir: PathBuf,

    /// Address to listen on for gRPC.
    #[arg(long, env = "PODIUM_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,

    /// A fixed admin token. Without it, podiumd generates one on first start and writes it to
    /// `<data-dir>/admin.token` (readable by its owner only).
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

    /// Log format on stderr. Filter with RUST_LOG (default "info,mp4_atom=error").
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
    /// accepted again once space is freed. 0 turns the check off; a file system that reports
    /// no capacity (some FUSE ones) is not checked.
    #[arg(long, env = "PODIUM_DISK_RESERVE", value_parser = parse_reserve, default_value = "64MiB")]
    pub disk_reserve: u64,

    /// Hours after a conference's last session that its attendees' tokens keep working (to
    /// rate sessions and read results), and that joining stays open. An attendee token never
    /// lives longer than 30 days.
    #[arg(long, env = "PODIUM_ATTENDEE_TOKEN_MARGIN_HOURS", default_value = "168",
          value_parser = clap::value_parser!(u64).range(1..=876_000))]
    pub attendee_token_margin_hours: u64,

    /// On SIGINT or SIGTERM, how long open streams get to end before podiumd stops anyway.
    #[arg(long, env = "PODIUM_DRAIN_TIMEOUT", value_parser = parse_seconds, default_value = "10")]
    pub drain_timeout: Duration,

    /// The address attendees reach podiumd by, when it is not the one they type into the
    /// browser's address bar as podiumd sees it: behind a proxy that terminates TLS, for
    /// example `https://podium.example.org`. The projector's join link and QR code use it;
    /// without it they use the scheme podiumd serves and the request's Host. Forms from its
    /// pages are taken whatever Host a proxy passes on, and its port (if any) names the pages'
    /// cookies, the same on every node behind it.
    #[arg(long, env = "PODIUM_PUBLIC_URL", value_parser = parse_public_url)]
    pub public_url: Option<String>,

    #[command(flatten)]
    pub log: crate::log_store::LogFlags,

    #[command(flatten)]
    pub transport: Transport,

    #[command(flatten)]
    pub tls: Tls,

    #[command(flatten)]
    pub rates: RateFlags,

    /// Print the effective configuration (flags, environment and defaults) as JSON and exit.
    #[arg(long)]
    pub print_config: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What podiumd can do instead of serving.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Restore a backup taken with `podium admin backup` into --data-dir (given explicitly),
    /// which must not exist or be empty, then exit. Start podiumd on that directory afterwards. A truncated or
    /// damaged backup is refused and nothing is left behind.
    Restore {
        /// The backup file.
        file: PathBuf,
    },
}

/// Limits on connections, streams and messages. tonic leaves several of these unset; podiumd
/// sets every one of them, so a client cannot hold resources without bound.
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct Transport {
    /// HTTP/2 streams one connection may have open at once; a client that opens more gets
    /// its extra streams refused (REFUSED_STREAM, which gRPC clients see as UNAVAILABLE).
    #[arg(long, env = "PODIUM_MAX_CONCURRENT_STREAMS", default_value = "200",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_streams: u32,

    /// Streams a connection may make the server reset for protocol errors before podiumd
    /// closes the connection (the "rapid reset" defence).
    #[arg(long, env = "PODIUM_MAX_LOCAL_ERROR_RESET_STREAMS", default_value = "256",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_local_error_reset_streams: u64,

    /// Seconds between HTTP/2 pings on an idle connection.
    #[arg(long, env = "PODIUM_HTTP2_KEEPALIVE_INTERVAL", value_parser = parse_positive_seconds,
          default_value = "30")]
    #[serde(
        serialize_with = "seconds",
        rename = "http2_keepalive_interval_seconds"
    )]
    pub http2_keepalive_interval: Duration,

    /// Seconds to wait for a ping's answer before closing the connection.
    #[arg(long, env = "PODIUM_HTTP2_KEEPALIVE_TIMEOUT", value_parser = parse_positive_seconds,
          default_value = "10")]
    #[serde(serialize_with = "seconds", rename = "http2_keepalive_timeout_seconds")]
    pub http2_keepalive_timeout: Duration,

    /// Seconds a new connection has to send its first request (HTTP/2's preface, or an
    /// HTTP/1.1 request's head) after it is accepted and any TLS handshake is done; a
    /// connection that has not is closed.
    #[arg(long, env = "PODIUM_FIRST_REQUEST_TIMEOUT", value_parser = parse_positive_seconds,
          default_value = "10")]
    #[serde(serialize_with = "seconds", rename = "first_request_timeout_seconds")]
    pub first_request_timeout: Duration,

    /// Seconds of TCP idleness before the kernel probes the peer (SO_KEEPALIVE).
    #[arg(long, env = "PODIUM_TCP_KEEPALIVE", value_parser = parse_positive_seconds,
          default_value = "60")]
    #[serde(serialize_with = "seconds", rename = "tcp_keepalive_seconds")]
    pub tcp_keepalive: Duration,

    /// Seconds a unary request may take before it ends with DEADLINE_EXCEEDED. Streams are not
    /// timed; a client's own deadline (grpc-timeout) applies as well.
    #[arg(long, env = "PODIUM_REQUEST_TIMEOUT", value_parser = parse_positive_seconds,
          default_value = "10")]
    #[serde(serialize_with = "seconds", rename = "request_timeout_seconds")]
    pub request_timeout: Duration,

    /// Largest request message of an ordinary RPC, in bytes (suffixes KiB, MiB accepted).
    #[arg(long, env = "PODIUM_MAX_REQUEST_BYTES", value_parser = parse_bytes, default_value = "256KiB")]
    pub max_request_bytes: u64,

    /// Largest message of a recording upload, in bytes: a chunk of at most 4 MiB and its
    /// header. Uploads are chunked, so this never limits a recording's size.
    #[arg(long, env = "PODIUM_MAX_UPLOAD_MESSAGE_BYTES", value_parser = parse_bytes,
          default_value = "4160KiB")]
    pub max_upload_message_bytes: u64,

    /// Largest response message podiumd sends, in bytes.
    #[arg(long, env = "PODIUM_MAX_RESPONSE_BYTES", value_parser = parse_bytes, default_value = "16MiB")]
    pub max_response_bytes: u64,

    /// Largest block of request metadata (headers) a client may send, in bytes.
    #[arg(long, env = "PODIUM_MAX_HEADER_LIST_BYTES", value_parser = parse_bytes, default_value = "16KiB")]
    pub max_header_list_bytes: u64,

    /// Requests podiumd handles at once across all connections; more are refused at once with
    /// RESOURCE_EXHAUSTED instead of queueing. A stream counts until it has started.
    #[arg(long, env = "PODIUM_MAX_CONCURRENT_REQUESTS", default_value = "2048",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_concurrent_requests: u32,

    /// Live streams (Server-Sent Events, one per open page) the pages may hold open for one
    /// sign-in at once; a newer one ends the oldest (a page still open reconnects by itself, a
    /// phone gone from the Wi-Fi does not). A person has a few tabs, a shared projector token a
    /// screen per room.
    #[arg(long, env = "PODIUM_MAX_PAGE_STREAMS", default_value_t = podium_web::DEFAULT_LIVE_STREAMS,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_page_streams: u32,
}

/// Rate limits per authenticated principal, and per client address for joining. Each is a
/// number per minute, which is also the burst allowed at once.
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct RateFlags {
    /// Ballots one attendee may cast a minute (a new ballot replaces the last).
    #[arg(long, env = "PODIUM_RATE_BALLOTS", default_value = "60")]
    pub rate_ballots: NonZeroU32,

    /// Questions one attendee may ask a minute.
    #[arg(long, env = "PODIUM_RATE_QUESTIONS", default_value = "10")]
    pub rate_questions: NonZeroU32,

    /// Upvotes one attendee may give a minute.
    #[arg(long, env = "PODIUM_RATE_UPVOTES", default_value = "60")]
    pub rate_upvotes: NonZeroU32,

    /// Joins a minute from one client address (an IPv6 client: its /64). A venue's network
    /// often puts hundreds of attendees behind one address, hence the high default.
    #[arg(long, env = "PODIUM_RATE_JOINS", default_value = "600")]
    pub rate_joins: NonZeroU32,

    /// Principals or addresses each limiter remembers at most; idle ones are forgotten every
    /// minute.
    #[arg(long, env = "PODIUM_RATE_LIMIT_KEYS", default_value = "100000",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub rate_limit_keys: u64,
}

impl RateFlags {
    pub fn rates(&self) -> podium_access::Rates {
        podium_access::Rates {
            ballots_per_minute: self.rate_ballots,
            questions_per_minute: self.rate_questions,
            upvotes_per_minute: self.rate_upvotes,
            joins_per_minute: self.rate_joins,
            max_keys: usize::try_from(self.rate_limit_keys).unwrap_or(usize::MAX),
        }
    }
}

/// TLS with rustls. Without a certificate podiumd speaks plaintext, which it allows only on a
/// loopback address unless `--allow-plaintext` says otherwise.
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct Tls {
    /// PEM certificate chain for TLS.
    #[arg(long, env = "PODIUM_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of the certificate.
    #[arg(long, env = "PODIUM_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// PEM certificate(s) of the CA that signs client certificates: with it, every client
    /// must present a certificate it signed (mutual TLS).
    #[arg(long, env = "PODIUM_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,

    /// Seconds a client has to finish the TLS handshake.
    #[arg(long, env = "PODIUM_TLS_HANDSHAKE_TIMEOUT", value_parser = parse_positive_seconds,
          default_value = "10")]
    #[serde(serialize_with = "seconds", rename = "tls_handshake_timeout_seconds")]
    pub tls_handshake_timeout: Duration,

    /// Serve plaintext on a non-loopback address (for a TLS-terminating proxy in front).
    #[arg(long, env = "PODIUM_ALLOW_PLAINTEXT")]
    pub allow_plaintext: bool,
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

fn parse_positive_seconds(text: &str) -> Result<Duration, String> {
    parse_seconds(text).and_then(|d| {
        if d.is_zero() {
            Err(format!("{text:?}: give more than 0 seconds"))
        } else {
            Ok(d)
        }
    })
}

/// An http or https origin, with no path, query or fragment; written without a final slash.
fn parse_public_url(text: &str) -> Result<String, String> {
    let uri: http::Uri = text
        .parse()
        .map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    let bare = matches!(uri.path(), "" | "/") && uri.query().is_none() && !text.contains('#');
    // A host, and a port only if it is a number; no user name or password to print on a slide.
    let authority = uri.authority().filter(|a| {
        let after_host = a
            .as_str()
            .rsplit_once(']')
            .map_or(a.as_str(), |(_, rest)| rest);
        !a.host().is_empty()
            && !a.as_str().contains('@')
            && (a.port_u16().is_some() || !after_host.contains(':'))
    });
    match (scheme_ok, authority, bare) {
        (true, Some(authority), true) => {
            let scheme = uri.scheme_str().unwrap_or("https");
            // As browsers write an origin: without the scheme's own port, so that the forms'
            // Origin equals it and the cookies' names are the plain ones.
            let default_port = if scheme == "https" { 443 } else { 80 };
            let origin = match authority.port_u16() {
                Some(port) if port == default_port => {
                    let (host, _) = authority.as_str().rsplit_once(':').unwrap_or_default();
                    host.to_owned()
                }
                _ => authority.as_str().to_owned(),
            };
            Ok(format!("{scheme}://{}", origin.to_ascii_lowercase()))
        }
        _ => Err(format!(
            "{text:?} must be http:// or https:// and a host, with no path: for example \
             https://podium.example.org"
        )),
    }
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

/// A size as [`parse_bytes`] reads it, or 0: no reserve.
fn parse_reserve(text: &str) -> Result<u64, String> {
    if text.trim().trim_end_matches('B').trim() == "0" {
        return Ok(0);
    }
    parse_bytes(text)
}

impl Config {
    pub fn runs(&self, service: ServiceName) -> bool {
        self.services.contains(&service)
    }

    /// The checks clap cannot make: plaintext off loopback, and an upload limit that fits a
    /// whole chunk.
    pub fn validate(&self) -> Result<(), String> {
        if self.tls.tls_cert.is_none()
            && !self.listen.ip().is_loopback()
            && !self.tls.allow_plaintext
        {
            return Err(format!(
                "refusing to serve plaintext on {}, which is not a loopback address: give \
                 --tls-cert and --tls-key, or --allow-plaintext behind a TLS-terminating proxy",
                self.listen
            ));
        }
        let upload_floor = podium_status::recordings::MAX_MESSAGE_BYTES as u64;
        if self.transport.max_upload_message_bytes < upload_floor {
            return Err(format!(
                "--max-upload-message-bytes {} is below {upload_floor}, a 4 MiB chunk and its \
                 header; uploads would fail",
                self.transport.max_upload_message_bytes
            ));
        }
        Ok(())
    }

    /// The effective configuration as JSON, for `--print-config` and the start-up log.
    pub fn effective(&self) -> serde_json::Value {
        serde_json::json!({
            "data_dir": self.data_dir,
            "listen": self.listen.to_string(),
            "services": self.services.iter().map(|s| format!("{s:?}").to_lowercase()).collect::<Vec<_>>(),
            "reconnect_grace_seconds": self.reconnect_grace.as_secs_f64(),
            "max_recording_bytes": self.max_recording_bytes,
            "drain_timeout_seconds": self.drain_timeout.as_secs_f64(),
            "public_url": self.public_url,
            "attendee_token_margin_hours": self.attendee_token_margin_hours,
            "log": self.log,
            "transport": self.transport,
            "tls": self.tls,
            "rate_limits_per_minute": self.rates,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disk_reserve_of_zero_turns_the_check_off_and_other_sizes_still_need_a_number() {
        assert_eq!(parse_reserve("0"), Ok(0));
        assert_eq!(parse_reserve("0B"), Ok(0));
        assert_eq!(parse_reserve("64MiB"), Ok(64 << 20));
        assert!(parse_reserve("none").is_err());
        assert!(parse_bytes("0").is_err(), "other sizes are still above 0");
    }

    #[test]
    fn a_public_url_is_an_origin_without_its_final_slash() {
        assert_eq!(
            parse_public_url("https://podium.example.org/"),
            Ok("https://podium.example.org".to_owned())
        );
        assert_eq!(
            parse_public_url("http://10.0.0.5:8080"),
            Ok("http://10.0.0.5:8080".to_owned())
        );
        assert_eq!(
            parse_public_url("https://[2001:db8::1]:8443"),
            Ok("https://[2001:db8::1]:8443".to_owned())
        );
        // As a browser's Origin names it: no default port, a lower-case host.
        assert_eq!(
            parse_public_url("https://Podium.Example.org:443/"),
            Ok("https://podium.example.org".to_owned())
        );
        assert_eq!(
            parse_public_url("http://[2001:db8::1]:80"),
            Ok("http://[2001:db8::1]".to_owned())
        );
        assert_eq!(
            parse_public_url("http://podium.example.org:443"),
            Ok("http://podium.example.org:443".to_owned())
        );
        for wrong in [
            "podium.example.org",
            "ftp://x.org",
            "https://x.org/podium",
            "https://x.org/?a=1",
            "https://x.org/#f",
            "https://user:pw@x.org",
            "https://:443",
            "https://x.org:abc",
        ] {
            let error = parse_public_url(wrong).unwrap_err();
            assert!(error.contains("must be http"), "{wrong}: {error}");
        }
    }
}
