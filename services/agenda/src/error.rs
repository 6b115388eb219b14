//! Everything the agenda can refuse, the failures beneath it, and which outcome each is for a
//! client: one exhaustive match to a [`ServiceErrorCode`]; `podium_proto::into_status` does the
//! rest, as for every service.

use podium_access::AccessError;
use podium_core::InvalidField;
use podium_eventlog::{EventLogError, InvalidRequestId};
use podium_proto::{ServiceError, ServiceErrorCode};
use podium_text::TextError;

/// Everything the agenda can refuse, and the failures beneath it.
#[derive(Debug, thiserror::Error)]
pub enum AgendaError {
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
    /// The command clashes with the agenda as it is (a double booking).
    #[error("{0}")]
    Clash(String),
    /// The session has gone live or ended, and is no longer the agenda's to change.
    #[error("{0}")]
    UnderWay(String),
    /// The session was changed since the revision the change was made against.
    #[error("{0}")]
    Changed(String),
    /// Too many concurrent writers to one conference; the client may retry.
    #[error("the agenda of conference {0} changed too often while this request ran; retry it")]
    Contended(String),
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error(transparent)]
    Log(#[from] EventLogError),
}

impl AgendaError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid(InvalidField::new(field, message))
    }
}

impl ServiceError for AgendaError {
    fn error_code(&self) -> ServiceErrorCode {
        match self {
            Self::Invalid(_) | Self::Text(_) => ServiceErrorCode::InvalidArgument,
            Self::RequestId(e) => e.error_code(),
            Self::NotFound(_) => ServiceErrorCode::NotFound,
            Self::AlreadyExists(_) => ServiceErrorCode::AlreadyExists,
            Self::Clash(_) | Self::UnderWay(_) => ServiceErrorCode::FailedPrecondition,
            Self::Contended(_) | Self::Changed(_) => ServiceErrorCode::Aborted,
            Self::Access(e) => e.error_code(),
            Self::Log(e) => e.error_code(),
        }
    }

    fn client_message(&self) -> String {
        match self {
            Self::RequestId(e) => e.client_message(),
            Self::Access(e) => e.client_message(),
            Self::Log(e) => e.client_message(),
            other => other.to_string(),
        }
    }
}

podium_proto::service_error_status!(AgendaError);
