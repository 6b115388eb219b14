//! Every podium service over one real sled log in a temporary directory, opened once per
//! process and seeded through the services themselves, and the calls that take a fuzz input
//! through the authenticating interceptor into a service method.

use std::{
    future::Future,
    path::Path,
    sync::{Arc, OnceLock},
    time::{Duration, SystemTime},
};

use bytes::Bytes;
use futures::{Stream, StreamExt};
use http_body_util::Full;
use podium_access::{AccessService, Authenticator, Directory, Principal, Role, TokenKeys};
use podium_agenda::{AgendaService, AgendaStore};
use podium_eventlog::{EventLog, Filter, Projector, SledEventLog, SledOptions};
use podium_feedback::{
    FeedbackModel, PollsService, QuestionsService, RatingsService, VoterKeys,
    domain::words::WordCounter, feedback_event_types,
};
use podium_proto::v1 as pb;
use podium_server::{DiagnosticsService, FeedService};
use podium_status::{
    Clock, Engine, PresenceService, RecordingStore, RecordingsService, StageService, StatusModel,
    status_model_event_types,
};
use prost::Message;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tonic::{
    Request, Response, Status, Streaming, codec::Codec, metadata::MetadataValue,
    service::Interceptor,
};
use tonic_prost::ProstCodec;

use crate::{Caller, Input, RPC_DEADLINE, assert_clear_refusal};

/// How many items of a server stream the harness reads, and how long it waits for each.
const STREAM_ITEMS: usize = 4;
const STREAM_ITEM_WAIT: Duration = Duration::from_millis(20);
/// A recording upload larger than this is refused, which keeps the temporary directory small.
const MAX_RECORDING_BYTES: u64 = 1 << 20;

/// The ids of what the seeding created, so that seed inputs can name them.
#[derive(Debug, Clone)]
pub struct Ids {
    pub conference: String,
    pub join_code: String,
    pub room: String,
    pub speaker: String,
    pub backup_speaker: String,
    pub session: String,
    pub poll: String,
    pub question: String,
    pub recording: String,
}

/// The services, their log and the tokens of every [`Caller`].
pub struct Stack {
    runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
    _stop: watch::Sender<bool>,
    pub log: Arc<dyn EventLog>,
    auth: Authenticator,
    /// Bearer header values by [`Caller`]; `None` sends no header.
    tokens: Vec<Option<String>>,
    pub ids: Ids,
    pub access: AccessService,
    pub agenda: AgendaService,
    pub stage: StageService,
    pub presence: PresenceService,
    pub recordings: RecordingsService,
    pub polls: PollsService,
    pub questions: QuestionsService,
    pub ratings: RatingsService,
    pub feed: FeedService,
    pub diagnostics: DiagnosticsService,
}

/// The process's stack, opened and seeded on first use.
pub fn stack() -> &'static Stack {
    static STACK: OnceLock<Stack> = OnceLock::new();
    STACK.get_or_init(|| Stack::open().expect("the fuzzing stack opens"))
}

