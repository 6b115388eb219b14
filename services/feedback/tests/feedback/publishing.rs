//! The results publisher runs on the runtime it is given, podiumd's publishing thread
//! ([`PublishingThread`]), and not on the one the service answers on: here that one is made to
//! run nothing at all.

use std::time::Duration;

use futures::StreamExt;
use podium_access::Role;
use podium_feedback::PublishingThread;
use podium_proto::v1::{self as pb, polls_server::Polls};
use prost::Message;

use crate::{
    qa::{principal, request},
    retries::{ballot, cast, open_poll},
};

// On tokio's one-thread test runtime: with worker threads, blocking one of them below would
// leave another to run a publisher spawned there, and the test would prove nothing.
#[tokio::test]
async fn results_are_published_while_the_runtime_the_service_answers_on_is_blocked() {
    let publishing = PublishingThread::start().unwrap();
    let (_dir, polls, poll) = open_poll(false, publishing.handle()).await;
    let moderator = principal("mod-1", Role::Moderator);
    let mut updates = polls
        .watch_results(request(
            &moderator,
            pb::WatchResultsRequest {
                conference_id: "odc2024".into(),
                poll_id: poll.id.clone(),
                language: String::new(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let decode = |update: pb::WatchResultsResponse| {
        let wire = pb::WatchResultsResponse::decode(update.encode_to_vec().as_slice()).unwrap();
        wire.results.unwrap().ballots
    };
    assert_eq!(decode(updates.next().await.unwrap().unwrap()), 0);

    // The ballot is acknowledged once the read model holds it; the publisher has been woken.
    cast(
        &polls,
        &principal("att-dara", Role::Attendee),
        &ballot(&poll, 0),
    )
    .await
    .unwrap();
    // From here this test's runtime runs nothing: its only thread waits below for another
    // thread to read the watcher's updates (one may still be the poll's opening) until one
    // counts the ballot. A publisher spawned on this runtime would never run, and that update
    // would never come.
    let (counted, received) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        futures::executor::block_on(async {
            while let Some(update) = updates.next().await {
                let ballots = decode(update.unwrap());
                if ballots > 0 {
                    let _ = counted.send(ballots);
                    return;
                }
            }
        })
    });
    let ballots = received
        .recv_timeout(Duration::from_secs(60))
        .expect("the ballot's results are published while the service's runtime is blocked");
    assert_eq!(ballots, 1);
}
