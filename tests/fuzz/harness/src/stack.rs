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
use podium_eventlog::{
    EventLog, Filter, Projector, SledEventLog, SledOptions,
    personal::{KEYS_FILE, PersonalKeys, SealingLog},
};
use podium_feedback::{
    FeedbackModel, PollsService, QuestionsService, RatingsService, VoterKeys,
    domain::words::WordCounter, feedback_event_types,
};
use podium_server::{DiagnosticsService, FeedService, PrivacyService};
use podium_status::{
    Clock, Engine, PresenceService, RecordingStore, RecordingsService, StageService, StatusModel,
    status_model_event_types,
};
use prost::Message;
use tokio::sync::watch;
use tonic::{
    Request, Response, Status, Streaming, codec::Codec, metadata::MetadataValue,
    service::Interceptor,
};
use tonic_prost::ProstCodec;

use crate::{Caller, Input, RPC_DEADLINE, assert_clear_refusal};

mod seed;

use seed::seed;

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
    pub privacy: PrivacyService,
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
            privacy,
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
            privacy,
            diagnostics: DiagnosticsService::default(),
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
        // As podiumd does: personal fields sealed on their way into the log.
        let personal = Arc::new(PersonalKeys::load(&dir.join(KEYS_FILE))?);
        let log: Arc<dyn EventLog> = Arc::new(SealingLog::new(
            Arc::new(SledEventLog::open(dir.join("log"), SledOptions::default())?),
            personal.clone(),
        ));
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
        let register = Projector::start(
            "access-tokens",
            log.clone(),
            podium_access::TokenRegister::default(),
            Filter {
                stream_prefix: None,
                event_types: podium_access::register_event_types(),
            },
        )
        .await?;
        keys.watch_revocations(register);
        let agenda = AgendaStore::open(log.clone()).await?;
        let agenda_store = agenda.clone();
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
        let engine = Engine::spawn(log.clone(), status.clone(), Clock::new(), 0, None).await?;
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
            access: AccessService::new(keys.clone(), directory.clone(), log.clone()),
            agenda: AgendaService::new(agenda),
            stage: StageService::new(engine.clone(), status.clone(), log.clone(), stop_rx.clone()),
            presence: PresenceService::new(engine, status.clone(), log.clone(), stop_rx.clone()),
            recordings: RecordingsService::new(log.clone(), status, store)
                .with_shutdown(stop_rx.clone()),
            polls: PollsService::new(
                log.clone(),
                feedback.clone(),
                voter_keys,
                stop_rx.clone(),
                &tokio::runtime::Handle::current(),
            ),
            questions: QuestionsService::new(
                log.clone(),
                feedback.clone(),
                stop_rx.clone(),
                &tokio::runtime::Handle::current(),
            )
            .with_token_keys(keys.clone()),
            ratings: RatingsService::new(log.clone(), feedback.clone()),
            feed: FeedService::new(log.clone(), directory.clone(), personal.clone(), stop_rx),
            privacy: PrivacyService {
                log: log.clone(),
                personal,
                tokens: keys.clone(),
                directory,
                agenda: Some(agenda_store),
                feedback: Some(feedback),
                // Separate projectors, no snapshots to write again.
                follower: None,
                sealed_from: 0,
            },
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
pub(crate) struct Services {
    access: AccessService,
    agenda: AgendaService,
    stage: StageService,
    presence: PresenceService,
    recordings: RecordingsService,
    polls: PollsService,
    questions: QuestionsService,
    ratings: RatingsService,
    feed: FeedService,
    privacy: PrivacyService,
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
        token_id: None,
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