impl Stack {
    fn open() -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        // In TMPDIR, which fuzz/run.sh points at a directory of its own in /dev/shm.
        let dir = tempfile::Builder::new().prefix("podium-fuzz").tempdir()?;
        let Parts {
            log,
            auth,
            tokens,
            ids,
            services,
            stop,
        } = runtime.block_on(Parts::start(dir.path()))?;
        let Services {
            access,
            agenda,
            stage,
            presence,
            recordings,
            polls,
            questions,
            ratings,
            feed,
        } = services;
        Ok(Self {
            runtime,
            _dir: dir,
            _stop: stop,
            log,
            auth,
            tokens,
            ids,
            access,
            agenda,
            stage,
            presence,
            recordings,
            polls,
            questions,
            ratings,
            feed,
            diagnostics: DiagnosticsService,
        })
    }

    /// Runs `f` to completion on the stack's runtime.
    pub fn run<T>(&self, f: impl Future<Output = T>) -> T {
        self.runtime.block_on(f)
    }

    /// `message` as sent by `caller`, through the authenticating interceptor.
    fn request<M>(&self, caller: u8, message: M) -> Result<Request<M>, Status> {
        let mut head = Request::new(());
        if let Some(token) = &self.tokens[usize::from(caller % Caller::COUNT)] {
            let value = MetadataValue::try_from(format!("Bearer {token}"))
                .map_err(|_| Status::internal("a harness token is not ASCII"))?;
            head.metadata_mut().insert("authorization", value);
        }
        let (metadata, extensions, ()) = self.auth.clone().call(head)?.into_parts();
        Ok(Request::from_parts(metadata, extensions, message))
    }

    /// A unary RPC: the body decoded as its request.
    pub async fn unary<M, R, Fut>(&self, input: Input<'_>, call: impl FnOnce(Request<M>) -> Fut)
    where
        M: Message + Default,
        Fut: Future<Output = Result<Response<R>, Status>>,
    {
        let Ok(message) = M::decode(input.body) else {
            return;
        };
        match self.request(input.caller, message) {
            Ok(request) => {
                let _ = answered(deadline(call(request)).await);
            }
            Err(status) => assert_clear_refusal(&status),
        }
    }

    /// A server-streaming RPC: the answer, then the first few items of its stream.
    pub async fn server_streaming<M, S, T, Fut>(
        &self,
        input: Input<'_>,
        call: impl FnOnce(Request<M>) -> Fut,
    ) where
        M: Message + Default,
        S: Stream<Item = Result<T, Status>> + Unpin,
        Fut: Future<Output = Result<Response<S>, Status>>,
    {
        let Ok(message) = M::decode(input.body) else {
            return;
        };
        let request = match self.request(input.caller, message) {
            Ok(request) => request,
            Err(status) => return assert_clear_refusal(&status),
        };
        if let Some(response) = answered(deadline(call(request)).await) {
            let mut stream = response.into_inner();
            for _ in 0..STREAM_ITEMS {
                match tokio::time::timeout(STREAM_ITEM_WAIT, stream.next()).await {
                    Ok(Some(item)) => {
                        if answered(item).is_none() {
                            break;
                        }
                    }
                    Ok(None) | Err(_) => break,
                }
            }
        }
    }

    /// A client-streaming RPC: the body is the request stream.
    pub async fn client_streaming<M, R, Fut>(
        &self,
        input: Input<'_>,
        call: impl FnOnce(Request<Streaming<M>>) -> Fut,
    ) where
        M: Message + Default + Send + 'static,
        Fut: Future<Output = Result<Response<R>, Status>>,
    {
        match self.request(input.caller, request_stream::<M>(input.body)) {
            Ok(request) => {
                let _ = answered(deadline(call(request)).await);
            }
            Err(status) => assert_clear_refusal(&status),
        }
    }

    /// A bidirectional RPC: the body is the request stream; the answers are read to the end.
    pub async fn bidi_streaming<M, S, T, Fut>(
        &self,
        input: Input<'_>,
        call: impl FnOnce(Request<Streaming<M>>) -> Fut,
    ) where
        M: Message + Default + Send + 'static,
        S: Stream<Item = Result<T, Status>> + Unpin,
        Fut: Future<Output = Result<Response<S>, Status>>,
    {
        let request = match self.request(input.caller, request_stream::<M>(input.body)) {
            Ok(request) => request,
            Err(status) => return assert_clear_refusal(&status),
        };
        if let Some(response) = answered(deadline(call(request)).await) {
            let mut stream = response.into_inner();
            // The request stream is finite, so the answers end once it is read.
            while let Some(item) = deadline(stream.next()).await {
                if answered(item).is_none() {
                    break;
                }
            }
        }
    }
}

/// What [`Stack::open`] starts on the runtime.
struct Parts {
    log: Arc<dyn EventLog>,
    auth: Authenticator,
    tokens: Vec<Option<String>>,
    ids: Ids,
    services: Services,
    stop: watch::Sender<bool>,
}

