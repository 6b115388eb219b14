//! Any sequence of inputs: what the machine holds is the fold of the events it emitted, and no
//! rule moves a pinned source.

use proptest::prelude::*;

use super::*;

/// One input to the machine in a property test.
#[derive(Debug, Clone)]
enum Step {
    Wait(Millis),
    Heartbeat { poor: bool },
    Close,
    Reconnect,
    Switch(u8),
    Pin(bool),
    Start,
    End,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (1..3_000u64).prop_map(Step::Wait),
        6 => any::<bool>().prop_map(|poor| Step::Heartbeat { poor }),
        1 => Just(Step::Close),
        1 => Just(Step::Reconnect),
        1 => (0..4u8).prop_map(Step::Switch),
        1 => any::<bool>().prop_map(Step::Pin),
        1 => Just(Step::Start),
        1 => Just(Step::End),
    ]
}

proptest! {
    #[test]
    fn any_inputs_replay_to_the_same_status_and_pins_hold(steps in proptest::collection::vec(step(), 1..80), sticky in any::<bool>()) {
        let policy = FailoverPolicy { failback: if sticky { Failback::Sticky } else { Failback::ReturnWhenStable }, ..FailoverPolicy::default() };
        let ctx = Context { session_id: "s".into(), policy, speakers: vec![SPEAKER.into()], backups: vec!["b".into()], recordings: talk() };
        let mut machine = Machine::default();
        let mut events = Vec::new();
        let mut now: Millis = 1_700_000_000_000;
        let mut connection = 1;
        for step in steps {
            let decided = match step {
                Step::Wait(ms) => {
                    // Ticks at every deadline on the way, as the engine would.
                    let mut out = Vec::new();
                    let until = now + ms;
                    while let Some(d) = machine.next_deadline(&ctx).filter(|d| *d <= until) {
                        now = d.max(now);
                        out.extend(machine.tick(&ctx, now));
                        if machine.next_deadline(&ctx) == Some(d) { break; }
                    }
                    now = until;
                    out
                }
                Step::Heartbeat { poor } => {
                    let figures = if poor { Figures { round_trip_ms: 5_000, loss_percent: 40.0, upstream_kbps: 10 } } else { healthy(0) };
                    machine.heartbeat(&ctx, SPEAKER, connection, figures, now)
                }
                Step::Close => machine.closed(&ctx, SPEAKER, connection, now),
                Step::Reconnect => { connection += 1; machine.connected(SPEAKER, connection, now); Vec::new() }
                Step::Switch(k) => {
                    let target = match k { 0 => Target::Speaker(String::new()), 1 => Target::BackupSpeaker(String::new()), 2 => Target::Recording(String::new()), _ => Target::Slate };
                    machine.switch(&ctx, &target, now, "m").unwrap_or_default()
                }
                Step::Pin(p) => machine.pin(&ctx, p, now, "m"),
                Step::Start => machine.start(&ctx, now, "m").unwrap_or_default(),
                Step::End => machine.end(&ctx, now, "m").unwrap_or_default(),
            };
            events.extend(decided);
        }
        let mut replayed = SessionLive::default();
        for e in &events {
            if let StatusEvent::Switched { cause, .. } = e {
                prop_assert!(!replayed.pinned || *cause == Cause::Moderator, "a rule moved a pinned source: {:?}", e);
            }
            replayed.apply(e);
        }
        prop_assert_eq!(replayed, machine.live);
    }
}
