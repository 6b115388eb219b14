//! Subscriptions: the stored events from a position, then live ones, with no gap and no
//! duplicate at the seam, for any [`EventLog`] backend.
//!
//! The trick is the order: listen for live batches *before* reading storage, so every event
//! committed after the storage read is also in the live channel, and drop live events below the
//! next expected position. A subscriber that lags (its live channel overflowed) or sees a
//! position jump goes back to storage instead of skipping ahead.

use std::{sync::Arc, task::Poll};

use futures::Stream;
use tokio::sync::broadcast::error::RecvError;

use crate::{EventLog, RecordedEvent, Result};

/// Which events a subscriber wants. Positions advance over the events it skips, so resuming
/// from the last delivered position plus one never misses a match.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only streams starting with this prefix, e.g. `conference/odc2024/`.
    pub stream_prefix: Option<String>,
    /// Only these event types; empty means all.
    pub event_types: Vec<String>,
}

impl Filter {
    pub fn matches(&self, event: &RecordedEvent) -> bool {
        self.stream_prefix
            .as_deref()
            .is_none_or(|p| event.stream.starts_with(p))
            && (self.event_types.is_empty() || self.event_types.contains(&event.event_type))
    }
}

/// One item of a subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionItem {
    /// The next matching event in log order.
    Event(RecordedEvent),
    /// Sent once, when everything stored at subscription time has been read: every position
    /// below this one has been considered, and what follows is live.
    CaughtUp(u64),
}

/// How many stored events one storage read fetches during catch-up. Above about a thousand the
/// per-read cost no longer shows in replay time; the page read ahead is held undecoded.
const CATCH_UP_PAGE: usize = 2048;

/// Streams the log from `from`: stored events first, then live ones. Ends when the log closes.
pub fn subscribe(
    log: Arc<dyn EventLog>,
    from: u64,
    filter: Filter,
) -> impl Stream<Item = Result<SubscriptionItem>> + Send + 'static {
    async_stream::try_stream! {
        let mut next = from;
        let mut announced = false;
        'resync: loop {
            // Listen first: anything committed after this point reaches `live`.
            let mut live = log.listen();
            let mut page = log.read_page(next, CATCH_UP_PAGE).await?;
            while let Some(last) = page.last_position() {
                // Start the read of the next page before handing this one out: a backend that
                // reads on another thread (sled does) fetches it while the consumer applies this
                // one. Only one page is read ahead, so memory stays bounded however slow the
                // consumer is.
                let mut ahead = log.read_page(last + 1, CATCH_UP_PAGE);
                let ready = match futures::poll!(&mut ahead) {
                    Poll::Ready(result) => Some(result),
                    Poll::Pending => None,
                };
                for event in page {
                    let event = event?;
                    next = event.position + 1;
                    if filter.matches(&event) {
                        yield SubscriptionItem::Event(event);
                    }
                }
                page = match ready {
                    Some(result) => result?,
                    None => ahead.await?,
                };
            }
            if !announced {
                announced = true;
                yield SubscriptionItem::CaughtUp(next);
            }
            loop {
                match live.recv().await {
                    Ok(batch) => {
                        for event in batch.iter() {
                            if event.position < next {
                                continue; // already read from storage
                            }
                            if event.position > next {
                                // Something between is missing from this channel: never skip
                                // ahead, read it from storage.
                                tracing::debug!(next, got = event.position, "subscriber resyncing");
                                continue 'resync;
                            }
                            next += 1;
                            if filter.matches(event) {
                                yield SubscriptionItem::Event(event.clone());
                            }
                        }
                    }
                    Err(RecvError::Lagged(missed)) => {
                        tracing::debug!(next, missed, "subscriber lagged, reading storage");
                        continue 'resync;
                    }
                    Err(RecvError::Closed) => break 'resync,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use uuid::Uuid;

    use super::*;

    fn event(stream: &str, event_type: &str) -> RecordedEvent {
        RecordedEvent {
            id: Uuid::new_v4(),
            stream: stream.into(),
            stream_version: 0,
            position: 0,
            event_type: event_type.into(),
            payload: Vec::new(),
            recorded_at: SystemTime::now(),
        }
    }

    #[test]
    fn filters_combine_prefix_and_types() {
        let room = event("conference/odc/room-1", "podium.v1.RoomAdded");
        let poll = event("conference/odc/poll-1", "podium.v1.PollOpened");
        let elsewhere = event("conference/other/room-1", "podium.v1.RoomAdded");
        let odc = Some("conference/odc/".to_owned());
        let rooms = vec![
            "podium.v1.RoomAdded".to_owned(),
            "podium.v1.RoomRenamed".to_owned(),
        ];

        let all = Filter::default();
        assert!([&room, &poll, &elsewhere].iter().all(|e| all.matches(e)));
        let by_prefix = Filter {
            stream_prefix: odc.clone(),
            event_types: vec![],
        };
        assert_eq!(
            [&room, &poll, &elsewhere].map(|e| by_prefix.matches(e)),
            [true, true, false]
        );
        let by_type = Filter {
            stream_prefix: None,
            event_types: rooms.clone(),
        };
        assert_eq!(
            [&room, &poll, &elsewhere].map(|e| by_type.matches(e)),
            [true, false, true]
        );
        let both = Filter {
            stream_prefix: odc,
            event_types: rooms,
        };
        assert_eq!(
            [&room, &poll, &elsewhere].map(|e| both.matches(e)),
            [true, false, false]
        );
    }
}
