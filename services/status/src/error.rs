//! Everything the status service can refuse, and its one mapping to gRPC codes.

use podium_access::AccessError;
use podium_eventlog::EventLogError;
use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    /// The request does not fit the session's current state.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A size limit was reached.
    #[error("{0}")]
    TooLarge(String),
    /// Lost a race or was replaced (a newer agent for the same speaker).
    #[error("{0}")]
    Aborted(String),
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error(transparent)]
    Log(#[from] EventLogError),
    #[error("storage: {0}")]
    Io(#[from] std::io::Error),
}

impl From<podium_text::TextError> for StatusError {
    fn from(e: podium_text::TextError) -> Self {
        Self::Invalid {
            field: e.field,
            message: e.message(),
        }
    }
}

impl StatusError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            message: message.into(),
        }
    }
}

impl From<StatusError> for Status {
    fn from(error: StatusError) -> Self {
        match error {
            e @ StatusError::Invalid { .. } => Status::invalid_argument(e.to_string()),
            StatusError::NotFound(m) => Status::not_found(m),
            StatusError::AlreadyExists(m) => Status::already_exists(m),
            StatusError::FailedPrecondition(m) => Status::failed_precondition(m),
            StatusError::TooLarge(m) => Status::resource_exhausted(m),
            StatusError::Aborted(m) => Status::aborted(m),
            StatusError::Access(e) => e.into(),
            StatusError::Log(e) => e.into(),
            StatusError::Io(e) => {
                tracing::error!(error = %e, "status storage failed");
                Status::unavailable("storage failed, nothing was kept; retry the request")
            }
        }
    }
}
