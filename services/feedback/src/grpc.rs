//! The `podium.v1.Polls` service, and the publisher that turns a stream of ballots into at most
//! ten results updates a second per poll.
//!
//! **Fan-out costs per watcher, not per vote**: every poll has one `watch` channel holding its
//! latest results; the publisher replaces the value at most every 100 ms, and each watcher
//! sends whatever is latest when it is ready. A slow watcher skips to the newest results instead
//! of queueing.

use std::{
    collections::HashMap,
    pin::Pin,
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::Stream;
use podium_access::{Action, EVERYONE, Principal, RateLimits, Role, caller};
use podium_eventlog::{EventLog, ExpectedVersion, NewEvent, Projector};
use podium_proto::v1::{self as pb, polls_server::Polls};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tonic::{Request, Response, Status};
use uuid::Uuid;

pub mod qa;
pub mod ratings;

use crate::{
    domain::poll::{Ballot, Choice, HIDDEN_WORD, Kind, PollError, PollSpec, State, clean_answer},
    store::{
        FeedbackModel, VoterKeys, ballot_stream, choice_to_event, kind_from_proto, poll_stream,
        results, spec_to_proto, texts, visibility_from_proto,
    },
};

pub(crate) use podium_access::MODERATORS;
/// Shortest time between two results updates of one poll.
pub const COALESCE: Duration = Duration::from_millis(100);

fn refused(e: PollError) -> Status {
    match e {
        e @ PollError::Invalid { .. } => Status::invalid_argument(e.to_string()),
        PollError::NotOpen(m) | PollError::Locked(m) => Status::failed_precondition(m),
    }
}

/// What the publisher shares with every watcher of a poll: the position and results of each
/// audience, encoded once per update, so a watcher's update costs a copy and not an encoding.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    pub state: State,
    /// For admins, organisers and moderators.
    pub moderator: pb::SharedResults,
    /// For everyone else; without results while they may not see them.
    pub public: pb::SharedResults,
}

/// One latest-value channel per watched key (a poll; a session's questions).
pub(crate) type Channels<T> = Arc<Mutex<HashMap<(String, String), watch::Sender<Arc<T>>>>>;

fn publish(
    model: &FeedbackModel,
    conference_id: &str,
    poll_id: &str,
    position: u64,
) -> Option<Published> {
    let poll = model.poll(conference_id, poll_id)?;
    let moderator = results(model, conference_id, poll_id, true, "");
    let public = results(model, conference_id, poll_id, false, "");
    Some(Published {
        state: poll.state,
        moderator: pb::SharedResults::encode(position, moderator.as_ref()),
        public: pb::SharedResults::encode(position, public.as_ref()),
    })
}

/// Starts the task that, whenever keys are marked dirty, replaces the value of each watched one
/// with `build`'s, at most every [`COALESCE`]: the one coalescing publisher of polls and Q&A.
pub(crate) fn spawn_publisher<T: Send + Sync + 'static>(
    model: Projector<FeedbackModel>,
    dirty: Arc<Mutex<HashMap<(String, String), u64>>>,
    changed: Arc<tokio::sync::Notify>,
    channels: Channels<T>,
    build: impl Fn(&FeedbackModel, &(String, String)) -> Option<T> + Send + 'static,
) {
    tokio::spawn(async move {
        loop {
            changed.notified().await;
            let batch: Vec<(String, String)> = match dirty.lock() {
                Ok(mut d) => d.drain().map(|(key, _)| key).collect(),
                Err(_) => return,
            };
            {
                let senders = match channels.lock() {
                    Ok(c) => c,
                    Err(_) => return,
                };
                let m = model.read();
                for key in batch {
                    if let Some(sender) = senders.get(&key)
                        && let Some(value) = build(&m, &key)
                    {
                        sender.send_replace(Arc::new(value));
                    }
                }
            }
            tokio::time::sleep(COALESCE).await;
        }
    });
}

