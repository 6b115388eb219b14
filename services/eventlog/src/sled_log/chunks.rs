//! The log's events, packed several to a sled key.
//!
//! sled 0.34 keeps memory for every leaf of its tree whatever its cache size (a leaf holds at
//! most 16 keys; see docs/performance.md, "The event log's memory"), so a key per event made
//! the log's memory grow with its length. Events are stored in *chunks* instead: the key is
//! `C` and the position of the chunk's first event, the value the chunk's events one after
//! another, each encoded as `podium.v1.Event` and preceded by its length (protobuf's
//! length-delimited form). A chunk holds consecutive positions and takes events until it holds
//! [`CHUNK_EVENTS`] of them or [`CHUNK_BYTES`] bytes; the event at a position is in the last
//! chunk that begins at or before it.
//!
//! The writer appends to the last chunk by storing it again under the same key, with the new
//! events at its end, in the same atomic batch as the indexes. A chunk keeps its key for its
//! whole life, so extending it writes one key in place and never leaves two chunks for the same
//! positions (an earlier try stored a chunk under its last position, removing the old key as
//! it grew, and the torn-write test found both keys back). Unlike a key per event, an
//! acknowledged event is written again while its chunk fills: that it survives is sled's
//! promise for a key written in place, which the torn-write and power-loss suites check.
//! Readers check that each chunk begins where the one before it ended. Databases written before
//! chunks held one event per `L` key; opening one packs them ([`migrate`]).

use prost::{
    bytes::Buf,
    encoding::{decode_varint, encode_varint},
};

use super::{
    keys::{CHUNK, LOG, be_u64, chunk_key, log_key},
    storage,
};
use crate::{EventLogError, Result};

/// A chunk takes no more events once it holds this many.
pub(super) const CHUNK_EVENTS: u64 = 16;
/// A chunk takes no more events once it holds this many bytes (a large event ends the chunk
/// it joins), so that a leaf of sled's tree (16 keys) stays small: with chunks of about 3 KiB,
/// the torn-write test (`tests/eventlog/torn.rs`) opened torn logs from which sled then refused
/// to read a leaf ("Read corrupted data") in 4 of 10 runs; with 1 KiB, in none of 70. A
/// ballot-sized event is about 200 bytes, so a chunk holds four or five.
pub(super) const CHUNK_BYTES: usize = 1 << 10;

/// One stored event of a chunk: its position and its encoded bytes.
pub(super) type Record = (u64, sled::IVec);

/// The events of the chunk stored under `key`, in order, as slices of `value` (not decoded).
/// A chunk that does not parse is an error naming the position of the first entry that does
/// not.
pub(super) fn records(key: &[u8], value: &sled::IVec) -> Result<Vec<Record>> {
    let first = be_u64(key.get(1..).unwrap_or_default())?;
    let mut records = Vec::with_capacity(CHUNK_EVENTS as usize);
    let mut rest: &[u8] = value;
    while rest.has_remaining() {
        let position = first + records.len() as u64;
        let corrupt = |reason: String| EventLogError::Corrupt {
            position,
            reason: format!("the chunk of events from position {first} does not parse: {reason}"),
        };
        let len = decode_varint(&mut rest).map_err(|e| corrupt(e.to_string()))?;
        let len = usize::try_from(len)
            .ok()
            .filter(|len| *len <= rest.len())
            .ok_or_else(|| {
                corrupt(format!(
                    "an entry of {len} bytes, but {} are left",
                    rest.len()
                ))
            })?;
        records.push((position, value.subslice(value.len() - rest.len(), len)));
        rest.advance(len);
    }
    if records.is_empty() {
        return Err(EventLogError::Corrupt {
            position: first,
            reason: "the chunk of events from this position is empty".into(),
        });
    }
    Ok(records)
}

/// The chunk that holds `position`, if any: the last one beginning at or before it.
fn holding(tree: &sled::Tree, position: u64) -> Result<Option<(sled::IVec, sled::IVec)>> {
    tree.range(chunk_key(0)..=chunk_key(position))
        .next_back()
        .transpose()
        .map_err(storage)
}

