//! The status service's read model, the whole fold: its own view of the agenda (sessions,
//! speakers, policies, built from the agenda's events, never from the agenda service's state),
//! the recordings, the green-room test connections, and the live status of every session; and
//! the machine's [`Context`] read from it.
//!
//! It decodes through [`crate::codec`] and is read by [`crate::engine`] and the services; it
//! imports neither of the latter.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use podium_core::FailoverPolicy;
use podium_eventlog::{
    Projection, RecordedEvent,
    personal::{self, PersonKind},
    snapshot::{self, Snapshot, SnapshotError},
};
use podium_proto::{Translations, v1 as pb};
use prost::Name;

use crate::{
    codec::{decode, millis, policy_from_proto},
    domain::{Context, Lifecycle, RecordingRef, SessionLive, Source, SourceKind},
};

/// What the status service knows of a session from the agenda.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
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
    pub policy: FailoverPolicy,
    /// The rooms an organiser moved the session out of (`Agenda/UpdateSession`), each with the
    /// log position of the move, oldest first: a watcher of such a room is told the session
    /// left it.
    pub left_rooms: Vec<(String, u64)>,
    /// The speakers and backups an organiser took off the session, each with the log position
    /// of the change, oldest first: that speaker's watchers are told they left it.
    pub left_speakers: Vec<(String, u64)>,
}

