//! Live polls against the real podiumd: hundreds of attendees voting at once while watchers
//! follow the results, the same tallies after a restart, and the rules of a ballot.

use std::collections::BTreeMap;

use futures::StreamExt;
use podium_client::{Client, pb};
use podium_e2e::{CONFERENCE, NewPoll, OTHER_CONFERENCE, PATIENCE, Show, ballot, text};
use tonic::Code;

fn counts(results: &pb::Results) -> BTreeMap<String, u64> {
    results
        .options
        .iter()
        .map(|o| (o.option_id.clone(), o.count))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_attendees_vote_while_fifty_watchers_converge_and_a_restart_keeps_the_tallies()
{
    let mut show = Show::start()
        .poll(NewPoll::single_choice(&["Budgets", "Health", "Education", "Land"]).anonymous())
        .await
        .unwrap();
    let (admin, poll) = (show.admin.clone(), show.polls[0].clone());

    // Expected final tally: attendee i votes option i % 4, and every fifth changes their mind
    // to "Land" afterwards.
    let mut expected: BTreeMap<String, u64> =
        poll.options.iter().map(|o| (o.id.clone(), 0)).collect();
    for i in 0..200 {
        let final_choice = if i % 5 == 0 { 3 } else { i % 4 };
        *expected.get_mut(&poll.options[final_choice].id).unwrap() += 1;
    }

    let mut watchers = Vec::new();
    for w in 0..50 {
        let watcher = show.join(&format!("watcher {w}")).await.unwrap();
        let poll_id = poll.id.clone();
        let expected = expected.clone();
        watchers.push(tokio::spawn(async move {
            let mut stream = watcher
                .polls()
                .watch_results(pb::WatchResultsRequest {
                    conference_id: CONFERENCE.into(),
                    poll_id,
                    language: "en".into(),
                })
                .await
                .unwrap()
                .into_inner();
            let mut updates = 0;
            loop {
                let message = tokio::time::timeout(PATIENCE, stream.next())
                    .await
                    .expect("update in time")
                    .unwrap()
                    .unwrap();
                updates += 1;
                if let Some(results) = message.results
                    && results.ballots == 200
                    && counts(&results) == expected
                {
                    return updates;
                }
            }
        }));
    }

    let mut voters = Vec::new();
    for i in 0..200usize {
        let client = show.join(&format!("attendee {i}")).await.unwrap();
        let options: Vec<String> = poll.options.iter().map(|o| o.id.clone()).collect();
        let poll = poll.clone();
        voters.push(tokio::spawn(async move {
            let first = ballot(&poll, vec![options[i % 4].clone()]);
            let cast = client
                .polls()
                .cast_ballot(first.clone())
                .await
                .unwrap()
                .into_inner();
            assert!(!cast.replaced);
            // A retry of the same ballot is answered, not counted twice.
            client.polls().cast_ballot(first).await.unwrap();
            if i % 5 == 0 {
                let changed = client
                    .polls()
                    .cast_ballot(ballot(&poll, vec![options[3].clone()]))
                    .await
                    .unwrap()
                    .into_inner();
                assert!(changed.replaced);
            }
        }));
    }
    for voter in voters {
        voter.await.unwrap();
    }
    // Every ballot, retry and change is one CastBallot answered OK on the operator's figures.
    let scraped = podium_e2e::metrics::scrape(&show.server).await.unwrap();
    assert_eq!(
        podium_e2e::metrics::sample(
            &scraped,
            r#"podium_rpc_requests_total{service="Polls",method="CastBallot",code="OK"}"#
        ),
        440.0
    );
    let mut updates = Vec::new();
    for watcher in watchers {
        updates.push(watcher.await.unwrap());
    }
    // Coalescing: 200+ ballots reach each watcher in far fewer messages.
    assert!(
        updates.iter().all(|u| *u < 240),
        "updates per watcher: {updates:?}"
    );

    let closed = admin
        .polls()
        .close_poll(pb::ClosePollRequest {
            conference_id: CONFERENCE.into(),
            poll_id: poll.id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    let final_results = closed.results.unwrap();
    assert_eq!(counts(&final_results), expected);
    // Anonymous: the key that linked attendees to ballots is gone, and a late ballot does not
    // bring it back.
    let late = show.join("late").await.unwrap();
    let refused = late
        .polls()
        .cast_ballot(ballot(&poll, vec![poll.options[0].id.clone()]))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    let scraped = podium_e2e::metrics::scrape(&show.server).await.unwrap();
    assert_eq!(
        podium_e2e::metrics::sample(
            &scraped,
            r#"podium_rpc_requests_total{service="Polls",method="CastBallot",code="FAILED_PRECONDITION"}"#
        ),
        1.0
    );
    let keys: Vec<_> = std::fs::read_dir(show.server.data_dir.join("poll-keys"))
        .unwrap()
        .collect();
    assert!(keys.is_empty(), "{keys:?}");
    // Integrators get results, never ballots: the public feed leaves them out.
    let feed = admin.follow_feed(CONFERENCE, 0, vec![]);
    futures::pin_mut!(feed);
    let mut types = std::collections::BTreeSet::new();
    while let Some(podium_client::FeedItem::Event(event)) = feed.next().await.transpose().unwrap() {
        types.insert(event.r#type);
    }
    assert!(types.contains("podium.v1.PollClosed"), "{types:?}");
    assert!(!types.contains("podium.v1.BallotCast"), "{types:?}");

    show.restart().await.unwrap();
    let mut stream = show
        .admin
        .polls()
        .watch_results(pb::WatchResultsRequest {
            conference_id: CONFERENCE.into(),
            poll_id: poll.id.clone(),
            language: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let after = stream.next().await.unwrap().unwrap().results.unwrap();
    assert_eq!(after, final_results);
}

#[tokio::test]
async fn ballots_follow_the_rules_of_their_poll() {
    let show = Show::start()
        .poll(NewPoll::multiple_choice(&["Budgets", "Health", "Education"]).locked())
        .attendees(1)
        .await
        .unwrap();
    let (admin, dara, locked) = (&show.admin, &show.attendees[0], &show.polls[0]);
    let code =
        |r: Result<tonic::Response<pb::CastBallotResponse>, tonic::Status>| r.unwrap_err().code();

    let ids: Vec<String> = locked.options.iter().map(|o| o.id.clone()).collect();
    assert_eq!(
        code(
            dara.polls()
                .cast_ballot(ballot(locked, vec![ids[0].clone(), ids[0].clone()]))
                .await
        ),
        Code::InvalidArgument
    );
    assert_eq!(
        code(
            dara.polls()
                .cast_ballot(ballot(locked, vec!["opt-9".into()]))
                .await
        ),
        Code::InvalidArgument
    );
    dara.polls()
        .cast_ballot(ballot(locked, vec![ids[0].clone(), ids[2].clone()]))
        .await
        .unwrap();
    assert_eq!(
        code(
            dara.polls()
                .cast_ballot(ballot(locked, vec![ids[1].clone()]))
                .await
        ),
        Code::FailedPrecondition,
        "locked ballots"
    );
    // Organisers do not vote; other conferences' polls do not exist.
    assert_eq!(
        code(
            admin
                .polls()
                .cast_ballot(ballot(locked, vec![ids[1].clone()]))
                .await
        ),
        Code::PermissionDenied
    );
    let mut elsewhere = ballot(locked, vec![ids[1].clone()]);
    elsewhere.conference_id = OTHER_CONFERENCE.into();
    assert_eq!(
        code(dara.polls().cast_ballot(elsewhere).await),
        Code::NotFound
    );

    admin
        .polls()
        .close_poll(pb::ClosePollRequest {
            conference_id: CONFERENCE.into(),
            poll_id: locked.id.clone(),
        })
        .await
        .unwrap();
    let late = show.join("Late").await.unwrap();
    assert_eq!(
        code(
            late.polls()
                .cast_ballot(ballot(locked, vec![ids[1].clone()]))
                .await
        ),
        Code::FailedPrecondition,
        "closed poll"
    );

    // A rating outside the scale names the field.
    let rating = admin
        .polls()
        .create_poll(pb::CreatePollRequest {
            request_id: Client::request_id(),
            conference_id: CONFERENCE.into(),
            question: text("How useful was this session?"),
            kind: pb::PollKind::Rating as i32,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .poll
        .unwrap();
    admin
        .polls()
        .open_poll(pb::OpenPollRequest {
            conference_id: CONFERENCE.into(),
            poll_id: rating.id.clone(),
        })
        .await
        .unwrap();
    let mut six = ballot(&rating, vec![]);
    six.rating = 6;
    let refused = dara.polls().cast_ballot(six).await.unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().starts_with("rating:"),
        "{}",
        refused.message()
    );

    // Bad polls are refused with the field named.
    let bad = admin
        .polls()
        .create_poll(pb::CreatePollRequest {
            request_id: Client::request_id(),
            conference_id: CONFERENCE.into(),
            question: text("One option only?"),
            kind: pb::PollKind::SingleChoice as i32,
            options: vec![text("Lonely").unwrap()],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().starts_with("options:"), "{}", bad.message());
}

#[tokio::test]
async fn a_khmer_word_cloud_counts_words_not_sentences() {
    let show = Show::start().poll(NewPoll::word_cloud()).await.unwrap();
    let (admin, cloud) = (&show.admin, &show.polls[0]);
    for (i, answer) in ["ទិន្នន័យបើកចំហ", "ទិន្នន័យ", "Open DATA", "open data"]
        .iter()
        .enumerate()
    {
        let client = show.join(&format!("a{i}")).await.unwrap();
        let mut b = ballot(cloud, vec![]);
        b.text = (*answer).into();
        client.polls().cast_ballot(b).await.unwrap();
    }
    let results = admin
        .polls()
        .close_poll(pb::ClosePollRequest {
            conference_id: CONFERENCE.into(),
            poll_id: cloud.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .results
        .unwrap();
    let words: BTreeMap<String, u64> = results
        .words
        .iter()
        .map(|w| (w.word.clone(), w.count))
        .collect();
    assert_eq!(words.get("ទិន្នន័យ"), Some(&2), "{words:?}");
    assert_eq!(words.get("បើកចំហ"), Some(&1), "{words:?}");
    assert_eq!(words.get("data"), Some(&2), "{words:?}");
    assert_eq!(words.get("open"), Some(&2), "{words:?}");
}

#[tokio::test]
async fn the_export_is_aggregated_and_names_no_attendee() {
    let show = Show::start()
        .poll(NewPoll::single_choice(&["Budgets", "Health"]))
        .poll(NewPoll::open_text())
        .await
        .unwrap();
    let (choice, secret) = (&show.polls[0], &show.polls[1]);
    for (i, name) in ["Dara Sok", "Vanna Chea", "Bopha Lim"].iter().enumerate() {
        let client = show.join(name).await.unwrap();
        client
            .polls()
            .cast_ballot(ballot(choice, vec![choice.options[i % 2].id.clone()]))
            .await
            .unwrap();
        let mut answer = ballot(secret, vec![]);
        answer.text = format!("my phone number is 012 345 67{i}");
        client.polls().cast_ballot(answer).await.unwrap();
    }
    let token = show.server.admin_token().unwrap();
    for format in ["json", "csv"] {
        let (ok, out, err) = podium_e2e::cli(
            &show.server,
            &token,
            &["export", "-c", CONFERENCE, "--format", format],
        )
        .unwrap();
        assert!(ok, "{err}");
        assert!(out.contains("Budgets") && out.contains("Health"), "{out}");
        for leak in ["att-", "Dara", "Vanna", "Bopha", "phone number"] {
            assert!(
                !out.contains(leak),
                "{format} export leaks {leak:?}:\n{out}"
            );
        }
        if format == "json" {
            let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
            let poll = doc["polls"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["id"] == choice.id.as_str())
                .unwrap();
            assert_eq!(poll["ballots"], 3);
            assert_eq!(poll["options"][0]["count"], 2);
        } else {
            assert!(out.starts_with("section,session,item,question,answer,count,mean\n"));
            assert!(
                out.lines()
                    .any(|l| l.starts_with("poll,") && l.contains("Budgets,2")),
                "{out}"
            );
        }
    }
}

#[tokio::test]
async fn two_moderators_closing_at_once_close_the_poll_once() {
    let show = Show::start()
        .poll(NewPoll::single_choice(&["Budgets", "Health"]).anonymous())
        .await
        .unwrap();
    let (admin, poll) = (&show.admin, &show.polls[0]);
    let close = || {
        let polls = admin.polls();
        let request = pb::ClosePollRequest {
            conference_id: CONFERENCE.into(),
            poll_id: poll.id.clone(),
        };
        async move { polls.clone().close_poll(request).await }
    };
    let (a, b) = tokio::join!(close(), close());
    let refused: Vec<Code> = [a, b]
        .into_iter()
        .filter_map(|r| r.err().map(|e| e.code()))
        .collect();
    assert_eq!(refused.len(), 1, "exactly one close succeeds");
    assert!(
        matches!(refused[0], Code::Aborted | Code::FailedPrecondition),
        "{refused:?}"
    );
    let feed = admin.follow_feed(CONFERENCE, 0, vec!["podium.v1.PollClosed".into()]);
    futures::pin_mut!(feed);
    let mut closes = 0;
    while let Some(podium_client::FeedItem::Event(_)) = feed.next().await.transpose().unwrap() {
        closes += 1;
    }
    assert_eq!(closes, 1);
}
