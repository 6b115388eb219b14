//! A poll and its tally, with no storage or transport: the rules for creating a poll, its
//! lifecycle (draft -> open -> closed), which ballots are valid, and the fold that counts the
//! latest ballot of each voter.
//!
//! **A tally is a fold of the poll's events in log order**: a ballot that lands after the close
//! is never counted, whatever the RPC that sent it believed.

use std::collections::{BTreeMap, HashMap};

use podium_eventlog::RequestId;
use podium_text::Limit;

use super::words::{WordCloud, WordCounter};
use crate::error::PollError;

/// Most options of a choice poll.
pub const MAX_OPTIONS: usize = 50;
/// Longest question, per language, in characters.
pub const MAX_QUESTION_CHARS: usize = 300;
/// Longest option, per language, in characters.
pub const MAX_OPTION_CHARS: usize = 200;
/// Longest word-cloud answer, in characters.
pub const MAX_WORDS_CHARS: usize = 100;
/// Longest open-text answer, in characters.
pub const MAX_TEXT_CHARS: usize = 1000;
/// A question in one language: one line.
pub const QUESTION: Limit = Limit::line(MAX_QUESTION_CHARS);
/// An option in one language: one line.
pub const OPTION: Limit = Limit::line(MAX_OPTION_CHARS);
/// A word-cloud answer: a few words, on one line or several.
pub const WORDS: Limit = Limit::lines(MAX_WORDS_CHARS);
/// An open-text answer, on one line or several.
pub const TEXT: Limit = Limit::lines(MAX_TEXT_CHARS);
/// A word a moderator hides from a cloud.
pub const HIDDEN_WORD: Limit = Limit::line(MAX_WORDS_CHARS);
/// Most open-text answers shown in results.
pub const MAX_SHOWN_TEXTS: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Kind {
    Single,
    Multiple,
    Rating,
    WordCloud,
    OpenText,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Visibility {
    Live,
    AfterClose,
    ModeratorsOnly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum State {
    Draft,
    Open,
    Closed,
}

/// Text per language tag.
pub type Texts = BTreeMap<String, String>;

/// What a poll asks, fixed when it is created.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PollSpec {
    pub id: String,
    pub conference_id: String,
    pub session_id: String,
    pub question: Texts,
    pub kind: Kind,
    /// (option id, texts), in order.
    pub options: Vec<(String, Texts)>,
    pub max_choices: u32,
    pub scale_min: i32,
    pub scale_max: i32,
    pub visibility: Visibility,
    pub lock_ballots: bool,
    pub anonymous: bool,
    pub publishable: bool,
    pub survey: bool,
    pub created_at: u64,
}

/// A new poll as a moderator asks for it, read once from the request. A kind or visibility the
/// request did not name validly is `None`: it is refused, naming the field, only once the
/// conference and session are known, so a request for a missing conference is answered
/// NOT_FOUND whatever else is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPoll {
    pub request_id: RequestId,
    pub conference_id: String,
    pub session_id: String,
    pub question: Texts,
    pub kind: Option<Kind>,
    /// Each option's texts, in order; ids are given by [`PollSpec::validated`].
    pub options: Vec<Texts>,
    pub max_choices: u32,
    pub scale_min: i32,
    pub scale_max: i32,
    pub visibility: Option<Visibility>,
    pub lock_ballots: bool,
    pub anonymous: bool,
    pub publishable: bool,
    pub survey: bool,
}

impl NewPoll {
    /// The poll's checked spec, its id derived from the request id so a retry names the same
    /// poll. `created_at` is in milliseconds since the epoch.
    pub fn spec(self, default_language: &str, created_at: u64) -> Result<PollSpec, PollError> {
        let kind = self.kind.ok_or_else(|| {
            PollError::invalid(
                "kind",
                "choose SINGLE_CHOICE, MULTIPLE_CHOICE, RATING, WORD_CLOUD or OPEN_TEXT",
            )
        })?;
        let visibility = self
            .visibility
            .ok_or_else(|| PollError::invalid("visibility", "unknown value"))?;
        PollSpec {
            id: self.request_id.derive_id("poll"),
            conference_id: self.conference_id,
            session_id: self.session_id,
            question: self.question,
            kind,
            options: self
                .options
                .into_iter()
                .map(|texts| (String::new(), texts))
                .collect(),
            max_choices: self.max_choices,
            scale_min: self.scale_min,
            scale_max: self.scale_max,
            visibility,
            lock_ballots: self.lock_ballots,
            anonymous: self.anonymous,
            publishable: self.publishable,
            survey: self.survey,
            created_at,
        }
        .validated(default_language)
    }
}

