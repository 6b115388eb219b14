//! The agenda's events in and out of the log: conversion between domain events and their
//! `podium.v1` protobuf form, the read model, and the command loop (decide against the read
//! model, append with the expected version, retry on conflict).

use std::{collections::BTreeMap, sync::Arc};

use chrono::{DateTime, Utc};
use podium_core::{Failback, FailoverPolicy, Hours};
use podium_eventlog::snapshot::{self, Snapshot, SnapshotError};
use podium_eventlog::{
    EventLog, EventLogError, ExpectedVersion, Filter, Follower, NewEvent, Projection, Projector,
    RecordedEvent, RequestId,
    personal::{self, PersonKind},
};
use podium_proto::{time::timestamp, v1 as pb};
use prost::Name;
use uuid::Uuid;

use crate::{
    domain::{
        Agenda, AgendaEvent, Command, LocalizedText, Meta, NewConference, Room, Session,
        SessionKind, Speaker, time::parse_zone,
    },
    error::AgendaError,
};

/// How many times a command is decided again after losing a race for its conference.
const MAX_ATTEMPTS: usize = 8;

/// How long a join code's claim holds without its conference: a creation in flight takes
/// milliseconds; a claim this old whose conference does not exist was refused, and its code is
/// free again.
const CLAIM_HOLDS: std::time::Duration = std::time::Duration::from_secs(60);

/// The stream of one join code's claims.
fn join_code_stream(code: &str) -> String {
    format!(
        "join-code/{}",
        podium_access::directory::normalise_join_code(code)
    )
}

/// The stream that holds a conference's agenda.
pub fn agenda_stream(conference_id: &str) -> String {
    format!("conference/{conference_id}/agenda")
}

/// The prefix shared by every stream of a conference (agenda, status, polls, ...).
pub fn conference_prefix(conference_id: &str) -> String {
    format!("conference/{conference_id}/")
}

/// The event types of the agenda.
pub fn agenda_event_types() -> Vec<String> {
    vec![
        pb::ConferenceCreated::full_name(),
        pb::RoomAdded::full_name(),
        pb::SpeakerAdded::full_name(),
        pb::SessionScheduled::full_name(),
        pb::PersonErased::full_name(),
        // The status service's, so that a session under way is not changed.
        pb::SessionWentLive::full_name(),
        pb::SessionEnded::full_name(),
    ]
}

/// The read model: every conference's agenda.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct AgendaModel(pub Agenda);

impl Snapshot for AgendaModel {
    // 2: each conference's sessions under way. 3: each session's revision.
    const VERSION: u32 = 3;

    fn save(&self) -> Result<Vec<u8>, SnapshotError> {
        snapshot::encode(self)
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        *self = snapshot::decode(bytes)?;
        Ok(())
    }
}

impl Projection for AgendaModel {
    fn apply(&mut self, event: &RecordedEvent) {
        if event.is::<pb::PersonErased>() {
            // Not an agenda event (another stream): what was opened of the speaker goes.
            if let Some(p) = personal::erased(event, PersonKind::Speaker)
                && let Some(speaker) = self
                    .0
                    .conferences
                    .get_mut(&p.conference_id)
                    .and_then(|c| c.speakers.get_mut(&p.person_id))
            {
                speaker.name = personal::ERASED.to_owned();
                speaker.organisation = String::new();
            }
            return;
        }
        if event.is::<pb::SessionWentLive>() || event.is::<pb::SessionEnded>() {
            let ended = event.is::<pb::SessionEnded>();
            let ids = if ended {
                event
                    .decode::<pb::SessionEnded>()
                    .map(|e| (e.conference_id, e.session_id))
            } else {
                event
                    .decode::<pb::SessionWentLive>()
                    .map(|e| (e.conference_id, e.session_id))
            };
            match ids {
                Ok((conference, session)) => self.0.session_under_way(&conference, &session, ended),
                Err(error) => {
                    tracing::error!(position = event.position, %error, "skipping a status event")
                }
            }
            return;
        }
        match decode(event) {
            Ok(Some(decoded)) => {
                let meta = Meta {
                    id: event.id,
                    version: event.stream_version,
                    position: event.position,
                    at: DateTime::<Utc>::from(event.recorded_at),
                };
                self.0.apply(decoded, meta);
            }
            Ok(None) => {}
            Err(error) => {
                tracing::error!(position = event.position, %error, "skipping agenda event")
            }
        }
    }
}

/// Commands and queries over the agenda.
#[derive(Clone)]
pub struct AgendaStore {
    log: Arc<dyn EventLog>,
    model: Projector<AgendaModel>,
}

