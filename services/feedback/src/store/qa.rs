//! Q&A events in and out of the log, and the Q&A part of the feedback read model.
//!
//! Streams: `conference/<c>/session/<s>/qa` holds a session's settings;
//! `conference/<c>/question/<q>` a question and its moderation;
//! `conference/<c>/question/<q>/votes/<attendee>` one attendee's upvote, written at most once,
//! so upvotes of different attendees never contend and a second one is a no-op in the log.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use podium_eventlog::{
    RecordedEvent,
    personal::{self, ERASED, PersonKind},
};
use podium_proto::{time::timestamp_from_millis, v1 as pb};
use prost::Name;
use tokio::sync::Notify;

use crate::domain::qa::{Action, QState, Question, Settings, order};

pub fn settings_stream(conference_id: &str, session_id: &str) -> String {
    format!("conference/{conference_id}/session/{session_id}/qa")
}

pub fn question_stream(conference_id: &str, question_id: &str) -> String {
    format!("conference/{conference_id}/question/{question_id}")
}

pub fn upvote_stream(conference_id: &str, question_id: &str, voter: &str) -> String {
    format!("conference/{conference_id}/question/{question_id}/votes/{voter}")
}

pub fn qa_event_types() -> Vec<String> {
    vec![
        pb::QaSettingsChanged::full_name(),
        pb::QuestionAsked::full_name(),
        pb::QuestionUpvoted::full_name(),
        pb::QuestionModerated::full_name(),
        pb::PersonErased::full_name(),
    ]
}

// ---- Domain <-> protobuf ----

pub fn action_from_proto(action: i32) -> Option<Action> {
    Some(match pb::ModerationAction::try_from(action).ok()? {
        pb::ModerationAction::Publish => Action::Publish,
        pb::ModerationAction::Answer => Action::Answer,
        pb::ModerationAction::Dismiss => Action::Dismiss,
        pb::ModerationAction::Pin => Action::Pin,
        pb::ModerationAction::Unpin => Action::Unpin,
        pb::ModerationAction::Unspecified => return None,
    })
}

pub fn action_to_proto(action: Action) -> pb::ModerationAction {
    match action {
        Action::Publish => pb::ModerationAction::Publish,
        Action::Answer => pb::ModerationAction::Answer,
        Action::Dismiss => pb::ModerationAction::Dismiss,
        Action::Pin => pb::ModerationAction::Pin,
        Action::Unpin => pb::ModerationAction::Unpin,
    }
}

pub fn state_to_proto(state: QState) -> pb::QuestionState {
    match state {
        QState::Pending => pb::QuestionState::Pending,
        QState::Published => pb::QuestionState::Published,
        QState::Answered => pb::QuestionState::Answered,
        QState::Dismissed => pb::QuestionState::Dismissed,
    }
}

fn state_from_proto(state: i32) -> Option<QState> {
    Some(match pb::QuestionState::try_from(state).ok()? {
        pb::QuestionState::Pending => QState::Pending,
        pb::QuestionState::Published => QState::Published,
        pb::QuestionState::Answered => QState::Answered,
        pb::QuestionState::Dismissed => QState::Dismissed,
        pb::QuestionState::Unspecified => return None,
    })
}

pub fn settings_to_proto(s: Settings) -> pb::QaSettings {
    pb::QaSettings {
        allow_anonymous: s.allow_anonymous,
        require_approval: s.require_approval,
    }
}

pub fn settings_from_proto(s: Option<pb::QaSettings>) -> Settings {
    s.map(|s| Settings {
        allow_anonymous: s.allow_anonymous,
        require_approval: s.require_approval,
    })
    .unwrap_or_default()
}

/// A question as `viewer` sees it: the reason only for moderators and the author.
pub fn question_to_proto(q: &Question, viewer: &str, moderator: bool) -> pb::Question {
    let mine = q.author == viewer;
    pb::Question {
        id: q.id.clone(),
        conference_id: q.conference_id.clone(),
        session_id: q.session_id.clone(),
        text: q.text.clone(),
        author_name: q.author_name.clone(),
        anonymous: q.anonymous,
        state: state_to_proto(q.state) as i32,
        pinned: q.pinned,
        votes: q.votes(),
        asked_at: Some(timestamp_from_millis(q.asked_at as i64)),
        mine,
        upvoted: q.voters.contains(viewer),
        reason: if moderator || mine {
            q.reason.clone()
        } else {
            String::new()
        },
    }
}

// ---- The read model ----

type Key = (String, String);

/// Every session's Q&A settings and questions.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct QaModel {
    /// (conference, session) -> settings.
    #[serde(serialize_with = "podium_eventlog::snapshot::sorted_map")]
    pub settings: HashMap<Key, Settings>,
    /// (conference, question) -> question.
    #[serde(serialize_with = "podium_eventlog::snapshot::sorted_map")]
    pub questions: HashMap<Key, Question>,
    /// (conference, session) -> its question ids, in the order asked.
    #[serde(serialize_with = "podium_eventlog::snapshot::sorted_map")]
    pub by_session: HashMap<Key, Vec<String>>,
    /// Sessions changed since the publisher last looked.
    #[serde(skip)]
    pub dirty: Arc<Mutex<HashMap<Key, u64>>>,
    #[serde(skip)]
    pub changed: Arc<Notify>,
}

