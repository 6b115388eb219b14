//! Recordings against a real sled log in a temporary directory and real files: uploads that
//! succeed, every way an upload can fail (each keeps nothing: no file, no event), fetches from
//! any offset, idempotent retries, who may do what, and the service over a loopback socket.

use std::{path::Path, sync::Arc, time::Duration};

use futures::{StreamExt, stream};
use podium_access::{Principal, Role};
use podium_eventlog::{
    EventLog, ExpectedVersion, Filter, NewEvent, Projector, SledEventLog, SledOptions,
};
use podium_proto::v1::{
    self as pb, recordings_client::RecordingsClient, recordings_server::Recordings,
    recordings_server::RecordingsServer, upload_recording_request::Part,
};
use prost::Name;
use sha2::{Digest, Sha256};
use tonic::{Code, Request, Status};
use uuid::Uuid;

use super::{
    FETCH_CHUNK_BYTES, MAX_CHUNK_BYTES, MAX_MESSAGE_BYTES, RecordingStore, RecordingsService,
    recordings_stream,
};
use crate::model::{StatusModel, status_model_event_types};

mod delete;

const ODC: &str = "odc2024";
const TALK: &str = "ses-talk";
const OTHER_TALK: &str = "ses-other";
const MEI: &str = "spk-mei";
const SARAH: &str = "spk-sarah";

struct Fixture {
    dir: tempfile::TempDir,
    log: Arc<dyn EventLog>,
    store: Arc<RecordingStore>,
    service: RecordingsService,
}

impl Fixture {
    /// A log holding ODC 2024 with two sessions (Mei's and Sarah's) and another conference.
    async fn new(max_bytes: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log: Arc<dyn EventLog> =
            Arc::new(SledEventLog::open(dir.path().join("log"), SledOptions::default()).unwrap());
        for conference in [ODC, "other"] {
            append(
                &log,
                &format!("conference/{conference}/agenda"),
                &pb::ConferenceCreated {
                    conference_id: conference.into(),
                    title: None,
                    default_language: "en".into(),
                    time_zone: "Asia/Phnom_Penh".into(),
                    join_code: String::new(),
                    created_by: "admin".into(),
                },
            )
            .await;
        }
        for (session, speaker, hour) in [(TALK, MEI, 2), (OTHER_TALK, SARAH, 3)] {
            append(
                &log,
                &format!("conference/{ODC}/agenda"),
                &pb::SessionScheduled {
                    conference_id: ODC.into(),
                    session_id: session.into(),
                    start: Some(prost_types::Timestamp {
                        seconds: 1_731_549_600 + hour * 3600,
                        nanos: 0,
                    }),
                    end: Some(prost_types::Timestamp {
                        seconds: 1_731_549_600 + hour * 3600 + 2700,
                        nanos: 0,
                    }),
                    room_id: "room-hall".into(),
                    speaker_ids: vec![speaker.into()],
                    ..Default::default()
                },
            )
            .await;
        }
        let filter = Filter {
            stream_prefix: None,
            event_types: status_model_event_types(),
        };
        let model = Projector::start("status", log.clone(), StatusModel::default(), filter)
            .await
            .unwrap();
        let store =
            Arc::new(RecordingStore::open(dir.path().join("recordings"), max_bytes).unwrap());
        let service = RecordingsService::new(log.clone(), model, store.clone());
        Self {
            dir,
            log,
            store,
            service,
        }
    }

    async fn upload(
        &self,
        who: &Principal,
        parts: Vec<Result<pb::UploadRecordingRequest, Status>>,
    ) -> Result<pb::Recording, Status> {
        self.service.upload(who, stream::iter(parts)).await
    }

    async fn fetch(
        &self,
        who: &Principal,
        recording_id: &str,
        offset: u64,
    ) -> Result<Vec<pb::FetchRecordingResponse>, Status> {
        let request = authed(
            who,
            pb::FetchRecordingRequest {
                conference_id: ODC.into(),
                recording_id: recording_id.into(),
                offset,
            },
        );
        let mut stream = self.service.fetch_recording(request).await?.into_inner();
        let mut messages = Vec::new();
        while let Some(message) = stream.next().await {
            messages.push(message?);
        }
        Ok(messages)
    }

