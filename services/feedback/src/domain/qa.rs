//! Questions to a session, with no storage or transport: what a question may say, the
//! moderation states (pending, published, answered, dismissed; pinned), the one-upvote rule and
//! the order in which lists show questions.
//!
//! **A question is a fold of its events in log order**: the upvotes it counts are the distinct
//! attendees other than its author, whatever the RPCs that sent them believed.

use std::{cmp::Ordering, collections::HashSet, sync::Arc};

use podium_text::Limit;

use crate::error::QaError;

/// Longest question, in characters.
pub const MAX_QUESTION_CHARS: usize = 500;
/// Longest moderator's reason, in characters.
pub const MAX_REASON_CHARS: usize = 500;
/// A question: one line.
pub const QUESTION: Limit = Limit::line(MAX_QUESTION_CHARS);
/// A moderator's reason: one line, may be empty.
pub const REASON: Limit = Limit::line(MAX_REASON_CHARS).optional();

/// A session's Q&A rules; both off by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Settings {
    pub allow_anonymous: bool,
    pub require_approval: bool,
}

impl Settings {
    /// The state a new question starts in, or why it may not be asked.
    pub fn check_ask(&self, session_id: &str, anonymous: bool) -> Result<QState, QaError> {
        if anonymous && !self.allow_anonymous {
            return Err(QaError::Precondition(format!(
                "anonymous: session {session_id} does not allow anonymous questions"
            )));
        }
        Ok(if self.require_approval {
            QState::Pending
        } else {
            QState::Published
        })
    }
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum QState {
    Pending,
    Published,
    Answered,
    Dismissed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Publish,
    Answer,
    Dismiss,
    Pin,
    Unpin,
}

/// Cleans a question under podium's text policy: one line, 1 to [`MAX_QUESTION_CHARS`]
/// characters.
pub fn check_text(text: &str) -> Result<String, QaError> {
    Ok(podium_text::clean("text", text, &QUESTION)?)
}

/// Cleans a moderator's reason under podium's text policy: one line, at most
/// [`MAX_REASON_CHARS`] characters; empty is fine.
pub fn check_reason(reason: &str) -> Result<String, QaError> {
    Ok(podium_text::clean("reason", reason, &REASON)?)
}

/// A question as folded from its events.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Question {
    pub id: String,
    pub conference_id: String,
    pub session_id: String,
    /// The author's principal id, kept for anonymous questions too (never shown).
    pub author: String,
    /// Empty when anonymous.
    pub author_name: String,
    pub anonymous: bool,
    pub text: String,
    pub state: QState,
    pub pinned: bool,
    /// The latest reason a moderator gave.
    pub reason: String,
    /// Attendees who upvoted; shared with published snapshots, copied on the next upvote.
    #[serde(serialize_with = "podium_eventlog::snapshot::sorted_shared_set")]
    pub voters: Arc<HashSet<String>>,
    /// Milliseconds since the epoch.
    pub asked_at: u64,
    /// The log position of the question, which breaks ties in age.
    pub position: u64,
    /// The version of the question's stream, so that a moderation is decided against the
    /// state it saw.
    pub version: u64,
}

impl Question {
    pub fn votes(&self) -> u64 {
        self.voters.len() as u64
    }

    /// Who may see the question: moderators always, the author always, everyone else once it
    /// is published or answered.
    pub fn visible_to(&self, viewer: &str, moderator: bool) -> bool {
        moderator
            || self.author == viewer
            || matches!(self.state, QState::Published | QState::Answered)
    }

    /// May `voter` upvote now? `Ok(false)` when they already have (counted once).
    pub fn check_upvote(&self, voter: &str) -> Result<bool, QaError> {
        if self.author == voter {
            return Err(QaError::Precondition(format!(
                "question {} is your own: upvotes are for other attendees' questions",
                self.id
            )));
        }
        if self.voters.contains(voter) {
            return Ok(false);
        }
        match self.state {
            QState::Published => Ok(true),
            QState::Answered => Err(QaError::Precondition(format!(
                "question {} is already answered",
                self.id
            ))),
            QState::Pending | QState::Dismissed => Err(QaError::Precondition(format!(
                "question {} is not published",
                self.id
            ))),
        }
    }

    /// Counts an upvote; the author's and repeated ones are ignored.
    pub fn upvote(&mut self, voter: &str) -> bool {
        if self.author == voter || self.voters.contains(voter) {
            return false;
        }
        Arc::make_mut(&mut self.voters).insert(voter.to_owned());
        true
    }

    /// Would `action` change the question? `Ok(false)` when it is already in that state.
    pub fn check(&self, action: Action) -> Result<bool, QaError> {
        let refuse = |what: &str| {
            Err(QaError::Precondition(format!(
                "question {} is {}: it cannot be {what}",
                self.id,
                state_name(self.state)
            )))
        };
        match (action, self.state) {
            (Action::Publish, QState::Published) | (Action::Answer, QState::Answered) => Ok(false),
            (Action::Dismiss, QState::Dismissed) => Ok(false),
            (Action::Publish, QState::Pending | QState::Dismissed) => Ok(true),
            (Action::Publish, QState::Answered) => refuse("published again"),
            (Action::Answer, QState::Pending | QState::Published) => Ok(true),
            (Action::Answer, QState::Dismissed) => refuse("answered; publish it first"),
            (Action::Dismiss, _) => Ok(true),
            (Action::Pin, QState::Published | QState::Answered) => Ok(!self.pinned),
            (Action::Pin, _) => refuse("pinned; publish it first"),
            (Action::Unpin, _) => Ok(self.pinned),
        }
    }

