//! The agenda's rules, with no storage or transport: the state of each conference (a fold of its
//! events), and the decisions that turn a command into an event or a refusal.
//!
//! **Each conference is one aggregate**, stream `conference/<id>/agenda`: rooms, speakers and
//! sessions live inside it, so that "no room or speaker is booked twice" is checked against one
//! consistent state and enforced by the stream's expected version.

pub mod command;
pub mod time;

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use podium_core::{FailoverPolicy, Hours, zoned};
use podium_text::Limit;
pub use podium_text::is_language_tag;

pub use command::{Command, NewSession};

use crate::error::AgendaError;

/// Longest title, in characters, per language.
pub const MAX_TITLE_CHARS: usize = 200;
/// A title in one language: one line, [`MAX_TITLE_CHARS`] characters and three bytes each.
pub const TITLE: Limit = Limit::line(MAX_TITLE_CHARS);
/// Longest name of a room or speaker, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// A speaker's organisation: one line, may be empty.
pub const ORGANISATION: Limit = Limit::line(200).optional();
/// Most speakers (main and backup) on one session.
pub const MAX_SESSION_SPEAKERS: usize = 20;
/// Longest session.
pub const MAX_SESSION_HOURS: i64 = 12;

/// Text in several languages; see `podium.v1.LocalizedText`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LocalizedText(pub BTreeMap<String, String>);

impl LocalizedText {
    /// Cleans every text under podium's text policy ([`podium_text`]) and checks the tags and
    /// the default language.
    pub fn validated(
        field: &'static str,
        texts: BTreeMap<String, String>,
        default_language: &str,
    ) -> Result<Self, AgendaError> {
        Ok(Self(podium_text::clean_localized(
            field,
            texts,
            default_language,
            &TITLE,
        )?))
    }
}

/// A name cleaned under podium's text policy: one line, 1 to `max` characters.
pub fn validated_name(field: &'static str, name: &str, max: usize) -> Result<String, AgendaError> {
    Ok(podium_text::clean(field, name, &Limit::line(max))?)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SessionKind {
    Talk,
    Panel,
    Breakout,
    Pitch,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Room {
    pub id: String,
    pub name: String,
    pub capacity: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Speaker {
    pub id: String,
    pub name: String,
    pub organisation: String,
    pub zone: Tz,
    pub hours: Hours,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Session {
    pub id: String,
    pub title: LocalizedText,
    pub kind: SessionKind,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub room_id: String,
    pub speaker_ids: Vec<String>,
    pub backup_speaker_ids: Vec<String>,
    pub failover: FailoverPolicy,
    /// How many times an organiser has changed the session since it was added (0: never).
    pub revision: u32,
}

impl Session {
    /// Main speakers, then backups.
    pub fn all_speakers(&self) -> impl Iterator<Item = (&str, bool)> {
        self.speaker_ids
            .iter()
            .map(|s| (s.as_str(), false))
            .chain(self.backup_speaker_ids.iter().map(|s| (s.as_str(), true)))
    }
}

/// The facts of a new conference.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NewConference {
    pub id: String,
    pub title: LocalizedText,
    pub default_language: String,
    pub zone: Tz,
    pub join_code: String,
    pub created_by: String,
}

/// What happened to an agenda. One-to-one with the `podium.v1` agenda events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgendaEvent {
    ConferenceCreated(NewConference),
    RoomAdded {
        conference_id: String,
        room: Room,
    },
    SpeakerAdded {
        conference_id: String,
        speaker: Speaker,
    },
    SessionScheduled {
        conference_id: String,
        session: Session,
    },
}

impl AgendaEvent {
    pub fn conference_id(&self) -> &str {
        match self {
            AgendaEvent::ConferenceCreated(c) => &c.id,
            AgendaEvent::RoomAdded { conference_id, .. }
            | AgendaEvent::SpeakerAdded { conference_id, .. }
            | AgendaEvent::SessionScheduled { conference_id, .. } => conference_id,
        }
    }
}

/// A conference and its agenda, as folded from its stream.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Conference {
    pub info: NewConference,
    pub created_at: DateTime<Utc>,
    pub rooms: BTreeMap<String, Room>,
    pub speakers: BTreeMap<String, Speaker>,
    pub sessions: BTreeMap<String, Session>,
    /// Version of the last event of the conference's stream.
    pub version: u64,
    /// Request id -> log position of every event of this conference, so that a retried
    /// request is answered instead of decided again.
    #[serde(serialize_with = "podium_eventlog::snapshot::sorted_map")]
    pub requests: std::collections::HashMap<uuid::Uuid, u64>,
    /// Sessions a moderator took live (false) or ended (true), from the status service's
    /// events: a session under way is no longer changed on the agenda.
    pub under_way: BTreeMap<String, bool>,
}

/// Where and when an event was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub id: uuid::Uuid,
    pub version: u64,
    pub position: u64,
    pub at: DateTime<Utc>,
}