impl PollSpec {
    /// Checks a new poll and fills in defaults (option ids, max_choices, the rating scale).
    pub fn validated(mut self, default_language: &str) -> Result<Self, PollError> {
        self.question = podium_text::clean_localized(
            "question",
            std::mem::take(&mut self.question),
            default_language,
            &QUESTION,
        )?;
        match self.kind {
            Kind::Single | Kind::Multiple => {
                let n = self.options.len();
                if !(2..=MAX_OPTIONS).contains(&n) {
                    return Err(PollError::invalid(
                        "options",
                        format!("a choice poll has 2 to {MAX_OPTIONS} options, not {n}"),
                    ));
                }
                for (i, (id, texts)) in self.options.iter_mut().enumerate() {
                    *texts = podium_text::clean_localized(
                        "options",
                        std::mem::take(texts),
                        default_language,
                        &OPTION,
                    )
                    .map_err(|e| e.about(format!("option {}", i + 1)))?;
                    *id = format!("opt-{}", i + 1);
                }
                self.max_choices = match (self.kind, self.max_choices) {
                    (Kind::Single, _) => 1,
                    (_, 0) => n as u32,
                    (_, m) if m as usize <= n => m,
                    (_, m) => {
                        return Err(PollError::invalid(
                            "max_choices",
                            format!("{m} is more than the {n} options"),
                        ));
                    }
                };
            }
            Kind::Rating => {
                if !self.options.is_empty() {
                    return Err(PollError::invalid(
                        "options",
                        "a rating poll has no options",
                    ));
                }
                if self.scale_min == 0 && self.scale_max == 0 {
                    (self.scale_min, self.scale_max) = (1, 5);
                }
                if self.scale_min < -10
                    || self.scale_max > 10
                    || self.scale_max - self.scale_min < 1
                    || self.scale_max - self.scale_min > 10
                {
                    return Err(PollError::invalid(
                        "scale_max",
                        "the scale runs from scale_min to scale_max, within -10 to 10, with 2 to 11 points",
                    ));
                }
                self.max_choices = 0;
            }
            Kind::WordCloud | Kind::OpenText => {
                if !self.options.is_empty() {
                    return Err(PollError::invalid("options", "a text poll has no options"));
                }
                self.max_choices = 0;
            }
        }
        if self.kind != Kind::Rating {
            (self.scale_min, self.scale_max) = (0, 0);
        }
        Ok(self)
    }
}

/// What a ballot says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Choice {
    Options(Vec<String>),
    Rating(i32),
    Text(String),
}

/// The answer fields of a ballot request, as sent; [`Answer::choice`] reads them by the poll's
/// kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// Trimmed.
    pub option_ids: Vec<String>,
    pub rating: i32,
    pub text: String,
}

impl Answer {
    /// The choice this answer makes in a poll of `kind`; a text answer is cleaned under
    /// podium's text policy, as it will be stored.
    pub fn choice(self, kind: Kind) -> Result<Choice, PollError> {
        Ok(match kind {
            Kind::Single | Kind::Multiple => Choice::Options(self.option_ids),
            Kind::Rating => Choice::Rating(self.rating),
            Kind::WordCloud | Kind::OpenText => Choice::Text(clean_answer(kind, &self.text)?),
        })
    }
}

/// A ballot as an attendee casts it, read once from the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CastBallot {
    pub conference_id: String,
    pub poll_id: String,
    /// Also the ballot's event id, so a retried ballot is written once.
    pub ballot_id: RequestId,
    pub answer: Answer,
}

/// What a moderator does to a poll's lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Open,
    Close,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ballot {
    pub ballot_id: String,
    pub choice: Choice,
}

/// A poll as folded from its events.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Poll {
    pub spec: PollSpec,
    pub state: State,
    /// The latest ballot of each voter while the poll is open. **Emptied at the close**: a
    /// closed poll takes no ballot, so only its counts are kept, and a conference's memory
    /// does not grow with every ballot ever cast.
    #[serde(serialize_with = "podium_eventlog::snapshot::sorted_map")]
    pub ballots: HashMap<String, Ballot>,
    /// How many voters have a ballot counted.
    pub voters: u64,
    /// The log position of the close: a ballot below it was counted, one past it never is.
    pub closed_at: Option<u64>,
    /// Votes per option id.
    pub option_counts: BTreeMap<String, u64>,
    /// Ratings per point, from scale_min.
    pub rating_counts: Vec<u64>,
    pub cloud: WordCloud,
    /// Open-text answers in the order they were given, with their voter.
    pub texts: Vec<(String, String)>,
}

