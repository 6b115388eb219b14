//! The access service's own read model of the agenda: which conference a join code opens and
//! which speakers each conference has. Built from the agenda's events, never from the agenda
//! service's state.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use podium_eventlog::{
    Projection, RecordedEvent,
    snapshot::{self, Snapshot, SnapshotError},
};
use podium_proto::v1 as pb;

/// Join codes and speakers, by conference.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Directory {
    /// Normalised join code -> conference id.
    #[serde(serialize_with = "podium_eventlog::snapshot::sorted_map")]
    join_codes: HashMap<String, String>,
    #[serde(serialize_with = "podium_eventlog::snapshot::sorted_set")]
    conferences: HashSet<String>,
    #[serde(serialize_with = "podium_eventlog::snapshot::sorted_set")]
    speakers: HashSet<(String, String)>,
    /// Conference id -> session id -> when the session ends, in seconds since the epoch (the
    /// latest facts: a session moved earlier ends earlier): attendee tokens end a margin after
    /// the conference's last.
    #[serde(serialize_with = "podium_eventlog::snapshot::sorted_map")]
    ends: HashMap<String, BTreeMap<String, u64>>,
}

/// The event types this read model folds.
pub fn directory_event_types() -> Vec<String> {
    use prost::Name;
    vec![
        pb::ConferenceCreated::full_name(),
        pb::SpeakerAdded::full_name(),
        pb::SessionScheduled::full_name(),
    ]
}

/// Join codes compare without case, spaces or dashes: "kq7m 2xhd" opens "KQ7M-2XHD".
pub fn normalise_join_code(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

impl Directory {
    /// The conference a join code opens.
    pub fn conference_for_code(&self, code: &str) -> Option<&str> {
        self.join_codes
            .get(&normalise_join_code(code))
            .map(String::as_str)
    }

    pub fn has_conference(&self, conference_id: &str) -> bool {
        self.conferences.contains(conference_id)
    }

    /// When the conference's last scheduled session ends; None before any is scheduled.
    pub fn conference_end(&self, conference_id: &str) -> Option<SystemTime> {
        let end = self.ends.get(conference_id)?.values().max()?;
        UNIX_EPOCH.checked_add(Duration::from_secs(*end))
    }

    pub fn has_speaker(&self, conference_id: &str, speaker_id: &str) -> bool {
        self.speakers
            .contains(&(conference_id.to_owned(), speaker_id.to_owned()))
    }
}

impl Snapshot for Directory {
    /// 2: conferences' ends; 3: each session's end, so a session moved earlier counts as such.
    const VERSION: u32 = 3;

    fn save(&self) -> Result<Vec<u8>, SnapshotError> {
        snapshot::encode(self)
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        *self = snapshot::decode(bytes)?;
        Ok(())
    }
}

impl Projection for Directory {
    fn apply(&mut self, event: &RecordedEvent) {
        if event.is::<pb::ConferenceCreated>() {
            match event.decode::<pb::ConferenceCreated>() {
                Ok(c) => {
                    self.join_codes
                        .insert(normalise_join_code(&c.join_code), c.conference_id.clone());
                    self.conferences.insert(c.conference_id);
                }
                Err(error) => tracing::error!(%error, "skipping undecodable event"),
            }
        } else if event.is::<pb::SessionScheduled>() {
            match event.decode::<pb::SessionScheduled>() {
                Ok(s) => {
                    let end = crate::register::seconds(s.end.as_ref());
                    self.ends
                        .entry(s.conference_id)
                        .or_default()
                        .insert(s.session_id, end);
                }
                Err(error) => tracing::error!(%error, "skipping undecodable event"),
            }
        } else if event.is::<pb::SpeakerAdded>() {
            match event.decode::<pb::SpeakerAdded>() {
                Ok(s) => {
                    self.speakers.insert((s.conference_id, s.speaker_id));
                }
                Err(error) => tracing::error!(%error, "skipping undecodable event"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    fn scheduled(position: u64, session: &str, end_seconds: i64) -> RecordedEvent {
        let message = pb::SessionScheduled {
            conference_id: "odc2024".into(),
            session_id: session.into(),
            end: Some(prost_types::Timestamp {
                seconds: end_seconds,
                nanos: 0,
            }),
            ..Default::default()
        };
        RecordedEvent {
            id: uuid::Uuid::now_v7(),
            stream: "conference/odc2024/agenda".into(),
            stream_version: position,
            position,
            event_type: <pb::SessionScheduled as prost::Name>::full_name(),
            payload: message.encode_to_vec(),
            recorded_at: SystemTime::now(),
        }
    }

    #[test]
    fn the_conference_ends_with_its_last_session_as_it_now_stands() {
        let mut directory = Directory::default();
        let end = |d: &Directory| d.conference_end("odc2024").unwrap();
        directory.apply(&scheduled(1, "ses-keynote", 1_800_000_000));
        directory.apply(&scheduled(2, "ses-closing", 1_800_090_000));
        assert_eq!(
            end(&directory),
            UNIX_EPOCH + Duration::from_secs(1_800_090_000)
        );
        // The closing session moved to the first day: the conference now ends with it.
        directory.apply(&scheduled(3, "ses-closing", 1_800_003_600));
        assert_eq!(
            end(&directory),
            UNIX_EPOCH + Duration::from_secs(1_800_003_600)
        );
    }
}