impl AgendaStore {
    /// Replays the agenda from the log and keeps it live.
    pub async fn open(log: Arc<dyn EventLog>) -> Result<Self, EventLogError> {
        let filter = Filter {
            stream_prefix: None,
            event_types: agenda_event_types(),
        };
        let model = Projector::start("agenda", log.clone(), AgendaModel::default(), filter).await?;
        Ok(Self { log, model })
    }

    /// Registers the agenda's read model with `follower`, which replays it with every other
    /// model (and from its snapshot) once started.
    pub fn follow(log: Arc<dyn EventLog>, follower: &mut Follower) -> Self {
        let filter = Filter {
            stream_prefix: None,
            event_types: agenda_event_types(),
        };
        let model = follower.add_snapshotted("agenda", AgendaModel::default(), filter);
        Self { log, model }
    }

    /// Runs `f` on the current agenda.
    pub fn read<T>(&self, f: impl FnOnce(&Agenda) -> T) -> T {
        f(&self.model.read().0)
    }

    /// Decides `decide` against the current agenda of `conference_id` and appends its event
    /// under `request_id`. A request already applied is answered with its original position;
    /// a lost race is decided again on the newer state, and so, once, is a refusal for a
    /// session's revision (this node's model may be behind the revision the client read, or
    /// behind this very request's first attempt). Returns the event's log position, once the
    /// read model has applied it.
    pub async fn execute(
        &self,
        conference_id: &str,
        request_id: Uuid,
        decide: impl Fn(&Agenda) -> Result<AgendaEvent, AgendaError>,
    ) -> Result<u64, AgendaError> {
        let stream = agenda_stream(conference_id);
        let mut caught_up = false;
        for _ in 0..MAX_ATTEMPTS {
            let (decided, expected) = {
                let model = self.model.read();
                if let Some(position) = model.0.applied_request(conference_id, &request_id) {
                    return Ok(position);
                }
                let expected = model
                    .0
                    .conferences
                    .get(conference_id)
                    .map_or(ExpectedVersion::NoStream, |c| {
                        ExpectedVersion::Exact(c.version)
                    });
                (decide(&model.0), expected)
            };
            let event = match decided {
                // A revision this model has not seen yet, or this very request written and
                // its answer lost, on a node behind the log: decide again once caught up.
                Err(AgendaError::Changed(_)) if !caught_up => {
                    caught_up = true;
                    self.catch_up().await?;
                    continue;
                }
                decided => decided?,
            };
            match self
                .log
                .append(&stream, expected, vec![encode(request_id, &event)])
                .await
            {
                Ok(outcome) => {
                    self.model.wait_for(outcome.last_position).await?;
                    return Ok(outcome.last_position);
                }
                // Someone else wrote first: catch up with the log and decide again.
                Err(EventLogError::Conflict { .. }) => self.catch_up().await?,
                Err(error) => return Err(error.into()),
            }
        }
        Err(AgendaError::Contended(conference_id.to_owned()))
    }

    /// Waits until the read model has applied every event in the log now (on a cluster,
    /// those other nodes appended too).
    async fn catch_up(&self) -> Result<(), AgendaError> {
        Ok(self.model.catch_up().await?)
    }

    /// Whether the write under `request_id` to `conference_id` is already in the agenda: a
    /// retry, to be answered as the first time rather than decided again.
    pub fn applied(&self, conference_id: &str, request_id: RequestId) -> bool {
        self.model
            .read()
            .0
            .applied_request(conference_id, &request_id.uuid())
            .is_some()
    }

    /// Claims `code` for `conference_id`, before the conference is created:
    /// through the code's own stream with an expected version, so that of two conferences
    /// created at once with one code, exactly one gets it (the read model alone cannot decide
    /// that: the two conferences are different streams). A retry finds its own claim.
    pub async fn claim_join_code(
        &self,
        conference_id: &str,
        code: &str,
    ) -> Result<(), AgendaError> {
        let stream = join_code_stream(code);
        let taken = || {
            AgendaError::AlreadyExists(
                "another conference uses this join code; choose another".into(),
            )
        };
        for _ in 0..MAX_ATTEMPTS {
            let last = podium_eventlog::read_whole_stream(self.log.as_ref(), &stream)
                .await?
                .pop();
            let expected = match &last {
                None => ExpectedVersion::NoStream,
                Some(claim) => {
                    let claimed: pb::JoinCodeClaimed =
                        claim.decode().map_err(|e| EventLogError::Corrupt {
                            position: claim.position,
                            reason: e.to_string(),
                        })?;
                    if claimed.conference_id == conference_id {
                        return Ok(());
                    }
                    // Held by a conference that has this code (not only by one with that id: a
                    // creation retried with another code leaves its first claim behind).
                    let wanted = podium_access::directory::normalise_join_code(code);
                    let exists = self.read(|a| {
                        a.conferences.get(&claimed.conference_id).is_some_and(|c| {
                            podium_access::directory::normalise_join_code(&c.info.join_code)
                                == wanted
                        })
                    });
                    let fresh = claim
                        .recorded_at
                        .elapsed()
                        .map_or(true, |age| age < CLAIM_HOLDS);
                    if exists || fresh {
                        return Err(taken());
                    }
                    ExpectedVersion::Exact(claim.stream_version)
                }
            };
            // A fresh id: a retry is recognised above by the claim's conference, and an id of
            // the request's own could be answered by the log as a duplicate of an earlier
            // claim that has since been superseded, writing nothing.
            let event = NewEvent::new(
                Uuid::now_v7(),
                &pb::JoinCodeClaimed {
                    join_code: code.to_owned(),
                    conference_id: conference_id.to_owned(),
                },
            );
            match self.log.append(&stream, expected, vec![event]).await {
                Ok(_) => return Ok(()),
                // Another claim came first: look at it.
                Err(EventLogError::Conflict { .. }) => continue,
                Err(error) => return Err(error.into()),
            }
        }
        Err(taken())
    }