impl Poll {
    pub fn new(spec: PollSpec) -> Self {
        let points = if spec.kind == Kind::Rating {
            (spec.scale_max - spec.scale_min + 1).max(0) as usize
        } else {
            0
        };
        let option_counts = spec.options.iter().map(|(id, _)| (id.clone(), 0)).collect();
        Self {
            spec,
            state: State::Draft,
            ballots: HashMap::new(),
            voters: 0,
            closed_at: None,
            option_counts,
            rating_counts: vec![0; points],
            cloud: WordCloud::default(),
            texts: Vec::new(),
        }
    }

    /// Checks a ballot against the poll as it is now.
    pub fn check_ballot(&self, voter: &str, ballot: &Ballot) -> Result<(), PollError> {
        match self.state {
            State::Draft => {
                return Err(PollError::NotOpen(format!(
                    "poll {} is not open yet",
                    self.spec.id
                )));
            }
            State::Closed => {
                return Err(PollError::NotOpen(format!(
                    "poll {} is closed",
                    self.spec.id
                )));
            }
            State::Open => {}
        }
        if let Some(earlier) = self.ballots.get(voter)
            && self.spec.lock_ballots
            && earlier.ballot_id != ballot.ballot_id
        {
            return Err(PollError::Locked(format!(
                "poll {} locks ballots: yours is already counted",
                self.spec.id
            )));
        }
        match (&self.spec.kind, &ballot.choice) {
            (Kind::Single | Kind::Multiple, Choice::Options(ids)) => {
                let max = self.spec.max_choices as usize;
                if ids.is_empty() || ids.len() > max {
                    return Err(PollError::invalid(
                        "option_ids",
                        format!("pick 1 to {max} options"),
                    ));
                }
                let mut seen = std::collections::HashSet::new();
                for id in ids {
                    if !self.option_counts.contains_key(id) {
                        return Err(PollError::invalid(
                            "option_ids",
                            format!("{id:?} is not an option of poll {}", self.spec.id),
                        ));
                    }
                    if !seen.insert(id) {
                        return Err(PollError::invalid(
                            "option_ids",
                            format!("{id} is picked twice"),
                        ));
                    }
                }
            }
            (Kind::Rating, Choice::Rating(r)) => {
                if !(self.spec.scale_min..=self.spec.scale_max).contains(r) {
                    return Err(PollError::invalid(
                        "rating",
                        format!("must be {} to {}", self.spec.scale_min, self.spec.scale_max),
                    ));
                }
            }
            (Kind::WordCloud, Choice::Text(t)) => check_answer(t, &WORDS)?,
            (Kind::OpenText, Choice::Text(t)) => check_answer(t, &TEXT)?,
            (Kind::Single | Kind::Multiple, _) => {
                return Err(PollError::invalid(
                    "option_ids",
                    "a choice poll takes option ids",
                ));
            }
            (Kind::Rating, _) => {
                return Err(PollError::invalid("rating", "a rating poll takes a rating"));
            }
            (Kind::WordCloud | Kind::OpenText, _) => {
                return Err(PollError::invalid("text", "a text poll takes text"));
            }
        }
        Ok(())
    }

    /// Checks a ballot of `voter` against the poll as it is now. A retry of the ballot already
    /// counted is not checked again, so that it is answered as the first one was. Whether it
    /// replaces an earlier ballot is not decided here but by where the log puts it.
    pub fn decide_ballot(&self, voter: &str, ballot: &Ballot) -> Result<(), PollError> {
        let earlier = self.ballots.get(voter).map(|b| b.ballot_id.as_str());
        if earlier != Some(ballot.ballot_id.as_str()) {
            self.check_ballot(voter, ballot)?;
        }
        Ok(())
    }

    /// May the poll go through `transition` now? Draft -> open -> closed, one step at a time.
    pub fn check_transition(&self, transition: Transition) -> Result<(), PollError> {
        let id = &self.spec.id;
        match (transition, self.state) {
            (Transition::Open, State::Draft) | (Transition::Close, State::Open) => Ok(()),
            (Transition::Open, _) => Err(PollError::WrongState(format!(
                "poll {id} is already open or closed"
            ))),
            (Transition::Close, State::Draft) => {
                Err(PollError::WrongState(format!("poll {id} is not open yet")))
            }
            (Transition::Close, State::Closed) => Err(PollError::WrongState(format!(
                "poll {id} is already closed"
            ))),
        }
    }