/// The stored bytes of the event at `position`, if a chunk holds it.
pub(super) fn find(tree: &sled::Tree, position: u64) -> Result<Option<sled::IVec>> {
    let Some((key, value)) = holding(tree, position)? else {
        return Ok(None);
    };
    let records = records(&key, &value).map_err(|error| match error {
        // The event asked for is named, whichever entry of its chunk failed to parse.
        EventLogError::Corrupt {
            position: at,
            reason,
        } if at != position => EventLogError::Corrupt {
            position,
            reason: format!("{reason} (at position {at})"),
        },
        other => other,
    })?;
    Ok(records
        .into_iter()
        .find_map(|(at, bytes)| (at == position).then_some(bytes)))
}

/// The stored events at positions `from..end`, not decoded.
pub(super) fn range(tree: &sled::Tree, from: u64, end: u64) -> Result<Vec<Record>> {
    let mut found = Vec::with_capacity(usize::try_from(end.saturating_sub(from)).unwrap_or(0));
    if from >= end {
        return Ok(found);
    }
    let start = match holding(tree, from)? {
        Some((key, _)) => be_u64(&key[1..])?,
        None => from,
    };
    let mut expected = None;
    for entry in tree.range(chunk_key(start)..chunk_key(end)) {
        let (key, value) = entry.map_err(storage)?;
        let records = records(&key, &value)?;
        let first = records[0].0;
        // Chunks follow one another without a gap or an overlap; anything else is damage,
        // not a page to serve.
        if let Some(expected) = expected.filter(|expected| *expected != first) {
            return Err(EventLogError::Corrupt {
                position: expected,
                reason: format!("the chunk after this position begins at {first}"),
            });
        }
        expected = Some(first + records.len() as u64);
        found.extend(
            records
                .into_iter()
                .filter(|(at, _)| (from..end).contains(at)),
        );
    }
    Ok(found)
}

/// The position after the last stored event. A last chunk that does not parse is an error:
/// where the log ends is not known.
pub(super) fn next_position(tree: &sled::Tree) -> Result<u64> {
    Ok(last(tree)?.map_or(0, |chunk| chunk.end()))
}

/// The last chunk, as stored.
fn last(tree: &sled::Tree) -> Result<Option<Chunk>> {
    let Some(entry) = tree.scan_prefix([CHUNK]).next_back() else {
        return Ok(None);
    };
    let (key, value) = entry.map_err(storage)?;
    let records = records(&key, &value)?;
    Ok(Some(Chunk {
        first: be_u64(&key[1..])?,
        count: records.len() as u64,
        bytes: value.to_vec(),
        changed: false,
    }))
}

/// A chunk being filled.
struct Chunk {
    first: u64,
    count: u64,
    bytes: Vec<u8>,
    /// Whether it took events that are not stored yet.
    changed: bool,
}

impl Chunk {
    fn end(&self) -> u64 {
        self.first + self.count
    }

    fn takes_more(&self) -> bool {
        self.count < CHUNK_EVENTS && self.bytes.len() < CHUNK_BYTES
    }
}

/// The chunks a batch writes: the log's last chunk extended, and new ones after it. The
/// default begins a new chunk with the first event.
#[derive(Default)]
pub(super) struct Chunks {
    open: Option<Chunk>,
    full: Vec<Chunk>,
}

impl Chunks {
    /// Ready to append at `next`, the log's head: the last chunk of `tree` is extended if it
    /// ends there and still takes events. One that does not parse (damaged while podiumd runs:
    /// opening refuses such a log, since where it ends is not known) is left as it is, reading
    /// it names it, and the next events begin a chunk of their own.
    pub(super) fn at(tree: &sled::Tree, next: u64) -> Result<Self> {
        let open = match last(tree) {
            Ok(chunk) => chunk,
            Err(error @ EventLogError::Corrupt { .. }) => {
                tracing::warn!(%error, "the log's last chunk does not parse; it is not extended");
                None
            }
            Err(error) => return Err(error),
        };
        Ok(Self {
            open: open.filter(|chunk| chunk.end() == next && chunk.takes_more()),
            full: Vec::new(),
        })
    }

