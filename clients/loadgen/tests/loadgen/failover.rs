//! The failover scenario runs end to end against a podiumd it starts, in both drop modes, at a
//! venue of several rooms whose links drop together, and through a real OBS Studio.

use std::time::Duration;

use podium_loadgen::failover::{self, DropMode};

async fn three_drops(mode: DropMode, failover_after_ms: u64) {
    let podiumd = crate::local_podiumd().await;
    let config = failover::Config {
        drops: 3,
        failover_after: Duration::from_millis(failover_after_ms),
        mode,
        rooms: 1,
        together: false,
    };
    let mut heard = Vec::new();
    let report = failover::run(podiumd.podium(), &config, |drop, sample| {
        heard.push((drop, sample))
    })
    .await
    .unwrap();

    assert_eq!(report.latency.len(), 3);
    assert_eq!(heard.iter().map(|(d, _)| *d).collect::<Vec<_>>(), [1, 2, 3]);
    // Only a sanity bound: the recording cannot go on air well before failover_after.
    for sample in report.latency.samples() {
        assert!(*sample >= -250_000, "{sample} µs in {report}");
    }
    let cause = match mode {
        DropMode::Freeze => "CAUSE_HEARTBEAT_TIMEOUT",
        DropMode::Close => "CAUSE_STREAM_CLOSED",
    };
    assert_eq!(report.causes.get(cause), Some(&3), "{report}");
    assert!(report.to_string().contains("p99"), "{report}");
}

#[tokio::test]
async fn three_frozen_links_give_three_samples() {
    three_drops(DropMode::Freeze, 1_000).await;
}

/// `failover_after` at podiumd's default: with a shorter one, a loaded machine can delay the
/// close past it (a heartbeat time-out, not a closed stream) or stall the agent's heartbeats
/// (a fallback before the drop).
#[tokio::test]
async fn three_closed_links_give_three_samples() {
    three_drops(DropMode::Close, 1_000).await;
}

/// `--audience`: attendees watch another poll while ballots arrive, through the drops.
#[tokio::test]
async fn drops_beside_an_audience_report_what_the_audience_received() {
    let podiumd = crate::local_podiumd().await;
    let audience = failover::audience::Audience::start(podiumd.podium(), 150, |_| {})
        .await
        .unwrap();
    let config = failover::Config {
        drops: 2,
        failover_after: Duration::from_millis(1_000),
        mode: DropMode::Freeze,
        rooms: 1,
        together: false,
    };
    let report = failover::run(podiumd.podium(), &config, |_, _| {})
        .await
        .unwrap();
    let audience = audience.stop().await.unwrap();

    assert_eq!(report.latency.len(), 2, "{report}");
    assert_eq!(audience.watchers, 150);
    // Two drops take over two seconds: ballots came ten a second, and each watcher had its
    // first results and at least one update after a ballot.
    assert!(audience.ballots >= 10, "{audience}");
    assert!(audience.updates >= 2 * 150, "{audience}");
    assert!(audience.to_string().contains("150 watchers"), "{audience}");
}

#[tokio::test]
async fn a_venue_whose_links_drop_together_gives_a_sample_per_room_and_drop() {
    let podiumd = crate::local_podiumd().await;
    let config = failover::Config {
        drops: 2,
        // As above: five agents' heartbeats in this process must not stall past it.
        failover_after: Duration::from_millis(1_000),
        mode: DropMode::Freeze,
        rooms: 5,
        together: true,
    };
    let mut heard = Vec::new();
    let report = failover::together::run(podiumd.podium(), &config, |drop, _| heard.push(drop))
        .await
        .unwrap();

    assert_eq!(report.latency.len(), 10, "{report}");
    assert_eq!(report.slowest.len(), 2, "{report}");
    assert_eq!(heard, [1, 2]);
    for sample in report.latency.samples() {
        assert!(*sample >= -250_000, "{sample} µs in {report}");
    }
    assert!(report.to_string().contains("p99"), "{report}");
}

#[tokio::test]
async fn three_drops_reach_a_real_obs_through_the_bridge() {
    let podiumd = crate::local_podiumd().await;
    let obs = podium_e2e::obs::ObsStudio::start().await.unwrap();
    let target = failover::obs::ObsTarget {
        address: obs.address(),
        password: Some(podium_e2e::obs::PASSWORD.into()),
        media: podium_e2e::obs::talk_mp4().unwrap(),
        media_input: podium_e2e::obs::MEDIA_INPUT.into(),
        speaker_scene: "Speaker".into(),
        recording_scene: "Recording".into(),
        slate_scene: "Slate".into(),
    };
    let config = failover::Config {
        drops: 3,
        failover_after: Duration::from_millis(1_000),
        mode: DropMode::Freeze,
        rooms: 1,
        together: false,
    };
    let report = failover::obs::run(podiumd.podium(), &config, &target, |_, _| {})
        .await
        .unwrap();
    assert_eq!(report.confirmed.len(), 3, "{report}");
    // OBS confirms after the watcher sees the decision, never before.
    for (seen, confirmed) in report.seen.samples().iter().zip(report.confirmed.samples()) {
        assert!(confirmed >= seen, "{report}");
    }
    assert!(report.to_string().contains("OBS confirms it"), "{report}");
}

/// Needs `nats-server` 2.14 or later, as every cluster test does.
#[tokio::test]
async fn killing_the_engine_s_node_twice_gives_two_take_overs() {
    let binary = tokio::task::spawn_blocking(crate::podiumd)
        .await
        .unwrap()
        .unwrap();
    let config = failover::takeover::Config {
        drops: 2,
        // podiumd's defaults: a shorter lease can move on a loaded machine for the wrong reason
        // (the first write to a new replicated bucket may take longer than a second there),
        // and a shorter failover_after can fall back before the drop.
        failover_after: Duration::from_millis(1_000),
        lease: Duration::from_millis(3_000),
    };
    let mut heard = Vec::new();
    let report = failover::takeover::run(&binary, &config, |drop, _, _| heard.push(drop))
        .await
        .unwrap();

    assert_eq!(heard, [1, 2]);
    assert_eq!((report.fallback.len(), report.taken.len()), (2, 2));
    // Only a sanity bound: a silent speaker never falls back before failover_after.
    for sample in report.fallback.samples() {
        assert!(*sample >= 900_000, "{sample} µs in {report}");
    }
    assert!(report.to_string().contains("bound 4500 ms"), "{report}");
}