    async fn list(&self, who: &Principal, session: &str) -> Result<Vec<pb::Recording>, Status> {
        let request = authed(
            who,
            pb::ListRecordingsRequest {
                conference_id: ODC.into(),
                session_id: session.into(),
            },
        );
        Ok(self
            .service
            .list_recordings(request)
            .await?
            .into_inner()
            .recordings)
    }

    /// `RecordingRegistered` events in the whole log.
    async fn registered_events(&self) -> usize {
        self.log
            .read_all(0, 10_000)
            .await
            .unwrap()
            .iter()
            .filter(|e| e.event_type == pb::RecordingRegistered::full_name())
            .count()
    }

    fn temp_files(&self) -> usize {
        std::fs::read_dir(self.store.temp_dir()).unwrap().count()
    }

    fn stored_files(&self) -> usize {
        std::fs::read_dir(self.dir.path().join("recordings/sha256"))
            .unwrap()
            .count()
    }

    /// A refused upload leaves no temporary file, no content and no event.
    async fn assert_nothing_kept(&self) {
        assert_eq!(self.temp_files(), 0, "a temporary file was left behind");
        assert_eq!(self.stored_files(), 0, "content was stored");
        assert_eq!(
            self.registered_events().await,
            0,
            "a recording was registered"
        );
    }
}

async fn append<M: prost::Message + Name>(log: &Arc<dyn EventLog>, stream: &str, message: &M) {
    log.append(
        stream,
        ExpectedVersion::Any,
        vec![NewEvent::new(Uuid::new_v4(), message)],
    )
    .await
    .unwrap();
}

fn authed<T>(who: &Principal, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.extensions_mut().insert(who.clone());
    request
}

fn principal(role: Role, conference: &str, speaker: Option<&str>) -> Principal {
    Principal {
        id: format!("{role}-1"),
        name: format!("a {role}"),
        role,
        conference_id: Some(conference.into()),
        speaker_id: speaker.map(str::to_owned),
        expires_at: None,
        token_id: None,
    }
}

/// A 45-minute MP4 of `len` bytes: a placeholder talk's index, then a `free` box of
/// deterministic pseudo-random bytes (xorshift), so a failure is reproducible.
fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut data = super::probe::tests::TALK.to_vec();
    let padding = len
        .checked_sub(data.len())
        .expect("room for the talk's index");
    data.extend(u32::try_from(padding).unwrap().to_be_bytes());
    data.extend(b"free");
    let mut x = seed | 1;
    data.extend((8..padding).map(|_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x as u8
    }));
    data
}

use super::probe::tests::TALK_MS;

fn sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn header(data: &[u8], session: &str) -> pb::RecordingHeader {
    pb::RecordingHeader {
        request_id: Uuid::new_v4().to_string(),
        conference_id: ODC.into(),
        session_id: session.into(),
        sha256: sha256(data),
        size_bytes: data.len() as u64,
        media_type: "video/mp4".into(),
        duration_ms: TALK_MS,
        language: String::new(),
        captions: vec![pb::CaptionTrack {
            language: "km".into(),
            label: "Khmer subtitles".into(),
        }],
        file_name: "open-data-in-taiwan.mp4".into(),
        backup: false,
    }
}

/// The header, then `data` in chunks of `chunk` bytes.
fn parts(
    header: pb::RecordingHeader,
    data: &[u8],
    chunk: usize,
) -> Vec<Result<pb::UploadRecordingRequest, Status>> {
    std::iter::once(Part::Header(header))
        .chain(data.chunks(chunk).map(|c| Part::Chunk(c.to_vec())))
        .map(|part| Ok(pb::UploadRecordingRequest { part: Some(part) }))
        .collect()
}

