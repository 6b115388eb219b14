//! The `podium.v1.Questions` service: attendees ask and upvote, moderators decide, everyone
//! follows a session's questions live.
//!
//! Streams work like the poll results streams: one `watch` channel per session holds the
//! session's latest questions, replaced by a publisher at most every [`COALESCE`](super::COALESCE); each watcher
//! filters what it may see when it is ready to send, so a slow watcher skips to the newest list.

use std::{pin::Pin, sync::Arc};

use futures::Stream;
use podium_access::{Action, EVERYONE, Principal, RateLimits, Role, caller};
use podium_eventlog::{EventLog, ExpectedVersion, NewEvent, Projector};
use podium_proto::v1::{self as pb, questions_server::Questions};
use tokio::sync::watch;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use super::{MODERATORS, derive_id};
use crate::{
    domain::qa::{QaError, Question, Settings, check_reason, check_text},
    store::{
        FeedbackModel,
        qa::{
            action_from_proto, action_to_proto, question_stream, question_to_proto,
            settings_from_proto, settings_stream, settings_to_proto, state_to_proto, upvote_stream,
        },
    },
};

fn refused(e: QaError) -> Status {
    match e {
        e @ QaError::Invalid { .. } => Status::invalid_argument(e.to_string()),
        QaError::Precondition(m) => Status::failed_precondition(m),
    }
}

fn not_found(question_id: &str) -> Status {
    Status::not_found(format!("question {question_id} not found"))
}

/// A client's request id, or a fresh one when it sent none.
fn request_id(raw: &str) -> Result<Uuid, Status> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(Uuid::new_v4());
    }
    Uuid::parse_str(raw).map_err(|_| Status::invalid_argument("request_id: must be a UUID"))
}

/// A session's questions as the publisher last saw them, shared by every watcher.
#[derive(Debug)]
struct Snapshot {
    position: u64,
    settings: Settings,
    /// Every question of the session, in list order; each watcher keeps what it may see.
    questions: Vec<Question>,
}

impl Snapshot {
    fn of(model: &FeedbackModel, conference_id: &str, session_id: &str) -> Self {
        Self {
            position: model.position,
            settings: model.qa.settings(conference_id, session_id),
            questions: model
                .qa
                .session_questions(conference_id, session_id)
                .into_iter()
                .cloned()
                .collect(),
        }
    }

    fn view(&self, viewer: &str, moderator: bool) -> pb::WatchQuestionsResponse {
        pb::WatchQuestionsResponse {
            position: self.position,
            questions: self
                .questions
                .iter()
                .filter(|q| q.visible_to(viewer, moderator))
                .map(|q| question_to_proto(q, viewer, moderator))
                .collect(),
            settings: Some(settings_to_proto(self.settings)),
        }
    }
}

type Channels = super::Channels<Snapshot>;

pub struct QuestionsService {
    log: Arc<dyn EventLog>,
    model: Projector<FeedbackModel>,
    channels: Channels,
    shutdown: watch::Receiver<bool>,
    limits: Option<Arc<RateLimits>>,
}

impl QuestionsService {
    pub fn new(
        log: Arc<dyn EventLog>,
        model: Projector<FeedbackModel>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let channels = Channels::default();
        let (dirty, changed) = {
            let m = model.read();
            (m.qa.dirty.clone(), m.qa.changed.clone())
        };
        super::spawn_publisher(model.clone(), dirty, changed, channels.clone(), |m, key| {
            Some(Snapshot::of(m, &key.0, &key.1))
        });
        Self {
            log,
            model,
            channels,
            shutdown,
            limits: None,
        }
    }

    /// Limits each attendee's questions and upvotes (podiumd's `--rate-questions` and
    /// `--rate-upvotes`); unlimited without.
    pub fn with_rate_limits(mut self, limits: Arc<RateLimits>) -> Self {
        self.limits = Some(limits);
        self
    }

    /// Checks that the session is one of the conference's, after the caller's scope.
    fn session(
        &self,
        principal: &Principal,
        conference_id: &str,
        session_id: &str,
        roles: &[Role],
        action: &str,
    ) -> Result<(), Status> {
        principal.require(conference_id, roles, action)?;
        let model = self.model.read();
        let known = model
            .conferences
            .get(conference_id)
            .is_some_and(|c| c.sessions.contains(session_id));
        if known {
            Ok(())
        } else {
            Err(Status::not_found(format!(
                "session {session_id} not found in conference {conference_id}"
            )))
        }
    }

    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        event: NewEvent,
    ) -> Result<u64, Status> {
        let outcome = self.log.append(stream, expected, vec![event]).await?;
        self.model.wait_for(outcome.last_position).await?;
        Ok(outcome.last_position)
    }

    fn view(
        &self,
        principal: &Principal,
        conference_id: &str,
        question_id: &str,
    ) -> Result<pb::Question, Status> {
        let moderator = MODERATORS.contains(&principal.role);
        let model = self.model.read();
        model
            .qa
            .question(conference_id, question_id)
            .filter(|q| q.visible_to(&principal.id, moderator))
            .map(|q| question_to_proto(q, &principal.id, moderator))
            .ok_or_else(|| not_found(question_id))
    }
}

