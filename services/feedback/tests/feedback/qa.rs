//! Q&A through the `Questions` service in process, over the real sled log: random sequences of
//! settings, questions (anonymous or not), upvotes (repeated, by authors, on hidden
//! questions), moderation and restarts. After every step the moderator's list equals an oracle
//! that knows only the rules (one upvote per attendee, none by the author, the moderation
//! states), is in order (pinned, votes, age), attendees see only what they may, and a replay
//! of the log gives the same lists.

use std::{
    collections::{BTreeSet, HashMap},
    sync::Arc,
};

use podium_access::{Principal, Role};
use podium_eventlog::{
    EventLog, ExpectedVersion, Filter, NewEvent, Projector, SledEventLog, SledOptions,
};
use podium_feedback::{
    FeedbackModel, QuestionsService, domain::words::WordCounter, feedback_event_types,
};
use podium_proto::v1::{self as pb, questions_server::Questions};
use proptest::prelude::*;
use tokio::sync::watch;
use tonic::{Code, Request};
use uuid::Uuid;

const CONF: &str = "odc2024";
const SESSION: &str = "ses-1";

pub fn principal(id: &str, role: Role) -> Principal {
    Principal {
        id: id.into(),
        name: format!("Name of {id}"),
        role,
        conference_id: Some(CONF.into()),
        speaker_id: None,
        expires_at: None,
        token_id: None,
    }
}

pub fn request<T>(principal: &Principal, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.extensions_mut().insert(principal.clone());
    request
}

pub async fn start(log: Arc<dyn EventLog>) -> Projector<FeedbackModel> {
    let filter = Filter {
        stream_prefix: None,
        event_types: feedback_event_types(),
    };
    Projector::start(
        "feedback",
        log,
        FeedbackModel::new(Arc::new(WordCounter::new())),
        filter,
    )
    .await
    .unwrap()
}

/// A conference with one session, written as the agenda would.
pub async fn seed(log: &dyn EventLog) {
    let conference = pb::ConferenceCreated {
        conference_id: CONF.into(),
        default_language: "en".into(),
        time_zone: "Asia/Phnom_Penh".into(),
        ..Default::default()
    };
    let session = pb::SessionScheduled {
        conference_id: CONF.into(),
        session_id: SESSION.into(),
        ..Default::default()
    };
    log.append(
        &format!("conference/{CONF}/agenda"),
        ExpectedVersion::Any,
        vec![
            NewEvent::new(Uuid::new_v4(), &conference),
            NewEvent::new(Uuid::new_v4(), &session),
        ],
    )
    .await
    .unwrap();
}

#[derive(Debug, Clone)]
enum Step {
    Settings { anonymous: bool, approval: bool },
    Ask { author: u8, anonymous: bool },
    Upvote { voter: u8, question: u8 },
    Moderate { question: u8, action: u8 },
    Restart,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        1 => (any::<bool>(), any::<bool>()).prop_map(|(anonymous, approval)| Step::Settings { anonymous, approval }),
        3 => (0..5u8, any::<bool>()).prop_map(|(author, anonymous)| Step::Ask { author, anonymous }),
        6 => (0..5u8, 0..6u8).prop_map(|(voter, question)| Step::Upvote { voter, question }),
        3 => (0..6u8, 1..6u8).prop_map(|(question, action)| Step::Moderate { question, action }),
        1 => Just(Step::Restart),
    ]
}

/// What the rules say a question is.
#[derive(Debug, Clone)]
struct Expected {
    id: String,
    author: String,
    state: pb::QuestionState,
    pinned: bool,
    voters: BTreeSet<String>,
    order: usize,
}

fn group(q: &pb::Question) -> u8 {
    match q.state() {
        _ if q.pinned => 0,
        pb::QuestionState::Pending | pb::QuestionState::Published => 1,
        pb::QuestionState::Answered => 2,
        _ => 3,
    }
}

struct Server {
    log: Arc<SledEventLog>,
    model: Projector<FeedbackModel>,
    service: QuestionsService,
    _stop: watch::Sender<bool>,
}

async fn serve(log: Arc<SledEventLog>) -> Server {
    let model = start(log.clone()).await;
    let (stop, stop_rx) = watch::channel(false);
    let service = QuestionsService::new(
        log.clone(),
        model.clone(),
        stop_rx,
        &tokio::runtime::Handle::current(),
    );
    Server {
        log,
        model,
        service,
        _stop: stop,
    }
}

