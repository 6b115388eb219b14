//! Reads. Many events at once come from JetStream's batched direct get, which any replica may
//! answer; a replica can trail the leader by the last few acknowledged messages, so every read
//! knows how many events it must return and asks the leader (`STREAM.MSG.GET`) for any the
//! batch left out. A read never returns fewer events than the caller is owed.

use std::time::Duration;

use async_nats::jetstream::{
    message::StreamMessage,
    stream::{LastRawMessageErrorKind, Stream},
};
use futures::StreamExt;

use super::subjects;
use crate::{EventLogError, RecordedEvent, Result};

/// Most messages one batched direct get asks for.
const BATCH: usize = 1024;
/// How long a batched direct get may take before the leader is asked instead. Any replica
/// answers a direct get, one that froze too (its peers notice only after their pings go
/// unanswered), so this is short: the leader is always there to ask.
const BATCH_WAIT: Duration = Duration::from_secs(1);
/// How long a read of a position below the head waits for a stream leader that does not have
/// it yet.
const LEADER_CATCH_UP: Duration = Duration::from_secs(5);

/// Reads through one JetStream stream.
#[derive(Clone)]
pub struct Reader {
    pub client: async_nats::Client,
    pub stream: Stream,
    /// The JetStream stream's name, which is also the first token of its subjects.
    pub prefix: String,
    /// The log's head, shared with the handle.
    pub head: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Reader {
    /// The `count` messages `want` names, from sequence `from` on, in order. A message the
    /// batch left out is asked of the leader.
    async fn messages(
        &self,
        from: u64,
        count: usize,
        want: &Want<'_>,
    ) -> Result<Vec<StreamMessage>> {
        let filter = want.filter(&self.prefix);
        let mut out: Vec<StreamMessage> = Vec::with_capacity(count);
        let mut next_seq = from;
        while out.len() < count {
            let asked = (count - out.len()).min(BATCH);
            let batch = self
                .direct_batch(next_seq, asked, &filter)
                .await
                .unwrap_or_else(|error| {
                    tracing::debug!(%error, "batched direct get failed, asking the leader");
                    Vec::new()
                });
            let mut took = 0;
            for message in batch {
                if out.len() == count || !want.is(&self.prefix, out.len(), &message) {
                    break;
                }
                next_seq = message.sequence + 1;
                out.push(message);
                took += 1;
            }
            if took < asked && out.len() < count {
                // A replica behind the leader, or a lost reply: the leader has it.
                let message = want.ask_leader(self, out.len()).await?;
                next_seq = message.sequence + 1;
                out.push(message);
            }
        }
        Ok(out)
    }

    /// One batched direct get: up to `batch` messages matching `filter` from sequence `from`.
    async fn direct_batch(
        &self,
        from: u64,
        batch: usize,
        filter: &str,
    ) -> Result<Vec<StreamMessage>> {
        let inbox = self.client.new_inbox();
        let mut replies = self.client.subscribe(inbox.clone()).await.map_err(nats)?;
        let request = serde_json::json!({ "seq": from, "batch": batch, "next_by_subj": filter });
        self.client
            .publish_with_reply(
                format!("$JS.API.DIRECT.GET.{}", self.prefix),
                inbox,
                request.to_string().into(),
            )
            .await
            .map_err(nats)?;
        let mut messages = Vec::with_capacity(batch);
        let read = async {
            while let Some(reply) = replies.next().await {
                match reply.status {
                    // 204 ends the batch, 404 says nothing matched.
                    Some(status) if status == 204 || status == 404 => return Ok(()),
                    Some(status) => {
                        return Err(EventLogError::Storage(format!(
                            "direct get answered {status}: {}",
                            reply.description.as_deref().unwrap_or("")
                        )));
                    }
                    None => messages.push(
                        StreamMessage::try_from(reply)
                            .map_err(|e| EventLogError::Storage(e.to_string()))?,
                    ),
                }
            }
            Err(EventLogError::Storage(
                "the direct get's replies ended".into(),
            ))
        };
        // What came before a timeout is kept: the leader is asked only for the rest.
        match tokio::time::timeout(BATCH_WAIT, read).await {
            Ok(Err(error)) if messages.is_empty() => return Err(error),
            Ok(_) => {}
            Err(_) => tracing::debug!(got = messages.len(), "a batched direct get timed out"),
        }
        Ok(messages)
    }

    /// The message with sequence `seq`, from the leader. Callers ask below the head, where it
    /// is stored: a leader that does not have it yet (just elected, still applying what was
    /// committed) will, so it is asked again for up to [`LEADER_CATCH_UP`], and then the answer
    /// is a storage error, which passes, not corruption.
    pub async fn at_sequence(&self, seq: u64) -> Result<StreamMessage> {
        let deadline = tokio::time::Instant::now() + LEADER_CATCH_UP;
        loop {
            match self.stream.get_raw_message(seq).await {
                Ok(message) => return Ok(message),
                Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(EventLogError::Storage(format!(
                            "position {} is not on the stream's leader yet",
                            seq.saturating_sub(1)
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(EventLogError::Storage(e.to_string())),
            }
        }
    }

    /// The last message on `subject` (which may end in a wildcard), from the leader.
    pub async fn last_on(&self, subject: &str) -> Result<Option<StreamMessage>> {
        match self.stream.get_last_raw_message_by_subject(subject).await {
            Ok(message) => Ok(Some(message)),
            Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(EventLogError::Storage(e.to_string())),
        }
    }

    /// Events `from..to` (positions), every one of them.
    pub async fn positions(&self, from: u64, to: u64) -> Result<Vec<StreamMessage>> {
        let count = usize::try_from(to.saturating_sub(from)).unwrap_or(usize::MAX);
        self.messages(from + 1, count, &Want::Positions { first: from + 1 })
            .await
    }

    /// Up to `limit` events of `stream` from version `from_version`.
    pub async fn stream_events(
        &self,
        stream: &str,
        from_version: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let Some(last) = self
            .last_on(&subjects::of_stream(&self.prefix, stream))
            .await?
        else {
            return Ok(Vec::new());
        };
        let last_version = subjects::recorded(&last)?.stream_version;
        if limit == 0 || last_version < from_version {
            return Ok(Vec::new());
        }
        let count = usize::try_from(last_version - from_version + 1)
            .unwrap_or(usize::MAX)
            .min(limit);
        let Some(first) = self
            .last_on(&subjects::at_version(&self.prefix, stream, from_version))
            .await?
        else {
            return Err(EventLogError::Corrupt {
                position: last.sequence.saturating_sub(1),
                reason: format!("stream {stream} has no version {from_version} below its last"),
            });
        };
        let want = Want::Versions {
            stream,
            first: from_version,
        };
        let messages = self.messages(first.sequence, count, &want).await?;
        // Only what this process's head covers, as `read_all` and the read models see it: an
        // event another process appended a moment ago comes with the tail.
        let head = self.head.load(std::sync::atomic::Ordering::Acquire);
        let messages: Vec<StreamMessage> = messages
            .into_iter()
            .take_while(|m| m.sequence <= head)
            .collect();
        messages.iter().map(subjects::recorded).collect()
    }
}

/// Which messages a read owes.
enum Want<'a> {
    /// Every message from this sequence on.
    Positions { first: u64 },
    /// The events of `stream` from version `first` on.
    Versions { stream: &'a str, first: u64 },
}

impl Want<'_> {
    fn filter(&self, prefix: &str) -> String {
        match self {
            Self::Positions { .. } => subjects::all(prefix),
            Self::Versions { stream, .. } => subjects::of_stream(prefix, stream),
        }
    }

    /// True when `message` is the `i`-th owed.
    fn is(&self, prefix: &str, i: usize, message: &StreamMessage) -> bool {
        match self {
            Self::Positions { first } => message.sequence == first + i as u64,
            Self::Versions { stream, first } => {
                message.subject.as_str() == subjects::at_version(prefix, stream, first + i as u64)
            }
        }
    }

    /// The `i`-th message owed, from the leader.
    async fn ask_leader(&self, reader: &Reader, i: usize) -> Result<StreamMessage> {
        match self {
            Self::Positions { first } => reader.at_sequence(first + i as u64).await,
            Self::Versions { stream, first } => {
                let version = first + i as u64;
                let subject = subjects::at_version(&reader.prefix, stream, version);
                reader.last_on(&subject).await?.ok_or_else(|| {
                    EventLogError::Storage(format!(
                        "stream {stream} has no version {version} below its last"
                    ))
                })
            }
        }
    }
}

/// A NATS failure, as a storage error naming it.
pub fn nats(error: impl std::fmt::Display) -> EventLogError {
    EventLogError::Storage(format!("NATS: {error}"))
}

/// JetStream's "wrong last sequence": a write that expected another last sequence.
const WRONG_LAST_SEQUENCE: u64 = 10071;
/// JetStream's other "wrong last sequence": a write that expected a subject's last sequence
/// while another write of that subject was still in flight.
const SUBJECT_SEQUENCE_IN_FLIGHT: u64 = 10164;

/// The JetStream error code behind `error`, wherever it is among its sources.
pub fn jetstream_code(error: &(dyn std::error::Error + 'static)) -> Option<u64> {
    std::iter::successors(Some(error), |e| e.source())
        .find_map(|e| e.downcast_ref::<async_nats::jetstream::Error>())
        .map(|e| e.error_code().0)
}

/// True when `error` is a compare-and-set write that lost to another write, committed or still
/// in flight. async-nats reports the second kind as "other", not as a wrong revision.
pub fn lost_a_race(error: &(dyn std::error::Error + 'static)) -> bool {
    matches!(
        jetstream_code(error),
        Some(WRONG_LAST_SEQUENCE | SUBJECT_SEQUENCE_IN_FLIGHT)
    )
}

#[cfg(test)]
mod tests {
    use async_nats::jetstream::{
        context::{PublishError, PublishErrorKind},
        kv::{CreateError, CreateErrorKind, UpdateError, UpdateErrorKind},
    };

    use super::*;

    /// A create whose publish JetStream refused with `code`, wrapped as async-nats wraps it.
    fn refused_create(code: u64) -> CreateError {
        let refusal: async_nats::jetstream::Error = serde_json::from_str(&format!(
            r#"{{"code": 400, "err_code": {code}, "description": "refused"}}"#
        ))
        .unwrap();
        let publish = PublishError::with_source(PublishErrorKind::Other, refusal);
        let update = UpdateError::with_source(UpdateErrorKind::Other, publish);
        CreateError::with_source(CreateErrorKind::Other, update)
    }

    #[test]
    fn a_write_that_lost_to_another_in_flight_is_told_apart_from_a_failure() {
        assert_eq!(jetstream_code(&refused_create(10164)), Some(10164));
        assert!(lost_a_race(&refused_create(SUBJECT_SEQUENCE_IN_FLIGHT)));
        assert!(lost_a_race(&refused_create(WRONG_LAST_SEQUENCE)));
        assert!(!lost_a_race(&refused_create(10054)), "a message too large");
        assert!(!lost_a_race(&CreateError::new(CreateErrorKind::Other)));
    }
}
