//! The shared publisher of the status stream: one per watched conference, however many boards
//! and switchers watch it.
//!
//! **Fan-out costs per watcher, not per fold**: the publisher follows the shared read model
//! (woken as it applies), and for each session whose status changed builds its
//! `pb::SessionStatus` once, with the position after the change, into one `watch` channel per
//! conference. Each watcher reads whatever is latest when it is ready, filters by room and, for
//! a speaker, by their sessions (a session moved out of the room, or that the speaker was taken
//! off, is sent once more; see [`Entry::concerns`]) and sends the sessions that changed since it
//! last sent; a slow watcher skips a session's intermediate states but never its latest. The
//! publisher ends when its last watcher leaves.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
};

use chrono::{DateTime, Utc};
use podium_eventlog::Projector;
use podium_proto::v1 as pb;
use tokio::sync::watch;
use tonic::Status;

use crate::{
    model::{ConferenceFacts, StatusModel},
    stage::{names_speaker, session_status},
};

/// A session's latest status, as every watcher of its conference shares it.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The log position of the last event that changed the session (see
    /// [`ConferenceFacts::changed`]); the update carries the position after it.
    pub changed: u64,
    pub room_id: String,
    /// The rooms the session was moved out of, each with the position of the move.
    pub left_rooms: Vec<(String, u64)>,
    /// The speakers taken off the session, each with the position of the change.
    pub left_speakers: Vec<(String, u64)>,
    /// When the session is scheduled to start, for the snapshot's order.
    pub start: DateTime<Utc>,
    pub status: Arc<pb::SessionStatus>,
}

impl Entry {
    /// Whether a watcher of `room` (every room if empty) and of `speaker`'s sessions (every
    /// session if `None`) that has what happened before `since` is to be sent this session:
    /// it is in the room and `speaker` speaks in it or backs it up, or it left the room, or
    /// `speaker` was taken off it, at or after `since` (its status tells the watcher to drop
    /// it: another room, no link of the speaker's). A watcher starting afresh (`since` 0) has
    /// nothing to drop.
    pub fn concerns(&self, room: &str, speaker: Option<&str>, since: u64) -> bool {
        let left = |list: &[(String, u64)], what: &str| {
            since > 0 && list.iter().any(|(left, at)| left == what && *at >= since)
        };
        let in_room = room.is_empty() || self.room_id == room || left(&self.left_rooms, room);
        let theirs = speaker.is_none_or(|speaker| {
            names_speaker(&self.status, speaker) || left(&self.left_speakers, speaker)
        });
        in_room && theirs
    }
}

/// One conference's sessions as published, and the model position they reflect.
#[derive(Debug, Clone, Default)]
pub struct Published {
    /// Every event below this position is reflected.
    pub position: u64,
    pub sessions: BTreeMap<String, Entry>,
}

impl Published {
    fn build(conference: &ConferenceFacts, position: u64) -> Self {
        let mut published = Self {
            position,
            sessions: BTreeMap::new(),
        };
        published.refresh(conference, 0);
        published
    }

    /// Rebuilds every session changed at or after `since`; whether any was.
    fn refresh(&mut self, conference: &ConferenceFacts, since: u64) -> bool {
        let mut any = false;
        for (session_id, &changed) in &conference.changed {
            if changed < since {
                continue;
            }
            let (Some(facts), Some(status)) = (
                conference.sessions.get(session_id),
                session_status(conference, session_id),
            ) else {
                continue;
            };
            self.sessions.insert(
                session_id.clone(),
                Entry {
                    changed,
                    room_id: facts.room_id.clone(),
                    left_rooms: facts.left_rooms.clone(),
                    left_speakers: facts.left_speakers.clone(),
                    start: facts.start,
                    status: Arc::new(status),
                },
            );
            any = true;
        }
        any
    }

    /// The sessions that concern a watcher of `room` and `speaker` (see [`Entry::concerns`])
    /// changed at or after `since`, in log order, each with the position after its change.
    pub fn since(
        &self,
        room: &str,
        speaker: Option<&str>,
        since: u64,
    ) -> Vec<(u64, Arc<pb::SessionStatus>)> {
        let mut changes: Vec<_> = self
            .sessions
            .values()
            .filter(|e| e.changed >= since && e.concerns(room, speaker, since))
            .map(|e| (e.changed + 1, e.status.clone()))
            .collect();
        changes.sort_by_key(|(position, _)| *position);
        changes
    }
}

type Channel = Arc<watch::Sender<Published>>;

/// The running publishers, one per watched conference.
#[derive(Clone)]
pub struct StatusPublishers {
    model: Projector<StatusModel>,
    channels: Arc<Mutex<HashMap<String, Channel>>>,
}

