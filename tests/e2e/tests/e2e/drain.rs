//! A stream whose client stopped reading cannot send even its closing status (HTTP/2 flow
//! control holds the data before it). On SIGTERM podiumd closes such a connection once it has
//! been silent for a moment, so it stops without waiting for `--drain-timeout`, while a client
//! that reads gets its stream's end as usual.

use nix::sys::signal::Signal;
use podium_client::{Client, pb, pb::event_feed_client::EventFeedClient};
use podium_e2e::{PATIENCE, Show};
use tonic::Code;

use crate::faults::{End, add_room, bearer, feed_request, frozen, read_to_end};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_a_stream_blocked_on_a_client_that_stopped_reading_before_the_drain_timeout() {
    // A drain timeout far past the harness's patience: podiumd must stop because the blocked
    // stream's connection was closed, not because the timeout cut it.
    let mut show = Show::start()
        .args(&["--drain-timeout", "600"])
        .await
        .unwrap();
    let admin = show.admin.clone();
    // Far more feed than the stalled client's 8 KiB window holds.
    for i in 0..150 {
        add_room(
            &admin,
            &Client::request_id(),
            &format!("Breakout room number {i}"),
        )
        .await
        .unwrap();
    }
    let token = show.server.admin_token().unwrap();
    let mut stalled = EventFeedClient::with_interceptor(frozen(&show.server).await, bearer(&token))
        .subscribe(feed_request())
        .await
        .unwrap()
        .into_inner();
    // One message read, then nothing: the stream fills the window and blocks.
    stalled.message().await.unwrap().unwrap();
    // A reader on its own connection, caught up and waiting for more.
    let mut reader = admin
        .feed()
        .subscribe(feed_request())
        .await
        .unwrap()
        .into_inner();
    while let Some(item) = reader.message().await.unwrap() {
        if matches!(item.item, Some(pb::subscribe_response::Item::CaughtUp(_))) {
            break;
        }
    }
    let reader = tokio::spawn(read_to_end(reader));

    let exit = show.server.stop(Signal::SIGTERM).await.unwrap();
    assert!(exit.success(), "podiumd exited with {exit} on SIGTERM");
    match tokio::time::timeout(PATIENCE, reader)
        .await
        .unwrap()
        .unwrap()
    {
        End::Status(Code::Unavailable, message) => {
            assert!(message.contains("shutting down"), "{message}");
        }
        other => panic!("the reading client's stream ended with {other:?}"),
    }
    // The stalled client finds its stream ended once it reads again.
    let end = tokio::time::timeout(PATIENCE, read_to_end(stalled))
        .await
        .expect("the stalled stream ends");
    assert!(
        !matches!(end, End::Clean),
        "a stream cut while blocked ended cleanly"
    );
}
