//! The fuzz targets as property tests, so that CI runs them on stable Rust: each target gets
//! arbitrary bytes and mutations of its seed inputs (bytes flipped, inserted, removed, cut).
//! A panic, a hang or an unclear refusal fails the test, as it crashes the fuzzer.
//!
//! `regressions` holds the inputs the fuzzer found that once failed.

mod regressions;

use podium_fuzz_harness::{TARGETS, seeds};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Edit {
    Flip { at: usize, bit: u8 },
    Insert { at: usize, byte: u8 },
    Remove { at: usize },
    Set { at: usize, byte: u8 },
    Cut { at: usize },
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        3 => (any::<usize>(), 0..8u8).prop_map(|(at, bit)| Edit::Flip { at, bit }),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Edit::Insert { at, byte }),
        2 => any::<usize>().prop_map(|at| Edit::Remove { at }),
        3 => (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Edit::Set { at, byte }),
        1 => any::<usize>().prop_map(|at| Edit::Cut { at }),
    ]
}

fn mutate(mut data: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for edit in edits {
        let len = data.len();
        match *edit {
            Edit::Flip { at, bit } if len > 0 => data[at % len] ^= 1 << bit,
            Edit::Insert { at, byte } => data.insert(at % (len + 1), byte),
            Edit::Remove { at } if len > 0 => {
                data.remove(at % len);
            }
            // Past the rpc and caller bytes, so that the request itself changes.
            Edit::Set { at, byte } if len > 2 => data[2 + at % (len - 2)] = byte,
            Edit::Cut { at } => data.truncate(at % (len + 1)),
            _ => {}
        }
    }
    data
}

/// Runs `target` on arbitrary bytes and on mutated seeds.
fn fuzz(target: &str, cases: u32) {
    let run = TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .map(|(_, run)| *run)
        .expect("a known target");
    let mine: Vec<Vec<u8>> = seeds()
        .into_iter()
        .filter(|(name, _)| *name == target)
        .map(|(_, data)| data)
        .collect();
    assert!(!mine.is_empty(), "{target} has seeds");
    // Every seed as it is, first: each must pass.
    for data in &mine {
        run(data);
    }
    let input = prop_oneof![
        1 => proptest::collection::vec(any::<u8>(), 0..256),
        4 => (0..mine.len(), proptest::collection::vec(edit(), 1..6))
            .prop_map(move |(i, edits)| mutate(mine[i].clone(), &edits)),
    ];
    let config = ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest::test_runner::TestRunner::new(config)
        .run(&input, |data| {
            run(&data);
            Ok(())
        })
        .unwrap();
}

#[test]
fn stored_events() {
    fuzz("stored_event", 2048);
}

#[test]
fn stored_chunks() {
    // The seeds decode, so that mutations of them reach the events' decoder and the models.
    for (_, data) in seeds().iter().filter(|(name, _)| *name == "stored_chunk") {
        let events = podium_eventlog::decode_chunk(0, &data[8..]).expect("a seed chunk decodes");
        assert!(!events.is_empty());
    }
    fuzz("stored_chunk", 512);
}

#[test]
fn access_requests() {
    fuzz("access", 384);
}

#[test]
fn agenda_requests() {
    fuzz("agenda", 384);
}

#[test]
fn stage_and_presence_requests() {
    fuzz("stage", 384);
}

#[test]
fn recordings_requests() {
    fuzz("recordings", 384);
}

#[test]
fn polls_requests() {
    fuzz("polls", 384);
}

#[test]
fn questions_requests() {
    fuzz("questions", 384);
}

#[test]
fn ratings_requests() {
    fuzz("ratings", 384);
}

#[test]
fn server_requests() {
    fuzz("server", 384);
}

#[test]
fn every_target_has_a_test() {
    let tested = [
        "stored_event",
        "stored_chunk",
        "access",
        "agenda",
        "stage",
        "recordings",
        "polls",
        "questions",
        "ratings",
        "server",
    ];
    let targets: Vec<&str> = TARGETS.iter().map(|(name, _)| *name).collect();
    assert_eq!(targets, tested);
}