impl StatusPublishers {
    pub fn new(model: Projector<StatusModel>) -> Self {
        Self {
            model,
            channels: Arc::default(),
        }
    }

    /// How many publishers run: one per conference that has a watcher.
    pub fn len(&self) -> usize {
        self.channels.lock().map_or(0, |c| c.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A receiver of the conference's published sessions; the first watcher of a conference
    /// starts its publisher, later ones share it. NOT_FOUND if the model has no such conference.
    pub fn subscribe(&self, conference_id: &str) -> Result<watch::Receiver<Published>, Status> {
        // Poisoned only if a thread panicked holding it: a bug, not the client's doing.
        let mut channels = self
            .channels
            .lock()
            .map_err(|_| Status::internal("internal error"))?;
        if let Some(sender) = channels.get(conference_id) {
            return Ok(sender.subscribe());
        }
        let published = {
            let model = self.model.read();
            let conference = model.conference(conference_id).ok_or_else(|| {
                Status::not_found(format!("conference {conference_id} not found"))
            })?;
            Published::build(conference, model.position)
        };
        let (sender, receiver) = watch::channel(published);
        let sender = Arc::new(sender);
        channels.insert(conference_id.to_owned(), sender.clone());
        tokio::spawn(publish(
            self.model.clone(),
            self.channels.clone(),
            conference_id.to_owned(),
            sender,
        ));
        Ok(receiver)
    }
}

/// Follows the model for one conference until its last watcher leaves or the log closes.
async fn publish(
    model: Projector<StatusModel>,
    channels: Arc<Mutex<HashMap<String, Channel>>>,
    conference_id: String,
    sender: Channel,
) {
    let mut applied = model.applied();
    loop {
        let open = tokio::select! {
            _ = sender.closed() => {
                // A watcher may have subscribed since: subscribing happens under this lock.
                let Ok(mut channels) = channels.lock() else { return };
                if sender.receiver_count() > 0 {
                    continue;
                }
                channels.remove(&conference_id);
                return;
            }
            moved = applied.changed() => moved.is_ok(),
        };
        if !open {
            // The log closed: dropping the channel ends every watcher's stream.
            if let Ok(mut channels) = channels.lock()
                && channels
                    .get(&conference_id)
                    .is_some_and(|c| Arc::ptr_eq(c, &sender))
            {
                channels.remove(&conference_id);
            }
            return;
        }
        let m = model.read();
        if let Some(conference) = m.conference(&conference_id) {
            let position = m.position;
            sender.send_if_modified(|published| {
                let any = published.refresh(conference, published.position);
                published.position = position;
                any
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The keynote, moved from the hall to the breakout room at 30 and handed from Sokha to
    /// Sarah at 35.
    fn keynote() -> Entry {
        let link = |id: &str| pb::SpeakerLink {
            speaker_id: id.into(),
            ..Default::default()
        };
        Entry {
            changed: 40,
            room_id: "breakout".into(),
            left_rooms: vec![("hall".into(), 30)],
            left_speakers: vec![("sokha".into(), 35)],
            start: DateTime::<Utc>::default(),
            status: Arc::new(pb::SessionStatus {
                links: vec![link("sarah")],
                ..Default::default()
            }),
        }
    }

    #[test]
    fn a_session_that_left_a_room_concerns_its_watchers_since_before_the_move() {
        let entry = keynote();
        let concerns = |room, since| entry.concerns(room, None, since);
        assert!(concerns("", 0) && concerns("breakout", 0));
        assert!(concerns("breakout", 41));
        // The hall's watchers that had not yet heard of the move are sent it once more.
        assert!(concerns("hall", 30) && concerns("hall", 1));
        // One that has heard of it, or starts afresh, has nothing to drop.
        assert!(!concerns("hall", 31) && !concerns("hall", 0));
        assert!(!concerns("foyer", 1));
    }

    #[test]
    fn a_session_a_speaker_was_taken_off_concerns_their_watchers_since_before_the_change() {
        let entry = keynote();
        let concerns = |speaker, since| entry.concerns("", Some(speaker), since);
        assert!(concerns("sarah", 0) && concerns("sarah", 41));
        // Sokha's watchers that had not yet heard of the handover are sent it once more.
        assert!(concerns("sokha", 35) && concerns("sokha", 1));
        // One that has heard of it, or starts afresh, has nothing to drop.
        assert!(!concerns("sokha", 36) && !concerns("sokha", 0));
        assert!(!concerns("dara", 1));
        // Both filters hold together.
        assert!(entry.concerns("breakout", Some("sarah"), 0));
        assert!(!entry.concerns("hall", Some("sarah"), 31));
        assert!(entry.concerns("hall", Some("sokha"), 30));
    }
}
