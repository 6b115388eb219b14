//! After a fallback: sticky stays, return_when_stable goes back once the link is stable, a
//! flapping link never returns early, and a pin blocks every automatic switch.

use super::*;

#[tokio::test(start_paused = true)]
async fn sticky_stays_on_the_recording_when_the_speaker_returns() {
    let mut sim = Sim::new(FailoverPolicy::default(), talk());
    sim.go_live();
    let agent = Agent {
        online: |t| !(5_000..8_000).contains(&t),
        figures: healthy,
    };
    sim.run(&agent, 60_000).await;
    assert_eq!(sim.switches().len(), 1);
    assert_eq!(
        sim.machine.live.source.as_ref().unwrap().kind,
        SourceKind::Recording
    );
    assert_eq!(
        sim.machine.live.link_state(SPEAKER),
        LinkState::Healthy,
        "the link is back, the source is not"
    );
}

#[tokio::test(start_paused = true)]
async fn return_when_stable_goes_back_after_clear_after_of_healthy_link() {
    let policy = FailoverPolicy {
        failback: Failback::ReturnWhenStable,
        ..FailoverPolicy::default()
    };
    let mut sim = Sim::new(policy, talk());
    sim.go_live();
    // Down from 5 s to 8 s; back from 8 000 ms, healthy ever since.
    let agent = Agent {
        online: |t| !(5_000..8_000).contains(&t),
        figures: healthy,
    };
    sim.run(&agent, 60_000).await;
    assert_eq!(
        sim.switches(),
        vec![
            (5_750, SourceKind::Recording, Cause::HeartbeatTimeout, 5_750),
            (18_000, SourceKind::Speaker, Cause::LinkStable, 0)
        ]
    );
    assert_eq!(sim.replayed(), sim.machine.live);
}

#[tokio::test(start_paused = true)]
async fn a_link_flapping_every_second_never_returns_sooner_than_clear_after() {
    let policy = FailoverPolicy {
        failback: Failback::ReturnWhenStable,
        failover_after_ms: 500,
        ..FailoverPolicy::default()
    };
    let mut sim = Sim::new(policy, talk());
    sim.go_live();
    // One second up, one second down, for a minute; then up for good.
    let agent = Agent {
        online: |t| t >= 60_000 || (t / 1_000) % 2 == 0,
        figures: healthy,
    };
    sim.run(&agent, 90_000).await;
    let switches = sim.switches();
    assert_eq!(switches[0].2, Cause::HeartbeatTimeout);
    let returns: Vec<_> = switches
        .iter()
        .filter(|s| s.2 == Cause::LinkStable)
        .collect();
    assert_eq!(returns.len(), 1, "{switches:?}");
    // The link is healthy for good from 60 000 ms: the return comes clear_after later.
    assert_eq!(returns[0].0, 70_000);
}

#[tokio::test(start_paused = true)]
async fn a_pin_blocks_every_automatic_switch() {
    let policy = FailoverPolicy {
        failback: Failback::ReturnWhenStable,
        ..FailoverPolicy::default()
    };
    let mut sim = Sim::new(policy, talk());
    sim.go_live();
    let now = sim.clock.now();
    let pinned = sim.machine.pin(&sim.ctx, true, now, "moderator");
    sim.record(pinned);
    fn lossy(t: Millis) -> Figures {
        if t >= 20_000 {
            Figures {
                round_trip_ms: 4_000,
                loss_percent: 50.0,
                upstream_kbps: 100,
            }
        } else {
            healthy(t)
        }
    }
    let agent = Agent {
        online: |t| !(10_000..15_000).contains(&t),
        figures: lossy,
    };
    sim.run(&agent, 60_000).await;
    assert!(sim.switches().is_empty(), "pinned: {:?}", sim.switches());
    assert_eq!(
        sim.machine.live.link_state(SPEAKER),
        LinkState::Poor,
        "links are still reported"
    );

    // Unpinned, the rules apply again: the link has been poor for long, so at once.
    let now = sim.clock.now();
    let unpinned = sim.machine.pin(&sim.ctx, false, now, "moderator");
    sim.record(unpinned);
    assert_eq!(
        sim.switches(),
        vec![(60_000, SourceKind::Recording, Cause::PoorLink, 60_000)]
    );
}