fn assert_refused(result: Result<pb::Recording, Status>, code: Code, starts_with: &str) {
    let status = result.expect_err("the upload should be refused");
    assert_eq!(status.code(), code, "{}", status.message());
    assert!(
        status.message().starts_with(starts_with),
        "{:?} should start with {starts_with:?}",
        status.message()
    );
}

fn joined(messages: &[pb::FetchRecordingResponse]) -> Vec<u8> {
    messages.iter().flat_map(|m| m.chunk.clone()).collect()
}

#[tokio::test]
async fn an_upload_is_stored_by_content_and_fetched_from_any_offset() {
    let f = Fixture::new(64 << 20).await;
    let admin = Principal::admin();
    let data = bytes(2 * FETCH_CHUNK_BYTES + 512 * 1024 + 123, 1);
    let h = header(&data, TALK);
    let recording = f
        .upload(&admin, parts(h.clone(), &data, 300 * 1024))
        .await
        .unwrap();
    assert!(recording.id.starts_with("rec-") && recording.id.len() == 14);
    assert_eq!(recording.session_id, TALK);
    assert_eq!(recording.sha256, h.sha256);
    assert_eq!(recording.size_bytes, data.len() as u64);
    assert_eq!(recording.order, 0);
    assert_eq!(
        recording.language, "en",
        "the conference's default language"
    );
    assert_eq!(recording.captions[0].language, "km");
    assert!(recording.uploaded_at.is_some());
    assert_eq!(
        std::fs::read(f.store.content_path(&h.sha256)).unwrap(),
        data
    );
    assert_eq!(f.temp_files(), 0);
    let events = f
        .log
        .read_stream(&recordings_stream(ODC, TALK), 0, 10)
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].id.to_string(), h.request_id);

    let whole = f.fetch(&admin, &recording.id, 0).await.unwrap();
    assert_eq!(whole.len(), 3);
    assert_eq!(joined(&whole), data);
    let mut offset = 0;
    for m in &whole {
        assert_eq!(m.offset, offset);
        assert!(m.chunk.len() <= FETCH_CHUNK_BYTES);
        assert_eq!(
            (m.size_bytes, m.sha256.as_str()),
            (data.len() as u64, h.sha256.as_str())
        );
        offset += m.chunk.len() as u64;
    }
    let resumed = f.fetch(&admin, &recording.id, 1_500_001).await.unwrap();
    assert_eq!(resumed[0].offset, 1_500_001);
    assert_eq!(joined(&resumed), &data[1_500_001..]);
    // At the end: one empty chunk that still says what the whole file is.
    let end = f
        .fetch(&admin, &recording.id, data.len() as u64)
        .await
        .unwrap();
    assert_eq!(end.len(), 1);
    assert!(end[0].chunk.is_empty());
    assert_eq!(end[0].sha256, h.sha256);
    let past = f
        .fetch(&admin, &recording.id, data.len() as u64 + 1)
        .await
        .unwrap_err();
    assert_eq!(past.code(), Code::OutOfRange);
    assert!(past.message().starts_with("offset:"), "{}", past.message());

    assert_eq!(f.list(&admin, "").await.unwrap(), vec![recording.clone()]);
    assert_eq!(f.list(&admin, TALK).await.unwrap(), vec![recording]);
    assert!(f.list(&admin, OTHER_TALK).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_wrong_checksum_keeps_nothing() {
    let f = Fixture::new(64 << 20).await;
    let data = bytes(100_000, 2);
    let mut h = header(&data, TALK);
    h.sha256 = sha256(b"something else");
    let status = f
        .upload(&Principal::admin(), parts(h, &data, 4096))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().starts_with("sha256: ")
            && status
                .message()
                .contains("does not match the bytes received"),
        "{}",
        status.message()
    );
    f.assert_nothing_kept().await;
    assert!(f.list(&Principal::admin(), "").await.unwrap().is_empty());
}

