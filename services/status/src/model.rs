//! The status service's read model: its own view of the agenda (sessions, speakers, policies,
//! built from the agenda's events, never from the agenda service's state), the recordings, the
//! green-room test connections, and the live status of every session.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use podium_eventlog::{Projection, RecordedEvent};
use podium_proto::v1 as pb;
use prost::Name;

use crate::domain::{Failback, Millis, Policy, SessionLive};

/// What the status service knows of a session from the agenda.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionFacts {
    pub id: String,
    pub conference_id: String,
    pub room_id: String,
    /// In the conference's default language.
    pub title: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub speaker_ids: Vec<String>,
    pub backup_speaker_ids: Vec<String>,
    pub policy: Policy,
}

impl SessionFacts {
    pub fn has_speaker(&self, speaker_id: &str) -> bool {
        self.speaker_ids
            .iter()
            .chain(&self.backup_speaker_ids)
            .any(|s| s == speaker_id)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SpeakerFacts {
    pub id: String,
    pub name: String,
    pub zone: Tz,
    /// Local availability in minutes after midnight.
    pub available_from: u32,
    pub available_until: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ConferenceFacts {
    pub id: String,
    pub default_language: String,
    pub zone: Tz,
    pub sessions: BTreeMap<String, SessionFacts>,
    pub speakers: BTreeMap<String, SpeakerFacts>,
    /// Per session, in fallback order: the primary first, then backups.
    pub recordings: BTreeMap<String, Vec<pb::Recording>>,
    /// Speakers who completed a green-room test connection.
    pub tested: HashSet<String>,
    /// Live status per session; sessions never started have none.
    pub live: BTreeMap<String, SessionLive>,
    /// Per session, the log position of the last event that changed its status or facts, so
    /// that a watcher resuming from a position gets only what changed since.
    pub changed: BTreeMap<String, u64>,
}

impl ConferenceFacts {
    /// A recording of this conference by id.
    pub fn recording(&self, recording_id: &str) -> Option<&pb::Recording> {
        self.recordings
            .values()
            .flatten()
            .find(|r| r.id == recording_id)
    }
}

/// Everything, by conference id, and the log position it reflects.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct StatusModel {
    pub conferences: BTreeMap<String, ConferenceFacts>,
    /// Every event below this position has been applied.
    pub position: u64,
}

/// Event types this model folds.
pub fn status_model_event_types() -> Vec<String> {
    vec![
        pb::ConferenceCreated::full_name(),
        pb::SpeakerAdded::full_name(),
        pb::SessionScheduled::full_name(),
        pb::RecordingRegistered::full_name(),
        pb::TestConnectionRecorded::full_name(),
        pb::SessionWentLive::full_name(),
        pb::SessionEnded::full_name(),
        pb::SourceSwitched::full_name(),
        pb::SourcePinned::full_name(),
        pb::LinkChanged::full_name(),
        pb::AlertRaised::full_name(),
    ]
}

/// Milliseconds since the epoch of a protobuf timestamp (0 if absent).
pub fn millis(ts: &Option<prost_types::Timestamp>) -> Millis {
    ts.as_ref().map_or(0, |t| {
        (t.seconds.max(0) as u64) * 1000 + (t.nanos.max(0) as u64) / 1_000_000
    })
}

pub fn timestamp(ms: Millis) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: (ms / 1000) as i64,
        nanos: ((ms % 1000) * 1_000_000) as i32,
    }
}

fn policy(p: Option<pb::FailoverPolicy>) -> Policy {
    let d = Policy::default();
    let Some(p) = p else { return d };
    let or = |v: u32, default: u32| if v == 0 { default } else { v };
    Policy {
        failover_after_ms: u64::from(or(p.failover_after_ms, d.failover_after_ms as u32)),
        failback: if p.failback == pb::FailbackMode::ReturnWhenStable as i32 {
            Failback::ReturnWhenStable
        } else {
            Failback::Sticky
        },
        clear_after_ms: u64::from(or(p.clear_after_ms, d.clear_after_ms as u32)),
        max_loss_percent: or(p.max_loss_percent, d.max_loss_percent),
        max_round_trip_ms: or(p.max_round_trip_ms, d.max_round_trip_ms),
        poor_for_ms: u64::from(or(p.poor_for_ms, d.poor_for_ms as u32)),
    }
}

