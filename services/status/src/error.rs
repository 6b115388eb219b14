//! Everything the status service can refuse, and which outcome each is for a client: one
//! exhaustive match to a [`ServiceErrorCode`]; `podium_proto::into_status` does the rest, as for
//! every service.

use podium_access::AccessError;
use podium_core::InvalidField;
use podium_eventlog::{EventLogError, InvalidRequestId};
use podium_proto::{ServiceError, ServiceErrorCode};
use podium_text::TextError;

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// A field of the request is malformed (`field: message`).
    #[error(transparent)]
    Invalid(#[from] InvalidField),
    /// Typed text refused by podium's text policy (`field: message`).
    #[error(transparent)]
    Text(#[from] TextError),
    #[error(transparent)]
    RequestId(#[from] InvalidRequestId),
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
    /// Lost a race or was replaced (a newer agent for the same speaker and session).
    #[error("{0}")]
    Aborted(String),
    /// This node cannot do it now; another node, or a retry, can.
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error(transparent)]
    Log(#[from] EventLogError),
    #[error("storage: {0}")]
    Io(#[from] std::io::Error),
}

impl StatusError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid(InvalidField::new(field, message))
    }
}

impl ServiceError for StatusError {
    fn error_code(&self) -> ServiceErrorCode {
        match self {
            Self::Invalid(_) | Self::Text(_) => ServiceErrorCode::InvalidArgument,
            Self::RequestId(e) => e.error_code(),
            Self::NotFound(_) => ServiceErrorCode::NotFound,
            Self::AlreadyExists(_) => ServiceErrorCode::AlreadyExists,
            Self::FailedPrecondition(_) => ServiceErrorCode::FailedPrecondition,
            Self::TooLarge(_) => ServiceErrorCode::ResourceExhausted,
            Self::Aborted(_) => ServiceErrorCode::Aborted,
            Self::Unavailable(_) => ServiceErrorCode::Unavailable,
            Self::Access(e) => e.error_code(),
            Self::Log(e) => e.error_code(),
            // Recording files: logged with their cause by `into_status`.
            Self::Io(_) => ServiceErrorCode::Unavailable,
        }
    }

    fn client_message(&self) -> String {
        match self {
            Self::RequestId(e) => e.client_message(),
            Self::Access(e) => e.client_message(),
            Self::Log(e) => e.client_message(),
            // The cause (a path, an errno) stays in the server's log.
            Self::Io(_) => "storage failed, nothing was kept; retry the request".into(),
            other => other.to_string(),
        }
    }
}

podium_proto::service_error_status!(StatusError);
