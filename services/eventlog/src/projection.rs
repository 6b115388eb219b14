//! Read models: in-memory folds over the log, rebuilt from it at start-up and kept live by a
//! subscription. Every service's queries are answered from one of these.
//!
//! A command handler that has just appended calls [`Projector::wait_for`] with the position it
//! got back, so that a client reads its own writes. A service that answers from facts another
//! service wrote calls [`Projector::catch_up`] before it answers NOT_FOUND, so that a client
//! that has just written them through the other service finds them.

use std::{
    sync::{Arc, RwLock, RwLockReadGuard, Weak},
    time::Instant,
};

use futures::StreamExt;
use tokio::sync::watch;

use crate::{EventLog, EventLogError, Filter, RecordedEvent, Result, SubscriptionItem, subscribe};

/// A fold over events. `apply` must not fail: an event it cannot use is logged and skipped, so
/// one bad event never stops a service from starting.
pub trait Projection: Send + Sync + 'static {
    fn apply(&mut self, event: &RecordedEvent);
}

/// A running read model.
pub struct Projector<P> {
    state: Arc<RwLock<P>>,
    /// The position the model has read up to (exclusive).
    applied: watch::Receiver<u64>,
    /// Weak: a read model kept by a task that outlives the server must not keep the log open.
    log: Weak<dyn EventLog>,
}

impl<P> Clone for Projector<P> {
    fn clone(&self) -> Self {
        Self {
            state: self.state.clone(),
            applied: self.applied.clone(),
            log: self.log.clone(),
        }
    }
}

/// How long a read model waits before following the log again after a failed read.
const RESUBSCRIBE_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

impl<P: Projection> Projector<P> {
    /// Replays every stored event matching `filter` into `initial`, logs how many and how long,
    /// then keeps applying live events in a background task until the log closes.
    pub async fn start(
        name: &'static str,
        log: Arc<dyn EventLog>,
        initial: P,
        filter: Filter,
    ) -> Result<Self> {
        let started = Instant::now();
        let mut model = initial;
        let (applied_tx, applied) = watch::channel(0u64);
        // Unfiltered, so that `applied` moves over every position and `wait_for` works for any
        // position below the head; the filter is applied here instead.
        let mut events = Box::pin(subscribe(log.clone(), 0, Filter::default()));
        let mut replayed = 0u64;
        // Replay: until the subscription says it has caught up with storage.
        while let Some(item) = events.next().await {
            match item? {
                SubscriptionItem::Event(event) => {
                    // Nobody else can see the model before `start` returns: apply without
                    // the lock.
                    if filter.matches(&event) {
                        model.apply(&event);
                        replayed += 1;
                    }
                }
                SubscriptionItem::CaughtUp(position) => {
                    applied_tx.send_replace(position);
                    break;
                }
            }
        }
        tracing::info!(
            read_model = name,
            events = replayed,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "read model replayed"
        );
        let state = Arc::new(RwLock::new(model));
        let live_state = state.clone();
        let live_log = log.clone();
        tokio::spawn(async move {
            while let Some(item) = events.next().await {
                match item {
                    Ok(SubscriptionItem::Event(event)) => {
                        if filter.matches(&event) {
                            apply(&live_state, &event);
                        }
                        applied_tx.send_replace(event.position + 1);
                    }
                    Ok(SubscriptionItem::CaughtUp(_)) => {}
                    // The log was closed: the model is final, and waiters learn it.
                    Err(EventLogError::Closed) => break,
                    Err(error) => {
                        // A read that failed (the log's database being reopened after a write
                        // error) must not freeze the model: follow again from where it is.
                        let next = *applied_tx.borrow();
                        tracing::warn!(read_model = name, %error, next, "read model resubscribing");
                        tokio::time::sleep(RESUBSCRIBE_PAUSE).await;
                        events = Box::pin(subscribe(live_log.clone(), next, Filter::default()));
                    }
                }
            }
        });
        Ok(Self {
            state,
            applied,
            log: Arc::downgrade(&log),
        })
    }

    /// The current state. Do not hold the guard across an `.await`.
    pub fn read(&self) -> RwLockReadGuard<'_, P> {
        // A panic inside `apply` poisons the lock; the state is still the last good fold.
        self.state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The position the model has read up to (exclusive), to follow it as it moves.
    pub fn applied(&self) -> watch::Receiver<u64> {
        self.applied.clone()
    }

    /// Waits until the model has read past `position` (applying it if it matches).
    pub async fn wait_for(&self, position: u64) -> Result<()> {
        let mut applied = self.applied.clone();
        applied
            .wait_for(|&next| next > position)
            .await
            .map_err(|_| EventLogError::Closed)?;
        Ok(())
    }

    /// Catches up first when `known` says the model lacks something: for a lookup that may
    /// race a write another service has just acknowledged. A hit costs nothing.
    pub async fn catch_up_unless(&self, known: impl Fn(&P) -> bool) -> Result<()> {
        if !known(&self.read()) {
            self.catch_up().await?;
        }
        Ok(())
    }

    /// Waits until the model has applied every event that was durable when it was called.
    pub async fn catch_up(&self) -> Result<()> {
        let head = self.log.upgrade().ok_or(EventLogError::Closed)?.head();
        if head > 0 {
            self.wait_for(head - 1).await?;
        }
        Ok(())
    }
}

fn apply<P: Projection>(state: &RwLock<P>, event: &RecordedEvent) {
    let mut guard = state
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    guard.apply(event);
}
