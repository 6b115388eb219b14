//! The write commands of the feedback services: each takes a request already parsed into a
//! domain value, decides against the read model, appends its event and waits until the model
//! has folded it, so the answer the caller reads next includes the write. The gRPC layer calls
//! exactly one command per write RPC, and every refusal is the service's one error enum.

use std::sync::Arc;

use podium_eventlog::{
    AppendOutcome, EventLog, EventLogError, ExpectedVersion, NewEvent, Projector,
};

use crate::store::FeedbackModel;

pub mod polls;
pub mod qa;
pub mod ratings;

/// The log the commands write to and the read model they decide against.
#[derive(Clone)]
pub struct Writer {
    pub log: Arc<dyn EventLog>,
    pub model: Projector<FeedbackModel>,
}

impl Writer {
    pub fn new(log: Arc<dyn EventLog>, model: Projector<FeedbackModel>) -> Self {
        Self { log, model }
    }

    /// Appends one event and waits until the read model has folded it; the log position of
    /// the event (of the first one, when the log answers a retry).
    pub async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        event: NewEvent,
    ) -> Result<u64, EventLogError> {
        Ok(self
            .append_outcome(stream, expected, event)
            .await?
            .last_position)
    }

    /// [`append`](Self::append), answering with the log's whole outcome: where the event
    /// landed in its stream too, the same for a retry as for the first time.
    pub async fn append_outcome(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        event: NewEvent,
    ) -> Result<AppendOutcome, EventLogError> {
        let outcome = self.log.append(stream, expected, vec![event]).await?;
        self.model.wait_for(outcome.last_position).await?;
        Ok(outcome)
    }
}

/// The time an event says it happened at.
fn now() -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp::from(std::time::SystemTime::now()))
}
