//! The fan-out scenario runs end to end against a podiumd it starts, with its bare tonic
//! baseline in the same run; its web transport (SSE watchers) against another; and spread over
//! three nodes on a NATS cluster.

use podium_loadgen::fanout;

#[tokio::test]
async fn fanout_measures_podium_and_the_bare_baseline_with_the_same_watchers() {
    let podiumd = crate::local_podiumd().await;
    let config = fanout::Config {
        watchers: 30,
        votes: 4,
        per_connection: 10,
        baseline: true,
    };
    let report = fanout::run(podiumd.podium(), &config, podiumd.pid(), |_| {})
        .await
        .unwrap();

    assert_eq!(report.latency.len(), 4, "{report}");
    let baseline = report.baseline.as_ref().expect("baseline measured");
    assert_eq!(baseline.len(), 4, "{report}");
    // The results of a one-question poll with a ballot in it are more than a few bytes.
    assert!(report.message_bytes > 10, "{report}");
    assert!(report.ratio().is_some(), "{report}");
    let printed = report.to_string();
    assert!(printed.contains("bare tonic fan-out"), "{printed}");
    assert!(printed.contains("ratio"), "{printed}");
}

/// More watchers of one poll than one wave of the publisher holds (1,024): each ballot reaches
/// every watcher of every wave.
#[tokio::test]
async fn every_wave_of_watchers_sees_every_ballot() {
    let podiumd = crate::local_podiumd().await;
    let config = fanout::Config {
        watchers: 2_100,
        votes: 3,
        per_connection: 100,
        baseline: false,
    };
    let report = fanout::run(podiumd.podium(), &config, podiumd.pid(), |_| {})
        .await
        .unwrap();
    // `run` fails unless every watcher sees the last ballot; a sample per ballot.
    assert_eq!(report.latency.len(), 3, "{report}");
}

#[tokio::test]
async fn web_fanout_reads_every_ballot_count_from_the_sse_streams() {
    let podiumd = crate::local_podiumd().await;
    let config = fanout::web::Config {
        watchers: 12,
        votes: 3,
        connecting: 4,
    };
    let report = fanout::web::run(podiumd.podium(), &config, podiumd.pid(), |_| {})
        .await
        .unwrap();

    assert_eq!(report.latency.len(), 3, "{report}");
    // The rendered results of a four-option poll are more than a few bytes.
    assert!(report.event_bytes > 100, "{report}");
    assert!(report.bytes_per_watcher().is_some(), "{report}");
    assert!(report.to_string().contains("web watchers"), "{report}");
}

/// Needs `nats-server` 2.14 or later, as every cluster test does.
#[tokio::test]
async fn fanout_spread_over_three_nodes_reaches_every_watcher_on_each() {
    let binary = tokio::task::spawn_blocking(crate::podiumd)
        .await
        .unwrap()
        .unwrap();
    let nodes = podium_loadgen::podiumd::LocalNodes::start(
        &binary,
        3,
        "fanout-test-admin-token-0123456789",
    )
    .await
    .unwrap();
    let config = fanout::Config {
        watchers: 30,
        votes: 4,
        per_connection: 5,
        baseline: false,
    };
    // Watchers on all three nodes: every ballot reaches every one of them, or the run fails.
    let report = fanout::run_on(nodes.podiums(), &config, &nodes.pids(), |_| {})
        .await
        .unwrap();

    assert_eq!((report.nodes, report.latency.len()), (3, 4), "{report}");
    assert!(
        report.rss.is_some(),
        "the three nodes' memory was read: {report}"
    );
    assert!(
        report.to_string().contains("spread over 3 podiumd nodes"),
        "{report}"
    );
}
