//! Status events in and out of the log, and the engine: the one task that owns every session's
//! [`Machine`], feeds it heartbeats, closes, commands and timer ticks, and appends what it
//! decides to the session's status stream before anyone sees it.
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

use podium_eventlog::{
    EventLog, EventLogError, ExpectedVersion, NewEvent, Projector, RecordedEvent, read_whole_stream,
};
use podium_proto::v1 as pb;
use tokio::{
    sync::{mpsc, oneshot},
    time::Instant,
};
use uuid::Uuid;

use crate::{
    domain::{
        Alert, AlertKind, Cause, Context, Figures, LinkState, Machine, Millis, RecordingRef,
        Refusal, Source, SourceKind, StatusEvent, Target,
    },
    error::StatusError,
    model::{StatusModel, millis, timestamp},
};

/// The stream of a speaker's green-room test connections.
pub fn presence_stream(conference_id: &str, speaker_id: &str) -> String {
    format!("conference/{conference_id}/speaker/{speaker_id}/presence")
}

/// The stream of a session's status events.
pub fn status_stream(conference_id: &str, session_id: &str) -> String {
    format!("conference/{conference_id}/session/{session_id}/status")
}

// ---- Domain <-> protobuf ----

pub fn source_kind_to_proto(kind: SourceKind) -> pb::SourceKind {
    match kind {
        SourceKind::Speaker => pb::SourceKind::Speaker,
        SourceKind::Recording => pb::SourceKind::Recording,
        SourceKind::BackupSpeaker => pb::SourceKind::BackupSpeaker,
        SourceKind::Slate => pb::SourceKind::Slate,
    }
}

pub fn source_to_proto(s: &Source) -> pb::Source {
    pb::Source {
        kind: source_kind_to_proto(s.kind) as i32,
        speaker_id: s.speaker_id.clone(),
        recording_id: s.recording_id.clone(),
        offset_ms: s.offset_ms,
        recording_sha256: s.sha256.clone(),
        since: Some(timestamp(s.since)),
    }
}

fn source_from_proto(s: Option<pb::Source>) -> Result<Source, String> {
    let s = s.ok_or("source missing")?;
    let kind = match pb::SourceKind::try_from(s.kind).map_err(|_| "unknown source kind")? {
        pb::SourceKind::Speaker => SourceKind::Speaker,
        pb::SourceKind::Recording => SourceKind::Recording,
        pb::SourceKind::BackupSpeaker => SourceKind::BackupSpeaker,
        pb::SourceKind::Slate => SourceKind::Slate,
        pb::SourceKind::Unspecified => return Err("source kind unspecified".into()),
    };
    Ok(Source {
        kind,
        speaker_id: s.speaker_id,
        recording_id: s.recording_id,
        offset_ms: s.offset_ms,
        sha256: s.recording_sha256,
        since: millis(&s.since),
    })
}

pub fn cause_to_proto(cause: Cause) -> pb::Cause {
    match cause {
        Cause::Moderator => pb::Cause::Moderator,
        Cause::HeartbeatTimeout => pb::Cause::HeartbeatTimeout,
        Cause::StreamClosed => pb::Cause::StreamClosed,
        Cause::PoorLink => pb::Cause::PoorLink,
        Cause::LinkStable => pb::Cause::LinkStable,
        Cause::SessionStarted => pb::Cause::SessionStarted,
    }
}

fn cause_from_proto(cause: i32) -> Result<Cause, String> {
    Ok(
        match pb::Cause::try_from(cause).map_err(|_| "unknown cause")? {
            pb::Cause::Moderator => Cause::Moderator,
            pb::Cause::HeartbeatTimeout => Cause::HeartbeatTimeout,
            pb::Cause::StreamClosed => Cause::StreamClosed,
            pb::Cause::PoorLink => Cause::PoorLink,
            pb::Cause::LinkStable => Cause::LinkStable,
            pb::Cause::SessionStarted => Cause::SessionStarted,
            pb::Cause::Unspecified => return Err("cause unspecified".into()),
        },
    )
}

