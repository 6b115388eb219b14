//! podium's append-only event log. Every state change in podium is an event here; read models
//! are folds over it. This crate holds the [`EventLog`] trait that services program against,
//! the sled backend ([`SledEventLog`]), and [`subscribe`], which turns any backend into a
//! catch-up-then-live stream with no gap and no duplicate at the seam. [`durable`] is how every
//! service writes the files it keeps beside the log, so that they survive a power cut too.
//! [`Follower`] feeds every read model of a process from one pass over the log, and
//! [`snapshot`] lets it start them from their last snapshot instead of the log's beginning.

#![forbid(unsafe_code)]

pub mod durable;
mod event;
mod follower;
pub mod lease;
pub mod metrics;
mod nats_log;
pub mod personal;
mod projection;
mod request_id;
mod sled_log;
pub mod snapshot;
mod status;
mod subscribe;

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::broadcast;

pub use event::{DecodeError, NewEvent, Page, RecordedEvent};
pub use follower::{Follower, FollowerHandle};
pub use lease::{Delivery, Lease, Term};
pub use nats_log::{
    CLUSTER_KEY_LEN, NatsEventLog, NatsLease, NatsOptions, Secret, SharedBlobs, SharedSecrets,
};
pub use projection::{Projection, Projector};
pub use request_id::{InvalidRequestId, RequestId};
pub use sled_log::{SledEventLog, SledImport, SledOptions, decode_chunk, decode_stored};
pub use snapshot::{Snapshot, SnapshotError};
pub use subscribe::{Filter, SubscriptionItem, subscribe};

/// What the caller believes about a stream before appending to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// Append whatever the stream holds.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream's last event must have this version.
    Exact(u64),
}

impl std::fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Any => f.write_str("any"),
            Self::NoStream => f.write_str("no stream"),
            Self::Exact(v) => write!(f, "version {v}"),
        }
    }
}

/// Where an append landed. Returned unchanged when the same event ids are appended again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Stream version of the first and last event of the batch.
    pub first_version: u64,
    pub last_version: u64,
    /// Global position of the first and last event of the batch.
    pub first_position: u64,
    pub last_position: u64,
    /// True when every id was already in the stream and nothing was written.
    pub deduplicated: bool,
}

/// Everything that can go wrong with the log. The gRPC layers map these to status codes.
#[derive(Debug, thiserror::Error)]
pub enum EventLogError {
    #[error("wrong expected version for stream {stream}: expected {expected}, {}", describe_actual(*.actual))]
    Conflict {
        stream: String,
        expected: ExpectedVersion,
        actual: Option<u64>,
    },
    #[error("some but not all event ids of the batch are already in stream {stream}")]
    PartialDuplicate { stream: String },
    /// An event id is stored in one stream only, for ever: a request id sent again for
    /// something else (another stream) is refused, never applied a second time.
    #[error(
        "event id {id} is already stored in stream {owner}, so it cannot be written to stream {stream}"
    )]
    ReusedId {
        id: uuid::Uuid,
        stream: String,
        owner: String,
    },
    #[error("invalid append: {0}")]
    InvalidAppend(String),
    #[error("event log storage failed: {0}")]
    Storage(String),
    /// The disk is full: nothing was acknowledged, and appends succeed again once space is
    /// freed.
    #[error("event log disk is full: {0}")]
    DiskFull(String),
    #[error("stored event at position {position} is corrupt: {reason}")]
    Corrupt { position: u64, reason: String },
    #[error("event log is closed")]
    Closed,
    /// A message reached the node that runs a task (the status engine's lease holder), and
    /// no answer came in time: what it asked may still be done.
    #[error("{0}")]
    Unanswered(String),
    /// The event carries personal data of a person who was erased.
    #[error("{0}")]
    Erased(String),
}

fn describe_actual(actual: Option<u64>) -> String {
    match actual {
        Some(v) => format!("stream is at version {v}"),
        None => "stream does not exist".to_owned(),
    }
}

pub type Result<T, E = EventLogError> = std::result::Result<T, E>;

/// A batch of events committed together, as announced to live subscribers.
pub type CommittedBatch = Arc<[RecordedEvent]>;

