use proptest::prelude::*;

use super::{super::keys::be_u64, *};

fn tree() -> sled::Tree {
    let db = sled::Config::new().temporary(true).open().unwrap();
    db.open_tree("events").unwrap()
}

fn add(tree: &sled::Tree, index: Index, entries: &BTreeMap<Vec<u8>, Vec<u8>>) {
    let mut batch = sled::Batch::default();
    merge(tree, index, entries.clone(), &mut batch).unwrap();
    tree.apply_batch(batch).unwrap();
}

/// Every run of `index`: the first keyed by the empty key, every other by its first entry,
/// within its size, after the one before.
fn runs(tree: &sled::Tree, index: Index) -> Vec<Vec<Entry>> {
    let (lo, hi) = index.bounds();
    let mut runs: Vec<Vec<Entry>> = Vec::new();
    for run in tree.range(lo..hi) {
        let (key, value) = run.unwrap();
        let entries = decode(index, &value).unwrap();
        let start = match runs.is_empty() {
            true => &[][..],
            false => &entries[0].0[..],
        };
        assert_eq!(key[1..], *start, "a run is keyed where it starts");
        assert!(
            key.len() + value.len() <= RUN_BYTES || entries.len() == 1,
            "a run of {} bytes",
            key.len() + value.len()
        );
        if let Some(before) = runs.last() {
            assert!(before[before.len() - 1].0 < entries[0].0, "runs overlap");
        }
        runs.push(entries);
    }
    runs
}

/// Keys of a stream index: a few streams (one sorting before the others), many versions.
fn stream_keys() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(vec!["a", "conference/c/poll/p/ballots/v", "b", "0"]),
        0u64..400,
    )
        .prop_map(|(stream, version)| keys::stream_entry(stream, version))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Groups of entries merged one after another read back as one sorted map would hold them,
    /// however they fall among the runs already there.
    #[test]
    fn runs_read_back_as_a_sorted_map(
        groups in prop::collection::vec(
            prop::collection::btree_map(stream_keys(), prop::collection::vec(any::<u8>(), 8), 1..120),
            1..8,
        ),
        probes in prop::collection::vec((stream_keys(), stream_keys()), 12),
    ) {
        let tree = tree();
        let mut model = BTreeMap::new();
        for group in &groups {
            add(&tree, Index::Streams, group);
            model.extend(group.clone());
        }
        let stored: Vec<Entry> = runs(&tree, Index::Streams).into_iter().flatten().collect();
        let expected: Vec<Entry> = model.clone().into_iter().collect();
        prop_assert_eq!(stored, expected);
        for (a, b) in probes {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            prop_assert_eq!(get(&tree, Index::Streams, &lo).unwrap(), model.get(&lo).cloned());
            let last = model.range(lo.clone()..=hi.clone()).next_back().map(|(k, v)| (k.clone(), v.clone()));
            prop_assert_eq!(last_in(&tree, Index::Streams, &lo, &hi).unwrap(), last);
            let mut seen = Vec::new();
            scan(&tree, Index::Streams, &lo, &hi, |k, v| {
                seen.push((k.to_vec(), v.to_vec()));
                Ok(match seen.len() < 50 { true => ControlFlow::Continue(()), false => ControlFlow::Break(()) })
            }).unwrap();
            let within: Vec<Entry> = model.range(lo..=hi).take(50).map(|(k, v)| (k.clone(), v.clone())).collect();
            prop_assert_eq!(seen, within);
        }
    }
}

#[test]
fn a_reader_meeting_a_run_split_under_it_skips_what_it_has_seen() {
    // What a reader of stream `s` meets when a group splits the run it has just read: the run
    // as it was, then the run split off it, under a key after it.
    let tree = tree();
    let entry = |stream: &str, version: u64| {
        (
            keys::stream_entry(stream, version),
            version.to_be_bytes().to_vec(),
        )
    };
    let read: Vec<Entry> = [entry("r", 8), entry("r", 9)]
        .into_iter()
        .chain((0..10).map(|v| entry("s", v)))
        .collect();
    let split_off: Vec<Entry> = (4..10).map(|v| entry("s", v)).collect();
    let rest: Vec<Entry> = (10..12).map(|v| entry("s", v)).collect();
    for run in [&read, &split_off, &rest] {
        let key = match run == &read {
            true => Index::Streams.run_key(&[]),
            false => Index::Streams.run_key(&run[0].0),
        };
        tree.insert(key, encode(run)).unwrap();
    }
    let (lo, hi) = (
        keys::stream_entry("s", 0),
        keys::stream_entry("s", u64::MAX),
    );
    let mut seen = Vec::new();
    scan(&tree, Index::Streams, &lo, &hi, |key, _| {
        seen.push(be_u64(&key[key.len() - 8..]).unwrap());
        Ok(ControlFlow::Continue(()))
    })
    .unwrap();
    assert_eq!(seen, (0..12).collect::<Vec<_>>());
}

