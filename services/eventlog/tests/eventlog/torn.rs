//! Torn writes, without LazyFS (the power-loss test in `powerloss/` runs LazyFS's own torn-op
//! and torn-seq faults against a real podiumd): a log is written and closed (everything in it
//! acknowledged and synced), then written again; the files the second run changed are then
//! put back together from the two, 4 KiB block by block at random, with one block torn inside
//! and the file's length from either, as a power cut in the middle of the second run could
//! leave them. Opening such a log must either give a consistent prefix (positions dense, every
//! event decodable and the one written there, every event of the first run present) or fail
//! with an error that names the database file, and the stream and id indexes of what it gives
//! must agree with it. Never a panic, never a corrupted event.

use std::{
    collections::BTreeMap,
    fs,
    panic::AssertUnwindSafe,
    path::{Path, PathBuf},
    sync::Arc,
};

use podium_eventlog::{EventLog, ExpectedVersion, SledEventLog, SledOptions};
use proptest::{
    prelude::RngExt,
    test_runner::{RngAlgorithm, TestRng},
};
use tempfile::TempDir;
use uuid::Uuid;

use crate::helpers::{ballot, check_ballot, read_everything, runtime};

const BLOCK: usize = 4096;
const TORN_CASES: usize = 60;
/// sled's segment: its log is written a segment at a time (`sled::Config::segment_size`'s
/// default, which the log keeps).
const SEGMENT: usize = 512 * 1024;

/// Appends `groups` single-event ballots from each of 8 concurrent appenders, so that the
/// writer commits them in groups, and closes the log. Returns the ids in position order.
async fn write_run(dir: &Path, groups: usize) -> Vec<Uuid> {
    let log = Arc::new(SledEventLog::open(dir, SledOptions::default()).expect("open"));
    let start = log.head();
    let tasks: Vec<_> = (0..8)
        .map(|appender| {
            let log = log.clone();
            tokio::spawn(async move {
                let mut placed = Vec::new();
                for _ in 0..groups {
                    let id = Uuid::new_v4();
                    let stream = format!("torn/appender-{appender}");
                    let outcome = log
                        .append(&stream, ExpectedVersion::Any, vec![ballot(id)])
                        .await
                        .expect("append");
                    placed.push((outcome.first_position, id));
                }
                placed
            })
        })
        .collect();
    let mut placed = Vec::new();
    for task in tasks {
        placed.extend(task.await.expect("appender"));
    }
    placed.sort_unstable();
    log.close().expect("close");
    let positions: Vec<u64> = placed.iter().map(|(p, _)| *p).collect();
    assert_eq!(positions, (start..log.head()).collect::<Vec<_>>());
    placed.into_iter().map(|(_, id)| id).collect()
}

/// Every file under `dir`, by relative path.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut found = BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in fs::read_dir(&next).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let relative = path.strip_prefix(dir).expect("under dir").to_path_buf();
                found.insert(relative, fs::read(&path).expect("read file"));
            }
        }
    }
    found
}

/// `before` with some of the blocks in which `after` differs from it, one of them torn, and
/// the length of either.
///
/// Half the time the blocks reach the disk in the order sled wrote them, up to a torn one:
/// segment by segment, in the order of the log sequence numbers in their headers, each from its
/// start. That is not the file's order once sled reuses a segment whose pages it has moved (it
/// does so only after the move is durable), so a prefix in the file's order could hold the
/// reused segment without the move, a state no disk that honours fsync can be left in. Else
/// any of the blocks do, one torn among them, as a disk that ignores the syncs could leave
/// them.
fn tear(before: &[u8], after: &[u8], rng: &mut TestRng) -> Vec<u8> {
    let blocks = before.len().max(after.len()).div_ceil(BLOCK);
    let mut changed: Vec<usize> = (0..blocks)
        .filter(|i| {
            let range = |bytes: &[u8]| {
                bytes
                    .get(i * BLOCK..((i + 1) * BLOCK).min(bytes.len()))
                    .map(<[u8]>::to_vec)
            };
            range(before) != range(after)
        })
        .collect();
    changed.sort_by_key(|&i| (segment_lsn(after, i * BLOCK / SEGMENT), i));
    let in_order = rng.random_bool(0.5);
    let reached = rng.random_range(0..=changed.len());
    // In order, the file has its new length once a block past the old end was written.
    let grown = in_order
        && changed[..reached]
            .iter()
            .any(|&i| i * BLOCK >= before.len());
    let len = if grown || rng.random_bool(0.5) {
        after.len()
    } else {
        before.len()
    };
    let mut torn = before.to_vec();
    torn.resize(len, 0);
    let torn_block = match in_order {
        true => changed.get(reached).copied(),
        false => changed
            .get(rng.random_range(0..changed.len().max(1)))
            .copied(),
    };
    for (n, &i) in changed.iter().enumerate() {
        let end = ((i + 1) * BLOCK).min(len).min(after.len());
        let start = i * BLOCK;
        if start >= end {
            continue;
        }
        let lands = match in_order {
            true => n < reached,
            false => rng.random_bool(0.5),
        };
        if Some(i) == torn_block {
            let cut = rng.random_range(start..end);
            torn[start..cut].copy_from_slice(&after[start..cut]);
        } else if lands {
            torn[start..end].copy_from_slice(&after[start..end]);
        }
    }
    torn
}