/// The log every podium service writes to and reads from.
///
/// **Invariants** every backend upholds: global positions are dense and assigned in commit
/// order; stream versions are contiguous from 0; an append is all-or-nothing and returns only
/// once durable, that is on stable storage (it survives a power cut, not only a crash of the
/// process); an event id is written once in the whole log, forever (appended again to its
/// stream it is answered as the first time, to another stream it is refused with
/// [`EventLogError::ReusedId`]); reads only return durable events.
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Appends `events` to `stream` atomically if the stream matches `expected`.
    ///
    /// If every id is already in the stream, returns the original outcome and writes nothing,
    /// whatever `expected` says: a retry of a write that succeeded is not a conflict.
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome>;

    /// Up to `limit` events of `stream` from `from_version`, in version order.
    async fn read_stream(
        &self,
        stream: &str,
        from_version: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>>;

    /// Up to `limit` events of the whole log from global position `from`, in order.
    async fn read_all(&self, from: u64, limit: usize) -> Result<Vec<RecordedEvent>> {
        self.read_page(from, limit).await?.collect()
    }

    /// The same events as [`read_all`](Self::read_all), each decoded only when it is taken
    /// from the page. [`subscribe`] catches up with this one page ahead: it polls the next
    /// page's read once, then hands out the current page, so a backend that starts its read on
    /// the first poll (off the runtime thread if it blocks) overlaps the two.
    async fn read_page(&self, from: u64, limit: usize) -> Result<Page>;

    /// Where the event with `id` landed in `stream`: its position and stream version, or
    /// `None` if the stream holds no such event. What a retry of that write would be answered
    /// with, asked without writing. The default reads the whole stream; backends with an index
    /// of ids answer from it.
    async fn find(&self, stream: &str, id: uuid::Uuid) -> Result<Option<(u64, u64)>> {
        Ok(read_whole_stream(self, stream)
            .await?
            .iter()
            .find(|e| e.id == id)
            .map(|e| (e.position, e.stream_version)))
    }

    /// The position the next event will get: every event below it is durable.
    fn head(&self) -> u64;

    /// The head as the storage has it now. On a log several processes share, this counts what
    /// the others have appended and this process has not read yet, which [`head`](Self::head)
    /// does not: it is what a lookup waits for that must not miss a write acknowledged through
    /// another process. Where this process is the only writer, it is `head`.
    async fn head_now(&self) -> Result<u64> {
        Ok(self.head())
    }

    /// Live batches committed from now on. A receiver that falls behind gets
    /// `RecvError::Lagged`; [`subscribe`] then goes back to reading storage.
    fn listen(&self) -> broadcast::Receiver<CommittedBatch>;
}

/// A receiver of the live batches a backend's writer (or tail) sends while the log is open;
/// once it closed, a receiver whose sender is already gone, so it reports `Closed`.
fn listen_to(live: &broadcast::WeakSender<CommittedBatch>) -> broadcast::Receiver<CommittedBatch> {
    match live.upgrade() {
        Some(live) => live.subscribe(),
        None => broadcast::channel(1).1,
    }
}

/// Reads every event of a stream, for loading an aggregate.
pub async fn read_whole_stream<L: EventLog + ?Sized>(
    log: &L,
    stream: &str,
) -> Result<Vec<RecordedEvent>> {
    const PAGE: usize = 1024;
    let mut events = Vec::new();
    loop {
        let page = log.read_stream(stream, events.len() as u64, PAGE).await?;
        let done = page.len() < PAGE;
        events.extend(page);
        if done {
            return Ok(events);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_as_lowercase_sentences_without_a_period() {
        let conflict = |expected, actual| EventLogError::Conflict {
            stream: "poll/7".into(),
            expected,
            actual,
        };
        let cases = [
            (
                conflict(ExpectedVersion::NoStream, Some(4)),
                "wrong expected version for stream poll/7: expected no stream, stream is at version 4",
            ),
            (
                conflict(ExpectedVersion::Exact(2), None),
                "wrong expected version for stream poll/7: expected version 2, stream does not exist",
            ),
            (
                EventLogError::PartialDuplicate {
                    stream: "poll/7".into(),
                },
                "some but not all event ids of the batch are already in stream poll/7",
            ),
            (
                EventLogError::ReusedId {
                    id: uuid::Uuid::nil(),
                    stream: "poll/8".into(),
                    owner: "poll/7".into(),
                },
                "event id 00000000-0000-0000-0000-000000000000 is already stored in stream poll/7, so it cannot be written to stream poll/8",
            ),
            (EventLogError::Closed, "event log is closed"),
        ];
        for (error, message) in cases {
            assert_eq!(error.to_string(), message);
        }
        assert_eq!(ExpectedVersion::Any.to_string(), "any");
    }
}