#[test]
fn an_index_appended_to_fills_its_runs() {
    let tree = tree();
    let mut additions = Additions::default();
    for n in 0..2_000u64 {
        additions.id(Uuid::from_u64_pair(1, n), n, 0);
        if n % 64 == 63 {
            let mut batch = sled::Batch::default();
            std::mem::take(&mut additions)
                .write(&tree, &mut batch)
                .unwrap();
            tree.apply_batch(batch).unwrap();
        }
    }
    let runs = runs(&tree, Index::Ids);
    assert_eq!(runs.iter().map(Vec::len).sum::<usize>(), 1_984);
    // Every run but the last is full: an entry is 16 bytes of id at most, 16 of value, 3 of
    // lengths, and the run's key repeats its first id.
    for run in &runs[..runs.len() - 1] {
        let size = 16 + encoded_len(run);
        assert!(size > RUN_BYTES - 35, "{size} bytes");
    }
    assert_eq!(
        get(&tree, Index::Ids, Uuid::from_u64_pair(1, 700).as_bytes()).unwrap(),
        Some(ids::entry(700, 0))
    );
    assert_eq!(
        get(&tree, Index::Ids, Uuid::from_u64_pair(1, 1_990).as_bytes()).unwrap(),
        None
    );
    assert_eq!(
        get(&tree, Index::Ids, Uuid::from_u64_pair(0, 9).as_bytes()).unwrap(),
        None
    );
}

#[test]
fn an_older_layout_moves_into_runs_even_if_a_move_was_cut_short() {
    let tree = tree();
    let single = |index: Index, entry: &[u8], value: &[u8]| {
        let mut key = vec![index.singles()];
        key.extend_from_slice(entry);
        tree.insert(key, value).unwrap();
    };
    let mut model = BTreeMap::new();
    for (version, stream) in ["s", "t", "s", "u"].iter().enumerate() {
        let entry = keys::stream_entry(stream, version as u64);
        single(Index::Streams, &entry, &(version as u64).to_be_bytes());
        model.insert(entry, (version as u64).to_be_bytes().to_vec());
    }
    let id = Uuid::now_v7();
    single(Index::Ids, id.as_bytes(), &ids::entry(3, 1));
    let mut synced = 0;
    let moved = migrate(&tree, || {
        synced += 1;
        Ok(())
    });
    assert_eq!(moved.unwrap(), 5);
    // Once a step's runs are written (before its old keys go), once at the end.
    assert_eq!(synced, 3);
    // As if an earlier opening had been cut short: entries left behind among the runs.
    let late = keys::stream_entry("t", 9);
    single(Index::Streams, &late, &9u64.to_be_bytes());
    model.insert(late, 9u64.to_be_bytes().to_vec());
    assert_eq!(migrate(&tree, || Ok(())).unwrap(), 1);
    let stored: Vec<Entry> = runs(&tree, Index::Streams).into_iter().flatten().collect();
    assert_eq!(stored, model.into_iter().collect::<Vec<_>>());
    assert_eq!(
        get(&tree, Index::Ids, id.as_bytes()).unwrap(),
        Some(ids::entry(3, 1))
    );
    assert!(tree.scan_prefix([keys::STREAM]).next().is_none());
    assert!(tree.scan_prefix([keys::ID]).next().is_none());
    // Nothing is left to move: another opening writes nothing.
    let checksum = tree.checksum().unwrap();
    assert_eq!(migrate(&tree, || Ok(())).unwrap(), 0);
    assert_eq!(tree.checksum().unwrap(), checksum);
}

#[test]
fn a_run_that_does_not_parse_is_named_not_read_as_empty() {
    let tree = tree();
    let entry = keys::stream_entry("s", 0);
    // A length running past the run's end.
    tree.insert(Index::Streams.run_key(&entry), &[0, 40, b's'][..])
        .unwrap();
    let error = get(&tree, Index::Streams, &entry).unwrap_err().to_string();
    assert!(
        error.contains("stream index") && error.contains("damaged"),
        "{error}"
    );
    let mut batch = sled::Batch::default();
    let mut additions = Additions::default();
    additions.stream("s", 1, 1);
    assert!(additions.write(&tree, &mut batch).is_err());
}

#[test]
fn varints_round_trip_and_refuse_overlong_input() {
    for n in [0, 1, 127, 128, 300, 16_383, 16_384, usize::MAX] {
        let mut out = Vec::new();
        put_varint(&mut out, n);
        assert_eq!(out.len(), varint_len(n), "{n}");
        let mut at = 0;
        assert_eq!(varint(&out, &mut at), Some(n));
        assert_eq!(at, out.len());
    }
    assert_eq!(varint(&[0x80; 11], &mut 0), None);
    // A tenth byte with more than the one bit a 64-bit number has left.
    let mut overlong = vec![0xff; 9];
    overlong.push(0x02);
    assert_eq!(varint(&overlong, &mut 0), None);
    assert_eq!(varint(&[0x80], &mut 0), None);
}