#[tokio::test]
async fn what_is_not_video_or_not_as_long_as_declared_keeps_nothing() {
    let f = Fixture::new(1 << 20).await;
    let admin = Principal::admin();
    let slides = b"%PDF-1.7 the slides, not the talk".repeat(40);
    let result = f
        .upload(&admin, parts(header(&slides, TALK), &slides, 500))
        .await;
    assert_refused(
        result,
        Code::InvalidArgument,
        "file: the file is not MP4, MOV, WebM or Matroska video",
    );
    f.assert_nothing_kept().await;

    // Declared 45:02, the file plays 45:00: more than a second apart.
    let data = bytes(2000, 13);
    let mut h = header(&data, TALK);
    h.duration_ms = TALK_MS + 2_000;
    let result = f.upload(&admin, parts(h, &data, 500)).await;
    assert_refused(
        result,
        Code::InvalidArgument,
        "duration_ms: 2702000 ms declared, but the file plays 2700000 ms",
    );
    f.assert_nothing_kept().await;

    // Within a second, or not declared: the file's length and facts are registered.
    let mut h = header(&data, TALK);
    h.duration_ms = TALK_MS - 400;
    let recording = f.upload(&admin, parts(h, &data, 500)).await.unwrap();
    assert_eq!(recording.duration_ms, TALK_MS);
    let media = recording.media.unwrap();
    assert_eq!(
        (media.container.as_str(), media.video_codec.as_str()),
        ("mp4", "h264")
    );
    let other = bytes(3000, 14);
    let mut h = header(&other, TALK);
    h.duration_ms = 0;
    h.backup = true;
    let backup = f.upload(&admin, parts(h, &other, 500)).await.unwrap();
    assert_eq!(backup.duration_ms, TALK_MS);
}

#[tokio::test]
async fn oversize_uploads_are_refused_up_front_and_as_bytes_arrive() {
    let f = Fixture::new(2000).await;
    let admin = Principal::admin();
    // Declared too large: refused before any byte.
    let data = bytes(2001, 3);
    let result = f
        .upload(&admin, parts(header(&data, TALK), &data, 500))
        .await;
    assert_refused(result, Code::ResourceExhausted, "size_bytes: 2001 bytes");
    // Declared within the limit, but more bytes come.
    let data = bytes(2500, 4);
    let mut h = header(&data[..2000], TALK);
    h.size_bytes = 2000;
    let status = f.upload(&admin, parts(h, &data, 500)).await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(
        status.message().contains("limit of 2000 bytes"),
        "{}",
        status.message()
    );
    f.assert_nothing_kept().await;

    // Within the limit but beyond the declared size.
    let f = Fixture::new(10_000).await;
    let mut h = header(&data[..2000], TALK);
    h.size_bytes = 2000;
    let result = f.upload(&admin, parts(h, &data, 500)).await;
    assert_refused(result, Code::InvalidArgument, "size_bytes: ");
    // One chunk over 4 MiB.
    let f = Fixture::new(64 << 20).await;
    let data = bytes(MAX_CHUNK_BYTES + 1, 5);
    let result = f
        .upload(
            &admin,
            parts(header(&data, TALK), &data, MAX_CHUNK_BYTES + 1),
        )
        .await;
    assert_refused(result, Code::InvalidArgument, "chunk: ");
    f.assert_nothing_kept().await;
}