impl Parts {
    async fn start(dir: &Path) -> anyhow::Result<Self> {
        let log: Arc<dyn EventLog> =
            Arc::new(SledEventLog::open(dir.join("log"), SledOptions::default())?);
        let keys = Arc::new(TokenKeys::from_secret(&[7; 32], None));
        let auth = Authenticator::new(keys.clone());
        let (stop, stop_rx) = watch::channel(false);

        let directory = Projector::start(
            "access-directory",
            log.clone(),
            Directory::default(),
            Filter {
                stream_prefix: None,
                event_types: podium_access::directory_event_types(),
            },
        )
        .await?;
        let agenda = AgendaStore::open(log.clone()).await?;
        let status = Projector::start(
            "status",
            log.clone(),
            StatusModel::default(),
            Filter {
                stream_prefix: None,
                event_types: status_model_event_types(),
            },
        )
        .await?;
        let engine = Engine::spawn(log.clone(), status.clone(), Clock::new(), 0).await?;
        let store = Arc::new(RecordingStore::open(
            dir.join("recordings"),
            MAX_RECORDING_BYTES,
        )?);
        let feedback = Projector::start(
            "feedback",
            log.clone(),
            FeedbackModel::new(Arc::new(WordCounter::new())),
            Filter {
                stream_prefix: None,
                event_types: feedback_event_types(),
            },
        )
        .await?;
        let voter_keys = Arc::new(VoterKeys::open(dir.join("poll-keys"))?);
        let services = Services {
            access: AccessService::new(keys.clone(), directory.clone()),
            agenda: AgendaService::new(agenda),
            stage: StageService::new(engine.clone(), status.clone(), log.clone(), stop_rx.clone()),
            presence: PresenceService::new(engine, status.clone(), log.clone(), stop_rx.clone()),
            recordings: RecordingsService::new(log.clone(), status, store)
                .with_shutdown(stop_rx.clone()),
            polls: PollsService::new(log.clone(), feedback.clone(), voter_keys, stop_rx.clone()),
            questions: QuestionsService::new(log.clone(), feedback.clone(), stop_rx.clone()),
            ratings: RatingsService::new(log.clone(), feedback),
            feed: FeedService::new(log.clone(), directory, stop_rx),
        };
        let ids = seed(&services).await?;
        let tokens = tokens(&keys, &ids)?;
        Ok(Self {
            log,
            auth,
            tokens,
            ids,
            services,
            stop,
        })
    }
}

/// The services the stack serves.
struct Services {
    access: AccessService,
    agenda: AgendaService,
    stage: StageService,
    presence: PresenceService,
    recordings: RecordingsService,
    polls: PollsService,
    questions: QuestionsService,
    ratings: RatingsService,
    feed: FeedService,
}

/// Fails the run if `f` takes longer than [`RPC_DEADLINE`].
async fn deadline<T>(f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(RPC_DEADLINE, f).await {
        Ok(value) => value,
        Err(_) => panic!("an RPC did not answer within {RPC_DEADLINE:?}"),
    }
}

/// The answer, or `None` after checking that the refusal is a clear one. With
/// `PODIUM_FUZZ_VERBOSE` set, prints every refusal, to see how deep the inputs get.
fn answered<T>(result: Result<T, Status>) -> Option<T> {
    static VERBOSE: OnceLock<bool> = OnceLock::new();
    match result {
        Ok(value) => Some(value),
        Err(status) => {
            if *VERBOSE.get_or_init(|| std::env::var_os("PODIUM_FUZZ_VERBOSE").is_some()) {
                eprintln!("refused: {:?} {}", status.code(), status.message());
            }
            assert_clear_refusal(&status);
            None
        }
    }
}

/// `body` (length-delimited messages) as a request stream of gRPC frames, which tonic decodes
/// exactly as it decodes one from the network. Messages that do not decode are left out, as a
/// unary request that does not decode is skipped: tonic's codec refuses those (with INTERNAL,
/// its choice) before podium's code sees them.
fn request_stream<M: Message + Default + Send + 'static>(body: &[u8]) -> Streaming<M> {
    let mut frames = Vec::with_capacity(body.len() + 16);
    let mut rest = body;
    while !rest.is_empty() {
        let Ok(len) = prost::encoding::decode_length_delimiter(&mut rest) else {
            break;
        };
        let (message, tail) = rest.split_at(len.min(rest.len()));
        rest = tail;
        if M::decode(message).is_err() {
            continue;
        }
        frames.push(0); // not compressed
        frames.extend_from_slice(&(message.len() as u32).to_be_bytes());
        frames.extend_from_slice(message);
    }
    let decoder = ProstCodec::<M, M>::default().decoder();
    Streaming::new_request(decoder, Full::new(Bytes::from(frames)), None, None)
}