    /// Applies a moderation as the log recorded it. Transitions [`Question::check`] refuses
    /// are ignored, so a fold never reaches a state the rules forbid.
    pub fn moderate(&mut self, action: Action, reason: &str) -> bool {
        if !matches!(self.check(action), Ok(true)) {
            return false;
        }
        match action {
            Action::Publish => self.state = QState::Published,
            Action::Answer => self.state = QState::Answered,
            Action::Dismiss => {
                self.state = QState::Dismissed;
                self.pinned = false;
            }
            Action::Pin => self.pinned = true,
            Action::Unpin => self.pinned = false,
        }
        if !reason.is_empty() {
            self.reason = reason.to_owned();
        }
        true
    }
}

pub fn state_name(state: QState) -> &'static str {
    match state {
        QState::Pending => "pending",
        QState::Published => "published",
        QState::Answered => "answered",
        QState::Dismissed => "dismissed",
    }
}

/// The order of lists: pinned first, then pending and published, then answered, then
/// dismissed; within each, most votes first, then the oldest.
pub fn order(a: &Question, b: &Question) -> Ordering {
    let group = |q: &Question| match q.state {
        _ if q.pinned => 0,
        QState::Pending | QState::Published => 1,
        QState::Answered => 2,
        QState::Dismissed => 3,
    };
    group(a)
        .cmp(&group(b))
        .then(b.votes().cmp(&a.votes()))
        .then(a.position.cmp(&b.position))
}

#[cfg(test)]
mod tests {
    use podium_text::TextError;

    use super::*;

    fn question(state: QState) -> Question {
        Question {
            id: "q-1".into(),
            conference_id: "odc".into(),
            session_id: "ses-1".into(),
            author: "att-author".into(),
            author_name: "Dara".into(),
            anonymous: false,
            text: "Which datasets?".into(),
            state,
            pinned: false,
            reason: String::new(),
            voters: Arc::default(),
            asked_at: 0,
            position: 1,
            version: 0,
        }
    }

    #[test]
    fn texts_are_trimmed_and_limited() {
        assert_eq!(check_text("  Why?  ").unwrap(), "Why?");
        assert!(matches!(
            check_text("   "),
            Err(QaError::Text(TextError { field: "text", .. }))
        ));
        assert!(check_text(&"ក".repeat(500)).is_ok());
        assert!(check_text(&"ក".repeat(501)).is_err());
        assert!(check_text("two\nlines").is_err());
        assert!(check_reason("").is_ok());
        assert!(matches!(
            check_reason("a\u{7}"),
            Err(QaError::Text(TextError {
                field: "reason",
                ..
            }))
        ));
    }

    #[test]
    fn one_upvote_per_attendee_and_none_from_the_author() {
        let mut q = question(QState::Published);
        assert!(matches!(q.check_upvote("att-2"), Ok(true)));
        assert!(q.upvote("att-2"));
        assert!(matches!(q.check_upvote("att-2"), Ok(false)));
        assert!(!q.upvote("att-2"));
        assert!(q.check_upvote("att-author").is_err());
        assert!(!q.upvote("att-author"));
        assert_eq!(q.votes(), 1);
        assert!(question(QState::Pending).check_upvote("att-2").is_err());
    }

    #[test]
    fn moderation_follows_the_states() {
        let mut q = question(QState::Pending);
        assert!(q.check(Action::Pin).is_err());
        assert!(q.moderate(Action::Publish, ""));
        assert!(q.moderate(Action::Pin, ""));
        assert!(matches!(q.check(Action::Pin), Ok(false)));
        assert!(q.moderate(Action::Dismiss, "off topic"));
        assert!(!q.pinned);
        assert_eq!(q.reason, "off topic");
        assert!(q.check(Action::Answer).is_err());
        assert!(!q.visible_to("att-2", false));
        assert!(q.visible_to("att-author", false));
        assert!(q.moderate(Action::Publish, ""));
        assert!(q.moderate(Action::Answer, ""));
        assert!(q.check(Action::Publish).is_err());
    }

    #[test]
    fn pinned_first_then_votes_then_age() {
        let mut a = question(QState::Published);
        a.position = 1;
        let mut b = question(QState::Published);
        b.position = 2;
        b.upvote("x");
        let mut c = question(QState::Published);
        c.position = 3;
        c.pinned = true;
        let mut d = question(QState::Answered);
        d.position = 0;
        d.upvote("y");
        d.upvote("z");
        let mut list = [&d, &a, &c, &b];
        list.sort_by(|x, y| order(x, y));
        let positions: Vec<u64> = list.iter().map(|q| q.position).collect();
        assert_eq!(positions, [3, 2, 1, 0]);
    }
}