impl SessionFacts {
    pub fn has_speaker(&self, speaker_id: &str) -> bool {
        self.speaker_ids
            .iter()
            .chain(&self.backup_speaker_ids)
            .any(|s| s == speaker_id)
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SpeakerFacts {
    pub id: String,
    pub name: String,
    pub zone: Tz,
    /// Local availability in minutes after midnight.
    pub available_from: u32,
    pub available_until: u32,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ConferenceFacts {
    pub id: String,
    pub default_language: String,
    pub zone: Tz,
    pub sessions: BTreeMap<String, SessionFacts>,
    pub speakers: BTreeMap<String, SpeakerFacts>,
    /// Per session, in fallback order: the primary first, then backups.
    #[serde(with = "protobuf_values")]
    pub recordings: BTreeMap<String, Vec<pb::Recording>>,
    /// Deleted recordings' sessions, by recording id: where a retried deletion finds its event.
    #[serde(default)]
    pub deleted_recordings: BTreeMap<String, String>,
    /// Speakers who completed a green-room test connection.
    #[serde(serialize_with = "podium_eventlog::snapshot::sorted_set")]
    pub tested: HashSet<String>,
    /// Live status per session; sessions never started have none.
    pub live: BTreeMap<String, SessionLive>,
    /// Per session, the log position of the last event that changed its status or facts, so
    /// that a watcher resuming from a position gets only what changed since.
    pub changed: BTreeMap<String, u64>,
    /// Per room, the program output its playout bridge last reported.
    #[serde(with = "protobuf_values")]
    pub outputs: BTreeMap<String, pb::ProgramOutput>,
    /// The conference's rooms, with sessions or not: a bridge or watcher of a room whose
    /// sessions are yet to be scheduled, or have all moved away, is not refused.
    pub rooms: BTreeSet<String>,
}

impl ConferenceFacts {
    /// Whether `room_id` is one of the conference's rooms.
    pub fn has_room(&self, room_id: &str) -> bool {
        self.rooms.contains(room_id)
    }

    /// The room's program output, as the status of `session_id` shows it: on the session whose
    /// decision the bridge carried out, and on the room's live session.
    pub fn output_of(&self, session_id: &str) -> Option<&pb::ProgramOutput> {
        let facts = self.sessions.get(session_id)?;
        let output = self.outputs.get(&facts.room_id)?;
        let live = self
            .live
            .get(session_id)
            .is_some_and(|l| l.lifecycle == Lifecycle::Live);
        (output.session_id == session_id || live).then_some(output)
    }

    /// Keeps a room's new program output, and marks the sessions whose status shows it (the old
    /// and new ones) as changed.
    fn output_reported(&mut self, output: pb::ProgramOutput, position: u64) {
        let room = output.room_id.clone();
        let before = self.outputs.insert(room.clone(), output.clone());
        let shown: Vec<String> = self
            .sessions
            .values()
            .filter(|s| s.room_id == room)
            .filter(|s| {
                s.id == output.session_id
                    || before.as_ref().is_some_and(|b| b.session_id == s.id)
                    || self
                        .live
                        .get(&s.id)
                        .is_some_and(|l| l.lifecycle == Lifecycle::Live)
            })
            .map(|s| s.id.clone())
            .collect();
        for session_id in shown {
            self.changed.insert(session_id, position);
        }
    }

    /// Whether `recording_id` is on air in a live session of this conference.
    pub fn on_air(&self, recording_id: &str) -> Option<&str> {
        self.recordings_on_air()
            .find(|(_, source)| source.recording_id == recording_id)
            .map(|(session_id, _)| session_id)
    }

    /// The live sessions playing a recording, and that source.
    fn recordings_on_air(&self) -> impl Iterator<Item = (&str, &Source)> {
        self.live.iter().filter_map(|(session_id, l)| {
            let source = l.source.as_ref()?;
            (l.lifecycle == Lifecycle::Live && source.kind == SourceKind::Recording)
                .then_some((session_id.as_str(), source))
        })
    }

    /// A recording of this conference by id.
    pub fn recording(&self, recording_id: &str) -> Option<&pb::Recording> {
        self.recordings
            .values()
            .flatten()
            .find(|r| r.id == recording_id)
    }
}

/// Everything, by conference id, and the log position it reflects.
#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StatusModel {
    pub conferences: BTreeMap<String, ConferenceFacts>,
    /// Every event below this position has been applied.
    pub position: u64,
}

/// Event types this model folds.
pub fn status_model_event_types() -> Vec<String> {
    vec![
        pb::ConferenceCreated::full_name(),
        pb::RoomAdded::full_name(),
        pb::SpeakerAdded::full_name(),
        pb::SessionScheduled::full_name(),
        pb::RecordingRegistered::full_name(),
        pb::RecordingDeleted::full_name(),
        pb::TestConnectionRecorded::full_name(),
        pb::SessionWentLive::full_name(),
        pb::SessionEnded::full_name(),
        pb::SourceSwitched::full_name(),
        pb::SourcePinned::full_name(),
        pb::LinkChanged::full_name(),
        pb::AlertRaised::full_name(),
        pb::ProgramOutputReported::full_name(),
        pb::PersonErased::full_name(),
    ]
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
                    deleted_recordings: BTreeMap::new(),
                    tested: HashSet::new(),
                    live: BTreeMap::new(),
                    changed: BTreeMap::new(),
                    outputs: BTreeMap::new(),
                    rooms: BTreeSet::new(),
                },
            );
            return Ok(());
        }
        if event.is::<pb::RoomAdded>() {
            let r = event.decode::<pb::RoomAdded>().map_err(e)?;
            if let Some(c) = self.conferences.get_mut(&r.conference_id) {
                c.rooms.insert(r.room_id);
            }
            return Ok(());
        }
        if event.is::<pb::PersonErased>() {
            // The speaker's name, opened before their key was destroyed, goes (pre-flight
            // names speakers).
            if let Some(p) = personal::erased(event, PersonKind::Speaker)
                && let Some(speaker) = self
                    .conferences
                    .get_mut(&p.conference_id)
                    .and_then(|c| c.speakers.get_mut(&p.person_id))
            {
                speaker.name = personal::ERASED.to_owned();
            }
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
            // Whole milliseconds, as the machine counts.
            let time = |t: &Option<prost_types::Timestamp>| {
                DateTime::<Utc>::from_timestamp_millis(millis(t) as i64).unwrap_or_default()
            };
            // The shown title: the conference's default language, else the smallest tag.
            let title = s.title.pick(None, &c.default_language).to_owned();
            c.changed.insert(s.session_id.clone(), event.position);
            let mut facts = SessionFacts {
                start: time(&s.start),
                end: time(&s.end),
                id: s.session_id,
                conference_id: s.conference_id,
                room_id: s.room_id,
                title,
                speaker_ids: s.speaker_ids,
                backup_speaker_ids: s.backup_speaker_ids,
                policy: policy_from_proto(s.failover),
                left_rooms: Vec::new(),
                left_speakers: Vec::new(),
            };
            // What the change took away: the session's room, and speakers it no longer has.
            if let Some(before) = c.sessions.get(&facts.id) {
                facts.left_rooms.clone_from(&before.left_rooms);
                if before.room_id != facts.room_id {
                    facts
                        .left_rooms
                        .push((before.room_id.clone(), event.position));
                }
                facts.left_speakers.clone_from(&before.left_speakers);
                for id in before.speaker_ids.iter().chain(&before.backup_speaker_ids) {
                    if !facts.has_speaker(id) {
                        facts.left_speakers.push((id.clone(), event.position));
                    }
                }
            }
            c.sessions.insert(facts.id.clone(), facts);
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
                renumber(list);
            }
            return Ok(());
        }
        if event.is::<pb::RecordingDeleted>() {
            let d = event.decode::<pb::RecordingDeleted>().map_err(e)?;
            let recording = d.recording.ok_or("recording missing")?;
            if let Some(c) = self.conferences.get_mut(&recording.conference_id)
                && let Some(list) = c.recordings.get_mut(&recording.session_id)
            {
                c.changed
                    .insert(recording.session_id.clone(), event.position);
                list.retain(|r| r.id != recording.id);
                c.deleted_recordings
                    .insert(recording.id.clone(), recording.session_id.clone());
                renumber(list);
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
        if event.is::<pb::ProgramOutputReported>() {
            let r = event.decode::<pb::ProgramOutputReported>().map_err(e)?;
            let output = r.output.ok_or("output missing")?;
            if let Some(c) = self.conferences.get_mut(&r.conference_id) {
                c.output_reported(output, event.position);
            }
            return Ok(());
        }
        self.apply_status_event(event)
    }

    /// Folds a stored status event into the session's live status.
    fn apply_status_event(&mut self, event: &RecordedEvent) -> Result<(), String> {
        if let Some((conference_id, session_id, status)) = decode(event)?
            && let Some(conference) = self.conferences.get_mut(&conference_id)
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
    pub fn context(&self, conference_id: &str, session_id: &str) -> Option<Context> {
        let conference = self.conference(conference_id)?;
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
}

impl StatusModel {
    /// The content every registered recording or live source needs: the files the recording
    /// store must keep.
    pub fn needed_content(&self) -> std::collections::HashSet<String> {
        let mut needed = std::collections::HashSet::new();
        for conference in self.conferences.values() {
            needed.extend(
                conference
                    .recordings
                    .values()
                    .flatten()
                    .map(|r| r.sha256.clone()),
            );
            needed.extend(
                conference
                    .recordings_on_air()
                    .map(|(_, source)| source.sha256.clone()),
            );
        }
        needed
    }
}

impl Snapshot for StatusModel {
    // 2: rooms' program outputs. 3: deleted recordings, links' figures_at. 4: alerts' speaker.
    // 5: the rooms a session left (snapshots are postcard: a field added shifts every later
    // one, so each addition is a new version). 6: the speakers taken off a session. 7: the
    // conference's rooms.
    const VERSION: u32 = 7;

    fn save(&self) -> Result<Vec<u8>, SnapshotError> {
        snapshot::encode(self)
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        *self = snapshot::decode(bytes)?;
        Ok(())
    }
}

/// Puts a session's recordings' `order` back in step with their place in its list.
fn renumber(list: &mut [pb::Recording]) {
    for (i, r) in list.iter_mut().enumerate() {
        r.order = i as u32;
    }
}

/// Recordings and program outputs are protobuf messages, which have no serde: in a snapshot each
/// is its protobuf encoding, the form the log stores them in.
mod protobuf_values {
    use std::collections::BTreeMap;

    use prost::Message;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    /// One message or a list of them per key.
    pub trait Encoded: Sized {
        fn encode(&self) -> Vec<Vec<u8>>;
        fn decode(parts: &[Vec<u8>]) -> Result<Self, prost::DecodeError>;
    }

    impl<M: Message + Default> Encoded for Vec<M> {
        fn encode(&self) -> Vec<Vec<u8>> {
            self.iter().map(Message::encode_to_vec).collect()
        }
        fn decode(parts: &[Vec<u8>]) -> Result<Self, prost::DecodeError> {
            parts
                .iter()
                .map(|bytes| M::decode(bytes.as_slice()))
                .collect()
        }
    }

    impl Encoded for podium_proto::v1::ProgramOutput {
        fn encode(&self) -> Vec<Vec<u8>> {
            vec![self.encode_to_vec()]
        }
        fn decode(parts: &[Vec<u8>]) -> Result<Self, prost::DecodeError> {
            Message::decode(parts.first().map_or(&[][..], Vec::as_slice))
        }
    }

    pub fn serialize<S: Serializer, V: Encoded>(
        map: &BTreeMap<String, V>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_map(map.iter().map(|(key, value)| (key, value.encode())))
    }

    pub fn deserialize<'de, D: Deserializer<'de>, V: Encoded>(
        deserializer: D,
    ) -> Result<BTreeMap<String, V>, D::Error> {
        let encoded = BTreeMap::<String, Vec<Vec<u8>>>::deserialize(deserializer)?;
        encoded
            .into_iter()
            .map(|(key, parts)| Ok((key, V::decode(&parts).map_err(D::Error::custom)?)))
            .collect()
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

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    fn event<M: Message + Name>(position: u64, message: &M) -> RecordedEvent {
        RecordedEvent {
            id: uuid::Uuid::now_v7(),
            stream: "conference/odc2024/agenda".into(),
            stream_version: position,
            position,
            event_type: M::full_name(),
            payload: message.encode_to_vec(),
            recorded_at: std::time::SystemTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn a_room_is_known_without_sessions_and_after_a_snapshot() {
        let mut model = StatusModel::default();
        model.apply(&event(
            0,
            &pb::ConferenceCreated {
                conference_id: "odc2024".into(),
                time_zone: "Asia/Phnom_Penh".into(),
                ..Default::default()
            },
        ));
        model.apply(&event(
            1,
            &pb::RoomAdded {
                conference_id: "odc2024".into(),
                room_id: "room-hall".into(),
                name: "Main hall".into(),
                capacity: 300,
            },
        ));
        let known = |m: &StatusModel, room: &str| m.conference("odc2024").unwrap().has_room(room);
        assert!(known(&model, "room-hall"));
        assert!(!known(&model, "room-nowhere"));
        let mut restored = StatusModel::default();
        restored.restore(&model.save().unwrap()).unwrap();
        assert!(known(&restored, "room-hall"));
        assert!(status_model_event_types().contains(&pb::RoomAdded::full_name()));
    }
}
