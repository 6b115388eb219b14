//! How log failures look to a gRPC client: one mapping, used by every service.

use tonic::Status;

use crate::EventLogError;

impl From<EventLogError> for Status {
    fn from(error: EventLogError) -> Self {
        match &error {
            EventLogError::Conflict { .. } => Status::aborted(error.to_string()),
            EventLogError::PartialDuplicate { .. } => Status::invalid_argument(
                "request_id was already used for a different request; send a new request_id",
            ),
            EventLogError::DiskFull(_) => {
                tracing::error!(%error, "event log disk full");
                Status::unavailable(
                    "the server's disk is full, nothing was written; retry once space is freed",
                )
            }
            EventLogError::Storage(_) | EventLogError::Closed => {
                tracing::error!(%error, "event log unavailable");
                Status::unavailable("event log unavailable, nothing was written; retry the request")
            }
            EventLogError::InvalidAppend(_) | EventLogError::Corrupt { .. } => {
                tracing::error!(%error, "event log error");
                Status::internal("internal error")
            }
        }
    }
}
