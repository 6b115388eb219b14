//! What a board sees: one session's status followed in the background.

use futures::StreamExt;
use podium_client::{Client, StatusUpdate, pb};
use tokio::sync::mpsc;

use crate::CONFERENCE;

/// Follows the session's status in the background; every version of it arrives on the channel.
pub fn watch_session(
    client: &Client,
    session_id: &str,
) -> mpsc::UnboundedReceiver<pb::SessionStatus> {
    let (tx, rx) = mpsc::unbounded_channel();
    let updates = client.watch_status(CONFERENCE, "");
    let session_id = session_id.to_owned();
    tokio::spawn(async move {
        futures::pin_mut!(updates);
        while let Some(Ok(update)) = updates.next().await {
            let sessions = match update {
                StatusUpdate::Snapshot { sessions, .. } => sessions,
                StatusUpdate::Changed { session, .. } => vec![*session],
            };
            for s in sessions.into_iter().filter(|s| s.session_id == session_id) {
                if tx.send(s).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

/// A timestamp in Unix milliseconds.
pub fn millis(ts: &Option<prost_types::Timestamp>) -> u64 {
    ts.as_ref()
        .map_or(0, |t| t.seconds as u64 * 1000 + t.nanos as u64 / 1_000_000)
}
