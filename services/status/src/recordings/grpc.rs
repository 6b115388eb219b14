//! The `podium.v1.Recordings` service. An upload is checked (who, which session, a header whose
//! every field makes sense), streamed into the [`RecordingStore`], and only once its size and
//! SHA-256 are verified, and it is probed as video whose length agrees with the declared one,
//! registered as a `RecordingRegistered` event under the client's request
//! id, so a retried upload names the same recording and writes nothing twice. Fetches and lists
//! are answered from the status read model, which folds those events.

use std::{pin::Pin, sync::Arc, time::SystemTime};

use futures::{Stream, StreamExt};
use podium_access::{ORGANISERS, Principal, Role, STAFF, caller};
use podium_eventlog::{EventLog, ExpectedVersion, NewEvent, Projector, RequestId};
use podium_proto::v1::{self as pb, recordings_server::Recordings, upload_recording_request::Part};
use podium_text::{Limit, is_language_tag};
use tokio::sync::watch;
use tonic::{Request, Response, Status, Streaming};

use super::{FETCH_CHUNK_BYTES, RecordingStore, is_sha256, recordings_stream};
use crate::{error::StatusError, model::StatusModel};

const MAX_CAPTIONS: usize = 20;
const MAX_MEDIA_TYPE_CHARS: usize = 127;
/// The upload's file name: clients may save the file under it, and file systems take 255 bytes.
const FILE_NAME: Limit = Limit::line(255).bytes(255).optional();
/// A caption track's label ("ខ្មែរ", "English (auto)").
const LABEL: Limit = Limit::line(100).optional();
/// A day: longer than any talk, short enough to catch seconds sent as milliseconds' units.
const MAX_DURATION_MS: u64 = 24 * 60 * 60 * 1000;

/// The recordings service.
#[derive(Clone)]
pub struct RecordingsService {
    pub(super) log: Arc<dyn EventLog>,
    pub(super) model: Projector<StatusModel>,
    pub(super) store: Arc<RecordingStore>,
    shutdown: Option<watch::Receiver<bool>>,
}

impl RecordingsService {
    pub fn new(
        log: Arc<dyn EventLog>,
        model: Projector<StatusModel>,
        store: Arc<RecordingStore>,
    ) -> Self {
        Self {
            log,
            model,
            store,
            shutdown: None,
        }
    }

    /// Ends open uploads and fetches with `UNAVAILABLE` once `shutdown` turns true.
    pub fn with_shutdown(mut self, shutdown: watch::Receiver<bool>) -> Self {
        self.shutdown = Some(shutdown);
        self
    }