    pub fn open(&mut self) {
        if self.state == State::Draft {
            self.state = State::Open;
        }
    }

    /// Closes the poll at log position `position`, keeping its counts and forgetting who cast
    /// which ballot.
    pub fn close(&mut self, position: u64) {
        if self.state != State::Closed {
            self.state = State::Closed;
            self.closed_at = Some(position);
            self.ballots = HashMap::new();
        }
    }

    /// Was a ballot stored at `position` counted? Every ballot stored while the poll was open
    /// is (a change of mind replaces the earlier one; a locked poll refuses a second one before
    /// it is stored); none stored after the close is.
    pub fn counted_at(&self, position: u64) -> bool {
        self.closed_at.is_none_or(|closed| position < closed)
    }

    /// Counts a ballot: the voter's earlier ballot, if any, stops counting. Ballots outside the
    /// open state, and changes to a locked ballot, are ignored.
    pub fn count(&mut self, voter: &str, ballot: Ballot, words: &WordCounter) -> bool {
        if self.state != State::Open {
            return false;
        }
        if let Some(earlier) = self.ballots.get(voter) {
            if earlier.ballot_id == ballot.ballot_id || self.spec.lock_ballots {
                return false;
            }
            let earlier = earlier.clone();
            self.uncount(voter, &earlier, words);
        }
        self.tally(voter, &ballot, words, 1);
        if self.ballots.insert(voter.to_owned(), ballot).is_none() {
            self.voters += 1;
        }
        true
    }

    fn uncount(&mut self, voter: &str, ballot: &Ballot, words: &WordCounter) {
        self.tally(voter, ballot, words, -1);
    }

    fn tally(&mut self, voter: &str, ballot: &Ballot, words: &WordCounter, sign: i64) {
        let add = |n: &mut u64| {
            *n = if sign > 0 {
                *n + 1
            } else {
                n.saturating_sub(1)
            }
        };
        match &ballot.choice {
            Choice::Options(ids) => {
                for id in ids {
                    if let Some(n) = self.option_counts.get_mut(id) {
                        add(n);
                    }
                }
            }
            Choice::Rating(r) => {
                if let Some(n) = usize::try_from(r - self.spec.scale_min)
                    .ok()
                    .and_then(|i| self.rating_counts.get_mut(i))
                {
                    add(n);
                }
            }
            Choice::Text(text) => match self.spec.kind {
                Kind::WordCloud => {
                    let found = words.words(text);
                    if sign > 0 {
                        self.cloud.add(&found);
                    } else if !self.cloud.remove(&found) {
                        // The cloud holds every counted answer, so this cannot happen; if it
                        // did, leaving the counts alone keeps them from going negative.
                        tracing::warn!(poll = %self.spec.id, "a replaced word-cloud answer was not in the cloud");
                    }
                }
                _ => {
                    if sign > 0 {
                        self.texts.push((voter.to_owned(), text.clone()));
                    } else if let Some(i) = self.texts.iter().position(|(v, _)| v == voter) {
                        self.texts.remove(i);
                    }
                }
            },
        }
    }

    /// (count, mean) of the ratings.
    pub fn rating_summary(&self) -> (u64, f64) {
        let count: u64 = self.rating_counts.iter().sum();
        let sum: i64 = self
            .rating_counts
            .iter()
            .enumerate()
            .map(|(i, n)| (self.spec.scale_min as i64 + i as i64) * *n as i64)
            .sum();
        (
            count,
            if count == 0 {
                0.0
            } else {
                sum as f64 / count as f64
            },
        )
    }
}

/// A text answer passes podium's text policy (the RPC stores it as [`clean_answer`] gives it).
fn check_answer(text: &str, limit: &Limit) -> Result<(), PollError> {
    podium_text::clean("text", text, limit)?;
    Ok(())
}

/// Cleans a text answer for a poll of `kind` under podium's text policy.
pub fn clean_answer(kind: Kind, text: &str) -> Result<String, PollError> {
    let limit = if kind == Kind::WordCloud {
        &WORDS
    } else {
        &TEXT
    };
    Ok(podium_text::clean("text", text, limit)?)
}
