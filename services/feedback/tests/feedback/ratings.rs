//! Session ratings through the `Ratings` service in process, and conference surveys: a survey
//! poll's results reach moderators only, on every path (`results`, the results stream).

use std::sync::Arc;

use futures::StreamExt;
use podium_access::{Principal, Role};
use podium_eventlog::{EventLog, ExpectedVersion, NewEvent, SledEventLog, SledOptions};
use podium_feedback::{PollsService, RatingsService, VoterKeys, store::results};
use podium_proto::v1::{self as pb, polls_server::Polls, ratings_server::Ratings};
use prost::Message;
use tokio::sync::watch;
use tonic::Code;
use uuid::Uuid;

use crate::{
    qa::{principal, request, seed, start},
    retries::{create_open, question},
};

fn rate(session: &str, rating: i32, comment: &str) -> pb::RateSessionRequest {
    pb::RateSessionRequest {
        request_id: Uuid::new_v4().to_string(),
        conference_id: "odc2024".into(),
        session_id: session.into(),
        rating,
        comment: comment.into(),
    }
}

async fn append<M: prost::Message + prost::Name>(log: &dyn EventLog, stream: &str, m: &M) -> u64 {
    log.append(
        stream,
        ExpectedVersion::Any,
        vec![NewEvent::new(Uuid::new_v4(), m)],
    )
    .await
    .unwrap()
    .last_position
}

#[tokio::test]
async fn attendees_rate_live_sessions_once_and_moderators_see_aggregates() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(SledEventLog::open(dir.path(), SledOptions::default()).unwrap());
    seed(log.as_ref()).await;
    let model = start(log.clone()).await;
    let service = RatingsService::new(log.clone(), model.clone());
    let (dara, sok, moderator) = (
        principal("att-dara", Role::Attendee),
        principal("att-sok", Role::Attendee),
        principal("mod-1", Role::Moderator),
    );

    let early = service
        .rate_session(request(&dara, rate("ses-1", 5, "")))
        .await
        .unwrap_err();
    assert_eq!(
        early.code(),
        Code::FailedPrecondition,
        "{}",
        early.message()
    );

    // The status service takes the session live.
    let live = pb::SessionWentLive {
        conference_id: "odc2024".into(),
        session_id: "ses-1".into(),
        ..Default::default()
    };
    model
        .wait_for(
            append(
                log.as_ref(),
                "conference/odc2024/session/ses-1/status",
                &live,
            )
            .await,
        )
        .await
        .unwrap();

    let first = rate("ses-1", 2, "too fast");
    let r = service
        .rate_session(request(&dara, first.clone()))
        .await
        .unwrap()
        .into_inner();
    assert!(!r.replaced);
    // A retry is answered with the same position and counted once.
    let again = service
        .rate_session(request(&dara, first))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.position, r.position);
    let replaced = service
        .rate_session(request(&dara, rate("ses-1", 4, "  better on reflection ")))
        .await
        .unwrap()
        .into_inner();
    assert!(replaced.replaced);
    service
        .rate_session(request(&sok, rate("ses-1", 5, "")))
        .await
        .unwrap();

    for (bad, field) in [
        (rate("ses-1", 0, ""), "rating:"),
        (rate("ses-1", 6, ""), "rating:"),
        (rate("ses-1", 3, &"x".repeat(1001)), "comment:"),
    ] {
        let refused = service.rate_session(request(&sok, bad)).await.unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument);
        assert!(
            refused.message().starts_with(field),
            "{}",
            refused.message()
        );
    }
    let unknown = service
        .rate_session(request(&sok, rate("ses-9", 3, "")))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    let mut elsewhere = rate("ses-1", 3, "");
    elsewhere.conference_id = "other".into();
    assert_eq!(
        service
            .rate_session(request(&sok, elsewhere))
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    // The moderators rate nothing; attendees read no aggregates.
    assert_eq!(
        service
            .rate_session(request(&moderator, rate("ses-1", 5, "")))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    let get = |session: &str| pb::GetRatingsRequest {
        conference_id: "odc2024".into(),
        session_id: session.into(),
    };
    assert_eq!(
        service
            .get_ratings(request(&dara, get("")))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );

    let got = service
        .get_ratings(request(&moderator, get("ses-1")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.sessions.len(), 1);
    let summary = got.sessions[0].summary.clone().unwrap();
    assert_eq!((summary.count, summary.mean), (2, 4.5));
    assert_eq!(summary.distribution, [0, 0, 0, 1, 1]);
    assert_eq!(got.sessions[0].comments, ["better on reflection"]);
    // The same after a replay.
    let replayed = RatingsService::new(log.clone(), start(log.clone()).await);
    let after = replayed
        .get_ratings(request(&moderator, get("")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after, got);
}

#[tokio::test]
async fn survey_results_reach_moderators_only() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(SledEventLog::open(dir.path(), SledOptions::default()).unwrap());
    seed(log.as_ref()).await;
    let model = start(log.clone()).await;
    let keys = Arc::new(VoterKeys::open(dir.path().join("keys")).unwrap());
    let (_stop, stop_rx) = watch::channel(false);
    let polls = PollsService::new(
        log.clone(),
        model.clone(),
        keys,
        stop_rx,
        &tokio::runtime::Handle::current(),
    );
    let (moderator, dara): (Principal, Principal) = (
        principal("mod-1", Role::Moderator),
        principal("att-dara", Role::Attendee),
    );

    // A survey question with live visibility: `survey` wins over visibility.
    let created = create_open(
        &polls,
        pb::CreatePollRequest {
            kind: pb::PollKind::Rating as i32,
            visibility: pb::ResultVisibility::Live as i32,
            survey: true,
            ..question("How was the venue?")
        },
    )
    .await;
    polls
        .cast_ballot(request(
            &dara,
            pb::CastBallotRequest {
                conference_id: "odc2024".into(),
                poll_id: created.id.clone(),
                ballot_id: Uuid::new_v4().to_string(),
                rating: 4,
                ..Default::default()
            },
        ))
        .await
        .unwrap();

    assert!(results(&model.read(), "odc2024", &created.id, false, "").is_none());
    assert_eq!(
        results(&model.read(), "odc2024", &created.id, true, "")
            .unwrap()
            .ballots,
        1
    );
    // The first update of a results stream, decoded as a client receives it: the server sends
    // the results encoded once for every watcher, so only the wire form shows them.
    let first_update = async |who: &Principal| {
        let update = polls
            .watch_results(request(
                who,
                pb::WatchResultsRequest {
                    conference_id: "odc2024".into(),
                    poll_id: created.id.clone(),
                    language: String::new(),
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .next()
            .await
            .unwrap()
            .unwrap();
        pb::WatchResultsResponse::decode(update.encode_to_vec().as_slice()).unwrap()
    };
    let attendee_view = first_update(&dara).await;
    assert!(attendee_view.results.is_none(), "{attendee_view:?}");
    let moderator_view = first_update(&moderator).await;
    assert_eq!(moderator_view.results.unwrap().ballots, 1);

    // Still hidden from attendees once the survey closes.
    polls
        .close_poll(request(
            &moderator,
            pb::ClosePollRequest {
                conference_id: "odc2024".into(),
                poll_id: created.id.clone(),
            },
        ))
        .await
        .unwrap();
    assert!(results(&model.read(), "odc2024", &created.id, false, "").is_none());
    let closed_view = first_update(&dara).await;
    assert!(closed_view.results.is_none());
}
