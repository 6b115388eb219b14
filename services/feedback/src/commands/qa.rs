//! The Q&A commands: change a session's settings, ask, upvote and moderate a question.
//!
//! Each decides against the read model and appends to the question's (or the upvoter's) own
//! stream, so asks are idempotent by request id, an upvote is written at most once per
//! attendee, and a moderation is decided against the question's version.

use podium_eventlog::{EventLogError, ExpectedVersion, NewEvent, RequestId};
use podium_proto::v1 as pb;
use uuid::Uuid;

use super::{Writer, now};
use crate::{
    domain::qa::{Action, Question, Settings},
    error::QaError,
    store::qa::{
        action_to_proto, question_stream, settings_stream, settings_to_proto, state_to_proto,
        upvote_stream,
    },
};

/// A question as an attendee asks it, read once from the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AskQuestion {
    pub request_id: RequestId,
    pub conference_id: String,
    pub session_id: String,
    /// Cleaned under podium's text policy.
    pub text: String,
    pub anonymous: bool,
}

/// A moderator's decision on a question, read once from the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModerateQuestion {
    pub request_id: RequestId,
    pub conference_id: String,
    pub question_id: String,
    pub action: Action,
    /// Cleaned under podium's text policy; may be empty.
    pub reason: String,
}

/// Who asks: the attendee's principal id and display name.
pub struct Asker<'a> {
    pub id: &'a str,
    pub name: &'a str,
}

pub struct QaCommands {
    writer: Writer,
}

impl QaCommands {
    pub fn new(writer: Writer) -> Self {
        Self { writer }
    }

    /// Replaces a session's Q&A settings.
    pub async fn set_settings(
        &self,
        by: &str,
        request_id: RequestId,
        conference_id: &str,
        session_id: &str,
        settings: Settings,
    ) -> Result<(), QaError> {
        let event = NewEvent::new(
            request_id.uuid(),
            &pb::QaSettingsChanged {
                conference_id: conference_id.to_owned(),
                session_id: session_id.to_owned(),
                settings: Some(settings_to_proto(settings)),
                by: by.to_owned(),
            },
        );
        self.writer
            .append(
                &settings_stream(conference_id, session_id),
                ExpectedVersion::Any,
                event,
            )
            .await?;
        Ok(())
    }

    /// Asks a question; its id and log position. A retry by the same attendee is answered
    /// with the first question.
    pub async fn ask(&self, asker: Asker<'_>, ask: AskQuestion) -> Result<(String, u64), QaError> {
        let AskQuestion {
            request_id,
            conference_id,
            session_id,
            text,
            anonymous,
        } = ask;
        let question_id = request_id.derive_id("q");
        let state = {
            let model = self.writer.model.read();
            if let Some(q) = model.qa.question(&conference_id, &question_id) {
                // A retry: the first question stands.
                if q.author != asker.id {
                    return Err(QaError::AlreadyExists(question_id));
                }
                return Ok((question_id, q.position));
            }
            model
                .qa
                .settings(&conference_id, &session_id)
                .check_ask(&session_id, anonymous)?
        };
        let event = NewEvent::new(
            request_id.uuid(),
            &pb::QuestionAsked {
                conference_id: conference_id.clone(),
                session_id,
                question_id: question_id.clone(),
                author: asker.id.to_owned(),
                author_name: if anonymous {
                    String::new()
                } else {
                    asker.name.to_owned()
                },
                anonymous,
                text,
                state: state_to_proto(state) as i32,
                at: now(),
                // Sealed by the log under the author's key.
                personal: None,
            },
        );
        let stream = question_stream(&conference_id, &question_id);
        match self
            .writer
            .append(&stream, ExpectedVersion::NoStream, event)
            .await
        {
            Ok(position) => Ok((question_id, position)),
            Err(EventLogError::Conflict { .. }) => Err(QaError::AlreadyExists(question_id)),
            Err(e) => Err(e.into()),
        }
    }

    /// Upvotes a question: (counted now, the question's votes, the upvote's log position).
    /// A second upvote is not counted again.
    pub async fn upvote(
        &self,
        voter: &str,
        conference_id: &str,
        question_id: &str,
    ) -> Result<(bool, u64, u64), QaError> {
        let counted = self
            .writer
            .model
            .read()
            .qa
            .question(conference_id, question_id)
            .filter(|q| q.visible_to(voter, false))
            .ok_or_else(|| QaError::question_not_found(question_id))?
            .check_upvote(voter)?;
        // One event id per attendee and question: a second upvote, or a retry, is answered
        // by the log with the first one's position and written nowhere.
        let stream = upvote_stream(conference_id, question_id, voter);
        let id = Uuid::new_v5(&Uuid::NAMESPACE_URL, stream.as_bytes());
        let event = NewEvent::new(
            id,
            &pb::QuestionUpvoted {
                conference_id: conference_id.to_owned(),
                question_id: question_id.to_owned(),
                voter: voter.to_owned(),
            },
        );
        let position = self
            .writer
            .append(&stream, ExpectedVersion::NoStream, event)
            .await?;
        let votes = self
            .writer
            .model
            .read()
            .qa
            .question(conference_id, question_id)
            .map_or(0, Question::votes);
        Ok((counted, votes, position))
    }

    /// Publishes, answers, dismisses, pins or unpins a question; nothing is written when it is
    /// already so.
    pub async fn moderate(&self, by: &str, m: ModerateQuestion) -> Result<(), QaError> {
        let (changes, version) = {
            let model = self.writer.model.read();
            let q = model
                .qa
                .question(&m.conference_id, &m.question_id)
                .ok_or_else(|| QaError::question_not_found(&m.question_id))?;
            (q.check(m.action)?, q.version)
        };
        if !changes {
            return Ok(());
        }
        let stream = question_stream(&m.conference_id, &m.question_id);
        let event = NewEvent::new(
            m.request_id.uuid(),
            &pb::QuestionModerated {
                conference_id: m.conference_id,
                question_id: m.question_id.clone(),
                action: action_to_proto(m.action) as i32,
                reason: m.reason,
                by: by.to_owned(),
                at: now(),
            },
        );
        // Decided against the state at `version`: another moderator's change in between
        // is a conflict, not a silent overwrite.
        match self
            .writer
            .append(&stream, ExpectedVersion::Exact(version), event)
            .await
        {
            Ok(_) => Ok(()),
            Err(EventLogError::Conflict { .. }) => Err(QaError::Changed(m.question_id)),
            Err(e) => Err(e.into()),
        }
    }
}
