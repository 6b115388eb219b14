//! Read models: in-memory folds over the log, rebuilt from it at start-up and kept live by a
//! subscription. Every service's queries are answered from one of these.
//!
//! A command handler that has just appended calls [`Projector::wait_for`] with the position it
//! got back, so that a client reads its own writes. A service that answers from facts another
//! service wrote calls [`Projector::catch_up`] before it answers NOT_FOUND, so that a client
//! that has just written them through the other service finds them.
//!
//! A `Projector` is fed by a [`crate::Follower`]: podiumd registers every read model with one,
//! so that one pass over the log feeds them all; [`Projector::start`] is a follower of one.

use std::sync::{Arc, RwLock, RwLockReadGuard, Weak};

use tokio::sync::watch;

use crate::{EventLog, EventLogError, Filter, Follower, RecordedEvent, Result};

/// A fold over events. `apply` must not fail: an event it cannot use is logged and skipped, so
/// one bad event never stops a service from starting.
pub trait Projection: Send + Sync + 'static {
    fn apply(&mut self, event: &RecordedEvent);
}

/// A running read model.
pub struct Projector<P> {
    pub(crate) state: Arc<RwLock<P>>,
    /// The position the model has read up to (exclusive).
    pub(crate) applied: watch::Receiver<u64>,
    /// Weak: a read model kept by a task that outlives the server must not keep the log open.
    pub(crate) log: Weak<dyn EventLog>,
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

impl<P: Projection> Projector<P> {
    /// Replays every stored event matching `filter` into `initial`, logs how many and how long,
    /// then keeps applying live events in a background task until the log closes.
    pub async fn start(
        name: &'static str,
        log: Arc<dyn EventLog>,
        initial: P,
        filter: Filter,
    ) -> Result<Self> {
        let mut follower = Follower::new(log);
        let projector = follower.add(name, initial, filter);
        follower.start().await?;
        Ok(projector)
    }

    /// The current state. Do not hold the guard across an `.await`.
    pub fn read(&self) -> RwLockReadGuard<'_, P> {
        // A panic inside `apply` poisons the lock; the state is still the last good fold.
        self.state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The current state if no fold holds the model right now: for a path that must never
    /// wait on the follower (a speaker's heartbeat, timed as it arrives).
    pub fn try_read(&self) -> Option<RwLockReadGuard<'_, P>> {
        match self.state.try_read() {
            Ok(guard) => Some(guard),
            Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
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

    /// Waits until the model has applied every event that was durable when it was called,
    /// including those appended through another node of a cluster that this node's tail has not
    /// delivered yet ([`EventLog::head_now`]).
    pub async fn catch_up(&self) -> Result<()> {
        let log = self.log.upgrade().ok_or(EventLogError::Closed)?;
        let head = log.head_now().await?;
        // Not held while waiting: a log that closes meanwhile ends the wait.
        drop(log);
        if head > 0 {
            self.wait_for(head - 1).await?;
        }
        Ok(())
    }
}
