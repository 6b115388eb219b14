//! The live tail: one ordered consumer per process follows the whole JetStream stream from the
//! head it opened at, advances [`head`](crate::EventLog::head) and hands each run of events to
//! live subscribers. Every event reaches them, this node's appends and other nodes' alike, in
//! sequence order and with no gap (an ordered consumer that misses a message starts again after
//! the last one it delivered).
//!
//! The tail does not trust the consumer to survive a move between servers: after the client lost
//! its server and connected to another, the server holding the consumer could stop delivering
//! to it (JetStream then showed it with no subscriber and messages pending, for as long as the
//! tail waited), and the client library's recreation of it can stall for minutes (seen under
//! load, with no error). So the tail follows again on a new consumer, from the event after the
//! last it delivered, each time the client connects to a server anew; and a tail that has heard
//! nothing for [`IDLE`] asks the stream's leader for its last sequence: if the stream has moved
//! past the tail, and still had at the next look, the consumer is dropped and a new one made.
//! [`TailRestarts`] counts each.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use async_nats::jetstream::consumer::{DeliverPolicy, push::OrderedConfig};
use futures::{FutureExt, StreamExt};
use tokio::sync::broadcast;

use super::{Inner, read::nats, subjects};
use crate::{CommittedBatch, EventLogError, RecordedEvent, Result};

/// Most events handed to subscribers as one batch.
const RUN: usize = 256;
/// How long the tail waits before following again after its consumer failed.
const RETRY: Duration = Duration::from_millis(200);
/// How long a quiet tail waits before checking that the stream is quiet too. A live consumer
/// delivers within milliseconds; a tail found behind the stream twice in a row is stalled, so
/// a stall costs about twice this.
const IDLE: Duration = Duration::from_secs(2);

/// How many times the live tail followed again on a new consumer, by cause
/// ([`NatsEventLog::tail_restarts`](super::NatsEventLog::tail_restarts)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TailRestarts {
    /// The client connected to a server anew (its server died, froze or shut down).
    pub reconnected: u64,
    /// The consumer delivered nothing while the stream moved past the tail.
    pub stalled: u64,
    /// The consumer could not be made, or ended, or delivered a message it could not read.
    pub failed: u64,
}

/// The counts behind [`TailRestarts`].
#[derive(Default)]
pub(super) struct Restarts {
    reconnected: AtomicU64,
    stalled: AtomicU64,
    failed: AtomicU64,
}

impl Restarts {
    pub(super) fn read(&self) -> TailRestarts {
        TailRestarts {
            reconnected: self.reconnected.load(Ordering::Relaxed),
            stalled: self.stalled.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
        }
    }
}

/// Why one consumer stopped being followed, short of failing.
enum Restart {
    Reconnected,
    Stalled { last: u64 },
}

/// Follows the stream from sequence `next` until the log closes (the task is aborted).
pub async fn follow(log: Arc<Inner>, live: broadcast::Sender<CommittedBatch>, mut next: u64) {
    let mut connections = log.connections.clone();
    loop {
        // Connections before this consumer is made are not a reason to make another.
        connections.mark_unchanged();
        let restart = follow_from(&log, &live, &mut next, &mut connections).await;
        let (cause, counter) = match restart {
            Ok(Restart::Reconnected) => {
                tracing::info!(
                    next,
                    "the NATS client connected anew; the event log's live tail follows again"
                );
                (crate::metrics::TAIL_RECONNECTED, &log.restarts.reconnected)
            }
            Ok(Restart::Stalled { last }) => {
                tracing::warn!(
                    stream_at = last,
                    tail_at = next - 1,
                    "the event log's live tail stalled; following again"
                );
                (crate::metrics::TAIL_STALLED, &log.restarts.stalled)
            }
            Err(error) => {
                tracing::warn!(%error, next, "the event log's live tail failed; following again");
                tokio::time::sleep(RETRY).await;
                (crate::metrics::TAIL_FAILED, &log.restarts.failed)
            }
        };
        counter.fetch_add(1, Ordering::Relaxed);
        crate::metrics::tail_restarted(cause);
    }
}

