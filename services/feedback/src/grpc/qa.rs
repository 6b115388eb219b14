//! The `podium.v1.Questions` service: attendees ask and upvote, moderators decide, everyone
//! follows a session's questions live.
//!
//! Streams work like the poll results streams: a session's `watch` channels (a wave of
//! watchers each) hold the session's latest questions, replaced by the publisher at most ten times a second (every [`COALESCE`](super::COALESCE) on
//! average); each watcher
//! filters what it may see when it is ready to send, so a slow watcher skips to the newest list.

use std::{pin::Pin, sync::Arc};

use futures::Stream;
use podium_access::{Action, EVERYONE, Principal, RateLimits, Role, TokenKeys, caller};
use podium_core::InvalidField;
use podium_eventlog::{EventLog, Projector, RequestId};
use podium_proto::v1::{self as pb, questions_server::Questions};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use super::{
    MODERATORS,
    publisher::{spawn_publisher, subscribe},
};
use crate::{
    commands::{
        Writer,
        qa::{AskQuestion, Asker, ModerateQuestion, QaCommands},
    },
    domain::qa::{Question, Settings, check_reason, check_text},
    error::{QaError, session_not_found},
    store::{
        FeedbackModel,
        qa::{action_from_proto, question_to_proto, settings_from_proto, settings_to_proto},
    },
};

impl TryFrom<pb::AskQuestionRequest> for AskQuestion {
    type Error = QaError;

    fn try_from(r: pb::AskQuestionRequest) -> Result<Self, QaError> {
        Ok(Self {
            request_id: RequestId::parse_or_new("request_id", &r.request_id)?,
            text: check_text(&r.text)?,
            conference_id: r.conference_id.trim().to_owned(),
            session_id: r.session_id.trim().to_owned(),
            anonymous: r.anonymous,
        })
    }
}

impl TryFrom<pb::ModerateQuestionRequest> for ModerateQuestion {
    type Error = QaError;

    fn try_from(r: pb::ModerateQuestionRequest) -> Result<Self, QaError> {
        Ok(Self {
            request_id: RequestId::parse_or_new("request_id", &r.request_id)?,
            action: action_from_proto(r.action).ok_or_else(|| {
                QaError::from(InvalidField::new(
                    "action",
                    "choose PUBLISH, ANSWER, DISMISS, PIN or UNPIN",
                ))
            })?,
            reason: check_reason(&r.reason)?,
            conference_id: r.conference_id.trim().to_owned(),
            question_id: r.question_id.trim().to_owned(),
        })
    }
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

type Channels = super::publisher::Channels<Snapshot>;

pub struct QuestionsService {
    commands: QaCommands,
    model: Projector<FeedbackModel>,
    channels: Channels,
    shutdown: watch::Receiver<bool>,
    limits: Option<Arc<RateLimits>>,
    /// For `RevokeAuthor`: the log the revocation goes to, and the keys with their register.
    log: Arc<dyn EventLog>,
    keys: Option<Arc<TokenKeys>>,
}

impl QuestionsService {
    /// The questions publisher runs on `publishing`: podiumd's [`crate::PublishingThread`]; a
    /// test's own runtime (`Handle::current()`) will do.
    pub fn new(
        log: Arc<dyn EventLog>,
        model: Projector<FeedbackModel>,
        shutdown: watch::Receiver<bool>,
        publishing: &tokio::runtime::Handle,
    ) -> Self {
        let channels = Channels::default();
        let (dirty, changed) = {
            let m = model.read();
            (m.qa.dirty.clone(), m.qa.changed.clone())
        };
        spawn_publisher(
            publishing,
            model.clone(),
            dirty,
            changed,
            channels.clone(),
            shutdown.clone(),
            |m, key| Some(Snapshot::of(m, &key.0, &key.1)),
        );
        Self {
            commands: QaCommands::new(Writer::new(log.clone(), model.clone())),
            model,
            channels,
            shutdown,
            limits: None,
            log,
            keys: None,
        }
    }

    /// Lets moderators revoke a question's author (`RevokeAuthor`); refused without.
    pub fn with_token_keys(mut self, keys: Arc<TokenKeys>) -> Self {
        self.keys = Some(keys);
        self
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
        let known = self
            .model
            .read()
            .conferences
            .get(conference_id)
            .is_some_and(|c| c.sessions.contains(session_id));
        if known {
            Ok(())
        } else {
            Err(QaError::NotFound(session_not_found(conference_id, session_id)).into())
        }
    }