    /// Adds the event at `position`, encoded as `podium.v1.Event`; it must be at the position
    /// after the last one added.
    pub(super) fn push(&mut self, position: u64, encoded: &[u8]) {
        let mut chunk = match self.open.take() {
            Some(chunk) if chunk.takes_more() => chunk,
            other => {
                self.full.extend(other);
                Chunk {
                    first: position,
                    count: 0,
                    bytes: Vec::with_capacity(CHUNK_BYTES.min(encoded.len() + 10)),
                    changed: false,
                }
            }
        };
        debug_assert_eq!(chunk.end(), position, "chunks hold consecutive events");
        encode_varint(encoded.len() as u64, &mut chunk.bytes);
        chunk.bytes.extend_from_slice(encoded);
        chunk.count += 1;
        chunk.changed = true;
        self.open = Some(chunk);
    }

    /// Puts every chunk that took events into `batch`, under its first position.
    pub(super) fn write(self, batch: &mut sled::Batch) {
        for chunk in self.full.into_iter().chain(self.open) {
            if chunk.changed {
                batch.insert(chunk_key(chunk.first).to_vec(), chunk.bytes);
            }
        }
    }
}

/// Packs an older database's events, one per `L` key, into chunks, then removes the `L` keys,
/// never relying on a removal and an insertion coming back together after a crash: first the
/// chunks are written (insertions only, a few thousand events a batch, going on from where
/// the chunks end), and made durable with `durable`; only then are the `L` keys removed. A
/// crash at any point leaves every event in a chunk or under `L` or both, and the next opening
/// goes on. Writes nothing when there is no `L` key.
pub(super) fn migrate(tree: &sled::Tree, durable: impl FnOnce() -> Result<()>) -> Result<()> {
    const STEP: usize = 4096;
    if tree.scan_prefix([LOG]).next().is_none() {
        return Ok(());
    }
    let mut next = next_position(tree)?;
    let packed_before = next;
    loop {
        let mut chunks = Chunks::at(tree, next)?;
        let mut taken = 0;
        for entry in tree.range(log_key(next)..log_key(u64::MAX)).take(STEP) {
            let (key, value) = entry.map_err(storage)?;
            let position = be_u64(&key[1..])?;
            if position != next {
                return Err(EventLogError::Corrupt {
                    position: next,
                    reason: format!("the older log has no event here; the next is at {position}"),
                });
            }
            // Moved as stored, not decoded: an event that does not decode is refused when it
            // is read, with its position, as before.
            chunks.push(position, &value);
            next += 1;
            taken += 1;
        }
        if taken == 0 {
            break;
        }
        let mut batch = sled::Batch::default();
        chunks.write(&mut batch);
        tree.apply_batch(batch).map_err(storage)?;
    }
    durable()?;
    let mut removed = 0u64;
    loop {
        let mut batch = sled::Batch::default();
        let mut taken = 0;
        for entry in tree.scan_prefix([LOG]).keys().take(STEP) {
            batch.remove(entry.map_err(storage)?);
            taken += 1;
        }
        if taken == 0 {
            break;
        }
        tree.apply_batch(batch).map_err(storage)?;
        removed += taken;
    }
    tree.flush().map_err(storage)?;
    tracing::info!(
        events = next - packed_before,
        removed,
        "event log: events of an older layout packed into chunks"
    );
    Ok(())
}