/// Follows one new consumer from `next` until it must be replaced; an error when it failed.
async fn follow_from(
    log: &Inner,
    live: &broadcast::Sender<CommittedBatch>,
    next: &mut u64,
    connections: &mut tokio::sync::watch::Receiver<()>,
) -> Result<Restart> {
    let consumer = log
        .reader
        .stream
        .create_consumer(OrderedConfig {
            deliver_subject: log.client.new_inbox(),
            filter_subject: subjects::all(&log.prefix),
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: *next,
            },
            ..OrderedConfig::default()
        })
        .await
        .map_err(nats)?;
    let mut messages = consumer.messages().await.map_err(nats)?;
    // A connection the callback's event did not report (the client drops events when their
    // queue is full) is found at the next quiet look.
    let statistics = log.client.statistics();
    let connects = statistics.connects.load(Ordering::Relaxed);
    // The stream's last sequence when a quiet tail last found itself behind it: behind twice in
    // a row is a stall (once may be a message stored just as the timer fired).
    let mut behind = None;
    loop {
        let heard = tokio::select! {
            biased;
            // Disabled for this pass once the client's connection task has ended.
            Ok(()) = connections.changed() => return Ok(Restart::Reconnected),
            heard = tokio::time::timeout(IDLE, messages.next()) => heard,
        };
        let message = match heard {
            Ok(Some(message)) => message,
            Ok(None) => break,
            Err(_) => {
                if statistics.connects.load(Ordering::Relaxed) != connects {
                    return Ok(Restart::Reconnected);
                }
                let last = match log.reader.stream.get_info().await {
                    Ok(info) => info.state.last_sequence,
                    // An election, say: the consumer may be fine; look again later.
                    Err(error) => {
                        tracing::debug!(%error, "the live tail could not read the stream's end");
                        continue;
                    }
                };
                match behind {
                    Some(seen) if *next <= seen => return Ok(Restart::Stalled { last }),
                    _ => behind = (last >= *next).then_some(last),
                }
                continue;
            }
        };
        behind = None;
        let mut run = Vec::new();
        // One past the last whole append of the run: the head never stops inside a batch.
        let mut whole = None;
        let mut message = Some(message);
        // The stream sequence each message must have (a position is its sequence - 1).
        let mut wanted = *next;
        while let Some(received) = message {
            let (event, last_of_append) = event_of(received.map_err(nats)?)?;
            let sequence = event.position + 1;
            // The client library's own recovery of a consumer that has delivered nothing yet
            // starts again from the stream's first message: what the tail has delivered is
            // skipped, and a gap (never expected) follows again from the last delivered.
            if sequence > wanted {
                return Err(EventLogError::Storage(format!(
                    "the live tail's consumer skipped from sequence {wanted} to {sequence}"
                )));
            }
            if sequence == wanted {
                wanted += 1;
                if last_of_append {
                    whole = Some(event.position + 1);
                }
                run.push(event);
                if run.len() == RUN {
                    break;
                }
            }
            message = messages.next().now_or_never().flatten();
        }
        if run.is_empty() {
            continue;
        }
        *next = wanted;
        if let Some(whole) = whole {
            log.head.fetch_max(whole, Ordering::AcqRel);
        }
        // No subscriber is not an error: the tail keeps the head moving all the same.
        let _ = live.send(run.into());
    }
    Err(EventLogError::Storage(
        "the live tail's consumer ended".into(),
    ))
}

/// The event a delivered message holds, and whether it ends its append.
fn event_of(message: async_nats::jetstream::Message) -> Result<(RecordedEvent, bool)> {
    let info = message.info().map_err(nats)?;
    let event = subjects::decode(
        info.stream_sequence,
        info.published.into(),
        &message.payload,
    )?;
    let last = message
        .headers
        .as_ref()
        .is_some_and(|h| h.get(subjects::LAST_OF_APPEND).is_some());
    Ok((event, last))
}