/// The log sequence number in the header of sled's segment `segment` of `file` (its first 20
/// bytes: a CRC, then the number and the highest stable one, each 8 bytes little-endian and
/// xored with `0x7fff_ffff_ffff_ffff`); a segment past the file's end sorts last.
fn segment_lsn(file: &[u8], segment: usize) -> i64 {
    let at = segment * SEGMENT + 4;
    match file.get(at..at + 8) {
        Some(bytes) => {
            i64::from_le_bytes(bytes.try_into().expect("8 bytes")) ^ 0x7fff_ffff_ffff_ffff
        }
        None => i64::MAX,
    }
}

#[test]
fn a_log_torn_after_its_last_sync_opens_to_a_consistent_prefix_or_not_at_all() {
    let runtime = runtime();
    let base = TempDir::new().expect("temporary directory");
    let live = base.path().join("live");
    // The files are copied once sled has let go of them: its flusher thread can still write
    // for a moment after the log has closed, and a copy taken meanwhile mixes files from
    // before and after that write, a state no disk ever held. Taking the lock opens sled,
    // which recovers and writes its snapshot: the copy is the state a restart leaves.
    let first = runtime.block_on(write_run(&live, 40));
    drop(open_when_released(&live));
    let synced = files(&live);
    let second = runtime.block_on(write_run(&live, 40));
    drop(open_when_released(&live));
    let later = files(&live);
    let mut rng = TestRng::deterministic_rng(RngAlgorithm::ChaCha);
    let mut opened = 0;
    for case in 0..TORN_CASES {
        let dir = base.path().join(format!("torn-{case}"));
        for (relative, bytes) in &synced {
            let path = dir.join(relative);
            fs::create_dir_all(path.parent().expect("parent")).expect("create dir");
            let bytes = match later.get(relative) {
                Some(after) if relative == Path::new("db") => tear(bytes, after, &mut rng),
                _ => bytes.clone(),
            };
            fs::write(&path, bytes).expect("write file");
        }
        let open = std::panic::catch_unwind(AssertUnwindSafe(|| {
            SledEventLog::open(&dir, SledOptions::default())
        }));
        let log = match open {
            Err(_) => panic!("case {case}: opening a torn log panicked"),
            Ok(Err(error)) => {
                let file = dir.join("db").display().to_string();
                assert!(
                    error.to_string().contains(&file),
                    "case {case}: the error does not name {file}: {error}"
                );
                continue;
            }
            Ok(Ok(log)) => log,
        };
        opened += 1;
        let all = runtime.block_on(read_everything(&log));
        assert!(
            all.len() >= first.len() && all.len() <= first.len() + second.len(),
            "case {case}: {} events, {} were synced and {} more written",
            all.len(),
            first.len(),
            second.len()
        );
        for (event, id) in all.iter().zip(first.iter().chain(&second)) {
            assert_eq!(
                event.id, *id,
                "case {case}: position {} holds another event",
                event.position
            );
            check_ballot(event);
        }
        // The indexes agree with the log: each stream reads back as its events, in order, and
        // every event is found by its id.
        let mut streams: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
        for event in &all {
            streams
                .entry(&event.stream)
                .or_default()
                .push(event.position);
        }
        for (stream, positions) in streams {
            let read = runtime
                .block_on(log.read_stream(stream, 0, 10_000))
                .expect("read a stream");
            let read: Vec<u64> = read.iter().map(|e| e.position).collect();
            assert_eq!(read, positions, "case {case}: stream {stream}");
        }
        for event in &all {
            let found = runtime
                .block_on(log.find(&event.stream, event.id))
                .expect("find an id");
            assert_eq!(
                found,
                Some((event.position, event.stream_version)),
                "case {case}: event {}",
                event.id
            );
        }
        log.close().expect("close");
    }
    assert!(opened > 0, "no torn log opened at all");
}

/// Opens the closed log's sled database behind its back. sled's flusher thread can hold the
/// file lock for a moment after the log has closed, so a lock refusal is tried again for up to
/// ten seconds (seen in CI: "could not acquire lock").
fn open_when_released(path: &std::path::Path) -> sled::Db {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match sled::open(path) {
            Ok(db) => return db,
            Err(error)
                if error.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            Err(error) => panic!("open sled: {error}"),
        }
    }
}

#[test]
fn an_event_that_does_not_decode_is_never_served_and_its_error_names_the_file() {
    let runtime = runtime();
    let dir = TempDir::new().expect("temporary directory");
    runtime.block_on(write_run(dir.path(), 2));
    // Damage the last event behind the log's back, as a bad sector would: the last entry of
    // the last chunk (`C` and its first position; each entry its length, then the event) keeps
    // its length and loses its bytes.
    {
        let db = open_when_released(dir.path());
        let tree = db.open_tree("events").expect("tree");
        let (key, value) = tree
            .scan_prefix([b'C'])
            .next_back()
            .expect("an event")
            .expect("read");
        let mut rest: &[u8] = &value;
        let mut last_entry = 0..0;
        while !rest.is_empty() {
            let len =
                prost::encoding::decode_varint(&mut rest).expect("an entry's length") as usize;
            let start = value.len() - rest.len();
            last_entry = start..start + len;
            rest = &rest[len..];
        }
        let mut damaged = value.to_vec();
        damaged[last_entry].fill(0xff);
        tree.insert(key, damaged).expect("insert");
        db.flush().expect("flush");
    }
    let log = SledEventLog::open(dir.path(), SledOptions::default()).expect("open");
    let last = log.head() - 1;
    let read = runtime.block_on(log.read_all(0, 100));
    let error = read.expect_err("a corrupt event was served").to_string();
    let file = dir.path().join("db").display().to_string();
    assert!(
        error.contains(&format!("position {last}")) && error.contains(&file),
        "{error}"
    );
    log.close().expect("close");
}
