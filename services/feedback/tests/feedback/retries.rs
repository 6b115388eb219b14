//! A resent write gets its first answer, whatever happened in between: a ballot or a rating
//! resent after a newer one, or two ballots of one attendee at the same moment. Through the
//! `Polls` and `Ratings` services in process, on a real sled log.

use std::sync::Arc;

use podium_access::{Principal, Role};
use podium_eventlog::{EventLog, ExpectedVersion, NewEvent, SledEventLog, SledOptions};
use podium_feedback::{PollsService, RatingsService, VoterKeys};
use podium_proto::v1::{self as pb, polls_server::Polls, ratings_server::Ratings};
use tokio::sync::watch;
use uuid::Uuid;

use crate::qa::{principal, request, seed, start};

/// A choice poll, open, in a fresh log; `anonymous` as asked; its results published on
/// `publishing`.
pub async fn open_poll(
    anonymous: bool,
    publishing: &tokio::runtime::Handle,
) -> (tempfile::TempDir, PollsService, pb::Poll) {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(SledEventLog::open(dir.path().join("log"), SledOptions::default()).unwrap());
    seed(log.as_ref()).await;
    let model = start(log.clone()).await;
    let keys = Arc::new(VoterKeys::open(dir.path().join("keys")).unwrap());
    let (stop, stop_rx) = watch::channel(false);
    std::mem::forget(stop);
    let polls = PollsService::new(log, model, keys, stop_rx, publishing);
    let poll = create_open(
        &polls,
        pb::CreatePollRequest {
            kind: pb::PollKind::SingleChoice as i32,
            options: ["Budgets", "Health", "Schools"]
                .map(|o| pb::LocalizedText {
                    text: [("en".to_owned(), o.to_owned())].into(),
                })
                .into(),
            anonymous,
            ..question("Which first?")
        },
    )
    .await;
    (dir, polls, poll)
}

/// A poll request in the fixture's conference asking `text`, with a fresh request id.
pub fn question(text: &str) -> pb::CreatePollRequest {
    pb::CreatePollRequest {
        request_id: Uuid::new_v4().to_string(),
        conference_id: "odc2024".into(),
        question: Some(pb::LocalizedText {
            text: [("en".to_owned(), text.to_owned())].into(),
        }),
        ..Default::default()
    }
}

/// Creates the poll as a moderator and opens it.
pub async fn create_open(polls: &PollsService, create: pb::CreatePollRequest) -> pb::Poll {
    let moderator = principal("mod-1", Role::Moderator);
    let poll = polls
        .create_poll(request(&moderator, create))
        .await
        .unwrap()
        .into_inner()
        .poll
        .unwrap();
    polls
        .open_poll(request(
            &moderator,
            pb::OpenPollRequest {
                conference_id: poll.conference_id.clone(),
                poll_id: poll.id.clone(),
            },
        ))
        .await
        .unwrap();
    poll
}

pub fn ballot(poll: &pb::Poll, option: usize) -> pb::CastBallotRequest {
    pb::CastBallotRequest {
        conference_id: "odc2024".into(),
        poll_id: poll.id.clone(),
        ballot_id: Uuid::new_v4().to_string(),
        option_ids: vec![poll.options[option].id.clone()],
        ..Default::default()
    }
}

