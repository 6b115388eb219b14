//! Following the live status of a conference across disconnects: after a reconnect the watch
//! resumes from the last position seen, so the server sends only the sessions that changed.

use std::time::Duration;

use futures::{Stream, StreamExt};
use tonic::Status;

use crate::{Client, pb, retryable};

/// One message of a followed status stream.
#[derive(Debug, Clone, PartialEq)]
pub enum StatusUpdate {
    /// Sessions as they are; after a reconnect, only those that changed meanwhile.
    Snapshot {
        position: u64,
        sessions: Vec<pb::SessionStatus>,
    },
    /// One session after a change.
    Changed {
        position: u64,
        session: Box<pb::SessionStatus>,
    },
}

/// Whether `status`, received by a watcher of `room_id` (every room if empty), says that its
/// session left the room. The server sends a session an organiser moved to another room once
/// more, with its new room, to the old room's watchers, live and in the snapshot of one that
/// resumes from before the move: the watcher drops it. The watched room is trimmed, as the
/// server trims it.
pub fn left_room(room_id: &str, status: &pb::SessionStatus) -> bool {
    let room = room_id.trim();
    !room.is_empty() && status.room_id != room
}

/// Whether `status`, received by speaker `speaker_id`'s own watcher (empty: a staff watcher,
/// never), says that an organiser took them off its session. The server sends such a session
/// once more to that speaker, with only its id, room, title and state: no link names them, and
/// the watcher drops it. A session they speak in or back up always has their link.
pub fn taken_off(speaker_id: &str, status: &pb::SessionStatus) -> bool {
    !speaker_id.is_empty() && !status.links.iter().any(|l| l.speaker_id == speaker_id)
}

impl Client {
    /// Follows the status of a conference (or one room), reconnecting with backoff. A watcher
    /// of one room checks each status with [`left_room`]; a speaker's, with [`taken_off`].
    pub fn watch_status(
        &self,
        conference_id: &str,
        room_id: &str,
    ) -> impl Stream<Item = Result<StatusUpdate, Status>> + Send + 'static {
        let client = self.clone();
        let (conference_id, room_id) = (conference_id.to_owned(), room_id.to_owned());
        async_stream::try_stream! {
            let mut from_position = 0u64;
            let mut backoff = Duration::from_millis(100);
            loop {
                let request = pb::WatchStatusRequest { conference_id: conference_id.clone(), room_id: room_id.clone(), from_position };
                let failure = match client.stage().watch_status(request).await {
                    Err(status) => status,
                    Ok(response) => {
                        let mut stream = response.into_inner();
                        loop {
                            match stream.next().await {
                                Some(Ok(message)) => {
                                    backoff = Duration::from_millis(100);
                                    from_position = message.position;
                                    match message.update {
                                        Some(pb::watch_status_response::Update::Snapshot(s)) => {
                                            yield StatusUpdate::Snapshot { position: message.position, sessions: s.sessions };
                                        }
                                        Some(pb::watch_status_response::Update::Changed(session)) => {
                                            yield StatusUpdate::Changed { position: message.position, session: Box::new(session) };
                                        }
                                        None => {}
                                    }
                                }
                                Some(Err(status)) => break status,
                                None => break Status::unavailable("status stream ended"),
                            }
                        }
                    }
                };
                if !retryable(&failure) {
                    Err(failure)?;
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_naming_another_room_left_the_watched_room() {
        let in_room = |room: &str| pb::SessionStatus {
            session_id: "keynote".into(),
            room_id: room.into(),
            ..Default::default()
        };
        assert!(!left_room("hall", &in_room("hall")));
        assert!(
            !left_room(" hall ", &in_room("hall")),
            "trimmed, as the server does"
        );
        assert!(left_room("hall", &in_room("breakout")));
        // A watcher of every room has every session.
        assert!(!left_room("", &in_room("breakout")));
        assert!(!left_room("  ", &in_room("breakout")));
    }

    #[test]
    fn a_status_without_the_speakers_link_took_them_off() {
        let with = |speakers: &[&str]| pb::SessionStatus {
            session_id: "keynote".into(),
            links: speakers
                .iter()
                .map(|s| pb::SpeakerLink {
                    speaker_id: (*s).into(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        assert!(!taken_off("sokha", &with(&["sokha", "sarah"])));
        assert!(taken_off("sokha", &with(&["sarah"])));
        assert!(taken_off("sokha", &with(&[])));
        // Staff watchers are never taken off.
        assert!(!taken_off("", &with(&[])));
    }
}
