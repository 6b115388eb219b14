//! How log failures look to a gRPC client: which outcome each is and what the client is told.

use podium_proto::{ServiceError, ServiceErrorCode};

use crate::EventLogError;

impl ServiceError for EventLogError {
    fn error_code(&self) -> ServiceErrorCode {
        match self {
            EventLogError::Conflict { .. } => ServiceErrorCode::Aborted,
            EventLogError::Erased(_) => ServiceErrorCode::FailedPrecondition,
            EventLogError::PartialDuplicate { .. } | EventLogError::ReusedId { .. } => {
                ServiceErrorCode::InvalidArgument
            }
            EventLogError::DiskFull(_) | EventLogError::Storage(_) | EventLogError::Closed => {
                ServiceErrorCode::Unavailable
            }
            EventLogError::Unanswered(_) => ServiceErrorCode::DeadlineExceeded,
            EventLogError::InvalidAppend(_) | EventLogError::Corrupt { .. } => {
                ServiceErrorCode::Internal
            }
        }
    }

    fn client_message(&self) -> String {
        match self {
            EventLogError::PartialDuplicate { .. } | EventLogError::ReusedId { .. } => {
                "request_id (or ballot_id) was already used for a different request; send a new one"
                    .into()
            }
            EventLogError::DiskFull(_) => {
                "the server's disk is full, nothing was written; retry once space is freed".into()
            }
            EventLogError::Storage(_) | EventLogError::Closed => {
                "event log unavailable, nothing was written; retry the request".into()
            }
            other => other.to_string(),
        }
    }
}

podium_proto::service_error_status!(EventLogError);