pub fn link_state_to_proto(state: LinkState) -> pb::LinkState {
    match state {
        LinkState::Offline => pb::LinkState::Offline,
        LinkState::Healthy => pb::LinkState::Healthy,
        LinkState::Poor => pb::LinkState::Poor,
        LinkState::Lost => pb::LinkState::Lost,
    }
}

fn link_state_from_proto(state: i32) -> Result<LinkState, String> {
    Ok(
        match pb::LinkState::try_from(state).map_err(|_| "unknown link state")? {
            pb::LinkState::Offline | pb::LinkState::Unspecified => LinkState::Offline,
            pb::LinkState::Healthy => LinkState::Healthy,
            pb::LinkState::Poor => LinkState::Poor,
            pb::LinkState::Lost => LinkState::Lost,
        },
    )
}

pub fn figures_to_proto(f: &Figures) -> pb::LinkFigures {
    pb::LinkFigures {
        round_trip_ms: f.round_trip_ms,
        packet_loss_percent: f.loss_percent,
        upstream_kbps: f.upstream_kbps,
    }
}

pub fn figures_from_proto(f: Option<pb::LinkFigures>) -> Figures {
    let f = f.unwrap_or_default();
    let loss = if f.packet_loss_percent.is_finite() {
        f.packet_loss_percent.clamp(0.0, 100.0)
    } else {
        0.0
    };
    Figures {
        round_trip_ms: f.round_trip_ms,
        loss_percent: loss,
        upstream_kbps: f.upstream_kbps,
    }
}

pub fn alert_to_proto(a: &Alert) -> pb::Alert {
    pb::Alert {
        kind: match a.kind {
            AlertKind::NoRecording => pb::AlertKind::NoRecording,
            AlertKind::Failover => pb::AlertKind::Failover,
        } as i32,
        message: a.message.clone(),
        at: Some(timestamp(a.at)),
    }
}

fn alert_from_proto(a: Option<pb::Alert>) -> Result<Alert, String> {
    let a = a.ok_or("alert missing")?;
    let kind = match pb::AlertKind::try_from(a.kind).map_err(|_| "unknown alert kind")? {
        pb::AlertKind::NoRecording => AlertKind::NoRecording,
        pb::AlertKind::Failover | pb::AlertKind::Unspecified => AlertKind::Failover,
    };
    Ok(Alert {
        kind,
        message: a.message,
        at: millis(&a.at),
    })
}

/// The stored form of a status event.
pub fn encode(id: Uuid, conference_id: &str, session_id: &str, event: &StatusEvent) -> NewEvent {
    let (c, s) = (conference_id.to_owned(), session_id.to_owned());
    match event {
        StatusEvent::WentLive { source, at, by } => NewEvent::new(
            id,
            &pb::SessionWentLive {
                conference_id: c,
                session_id: s,
                source: Some(source_to_proto(source)),
                at: Some(timestamp(*at)),
                by: by.clone(),
            },
        ),
        StatusEvent::Ended { at, by } => NewEvent::new(
            id,
            &pb::SessionEnded {
                conference_id: c,
                session_id: s,
                at: Some(timestamp(*at)),
                by: by.clone(),
            },
        ),
        StatusEvent::Switched {
            from,
            to,
            cause,
            figures,
            at,
            by,
        } => NewEvent::new(
            id,
            &pb::SourceSwitched {
                conference_id: c,
                session_id: s,
                from: Some(source_to_proto(from)),
                to: Some(source_to_proto(to)),
                cause: cause_to_proto(*cause) as i32,
                figures: Some(figures_to_proto(figures)),
                at: Some(timestamp(*at)),
                by: by.clone(),
            },
        ),
        StatusEvent::Pinned { pinned, at, by } => NewEvent::new(
            id,
            &pb::SourcePinned {
                conference_id: c,
                session_id: s,
                pinned: *pinned,
                at: Some(timestamp(*at)),
                by: by.clone(),
            },
        ),
        StatusEvent::Link {
            speaker_id,
            state,
            figures,
            at,
        } => NewEvent::new(
            id,
            &pb::LinkChanged {
                conference_id: c,
                session_id: s,
                speaker_id: speaker_id.clone(),
                state: link_state_to_proto(*state) as i32,
                figures: Some(figures_to_proto(figures)),
                at: Some(timestamp(*at)),
            },
        ),
        StatusEvent::Alert(alert) => NewEvent::new(
            id,
            &pb::AlertRaised {
                conference_id: c,
                session_id: s,
                alert: Some(alert_to_proto(alert)),
            },
        ),
    }
}

