//! Poll events in and out of the log, the feedback read model, and the keys of anonymous polls.
//!
//! Streams: `conference/<c>/poll/<p>` holds a poll's lifecycle (created, opened, closed, words
//! hidden); `conference/<c>/poll/<p>/ballots/<voter>` holds one voter's ballots, so the
//! one-ballot rule is a per-voter stream and ballots of different voters never contend.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, Mutex},
};

use podium_eventlog::snapshot::{self, Snapshot, SnapshotError};
use podium_eventlog::{Projection, RecordedEvent};
use podium_proto::{Translations, time::timestamp_from_millis, v1 as pb};
use prost::Name;
use tokio::sync::Notify;

pub mod qa;
pub mod ratings;

pub use crate::voter_keys::{KeyFile, VoterKeys};

use crate::domain::{
    poll::{Ballot, Choice, Kind, Poll, PollSpec, State, Visibility},
    words::WordCounter,
};

pub fn poll_stream(conference_id: &str, poll_id: &str) -> String {
    format!("conference/{conference_id}/poll/{poll_id}")
}

/// (conference, poll) of a poll's lifecycle stream `conference/<c>/poll/<p>`, if it is one.
fn poll_of_stream(stream: &str) -> Option<(String, String)> {
    let (conference, rest) = stream.strip_prefix("conference/")?.split_once('/')?;
    let poll = rest.strip_prefix("poll/")?;
    (!poll.contains('/')).then(|| (conference.to_owned(), poll.to_owned()))
}

pub fn ballot_stream(conference_id: &str, poll_id: &str, voter: &str) -> String {
    format!("conference/{conference_id}/poll/{poll_id}/ballots/{voter}")
}

pub fn feedback_event_types() -> Vec<String> {
    vec![
        pb::ConferenceCreated::full_name(),
        pb::SessionScheduled::full_name(),
        pb::PollCreated::full_name(),
        pb::PollOpened::full_name(),
        pb::PollClosed::full_name(),
        pb::BallotCast::full_name(),
        pb::WordHidden::full_name(),
    ]
    .into_iter()
    .chain(qa::qa_event_types())
    .chain(ratings::ratings_event_types())
    .collect()
}

// ---- Domain <-> protobuf ----

pub fn kind_from_proto(kind: i32) -> Option<Kind> {
    Some(match pb::PollKind::try_from(kind).ok()? {
        pb::PollKind::SingleChoice => Kind::Single,
        pb::PollKind::MultipleChoice => Kind::Multiple,
        pb::PollKind::Rating => Kind::Rating,
        pb::PollKind::WordCloud => Kind::WordCloud,
        pb::PollKind::OpenText => Kind::OpenText,
        pb::PollKind::Unspecified => return None,
    })
}

fn kind_to_proto(kind: Kind) -> pb::PollKind {
    match kind {
        Kind::Single => pb::PollKind::SingleChoice,
        Kind::Multiple => pb::PollKind::MultipleChoice,
        Kind::Rating => pb::PollKind::Rating,
        Kind::WordCloud => pb::PollKind::WordCloud,
        Kind::OpenText => pb::PollKind::OpenText,
    }
}

pub fn visibility_from_proto(v: i32) -> Option<Visibility> {
    Some(match pb::ResultVisibility::try_from(v).ok()? {
        pb::ResultVisibility::Unspecified | pb::ResultVisibility::Live => Visibility::Live,
        pb::ResultVisibility::AfterClose => Visibility::AfterClose,
        pb::ResultVisibility::ModeratorsOnly => Visibility::ModeratorsOnly,
    })
}

fn visibility_to_proto(v: Visibility) -> pb::ResultVisibility {
    match v {
        Visibility::Live => pb::ResultVisibility::Live,
        Visibility::AfterClose => pb::ResultVisibility::AfterClose,
        Visibility::ModeratorsOnly => pb::ResultVisibility::ModeratorsOnly,
    }
}

fn state_to_proto(s: State) -> pb::PollState {
    match s {
        State::Draft => pb::PollState::Draft,
        State::Open => pb::PollState::Open,
        State::Closed => pb::PollState::Closed,
    }
}