/// Every conference, by id.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Agenda {
    pub conferences: BTreeMap<String, Conference>,
}

impl Agenda {
    /// Folds one event. Events of conferences that do not exist are ignored (they cannot be
    /// appended: every command checks the conference first).
    pub fn apply(&mut self, event: AgendaEvent, meta: Meta) {
        if let AgendaEvent::ConferenceCreated(info) = event {
            self.conferences.insert(
                info.id.clone(),
                Conference {
                    info,
                    created_at: meta.at,
                    rooms: BTreeMap::new(),
                    speakers: BTreeMap::new(),
                    sessions: BTreeMap::new(),
                    version: meta.version,
                    requests: [(meta.id, meta.position)].into(),
                    under_way: BTreeMap::new(),
                },
            );
            return;
        }
        let Some(conference) = self.conferences.get_mut(event.conference_id()) else {
            tracing::warn!(
                conference = event.conference_id(),
                "event for an unknown conference skipped"
            );
            return;
        };
        conference.version = meta.version;
        conference.requests.insert(meta.id, meta.position);
        match event {
            AgendaEvent::ConferenceCreated(_) => {}
            AgendaEvent::RoomAdded { room, .. } => {
                conference.rooms.insert(room.id.clone(), room);
            }
            AgendaEvent::SpeakerAdded { speaker, .. } => {
                conference.speakers.insert(speaker.id.clone(), speaker);
            }
            AgendaEvent::SessionScheduled { mut session, .. } => {
                // Counted here rather than taken from the event, which holds 0 in logs written
                // before revisions.
                session.revision = conference
                    .sessions
                    .get(&session.id)
                    .map_or(0, |before| before.revision + 1);
                conference.sessions.insert(session.id.clone(), session);
            }
        }
    }

    /// Notes that a session went live (`ended` false) or ended: the status service's news.
    pub fn session_under_way(&mut self, conference_id: &str, session_id: &str, ended: bool) {
        if let Some(conference) = self.conferences.get_mut(conference_id) {
            let known = conference
                .under_way
                .entry(session_id.to_owned())
                .or_default();
            *known |= ended;
        }
    }

    /// The log position of a request already applied to `conference_id`.
    pub fn applied_request(&self, conference_id: &str, request_id: &uuid::Uuid) -> Option<u64> {
        self.conferences
            .get(conference_id)?
            .requests
            .get(request_id)
            .copied()
    }

    pub fn conference(&self, id: &str) -> Result<&Conference, AgendaError> {
        self.conferences
            .get(id)
            .ok_or_else(|| AgendaError::NotFound(format!("conference {id} not found")))
    }
}

impl Conference {
    pub fn room(&self, id: &str) -> Result<&Room, AgendaError> {
        self.rooms.get(id).ok_or_else(|| {
            AgendaError::NotFound(format!(
                "room {id} not found in conference {}",
                self.info.id
            ))
        })
    }