/// The domain form of a stored status event, with its conference and session; `None` for
/// other types.
pub fn decode(event: &RecordedEvent) -> Result<Option<(String, String, StatusEvent)>, String> {
    let e = |e: podium_eventlog::DecodeError| e.to_string();
    let decoded = if event.is::<pb::SessionWentLive>() {
        let m = event.decode::<pb::SessionWentLive>().map_err(e)?;
        (
            m.conference_id,
            m.session_id,
            StatusEvent::WentLive {
                source: source_from_proto(m.source)?,
                at: millis(&m.at),
                by: m.by,
            },
        )
    } else if event.is::<pb::SessionEnded>() {
        let m = event.decode::<pb::SessionEnded>().map_err(e)?;
        (
            m.conference_id,
            m.session_id,
            StatusEvent::Ended {
                at: millis(&m.at),
                by: m.by,
            },
        )
    } else if event.is::<pb::SourceSwitched>() {
        let m = event.decode::<pb::SourceSwitched>().map_err(e)?;
        let switched = StatusEvent::Switched {
            from: source_from_proto(m.from)?,
            to: source_from_proto(m.to)?,
            cause: cause_from_proto(m.cause)?,
            figures: figures_from_proto(m.figures),
            at: millis(&m.at),
            by: m.by,
        };
        (m.conference_id, m.session_id, switched)
    } else if event.is::<pb::SourcePinned>() {
        let m = event.decode::<pb::SourcePinned>().map_err(e)?;
        (
            m.conference_id,
            m.session_id,
            StatusEvent::Pinned {
                pinned: m.pinned,
                at: millis(&m.at),
                by: m.by,
            },
        )
    } else if event.is::<pb::LinkChanged>() {
        let m = event.decode::<pb::LinkChanged>().map_err(e)?;
        let link = StatusEvent::Link {
            speaker_id: m.speaker_id,
            state: link_state_from_proto(m.state)?,
            figures: figures_from_proto(m.figures),
            at: millis(&m.at),
        };
        (m.conference_id, m.session_id, link)
    } else if event.is::<pb::AlertRaised>() {
        let m = event.decode::<pb::AlertRaised>().map_err(e)?;
        (
            m.conference_id,
            m.session_id,
            StatusEvent::Alert(alert_from_proto(m.alert)?),
        )
    } else {
        return Ok(None);
    };
    Ok(Some(decoded))
}

/// Folds a stored status event into the read model.
pub fn apply_live_event(model: &mut StatusModel, event: &RecordedEvent) -> Result<(), String> {
    if let Some((conference_id, session_id, status)) = decode(event)?
        && let Some(conference) = model.conferences.get_mut(&conference_id)
    {
        conference
            .changed
            .insert(session_id.clone(), event.position);
        conference
            .live
            .entry(session_id)
            .or_default()
            .apply(&status);
    }
    Ok(())
}

/// The machine's view of a session, from the read model.
pub fn context(model: &StatusModel, conference_id: &str, session_id: &str) -> Option<Context> {
    let conference = model.conference(conference_id)?;
    let facts = conference.sessions.get(session_id)?;
    let recordings = conference
        .recordings
        .get(session_id)
        .map(|list| {
            list.iter()
                .map(|r| RecordingRef {
                    id: r.id.clone(),
                    sha256: r.sha256.clone(),
                    duration_ms: r.duration_ms,
                })
                .collect()
        })
        .unwrap_or_default();
    Some(Context {
        session_id: session_id.to_owned(),
        policy: facts.policy,
        speakers: facts.speaker_ids.clone(),
        backups: facts.backup_speaker_ids.clone(),
        recordings,
    })
}

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
                    .filter(|(_, l)| l.lifecycle == crate::domain::Lifecycle::Live)
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
                context(&model, &k.0, &k.1).and_then(|ctx| slot.machine.next_deadline(&ctx))
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
        let Some(ctx) = context(&self.model.read(), &k.0, &k.1) else {
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
