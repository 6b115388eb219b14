//! The failover rules under paused tokio time: a small driver does what the engine does (sleep
//! until the machine's next deadline or the agent's next heartbeat, then feed it), so each test
//! states a scenario and checks when, exactly, the source changed.

use podium_core::{Failback, FailoverPolicy};

use super::*;
use crate::engine::Clock;

/// The agent's behaviour over time.
#[derive(Clone)]
struct Agent {
    /// Heartbeats are sent while this returns true for the time since the test started.
    online: fn(Millis) -> bool,
    /// Figures sent at a time since the start.
    figures: fn(Millis) -> Figures,
}

fn healthy(_: Millis) -> Figures {
    Figures {
        round_trip_ms: 80,
        loss_percent: 0.5,
        upstream_kbps: 2500,
    }
}

struct Sim {
    machine: Machine,
    ctx: Context,
    clock: Clock,
    start: Millis,
    events: Vec<StatusEvent>,
    connection: u64,
    connected: bool,
    /// Milliseconds between heartbeats.
    interval: Millis,
}

const SPEAKER: &str = "spk-mei";

impl Sim {
    fn new(policy: FailoverPolicy, recordings: Vec<RecordingRef>) -> Self {
        let clock = Clock::new();
        let start = clock.now();
        let ctx = Context {
            session_id: "ses-keynote".into(),
            policy,
            speakers: vec![SPEAKER.into()],
            backups: vec!["spk-sarah".into()],
            recordings,
        };
        Self {
            machine: Machine::default(),
            ctx,
            clock,
            start,
            events: Vec::new(),
            connection: 1,
            connected: false,
            interval: 250,
        }
    }

    fn elapsed(&self) -> Millis {
        self.clock.now() - self.start
    }

    fn record(&mut self, events: Vec<StatusEvent>) {
        self.events.extend(events);
    }

    fn go_live(&mut self) {
        let now = self.clock.now();
        let events = self
            .machine
            .start(&self.ctx, now, "moderator")
            .expect("starts");
        self.record(events);
    }

    /// Runs the scenario until `until` ms after the start.
    async fn run(&mut self, agent: &Agent, until: Millis) {
        let mut next_beat = self.start + self.elapsed().div_ceil(self.interval) * self.interval;
        loop {
            let deadline = self.machine.next_deadline(&self.ctx);
            let at = deadline.map_or(next_beat, |d| d.min(next_beat));
            if at > self.start + until {
                tokio::time::sleep_until(self.clock.instant(self.start + until)).await;
                return;
            }
            tokio::time::sleep_until(self.clock.instant(at)).await;
            let now = self.clock.now();
            if now >= next_beat {
                next_beat += self.interval;
                let t = now - self.start;
                if (agent.online)(t) {
                    if !self.connected {
                        self.connection += 1;
                        self.machine.connected(SPEAKER, self.connection, now);
                        self.connected = true;
                    }
                    let events = self.machine.heartbeat(
                        &self.ctx,
                        SPEAKER,
                        self.connection,
                        (agent.figures)(t),
                        now,
                    );
                    self.record(events);
                    continue;
                }
            }
            let events = self.machine.tick(&self.ctx, now);
            self.record(events);
        }
    }

    fn close(&mut self) {
        let now = self.clock.now();
        let events = self
            .machine
            .closed(&self.ctx, SPEAKER, self.connection, now);
        self.connected = false;
        self.record(events);
    }

    fn switches(&self) -> Vec<(Millis, SourceKind, Cause, Millis)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                StatusEvent::Switched { to, cause, at, .. } => {
                    Some((at - self.start, to.kind, *cause, to.offset_ms))
                }
                _ => None,
            })
            .collect()
    }

    /// The persistent state rebuilt from the events alone.
    fn replayed(&self) -> SessionLive {
        let mut live = SessionLive::default();
        for event in &self.events {
            live.apply(event);
        }
        live
    }
}

fn talk() -> Vec<RecordingRef> {
    vec![RecordingRef {
        id: "rec-talk".into(),
        sha256: "ab".repeat(32),
        duration_ms: 45 * 60 * 1000,
    }]
}