    /// Receives an upload (the header, then chunks) for `principal` and registers it. The
    /// gRPC method passes its request stream here; tests pass any stream.
    pub async fn upload<S>(&self, principal: &Principal, parts: S) -> Result<pb::Recording, Status>
    where
        S: Stream<Item = Result<pb::UploadRecordingRequest, Status>> + Send,
    {
        let mut parts = std::pin::pin!(parts);
        let header = match parts.next().await {
            Some(Ok(pb::UploadRecordingRequest {
                part: Some(Part::Header(header)),
            })) => header,
            Some(Ok(_)) => {
                return Err(StatusError::invalid(
                    "header",
                    "the first message must be the header, before any chunk",
                )
                .into());
            }
            Some(Err(status)) => return Err(status),
            None => {
                return Err(StatusError::invalid(
                    "header",
                    "the upload is empty; send the header first",
                )
                .into());
            }
        };
        let conference_id = header.conference_id.trim().to_owned();
        principal.require(&conference_id, ORGANISERS, "upload recordings")?;
        self.caught_up().await?;
        let (request_id, backup, mut recording, earlier) = {
            let model = self.model.read();
            let (request_id, backup, recording) = validate(header, &model, &self.store)?;
            let conference = model.conference(&conference_id);
            let earlier = match conference.and_then(|c| c.recording(&recording.id)) {
                Some(existing) => Some(Ok(existing.clone())),
                None => conference
                    .is_some_and(|c| c.deleted_recordings.contains_key(&recording.id))
                    .then_some(Err(())),
            };
            (request_id, backup, recording, earlier)
        };
        // A retry of an upload that succeeded gets the first result; the bytes are not read.
        if let Some(Ok(existing)) = earlier {
            tracing::info!(recording = %existing.id, "upload retried; answering with the registered recording");
            return Ok(existing);
        }
        // A retry of an upload whose recording has since been deleted: the deletion stands.
        if earlier.is_some() {
            return Err(StatusError::FailedPrecondition(format!(
                "recording {} was uploaded under this request_id and has since been deleted; \
                 upload it again with a new request_id",
                recording.id
            ))
            .into());
        }

        let mut upload = self
            .store
            .begin(recording.size_bytes, &recording.sha256)
            .await?;
        let mut shutdown = self.shutdown.clone();
        loop {
            let next = tokio::select! {
                () = stopping(&mut shutdown) => {
                    return Err(Status::unavailable("podiumd is shutting down; nothing was kept, upload again"));
                }
                next = parts.next() => next,
            };
            match next {
                None => break,
                Some(Ok(pb::UploadRecordingRequest {
                    part: Some(Part::Chunk(chunk)),
                })) => upload.write(chunk).await?,
                Some(Ok(pb::UploadRecordingRequest {
                    part: Some(Part::Header(_)),
                })) => {
                    return Err(StatusError::invalid(
                        "header",
                        "only the first message may be a header",
                    )
                    .into());
                }
                Some(Ok(pb::UploadRecordingRequest { part: None })) => {}
                Some(Err(status)) => {
                    return Err(Status::new(
                        status.code(),
                        format!(
                            "the upload broke off after {} of {} bytes ({}); nothing was kept",
                            upload.received(),
                            recording.size_bytes,
                            status.message()
                        ),
                    ));
                }
            }
        }
        let media = upload.check().await?;
        recording.duration_ms = settle_duration(recording.duration_ms, &media)?;
        recording.media = Some(media);
        // From the moment the file is in place until the read model refers to it, no
        // collection may take it for an orphan.
        let _registering = self.store.registering().await;
        upload.keep().await?;

        let session_id = recording.session_id.clone();
        recording.uploaded_at = Some(prost_types::Timestamp::from(SystemTime::now()));
        // 0 puts it first; the read model recomputes every `order` of the session.
        recording.order = if backup {
            let model = self.model.read();
            let registered = model
                .conference(&conference_id)
                .and_then(|c| c.recordings.get(&session_id))
                .map_or(0, Vec::len);
            registered.max(1) as u32
        } else {
            0
        };
        let event = pb::RecordingRegistered {
            recording: Some(recording.clone()),
        };
        let outcome = self
            .log
            .append(
                &recordings_stream(&conference_id, &session_id),
                ExpectedVersion::Any,
                vec![NewEvent::new(request_id.uuid(), &event)],
            )
            .await
            .map_err(StatusError::from)?;
        self.model
            .wait_for(outcome.last_position)
            .await
            .map_err(StatusError::from)?;
        tracing::info!(
            recording = %recording.id,
            session = %session_id,
            bytes = recording.size_bytes,
            sha256 = %recording.sha256,
            "recording registered"
        );
        self.registered(&conference_id, &recording.id)
            .ok_or_else(|| Status::internal("the recording was stored but the read model lost it"))
    }

    /// Waits until the read model has applied every durable event, so a session the agenda has
    /// just scheduled (or a recording just registered) is known here.
    pub(super) async fn caught_up(&self) -> Result<(), StatusError> {
        Ok(self.model.catch_up().await?)
    }

    fn registered(&self, conference_id: &str, recording_id: &str) -> Option<pb::Recording> {
        self.model
            .read()
            .conference(conference_id)
            .and_then(|c| c.recording(recording_id))
            .cloned()
    }
}

/// Completes when `shutdown` turns true; never without one.
async fn stopping(shutdown: &mut Option<watch::Receiver<bool>>) {
    if let Some(shutdown) = shutdown
        && shutdown.wait_for(|stop| *stop).await.is_ok()
    {
        return;
    }
    std::future::pending().await
}