#[tokio::test]
async fn a_truncated_broken_or_cancelled_upload_keeps_nothing() {
    let f = Fixture::new(64 << 20).await;
    let admin = Principal::admin();
    let data = bytes(2000, 6);

    // The stream ends early.
    let result = f
        .upload(&admin, parts(header(&data, TALK), &data[..600], 200))
        .await;
    assert_refused(
        result,
        Code::InvalidArgument,
        "size_bytes: the upload ended after 600 of the 2000 bytes",
    );
    f.assert_nothing_kept().await;

    // The transport breaks.
    let mut broken = parts(header(&data, TALK), &data[..600], 200);
    broken.push(Err(Status::cancelled("client went away")));
    let result = f.upload(&admin, broken).await;
    assert_refused(
        result,
        Code::Cancelled,
        "the upload broke off after 600 of 2000 bytes",
    );
    f.assert_nothing_kept().await;

    // The request is dropped mid-upload (what tonic does when a client cancels): the stream
    // says when the server has written the first chunk and is waiting for more.
    let (written_tx, written_rx) = tokio::sync::oneshot::channel::<()>();
    let first = parts(header(&data, TALK), &data[..600], 600);
    let hanging = stream::iter(first).chain(stream::once(async move {
        let _ = written_tx.send(());
        std::future::pending::<Result<pb::UploadRecordingRequest, Status>>().await
    }));
    let service = f.service.clone();
    let task = tokio::spawn(async move { service.upload(&admin, hanging).await });
    written_rx.await.unwrap();
    assert_eq!(f.temp_files(), 1, "the upload is in progress");
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    f.assert_nothing_kept().await;
}

#[tokio::test]
async fn a_retried_upload_answers_with_the_first_recording() {
    let f = Fixture::new(64 << 20).await;
    let admin = Principal::admin();
    let data = bytes(50_000, 7);
    let h = header(&data, TALK);
    let first = f
        .upload(&admin, parts(h.clone(), &data, 8192))
        .await
        .unwrap();
    let again = f
        .upload(&admin, parts(h.clone(), &data, 8192))
        .await
        .unwrap();
    assert_eq!(again, first);
    // The bytes are not even read again.
    let header_only = f.upload(&admin, parts(h, &[], 1)).await.unwrap();
    assert_eq!(header_only, first);
    assert_eq!(f.registered_events().await, 1);

    // The same content as a backup, then a new primary: one file, the order follows.
    let mut backup = header(&data, TALK);
    backup.backup = true;
    let backup = f.upload(&admin, parts(backup, &data, 8192)).await.unwrap();
    assert_eq!(backup.order, 1);
    let newer = bytes(20_000, 8);
    let primary = f
        .upload(&admin, parts(header(&newer, TALK), &newer, 8192))
        .await
        .unwrap();
    assert_eq!(primary.order, 0);
    let listed: Vec<(String, u32)> = f
        .list(&admin, TALK)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.id, r.order))
        .collect();
    assert_eq!(listed, vec![(primary.id, 0), (first.id, 1), (backup.id, 2)]);
    assert_eq!(f.stored_files(), 2);
    assert_eq!(f.temp_files(), 0);
}