pub fn texts(t: Option<pb::LocalizedText>) -> BTreeMap<String, String> {
    t.map(|t| {
        t.text
            .into_iter()
            .map(|(k, v)| (k, v.trim().to_owned()))
            .collect()
    })
    .unwrap_or_default()
}

fn localized(t: &BTreeMap<String, String>) -> pb::LocalizedText {
    pb::LocalizedText {
        text: t.clone().into_iter().collect(),
    }
}

pub fn spec_to_proto(
    spec: &PollSpec,
    state: State,
    language: &str,
    default_language: &str,
) -> pb::Poll {
    pb::Poll {
        id: spec.id.clone(),
        conference_id: spec.conference_id.clone(),
        session_id: spec.session_id.clone(),
        question: Some(localized(&spec.question)),
        label: spec
            .question
            .pick(Some(language), default_language)
            .to_owned(),
        kind: kind_to_proto(spec.kind) as i32,
        options: spec
            .options
            .iter()
            .map(|(id, t)| pb::PollOption {
                id: id.clone(),
                text: Some(localized(t)),
                label: t.pick(Some(language), default_language).to_owned(),
            })
            .collect(),
        max_choices: spec.max_choices,
        scale_min: spec.scale_min,
        scale_max: spec.scale_max,
        visibility: visibility_to_proto(spec.visibility) as i32,
        lock_ballots: spec.lock_ballots,
        anonymous: spec.anonymous,
        publishable: spec.publishable,
        survey: spec.survey,
        state: state_to_proto(state) as i32,
        // Whole seconds: what the stored poll reads back ([`spec_from_proto`]).
        created_at: Some(timestamp_from_millis(
            (spec.created_at / 1000 * 1000) as i64,
        )),
    }
}

fn spec_from_proto(p: pb::Poll) -> Result<PollSpec, String> {
    Ok(PollSpec {
        kind: kind_from_proto(p.kind).ok_or("unknown poll kind")?,
        visibility: visibility_from_proto(p.visibility).ok_or("unknown visibility")?,
        id: p.id,
        conference_id: p.conference_id,
        session_id: p.session_id,
        question: texts(p.question),
        options: p
            .options
            .into_iter()
            .map(|o| (o.id, texts(o.text)))
            .collect(),
        max_choices: p.max_choices,
        scale_min: p.scale_min,
        scale_max: p.scale_max,
        lock_ballots: p.lock_ballots,
        anonymous: p.anonymous,
        publishable: p.publishable,
        survey: p.survey,
        created_at: podium_proto::time::millis(&p.created_at).max(0) as u64,
    })
}

/// The event of `voter`'s ballot; the fields its poll's kind does not use stay empty.
pub fn ballot_event(
    conference_id: &str,
    poll_id: &str,
    voter: &str,
    ballot: &Ballot,
) -> pb::BallotCast {
    let (option_ids, rating, text) = match &ballot.choice {
        Choice::Options(ids) => (ids.clone(), 0, String::new()),
        Choice::Rating(r) => (Vec::new(), *r, String::new()),
        Choice::Text(t) => (Vec::new(), 0, t.clone()),
    };
    pb::BallotCast {
        conference_id: conference_id.to_owned(),
        poll_id: poll_id.to_owned(),
        voter: voter.to_owned(),
        ballot_id: ballot.ballot_id.clone(),
        option_ids,
        rating,
        text,
    }
}

fn choice_from_event(kind: Kind, b: &pb::BallotCast) -> Choice {
    match kind {
        Kind::Single | Kind::Multiple => Choice::Options(b.option_ids.clone()),
        Kind::Rating => Choice::Rating(b.rating),
        Kind::WordCloud | Kind::OpenText => Choice::Text(b.text.clone()),
    }
}

// ---- The read model ----

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct ConferenceInfo {
    pub default_language: String,
    #[serde(serialize_with = "podium_eventlog::snapshot::sorted_set")]
    pub sessions: HashSet<String>,
}