/// Bearer tokens by [`Caller`].
fn tokens(keys: &TokenKeys, ids: &Ids) -> anyhow::Result<Vec<Option<String>>> {
    let of = |role: Role, conference: &str, speaker: Option<&str>| Principal {
        id: format!("fuzz-{}", role.as_str()),
        name: format!("Fuzz {}", role.as_str()),
        role,
        conference_id: Some(conference.to_owned()),
        speaker_id: speaker.map(str::to_owned),
        expires_at: None,
    };
    let day = Duration::from_secs(86_400);
    let c = ids.conference.as_str();
    let issue = |p: Principal| keys.issue(&p, day).map(Some);
    let tokens = vec![
        None,
        issue(Principal::admin())?,
        issue(of(Role::Organiser, c, None))?,
        issue(of(Role::Moderator, c, None))?,
        issue(of(Role::Speaker, c, Some(&ids.speaker)))?,
        issue(of(Role::Attendee, c, None))?,
        issue(of(Role::Integration, c, None))?,
        issue(of(Role::Organiser, "elsewhere", None))?,
        Some(keys.issue_at(
            &of(Role::Organiser, c, None),
            SystemTime::now() - 2 * day,
            day,
        )?),
        Some("not.a.token".to_owned()),
    ];
    assert_eq!(tokens.len(), usize::from(Caller::COUNT));
    Ok(tokens)
}

/// Fixed request ids, so that every process derives the same ids from them.
fn request_id(n: u128) -> String {
    uuid::Uuid::from_u128(0x0f0f_0000_0000_4000_8000_0000_0000_0000 | n).to_string()
}