/// Whether `tree` holds events, in chunks or under the older layout's `L` keys.
pub(super) fn holds_events(tree: &sled::Tree) -> Result<bool> {
    Ok(next_position(tree)? > 0 || tree.scan_prefix([LOG]).next().is_some())
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use prost::Message;
    use uuid::Uuid;

    use super::*;
    use crate::{
        EventLog, ExpectedVersion, NewEvent, RecordedEvent,
        sled_log::{SledEventLog, SledOptions, keys::log_key, read::decode_stored},
    };

    fn temporary() -> Result<(sled::Db, sled::Tree)> {
        let db = sled::Config::new()
            .temporary(true)
            .open()
            .map_err(storage)?;
        let tree = db.open_tree("events").map_err(storage)?;
        Ok((db, tree))
    }

    fn event(position: u64, payload: usize) -> RecordedEvent {
        RecordedEvent {
            id: Uuid::now_v7(),
            stream: format!("s-{}", position % 3),
            stream_version: position / 3,
            position,
            event_type: "podium.test.A".into(),
            payload: vec![position as u8; payload],
            recorded_at: SystemTime::now(),
        }
    }

    /// Appends `events` as the writer does, one batch for the lot.
    fn append(tree: &sled::Tree, events: &[RecordedEvent]) -> Result<()> {
        let next = next_position(tree)?;
        let mut chunks = Chunks::at(tree, next)?;
        for event in events {
            chunks.push(event.position, &event.to_proto().encode_to_vec());
        }
        let mut batch = sled::Batch::default();
        chunks.write(&mut batch);
        tree.apply_batch(batch).map_err(storage)
    }

    fn read_back(tree: &sled::Tree, from: u64, end: u64) -> Result<Vec<RecordedEvent>> {
        range(tree, from, end)?
            .into_iter()
            .map(|(position, bytes)| decode_stored(position, &bytes))
            .collect()
    }

    fn chunk_count(tree: &sled::Tree) -> usize {
        tree.scan_prefix([CHUNK]).count()
    }

    /// Every chunk but the last is full (by count or by size), and each begins where the one
    /// before it ended: extending a chunk left nothing behind.
    fn assert_packed(tree: &sled::Tree) -> Result<()> {
        let chunks: Vec<_> = tree
            .scan_prefix([CHUNK])
            .collect::<std::result::Result<_, _>>()
            .map_err(storage)?;
        let mut expected_first = 0;
        for (i, (key, value)) in chunks.iter().enumerate() {
            let records = records(key, value)?;
            assert_eq!(
                records[0].0, expected_first,
                "chunk {i} begins where the last ended"
            );
            let full = records.len() as u64 == CHUNK_EVENTS || value.len() >= CHUNK_BYTES;
            assert!(
                full || i + 1 == chunks.len(),
                "chunk {i} of {} is not full",
                chunks.len()
            );
            expected_first += records.len() as u64;
        }
        Ok(())
    }

    #[test]
    fn every_event_is_read_back_from_its_chunk_whatever_the_groups() -> Result<()> {
        let (_db, tree) = temporary()?;
        let events: Vec<_> = (0..100).map(|p| event(p, 40)).collect();
        // Groups of 1, 2, ... events, as the writer's groups come.
        let mut at = 0;
        for size in 1.. {
            if at >= events.len() {
                break;
            }
            let end = (at + size).min(events.len());
            append(&tree, &events[at..end])?;
            at = end;
            assert_eq!(next_position(&tree)?, at as u64);
        }
        assert_eq!(read_back(&tree, 0, 100)?, events);
        for (from, end) in [
            (0, 1),
            (15, 17),
            (16, 32),
            (37, 99),
            (99, 100),
            (50, 50),
            (90, 500),
        ] {
            let expected: Vec<_> = events
                .iter()
                .filter(|e| (from..end).contains(&e.position))
                .cloned()
                .collect();
            assert_eq!(read_back(&tree, from, end)?, expected, "{from}..{end}");
        }
        for event in &events {
            let bytes = find(&tree, event.position)?.expect("stored");
            assert_eq!(&decode_stored(event.position, &bytes)?, event);
        }
        assert_eq!(find(&tree, 100)?, None);
        assert_packed(&tree)?;
        assert!(
            chunk_count(&tree) <= 100 / 4,
            "{} chunks",
            chunk_count(&tree)
        );
        Ok(())
    }

    #[test]
    fn a_chunk_ends_at_its_size_and_a_large_event_ends_the_chunk_it_joins() -> Result<()> {
        let (_db, tree) = temporary()?;
        let events = vec![
            event(0, 10),
            event(1, CHUNK_BYTES * 2),
            event(2, 10),
            event(3, 10),
        ];
        append(&tree, &events[..1])?;
        append(&tree, &events[1..])?;
        // [0, 1] (the large one ends the chunk it joins), then [2, 3], under their first
        // positions.
        let keys: Vec<u64> = tree
            .scan_prefix([CHUNK])
            .map(|entry| be_u64(&entry.map_err(storage)?.0[1..]))
            .collect::<Result<_>>()?;
        assert_eq!(keys, [0, 2]);
        assert_eq!(read_back(&tree, 0, 4)?, events);
        Ok(())
    }

    #[test]
    fn a_chunk_that_does_not_parse_names_the_position_and_is_not_extended() -> Result<()> {
        let (_db, tree) = temporary()?;
        append(&tree, &[event(0, 10), event(1, 10)])?;
        let (key, value) = tree
            .scan_prefix([CHUNK])
            .next_back()
            .expect("a chunk")
            .map_err(storage)?;
        // The last entry loses its end, as a torn write would leave it.
        tree.insert(&key, &value[..value.len() - 3])
            .map_err(storage)?;
        assert!(matches!(
            read_back(&tree, 0, 2),
            Err(EventLogError::Corrupt { position: 1, .. })
        ));
        // Where the log ends is not known; a writer that knows it begins a chunk of its own.
        assert!(matches!(
            next_position(&tree),
            Err(EventLogError::Corrupt { position: 1, .. })
        ));
        let mut chunks = Chunks::at(&tree, 2)?;
        chunks.push(2, &event(2, 10).to_proto().encode_to_vec());
        let mut batch = sled::Batch::default();
        chunks.write(&mut batch);
        tree.apply_batch(batch).map_err(storage)?;
        assert_eq!(chunk_count(&tree), 2);
        assert_eq!(next_position(&tree)?, 3);
        assert_eq!(read_back(&tree, 2, 3)?.len(), 1);
        for value in [&[0xff, 0xff, 0xff][..], &[][..]] {
            tree.insert(&key, value).map_err(storage)?;
            assert!(matches!(
                find(&tree, 0),
                Err(EventLogError::Corrupt { position: 0, .. })
            ));
        }
        Ok(())
    }

    #[test]
    fn chunks_that_leave_a_gap_or_overlap_are_damage_not_a_page() -> Result<()> {
        let events: Vec<_> = (0..40).map(|p| event(p, 300)).collect();
        for step in [1i64, -1] {
            let (_db, tree) = temporary()?;
            append(&tree, &events)?;
            assert_eq!(read_back(&tree, 0, 40)?, events);
            let second = tree
                .scan_prefix([CHUNK])
                .nth(1)
                .expect("a second chunk")
                .map_err(storage)?;
            let at = be_u64(&second.0[1..])?;
            // The second chunk's key moved one position on (a gap) or back (an overlap).
            tree.remove(&second.0).map_err(storage)?;
            tree.insert(chunk_key(at.saturating_add_signed(step)), second.1)
                .map_err(storage)?;
            assert!(
                matches!(
                    range(&tree, 0, 40),
                    Err(EventLogError::Corrupt { position, .. }) if position == at
                ),
                "moved by {step}"
            );
        }
        Ok(())
    }

    /// Writes `events` as databases from before chunks did: one `L` key each.
    fn write_legacy(tree: &sled::Tree, events: &[RecordedEvent]) -> Result<()> {
        for event in events {
            tree.insert(log_key(event.position), event.to_proto().encode_to_vec())
                .map_err(storage)?;
        }
        Ok(())
    }

    #[test]
    fn an_older_databases_events_are_packed_once_and_a_crash_at_any_step_is_picked_up() -> Result<()>
    {
        let (_db, tree) = temporary()?;
        let events: Vec<_> = (0..5_000).map(|p| event(p, 20)).collect();
        write_legacy(&tree, &events[..4_500])?;
        // Undecodable bytes are moved as they are and refused when read, as before.
        tree.insert(log_key(4_500), vec![0xff, 0xff])
            .map_err(storage)?;
        // The chunks are made durable while every `L` key is still there, and reach its end.
        migrate(&tree, || {
            assert_eq!(tree.scan_prefix([LOG]).count(), 4_501);
            assert_eq!(next_position(&tree)?, 4_501);
            Ok(())
        })?;
        assert!(tree.scan_prefix([LOG]).next().is_none());
        assert_eq!(next_position(&tree)?, 4_501);
        assert_eq!(read_back(&tree, 0, 4_500)?, events[..4_500]);
        assert!(matches!(
            read_back(&tree, 4_500, 4_501),
            Err(EventLogError::Corrupt {
                position: 4_500,
                ..
            })
        ));
        let checksum = tree.checksum().map_err(storage)?;
        migrate(&tree, || Ok(()))?;
        assert_eq!(
            tree.checksum().map_err(storage)?,
            checksum,
            "a second opening writes nothing"
        );

        // A crash while the chunks are written: every event is still under `L`, the first
        // hundred in chunks too. The next opening goes on from where the chunks end.
        let (_db, tree) = temporary()?;
        write_legacy(&tree, &events)?;
        append(&tree, &events[..100])?;
        migrate(&tree, || Ok(()))?;
        assert!(tree.scan_prefix([LOG]).next().is_none());
        assert_eq!(read_back(&tree, 0, 5_000)?, events);
        assert_packed(&tree)?;

        // A crash while the `L` keys are removed: the chunks are whole, and the rest goes.
        let (_db, tree) = temporary()?;
        write_legacy(&tree, &events)?;
        append(&tree, &events)?;
        for event in &events[..2_000] {
            tree.remove(log_key(event.position)).map_err(storage)?;
        }
        let chunks_before: Vec<_> = tree
            .scan_prefix([CHUNK])
            .collect::<std::result::Result<_, _>>()
            .map_err(storage)?;
        migrate(&tree, || Ok(()))?;
        assert!(tree.scan_prefix([LOG]).next().is_none());
        let chunks_after: Vec<_> = tree
            .scan_prefix([CHUNK])
            .collect::<std::result::Result<_, _>>()
            .map_err(storage)?;
        assert_eq!(
            chunks_after, chunks_before,
            "whole chunks are not written again"
        );
        assert_eq!(read_back(&tree, 0, 5_000)?, events);

        // An older log with a hole in its positions is refused, naming the first missing one,
        // and nothing is written.
        let (_db, tree) = temporary()?;
        write_legacy(&tree, &events[..10])?;
        write_legacy(&tree, &events[11..20])?;
        assert!(matches!(
            migrate(&tree, || Ok(())),
            Err(EventLogError::Corrupt { position: 10, .. })
        ));
        assert_eq!(
            (chunk_count(&tree), tree.scan_prefix([LOG]).count()),
            (0, 19)
        );
        Ok(())
    }

    #[tokio::test]
    async fn a_log_written_before_chunks_opens_with_its_events_and_takes_more() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| EventLogError::Storage(e.to_string()))?;
        let events: Vec<_> = (0..40).map(|p| event(p, 20)).collect();
        {
            // No flusher thread, which would hold the file lock a moment after the drop.
            let db = sled::Config::new()
                .path(dir.path())
                .flush_every_ms(None)
                .open()
                .map_err(storage)?;
            let tree = db.open_tree("events").map_err(storage)?;
            write_legacy(&tree, &events)?;
            for event in &events {
                tree.insert(
                    super::super::keys::stream_key(&event.stream, event.stream_version),
                    &event.position.to_be_bytes(),
                )
                .map_err(storage)?;
                tree.insert(
                    super::super::keys::id_key(event.id),
                    super::super::ids::entry(event.position, event.stream_version),
                )
                .map_err(storage)?;
            }
            db.flush().map_err(storage)?;
        }
        let log = SledEventLog::open(dir.path(), SledOptions::default())?;
        assert_eq!(log.head(), 40);
        assert_eq!(log.read_all(0, 100).await?, events);
        assert_eq!(log.read_stream("s-1", 0, 100).await?.len(), 13);
        // A retry of a stored event is answered from the moved event.
        let retry = NewEvent {
            id: events[7].id,
            event_type: events[7].event_type.clone(),
            payload: events[7].payload.clone(),
        };
        let outcome = log.append("s-1", ExpectedVersion::Any, vec![retry]).await?;
        assert!(outcome.deduplicated && outcome.first_position == 7);
        let new = NewEvent {
            id: Uuid::now_v7(),
            event_type: "podium.test.B".into(),
            payload: vec![1],
        };
        let outcome = log
            .append("s-1", ExpectedVersion::Exact(12), vec![new])
            .await?;
        assert_eq!((outcome.first_position, outcome.first_version), (40, 13));
        log.close()?;
        drop(log);
        let log = SledEventLog::open(dir.path(), SledOptions::default())?;
        assert_eq!(log.read_all(0, 100).await?.len(), 41);
        log.close()
    }
}