#[tokio::test]
async fn the_header_comes_first_and_every_field_is_checked() {
    let f = Fixture::new(64 << 20).await;
    let admin = Principal::admin();
    let data = bytes(2000, 9);

    let chunk_first = vec![Ok(pb::UploadRecordingRequest {
        part: Some(Part::Chunk(data.clone())),
    })];
    assert_refused(
        f.upload(&admin, chunk_first).await,
        Code::InvalidArgument,
        "header: ",
    );
    assert_refused(
        f.upload(&admin, Vec::new()).await,
        Code::InvalidArgument,
        "header: ",
    );
    let mut two_headers = parts(header(&data, TALK), &data, 500);
    two_headers.insert(
        2,
        Ok(pb::UploadRecordingRequest {
            part: Some(Part::Header(header(&data, TALK))),
        }),
    );
    assert_refused(
        f.upload(&admin, two_headers).await,
        Code::InvalidArgument,
        "header: only the first",
    );

    type Edit = fn(&mut pb::RecordingHeader);
    let cases: Vec<(Edit, Code, &str)> = vec![
        (
            |h| h.request_id = "not-a-uuid".into(),
            Code::InvalidArgument,
            "request_id: ",
        ),
        (
            |h| h.session_id = "ses-nowhere".into(),
            Code::NotFound,
            "session ses-nowhere",
        ),
        (
            |h| h.session_id = String::new(),
            Code::InvalidArgument,
            "session_id: ",
        ),
        (
            |h| h.conference_id = "nowhere".into(),
            Code::NotFound,
            "conference nowhere",
        ),
        (
            |h| h.sha256 = h.sha256.to_uppercase(),
            Code::InvalidArgument,
            "sha256: ",
        ),
        (
            |h| h.sha256 = "abc".into(),
            Code::InvalidArgument,
            "sha256: ",
        ),
        (|h| h.size_bytes = 0, Code::InvalidArgument, "size_bytes: "),
        (
            |h| h.duration_ms = 25 * 60 * 60 * 1000,
            Code::InvalidArgument,
            "duration_ms: ",
        ),
        (
            |h| h.media_type = "mp4".into(),
            Code::InvalidArgument,
            "media_type: ",
        ),
        (
            |h| h.language = "English".into(),
            Code::InvalidArgument,
            "language: ",
        ),
        (
            |h| {
                h.captions = (0..21)
                    .map(|_| pb::CaptionTrack {
                        language: "km".into(),
                        label: String::new(),
                    })
                    .collect()
            },
            Code::InvalidArgument,
            "captions: at most 20",
        ),
        (
            |h| h.captions[0].language = "Khmer".into(),
            Code::InvalidArgument,
            "captions: track 0",
        ),
        (
            |h| h.file_name = "a\nb.mp4".into(),
            Code::InvalidArgument,
            "file_name: ",
        ),
        (
            |h| h.file_name = "x".repeat(256),
            Code::InvalidArgument,
            "file_name: ",
        ),
    ];
    for (edit, code, starts_with) in cases {
        let mut h = header(&data, TALK);
        edit(&mut h);
        assert_refused(
            f.upload(&admin, parts(h, &data, 500)).await,
            code,
            starts_with,
        );
    }
    f.assert_nothing_kept().await;

    // Defaults: an empty media type is a byte stream.
    let mut h = header(&data, TALK);
    h.media_type = String::new();
    h.language = "km".into();
    let recording = f.upload(&admin, parts(h, &data, 500)).await.unwrap();
    assert_eq!(recording.media_type, "application/octet-stream");
    assert_eq!(recording.language, "km");
}

#[tokio::test]
async fn organisers_upload_staff_and_the_sessions_speakers_fetch() {
    let f = Fixture::new(64 << 20).await;
    let data = bytes(10_000, 10);
    let organiser = principal(Role::Organiser, ODC, None);
    let moderator = principal(Role::Moderator, ODC, None);

    let refused = f
        .upload(&moderator, parts(header(&data, TALK), &data, 4096))
        .await;
    assert_refused(refused, Code::PermissionDenied, "a moderator token may not");
    let elsewhere = principal(Role::Organiser, "other", None);
    let refused = f
        .upload(&elsewhere, parts(header(&data, TALK), &data, 4096))
        .await;
    assert_refused(refused, Code::NotFound, "conference odc2024 not found");
    f.assert_nothing_kept().await;
    let recording = f
        .upload(&organiser, parts(header(&data, TALK), &data, 4096))
        .await
        .unwrap();

    let may_fetch = [
        organiser.clone(),
        moderator.clone(),
        principal(Role::Integration, ODC, None),
        principal(Role::Speaker, ODC, Some(MEI)),
    ];
    for who in &may_fetch {
        let fetched = f.fetch(who, &recording.id, 0).await.unwrap();
        assert_eq!(joined(&fetched), data, "{who:?}");
    }
    let refused = [
        (
            principal(Role::Speaker, ODC, Some(SARAH)),
            Code::PermissionDenied,
        ),
        (principal(Role::Attendee, ODC, None), Code::PermissionDenied),
        (elsewhere.clone(), Code::NotFound),
    ];
    for (who, code) in refused {
        let status = f.fetch(&who, &recording.id, 0).await.unwrap_err();
        assert_eq!(status.code(), code, "{who:?}: {}", status.message());
    }
    let unknown = f.fetch(&organiser, "rec-0000000000", 0).await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);

    assert_eq!(f.list(&moderator, "").await.unwrap().len(), 1);
    for who in [
        principal(Role::Attendee, ODC, None),
        principal(Role::Speaker, ODC, Some(MEI)),
    ] {
        let status = f.list(&who, "").await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
    }
    let status = f.list(&elsewhere, "").await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    let status = f.list(&organiser, "ses-nowhere").await.unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
}