/// Checks a header against the read model and the store's limit. Returns the request id,
/// whether it is a backup, and the recording to register (without `order` and `uploaded_at`).
fn validate(
    h: pb::RecordingHeader,
    model: &StatusModel,
    store: &RecordingStore,
) -> Result<(RequestId, bool, pb::Recording), StatusError> {
    let request_id = RequestId::parse_or_new("request_id", &h.request_id)?;
    let conference_id = h.conference_id.trim();
    let conference = model
        .conference(conference_id)
        .ok_or_else(|| StatusError::NotFound(format!("conference {conference_id} not found")))?;
    let session_id = h.session_id.trim();
    if session_id.is_empty() {
        return Err(StatusError::invalid("session_id", "is required"));
    }
    if !conference.sessions.contains_key(session_id) {
        return Err(StatusError::NotFound(format!(
            "session {session_id} not found in conference {conference_id}"
        )));
    }
    let sha256 = h.sha256.trim();
    if !is_sha256(sha256) {
        return Err(StatusError::invalid(
            "sha256",
            "must be the file's SHA-256 as 64 lowercase hex digits",
        ));
    }
    if h.size_bytes == 0 {
        return Err(StatusError::invalid(
            "size_bytes",
            "must be the file's size in bytes, more than 0",
        ));
    }
    store.check_size(h.size_bytes)?;
    if h.duration_ms > MAX_DURATION_MS {
        return Err(StatusError::invalid(
            "duration_ms",
            "must be the talk's length in milliseconds, at most a day (or 0: the file's)",
        ));
    }
    let media_type = match h.media_type.trim() {
        "" => "application/octet-stream".to_owned(),
        text => {
            let ok = text.chars().count() <= MAX_MEDIA_TYPE_CHARS
                && text.split('/').count() == 2
                && text.split('/').all(|part| {
                    !part.is_empty()
                        && part
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "!#$&-^_.+".contains(c))
                });
            if !ok {
                return Err(StatusError::invalid(
                    "media_type",
                    format!(
                        "{text:?} is not a media type like video/mp4 (at most {MAX_MEDIA_TYPE_CHARS} characters)"
                    ),
                ));
            }
            text.to_ascii_lowercase()
        }
    };
    let language = match h.language.trim() {
        "" => conference.default_language.clone(),
        tag if is_language_tag(tag) => tag.to_owned(),
        tag => {
            return Err(StatusError::invalid(
                "language",
                format!("{tag:?} is not a language tag like en or km"),
            ));
        }
    };
    if h.captions.len() > MAX_CAPTIONS {
        return Err(StatusError::invalid(
            "captions",
            format!("at most {MAX_CAPTIONS} tracks"),
        ));
    }
    let mut captions = Vec::with_capacity(h.captions.len());
    for (i, track) in h.captions.into_iter().enumerate() {
        let tag = track.language.trim();
        if !is_language_tag(tag) {
            return Err(StatusError::invalid(
                "captions",
                format!("track {i}: {tag:?} is not a language tag like en or km"),
            ));
        }
        let label = podium_text::clean("captions", &track.label, &LABEL)
            .map_err(|e| e.about(format!("track {i}: the label")))?;
        captions.push(pb::CaptionTrack {
            language: tag.to_owned(),
            label,
        });
    }
    let file_name = podium_text::clean("file_name", &h.file_name, &FILE_NAME)?;
    let recording = pb::Recording {
        id: request_id.derive_id("rec"),
        conference_id: conference_id.to_owned(),
        session_id: session_id.to_owned(),
        sha256: sha256.to_owned(),
        size_bytes: h.size_bytes,
        media_type,
        duration_ms: h.duration_ms,
        language,
        captions,
        file_name,
        order: 0,
        uploaded_at: None,
        media: None,
    };
    Ok((request_id, h.backup, recording))
}

/// How far a declared duration may be from the file's: a second, the rounding of any editor.
const DURATION_TOLERANCE_MS: u64 = 1_000;

/// The recording's duration: the file's, which a declared one (not 0) must agree with.
pub(super) fn settle_duration(
    declared_ms: u64,
    media: &pb::MediaFacts,
) -> Result<u64, StatusError> {
    match (declared_ms, media.duration_ms) {
        (0, 0) => Err(StatusError::invalid(
            "duration_ms",
            "the file does not say how long it plays; give the talk's length; nothing was kept",
        )),
        (declared, 0) => Ok(declared),
        (0, probed) if probed > MAX_DURATION_MS => Err(StatusError::invalid(
            "file",
            format!("the file says it plays {probed} ms, more than a day; nothing was kept"),
        )),
        (0, probed) => Ok(probed),
        (declared, probed) if declared.abs_diff(probed) > DURATION_TOLERANCE_MS => {
            Err(StatusError::invalid(
                "duration_ms",
                format!(
                    "{declared} ms declared, but the file plays {probed} ms; leave it out to take the file's; nothing was kept"
                ),
            ))
        }
        (_, probed) => Ok(probed),
    }
}

