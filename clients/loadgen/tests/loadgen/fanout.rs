//! The fan-out scenario runs end to end against a podiumd it starts, with its bare tonic
//! baseline in the same run.

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
