//! Rating events in and out of the log, and the ratings part of the feedback read model.
//!
//! Streams: `conference/<c>/session/<s>/ratings/<attendee>` holds one attendee's ratings of a
//! session, so ratings of different attendees never contend. The model also folds the status
//! service's `SessionWentLive`, which is what opens a session to ratings.

use std::collections::{BTreeMap, HashSet};

use podium_eventlog::{
    RecordedEvent,
    personal::{self, PersonKind},
};
use podium_proto::v1 as pb;
use prost::Name;

use crate::domain::rating::SessionRatings;

pub fn rating_stream(conference_id: &str, session_id: &str, rater: &str) -> String {
    format!("conference/{conference_id}/session/{session_id}/ratings/{rater}")
}

pub fn ratings_event_types() -> Vec<String> {
    vec![
        pb::SessionWentLive::full_name(),
        pb::SessionRated::full_name(),
        pb::PersonErased::full_name(),
    ]
}

type Key = (String, String);

/// Which sessions have gone live, and every session's ratings.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct RatingsModel {
    /// (conference, session) of every session that has gone live at least once.
    #[serde(serialize_with = "podium_eventlog::snapshot::sorted_set")]
    pub started: HashSet<Key>,
    /// (conference, session) -> ratings, in key order for stable listings.
    pub sessions: BTreeMap<Key, SessionRatings>,
}

impl RatingsModel {
    pub fn started(&self, conference_id: &str, session_id: &str) -> bool {
        self.started
            .contains(&(conference_id.to_owned(), session_id.to_owned()))
    }

    pub fn session(&self, conference_id: &str, session_id: &str) -> Option<&SessionRatings> {
        self.sessions
            .get(&(conference_id.to_owned(), session_id.to_owned()))
    }

    /// A conference's rated sessions (or one), as moderators see them.
    pub fn aggregates(
        &self,
        conference_id: &str,
        session_id: Option<&str>,
    ) -> Vec<pb::SessionRatings> {
        self.sessions
            .iter()
            .filter(|((c, s), _)| c == conference_id && session_id.is_none_or(|id| id == s))
            .map(|((_, s), r)| {
                let (count, mean, distribution) = r.summary();
                pb::SessionRatings {
                    session_id: s.clone(),
                    summary: Some(pb::RatingSummary {
                        count,
                        mean,
                        distribution,
                    }),
                    comments: r.comments(),
                }
            })
            .collect()
    }

    /// Applies a ratings event; `Ok(false)` when the event is not one.
    pub fn apply_event(&mut self, event: &RecordedEvent) -> Result<bool, String> {
        let e = |e: podium_eventlog::DecodeError| e.to_string();
        if event.is::<pb::SessionWentLive>() {
            let live = event.decode::<pb::SessionWentLive>().map_err(e)?;
            self.started.insert((live.conference_id, live.session_id));
        } else if event.is::<pb::SessionRated>() {
            let r = event.decode::<pb::SessionRated>().map_err(e)?;
            self.sessions
                .entry((r.conference_id, r.session_id))
                .or_default()
                .rate(&r.rater, r.rating, &r.comment, event.position);
        } else if event.is::<pb::PersonErased>() {
            // Comments opened before the key was destroyed go too; the ratings stay counted.
            let Some(attendee) = personal::erased(event, PersonKind::Attendee) else {
                return Ok(true);
            };
            for ((conference, _), ratings) in &mut self.sessions {
                if *conference == attendee.conference_id {
                    ratings.erase_comment(&attendee.person_id);
                }
            }
        } else {
            return Ok(false);
        }
        Ok(true)
    }
}
