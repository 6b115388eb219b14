//! The engine on several nodes: it runs only while its node holds the lease, and it fences
//! every session it takes over so that an engine of an older term cannot write to it.

use std::sync::Arc;

use podium_eventlog::{
    EventLog, EventLogError, ExpectedVersion, Lease, NewEvent, RecordedEvent, Term,
};
use podium_proto::v1 as pb;
use uuid::Uuid;

use super::{Engine, Input, Key, Read};
use crate::{
    codec::{status_stream, timestamp},
    domain::Millis,
    error::StatusError,
};

/// The term of a `StatusEngineMoved` event; `None` for any other event.
pub(super) fn moved_term(event: &RecordedEvent) -> Option<u64> {
    event
        .is::<pb::StatusEngineMoved>()
        .then(|| event.decode::<pb::StatusEngineMoved>().ok())
        .flatten()
        .map(|moved| moved.term)
}

/// How many times a take-over tries to fence a session that keeps moving under it.
const FENCE_TRIES: usize = 5;

/// How often a running engine looks for live sessions it holds no machine for.
const SCAN: std::time::Duration = std::time::Duration::from_secs(1);

impl Engine {
    /// Whether this engine may decide now: always on one node; on several, while its node
    /// holds the lease and knows it does.
    pub(super) fn runs(&self) -> bool {
        match &self.lease {
            None => true,
            Some(lease) => self.term.is_some() && lease.valid(),
        }
    }

    /// The lease's term for this node changed: `Some(None)` when it holds none, `None` when
    /// the lease itself ended.
    pub(super) async fn term_changed(&mut self, term: Option<Option<Term>>) {
        let Some(term) = term else {
            // The lease was dropped: this node holds nothing any more.
            self.held = None;
            self.step_down();
            return;
        };
        match term {
            Some(term) if self.term.as_ref() != Some(&term) => self.take_over(term).await,
            Some(_) => {}
            None => self.step_down(),
        }
    }

    /// Takes every live session over for `term`: reads it, fences it, and gives each of its
    /// speakers a whole `failover_after` from now to be heard of (heartbeats reach this node
    /// from wherever the agents are connected).
    async fn take_over(&mut self, term: Term) {
        self.step_down();
        self.term = Some(term.clone());
        let live = self.live_sessions();
        self.adopt(&term, &live).await;
        crate::metrics::engine_moved();
        tracing::info!(
            term = term.number,
            node = %term.node,
            sessions = live.len(),
            "status engine runs on this node; live sessions taken over"
        );
    }

    /// Live sessions this engine holds no machine for: one that could not be read or fenced at
    /// the take-over, or went live on another node just before it and reached this node's read
    /// model after. Each is taken over like at the take-over.
    pub(super) async fn scan(&mut self) {
        let now = tokio::time::Instant::now();
        if self.next_scan.is_none_or(|at| at > now) {
            return;
        }
        let Some(term) = self.term.clone().filter(|_| self.runs()) else {
            self.next_scan = None;
            return;
        };
        self.next_scan = Some(now + SCAN);
        let missing: Vec<Key> = self
            .live_sessions()
            .into_iter()
            .filter(|k| !self.slots.contains_key(k))
            .collect();
        if !missing.is_empty() {
            tracing::info!(
                sessions = missing.len(),
                "live sessions without a machine taken over"
            );
            self.adopt(&term, &missing).await;
        }
    }

    /// Reads and fences `keys` for `term`, and gives each of their speakers a whole
    /// `failover_after` from now to be heard of.
    async fn adopt(&mut self, term: &Term, keys: &[Key]) {
        self.next_scan = Some(tokio::time::Instant::now() + SCAN);
        let live = keys;
        let now = self.clock.now();
        let log = self.log.clone();
        let read = futures::future::join_all(live.iter().map(|k| {
            let (log, term, lease) = (log.clone(), term.clone(), self.lease.clone());
            async move { (k, Self::read_fenced(log, lease, k, term, now).await) }
        }))
        .await;
        for (k, read) in read {
            match read {
                Ok(mut read) => {
                    let failover_after = self
                        .model
                        .read()
                        .context(&k.0, &k.1)
                        .map_or(0, |ctx| Millis::from(ctx.policy.failover_after_ms));
                    read.machine.restarted(now, failover_after);
                    self.insert(k, read);
                    self.refile(k);
                }
                // Looked at again at the next scan.
                Err(error) => {
                    tracing::error!(conference = %k.0, session = %k.1, %error, "live session not taken over")
                }
            }
        }
    }

    /// Drops every machine: this node does not run the engine (any more).
    pub(super) fn step_down(&mut self) {
        self.next_scan = None;
        if self.term.take().is_some() {
            tracing::info!("status engine stopped on this node: another node runs it");
        }
        let keys: Vec<Key> = self.slots.keys().cloned().collect();
        for k in &keys {
            self.remove(k);
        }
    }

    /// An input this node cannot act on, not running the engine: a command is refused (its
    /// caller may retry on another node), the rest is dropped; the holder hears it from the
    /// agents' next heartbeats.
    pub(super) fn refuse(&self, input: Input) {
        match input {
            Input::Command { reply, .. } => {
                let _ = reply.send(Err(StatusError::Unavailable(
                    "this podiumd node does not run the status engine right now; retry".into(),
                )));
            }
            Input::Slots { reply } => {
                let _ = reply.send(0);
            }
            Input::Connected { .. } | Input::Heartbeat { .. } | Input::Closed { .. } => {}
        }
    }

    /// Reads the session's machine and appends a `StatusEngineMoved` for `term` to its status
    /// stream, with the version just read: from then on, an engine of an older term appends
    /// with a version the stream has passed, and is refused. Read again if the stream moved
    /// in between. Returns the machine and the stream's version after the fence.
    ///
    /// A later term than `term` in the stream is refused, and told to the `lease`: this node
    /// was deposed, or the lease lost its record of terms and must pass the log's.
    pub(super) async fn read_fenced(
        log: Arc<dyn EventLog>,
        lease: Option<Arc<dyn Lease>>,
        k: &Key,
        term: Term,
        now: Millis,
    ) -> Result<Read, StatusError> {
        let stream = status_stream(&k.0, &k.1);
        let mut tries = 0;
        loop {
            let read = Self::read_stream(log.clone(), k).await?;
            let moved = read.moved;
            if moved > term.number {
                if let Some(lease) = &lease {
                    lease.outranked(moved);
                }
                return Err(StatusError::Unavailable(format!(
                    "term {moved} runs this session's engine, after this node's term {}",
                    term.number
                )));
            }
            let fence = NewEvent::new(
                Uuid::now_v7(),
                &pb::StatusEngineMoved {
                    conference_id: k.0.clone(),
                    session_id: k.1.clone(),
                    node: term.node.clone(),
                    term: term.number,
                    at: Some(timestamp(now)),
                },
            );
            let expected = read
                .version
                .map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
            match log.append(&stream, expected, vec![fence]).await {
                Ok(outcome) => {
                    return Ok(Read {
                        version: Some(outcome.last_version),
                        ..read
                    });
                }
                Err(EventLogError::Conflict { .. }) if tries < FENCE_TRIES => tries += 1,
                Err(error) => return Err(error.into()),
            }
        }
    }
}
