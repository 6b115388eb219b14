//! What the feedback services refuse, in their own words: one enum each for polls, Q&A and
//! ratings, and for each the one exhaustive mapping to a gRPC code.
//!
//! Handlers decide on these enums (a log conflict that means "already exists" or "changed
//! meanwhile" is told apart here, before conversion) and turn them into a `tonic::Status` only
//! at the end, through `podium_proto::into_status`. Role checks are `podium_access`'s own errors
//! and are converted where they happen, before any of this code runs.

use podium_core::InvalidField;
use podium_eventlog::{EventLogError, InvalidRequestId};
use podium_proto::{ServiceError, ServiceErrorCode};
use podium_text::TextError;

/// A refusal of the Polls service, naming the field where there is one.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error(transparent)]
    Invalid(#[from] InvalidField),
    #[error(transparent)]
    Text(#[from] TextError),
    #[error(transparent)]
    RequestId(#[from] InvalidRequestId),
    /// The poll, its conference or its session does not exist (or the caller may not see it).
    #[error("{0}")]
    NotFound(String),
    #[error("poll {0} already exists: use a new request_id")]
    AlreadyExists(String),
    /// The poll is not open for ballots.
    #[error("{0}")]
    NotOpen(String),
    /// The poll locks ballots and the voter's is already counted.
    #[error("{0}")]
    Locked(String),
    /// The poll is not in a state that allows the request (opening an open poll, hiding a
    /// word in a poll that is not a word cloud).
    #[error("{0}")]
    WrongState(String),
    #[error(transparent)]
    Log(#[from] EventLogError),
    /// The key of an anonymous poll could not be read or written: nothing was recorded.
    #[error("anonymous voter key failed: {0}")]
    VoterKey(std::io::Error),
    /// The poll is closed in the log, but the link from attendees to its ballots survives.
    #[error("poll closed, but its anonymity key could not be removed: {0}")]
    KeyNotDestroyed(std::io::Error),
}

impl PollError {
    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid(InvalidField::new(field, message))
    }

    pub(crate) fn poll_not_found(poll_id: &str) -> Self {
        Self::NotFound(format!("poll {poll_id} not found"))
    }
}

impl ServiceError for PollError {
    fn error_code(&self) -> ServiceErrorCode {
        match self {
            Self::Invalid(_) | Self::Text(_) => ServiceErrorCode::InvalidArgument,
            Self::RequestId(e) => e.error_code(),
            Self::NotFound(_) => ServiceErrorCode::NotFound,
            Self::AlreadyExists(_) => ServiceErrorCode::AlreadyExists,
            Self::NotOpen(_) | Self::Locked(_) | Self::WrongState(_) => {
                ServiceErrorCode::FailedPrecondition
            }
            Self::Log(e) => e.error_code(),
            Self::VoterKey(_) => ServiceErrorCode::Unavailable,
            Self::KeyNotDestroyed(_) => ServiceErrorCode::Internal,
        }
    }

    fn client_message(&self) -> String {
        match self {
            Self::RequestId(e) => e.client_message(),
            Self::Log(e) => e.client_message(),
            // The cause (a path, an errno) stays in the server's log.
            Self::VoterKey(_) => "could not record the ballot; retry".to_owned(),
            other => other.to_string(),
        }
    }
}

/// A refusal of the Questions service, naming the field where there is one.
#[derive(Debug, thiserror::Error)]
pub enum QaError {
    #[error(transparent)]
    Invalid(#[from] InvalidField),
    #[error(transparent)]
    Text(#[from] TextError),
    #[error(transparent)]
    RequestId(#[from] InvalidRequestId),
    /// The question or session does not exist, or the caller may not see it.
    #[error("{0}")]
    NotFound(String),
    #[error("question {0} already exists: use a new request_id")]
    AlreadyExists(String),
    /// The request is well formed but the question or session is not in a state that allows it.
    #[error("{0}")]
    Precondition(String),
    /// Another moderator changed the question after this one looked at it.
    #[error("question {0} changed meanwhile; look again and retry")]
    Changed(String),
    #[error(transparent)]
    Log(#[from] EventLogError),
}

impl QaError {
    pub(crate) fn question_not_found(question_id: &str) -> Self {
        Self::NotFound(format!("question {question_id} not found"))
    }
}

impl ServiceError for QaError {
    fn error_code(&self) -> ServiceErrorCode {
        match self {
            Self::Invalid(_) | Self::Text(_) => ServiceErrorCode::InvalidArgument,
            Self::RequestId(e) => e.error_code(),
            Self::NotFound(_) => ServiceErrorCode::NotFound,
            Self::AlreadyExists(_) => ServiceErrorCode::AlreadyExists,
            Self::Precondition(_) => ServiceErrorCode::FailedPrecondition,
            Self::Changed(_) => ServiceErrorCode::Aborted,
            Self::Log(e) => e.error_code(),
        }
    }

    fn client_message(&self) -> String {
        match self {
            Self::RequestId(e) => e.client_message(),
            Self::Log(e) => e.client_message(),
            other => other.to_string(),
        }
    }
}

/// A refusal of the Ratings service, naming the field where there is one.
#[derive(Debug, thiserror::Error)]
pub enum RatingError {
    #[error(transparent)]
    Invalid(#[from] InvalidField),
    #[error(transparent)]
    Text(#[from] TextError),
    #[error(transparent)]
    RequestId(#[from] InvalidRequestId),
    /// The conference or session does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The session has not gone live yet.
    #[error("{0}")]
    NotStarted(String),
    #[error(transparent)]
    Log(#[from] EventLogError),
}

impl ServiceError for RatingError {
    fn error_code(&self) -> ServiceErrorCode {
        match self {
            Self::Invalid(_) | Self::Text(_) => ServiceErrorCode::InvalidArgument,
            Self::RequestId(e) => e.error_code(),
            Self::NotFound(_) => ServiceErrorCode::NotFound,
            Self::NotStarted(_) => ServiceErrorCode::FailedPrecondition,
            Self::Log(e) => e.error_code(),
        }
    }

    fn client_message(&self) -> String {
        match self {
            Self::RequestId(e) => e.client_message(),
            Self::Log(e) => e.client_message(),
            other => other.to_string(),
        }
    }
}

podium_proto::service_error_status!(PollError, QaError, RatingError);

/// "session … not found in conference …", the same words for every feedback service.
pub(crate) fn session_not_found(conference_id: &str, session_id: &str) -> String {
    format!("session {session_id} not found in conference {conference_id}")
}
