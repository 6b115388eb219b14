//! The live tail: one ordered consumer per process follows the whole JetStream stream from the
//! head it opened at, advances [`head`](crate::EventLog::head) and hands each run of events to
//! live subscribers. Every event reaches them, this node's appends and other nodes' alike, in
//! sequence order and with no gap (an ordered consumer that misses a message starts again after
//! the last one it delivered).
//!
//! The tail does not trust the consumer to notice its own death: when the server holding it dies,
//! the client library's recreation of it can stall for minutes (seen under load, with no error).
//! So a tail that has heard nothing for [`IDLE`] asks the stream's leader for its last sequence;
//! if the stream has moved past the tail, and still had at the next look, the consumer is
//! dropped and a new one made.

use std::{
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use async_nats::jetstream::consumer::{DeliverPolicy, push::OrderedConfig};
use futures::{FutureExt, StreamExt};
use tokio::sync::broadcast;

use super::{Inner, read::nats, subjects};
use crate::{CommittedBatch, RecordedEvent, Result};

/// Most events handed to subscribers as one batch.
const RUN: usize = 256;
/// How long the tail waits before following again after its consumer failed.
const RETRY: Duration = Duration::from_millis(200);
/// How long a quiet tail waits before checking that the stream is quiet too. A live consumer
/// delivers within milliseconds; a tail found behind the stream twice in a row is stalled, so
/// a stall costs about twice this.
const IDLE: Duration = Duration::from_secs(2);

/// Follows the stream from sequence `next` until the log closes (the task is aborted).
pub async fn follow(log: Arc<Inner>, live: broadcast::Sender<CommittedBatch>, mut next: u64) {
    loop {
        match follow_from(&log, &live, &mut next).await {
            Ok(()) => return,
            Err(error) => {
                tracing::warn!(%error, next, "the event log's live tail failed; following again");
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

async fn follow_from(
    log: &Inner,
    live: &broadcast::Sender<CommittedBatch>,
    next: &mut u64,
) -> Result<()> {
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
    // The stream's last sequence when a quiet tail last found itself behind it: behind twice in
    // a row is a stall (once may be a message stored just as the timer fired).
    let mut behind = None;
    loop {
        let message = match tokio::time::timeout(IDLE, messages.next()).await {
            Ok(Some(message)) => message,
            Ok(None) => break,
            Err(_) => {
                let last = match log.reader.stream.get_info().await {
                    Ok(info) => info.state.last_sequence,
                    // An election, say: the consumer may be fine; look again later.
                    Err(error) => {
                        tracing::debug!(%error, "the live tail could not read the stream's end");
                        continue;
                    }
                };
                match behind {
                    Some(seen) if *next <= seen => {
                        return Err(crate::EventLogError::Storage(format!(
                            "the live tail's consumer stalled: the stream is at {last}, the tail \
                             at {}",
                            *next - 1
                        )));
                    }
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
        while let Some(received) = message {
            let (event, last_of_append) = event_of(received.map_err(nats)?)?;
            if last_of_append {
                whole = Some(event.position + 1);
            }
            run.push(event);
            if run.len() == RUN {
                break;
            }
            message = messages.next().now_or_never().flatten();
        }
        *next = run[run.len() - 1].position + 2;
        if let Some(whole) = whole {
            log.head.fetch_max(whole, Ordering::AcqRel);
        }
        // No subscriber is not an error: the tail keeps the head moving all the same.
        let _ = live.send(run.into());
    }
    Err(crate::EventLogError::Storage(
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
