//! A write to the agenda as one value: each write RPC parses its request into a [`Command`]
//! once, and [`Command::decide`] turns it into an event (or a refusal) against the agenda as
//! it is when the store runs it, so every write goes through the same decide-and-append path.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use podium_core::FailoverPolicy;

use super::{
    Agenda, AgendaEvent, Conference, LocalizedText, NewConference, Room, Session, SessionKind,
    Speaker, add_room, add_speaker, create_conference, reschedule_session, schedule_session,
};
use crate::error::AgendaError;

/// A session to schedule. Its title is checked when decided: which language it must have
/// depends on the conference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    pub id: String,
    pub titles: BTreeMap<String, String>,
    pub kind: SessionKind,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub room_id: String,
    pub speaker_ids: Vec<String>,
    pub backup_speaker_ids: Vec<String>,
    pub failover: FailoverPolicy,
}

/// A write to the agenda, checked as far as it can be without the agenda's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    CreateConference(NewConference),
    AddRoom {
        conference_id: String,
        room: Room,
    },
    AddSpeaker {
        conference_id: String,
        speaker: Speaker,
    },
    ScheduleSession {
        conference_id: String,
        session: NewSession,
    },
    /// A scheduled session's facts replaced; `session.id` names it. Refused if the session has
    /// been changed since revision `expected_revision`, where given.
    RescheduleSession {
        conference_id: String,
        session: NewSession,
        expected_revision: Option<u32>,
    },
}

impl Command {
    /// The conference (and so the stream) the command writes to.
    pub fn conference_id(&self) -> &str {
        match self {
            Command::CreateConference(new) => &new.id,
            Command::AddRoom { conference_id, .. }
            | Command::AddSpeaker { conference_id, .. }
            | Command::ScheduleSession { conference_id, .. }
            | Command::RescheduleSession { conference_id, .. } => conference_id,
        }
    }

    /// The event this command makes of `agenda`, or why it is refused.
    pub fn decide(&self, agenda: &Agenda) -> Result<AgendaEvent, AgendaError> {
        match self {
            Command::CreateConference(new) => create_conference(agenda, new.clone()),
            Command::AddRoom {
                conference_id,
                room,
            } => add_room(agenda.conference(conference_id)?, room.clone()),
            Command::AddSpeaker {
                conference_id,
                speaker,
            } => add_speaker(agenda.conference(conference_id)?, speaker.clone()),
            Command::ScheduleSession {
                conference_id,
                session,
            } => {
                let conference = agenda.conference(conference_id)?;
                schedule_session(conference, session.validated(conference)?)
            }
            Command::RescheduleSession {
                conference_id,
                session,
                expected_revision,
            } => {
                let conference = agenda.conference(conference_id)?;
                let session = session.validated(conference)?;
                reschedule_session(conference, session, *expected_revision)
            }
        }
    }
}

impl NewSession {
    /// The session, its title checked against `conference`'s default language.
    fn validated(&self, conference: &Conference) -> Result<Session, AgendaError> {
        let title = LocalizedText::validated(
            "title",
            self.titles.clone(),
            &conference.info.default_language,
        )?;
        Ok(Session {
            id: self.id.clone(),
            title,
            kind: self.kind,
            start: self.start,
            end: self.end,
            room_id: self.room_id.clone(),
            speaker_ids: self.speaker_ids.clone(),
            backup_speaker_ids: self.backup_speaker_ids.clone(),
            failover: self.failover,
            revision: 0,
        })
    }
}