    fn view(
        &self,
        principal: &Principal,
        conference_id: &str,
        question_id: &str,
    ) -> Result<pb::Question, QaError> {
        let moderator = MODERATORS.contains(&principal.role);
        let model = self.model.read();
        model
            .qa
            .question(conference_id, question_id)
            .filter(|q| q.visible_to(&principal.id, moderator))
            .map(|q| question_to_proto(q, &principal.id, moderator))
            .ok_or_else(|| QaError::question_not_found(question_id))
    }
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
        let request_id =
            RequestId::parse_or_new("request_id", &r.request_id).map_err(QaError::from)?;
        let settings = settings_from_proto(r.settings);
        self.commands
            .set_settings(
                &principal.id,
                request_id,
                conference_id,
                session_id,
                settings,
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
        self.session(
            &principal,
            r.conference_id.trim(),
            r.session_id.trim(),
            &[Role::Attendee],
            "ask questions; attendees ask after joining with the conference's join code",
        )?;
        if let Some(limits) = &self.limits {
            limits.check(Action::Question, &principal.id)?;
        }
        let ask = AskQuestion::try_from(r)?;
        let conference_id = ask.conference_id.clone();
        let asker = Asker {
            id: &principal.id,
            name: &principal.name,
        };
        let (question_id, position) = self.commands.ask(asker, ask).await?;
        let question = self.view(&principal, &conference_id, &question_id)?;
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
        let (counted, votes, position) = self
            .commands
            .upvote(&principal.id, conference_id, question_id)
            .await?;
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
        principal.require(r.conference_id.trim(), MODERATORS, "moderate questions")?;
        let moderate = ModerateQuestion::try_from(r)?;
        let (conference_id, question_id) =
            (moderate.conference_id.clone(), moderate.question_id.clone());
        let action = moderate.action;
        self.commands.moderate(&principal.id, moderate).await?;
        // No question text: it is the attendee's.
        tracing::info!(conference = %conference_id, question = %question_id, action = ?action, by = %principal.id, "question moderated");
        let question = self.view(&principal, &conference_id, &question_id)?;
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
        let key = (conference_id.clone(), session_id.clone());
        let mut receiver = subscribe(&self.channels, &self.shutdown, key, || {
            Ok::<_, QaError>(Snapshot::of(
                &self.model.read(),
                &conference_id,
                &session_id,
            ))
        })?;
        let viewer = principal.id;
        let stream = async_stream::try_stream! {
            loop {
                let snapshot = receiver.latest();
                yield snapshot.view(&viewer, moderator);
                // Ends with UNAVAILABLE when podiumd shuts down (the channel closes).
                receiver.changed().await?;
            }
        };
        Ok(Response::new(Box::pin(stream)))
    }

    async fn revoke_author(
        &self,
        request: Request<pb::RevokeAuthorRequest>,
    ) -> Result<Response<pb::RevokeAuthorResponse>, Status> {
        let principal = caller(&request)?;
        let r = request.into_inner();
        let (conference_id, question_id) = (r.conference_id.trim(), r.question_id.trim());
        principal.require(conference_id, MODERATORS, "revoke a question's author")?;
        let reason = podium_access::revocation_reason(&r.reason)?;
        let author = self
            .model
            .read()
            .qa
            .question(conference_id, question_id)
            .map(|q| q.author.clone())
            .ok_or_else(|| QaError::question_not_found(question_id))?;
        // Only attendees ask, and an attendee's token id is their attendee id; anything else
        // would revoke nothing.
        if !podium_access::is_attendee_id(&author) {
            return Err(Status::failed_precondition(
                "the question's author is not an attendee",
            ));
        }
        let keys = self
            .keys
            .as_ref()
            .ok_or_else(|| Status::unimplemented("this podiumd node does not revoke tokens"))?;
        podium_access::record_revocation(
            &self.log,
            keys,
            Some(conference_id),
            &author,
            &principal.id,
            reason,
        )
        .await?;
        // The author's id is in the operator's log (as when they joined), never in this answer.
        tracing::info!(conference = %conference_id, question = %question_id, by = %principal.id, "question's author revoked");
        // Now, not the recorded time: an earlier revocation's time would link this question
        // to the author's other one.
        Ok(Response::new(pb::RevokeAuthorResponse {
            revoked_at: Some(std::time::SystemTime::now().into()),
        }))
    }
}
