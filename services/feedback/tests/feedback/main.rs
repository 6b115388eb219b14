//! Property test of the poll aggregate through the real sled log: random sequences of
//! create, open, vote, re-vote, retry, hide, close and restart. The live tallies equal those
//! replayed from the log, every tally equals the count of each voter's latest ballot, and no
//! ballot is counted after the close.
//!
//! `qa` holds the Q&A tests, `ratings` the session ratings and surveys, `retries` resent
//! writes, `publishing` the runtime the results publisher runs on.

mod publishing;
mod qa;
mod ratings;
mod retries;

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use podium_eventlog::{
    EventLog, ExpectedVersion, Filter, NewEvent, Projector, SledEventLog, SledOptions,
};
use podium_feedback::{
    FeedbackModel,
    domain::words::WordCounter,
    feedback_event_types,
    store::{ballot_stream, poll_stream, results},
};
use podium_proto::v1 as pb;
use proptest::prelude::*;
use uuid::Uuid;

#[derive(Debug, Clone)]
enum Step {
    Open,
    Vote { voter: u8, option: u8 },
    Retry,
    Hide,
    Close,
    Restart,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        1 => Just(Step::Open),
        8 => (0..12u8, 0..3u8).prop_map(|(voter, option)| Step::Vote { voter, option }),
        2 => Just(Step::Retry),
        1 => Just(Step::Hide),
        1 => Just(Step::Close),
        1 => Just(Step::Restart),
    ]
}

async fn start(log: Arc<dyn EventLog>, words: Arc<WordCounter>) -> Projector<FeedbackModel> {
    let filter = Filter {
        stream_prefix: None,
        event_types: feedback_event_types(),
    };
    Projector::start("feedback", log, FeedbackModel::new(words), filter)
        .await
        .unwrap()
}

async fn append<M: prost::Message + prost::Name>(
    log: &dyn EventLog,
    stream: &str,
    id: Uuid,
    message: &M,
) -> u64 {
    log.append(
        stream,
        ExpectedVersion::Any,
        vec![NewEvent::new(id, message)],
    )
    .await
    .unwrap()
    .last_position
}