pub async fn cast(
    polls: &PollsService,
    who: &Principal,
    ballot: &pb::CastBallotRequest,
) -> Result<pb::CastBallotResponse, tonic::Status> {
    polls
        .cast_ballot(request(who, ballot.clone()))
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn a_resent_ballot_gets_its_first_answer() {
    for anonymous in [false, true] {
        let (_dir, polls, poll) = open_poll(anonymous, &tokio::runtime::Handle::current()).await;
        let dara = principal("att-dara", Role::Attendee);
        let (first, second) = (ballot(&poll, 0), ballot(&poll, 1));
        let a = cast(&polls, &dara, &first).await.unwrap();
        let b = cast(&polls, &dara, &second).await.unwrap();
        assert!(!a.replaced && b.replaced, "{a:?} {b:?}");
        // Resent after the newer one, poll still open: the first answers again.
        assert_eq!(
            cast(&polls, &dara, &first).await.unwrap(),
            a,
            "anonymous: {anonymous}"
        );
        assert_eq!(
            cast(&polls, &dara, &second).await.unwrap(),
            b,
            "anonymous: {anonymous}"
        );
        // And once the poll is closed: those ballots arrived before the close.
        polls
            .close_poll(request(
                &principal("mod-1", Role::Moderator),
                pb::ClosePollRequest {
                    conference_id: "odc2024".into(),
                    poll_id: poll.id.clone(),
                },
            ))
            .await
            .unwrap();
        if !anonymous {
            assert_eq!(cast(&polls, &dara, &first).await.unwrap(), a);
            assert_eq!(cast(&polls, &dara, &second).await.unwrap(), b);
        }
        // A new ballot after the close is refused.
        let late = cast(&polls, &dara, &ballot(&poll, 2)).await.unwrap_err();
        assert_eq!(late.code(), tonic::Code::FailedPrecondition);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ballots_sent_at_the_same_moment_are_all_answered() {
    let (_dir, polls, poll) = open_poll(false, &tokio::runtime::Handle::current()).await;
    let polls = Arc::new(polls);
    let dara = principal("att-dara", Role::Attendee);
    for round in 0..20 {
        let sent: Vec<_> = (0..4).map(|i| ballot(&poll, (round + i) % 3)).collect();
        let answers = futures::future::join_all(sent.iter().map(|b| {
            let (polls, dara, b) = (polls.clone(), dara.clone(), b.clone());
            tokio::spawn(async move { cast(&polls, &dara, &b).await })
        }))
        .await;
        for answer in answers {
            let answer = answer.unwrap();
            assert!(answer.is_ok(), "round {round}: {answer:?}");
        }
    }
}

#[tokio::test]
async fn a_resent_rating_gets_its_first_answer() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(SledEventLog::open(dir.path(), SledOptions::default()).unwrap());
    seed(log.as_ref()).await;
    let model = start(log.clone()).await;
    let live = pb::SessionWentLive {
        conference_id: "odc2024".into(),
        session_id: "ses-1".into(),
        ..Default::default()
    };
    let at = log
        .append(
            "conference/odc2024/session/ses-1/status",
            ExpectedVersion::Any,
            vec![NewEvent::new(Uuid::new_v4(), &live)],
        )
        .await
        .unwrap()
        .last_position;
    model.wait_for(at).await.unwrap();
    let ratings = RatingsService::new(log, model);
    let dara = principal("att-dara", Role::Attendee);
    let rate = |rating: i32| pb::RateSessionRequest {
        request_id: Uuid::new_v4().to_string(),
        conference_id: "odc2024".into(),
        session_id: "ses-1".into(),
        rating,
        comment: String::new(),
    };
    let send = async |r: &pb::RateSessionRequest| {
        ratings
            .rate_session(request(&dara, r.clone()))
            .await
            .unwrap()
            .into_inner()
    };
    let (first, second) = (rate(2), rate(4));
    let a = send(&first).await;
    let b = send(&second).await;
    assert!(!a.replaced && b.replaced);
    assert_eq!(send(&first).await, a);
    assert_eq!(send(&second).await, b);
}

#[tokio::test]
async fn a_ballot_id_sent_again_for_another_poll_is_refused_not_counted_twice() {
    let (_dir, polls, budgets) = open_poll(false, &tokio::runtime::Handle::current()).await;
    let schools = create_open(
        &polls,
        pb::CreatePollRequest {
            kind: pb::PollKind::SingleChoice as i32,
            options: ["Yes", "No"]
                .map(|o| pb::LocalizedText {
                    text: [("en".to_owned(), o.to_owned())].into(),
                })
                .into(),
            ..question("More schools?")
        },
    )
    .await;
    let dara = principal("att-dara", Role::Attendee);
    let first = ballot(&budgets, 0);
    let answer = cast(&polls, &dara, &first).await.unwrap();
    // The same id for a ballot in the other poll: a client bug, or a replayed request.
    let reused = pb::CastBallotRequest {
        poll_id: schools.id.clone(),
        option_ids: vec![schools.options[0].id.clone()],
        ..first.clone()
    };
    let refused = cast(&polls, &dara, &reused).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    assert!(
        refused
            .message()
            .contains("already used for a different request"),
        "{refused:?}"
    );
    // Nothing was stored in the other poll (Dara's own ballot there replaces none), and the
    // first ballot still answers as it did.
    let own = cast(&polls, &dara, &ballot(&schools, 1)).await.unwrap();
    assert!(!own.replaced, "{own:?}");
    assert_eq!(cast(&polls, &dara, &first).await.unwrap(), answer);
}