pub struct PollsService {
    log: Arc<dyn EventLog>,
    model: Projector<FeedbackModel>,
    keys: Arc<VoterKeys>,
    channels: Channels<Published>,
    shutdown: watch::Receiver<bool>,
    limits: Option<Arc<RateLimits>>,
}

impl PollsService {
    pub fn new(
        log: Arc<dyn EventLog>,
        model: Projector<FeedbackModel>,
        keys: Arc<VoterKeys>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let channels = Channels::default();
        let (dirty, changed) = {
            let m = model.read();
            (m.dirty.clone(), m.changed.clone())
        };
        spawn_publisher(model.clone(), dirty, changed, channels.clone(), |m, key| {
            publish(m, &key.0, &key.1, m.position)
        });
        Self {
            log,
            model,
            keys,
            channels,
            shutdown,
            limits: None,
        }
    }

    /// Limits each attendee's ballots (podiumd's `--rate-ballots`); unlimited without.
    pub fn with_rate_limits(mut self, limits: Arc<RateLimits>) -> Self {
        self.limits = Some(limits);
        self
    }

    fn default_language(&self, conference_id: &str) -> String {
        self.model
            .read()
            .conferences
            .get(conference_id)
            .map_or_else(|| "en".to_owned(), |c| c.default_language.clone())
    }

    /// The poll as `principal` may see it; attendees and speakers do not see drafts.
    fn poll_view(
        &self,
        principal: &Principal,
        conference_id: &str,
        poll_id: &str,
        language: &str,
    ) -> Result<pb::Poll, Status> {
        principal.require(conference_id, EVERYONE, "read polls")?;
        let model = self.model.read();
        let default_language = model
            .conferences
            .get(conference_id)
            .map_or("en", |c| c.default_language.as_str());
        let poll = model
            .poll(conference_id, poll_id)
            .filter(|p| p.state != State::Draft || MODERATORS.contains(&principal.role))
            .ok_or_else(|| Status::not_found(format!("poll {poll_id} not found")))?;
        Ok(spec_to_proto(
            &poll.spec,
            poll.state,
            language,
            default_language,
        ))
    }

    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        id: Uuid,
        event: NewEvent,
    ) -> Result<u64, Status> {
        let outcome = self
            .log
            .append(stream, expected, vec![NewEvent { id, ..event }])
            .await?;
        self.model.wait_for(outcome.last_position).await?;
        Ok(outcome.last_position)
    }

    async fn lifecycle(
        &self,
        request_principal: Principal,
        conference_id: &str,
        poll_id: &str,
        open: bool,
    ) -> Result<pb::Poll, Status> {
        request_principal.require(
            conference_id,
            MODERATORS,
            if open { "open polls" } else { "close polls" },
        )?;
        let (state, version) = {
            let model = self.model.read();
            let state = model
                .poll(conference_id, poll_id)
                .map(|p| p.state)
                .ok_or_else(|| Status::not_found(format!("poll {poll_id} not found")))?;
            let key = (conference_id.to_owned(), poll_id.to_owned());
            (state, model.poll_versions.get(&key).copied())
        };
        // Against the version the state was read at: of two moderators closing at once, one
        // succeeds and the other is told to retry (ABORTED), never a second close.
        let expected = version.map_or(ExpectedVersion::Any, ExpectedVersion::Exact);
        let at = Some(prost_types::Timestamp::from(std::time::SystemTime::now()));
        let (conference, poll) = (conference_id.to_owned(), poll_id.to_owned());
        match (open, state) {
            (true, State::Draft) => {
                let event = NewEvent::new(
                    Uuid::new_v4(),
                    &pb::PollOpened {
                        conference_id: conference,
                        poll_id: poll,
                        at,
                    },
                );
                self.append(
                    &poll_stream(conference_id, poll_id),
                    expected,
                    event.id,
                    event,
                )
                .await?;
            }
            (false, State::Open) => {
                let event = NewEvent::new(
                    Uuid::new_v4(),
                    &pb::PollClosed {
                        conference_id: conference,
                        poll_id: poll,
                        at,
                    },
                );
                self.append(
                    &poll_stream(conference_id, poll_id),
                    expected,
                    event.id,
                    event,
                )
                .await?;
                // The poll is closed in the log: no ballot counts any more, so the link from
                // attendees to ballots of an anonymous poll can go, durably (an fsync, so on
                // the blocking pool) before the close is acknowledged.
                let (keys, c, p) = (
                    self.keys.clone(),
                    conference_id.to_owned(),
                    poll_id.to_owned(),
                );
                let destroyed = tokio::task::spawn_blocking(move || keys.destroy(&c, &p)).await;
                destroyed
                    .unwrap_or_else(|e| Err(std::io::Error::other(e)))
                    .map_err(|e| {
                        tracing::error!(error = %e, "destroying a poll key failed");
                        Status::internal("poll closed, but its anonymity key could not be removed")
                    })?;
            }
            (true, _) => {
                return Err(Status::failed_precondition(format!(
                    "poll {poll_id} is already open or closed"
                )));
            }
            (false, State::Draft) => {
                return Err(Status::failed_precondition(format!(
                    "poll {poll_id} is not open yet"
                )));
            }
            (false, _) => {
                return Err(Status::failed_precondition(format!(
                    "poll {poll_id} is already closed"
                )));
            }
        }
        self.poll_view(&request_principal, conference_id, poll_id, "")
    }
}

