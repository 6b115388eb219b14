//! Deleting a recording, and collecting the files no recording needs any more.
//!
//! A deletion is a `RecordingDeleted` event under the client's request id, on the session's
//! recordings stream, refused while the recording is on air; the read model takes it out of the
//! session's fallback order. The file goes only when nothing needs its content (another
//! recording with the same bytes, a live session playing it): [`RecordingsService::collect`]
//! removes what no registered recording and no live source names, after each deletion and when
//! podiumd starts.

use std::time::SystemTime;

use podium_access::{ORGANISERS, Principal};
use podium_eventlog::{ExpectedVersion, NewEvent, RequestId};
use podium_proto::v1 as pb;
use tonic::Status;

use super::{Collected, RecordingsService, recordings_stream};
use crate::error::StatusError;

impl RecordingsService {
    /// Deletes a recording for `principal`; a retry (same request id) gets the first answer.
    pub async fn delete(
        &self,
        principal: &Principal,
        r: pb::DeleteRecordingRequest,
    ) -> Result<pb::DeleteRecordingResponse, Status> {
        let conference_id = r.conference_id.trim();
        let recording_id = r.recording_id.trim();
        principal.require(conference_id, ORGANISERS, "delete recordings")?;
        let request_id = RequestId::parse_or_new("request_id", &r.request_id)?;
        self.caught_up().await?;
        let (recording, deleted_from) = {
            let model = self.model.read();
            let conference = model.conference(conference_id).ok_or_else(|| {
                StatusError::NotFound(format!("conference {conference_id} not found"))
            })?;
            if let Some(session_id) = conference.on_air(recording_id) {
                return Err(StatusError::FailedPrecondition(format!(
                    "recording {recording_id} is on air in session {session_id}; switch the \
                     session to another source before deleting it"
                ))
                .into());
            }
            (
                conference.recording(recording_id).cloned(),
                conference.deleted_recordings.get(recording_id).cloned(),
            )
        };
        let Some(recording) = recording else {
            return match deleted_from {
                Some(session_id) => {
                    let stream = recordings_stream(conference_id, &session_id);
                    match self.first_answer(&stream, request_id, recording_id).await? {
                        Some(answer) => Ok(answer),
                        None => Err(StatusError::NotFound(format!(
                            "recording {recording_id} was already deleted"
                        ))
                        .into()),
                    }
                }
                None => Err(StatusError::NotFound(format!(
                    "recording {recording_id} not found in conference {conference_id}"
                ))
                .into()),
            };
        };
        let event = pb::RecordingDeleted {
            recording: Some(recording.clone()),
            by: principal.id.clone(),
            at: Some(prost_types::Timestamp::from(SystemTime::now())),
        };
        let stream = recordings_stream(conference_id, &recording.session_id);
        let outcome = self
            .log
            .append(
                &stream,
                ExpectedVersion::Any,
                vec![NewEvent::new(request_id.uuid(), &event)],
            )
            .await
            .map_err(StatusError::from)?;
        if outcome.deduplicated {
            // The request id is already in this stream: this very deletion retried, or the id
            // of another request of the session's recordings, refused.
            return self
                .first_answer(&stream, request_id, recording_id)
                .await?
                .ok_or_else(|| Status::internal("a deduplicated deletion has no event"));
        }
        self.model
            .wait_for(outcome.last_position)
            .await
            .map_err(StatusError::from)?;
        tracing::info!(recording = %recording.id, session = %recording.session_id, principal = %principal.id, "recording deleted");
        // The deletion stands whatever happens to the file: a file left behind is collected
        // at the next deletion or start.
        if let Err(error) = self.collect().await {
            tracing::warn!(%error, "recordings' files could not be collected; they will be at the next collection");
        }
        Ok(pb::DeleteRecordingResponse {
            recording: Some(recording),
            position: outcome.last_position,
        })
    }

    /// The answer the deletion of `recording_id` under `request_id` got, if `stream` holds
    /// it; INVALID_ARGUMENT if the id is there for something else.
    async fn first_answer(
        &self,
        stream: &str,
        request_id: RequestId,
        recording_id: &str,
    ) -> Result<Option<pb::DeleteRecordingResponse>, StatusError> {
        let Some((position, _)) = self.log.find(stream, request_id.uuid()).await? else {
            return Ok(None);
        };
        let Some(event) = self.log.read_all(position, 1).await?.pop() else {
            return Ok(None);
        };
        let reused = || {
            StatusError::invalid(
                "request_id",
                "already used for a different request; send a new one",
            )
        };
        if !event.is::<pb::RecordingDeleted>() {
            return Err(reused());
        }
        let deleted = event
            .decode::<pb::RecordingDeleted>()
            .map_err(|_| reused())?;
        if deleted.recording.as_ref().map(|r| r.id.as_str()) != Some(recording_id) {
            return Err(reused());
        }
        Ok(Some(pb::DeleteRecordingResponse {
            recording: deleted.recording,
            position,
        }))
    }

    /// Removes the files that no registered recording and no live session needs (on a cluster,
    /// the shared copies put long enough ago: `files::SETTLE`).
    pub async fn collect(&self) -> Result<Collected, StatusError> {
        // Caught up inside the store's gate: a registration the log has but the model not yet
        // (its upload cancelled after the append) is seen before its file could be taken.
        self.store
            .collect(super::needed_content(self.model.clone()))
            .await
    }
}