    /// Runs a write RPC's command under its request id: the one path from a parsed request
    /// to the log. Returns the event's log position, as [`AgendaStore::execute`].
    /// The session the event at `position` scheduled, if it is a `SessionScheduled`: a
    /// session write's own answer, whatever was written after it.
    pub async fn scheduled_at(&self, position: u64) -> Result<Option<Session>, AgendaError> {
        let events = self.log.read_all(position, 1).await?;
        let event = events.into_iter().find(|e| e.position == position);
        Ok(match event.as_ref().map(decode) {
            Some(Ok(Some(AgendaEvent::SessionScheduled { session, .. }))) => Some(session),
            _ => None,
        })
    }

    pub async fn run(&self, request_id: RequestId, command: &Command) -> Result<u64, AgendaError> {
        self.execute(command.conference_id(), request_id.uuid(), |agenda| {
            command.decide(agenda)
        })
        .await
    }
}

// ---- Domain <-> protobuf ----

pub fn text_to_proto(text: &LocalizedText) -> pb::LocalizedText {
    pb::LocalizedText {
        text: text.0.clone().into_iter().collect(),
    }
}

pub fn kind_to_proto(kind: SessionKind) -> pb::SessionKind {
    match kind {
        SessionKind::Talk => pb::SessionKind::Talk,
        SessionKind::Panel => pb::SessionKind::Panel,
        SessionKind::Breakout => pb::SessionKind::Breakout,
        SessionKind::Pitch => pb::SessionKind::Pitch,
    }
}

pub fn kind_from_proto(kind: i32) -> Option<SessionKind> {
    match pb::SessionKind::try_from(kind).ok()? {
        pb::SessionKind::Unspecified | pb::SessionKind::Talk => Some(SessionKind::Talk),
        pb::SessionKind::Panel => Some(SessionKind::Panel),
        pb::SessionKind::Breakout => Some(SessionKind::Breakout),
        pb::SessionKind::Pitch => Some(SessionKind::Pitch),
    }
}

pub fn failover_to_proto(p: &FailoverPolicy) -> pb::FailoverPolicy {
    pb::FailoverPolicy {
        failover_after_ms: p.failover_after_ms,
        failback: match p.failback {
            Failback::Sticky => pb::FailbackMode::Sticky,
            Failback::ReturnWhenStable => pb::FailbackMode::ReturnWhenStable,
        } as i32,
        clear_after_ms: p.clear_after_ms,
        max_loss_percent: p.max_loss_percent,
        max_round_trip_ms: p.max_round_trip_ms,
        poor_for_ms: p.poor_for_ms,
    }
}

/// Fills every 0 with its default. `None` for an unknown failback mode.
pub fn failover_from_proto(p: &pb::FailoverPolicy) -> Option<FailoverPolicy> {
    let failback = match pb::FailbackMode::try_from(p.failback).ok()? {
        pb::FailbackMode::Unspecified | pb::FailbackMode::Sticky => Failback::Sticky,
        pb::FailbackMode::ReturnWhenStable => Failback::ReturnWhenStable,
    };
    Some(
        FailoverPolicy {
            failover_after_ms: p.failover_after_ms,
            failback,
            clear_after_ms: p.clear_after_ms,
            max_loss_percent: p.max_loss_percent,
            max_round_trip_ms: p.max_round_trip_ms,
            poor_for_ms: p.poor_for_ms,
        }
        .or_defaults(),
    )
}

