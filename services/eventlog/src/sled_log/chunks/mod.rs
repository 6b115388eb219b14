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
//! Readers check that each chunk begins where the one before it ended. A chunk whose framing is
//! damaged costs every event in it, and the log does not open if it is the last (where the log
//! ends is then not known). Databases written before chunks held one event per `L` key; opening
//! one packs them ([`migrate`]); a podiumd from before chunks cannot read a log that has been
//! packed.

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
/// ballot-sized event encodes to 200 to 400 bytes, so a chunk holds three to six.
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
        // The position after this entry must exist too: it is where the chunk, or the log,
        // ends.
        let Some(end) = first.checked_add(records.len() as u64 + 1) else {
            return Err(EventLogError::Corrupt {
                position: first,
                reason: "the chunk of events from this position runs past the last position".into(),
            });
        };
        let position = end - 1;
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

/// Decodes the stored bytes of a chunk (the value under the key of its first position,
/// `first`) into its events, as a range read does: each entry's framing, then
/// [`decode_stored`](super::decode_stored). Public so that the fuzz targets and property tests
/// (`tests/fuzz/harness`) drive the chunk framing too.
pub fn decode_chunk(first: u64, value: &[u8]) -> Result<Vec<crate::RecordedEvent>> {
    records(&chunk_key(first), &sled::IVec::from(value))?
        .into_iter()
        .map(|(position, bytes)| super::decode_stored(position, &bytes))
        .collect()
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

/// The stored events at positions `from..end`, not decoded. Every position there must be
/// stored (callers read below the durable head): chunks that leave a gap or overlap, or a
/// position no chunk holds, are damage, refused with the first position in question, never a
/// short page.
pub(super) fn range(tree: &sled::Tree, from: u64, end: u64) -> Result<Vec<Record>> {
    let mut found = Vec::with_capacity(usize::try_from(end.saturating_sub(from)).unwrap_or(0));
    if from >= end {
        return Ok(found);
    }
    // The first chunk to read is the one holding `from`; each after it begins where the one
    // before it ended.
    let mut expected = match holding(tree, from)? {
        Some((key, _)) => be_u64(&key[1..])?,
        None => from,
    };
    let missing = |position: u64, reason: String| EventLogError::Corrupt { position, reason };
    for entry in tree.range(chunk_key(expected)..chunk_key(end)) {
        let (key, value) = entry.map_err(storage)?;
        let records = records(&key, &value)?;
        let first = records[0].0;
        if first != expected {
            return Err(missing(
                expected.max(from),
                format!("no chunk holds it; the next chunk begins at {first}"),
            ));
        }
        expected = first + records.len() as u64;
        found.extend(
            records
                .into_iter()
                .filter(|(at, _)| (from..end).contains(at)),
        );
    }
    if expected < end {
        return Err(missing(
            expected.max(from),
            "no chunk holds it, though the log goes on past it".into(),
        ));
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
pub(super) fn holds_events(tree: &sled::Tree) -> bool {
    [CHUNK, LOG]
        .iter()
        .any(|space| tree.scan_prefix([*space]).next().is_some())
}

#[cfg(test)]
mod tests;