fn now() -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp::from(std::time::SystemTime::now()))
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchQuestionsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Questions for QuestionsService {
    type WatchQuestionsStream = WatchStream;

    async fn set_qa_settings(
        &self,
        request: Request<pb::SetQaSettingsRequest>,
    ) -> Result<Response<pb::SetQaSettingsResponse>, Status> {
        let principal = caller(&request)?;
        let r = request.into_inner();
        let (conference_id, session_id) = (r.conference_id.trim(), r.session_id.trim());
        self.session(
            &principal,
            conference_id,
            session_id,
            MODERATORS,
            "change Q&A settings",
        )?;
        let id = request_id(&r.request_id)?;
        let settings = settings_from_proto(r.settings);
        let event = NewEvent::new(
            id,
            &pb::QaSettingsChanged {
                conference_id: conference_id.to_owned(),
                session_id: session_id.to_owned(),
                settings: Some(settings_to_proto(settings)),
                by: principal.id.clone(),
            },
        );
        self.append(
            &settings_stream(conference_id, session_id),
            ExpectedVersion::Any,
            event,
        )
        .await?;
        let settings = self.model.read().qa.settings(conference_id, session_id);
        Ok(Response::new(pb::SetQaSettingsResponse {
            settings: Some(settings_to_proto(settings)),
        }))
    }

    async fn ask_question(
        &self,
        request: Request<pb::AskQuestionRequest>,
    ) -> Result<Response<pb::AskQuestionResponse>, Status> {
        let principal = caller(&request)?;
        let r = request.into_inner();
        let (conference_id, session_id) = (r.conference_id.trim(), r.session_id.trim());
        self.session(
            &principal,
            conference_id,
            session_id,
            &[Role::Attendee],
            "ask questions; attendees ask after joining with the conference's join code",
        )?;
        if let Some(limits) = &self.limits {
            limits.check(Action::Question, &principal.id)?;
        }
        let id = request_id(&r.request_id)?;
        let question_id = derive_id("q", &id);
        let text = check_text(&r.text).map_err(refused)?;
        let state = {
            let model = self.model.read();
            if let Some(q) = model.qa.question(conference_id, &question_id) {
                // A retry: the first question stands.
                if q.author != principal.id {
                    return Err(Status::already_exists(format!(
                        "question {question_id} already exists: use a new request_id"
                    )));
                }
                return Ok(Response::new(pb::AskQuestionResponse {
                    question: Some(question_to_proto(q, &principal.id, false)),
                    position: q.position,
                }));
            }
            model
                .qa
                .settings(conference_id, session_id)
                .check_ask(session_id, r.anonymous)
                .map_err(refused)?
        };
        let event = NewEvent::new(
            id,
            &pb::QuestionAsked {
                conference_id: conference_id.to_owned(),
                session_id: session_id.to_owned(),
                question_id: question_id.clone(),
                author: principal.id.clone(),
                author_name: if r.anonymous {
                    String::new()
                } else {
                    principal.name.clone()
                },
                anonymous: r.anonymous,
                text,
                state: state_to_proto(state) as i32,
                at: now(),
            },
        );
        let position = match self
            .append(
                &question_stream(conference_id, &question_id),
                ExpectedVersion::NoStream,
                event,
            )
            .await
        {
            Ok(position) => position,
            Err(status) if status.code() == tonic::Code::Aborted => {
                return Err(Status::already_exists(format!(
                    "question {question_id} already exists: use a new request_id"
                )));
            }
            Err(status) => return Err(status),
        };
        let question = self.view(&principal, conference_id, &question_id)?;
        Ok(Response::new(pb::AskQuestionResponse {
            question: Some(question),
            position,
        }))
    }

    async fn upvote_question(
        &self,
        request: Request<pb::UpvoteQuestionRequest>,
    ) -> Result<Response<pb::UpvoteQuestionResponse>, Status> {
        let principal = caller(&request)?;
        let r = request.into_inner();
        let (conference_id, question_id) = (r.conference_id.trim(), r.question_id.trim());
        principal.require(
            conference_id,
            &[Role::Attendee],
            "upvote questions; attendees upvote after joining with the conference's join code",
        )?;
        if let Some(limits) = &self.limits {
            limits.check(Action::Upvote, &principal.id)?;
        }
        let counted = {
            let model = self.model.read();
            model
                .qa
                .question(conference_id, question_id)
                .filter(|q| q.visible_to(&principal.id, false))
                .ok_or_else(|| not_found(question_id))?
                .check_upvote(&principal.id)
                .map_err(refused)?
        };
        // One event id per attendee and question: a second upvote, or a retry, is answered
        // by the log with the first one's position and written nowhere.
        let stream = upvote_stream(conference_id, question_id, &principal.id);
        let id = Uuid::new_v5(&Uuid::NAMESPACE_URL, stream.as_bytes());
        let event = NewEvent::new(
            id,
            &pb::QuestionUpvoted {
                conference_id: conference_id.to_owned(),
                question_id: question_id.to_owned(),
                voter: principal.id.clone(),
            },
        );
        let position = self
            .append(&stream, ExpectedVersion::NoStream, event)
            .await?;
        let votes = self
            .model
            .read()
            .qa
            .question(conference_id, question_id)
            .map_or(0, Question::votes);
        Ok(Response::new(pb::UpvoteQuestionResponse {
            counted,
            votes,
            position,
        }))
    }

    async fn moderate_question(
        &self,
        request: Request<pb::ModerateQuestionRequest>,
    ) -> Result<Response<pb::ModerateQuestionResponse>, Status> {
        let principal = caller(&request)?;
        let r = request.into_inner();
        let (conference_id, question_id) = (r.conference_id.trim(), r.question_id.trim());
        principal.require(conference_id, MODERATORS, "moderate questions")?;
        let id = request_id(&r.request_id)?;
        let action = action_from_proto(r.action).ok_or_else(|| {
            Status::invalid_argument("action: choose PUBLISH, ANSWER, DISMISS, PIN or UNPIN")
        })?;
        let reason = check_reason(&r.reason).map_err(refused)?;
        let (changes, version) = {
            let model = self.model.read();
            let q = model
                .qa
                .question(conference_id, question_id)
                .ok_or_else(|| not_found(question_id))?;
            (q.check(action).map_err(refused)?, q.version)
        };
        if changes {
            let event = NewEvent::new(
                id,
                &pb::QuestionModerated {
                    conference_id: conference_id.to_owned(),
                    question_id: question_id.to_owned(),
                    action: action_to_proto(action) as i32,
                    reason,
                    by: principal.id.clone(),
                    at: now(),
                },
            );
            // Decided against the state at `version`: another moderator's change in between
            // is a conflict, not a silent overwrite.
            self.append(
                &question_stream(conference_id, question_id),
                ExpectedVersion::Exact(version),
                event,
            )
            .await
            .map_err(|status| {
                if status.code() == tonic::Code::Aborted {
                    Status::aborted(format!(
                        "question {question_id} changed meanwhile; look again and retry"
                    ))
                } else {
                    status
                }
            })?;
        }
        let question = self.view(&principal, conference_id, question_id)?;
        Ok(Response::new(pb::ModerateQuestionResponse {
            question: Some(question),
        }))
    }

    async fn list_questions(
        &self,
        request: Request<pb::ListQuestionsRequest>,
    ) -> Result<Response<pb::ListQuestionsResponse>, Status> {
        let principal = caller(&request)?;
        let r = request.into_inner();
        let (conference_id, session_id) = (r.conference_id.trim(), r.session_id.trim());
        self.session(
            &principal,
            conference_id,
            session_id,
            EVERYONE,
            "read questions",
        )?;
        let moderator = MODERATORS.contains(&principal.role);
        let model = self.model.read();
        Ok(Response::new(pb::ListQuestionsResponse {
            questions: model
                .qa
                .visible(conference_id, session_id, &principal.id, moderator),
            settings: Some(settings_to_proto(
                model.qa.settings(conference_id, session_id),
            )),
            position: model.position,
        }))
    }

    async fn watch_questions(
        &self,
        request: Request<pb::WatchQuestionsRequest>,
    ) -> Result<Response<Self::WatchQuestionsStream>, Status> {
        let principal = caller(&request)?;
        let r = request.into_inner();
        let (conference_id, session_id) = (
            r.conference_id.trim().to_owned(),
            r.session_id.trim().to_owned(),
        );
        self.session(
            &principal,
            &conference_id,
            &session_id,
            EVERYONE,
            "read questions",
        )?;
        let moderator = MODERATORS.contains(&principal.role);
        let mut receiver = {
            let mut channels = self
                .channels
                .lock()
                .map_err(|_| Status::internal("internal error"))?;
            let key = (conference_id.clone(), session_id.clone());
            match channels.get(&key) {
                Some(sender) => sender.subscribe(),
                None => {
                    let snapshot = Snapshot::of(&self.model.read(), &conference_id, &session_id);
                    let (sender, receiver) = watch::channel(Arc::new(snapshot));
                    channels.insert(key, sender);
                    receiver
                }
            }
        };
        let viewer = principal.id;
        let mut shutdown = self.shutdown.clone();
        let stream = async_stream::try_stream! {
            loop {
                let snapshot = receiver.borrow_and_update().clone();
                yield snapshot.view(&viewer, moderator);
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
}