fn encode(request_id: Uuid, event: &AgendaEvent) -> NewEvent {
    match event {
        AgendaEvent::ConferenceCreated(c) => NewEvent::new(
            request_id,
            &pb::ConferenceCreated {
                conference_id: c.id.clone(),
                title: Some(text_to_proto(&c.title)),
                default_language: c.default_language.clone(),
                time_zone: c.zone.name().to_owned(),
                join_code: c.join_code.clone(),
                created_by: c.created_by.clone(),
            },
        ),
        AgendaEvent::RoomAdded {
            conference_id,
            room,
        } => NewEvent::new(
            request_id,
            &pb::RoomAdded {
                conference_id: conference_id.clone(),
                room_id: room.id.clone(),
                name: room.name.clone(),
                capacity: room.capacity,
            },
        ),
        AgendaEvent::SpeakerAdded {
            conference_id,
            speaker,
        } => NewEvent::new(
            request_id,
            &pb::SpeakerAdded {
                conference_id: conference_id.clone(),
                speaker_id: speaker.id.clone(),
                name: speaker.name.clone(),
                organisation: speaker.organisation.clone(),
                time_zone: speaker.zone.name().to_owned(),
                available_from_minute: speaker.hours.from,
                available_until_minute: speaker.hours.until,
                // Sealed by the log under the speaker's key.
                personal: None,
            },
        ),
        AgendaEvent::SessionScheduled {
            conference_id,
            session,
        } => NewEvent::new(
            request_id,
            &pb::SessionScheduled {
                conference_id: conference_id.clone(),
                session_id: session.id.clone(),
                title: Some(text_to_proto(&session.title)),
                kind: kind_to_proto(session.kind) as i32,
                start: Some(timestamp(session.start)),
                end: Some(timestamp(session.end)),
                room_id: session.room_id.clone(),
                speaker_ids: session.speaker_ids.clone(),
                backup_speaker_ids: session.backup_speaker_ids.clone(),
                failover: Some(failover_to_proto(&session.failover)),
                revision: session.revision,
            },
        ),
    }
}

fn stored_text(text: Option<pb::LocalizedText>) -> LocalizedText {
    LocalizedText(
        text.map(|t| t.text.into_iter().collect::<BTreeMap<_, _>>())
            .unwrap_or_default(),
    )
}

fn stored_time(t: Option<prost_types::Timestamp>) -> Result<DateTime<Utc>, String> {
    if t.is_none() {
        return Err("missing time".into());
    }
    podium_proto::time::instant(&t).ok_or_else(|| "time out of range".into())
}

/// The domain form of a stored agenda event; `None` for other event types.
pub fn decode(event: &RecordedEvent) -> Result<Option<AgendaEvent>, String> {
    let zone = |name: &str| parse_zone("time_zone", name).map_err(|e| e.to_string());
    let decoded = if event.is::<pb::ConferenceCreated>() {
        let c = event
            .decode::<pb::ConferenceCreated>()
            .map_err(|e| e.to_string())?;
        AgendaEvent::ConferenceCreated(NewConference {
            zone: zone(&c.time_zone)?,
            id: c.conference_id,
            title: stored_text(c.title),
            default_language: c.default_language,
            join_code: c.join_code,
            created_by: c.created_by,
        })
    } else if event.is::<pb::RoomAdded>() {
        let r = event.decode::<pb::RoomAdded>().map_err(|e| e.to_string())?;
        AgendaEvent::RoomAdded {
            conference_id: r.conference_id,
            room: Room {
                id: r.room_id,
                name: r.name,
                capacity: r.capacity,
            },
        }
    } else if event.is::<pb::SpeakerAdded>() {
        let s = event
            .decode::<pb::SpeakerAdded>()
            .map_err(|e| e.to_string())?;
        AgendaEvent::SpeakerAdded {
            speaker: Speaker {
                zone: zone(&s.time_zone)?,
                hours: Hours::new(s.available_from_minute, s.available_until_minute)
                    .map_err(|e| e.to_string())?,
                id: s.speaker_id,
                name: s.name,
                organisation: s.organisation,
            },
            conference_id: s.conference_id,
        }
    } else if event.is::<pb::SessionScheduled>() {
        let s = event
            .decode::<pb::SessionScheduled>()
            .map_err(|e| e.to_string())?;
        AgendaEvent::SessionScheduled {
            session: Session {
                id: s.session_id,
                title: stored_text(s.title),
                kind: kind_from_proto(s.kind).ok_or("unknown session kind")?,
                start: stored_time(s.start)?,
                end: stored_time(s.end)?,
                room_id: s.room_id,
                speaker_ids: s.speaker_ids,
                backup_speaker_ids: s.backup_speaker_ids,
                failover: failover_from_proto(&s.failover.unwrap_or_default())
                    .ok_or("unknown failback mode")?,
                revision: s.revision,
            },
            conference_id: s.conference_id,
        }
    } else {
        return Ok(None);
    };
    Ok(Some(decoded))
}