/// Every poll with its tally, and what feedback knows of conferences. Its snapshot holds the
/// state only: the word counter and the publishers' change marks are this process's own.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct FeedbackModel {
    #[serde(serialize_with = "podium_eventlog::snapshot::sorted_map")]
    pub conferences: HashMap<String, ConferenceInfo>,
    #[serde(serialize_with = "podium_eventlog::snapshot::sorted_map")]
    pub polls: HashMap<(String, String), Poll>,
    /// Version of each poll's lifecycle stream, so that opening and closing append against it.
    #[serde(serialize_with = "podium_eventlog::snapshot::sorted_map")]
    pub poll_versions: HashMap<(String, String), u64>,
    #[serde(skip)]
    pub words: Arc<WordCounter>,
    /// Polls changed since the publisher last looked, and the position of their last change.
    #[serde(skip)]
    pub dirty: Arc<Mutex<HashMap<(String, String), u64>>>,
    #[serde(skip)]
    pub changed: Arc<Notify>,
    /// Every event below this position has been applied.
    pub position: u64,
    /// Questions and each session's Q&A settings.
    pub qa: qa::QaModel,
    /// Sessions that have gone live, and their ratings.
    pub ratings: ratings::RatingsModel,
}

impl FeedbackModel {
    pub fn new(words: Arc<WordCounter>) -> Self {
        Self {
            conferences: HashMap::new(),
            polls: HashMap::new(),
            poll_versions: HashMap::new(),
            words,
            dirty: Arc::default(),
            changed: Arc::new(Notify::new()),
            position: 0,
            qa: qa::QaModel::default(),
            ratings: ratings::RatingsModel::default(),
        }
    }

    pub fn poll(&self, conference_id: &str, poll_id: &str) -> Option<&Poll> {
        self.polls
            .get(&(conference_id.to_owned(), poll_id.to_owned()))
    }

    fn touch(&self, key: (String, String), position: u64) {
        if let Ok(mut dirty) = self.dirty.lock() {
            dirty.insert(key, position);
        }
        self.changed.notify_one();
    }

    fn apply_event(&mut self, event: &RecordedEvent) -> Result<(), String> {
        let e = |e: podium_eventlog::DecodeError| e.to_string();
        // Each part takes what it folds; an event both fold (a person erased: both hold an
        // attendee's text) reaches both.
        let qa = self.qa.apply_event(event)?;
        let ratings = self.ratings.apply_event(event)?;
        if qa || ratings {
            return Ok(());
        }
        if event.is::<pb::ConferenceCreated>() {
            let c = event.decode::<pb::ConferenceCreated>().map_err(e)?;
            self.conferences.insert(
                c.conference_id,
                ConferenceInfo {
                    default_language: c.default_language,
                    sessions: HashSet::new(),
                },
            );
        } else if event.is::<pb::SessionScheduled>() {
            let s = event.decode::<pb::SessionScheduled>().map_err(e)?;
            if let Some(c) = self.conferences.get_mut(&s.conference_id) {
                c.sessions.insert(s.session_id);
            }
        } else if event.is::<pb::PollCreated>() {
            let created = event.decode::<pb::PollCreated>().map_err(e)?;
            let spec = spec_from_proto(created.poll.ok_or("poll missing")?)?;
            let key = (spec.conference_id.clone(), spec.id.clone());
            self.polls.insert(key.clone(), Poll::new(spec));
            self.touch(key, event.position);
        } else if event.is::<pb::PollOpened>() {
            let o = event.decode::<pb::PollOpened>().map_err(e)?;
            let key = (o.conference_id, o.poll_id);
            if let Some(p) = self.polls.get_mut(&key) {
                p.open();
                self.touch(key, event.position);
            }
        } else if event.is::<pb::PollClosed>() {
            let c = event.decode::<pb::PollClosed>().map_err(e)?;
            let key = (c.conference_id, c.poll_id);
            if let Some(p) = self.polls.get_mut(&key) {
                p.close(event.position);
                self.touch(key, event.position);
            }
        } else if event.is::<pb::BallotCast>() {
            let b = event.decode::<pb::BallotCast>().map_err(e)?;
            let key = (b.conference_id.clone(), b.poll_id.clone());
            if let Some(p) = self.polls.get_mut(&key) {
                let ballot = Ballot {
                    ballot_id: b.ballot_id.clone(),
                    choice: choice_from_event(p.spec.kind, &b),
                };
                if p.count(&b.voter, ballot, &self.words) {
                    self.touch(key, event.position);
                }
            }
        } else if event.is::<pb::WordHidden>() {
            let w = event.decode::<pb::WordHidden>().map_err(e)?;
            let key = (w.conference_id, w.poll_id);
            if let Some(p) = self.polls.get_mut(&key) {
                let words = self.words.words(&w.word);
                if w.hidden {
                    p.cloud.hide(&words);
                } else {
                    p.cloud.unhide(&words);
                }
                self.touch(key, event.position);
            }
        }
        Ok(())
    }
}