pub(crate) fn derive_id(prefix: &str, request_id: &Uuid) -> String {
    let digest = Sha256::digest(request_id.as_bytes());
    format!(
        "{prefix}-{}",
        digest
            .iter()
            .take(5)
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchResultsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Polls for PollsService {
    type WatchResultsStream = WatchStream;

    async fn create_poll(
        &self,
        request: Request<pb::CreatePollRequest>,
    ) -> Result<Response<pb::CreatePollResponse>, Status> {
        let principal = caller(&request)?;
        let r = request.into_inner();
        let conference_id = r.conference_id.trim().to_owned();
        principal.require(&conference_id, MODERATORS, "create polls")?;
        let request_id = if r.request_id.trim().is_empty() {
            Uuid::new_v4()
        } else {
            Uuid::parse_str(r.request_id.trim())
                .map_err(|_| Status::invalid_argument("request_id: must be a UUID"))?
        };
        // A conference or session the agenda has just written may not be in the model yet.
        self.model
            .catch_up_unless(|m| {
                m.conferences.get(&conference_id).is_some_and(|c| {
                    let session = r.session_id.trim();
                    session.is_empty() || c.sessions.contains(session)
                })
            })
            .await?;
        let default_language = {
            let model = self.model.read();
            let conference = model.conferences.get(&conference_id).ok_or_else(|| {
                Status::not_found(format!("conference {conference_id} not found"))
            })?;
            let session = r.session_id.trim();
            if !session.is_empty() && !conference.sessions.contains(session) {
                return Err(Status::not_found(format!(
                    "session {session} not found in conference {conference_id}"
                )));
            }
            conference.default_language.clone()
        };
        let kind = kind_from_proto(r.kind).ok_or_else(|| {
            Status::invalid_argument(
                "kind: choose SINGLE_CHOICE, MULTIPLE_CHOICE, RATING, WORD_CLOUD or OPEN_TEXT",
            )
        })?;
        let spec = PollSpec {
            id: derive_id("poll", &request_id),
            conference_id: conference_id.clone(),
            session_id: r.session_id.trim().to_owned(),
            question: texts(r.question),
            kind,
            options: r
                .options
                .into_iter()
                .map(|o| (String::new(), texts(Some(o))))
                .collect(),
            max_choices: r.max_choices,
            scale_min: r.scale_min,
            scale_max: r.scale_max,
            visibility: visibility_from_proto(r.visibility)
                .ok_or_else(|| Status::invalid_argument("visibility: unknown value"))?,
            lock_ballots: r.lock_ballots,
            anonymous: r.anonymous,
            publishable: r.publishable,
            survey: r.survey,
            created_at: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        }
        .validated(&default_language)
        .map_err(refused)?;
        let poll_id = spec.id.clone();
        let event = NewEvent::new(
            request_id,
            &pb::PollCreated {
                poll: Some(spec_to_proto(&spec, State::Draft, "", &default_language)),
                created_by: principal.id.clone(),
            },
        );
        match self
            .append(
                &poll_stream(&conference_id, &poll_id),
                ExpectedVersion::NoStream,
                request_id,
                event,
            )
            .await
        {
            Ok(_) => {}
            Err(status) if status.code() == tonic::Code::Aborted => {
                return Err(Status::already_exists(format!(
                    "poll {poll_id} already exists: use a new request_id"
                )));
            }
            Err(status) => return Err(status),
        }
        let poll = self.poll_view(&principal, &conference_id, &poll_id, "")?;
        Ok(Response::new(pb::CreatePollResponse { poll: Some(poll) }))
    }

    async fn open_poll(
        &self,
        request: Request<pb::OpenPollRequest>,
    ) -> Result<Response<pb::OpenPollResponse>, Status> {
        let principal = caller(&request)?;
        let r = request.into_inner();
        let poll = self
            .lifecycle(principal, r.conference_id.trim(), r.poll_id.trim(), true)
            .await?;
        Ok(Response::new(pb::OpenPollResponse { poll: Some(poll) }))
    }

    async fn close_poll(
        &self,
        request: Request<pb::ClosePollRequest>,
    ) -> Result<Response<pb::ClosePollResponse>, Status> {
        let principal = caller(&request)?;
        let r = request.into_inner();
        let poll = self
            .lifecycle(principal, r.conference_id.trim(), r.poll_id.trim(), false)
            .await?;
        let results = results(
            &self.model.read(),
            r.conference_id.trim(),
            r.poll_id.trim(),
            true,
            "",
        );
        Ok(Response::new(pb::ClosePollResponse {
            poll: Some(poll),
            results,
        }))
    }

    async fn get_poll(
        &self,
        request: Request<pb::GetPollRequest>,
    ) -> Result<Response<pb::GetPollResponse>, Status> {
        let principal = caller(&request)?;
        let r = request.into_inner();
        let poll = self.poll_view(
            &principal,
            r.conference_id.trim(),
            r.poll_id.trim(),
            r.language.trim(),
        )?;
        Ok(Response::new(pb::GetPollResponse { poll: Some(poll) }))
    }

    async fn list_polls(
        &self,
        request: Request<pb::ListPollsRequest>,
    ) -> Result<Response<pb::ListPollsResponse>, Status> {
        let principal = caller(&request)?;
        let r = request.into_inner();
        let conference_id = r.conference_id.trim();
        principal.require(conference_id, EVERYONE, "read polls")?;
        let model = self.model.read();
        let default_language = model
            .conferences
            .get(conference_id)
            .map_or("en", |c| c.default_language.as_str());
        let mut polls: Vec<pb::Poll> = model
            .polls
            .iter()
            .filter(|((c, _), p)| {
                c == conference_id
                    && (r.session_id.trim().is_empty() || p.spec.session_id == r.session_id.trim())
            })
            .filter(|(_, p)| p.state != State::Draft || MODERATORS.contains(&principal.role))
            .map(|(_, p)| spec_to_proto(&p.spec, p.state, r.language.trim(), default_language))
            .collect();
        polls.sort_by(|a, b| {
            (a.created_at.map(|t| t.seconds), &a.id).cmp(&(b.created_at.map(|t| t.seconds), &b.id))
        });
        Ok(Response::new(pb::ListPollsResponse { polls }))
    }

    async fn cast_ballot(
        &self,
        request: Request<pb::CastBallotRequest>,
    ) -> Result<Response<pb::CastBallotResponse>, Status> {
        let principal = caller(&request)?;
        let r = request.into_inner();
        let (conference_id, poll_id) = (
            r.conference_id.trim().to_owned(),
            r.poll_id.trim().to_owned(),
        );
        principal.require(
            &conference_id,
            &[Role::Attendee],
            "vote; attendees vote after joining with the conference's join code",
        )?;
        if let Some(limits) = &self.limits {
            limits.check(Action::Ballot, &principal.id)?;
        }
        let ballot_id = Uuid::parse_str(r.ballot_id.trim())
            .map_err(|_| Status::invalid_argument("ballot_id: must be a UUID"))?;
        let (kind, anonymous, locked) = {
            let model = self.model.read();
            let poll = model
                .poll(&conference_id, &poll_id)
                .filter(|p| p.state != State::Draft)
                .ok_or_else(|| Status::not_found(format!("poll {poll_id} not found")))?;
            // Refused before anything else: a closed anonymous poll must never get its key
            // back (deriving the voter would create it again).
            if poll.state == State::Closed {
                return Err(Status::failed_precondition(format!(
                    "poll {poll_id} is closed"
                )));
            }
            (poll.spec.kind, poll.spec.anonymous, poll.spec.lock_ballots)
        };
        let choice = match kind {
            Kind::Single | Kind::Multiple => {
                Choice::Options(r.option_ids.iter().map(|s| s.trim().to_owned()).collect())
            }
            Kind::Rating => Choice::Rating(r.rating),
            Kind::WordCloud | Kind::OpenText => {
                Choice::Text(clean_answer(kind, &r.text).map_err(refused)?)
            }
        };
        let voter = if anonymous {
            // The first ballot writes the poll's key file: file work goes to the blocking pool.
            let (keys, c, p, attendee) = (
                self.keys.clone(),
                conference_id.clone(),
                poll_id.clone(),
                principal.id.clone(),
            );
            tokio::task::spawn_blocking(move || keys.voter(&c, &p, &attendee))
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))
                .and_then(|r| r)
                .map_err(|e| {
                    tracing::error!(error = %e, "anonymous voter key failed");
                    Status::unavailable("could not record the ballot; retry")
                })?
                // The poll closed since the check above, and its key is gone.
                .ok_or_else(|| Status::failed_precondition(format!("poll {poll_id} is closed")))?
        } else {
            principal.id.clone()
        };
        let ballot = Ballot {
            ballot_id: ballot_id.to_string(),
            choice,
        };
        let replaced = {
            let model = self.model.read();
            let poll = model
                .poll(&conference_id, &poll_id)
                .ok_or_else(|| Status::not_found(format!("poll {poll_id} not found")))?;
            let earlier = poll.ballots.get(&voter).map(|b| b.ballot_id.clone());
            if earlier.as_deref() != Some(ballot.ballot_id.as_str()) {
                poll.check_ballot(&voter, &ballot).map_err(refused)?;
            }
            earlier.is_some_and(|b| b != ballot.ballot_id)
        };
        let (option_ids, rating, text) = choice_to_event(&ballot.choice);
        let event = NewEvent::new(
            ballot_id,
            &pb::BallotCast {
                conference_id: conference_id.clone(),
                poll_id: poll_id.clone(),
                voter: voter.clone(),
                ballot_id: ballot.ballot_id.clone(),
                option_ids,
                rating,
                text,
            },
        );
        let expected = if locked {
            ExpectedVersion::NoStream
        } else {
            ExpectedVersion::Any
        };
        let position = match self
            .append(
                &ballot_stream(&conference_id, &poll_id, &voter),
                expected,
                ballot_id,
                event,
            )
            .await
        {
            Ok(position) => position,
            Err(status) if status.code() == tonic::Code::Aborted => {
                return Err(Status::failed_precondition(format!(
                    "poll {poll_id} locks ballots: yours is already counted"
                )));
            }
            Err(status) => return Err(status),
        };
        // The log decides: a ballot that landed after the close is not counted.
        let counted = self
            .model
            .read()
            .poll(&conference_id, &poll_id)
            .and_then(|p| p.ballots.get(&voter))
            .is_some_and(|b| b.ballot_id == ballot.ballot_id);
        if !counted {
            return Err(Status::failed_precondition(format!(
                "poll {poll_id} closed before your ballot arrived"
            )));
        }
        Ok(Response::new(pb::CastBallotResponse { replaced, position }))
    }

    async fn watch_results(
        &self,
        request: Request<pb::WatchResultsRequest>,
    ) -> Result<Response<Self::WatchResultsStream>, Status> {
        let principal = caller(&request)?;
        let r = request.into_inner();
        let (conference_id, poll_id, language) = (
            r.conference_id.trim().to_owned(),
            r.poll_id.trim().to_owned(),
            r.language.trim().to_owned(),
        );
        let poll_view = self.poll_view(&principal, &conference_id, &poll_id, &language)?;
        let moderator = MODERATORS.contains(&principal.role);
        let mut receiver = {
            let mut channels = self
                .channels
                .lock()
                .map_err(|_| Status::internal("internal error"))?;
            let key = (conference_id.clone(), poll_id.clone());
            match channels.get(&key) {
                Some(sender) => sender.subscribe(),
                None => {
                    let model = self.model.read();
                    let published = publish(&model, &conference_id, &poll_id, model.position)
                        .ok_or_else(|| Status::not_found(format!("poll {poll_id} not found")))?;
                    let (sender, receiver) = watch::channel(Arc::new(published));
                    channels.insert(key, sender);
                    receiver
                }
            }
        };
        let model = self.model.clone();
        let default_language = self.default_language(&conference_id);
        let mut shutdown = self.shutdown.clone();
        let stream = async_stream::try_stream! {
            let mut state = None;
            loop {
                let published = receiver.borrow_and_update().clone();
                // The poll itself only when its state changed, in the watcher's language.
                let poll = if state != Some(published.state) {
                    state = Some(published.state);
                    let m = model.read();
                    m.poll(&conference_id, &poll_id).map(|p| spec_to_proto(&p.spec, p.state, &language, &default_language)).or_else(|| Some(poll_view.clone()))
                } else {
                    None
                };
                let shared = if moderator { &published.moderator } else { &published.public };
                yield pb::WatchResultsResponse::from_shared(shared, poll);
                let stopping = tokio::select! {
                    _ = shutdown.wait_for(|stop| *stop) => true,
                    changed = receiver.changed() => if changed.is_err() { break } else { false },
                };
                if stopping {
                    Err(Status::unavailable("podiumd is shutting down; reconnect"))?;
                }
            }
        };
        Ok(Response::new(Box::pin(stream)))
    }

    async fn hide_word(
        &self,
        request: Request<pb::HideWordRequest>,
    ) -> Result<Response<pb::HideWordResponse>, Status> {
        let principal = caller(&request)?;
        let r = request.into_inner();
        let (conference_id, poll_id) = (
            r.conference_id.trim().to_owned(),
            r.poll_id.trim().to_owned(),
        );
        principal.require(&conference_id, MODERATORS, "hide words")?;
        let typed = podium_text::clean("word", &r.word, &HIDDEN_WORD)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let word = {
            let model = self.model.read();
            let poll = model
                .poll(&conference_id, &poll_id)
                .ok_or_else(|| Status::not_found(format!("poll {poll_id} not found")))?;
            if poll.spec.kind != Kind::WordCloud {
                return Err(Status::failed_precondition(format!(
                    "poll {poll_id} is not a word cloud"
                )));
            }
            let found = model.words.words(&typed);
            match found.as_slice() {
                [one] => one.clone(),
                _ => return Err(Status::invalid_argument("word: give exactly one word")),
            }
        };
        let event = NewEvent::new(
            Uuid::new_v4(),
            &pb::WordHidden {
                conference_id: conference_id.clone(),
                poll_id: poll_id.clone(),
                word,
                hidden: r.hidden,
            },
        );
        self.append(
            &poll_stream(&conference_id, &poll_id),
            ExpectedVersion::Any,
            event.id,
            event,
        )
        .await?;
        let results = results(&self.model.read(), &conference_id, &poll_id, true, "");
        Ok(Response::new(pb::HideWordResponse { results }))
    }
}
