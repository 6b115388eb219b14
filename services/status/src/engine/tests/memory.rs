//! A log in memory for the engine's tests under paused time: every append takes a set flush
//! time on tokio's clock, and appends can be made to fail. Event ids are written once, as in
//! the real logs: a retry is answered with the first outcome, an id of another stream refused.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime},
};

use async_trait::async_trait;
use podium_eventlog::{
    AppendOutcome, CommittedBatch, EventLog, EventLogError, ExpectedVersion, NewEvent, Page,
    RecordedEvent, Result as LogResult,
};
use tokio::{sync::broadcast, time::Instant};

/// An append as it reached the log.
#[derive(Debug, Clone)]
pub(super) struct Arrival {
    pub(super) at: Instant,
    pub(super) event_types: Vec<String>,
}

/// A log in memory whose every append takes `flush` (on tokio's clock) before it is stored, as
/// a group commit's flush does; appends in flight together are stored together.
pub(super) struct MemoryLog {
    flush: Duration,
    events: Mutex<Vec<RecordedEvent>>,
    arrivals: Mutex<Vec<Arrival>>,
    /// Appends still to fail.
    pub(super) failures: AtomicUsize,
    /// Appends still to be stored and reported as duplicates, as the NATS log reports an
    /// append whose first try landed although its acknowledgement was lost.
    pub(super) echoes: AtomicUsize,
    /// How many times a stream was read.
    pub(super) reads: AtomicUsize,
    live: broadcast::Sender<CommittedBatch>,
    /// While held: batches stored but not yet announced, as another node's appends are before
    /// this node's tail delivers them.
    held: Mutex<Option<Vec<CommittedBatch>>>,
}

impl MemoryLog {
    pub(super) fn new(flush: Duration) -> Arc<Self> {
        Arc::new(Self {
            flush,
            events: Mutex::new(Vec::new()),
            arrivals: Mutex::new(Vec::new()),
            failures: AtomicUsize::new(0),
            echoes: AtomicUsize::new(0),
            reads: AtomicUsize::new(0),
            live: broadcast::channel(4096).0,
            held: Mutex::new(None),
        })
    }

    /// From now on, appends are stored but neither announced nor counted in `head` (they are
    /// in `head_now`), until [`release`](Self::release).
    pub(super) fn hold(&self) {
        if let Ok(mut held) = self.held.lock() {
            held.get_or_insert_with(Vec::new);
        }
    }

    /// Announces the first append held, and goes on holding the others.
    pub(super) fn release_one(&self) {
        let first = self.held.lock().ok().and_then(|mut held| {
            let held = held.as_mut()?;
            (!held.is_empty()).then(|| held.remove(0))
        });
        if let Some(batch) = first {
            let _ = self.live.send(batch);
        }
    }

    /// Announces what was held, in order, and stops holding.
    pub(super) fn release(&self) {
        let held = self.held.lock().ok().and_then(|mut h| h.take());
        for batch in held.into_iter().flatten() {
            let _ = self.live.send(batch);
        }
    }

    fn unannounced(&self) -> u64 {
        self.held.lock().map_or(0, |held| {
            held.iter().flatten().map(|batch| batch.len() as u64).sum()
        })
    }

    pub(super) fn arrivals(&self) -> Vec<Arrival> {
        self.arrivals.lock().map(|a| a.clone()).unwrap_or_default()
    }

    pub(super) fn stream(&self, stream: &str) -> Vec<RecordedEvent> {
        self.events
            .lock()
            .map(|events| {
                events
                    .iter()
                    .filter(|e| e.stream == stream)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(super) fn store(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        batch: Vec<NewEvent>,
    ) -> LogResult<AppendOutcome> {
        let mut events = self
            .events
            .lock()
            .map_err(|_| EventLogError::Storage("poisoned".into()))?;
        let stored: Vec<Option<&RecordedEvent>> = batch
            .iter()
            .map(|new| events.iter().find(|e| e.id == new.id))
            .collect();
        if let Some(owner) = stored.iter().flatten().find(|e| e.stream != stream) {
            return Err(EventLogError::ReusedId {
                id: owner.id,
                stream: stream.to_owned(),
                owner: owner.stream.clone(),
            });
        }
        match (stored.first(), stored.last()) {
            (Some(Some(first)), Some(Some(last))) if stored.iter().all(Option::is_some) => {
                return Ok(AppendOutcome {
                    first_version: first.stream_version,
                    last_version: last.stream_version,
                    first_position: first.position,
                    last_position: last.position,
                    deduplicated: true,
                });
            }
            _ if stored.iter().any(Option::is_some) => {
                return Err(EventLogError::PartialDuplicate {
                    stream: stream.to_owned(),
                });
            }
            _ => {}
        }
        let actual = events
            .iter()
            .filter(|e| e.stream == stream)
            .map(|e| e.stream_version)
            .max();
        let fits = match expected {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual.is_none(),
            ExpectedVersion::Exact(v) => actual == Some(v),
        };
        if !fits {
            return Err(EventLogError::Conflict {
                stream: stream.to_owned(),
                expected,
                actual,
            });
        }
        let first_version = actual.map_or(0, |v| v + 1);
        let first_position = events.len() as u64;
        let recorded: Vec<RecordedEvent> = batch
            .into_iter()
            .enumerate()
            .map(|(i, e)| RecordedEvent {
                id: e.id,
                stream: stream.to_owned(),
                stream_version: first_version + i as u64,
                position: first_position + i as u64,
                event_type: e.event_type,
                payload: e.payload,
                recorded_at: SystemTime::now(),
            })
            .collect();
        let n = recorded.len() as u64;
        events.extend(recorded.iter().cloned());
        match self.held.lock().as_deref_mut() {
            Ok(Some(held)) => held.push(recorded.into()),
            _ => {
                let _ = self.live.send(recorded.into());
            }
        }
        let echo = self
            .echoes
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        Ok(AppendOutcome {
            first_version,
            last_version: first_version + n - 1,
            first_position,
            last_position: first_position + n - 1,
            deduplicated: echo,
        })
    }
}

#[async_trait]
impl EventLog for MemoryLog {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> LogResult<AppendOutcome> {
        if let Ok(mut arrivals) = self.arrivals.lock() {
            arrivals.push(Arrival {
                at: Instant::now(),
                event_types: events.iter().map(|e| e.event_type.clone()).collect(),
            });
        }
        tokio::time::sleep(self.flush).await;
        if self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(EventLogError::Storage("injected".into()));
        }
        self.store(stream, expected, events)
    }

    async fn read_stream(
        &self,
        stream: &str,
        from_version: u64,
        limit: usize,
    ) -> LogResult<Vec<RecordedEvent>> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        Ok(self
            .stream(stream)
            .into_iter()
            .filter(|e| e.stream_version >= from_version)
            .take(limit)
            .collect())
    }

    async fn read_page(&self, from: u64, limit: usize) -> LogResult<Page> {
        let events = self
            .events
            .lock()
            .map_err(|_| EventLogError::Storage("poisoned".into()))?;
        let page: Vec<RecordedEvent> = events
            .iter()
            .skip(from as usize)
            .take(limit)
            .cloned()
            .collect();
        Ok(page.into())
    }

    fn head(&self) -> u64 {
        let stored = self.events.lock().map_or(0, |e| e.len() as u64);
        stored.saturating_sub(self.unannounced())
    }

    async fn head_now(&self) -> LogResult<u64> {
        Ok(self.events.lock().map_or(0, |e| e.len() as u64))
    }

    fn listen(&self) -> broadcast::Receiver<CommittedBatch> {
        self.live.subscribe()
    }
}
