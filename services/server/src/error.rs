//! Why podiumd could not start, or stopped badly.

/// Why podiumd could not start or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("event log: {0}")]
    Log(#[from] podium_eventlog::EventLogError),
    #[error("token keys in {path}: {source}")]
    Keys {
        path: String,
        source: std::io::Error,
    },
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("feedback service: {0}")]
    Feedback(String),
    /// The per-person key store, or the record of where sealing began.
    #[error("personal data keys: {0}")]
    Personal(String),
    #[error("status service: {0}")]
    Status(#[from] podium_status::StatusError),
    #[error("recording store in {path}: {source}")]
    Recordings {
        path: String,
        source: std::io::Error,
    },
    #[error("TLS file {path}: {source}")]
    TlsFile {
        path: String,
        source: std::io::Error,
    },
    #[error("configuration: {0}")]
    Config(String),
}