impl StatusModel {
    pub fn conference(&self, id: &str) -> Option<&ConferenceFacts> {
        self.conferences.get(id)
    }

    pub fn session(&self, conference_id: &str, session_id: &str) -> Option<&SessionFacts> {
        self.conferences
            .get(conference_id)?
            .sessions
            .get(session_id)
    }

    fn apply_event(&mut self, event: &RecordedEvent) -> Result<(), String> {
        let e = |e: podium_eventlog::DecodeError| e.to_string();
        if event.is::<pb::ConferenceCreated>() {
            let c = event.decode::<pb::ConferenceCreated>().map_err(e)?;
            let zone = c
                .time_zone
                .parse::<Tz>()
                .map_err(|_| format!("unknown zone {}", c.time_zone))?;
            self.conferences.insert(
                c.conference_id.clone(),
                ConferenceFacts {
                    id: c.conference_id,
                    default_language: c.default_language,
                    zone,
                    sessions: BTreeMap::new(),
                    speakers: BTreeMap::new(),
                    recordings: BTreeMap::new(),
                    tested: HashSet::new(),
                    live: BTreeMap::new(),
                    changed: BTreeMap::new(),
                },
            );
            return Ok(());
        }
        if event.is::<pb::SpeakerAdded>() {
            let s = event.decode::<pb::SpeakerAdded>().map_err(e)?;
            let zone = s
                .time_zone
                .parse::<Tz>()
                .map_err(|_| format!("unknown zone {}", s.time_zone))?;
            if let Some(c) = self.conferences.get_mut(&s.conference_id) {
                c.speakers.insert(
                    s.speaker_id.clone(),
                    SpeakerFacts {
                        id: s.speaker_id,
                        name: s.name,
                        zone,
                        available_from: s.available_from_minute,
                        available_until: s.available_until_minute,
                    },
                );
            }
            return Ok(());
        }
        if event.is::<pb::SessionScheduled>() {
            let s = event.decode::<pb::SessionScheduled>().map_err(e)?;
            let Some(c) = self.conferences.get_mut(&s.conference_id) else {
                return Ok(());
            };
            let time = |t: &Option<prost_types::Timestamp>| {
                DateTime::<Utc>::from_timestamp_millis(millis(t) as i64).unwrap_or_default()
            };
            let title = s
                .title
                .as_ref()
                .and_then(|t| {
                    t.text
                        .get(&c.default_language)
                        .or_else(|| t.text.values().next())
                })
                .cloned()
                .unwrap_or_default();
            c.changed.insert(s.session_id.clone(), event.position);
            c.sessions.insert(
                s.session_id.clone(),
                SessionFacts {
                    start: time(&s.start),
                    end: time(&s.end),
                    id: s.session_id,
                    conference_id: s.conference_id,
                    room_id: s.room_id,
                    title,
                    speaker_ids: s.speaker_ids,
                    backup_speaker_ids: s.backup_speaker_ids,
                    policy: policy(s.failover),
                },
            );
            return Ok(());
        }
        if event.is::<pb::RecordingRegistered>() {
            let r = event.decode::<pb::RecordingRegistered>().map_err(e)?;
            let recording = r.recording.ok_or("recording missing")?;
            if let Some(c) = self.conferences.get_mut(&recording.conference_id) {
                c.changed
                    .insert(recording.session_id.clone(), event.position);
                let list = c
                    .recordings
                    .entry(recording.session_id.clone())
                    .or_default();
                if recording.order == 0 {
                    list.insert(0, recording);
                } else {
                    list.push(recording);
                }
                for (i, r) in list.iter_mut().enumerate() {
                    r.order = i as u32;
                }
            }
            return Ok(());
        }
        if event.is::<pb::TestConnectionRecorded>() {
            let t = event.decode::<pb::TestConnectionRecorded>().map_err(e)?;
            if let Some(c) = self.conferences.get_mut(&t.conference_id) {
                c.tested.insert(t.speaker_id);
            }
            return Ok(());
        }
        crate::store::apply_live_event(self, event)
    }
}

impl Projection for StatusModel {
    fn apply(&mut self, event: &RecordedEvent) {
        if let Err(error) = self.apply_event(event) {
            tracing::error!(position = event.position, %error, "status model skipped an event");
        }
        self.position = event.position + 1;
    }
}