    pub fn speaker(&self, id: &str) -> Result<&Speaker, AgendaError> {
        self.speakers.get(id).ok_or_else(|| {
            AgendaError::NotFound(format!(
                "speaker {id} not found in conference {}",
                self.info.id
            ))
        })
    }

    pub fn session(&self, id: &str) -> Result<&Session, AgendaError> {
        self.sessions.get(id).ok_or_else(|| {
            AgendaError::NotFound(format!(
                "session {id} not found in conference {}",
                self.info.id
            ))
        })
    }

    /// Sessions in start order.
    pub fn sessions_by_start(&self) -> Vec<&Session> {
        let mut sessions: Vec<&Session> = self.sessions.values().collect();
        sessions.sort_by(|a, b| (a.start, &a.id).cmp(&(b.start, &b.id)));
        sessions
    }

    /// Times already taken in a room or by any of the speakers.
    pub fn busy_times(
        &self,
        room_id: Option<&str>,
        speaker_ids: &[&str],
    ) -> Vec<(DateTime<Utc>, DateTime<Utc>)> {
        self.sessions
            .values()
            .filter(|s| {
                room_id == Some(s.room_id.as_str())
                    || s.all_speakers().any(|(id, _)| speaker_ids.contains(&id))
            })
            .map(|s| (s.start, s.end))
            .collect()
    }

    /// The speakers of a session whose local hours the session falls outside.
    pub fn warnings(&self, session: &Session) -> Vec<(String, String)> {
        session
            .all_speakers()
            .filter_map(|(id, _)| self.speakers.get(id))
            .filter_map(|sp| {
                let conflict = sp.hours.conflict(sp.zone, session.start, session.end)?;
                Some((
                    sp.id.clone(),
                    format!(
                        "{}'s session {conflict} in {}, outside their hours {}",
                        sp.name,
                        sp.zone.name(),
                        sp.hours.describe()
                    ),
                ))
            })
            .collect()
    }
}

// ---- Decisions: command in, event or refusal out. ----

pub fn create_conference(agenda: &Agenda, new: NewConference) -> Result<AgendaEvent, AgendaError> {
    if agenda.conferences.contains_key(&new.id) {
        return Err(AgendaError::AlreadyExists(format!(
            "conference {} already exists",
            new.id
        )));
    }
    let code = podium_access::directory::normalise_join_code(&new.join_code);
    if agenda
        .conferences
        .values()
        .any(|c| podium_access::directory::normalise_join_code(&c.info.join_code) == code)
    {
        return Err(AgendaError::AlreadyExists(
            "another conference uses this join code; choose another".into(),
        ));
    }
    Ok(AgendaEvent::ConferenceCreated(new))
}

pub fn add_room(conference: &Conference, room: Room) -> Result<AgendaEvent, AgendaError> {
    if let Some(existing) = conference
        .rooms
        .values()
        .find(|r| r.name.to_lowercase() == room.name.to_lowercase())
    {
        return Err(AgendaError::AlreadyExists(format!(
            "conference {} already has a room named {:?} ({})",
            conference.info.id, existing.name, existing.id
        )));
    }
    if conference.rooms.contains_key(&room.id) {
        return Err(AgendaError::AlreadyExists(format!(
            "room {} already exists",
            room.id
        )));
    }
    Ok(AgendaEvent::RoomAdded {
        conference_id: conference.info.id.clone(),
        room,
    })
}

pub fn add_speaker(conference: &Conference, speaker: Speaker) -> Result<AgendaEvent, AgendaError> {
    if conference.speakers.contains_key(&speaker.id) {
        return Err(AgendaError::AlreadyExists(format!(
            "speaker {} already exists",
            speaker.id
        )));
    }
    Ok(AgendaEvent::SpeakerAdded {
        conference_id: conference.info.id.clone(),
        speaker,
    })
}

pub fn schedule_session(
    conference: &Conference,
    session: Session,
) -> Result<AgendaEvent, AgendaError> {
    if conference.sessions.contains_key(&session.id) {
        return Err(AgendaError::AlreadyExists(format!(
            "session {} already exists",
            session.id
        )));
    }
    place_session(conference, session)
}