type FetchStream = Pin<Box<dyn Stream<Item = Result<pb::FetchRecordingResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Recordings for RecordingsService {
    async fn upload_recording(
        &self,
        request: Request<Streaming<pb::UploadRecordingRequest>>,
    ) -> Result<Response<pb::UploadRecordingResponse>, Status> {
        let principal = caller(&request)?;
        match self.upload(&principal, request.into_inner()).await {
            Ok(recording) => Ok(Response::new(pb::UploadRecordingResponse {
                recording: Some(recording),
            })),
            Err(status) => {
                tracing::warn!(principal = %principal.id, code = ?status.code(), message = status.message(), "upload refused");
                Err(status)
            }
        }
    }

    async fn delete_recording(
        &self,
        request: Request<pb::DeleteRecordingRequest>,
    ) -> Result<Response<pb::DeleteRecordingResponse>, Status> {
        let principal = caller(&request)?;
        self.delete(&principal, request.into_inner())
            .await
            .map(Response::new)
    }

    type FetchRecordingStream = FetchStream;

    async fn fetch_recording(
        &self,
        request: Request<pb::FetchRecordingRequest>,
    ) -> Result<Response<Self::FetchRecordingStream>, Status> {
        let principal = caller(&request)?;
        let r = request.into_inner();
        let conference_id = r.conference_id.trim();
        let recording_id = r.recording_id.trim();
        principal.check_conference(conference_id)?;
        self.caught_up().await?;
        let recording = {
            let model = self.model.read();
            let conference = model.conference(conference_id).ok_or_else(|| {
                StatusError::NotFound(format!("conference {conference_id} not found"))
            })?;
            let recording = conference.recording(recording_id).cloned().ok_or_else(|| {
                StatusError::NotFound(format!("recording {recording_id} not found"))
            })?;
            // The session's own speakers may fetch its recording, to check what will be played.
            let own = principal.role == Role::Speaker
                && principal.speaker_id.as_deref().is_some_and(|speaker| {
                    conference
                        .sessions
                        .get(&recording.session_id)
                        .is_some_and(|s| s.has_speaker(speaker))
                });
            if !own {
                principal.require(
                    conference_id,
                    STAFF,
                    "fetch the recordings of sessions it does not speak in",
                )?;
            }
            recording
        };
        let size = recording.size_bytes;
        if r.offset > size {
            return Err(Status::out_of_range(format!(
                "offset: {} is past the end of recording {recording_id} ({size} bytes)",
                r.offset
            )));
        }
        let mut reader = self
            .store
            .open_at(&recording.sha256, size, r.offset)
            .await?;
        tracing::info!(recording = %recording.id, offset = r.offset, principal = %principal.id, "recording fetch");
        let mut shutdown = self.shutdown.clone();
        let sha256 = recording.sha256;
        let mut offset = r.offset;
        let stream = async_stream::try_stream! {
            loop {
                let len = (size - offset).min(FETCH_CHUNK_BYTES as u64) as usize;
                // At the end (a fetch from `offset == size`) one empty chunk still tells the
                // client the size and checksum to verify what it has.
                let chunk = if len == 0 {
                    Vec::new()
                } else {
                    let read = tokio::select! {
                        () = stopping(&mut shutdown) => Err(Status::unavailable(format!(
                            "podiumd is shutting down; fetch again from offset {offset}"
                        ))),
                        chunk = reader.read(len) => chunk.map_err(Status::from),
                    };
                    read?
                };
                yield pb::FetchRecordingResponse {
                    offset,
                    chunk,
                    size_bytes: size,
                    sha256: sha256.clone(),
                };
                offset += len as u64;
                if offset >= size {
                    break;
                }
            }
        };
        Ok(Response::new(Box::pin(stream)))
    }

    async fn list_recordings(
        &self,
        request: Request<pb::ListRecordingsRequest>,
    ) -> Result<Response<pb::ListRecordingsResponse>, Status> {
        let principal = caller(&request)?;
        let r = request.into_inner();
        let conference_id = r.conference_id.trim();
        let session_id = r.session_id.trim();
        principal.require(conference_id, STAFF, "list recordings")?;
        self.caught_up().await?;
        let model = self.model.read();
        let conference = model.conference(conference_id).ok_or_else(|| {
            StatusError::NotFound(format!("conference {conference_id} not found"))
        })?;
        if !session_id.is_empty() && !conference.sessions.contains_key(session_id) {
            return Err(StatusError::NotFound(format!(
                "session {session_id} not found in conference {conference_id}"
            ))
            .into());
        }
        let mut sessions: Vec<&String> = conference
            .recordings
            .keys()
            .filter(|s| session_id.is_empty() || s.as_str() == session_id)
            .collect();
        // In agenda order, like `podium session list`.
        sessions.sort_by_key(|s| (conference.sessions.get(*s).map(|f| f.start), *s));
        let recordings = sessions
            .into_iter()
            .flat_map(|s| conference.recordings[s].iter().cloned())
            .collect();
        Ok(Response::new(pb::ListRecordingsResponse { recordings }))
    }
}
