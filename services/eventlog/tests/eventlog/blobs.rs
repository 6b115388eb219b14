//! The recordings' object store on a real JetStream cluster: a collection lists only objects
//! put long enough ago, so an upload another node has just put survives until its registration
//! can have arrived.

use std::time::Duration;

use podium_eventlog::{NatsEventLog, NatsOptions};
use uuid::Uuid;

use crate::helpers::{cluster, runtime};

#[test]
fn an_object_put_a_moment_ago_is_not_yet_listed_as_settled() {
    let cluster = cluster();
    runtime().block_on(async {
        let log = NatsEventLog::open(NatsOptions {
            servers: cluster.urls(),
            monitors: cluster.monitor_urls(),
            prefix: format!("t{}", Uuid::new_v4().simple()),
            ..NatsOptions::default()
        })
        .await
        .expect("open the event log on JetStream");
        let blobs = log.blobs(3).await.expect("the object store opens");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let file = dir.path().join("talk.mp4");
        std::fs::write(&file, b"not really a talk").expect("written");
        // A store just created takes puts once its replicated stream has a leader (a moment
        // on a loaded machine: "no responders" until then; a read can be answered sooner, by
        // a replica).
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while let Err(error) = blobs.put_file("talk-sha", &file).await {
            assert!(
                std::time::Instant::now() < deadline,
                "the store never took the put: {error}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // Listed once the listing has heard of the put (its consumer may be on a replica a
        // moment behind the stream's leader), but not as settled.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let all = blobs.names(Duration::ZERO).await.expect("listed");
            if all == ["talk-sha"] {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "not listed after its put: {all:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let settled = blobs.names(Duration::from_secs(600)).await.expect("listed");
        assert_eq!(settled, Vec::<String>::new(), "put a moment ago");
        // Once it has stood for the settling time, it is listed.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let settled = blobs.names(Duration::from_secs(1)).await.expect("listed");
        assert_eq!(settled, vec!["talk-sha".to_owned()]);
        // A deleted object is not listed at all, once the listing has heard of the deletion:
        // the listing's consumer may be on a replica a moment behind the stream's leader.
        blobs.delete("talk-sha").await.expect("deleted");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let listed = blobs.names(Duration::ZERO).await.expect("listed");
            if listed.is_empty() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "still listed after its deletion: {listed:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
}
