//! The engine: the one task that owns every session's [`Machine`], feeds it heartbeats, closes,
//! commands and timer ticks, and appends what it decides to the session's status stream before
//! anyone sees it; and the [`Clock`] it reads the time from.
//!
//! The engine is the only writer of `conference/<c>/session/<s>/status`; it loads a machine
//! from that stream the first time it needs it and appends with the exact expected version. It
//! sleeps until the earliest deadline any machine reports, so a rule fires at its time, not at
//! the next poll.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use podium_eventlog::{EventLog, EventLogError, ExpectedVersion, Projector, read_whole_stream};
use tokio::{
    sync::{mpsc, oneshot},
    time::Instant,
};
use uuid::Uuid;

use crate::{
    codec::{decode, encode, status_stream},
    domain::{Context, Figures, Lifecycle, Machine, Millis, Refusal, StatusEvent, Target},
    error::StatusError,
    model::StatusModel,
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

type Key = (String, String);

enum Input {
    Connected {
        key: Key,
        speaker_id: String,
        connection: u64,
    },
    Heartbeat {
        key: Key,
        speaker_id: String,
        connection: u64,
        figures: Figures,
    },
    Closed {
        key: Key,
        speaker_id: String,
        connection: u64,
    },
    Command {
        key: Key,
        command: Command,
        by: String,
        reply: oneshot::Sender<Result<u64, StatusError>>,
    },
}

/// The handle services use to talk to the engine. Cheap to clone.
#[derive(Clone, Debug)]
pub struct EngineHandle {
    inputs: mpsc::Sender<Input>,
    clock: Clock,
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

    async fn send(&self, input: Input) -> Result<(), StatusError> {
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
        self.send(Input::Connected {
            key: key(conference_id, session_id),
            speaker_id: speaker_id.to_owned(),
            connection,
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
        self.send(Input::Heartbeat {
            key: key(conference_id, session_id),
            speaker_id: speaker_id.to_owned(),
            connection,
            figures,
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
        self.send(Input::Closed {
            key: key(conference_id, session_id),
            speaker_id: speaker_id.to_owned(),
            connection,
        })
        .await
    }

    /// Runs a moderator command; returns the log position of its last event (or the current
    /// head when nothing changed).
    pub async fn command(
        &self,
        conference_id: &str,
        session_id: &str,
        command: Command,
        by: &str,
    ) -> Result<u64, StatusError> {
        let (reply, answer) = oneshot::channel();
        self.send(Input::Command {
            key: key(conference_id, session_id),
            command,
            by: by.to_owned(),
            reply,
        })
        .await?;
        answer
            .await
            .map_err(|_| StatusError::Log(EventLogError::Closed))?
    }
}

fn key(conference_id: &str, session_id: &str) -> Key {
    (conference_id.to_owned(), session_id.to_owned())
}

struct Slot {
    machine: Machine,
    /// Version of the last event of the status stream.
    version: Option<u64>,
}

/// The engine task's state.
pub struct Engine {
    log: Arc<dyn EventLog>,
    model: Projector<StatusModel>,
    clock: Clock,
    slots: HashMap<Key, Slot>,
}

impl Engine {
    /// Loads every live session's machine, gives each the reconnect grace, and starts the task.
    pub async fn spawn(
        log: Arc<dyn EventLog>,
        model: Projector<StatusModel>,
        clock: Clock,
        grace: Millis,
    ) -> Result<EngineHandle, StatusError> {
        let mut engine = Engine {
            log,
            model,
            clock,
            slots: HashMap::new(),
        };
        let live: Vec<Key> = engine
            .model
            .read()
            .conferences
            .values()
            .flat_map(|c| {
                c.live
                    .iter()
                    .filter(|(_, l)| l.lifecycle == Lifecycle::Live)
                    .map(|(s, _)| key(&c.id, s))
                    .collect::<Vec<_>>()
            })
            .collect();
        let now = clock.now();
        for k in &live {
            engine.load(k).await?;
            if let Some(slot) = engine.slots.get_mut(k) {
                slot.machine.restarted(now, grace);
            }
        }
        if !live.is_empty() {
            tracing::info!(
                sessions = live.len(),
                grace_ms = grace,
                "live sessions restored; reconnect grace before any failover"
            );
        }
        let (inputs, rx) = mpsc::channel(1024);
        tokio::spawn(engine.run(rx));
        Ok(EngineHandle { inputs, clock })
    }

    async fn load(&mut self, k: &Key) -> Result<(), StatusError> {
        if self.slots.contains_key(k) {
            return Ok(());
        }
        let events = read_whole_stream(self.log.as_ref(), &status_stream(&k.0, &k.1)).await?;
        let mut machine = Machine::default();
        for event in &events {
            match decode(event) {
                Ok(Some((_, _, status))) => machine.live.apply(&status),
                Ok(None) => {}
                Err(error) => {
                    tracing::error!(position = event.position, %error, "skipping status event")
                }
            }
        }
        let version = events.last().map(|e| e.stream_version);
        self.slots.insert(k.clone(), Slot { machine, version });
        Ok(())
    }

    async fn run(mut self, mut inputs: mpsc::Receiver<Input>) {
        loop {
            let deadline = self.next_deadline();
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(self.clock.instant(at)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                input = inputs.recv() => match input {
                    Some(input) => self.handle(input).await,
                    None => break,
                },
                () = sleep => self.tick().await,
            }
        }
        tracing::debug!("status engine stopped");
    }

    fn next_deadline(&self) -> Option<Millis> {
        let model = self.model.read();
        self.slots
            .iter()
            .filter_map(|(k, slot)| {
                model
                    .context(&k.0, &k.1)
                    .and_then(|ctx| slot.machine.next_deadline(&ctx))
            })
            .min()
    }

    async fn tick(&mut self) {
        let now = self.clock.now();
        let keys: Vec<Key> = self.slots.keys().cloned().collect();
        for k in keys {
            let _ = self
                .decide(&k, |machine, ctx| Ok(machine.tick(ctx, now)))
                .await;
        }
    }

    async fn handle(&mut self, input: Input) {
        let now = self.clock.now();
        match input {
            Input::Connected {
                key,
                speaker_id,
                connection,
            } => {
                let _ = self
                    .decide(&key, |m, _| {
                        m.connected(&speaker_id, connection, now);
                        Ok(Vec::new())
                    })
                    .await;
            }
            Input::Heartbeat {
                key,
                speaker_id,
                connection,
                figures,
            } => {
                let _ = self
                    .decide(&key, |m, ctx| {
                        Ok(m.heartbeat(ctx, &speaker_id, connection, figures, now))
                    })
                    .await;
            }
            Input::Closed {
                key,
                speaker_id,
                connection,
            } => {
                let _ = self
                    .decide(&key, |m, ctx| {
                        Ok(m.closed(ctx, &speaker_id, connection, now))
                    })
                    .await;
            }
            Input::Command {
                key,
                command,
                by,
                reply,
            } => {
                let result = self
                    .decide(&key, |m, ctx| match &command {
                        Command::Start => m.start(ctx, now, &by),
                        Command::End => m.end(ctx, now, &by),
                        Command::Switch(target) => m.switch(ctx, target, now, &by),
                        Command::Pin(pinned) => Ok(m.pin(ctx, *pinned, now, &by)),
                    })
                    .await;
                let _ = reply.send(result);
            }
        }
    }

    /// Runs `f` on the session's machine, appends what it decided, and keeps the machine as it
    /// was if the append fails. Returns the position of the last event (or the log head).
    async fn decide(
        &mut self,
        k: &Key,
        f: impl FnOnce(&mut Machine, &Context) -> Result<Vec<StatusEvent>, Refusal>,
    ) -> Result<u64, StatusError> {
        let Some(ctx) = self.model.read().context(&k.0, &k.1) else {
            return Err(StatusError::NotFound(format!("session {} not found", k.1)));
        };
        self.load(k).await?;
        let Some(slot) = self.slots.get_mut(k) else {
            return Err(StatusError::NotFound(format!("session {} not found", k.1)));
        };
        let before = slot.machine.clone();
        let events = f(&mut slot.machine, &ctx).map_err(|refusal| match refusal {
            Refusal::UnknownSpeaker(m) | Refusal::UnknownRecording(m) => StatusError::NotFound(m),
            other => StatusError::FailedPrecondition(other.to_string()),
        })?;
        if events.is_empty() {
            return Ok(self.log.head().saturating_sub(1));
        }
        let expected = slot
            .version
            .map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
        let batch = events
            .iter()
            .map(|e| encode(Uuid::new_v4(), &k.0, &k.1, e))
            .collect();
        match self
            .log
            .append(&status_stream(&k.0, &k.1), expected, batch)
            .await
        {
            Ok(outcome) => {
                slot.version = Some(outcome.last_version);
                for event in &events {
                    if let StatusEvent::Switched { to, cause, .. } = event {
                        tracing::info!(conference = %k.0, session = %k.1, source = ?to.kind, offset_ms = to.offset_ms, cause = ?cause, "source switched");
                    }
                }
                Ok(outcome.last_position)
            }
            Err(error) => {
                tracing::error!(conference = %k.0, session = %k.1, %error, "status append failed; decision dropped");
                slot.machine = before;
                if matches!(error, EventLogError::Conflict { .. }) {
                    // Someone else wrote this stream: reload it next time.
                    self.slots.remove(k);
                }
                Err(error.into())
            }
        }
    }
}
