//! The fan-out scenario runs end to end against a podiumd it starts, with its bare tonic
//! baseline in the same run; and its web transport (SSE watchers) against another.

use podium_loadgen::{fanout, podiumd::LocalPodiumd};

#[tokio::test]
async fn fanout_measures_podium_and_the_bare_baseline_with_the_same_watchers() {
    let binary = tokio::task::spawn_blocking(crate::podiumd)
        .await
        .unwrap()
        .unwrap();
    let podiumd = LocalPodiumd::start(&binary).await.unwrap();
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

#[tokio::test]
async fn web_fanout_reads_every_ballot_count_from_the_sse_streams() {
    let binary = tokio::task::spawn_blocking(crate::podiumd)
        .await
        .unwrap()
        .unwrap();
    let podiumd = LocalPodiumd::start(&binary).await.unwrap();
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
