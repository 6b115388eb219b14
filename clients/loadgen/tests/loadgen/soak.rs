//! The soak scenario plays a small conference end to end against a podiumd it starts: every
//! tally equals the ballots cast, and podiumd's figures are read after each day.

use std::time::Duration;

use podium_loadgen::soak;

#[tokio::test]
async fn a_small_conference_plays_through_with_every_tally_equal_to_the_ballots() {
    let podiumd = crate::local_podiumd().await;
    let config = soak::Config {
        days: 2,
        rooms: 2,
        sessions: 2,
        attendees: 30,
        polls: 3,
        questions: 3,
        failover_after: Duration::from_millis(200),
    };
    let mut slots = 0;
    let report = soak::run(podiumd.podium(), &config, |_| slots += 1)
        .await
        .unwrap();

    assert!(report.tally_mismatches.is_empty(), "{report}");
    // 2 days x 2 rooms x 2 sessions x 3 polls.
    assert_eq!(report.polls_checked, 24, "{report}");
    assert_eq!(report.days.len(), 2, "{report}");
    // 30 first ballots and 3 changes of mind per poll.
    assert_eq!(report.days[0].ballots, 12 * 33, "{report}");
    assert_eq!((report.failovers, report.switches), (2, 4), "{report}");
    assert_eq!(report.questions, 24, "{report}");
    for day in &report.days {
        assert!(
            day.process.resident_bytes > 0 && day.process.tasks > 0,
            "{report}"
        );
    }
    assert!(report.growth().is_some(), "{report}");
    assert!(report.to_string().contains("after day 2"), "{report}");
}