/// Changes a scheduled session to `session` (same id): checked as a new one is, except that it
/// does not clash with the slot it leaves; refused if it has been changed since revision
/// `expected`, where given.
pub fn reschedule_session(
    conference: &Conference,
    mut session: Session,
    expected: Option<u32>,
) -> Result<AgendaEvent, AgendaError> {
    let revision = conference.session(&session.id)?.revision;
    // Its room, speakers and times are the live status's now (its on-air speaker, its
    // recording's offset, the room's playout), and an ended session is history: no re-read
    // would help.
    if let Some(&ended) = conference.under_way.get(&session.id) {
        let now = if ended { "has ended" } else { "is live" };
        return Err(AgendaError::UnderWay(format!(
            "session {} {now}: a session can be changed only before a moderator takes it live",
            session.id
        )));
    }
    if let Some(expected) = expected.filter(|&e| e != revision) {
        return Err(AgendaError::Changed(format!(
            "session {} was changed since revision {expected} (it is at revision {revision}): \
             read it again and make your change to it as it is now",
            session.id
        )));
    }
    session.revision = revision + 1;
    place_session(conference, session)
}

/// Checks `session` against the rest of `conference` (its times, room, speakers, and every
/// other session's room and speakers), and schedules it.
fn place_session(conference: &Conference, session: Session) -> Result<AgendaEvent, AgendaError> {
    if session.end <= session.start {
        return Err(AgendaError::invalid("end", "must be after start"));
    }
    if session.end - session.start > Duration::hours(MAX_SESSION_HOURS) {
        return Err(AgendaError::invalid(
            "end",
            format!("a session lasts at most {MAX_SESSION_HOURS} hours"),
        ));
    }
    let room = conference.room(&session.room_id)?;
    let named = session.speaker_ids.len() + session.backup_speaker_ids.len();
    if named > MAX_SESSION_SPEAKERS {
        return Err(AgendaError::invalid(
            "speaker_ids",
            format!("a session has at most {MAX_SESSION_SPEAKERS} speakers"),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for (id, backup) in session.all_speakers() {
        conference.speaker(id)?;
        if !seen.insert(id) {
            let field = if backup {
                "backup_speaker_ids"
            } else {
                "speaker_ids"
            };
            return Err(AgendaError::invalid(
                field,
                format!("speaker {id} is named twice"),
            ));
        }
    }
    for other in conference.sessions.values().filter(|o| o.id != session.id) {
        if !time::overlaps(session.start, session.end, other.start, other.end) {
            continue;
        }
        if other.room_id == session.room_id {
            return Err(AgendaError::Clash(format!(
                "room {} ({}) is already booked from {} to {} by session {}",
                room.id,
                room.name,
                zoned(other.start, conference.info.zone).label,
                zoned(other.end, conference.info.zone).label,
                other.id
            )));
        }
        // Speaking is being booked; backing up is not, so one person may back up sessions
        // that overlap, but never speak in one while speaking in or backing up another.
        let clash = session.all_speakers().find_map(|(id, backup)| {
            other
                .all_speakers()
                .find(|(o, other_backup)| *o == id && !(backup && *other_backup))
                .map(|(_, other_backup)| (id, backup, other_backup))
        });
        if let Some((id, backup, other_backup)) = clash {
            let (here, there) = (
                if backup {
                    "back up this session"
                } else {
                    "speak here"
                },
                if other_backup { "back up" } else { "speak in" },
            );
            return Err(AgendaError::Clash(format!(
                "speaker {id} cannot {here}: they {there} session {} from {} to {}",
                other.id,
                zoned(other.start, conference.info.zone).label,
                zoned(other.end, conference.info.zone).label
            )));
        }
    }
    Ok(AgendaEvent::SessionScheduled {
        conference_id: conference.info.id.clone(),
        session,
    })
}