async fn list(service: &QuestionsService, who: &Principal) -> Vec<pb::Question> {
    service
        .list_questions(request(
            who,
            pb::ListQuestionsRequest {
                conference_id: CONF.into(),
                session_id: SESSION.into(),
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .questions
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn questions_follow_the_rules_and_replay_to_the_same_lists(steps in proptest::collection::vec(step(), 1..50)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let log = Arc::new(SledEventLog::open(dir.path(), SledOptions::default()).unwrap());
            seed(log.as_ref()).await;
            let mut server = serve(log).await;
            let moderator = principal("mod-1", Role::Moderator);
            let attendees: Vec<Principal> = (0..5).map(|i| principal(&format!("att-{i}"), Role::Attendee)).collect();

            let mut settings = (false, false);
            let mut expected: Vec<Expected> = Vec::new();
            for step in steps {
                match step {
                    Step::Settings { anonymous, approval } => {
                        server.service.set_qa_settings(request(&moderator, pb::SetQaSettingsRequest {
                            request_id: String::new(),
                            conference_id: CONF.into(),
                            session_id: SESSION.into(),
                            settings: Some(pb::QaSettings { allow_anonymous: anonymous, require_approval: approval }),
                        })).await.unwrap();
                        settings = (anonymous, approval);
                    }
                    Step::Ask { author, anonymous } => {
                        let who = &attendees[author as usize];
                        let ask = pb::AskQuestionRequest {
                            request_id: Uuid::new_v4().to_string(),
                            conference_id: CONF.into(),
                            session_id: SESSION.into(),
                            text: format!("  Question {} from {}?  ", expected.len(), who.id),
                            anonymous,
                        };
                        let asked = server.service.ask_question(request(who, ask.clone())).await;
                        if anonymous && !settings.0 {
                            prop_assert_eq!(asked.unwrap_err().code(), Code::FailedPrecondition);
                            continue;
                        }
                        let q = asked.unwrap().into_inner().question.unwrap();
                        // A retry returns the same question and adds nothing.
                        let again = server.service.ask_question(request(who, ask)).await.unwrap().into_inner().question.unwrap();
                        prop_assert_eq!(&again.id, &q.id);
                        prop_assert!(q.mine);
                        prop_assert_eq!(q.author_name.is_empty(), anonymous);
                        prop_assert_eq!(&q.text, &format!("Question {} from {}?", expected.len(), who.id));
                        expected.push(Expected {
                            id: q.id,
                            author: who.id.clone(),
                            state: if settings.1 { pb::QuestionState::Pending } else { pb::QuestionState::Published },
                            pinned: false,
                            voters: BTreeSet::new(),
                            order: expected.len(),
                        });
                    }
                    Step::Upvote { voter, question } => {
                        let Some(e) = expected.get_mut(question as usize) else { continue };
                        let who = &attendees[voter as usize];
                        let upvoted = server.service.upvote_question(request(who, pb::UpvoteQuestionRequest {
                            conference_id: CONF.into(),
                            question_id: e.id.clone(),
                        })).await;
                        let visible = e.author == who.id || matches!(e.state, pb::QuestionState::Published | pb::QuestionState::Answered);
                        if e.author == who.id {
                            prop_assert_eq!(upvoted.unwrap_err().code(), Code::FailedPrecondition);
                        } else if !visible {
                            prop_assert_eq!(upvoted.unwrap_err().code(), Code::NotFound);
                        } else if e.voters.contains(&who.id) {
                            let r = upvoted.unwrap().into_inner();
                            prop_assert!(!r.counted);
                            prop_assert_eq!(r.votes, e.voters.len() as u64);
                        } else if e.state == pb::QuestionState::Published {
                            e.voters.insert(who.id.clone());
                            let r = upvoted.unwrap().into_inner();
                            prop_assert!(r.counted);
                            prop_assert_eq!(r.votes, e.voters.len() as u64);
                        } else {
                            prop_assert_eq!(upvoted.unwrap_err().code(), Code::FailedPrecondition);
                        }
                    }
                    Step::Moderate { question, action } => {
                        let Some(e) = expected.get_mut(question as usize) else { continue };
                        let action = pb::ModerationAction::try_from(action as i32).unwrap();
                        let moderated = server.service.moderate_question(request(&moderator, pb::ModerateQuestionRequest {
                            request_id: String::new(),
                            conference_id: CONF.into(),
                            question_id: e.id.clone(),
                            action: action as i32,
                            reason: "a reason".into(),
                        })).await;
                        use pb::{ModerationAction as A, QuestionState as S};
                        let next = match (action, e.state) {
                            (A::Publish, S::Pending | S::Dismissed | S::Published) => Some((S::Published, e.pinned)),
                            (A::Answer, S::Pending | S::Published | S::Answered) => Some((S::Answered, e.pinned)),
                            (A::Dismiss, _) => Some((S::Dismissed, false)),
                            (A::Pin, S::Published | S::Answered) => Some((e.state, true)),
                            (A::Unpin, _) => Some((e.state, false)),
                            _ => None,
                        };
                        match next {
                            Some((state, pinned)) => {
                                let q = moderated.unwrap().into_inner().question.unwrap();
                                (e.state, e.pinned) = (state, pinned);
                                prop_assert_eq!(q.state(), state);
                                prop_assert_eq!(q.pinned, pinned);
                            }
                            None => prop_assert_eq!(moderated.unwrap_err().code(), Code::FailedPrecondition),
                        }
                    }
                    Step::Restart => {
                        let Server { log, model, service, _stop } = server;
                        drop((model, service, _stop));
                        log.close().unwrap();
                        while Arc::strong_count(&log) > 1 { tokio::task::yield_now().await; }
                        drop(log);
                        let log = Arc::new(SledEventLog::open(dir.path(), SledOptions::default()).unwrap());
                        server = serve(log).await;
                    }
                }

                // The moderator sees every question, as the rules say, in order.
                let all = list(&server.service, &moderator).await;
                prop_assert_eq!(all.len(), expected.len());
                let by_id: HashMap<&str, &Expected> = expected.iter().map(|e| (e.id.as_str(), e)).collect();
                for q in &all {
                    let e = by_id[q.id.as_str()];
                    prop_assert_eq!(q.state(), e.state);
                    prop_assert_eq!(q.pinned, e.pinned);
                    prop_assert_eq!(q.votes, e.voters.len() as u64);
                }
                for pair in all.windows(2) {
                    let (a, b) = (&pair[0], &pair[1]);
                    let key = |q: &pb::Question| (group(q), std::cmp::Reverse(q.votes), by_id[q.id.as_str()].order);
                    prop_assert!(key(a) < key(b), "out of order: {:?} before {:?}", a, b);
                }
                // Each attendee sees the public questions and their own, nothing else.
                for who in &attendees {
                    let seen: BTreeSet<String> = list(&server.service, who).await.into_iter().map(|q| q.id).collect();
                    let allowed: BTreeSet<String> = expected.iter()
                        .filter(|e| e.author == who.id || matches!(e.state, pb::QuestionState::Published | pb::QuestionState::Answered))
                        .map(|e| e.id.clone())
                        .collect();
                    prop_assert_eq!(seen, allowed);
                }
            }
            // A fresh read model over the same log gives the same lists.
            let replayed = start(server.log.clone()).await;
            let (_stop, stop_rx) = watch::channel(false);
            let again = QuestionsService::new(server.log.clone(), replayed, stop_rx, &tokio::runtime::Handle::current());
            prop_assert_eq!(list(&server.service, &moderator).await, list(&again, &moderator).await);
            drop(server.model);
            Ok(())
        })?;
    }
}

#[tokio::test]
async fn the_stream_sends_a_snapshot_then_updates_and_tells_the_author_of_a_dismissal() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(SledEventLog::open(dir.path(), SledOptions::default()).unwrap());
    seed(log.as_ref()).await;
    let server = serve(log).await;
    let (moderator, dara, sok) = (
        principal("mod-1", Role::Moderator),
        principal("att-dara", Role::Attendee),
        principal("att-sok", Role::Attendee),
    );
    let watch = |who: &Principal| {
        server.service.watch_questions(request(
            who,
            pb::WatchQuestionsRequest {
                conference_id: CONF.into(),
                session_id: SESSION.into(),
            },
        ))
    };
    use futures::StreamExt;
    let mut dara_stream = watch(&dara).await.unwrap().into_inner();
    let mut sok_stream = watch(&sok).await.unwrap().into_inner();
    let first = dara_stream.next().await.unwrap().unwrap();
    assert!(first.questions.is_empty());
    sok_stream.next().await.unwrap().unwrap();

    let asked = server
        .service
        .ask_question(request(
            &dara,
            pb::AskQuestionRequest {
                request_id: String::new(),
                conference_id: CONF.into(),
                session_id: SESSION.into(),
                text: "Will the datasets be published?".into(),
                anonymous: false,
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let id = asked.question.unwrap().id;
    server
        .service
        .moderate_question(request(
            &moderator,
            pb::ModerateQuestionRequest {
                request_id: String::new(),
                conference_id: CONF.into(),
                question_id: id.clone(),
                action: pb::ModerationAction::Dismiss as i32,
                reason: "answered in the talk".into(),
            },
        ))
        .await
        .unwrap();
    let head = server.model.read().position;
    // Updates are coalesced: read until the stream reflects the dismissal.
    let mut last = first.position;
    let dismissed = loop {
        let message = dara_stream.next().await.unwrap().unwrap();
        assert!(message.position >= last);
        last = message.position;
        if message.position >= head {
            break message;
        }
    };
    assert_eq!(dismissed.questions.len(), 1);
    let q = &dismissed.questions[0];
    assert_eq!(q.state(), pb::QuestionState::Dismissed);
    assert_eq!(q.reason, "answered in the talk");
    assert!(q.mine);
    // Another attendee sees nothing of it.
    let others = loop {
        let message = sok_stream.next().await.unwrap().unwrap();
        if message.position >= head {
            break message;
        }
    };
    assert!(others.questions.is_empty(), "{others:?}");
}