/// As the admin: a conference with a room, two speakers and a session that is live, a poll
/// that is open, Q&A settings with a question, and a recording.
async fn seed(s: &Services) -> anyhow::Result<Ids> {
    use podium_proto::v1::{
        agenda_server::Agenda, polls_server::Polls, questions_server::Questions,
        recordings_server::Recordings, stage_server::Stage,
    };
    fn admin<M>(message: M) -> Request<M> {
        let mut request = Request::new(message);
        request.extensions_mut().insert(Principal::admin());
        request
    }
    let text = |t: &str| {
        Some(pb::LocalizedText {
            text: [("en".to_owned(), t.to_owned())].into(),
        })
    };
    let conference = "fuzzconf".to_owned();
    let join_code = "FUZZ-2024".to_owned();
    s.agenda
        .create_conference(admin(pb::CreateConferenceRequest {
            request_id: request_id(1),
            conference_id: conference.clone(),
            title: text("Fuzz Conference"),
            default_language: "en".into(),
            time_zone: "Asia/Phnom_Penh".into(),
            join_code: join_code.clone(),
        }))
        .await?;
    let room = s
        .agenda
        .add_room(admin(pb::AddRoomRequest {
            request_id: request_id(2),
            conference_id: conference.clone(),
            name: "Main hall".into(),
            capacity: 300,
        }))
        .await?
        .into_inner()
        .room
        .map(|r| r.id)
        .unwrap_or_default();
    let mut speakers = Vec::new();
    for (n, name) in [(3, "Sok Dara"), (4, "Chan Vanna")] {
        let speaker = s
            .agenda
            .add_speaker(admin(pb::AddSpeakerRequest {
                request_id: request_id(n),
                conference_id: conference.clone(),
                name: name.into(),
                organisation: "Open Data".into(),
                time_zone: "Asia/Phnom_Penh".into(),
                available_from: "08:00".into(),
                available_until: "18:00".into(),
            }))
            .await?
            .into_inner()
            .speaker
            .map(|s| s.id)
            .unwrap_or_default();
        speakers.push(speaker);
    }
    let at = |rfc3339: &str| -> anyhow::Result<_> {
        let at = chrono::DateTime::parse_from_rfc3339(rfc3339)?;
        Ok(Some(prost_types::Timestamp::from(SystemTime::from(at))))
    };
    let session = s
        .agenda
        .add_session(admin(pb::AddSessionRequest {
            request_id: request_id(5),
            conference_id: conference.clone(),
            title: text("Open data in the Mekong"),
            kind: pb::SessionKind::Talk as i32,
            start: at("2030-06-04T03:00:00Z")?,
            end: at("2030-06-04T04:00:00Z")?,
            room_id: room.clone(),
            speaker_ids: vec![speakers[0].clone()],
            backup_speaker_ids: vec![speakers[1].clone()],
            failover: None,
        }))
        .await?
        .into_inner()
        .session
        .map(|s| s.id)
        .unwrap_or_default();
    let recording_bytes = b"fuzz recording bytes".to_vec();
    let header = pb::RecordingHeader {
        request_id: request_id(6),
        conference_id: conference.clone(),
        session_id: session.clone(),
        sha256: hex(&Sha256::digest(&recording_bytes)),
        size_bytes: recording_bytes.len() as u64,
        media_type: "video/mp4".into(),
        duration_ms: 60_000,
        language: "en".into(),
        ..Default::default()
    };
    let parts = [
        pb::UploadRecordingRequest {
            part: Some(pb::upload_recording_request::Part::Header(header)),
        },
        pb::UploadRecordingRequest {
            part: Some(pb::upload_recording_request::Part::Chunk(recording_bytes)),
        },
    ];
    let mut body = Vec::new();
    for part in &parts {
        part.encode_length_delimited(&mut body)?;
    }
    let recording = s
        .recordings
        .upload_recording(admin(request_stream(&body)))
        .await?
        .into_inner()
        .recording
        .map(|r| r.id)
        .unwrap_or_default();
    s.stage
        .start_session(admin(pb::StartSessionRequest {
            conference_id: conference.clone(),
            session_id: session.clone(),
        }))
        .await?;
    let poll = s
        .polls
        .create_poll(admin(pb::CreatePollRequest {
            request_id: request_id(7),
            conference_id: conference.clone(),
            session_id: session.clone(),
            question: text("Which data do you open first?"),
            kind: pb::PollKind::SingleChoice as i32,
            options: vec![text("Budgets").unwrap(), text("Rivers").unwrap()],
            max_choices: 1,
            visibility: pb::ResultVisibility::Live as i32,
            ..Default::default()
        }))
        .await?
        .into_inner()
        .poll
        .map(|p| p.id)
        .unwrap_or_default();
    s.polls
        .open_poll(admin(pb::OpenPollRequest {
            conference_id: conference.clone(),
            poll_id: poll.clone(),
        }))
        .await?;
    s.questions
        .set_qa_settings(admin(pb::SetQaSettingsRequest {
            request_id: request_id(8),
            conference_id: conference.clone(),
            session_id: session.clone(),
            settings: Some(pb::QaSettings {
                allow_anonymous: true,
                require_approval: false,
            }),
        }))
        .await?;
    let attendee = |message| {
        let mut request = Request::new(message);
        request.extensions_mut().insert(Principal {
            id: "att-seed".into(),
            name: "Seed Attendee".into(),
            role: Role::Attendee,
            conference_id: Some(conference.clone()),
            speaker_id: None,
            expires_at: None,
        });
        request
    };
    let question = s
        .questions
        .ask_question(attendee(pb::AskQuestionRequest {
            request_id: request_id(9),
            conference_id: conference.clone(),
            session_id: session.clone(),
            text: "How often is the river data updated?".into(),
            anonymous: false,
        }))
        .await?
        .into_inner()
        .question
        .map(|q| q.id)
        .unwrap_or_default();
    Ok(Ids {
        conference,
        join_code,
        room,
        speaker: speakers[0].clone(),
        backup_speaker: speakers[1].clone(),
        session,
        poll,
        question,
        recording,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