#[tokio::test]
async fn unfinished_uploads_are_removed_when_the_store_opens() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("recordings");
    let store = RecordingStore::open(root.clone(), 1000).unwrap();
    std::fs::write(store.temp_dir().join("left-over.part"), b"half a talk").unwrap();
    let content = store.content_path(&sha256(b"kept"));
    std::fs::write(&content, b"kept").unwrap();
    let store = RecordingStore::open(root, 1000).unwrap();
    assert_eq!(std::fs::read_dir(store.temp_dir()).unwrap().count(), 0);
    assert!(content.exists(), "stored recordings are kept");
}

/// Waits (bounded) until `done` holds; for effects of another process or connection.
async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn temp_bytes(dir: &Path) -> Option<u64> {
    let entry = std::fs::read_dir(dir).ok()?.next()?.ok()?;
    Some(entry.metadata().ok()?.len())
}

#[tokio::test]
async fn over_grpc_four_mib_chunks_pass_and_a_cancelled_upload_keeps_nothing() {
    let f = Fixture::new(64 << 20).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tonic::service::interceptor::InterceptedService::new(
        RecordingsServer::new(f.service.clone()).max_decoding_message_size(MAX_MESSAGE_BYTES),
        |mut request: Request<()>| {
            request.extensions_mut().insert(Principal::admin());
            Ok(request)
        },
    );
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(server)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let mut client = RecordingsClient::connect(format!("http://{address}"))
        .await
        .unwrap();

    let data = bytes(2 * MAX_CHUNK_BYTES + 1000, 11);
    let h = header(&data, TALK);
    let upload = stream::iter(
        parts(h.clone(), &data, MAX_CHUNK_BYTES)
            .into_iter()
            .map(Result::unwrap),
    );
    let recording = client
        .upload_recording(upload)
        .await
        .unwrap()
        .into_inner()
        .recording
        .unwrap();
    let mut fetched = client
        .fetch_recording(pb::FetchRecordingRequest {
            conference_id: ODC.into(),
            recording_id: recording.id.clone(),
            offset: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let mut received = Vec::new();
    while let Some(message) = fetched.next().await {
        received.extend(message.unwrap().chunk);
    }
    assert_eq!(sha256(&received), h.sha256);
    // A retry is answered before its chunks are read; the client still gets the answer.
    let retry = stream::iter(
        parts(h.clone(), &data, MAX_CHUNK_BYTES)
            .into_iter()
            .map(Result::unwrap),
    );
    let again = client
        .upload_recording(retry)
        .await
        .unwrap()
        .into_inner()
        .recording
        .unwrap();
    assert_eq!(again, recording);

    // A client that goes away mid-upload: the server drops the temporary file.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<pb::UploadRecordingRequest>(4);
    let outgoing = async_stream::stream! {
        while let Some(part) = rx.recv().await {
            yield part;
        }
    };
    let other = bytes(3 * FETCH_CHUNK_BYTES, 12);
    let mut sender = client.clone();
    let call = tokio::spawn(async move { sender.upload_recording(outgoing).await });
    for part in parts(
        header(&other, TALK),
        &other[..FETCH_CHUNK_BYTES],
        FETCH_CHUNK_BYTES,
    ) {
        tx.send(part.unwrap()).await.unwrap();
    }
    let temp = f.store.temp_dir();
    eventually("the first chunk is written", || {
        temp_bytes(&temp) == Some(FETCH_CHUNK_BYTES as u64)
    })
    .await;
    call.abort();
    drop(tx);
    eventually("the temporary file is removed", || {
        temp_bytes(&temp).is_none()
    })
    .await;
    assert_eq!(f.registered_events().await, 1);
}
