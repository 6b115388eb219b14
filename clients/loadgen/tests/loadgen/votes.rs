//! The vote storm spread over three podiumd nodes on a NATS JetStream cluster: it runs, and
//! every node's tally counts one ballot per attendee (the scenario fails otherwise).

use std::time::Duration;

use podium_loadgen::votes;

/// Needs `nats-server` 2.14 or later, as every cluster test does.
#[tokio::test]
async fn a_storm_spread_over_three_nodes_counts_one_ballot_per_attendee_on_each() {
    let binary = tokio::task::spawn_blocking(crate::podiumd)
        .await
        .unwrap()
        .unwrap();
    let config = votes::Config {
        clients: 9,
        duration: Duration::from_secs(1),
    };
    let report = votes::spread::run(&binary, 3, &config).await.unwrap();
    assert_eq!(report.clients, 9);
    assert!(report.ballots.calls >= 9, "every attendee voted: {report}");
    assert!(report.ping.calls >= 9, "{report}");
}
