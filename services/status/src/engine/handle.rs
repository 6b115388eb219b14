//! The engine's [`Clock`] and the [`EngineHandle`] services talk to it through: each input is
//! stamped with the time it was handed over, then queued for the engine task.

use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use podium_eventlog::{EventLogError, Lease, RequestId};
use tokio::{
    sync::{broadcast, mpsc, oneshot},
    time::Instant,
};
use uuid::Uuid;

use super::relay::Replaced;
use crate::{
    domain::{Figures, Millis, Target},
    error::StatusError,
};

// ---- Clock ----

/// Wall-clock milliseconds that advance with tokio's clock, so that paused-time tests control
/// the engine and events still carry real dates.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    wall0: Millis,
    instant0: Instant,
}

impl Clock {
    pub fn new() -> Self {
        let wall0 = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as Millis);
        Self {
            wall0,
            instant0: Instant::now(),
        }
    }

    pub fn now(&self) -> Millis {
        self.wall0 + self.instant0.elapsed().as_millis() as Millis
    }

    /// The tokio instant of a wall-clock time.
    pub fn instant(&self, at: Millis) -> Instant {
        self.instant0 + Duration::from_millis(at.saturating_sub(self.wall0))
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

// ---- Engine ----

/// A moderator's command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Start,
    End,
    Switch(Target),
    Pin(bool),
}

pub(super) type Key = (String, String);

pub(super) type Reply = oneshot::Sender<Result<u64, StatusError>>;

/// What the engine is told; `at` is when it was handed over, from the engine's clock.
pub(super) enum Input {
    Connected {
        key: Key,
        speaker_id: String,
        connection: u64,
        at: Millis,
    },
    Heartbeat {
        key: Key,
        speaker_id: String,
        connection: u64,
        figures: Figures,
        at: Millis,
    },
    Closed {
        key: Key,
        speaker_id: String,
        connection: u64,
        at: Millis,
    },
    Command {
        key: Key,
        command: Command,
        /// The client's request id: a retry of a command carried out is only answered.
        request: Uuid,
        by: String,
        at: Millis,
        reply: Reply,
    },
    /// How many sessions the engine holds, for tests and diagnostics.
    Slots { reply: oneshot::Sender<usize> },
}

/// The handle services use to talk to the engine: this node's, or, on several nodes, the one
/// of the node that holds the lease. Cheap to clone.
#[derive(Clone)]
pub struct EngineHandle {
    pub(super) inputs: mpsc::Sender<Input>,
    pub(super) clock: Clock,
    pub(super) lease: Option<Arc<dyn Lease>>,
    /// Agents' connections replaced by newer ones, as the engine announced them to every node.
    pub(super) replaced: broadcast::Sender<Replaced>,
}

impl std::fmt::Debug for EngineHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineHandle")
            .field("node", &self.lease.as_ref().map(|l| l.node().to_owned()))
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Input")
    }
}

impl EngineHandle {
    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// With several nodes: the agents' connections that newer ones replaced, wherever the
    /// newer one connected, for the presence service to end those it holds. `None` on one
    /// node, whose presence service ends an older agent itself.
    pub fn replacements(&self) -> Option<broadcast::Receiver<Replaced>> {
        self.lease.as_ref().map(|_| self.replaced.subscribe())
    }

    /// The lease to forward through, when another node runs the engine.
    fn elsewhere(&self) -> Option<&dyn Lease> {
        self.lease
            .as_deref()
            .filter(|lease| lease.held().borrow().is_none())
    }

    async fn send(&self, input: Input) -> Result<(), StatusError> {
        if let Some(lease) = self.elsewhere() {
            super::relay::tell(lease, input).await;
            return Ok(());
        }
        self.inputs
            .send(input)
            .await
            .map_err(|_| StatusError::Log(EventLogError::Closed))
    }

    pub async fn connected(
        &self,
        conference_id: &str,
        session_id: &str,
        speaker_id: &str,
        connection: u64,
    ) -> Result<(), StatusError> {
        // Stamped before the send: time spent in the queue is not silence.
        let at = self.clock.now();
        self.send(Input::Connected {
            key: key(conference_id, session_id),
            speaker_id: speaker_id.to_owned(),
            connection,
            at,
        })
        .await
    }

    pub async fn heartbeat(
        &self,
        conference_id: &str,
        session_id: &str,
        speaker_id: &str,
        connection: u64,
        figures: Figures,
    ) -> Result<(), StatusError> {
        let at = self.clock.now();
        self.send(Input::Heartbeat {
            key: key(conference_id, session_id),
            speaker_id: speaker_id.to_owned(),
            connection,
            figures,
            at,
        })
        .await
    }

    pub async fn closed(
        &self,
        conference_id: &str,
        session_id: &str,
        speaker_id: &str,
        connection: u64,
    ) -> Result<(), StatusError> {
        let at = self.clock.now();
        self.send(Input::Closed {
            key: key(conference_id, session_id),
            speaker_id: speaker_id.to_owned(),
            connection,
            at,
        })
        .await
    }

    /// Runs a moderator command; returns the log position of its last event (or the current
    /// head when nothing changed), once it is stored. A command sent again with the same
    /// `request` id is answered with the first one's position, not carried out again.
    pub async fn command(
        &self,
        conference_id: &str,
        session_id: &str,
        command: Command,
        request: RequestId,
        by: &str,
    ) -> Result<u64, StatusError> {
        let at = self.clock.now();
        let request = request.uuid();
        if let Some(lease) = self.elsewhere() {
            let key = key(conference_id, session_id);
            return super::relay::ask(lease, key, command, request, by.to_owned()).await;
        }
        let (reply, answer) = oneshot::channel();
        self.send(Input::Command {
            key: key(conference_id, session_id),
            command,
            request,
            by: by.to_owned(),
            at,
            reply,
        })
        .await?;
        answer
            .await
            .map_err(|_| StatusError::Log(EventLogError::Closed))?
    }

    /// How many sessions this node's engine holds a machine for.
    pub async fn slots(&self) -> Result<usize, StatusError> {
        let (reply, answer) = oneshot::channel();
        self.inputs
            .send(Input::Slots { reply })
            .await
            .map_err(|_| StatusError::Log(EventLogError::Closed))?;
        answer
            .await
            .map_err(|_| StatusError::Log(EventLogError::Closed))
    }
}

pub(super) fn key(conference_id: &str, session_id: &str) -> Key {
    (conference_id.to_owned(), session_id.to_owned())
}