fn poll() -> pb::Poll {
    let text = |t: &str| {
        Some(pb::LocalizedText {
            text: [("en".to_owned(), t.to_owned())].into(),
        })
    };
    pb::Poll {
        id: "poll-1".into(),
        conference_id: "odc2024".into(),
        question: text("Which data?"),
        kind: pb::PollKind::SingleChoice as i32,
        options: (1..=3)
            .map(|i| pb::PollOption {
                id: format!("opt-{i}"),
                text: text(&format!("Option {i}")),
                label: String::new(),
            })
            .collect(),
        max_choices: 1,
        visibility: pb::ResultVisibility::Live as i32,
        state: pb::PollState::Draft as i32,
        ..Default::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn tallies_are_the_latest_ballot_of_each_voter_and_replay_to_the_same_state(steps in proptest::collection::vec(step(), 1..60)) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let words = Arc::new(WordCounter::new());
            let dir = tempfile::tempdir().unwrap();
            let mut log: Arc<SledEventLog> = Arc::new(SledEventLog::open(dir.path(), SledOptions::default()).unwrap());
            let mut model = start(log.clone(), words.clone()).await;
            let conference = pb::ConferenceCreated { conference_id: "odc2024".into(), default_language: "en".into(), time_zone: "Asia/Phnom_Penh".into(), ..Default::default() };
            append(log.as_ref(), "conference/odc2024/agenda", Uuid::new_v4(), &conference).await;
            let created = pb::PollCreated { poll: Some(poll()), created_by: "admin".into() };
            model.wait_for(append(log.as_ref(), &poll_stream("odc2024", "poll-1"), Uuid::new_v4(), &created).await).await.unwrap();

            // The oracle: what the rules say the tally is.
            let mut state = "draft";
            let mut latest: HashMap<u8, (Uuid, u8)> = HashMap::new();
            let mut sent: Vec<(u8, Uuid, u8)> = Vec::new();
            for step in steps {
                match step {
                    Step::Open => {
                        let e = pb::PollOpened { conference_id: "odc2024".into(), poll_id: "poll-1".into(), at: None };
                        model.wait_for(append(log.as_ref(), &poll_stream("odc2024", "poll-1"), Uuid::new_v4(), &e).await).await.unwrap();
                        if state == "draft" { state = "open"; }
                    }
                    Step::Close => {
                        let e = pb::PollClosed { conference_id: "odc2024".into(), poll_id: "poll-1".into(), at: None };
                        model.wait_for(append(log.as_ref(), &poll_stream("odc2024", "poll-1"), Uuid::new_v4(), &e).await).await.unwrap();
                        state = "closed";
                    }
                    Step::Vote { voter, option } => {
                        let id = Uuid::new_v4();
                        vote(log.as_ref(), &model, voter, id, option).await;
                        if state == "open" { latest.insert(voter, (id, option)); }
                        sent.push((voter, id, option));
                    }
                    Step::Retry => {
                        if let Some((voter, id, option)) = sent.last().copied() {
                            // The same ballot again: the log keeps one, the tally counts one.
                            vote(log.as_ref(), &model, voter, id, option).await;
                        }
                    }
                    Step::Hide => {
                        let e = pb::WordHidden { conference_id: "odc2024".into(), poll_id: "poll-1".into(), word: "data".into(), hidden: true };
                        model.wait_for(append(log.as_ref(), &poll_stream("odc2024", "poll-1"), Uuid::new_v4(), &e).await).await.unwrap();
                    }
                    Step::Restart => {
                        drop(model);
                        log.close().unwrap();
                        while Arc::strong_count(&log) > 1 { tokio::task::yield_now().await; }
                        drop(log);
                        log = Arc::new(SledEventLog::open(dir.path(), SledOptions::default()).unwrap());
                        model = start(log.clone(), words.clone()).await;
                    }
                }
                let live = results(&model.read(), "odc2024", "poll-1", true, "").unwrap();
                let mut expected: BTreeMap<String, u64> = (1..=3).map(|i| (format!("opt-{i}"), 0)).collect();
                for (_, option) in latest.values() {
                    *expected.get_mut(&format!("opt-{}", option + 1)).unwrap() += 1;
                }
                let tally: BTreeMap<String, u64> = live.options.iter().map(|o| (o.option_id.clone(), o.count)).collect();
                prop_assert_eq!(&tally, &expected);
                prop_assert_eq!(live.ballots, latest.len() as u64);
                // A closed poll keeps its counts, not who cast which ballot.
                let forgotten = model.read().poll("odc2024", "poll-1").is_some_and(|p| p.ballots.is_empty());
                prop_assert_eq!(forgotten, state == "closed" || latest.is_empty());
            }
            // A fresh read model over the same log agrees with the live one.
            let replayed = start(log.clone(), words.clone()).await;
            let a = results(&model.read(), "odc2024", "poll-1", true, "");
            let b = results(&replayed.read(), "odc2024", "poll-1", true, "");
            prop_assert_eq!(a, b);
            Ok(())
        })?;
    }
}

async fn vote(
    log: &dyn EventLog,
    model: &Projector<FeedbackModel>,
    voter: u8,
    id: Uuid,
    option: u8,
) {
    let e = pb::BallotCast {
        conference_id: "odc2024".into(),
        poll_id: "poll-1".into(),
        voter: format!("att-{voter}"),
        ballot_id: id.to_string(),
        option_ids: vec![format!("opt-{}", option + 1)],
        rating: 0,
        text: String::new(),
    };
    let position = append(
        log,
        &ballot_stream("odc2024", "poll-1", &format!("att-{voter}")),
        id,
        &e,
    )
    .await;
    model.wait_for(position).await.unwrap();
}

#[test]
fn a_destroyed_anonymity_key_is_never_created_again() {
    let dir = tempfile::tempdir().unwrap();
    let keys = podium_feedback::VoterKeys::open(dir.path().join("keys")).unwrap();
    let file = dir.path().join("keys").join("odc2024--poll-1.key");
    let voter = keys.voter("odc2024", "poll-1", "att-1").unwrap();
    assert!(voter.is_some() && file.exists());
    assert_eq!(keys.voter("odc2024", "poll-1", "att-1").unwrap(), voter);
    keys.destroy("odc2024", "poll-1").unwrap();
    assert!(!file.exists());
    // A ballot that raced the close finds no key, and makes none.
    assert_eq!(keys.voter("odc2024", "poll-1", "att-1").unwrap(), None);
    assert!(!file.exists());
}