impl Snapshot for FeedbackModel {
    const VERSION: u32 = 1;

    fn save(&self) -> Result<Vec<u8>, SnapshotError> {
        snapshot::encode(self)
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        let mut loaded: Self = snapshot::decode(bytes)?;
        // Publishers already hold these: keep them, so that changes after the load reach them.
        // Word clouds are stored whole, counted by the same counter, so nothing is recounted.
        loaded.words = self.words.clone();
        loaded.dirty = self.dirty.clone();
        loaded.changed = self.changed.clone();
        loaded.qa.dirty = self.qa.dirty.clone();
        loaded.qa.changed = self.qa.changed.clone();
        *self = loaded;
        Ok(())
    }
}

impl Projection for FeedbackModel {
    fn apply(&mut self, event: &RecordedEvent) {
        if let Err(error) = self.apply_event(event) {
            tracing::error!(position = event.position, %error, "feedback model skipped an event");
        }
        if let Some(key) = poll_of_stream(&event.stream) {
            self.poll_versions.insert(key, event.stream_version);
        }
        self.position = event.position + 1;
    }
}

/// Results of a poll as a viewer may see them; `None` when they may not see any yet.
pub fn results(
    model: &FeedbackModel,
    conference_id: &str,
    poll_id: &str,
    moderator: bool,
    language: &str,
) -> Option<pb::Results> {
    let poll = model.poll(conference_id, poll_id)?;
    let visible = moderator
        || (!poll.spec.survey
            && match poll.spec.visibility {
                Visibility::Live => true,
                Visibility::AfterClose => poll.state == State::Closed,
                Visibility::ModeratorsOnly => false,
            });
    if !visible {
        return None;
    }
    let default_language = model
        .conferences
        .get(conference_id)
        .map_or("en", |c| c.default_language.as_str());
    let (count, mean) = poll.rating_summary();
    Some(pb::Results {
        poll_id: poll_id.to_owned(),
        state: state_to_proto(poll.state) as i32,
        ballots: poll.voters,
        options: poll
            .spec
            .options
            .iter()
            .map(|(id, t)| pb::OptionCount {
                option_id: id.clone(),
                label: t.pick(Some(language), default_language).to_owned(),
                count: poll.option_counts.get(id).copied().unwrap_or(0),
            })
            .collect(),
        rating: (poll.spec.kind == Kind::Rating).then(|| pb::RatingSummary {
            count,
            mean,
            distribution: poll.rating_counts.clone(),
        }),
        words: poll
            .cloud
            .top(100)
            .into_iter()
            .map(|(word, count)| pb::WordCount { word, count })
            .collect(),
        texts: if moderator || poll.spec.publishable {
            let skip = poll
                .texts
                .len()
                .saturating_sub(crate::domain::poll::MAX_SHOWN_TEXTS);
            poll.texts
                .iter()
                .skip(skip)
                .map(|(_, t)| t.clone())
                .collect()
        } else {
            Vec::new()
        },
        hidden_words: if moderator {
            poll.cloud.hidden().map(str::to_owned).collect()
        } else {
            Vec::new()
        },
    })
}
