//! The rating command: an attendee rates a session that has gone live, in place of their
//! earlier rating.

use podium_eventlog::{ExpectedVersion, NewEvent, RequestId};
use podium_proto::v1 as pb;

use super::{Writer, now};
use crate::{
    error::{RatingError, session_not_found},
    store::ratings::rating_stream,
};

/// A rating as an attendee gives it, read once from the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateSession {
    pub request_id: RequestId,
    pub conference_id: String,
    pub session_id: String,
    /// Checked: on the scale.
    pub rating: i32,
    /// Cleaned under podium's text policy; may be empty.
    pub comment: String,
}

pub struct RatingCommands {
    writer: Writer,
}

impl RatingCommands {
    pub fn new(writer: Writer) -> Self {
        Self { writer }
    }

    /// Rates a session: (it replaced the rater's earlier rating, the rating's log position).
    pub async fn rate(&self, rater: &str, rate: RateSession) -> Result<(bool, u64), RatingError> {
        let RateSession {
            request_id,
            conference_id,
            session_id,
            rating,
            comment,
        } = rate;
        let model = &self.writer.model;
        // The status service may have taken the session live a moment ago: catch up with the
        // log before answering that it has not started.
        let started = model.read().ratings.started(&conference_id, &session_id);
        if !started && let Some(last) = self.writer.log.head().checked_sub(1) {
            model.wait_for(last).await?;
        }
        {
            let model = model.read();
            let known = model
                .conferences
                .get(&conference_id)
                .is_some_and(|c| c.sessions.contains(&session_id));
            if !known {
                return Err(RatingError::NotFound(session_not_found(
                    &conference_id,
                    &session_id,
                )));
            }
            if !model.ratings.started(&conference_id, &session_id) {
                return Err(RatingError::NotStarted(format!(
                    "session {session_id} has not started yet: rate it once it is live"
                )));
            }
        }
        let stream = rating_stream(&conference_id, &session_id, rater);
        let event = NewEvent::new(
            request_id.uuid(),
            &pb::SessionRated {
                conference_id,
                session_id,
                rater: rater.to_owned(),
                rating,
                comment,
                at: now(),
                // Sealed by the log under the rater's key.
                personal: None,
            },
        );
        let outcome = self
            .writer
            .append_outcome(&stream, ExpectedVersion::Any, event)
            .await?;
        // The stream holds this rater's ratings of the session: one before this one means it
        // replaced it. Read from where the log put it, a retry gets the first answer, whatever
        // came since.
        Ok((outcome.first_version > 0, outcome.last_position))
    }
}