impl QaModel {
    pub fn settings(&self, conference_id: &str, session_id: &str) -> Settings {
        self.settings
            .get(&(conference_id.to_owned(), session_id.to_owned()))
            .copied()
            .unwrap_or_default()
    }

    pub fn question(&self, conference_id: &str, question_id: &str) -> Option<&Question> {
        self.questions
            .get(&(conference_id.to_owned(), question_id.to_owned()))
    }

    /// A session's questions, in list order.
    pub fn session_questions(&self, conference_id: &str, session_id: &str) -> Vec<&Question> {
        let mut list: Vec<&Question> = self
            .by_session
            .get(&(conference_id.to_owned(), session_id.to_owned()))
            .into_iter()
            .flatten()
            .filter_map(|id| self.question(conference_id, id))
            .collect();
        list.sort_by(|a, b| order(a, b));
        list
    }

    /// A session's questions as `viewer` may see them, in list order.
    pub fn visible(
        &self,
        conference_id: &str,
        session_id: &str,
        viewer: &str,
        moderator: bool,
    ) -> Vec<pb::Question> {
        self.session_questions(conference_id, session_id)
            .into_iter()
            .filter(|q| q.visible_to(viewer, moderator))
            .map(|q| question_to_proto(q, viewer, moderator))
            .collect()
    }

    fn touch(&self, key: Key, position: u64) {
        if let Ok(mut dirty) = self.dirty.lock() {
            dirty.insert(key, position);
        }
        self.changed.notify_one();
    }

    /// Applies a Q&A event; `Ok(false)` when the event is not a Q&A event.
    pub fn apply_event(&mut self, event: &RecordedEvent) -> Result<bool, String> {
        let e = |e: podium_eventlog::DecodeError| e.to_string();
        if event.is::<pb::QaSettingsChanged>() {
            let s = event.decode::<pb::QaSettingsChanged>().map_err(e)?;
            let key = (s.conference_id, s.session_id);
            self.settings
                .insert(key.clone(), settings_from_proto(s.settings));
            self.touch(key, event.position);
        } else if event.is::<pb::QuestionAsked>() {
            let a = event.decode::<pb::QuestionAsked>().map_err(e)?;
            let key = (a.conference_id.clone(), a.question_id.clone());
            if self.questions.contains_key(&key) {
                return Ok(true);
            }
            let session = (a.conference_id.clone(), a.session_id.clone());
            let asked_at = podium_proto::time::millis(&a.at).max(0) as u64;
            self.questions.insert(
                key,
                Question {
                    state: state_from_proto(a.state).ok_or("unknown question state")?,
                    id: a.question_id.clone(),
                    conference_id: a.conference_id,
                    session_id: a.session_id,
                    author: a.author,
                    author_name: a.author_name,
                    anonymous: a.anonymous,
                    text: a.text,
                    pinned: false,
                    reason: String::new(),
                    voters: Arc::default(),
                    asked_at,
                    position: event.position,
                    version: event.stream_version,
                },
            );
            self.by_session
                .entry(session.clone())
                .or_default()
                .push(a.question_id);
            self.touch(session, event.position);
        } else if event.is::<pb::QuestionUpvoted>() {
            let u = event.decode::<pb::QuestionUpvoted>().map_err(e)?;
            if let Some(q) = self.questions.get_mut(&(u.conference_id, u.question_id))
                && q.upvote(&u.voter)
            {
                let session = (q.conference_id.clone(), q.session_id.clone());
                self.touch(session, event.position);
            }
        } else if event.is::<pb::QuestionModerated>() {
            let m = event.decode::<pb::QuestionModerated>().map_err(e)?;
            let action = action_from_proto(m.action).ok_or("unknown moderation action")?;
            let Some(q) = self.questions.get_mut(&(m.conference_id, m.question_id)) else {
                return Ok(true);
            };
            q.version = event.stream_version;
            if q.moderate(action, &m.reason) {
                let session = (q.conference_id.clone(), q.session_id.clone());
                self.touch(session, event.position);
            }
        } else if event.is::<pb::PersonErased>() {
            // What was opened of the attendee's questions before their key was destroyed goes;
            // the questions, their states and votes stay.
            let Some(attendee) = personal::erased(event, PersonKind::Attendee) else {
                return Ok(true);
            };
            let mut touched = Vec::new();
            for q in self.questions.values_mut() {
                if q.conference_id == attendee.conference_id && q.author == attendee.person_id {
                    q.text = ERASED.to_owned();
                    if !q.anonymous {
                        q.author_name = ERASED.to_owned();
                    }
                    touched.push((q.conference_id.clone(), q.session_id.clone()));
                }
            }
            for session in touched {
                self.touch(session, event.position);
            }
        } else {
            return Ok(false);
        }
        Ok(true)
    }
}