#[tokio::test(start_paused = true)]
async fn heartbeats_stop_at_t_and_the_recording_is_on_air_at_exactly_t_plus_failover_after() {
    let mut sim = Sim::new(FailoverPolicy::default(), talk());
    sim.go_live();
    // Heartbeats every 250 ms until 10 s; the last one at 9 750 ms.
    let agent = Agent {
        online: |t| t < 10_000,
        figures: healthy,
    };
    sim.run(&agent, 20_000).await;
    assert_eq!(
        sim.switches(),
        vec![(
            10_750,
            SourceKind::Recording,
            Cause::HeartbeatTimeout,
            10_750
        )]
    );
    assert_eq!(
        sim.machine.live.source.as_ref().unwrap().recording_id,
        "rec-talk"
    );
    assert_eq!(sim.machine.live.link_state(SPEAKER), LinkState::Lost);
    assert!(
        sim.machine
            .live
            .alerts
            .iter()
            .any(|a| a.kind == AlertKind::Failover)
    );
    assert_eq!(sim.replayed(), sim.machine.live);
}

#[tokio::test(start_paused = true)]
async fn the_minimum_failover_after_is_honoured_too() {
    let policy = FailoverPolicy {
        failover_after_ms: 100,
        ..FailoverPolicy::default()
    };
    let mut sim = Sim::new(policy, talk());
    // With failover_after below the usual interval, agents are told to beat faster.
    sim.interval = 25;
    sim.go_live();
    let agent = Agent {
        online: |t| t < 3_000,
        figures: healthy,
    };
    sim.run(&agent, 5_000).await;
    // Last heartbeat at 2 975 ms.
    assert_eq!(
        sim.switches(),
        vec![(3_075, SourceKind::Recording, Cause::HeartbeatTimeout, 3_075)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_closed_stream_falls_back_when_the_speaker_does_not_return() {
    let mut sim = Sim::new(FailoverPolicy::default(), talk());
    sim.go_live();
    let agent = Agent {
        online: |t| t < 4_000,
        figures: healthy,
    };
    sim.run(&agent, 3_900).await;
    sim.close();
    sim.run(&agent, 10_000).await;
    let switches = sim.switches();
    assert_eq!(switches.len(), 1);
    assert_eq!((switches[0].0, switches[0].2), (4_750, Cause::StreamClosed));
}

#[tokio::test(start_paused = true)]
async fn a_speaker_back_within_failover_after_stays_on_air() {
    let mut sim = Sim::new(FailoverPolicy::default(), talk());
    sim.go_live();
    // Two missed heartbeats (a 750 ms gap, 4 750 to 5 500) are shorter than failover_after.
    let agent = Agent {
        online: |t| !(5_000..5_500).contains(&t),
        figures: healthy,
    };
    sim.run(&agent, 20_000).await;
    assert!(sim.switches().is_empty(), "{:?}", sim.switches());
}

#[tokio::test(start_paused = true)]
async fn a_sustained_poor_link_falls_back_after_poor_for() {
    let mut sim = Sim::new(FailoverPolicy::default(), talk());
    sim.go_live();
    fn lossy(t: Millis) -> Figures {
        if t >= 2_000 {
            Figures {
                round_trip_ms: 90,
                loss_percent: 25.0,
                upstream_kbps: 300,
            }
        } else {
            healthy(t)
        }
    }
    let agent = Agent {
        online: |_| true,
        figures: lossy,
    };
    sim.run(&agent, 10_000).await;
    // First poor heartbeat at 2 000 ms, poor_for 5 s.
    assert_eq!(
        sim.switches(),
        vec![(7_000, SourceKind::Recording, Cause::PoorLink, 7_000)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_short_burst_of_loss_does_not_fall_back() {
    let mut sim = Sim::new(FailoverPolicy::default(), talk());
    sim.go_live();
    fn burst(t: Millis) -> Figures {
        if (2_000..6_000).contains(&t) {
            Figures {
                round_trip_ms: 3_000,
                loss_percent: 0.0,
                upstream_kbps: 2500,
            }
        } else {
            healthy(t)
        }
    }
    let agent = Agent {
        online: |_| true,
        figures: burst,
    };
    sim.run(&agent, 20_000).await;
    assert!(sim.switches().is_empty());
    assert_eq!(sim.machine.live.link_state(SPEAKER), LinkState::Healthy);
}

#[tokio::test(start_paused = true)]
async fn a_link_whose_state_holds_has_its_latest_figures_sampled_every_five_seconds() {
    let mut sim = Sim::new(FailoverPolicy::default(), talk());
    sim.go_live();
    // A healthy link whose round trip creeps up by a millisecond every 250 ms heartbeat.
    fn creeping(t: Millis) -> Figures {
        Figures {
            round_trip_ms: 80 + u32::try_from(t / 250).unwrap_or(u32::MAX),
            ..healthy(t)
        }
    }
    let agent = Agent {
        online: |_| true,
        figures: creeping,
    };
    sim.run(&agent, 21_000).await;
    let samples: Vec<(LinkState, u32, Millis)> = sim
        .events
        .iter()
        .filter_map(|e| match e {
            StatusEvent::Link {
                state, figures, at, ..
            } => Some((*state, figures.round_trip_ms, at - sim.start)),
            _ => None,
        })
        .collect();
    // The first heartbeat (at 0) makes the link healthy; then one sample each 5 s, no more.
    assert_eq!(
        samples,
        vec![
            (LinkState::Healthy, 80, 0),
            (LinkState::Healthy, 100, 5_000),
            (LinkState::Healthy, 120, 10_000),
            (LinkState::Healthy, 140, 15_000),
            (LinkState::Healthy, 160, 20_000),
        ]
    );
    let view = &sim.machine.live.links[SPEAKER];
    assert_eq!(view.figures.round_trip_ms, 160);
    assert_eq!(view.figures_at - sim.start, 20_000);
    // The state changed once, at the first heartbeat: samples keep that time.
    assert_eq!(view.changed_at - sim.start, 0);

    // Figures that do not move, or only jitter, are not logged again.
    let mut steady = Sim::new(FailoverPolicy::default(), talk());
    steady.go_live();
    fn jitter(t: Millis) -> Figures {
        Figures {
            round_trip_ms: 80 + u32::from(t.is_multiple_of(1_000)) * 3,
            loss_percent: 0.5 + if t.is_multiple_of(500) { 0.1 } else { 0.0 },
            upstream_kbps: 2_500 + u32::from(t.is_multiple_of(750)) * 40,
        }
    }
    let agent = Agent {
        online: |_| true,
        figures: jitter,
    };
    steady.run(&agent, 21_000).await;
    let links = steady
        .events
        .iter()
        .filter(|e| matches!(e, StatusEvent::Link { .. }))
        .count();
    assert_eq!(links, 1);
}

#[tokio::test(start_paused = true)]
async fn the_offset_is_the_live_time_clamped_to_the_recording() {
    let short = vec![RecordingRef {
        id: "rec-short".into(),
        sha256: "cd".repeat(32),
        duration_ms: 60_000,
    }];
    let mut sim = Sim::new(FailoverPolicy::default(), short);
    sim.go_live();
    let agent = Agent {
        online: |t| t < 30_000,
        figures: healthy,
    };
    sim.run(&agent, 40_000).await;
    assert_eq!(
        sim.switches()[0].3,
        30_750,
        "offset = time since the talk went live"
    );

    let mut late = Sim::new(
        FailoverPolicy::default(),
        vec![RecordingRef {
            id: "rec-short".into(),
            sha256: "cd".repeat(32),
            duration_ms: 60_000,
        }],
    );
    late.go_live();
    let agent = Agent {
        online: |t| t < 90_000,
        figures: healthy,
    };
    late.run(&agent, 100_000).await;
    assert_eq!(
        late.switches()[0].3,
        60_000,
        "clamped to the recording's length"
    );
}

#[tokio::test(start_paused = true)]
async fn without_a_recording_the_slate_goes_on_air_and_moderators_are_alerted() {
    let mut sim = Sim::new(FailoverPolicy::default(), vec![]);
    sim.go_live();
    let agent = Agent {
        online: |t| t < 1_000,
        figures: healthy,
    };
    sim.run(&agent, 5_000).await;
    assert_eq!(
        sim.switches(),
        vec![(1_750, SourceKind::Slate, Cause::HeartbeatTimeout, 0)]
    );
    assert!(
        sim.machine
            .live
            .alerts
            .iter()
            .any(|a| a.kind == AlertKind::NoRecording
                && a.message.contains("slate")
                && a.speaker_id == SPEAKER)
    );
}

#[tokio::test(start_paused = true)]
async fn after_a_restart_no_failover_fires_inside_the_grace() {
    let mut sim = Sim::new(FailoverPolicy::default(), talk());
    sim.go_live();
    let agent = Agent {
        online: |t| t < 2_000,
        figures: healthy,
    };
    sim.run(&agent, 1_900).await;
    // podiumd restarts: the persistent status comes back from the events, the monitor is new.
    let mut restored = Machine {
        live: sim.replayed(),
        monitor: Monitor::default(),
    };
    restored.restarted(sim.clock.now(), DEFAULT_RECONNECT_GRACE_MS);
    sim.machine = restored;
    sim.connected = false;
    // The speaker is back 3 s later, inside the 5 s grace.
    let agent = Agent {
        online: |t| t >= 4_900,
        figures: healthy,
    };
    sim.run(&agent, 30_000).await;
    assert!(sim.switches().is_empty(), "{:?}", sim.switches());

    // Without a returning speaker the rule fires when the grace ends.
    let mut sim = Sim::new(FailoverPolicy::default(), talk());
    sim.go_live();
    let mut restored = Machine {
        live: sim.replayed(),
        monitor: Monitor::default(),
    };
    restored.restarted(sim.clock.now(), DEFAULT_RECONNECT_GRACE_MS);
    sim.machine = restored;
    let agent = Agent {
        online: |_| false,
        figures: healthy,
    };
    sim.run(&agent, 30_000).await;
    assert_eq!(
        sim.switches(),
        vec![(5_000, SourceKind::Recording, Cause::HeartbeatTimeout, 5_000)]
    );
}

#[tokio::test(start_paused = true)]
async fn moderator_switches_are_checked_and_recorded() {
    let mut sim = Sim::new(FailoverPolicy::default(), talk());
    let now = sim.clock.now();
    assert!(matches!(
        sim.machine.switch(&sim.ctx, &Target::Slate, now, "m"),
        Err(Refusal::NotLive(_))
    ));
    sim.go_live();
    let now = sim.clock.now();
    assert!(matches!(
        sim.machine
            .switch(&sim.ctx, &Target::Recording("rec-nope".into()), now, "m"),
        Err(Refusal::UnknownRecording(_))
    ));
    assert!(matches!(
        sim.machine
            .switch(&sim.ctx, &Target::BackupSpeaker("spk-mei".into()), now, "m"),
        Err(Refusal::UnknownSpeaker(_))
    ));
    let events = sim
        .machine
        .switch(&sim.ctx, &Target::BackupSpeaker(String::new()), now, "m")
        .unwrap();
    sim.record(events);
    assert_eq!(
        sim.machine.live.source.as_ref().unwrap().speaker_id,
        "spk-sarah"
    );
    assert_eq!(sim.machine.live.cause, Some(Cause::Moderator));
    assert!(matches!(
        sim.machine.start(&sim.ctx, now, "m"),
        Err(Refusal::AlreadyLive(_))
    ));
    let ended = sim.machine.end(&sim.ctx, now, "m").unwrap();
    sim.record(ended);
    assert!(matches!(
        sim.machine.switch(&sim.ctx, &Target::Slate, now, "m"),
        Err(Refusal::Ended(_))
    ));
    assert_eq!(sim.replayed(), sim.machine.live);
}

mod failback;
mod properties;
