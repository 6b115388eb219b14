//! The log's two indexes, packed: the stream index (stream and version → position) and the id
//! index (event id → position and version) are kept as runs of sorted entries, up to
//! [`RUN_BYTES`] each, under one sled key per run, instead of one sled key per entry.
//!
//! Why: sled 0.34 keeps records of every leaf of its tree in memory, whatever its cache size,
//! and a leaf holds at most 16 keys. With one index key per event the log's memory grew by
//! about 57 bytes per event for as long as it ran (docs/performance.md, "The event log's
//! memory"). A run holds tens of entries, so a leaf of runs covers hundreds of events.
//!
//! A run's sled key is its index's byte ([`keys::STREAM_RUN`], [`keys::ID_RUN`]) and then the
//! key where it starts: the index's first run starts at the empty key, every other run at its
//! first entry's key. The runs of an index never overlap, so the run that holds a key, if any
//! does, is the last one starting at or before it. A run's value is its entries in order, each
//! written as the length of the prefix its key shares with the previous entry's, the rest of
//! its key, and its value, every length a LEB128 varint (a stream's entries share the stream's
//! name). The writer merges a group's new entries into the runs they fall in and splits a run
//! that outgrows [`RUN_BYTES`], all in the group's one sled batch, so a crash leaves the runs
//! as the last durable group left them. The bound is the chunks' (see [`super::chunks`]): a
//! sled leaf holds 16 values, and the torn-write test found leaves of larger values unreadable.
//!
//! A run's key is never removed: a split keeps the first part under the run's key and puts the
//! rest under keys after it. A reader that reads several runs while the writer splits one
//! (sled makes each read atomic, not a sequence of them) may therefore meet entries again in a
//! new run, which it skips, but never misses one that was there when it began.

use std::{
    cmp::Ordering,
    collections::BTreeMap,
    ops::{Bound, ControlFlow},
};

use uuid::Uuid;

use super::{ids, keys, storage};
use crate::{EventLogError, Result};

/// Most bytes in a run, unless one entry alone is larger.
pub(super) const RUN_BYTES: usize = 1024;
/// Entries an opening moves from the older layout in one atomic batch.
const MIGRATE_STEP: usize = 50_000;

/// A key and its value.
type Entry = (Vec<u8>, Vec<u8>);

/// One of the log's two packed indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Index {
    /// Stream, `0x00`, version (u64 BE) → position (u64 BE).
    Streams,
    /// Event id (16 bytes) → position and version (u64 BE each).
    Ids,
}

impl Index {
    /// The first byte of this index's run keys.
    fn space(self) -> u8 {
        match self {
            Index::Streams => keys::STREAM_RUN,
            Index::Ids => keys::ID_RUN,
        }
    }

    /// The key space of the older layout, one sled key per entry.
    fn singles(self) -> u8 {
        match self {
            Index::Streams => keys::STREAM,
            Index::Ids => keys::ID,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Index::Streams => "stream index",
            Index::Ids => "id index",
        }
    }

    /// The sled key of a run starting at `entry` (the first run: at the empty key).
    fn run_key(self, entry: &[u8]) -> Vec<u8> {
        let mut key = Vec::with_capacity(entry.len() + 1);
        key.push(self.space());
        key.extend_from_slice(entry);
        key
    }

    /// The bounds of this index's run keys.
    fn bounds(self) -> (Vec<u8>, Vec<u8>) {
        (vec![self.space()], vec![self.space() + 1])
    }

    fn malformed(self) -> EventLogError {
        EventLogError::Storage(format!(
            "a run of the event log's {} does not parse: the database is damaged",
            self.name()
        ))
    }
}

/// The value of `key` in `index`, if it holds one.
pub(super) fn get(tree: &sled::Tree, index: Index, key: &[u8]) -> Result<Option<Vec<u8>>> {
    let Some((_, run)) = run_at(tree, index, key)? else {
        return Ok(None);
    };
    let mut found = None;
    walk(index, &run, |k, v| match k.cmp(key) {
        Ordering::Less => ControlFlow::Continue(()),
        Ordering::Equal => {
            found = Some(v.to_vec());
            ControlFlow::Break(())
        }
        Ordering::Greater => ControlFlow::Break(()),
    })?;
    Ok(found)
}

/// The greatest entry from `lo` to `hi`, both included. It can only be in the run that holds
/// `hi`: that run starts at or before `hi`, and the next one after it.
pub(super) fn last_in(
    tree: &sled::Tree,
    index: Index,
    lo: &[u8],
    hi: &[u8],
) -> Result<Option<Entry>> {
    let Some((_, run)) = run_at(tree, index, hi)? else {
        return Ok(None);
    };
    let mut last = None;
    walk(index, &run, |k, v| {
        if k > hi {
            return ControlFlow::Break(());
        }
        if k >= lo {
            last = Some((k.to_vec(), v.to_vec()));
        }
        ControlFlow::Continue(())
    })?;
    Ok(last)
}

/// Hands the entries from `lo` to `hi` (both included) to `visit` in order, until it breaks.
pub(super) fn scan(
    tree: &sled::Tree,
    index: Index,
    lo: &[u8],
    hi: &[u8],
    mut visit: impl FnMut(&[u8], &[u8]) -> Result<ControlFlow<()>>,
) -> Result<()> {
    let start = match run_at(tree, index, lo)? {
        Some((key, _)) => key.to_vec(),
        None => index.run_key(lo),
    };
    // The last key handed on: a run split while this reads is met again in part.
    let mut seen: Option<Vec<u8>> = None;
    for run in tree.range(start..=index.run_key(hi)) {
        let (_, run) = run.map_err(storage)?;
        let mut outcome = Ok(ControlFlow::Continue(()));
        walk(index, &run, |k, v| {
            if k < lo || seen.as_deref().is_some_and(|seen| k <= seen) {
                return ControlFlow::Continue(());
            }
            seen = Some(k.to_vec());
            outcome = match k > hi {
                true => Ok(ControlFlow::Break(())),
                false => visit(k, v),
            };
            match outcome {
                Ok(ControlFlow::Continue(())) => ControlFlow::Continue(()),
                _ => ControlFlow::Break(()),
            }
        })?;
        if outcome?.is_break() {
            break;
        }
    }
    Ok(())
}

/// The run that holds `key` if the index has it: the last one starting at or before it.
fn run_at(tree: &sled::Tree, index: Index, key: &[u8]) -> Result<Option<(sled::IVec, sled::IVec)>> {
    let (lo, _) = index.bounds();
    tree.range(lo..=index.run_key(key))
        .next_back()
        .transpose()
        .map_err(storage)
}

/// The key of the first run after the one whose key is `after`.
fn run_after(tree: &sled::Tree, index: Index, after: &[u8]) -> Result<Option<sled::IVec>> {
    let (_, hi) = index.bounds();
    let from = Bound::Excluded(after.to_vec());
    match tree.range((from, Bound::Excluded(hi))).keys().next() {
        Some(key) => Ok(Some(key.map_err(storage)?)),
        None => Ok(None),
    }
}

/// New entries of the indexes, from a writer's group (or an import's batch), to be merged into
/// the runs as the group is written.
#[derive(Debug, Default)]
pub(super) struct Additions {
    streams: BTreeMap<Vec<u8>, Vec<u8>>,
    ids: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl Additions {
    /// Version `version` of `stream` is at `position`.
    pub(super) fn stream(&mut self, stream: &str, version: u64, position: u64) {
        self.streams.insert(
            keys::stream_entry(stream, version),
            position.to_be_bytes().to_vec(),
        );
    }

    /// Event `id` is at `position`, version `version` of its stream.
    pub(super) fn id(&mut self, id: Uuid, position: u64, version: u64) {
        self.ids
            .insert(id.as_bytes().to_vec(), ids::entry(position, version));
    }

    /// Puts the runs these entries change into `batch`, as merged into the runs `tree` holds
    /// now: the batch must be applied before anything else writes to the indexes.
    pub(super) fn write(self, tree: &sled::Tree, batch: &mut sled::Batch) -> Result<()> {
        merge(tree, Index::Streams, self.streams, batch)?;
        merge(tree, Index::Ids, self.ids, batch)
    }
}

/// Merges `new` into the runs of `index`, writing the runs it changes into `batch`.
fn merge(
    tree: &sled::Tree,
    index: Index,
    new: BTreeMap<Vec<u8>, Vec<u8>>,
    batch: &mut sled::Batch,
) -> Result<()> {
    let mut new = new.into_iter().peekable();
    while let Some((next_key, _)) = new.peek() {
        // The run the next entry falls in: the last one starting at or before it. There is
        // none only while the index is empty; its first run then starts at the empty key.
        let (key, stored) = match run_at(tree, index, next_key)? {
            Some((key, run)) => (key.to_vec(), decode(index, &run)?),
            None => (index.run_key(&[]), Vec::new()),
        };
        // Every new entry before the following run's start goes into this one.
        let following = run_after(tree, index, &key)?;
        let mut added = Vec::new();
        while let Some((entry, _)) = new.peek() {
            if following.as_ref().is_some_and(|f| entry[..] >= f[1..]) {
                break;
            }
            added.extend(new.next());
        }
        // The index's last run, or entries after a run's last, only ever grow at the end.
        let appending = following.is_none()
            || match (stored.last(), added.first()) {
                (Some((last, _)), Some((first, _))) => first > last,
                _ => true,
            };
        let mut runs = split(merge_sorted(stored, added), appending).into_iter();
        // The first part keeps the run's key, so that no key a reader may be at goes away.
        if let Some(run) = runs.next() {
            batch.insert(key, encode(&run));
        }
        for run in runs {
            batch.insert(index.run_key(&run[0].0), encode(&run));
        }
    }
    Ok(())
}

/// Both sorted lists as one; of two entries with one key, `added`'s.
fn merge_sorted(stored: Vec<Entry>, added: Vec<Entry>) -> Vec<Entry> {
    let mut merged = Vec::with_capacity(stored.len() + added.len());
    let mut stored = stored.into_iter().peekable();
    for entry in added {
        while let Some(older) = stored.next_if(|(key, _)| *key < entry.0) {
            merged.push(older);
        }
        stored.next_if(|(key, _)| *key == entry.0);
        merged.push(entry);
    }
    merged.extend(stored);
    merged
}

/// `entries` as runs of at most [`RUN_BYTES`] each, counting the run's key (which repeats its
/// first entry's), as a sled leaf holds both. Entries appended after a run's last fill it
/// before a new run starts, as the end of an index, or of a stream, is only appended to; a run
/// that took entries among its own is split into runs of even size, so that the next entries
/// there find room.
fn split(entries: Vec<Entry>, appending: bool) -> Vec<Vec<Entry>> {
    let total = encoded_len(&entries) + entries.first().map_or(0, |(key, _)| run_key_len(key));
    let target = match appending {
        true => RUN_BYTES,
        false => total.div_ceil(total.div_ceil(RUN_BYTES).max(1)),
    };
    let mut runs = Vec::new();
    let mut run: Vec<Entry> = Vec::new();
    let mut size = 0;
    for (key, value) in entries {
        let previous = run.last().map_or(&[][..], |(k, _)| &k[..]);
        let len = entry_len(previous, &key, &value);
        if !run.is_empty() && size + len > target {
            runs.push(std::mem::take(&mut run));
            size = run_key_len(&key) + entry_len(&[], &key, &value);
        } else if run.is_empty() {
            size = run_key_len(&key) + len;
        } else {
            size += len;
        }
        run.push((key, value));
    }
    if !run.is_empty() {
        runs.push(run);
    }
    runs
}

/// The length of the sled key of a run starting at `key`.
fn run_key_len(key: &[u8]) -> usize {
    1 + key.len()
}

fn encode(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded_len(entries));
    let mut previous: &[u8] = &[];
    for (key, value) in entries {
        let shared = shared_len(previous, key);
        put_varint(&mut out, shared);
        put_varint(&mut out, key.len() - shared);
        out.extend_from_slice(&key[shared..]);
        put_varint(&mut out, value.len());
        out.extend_from_slice(value);
        previous = key;
    }
    out
}

fn encoded_len(entries: &[Entry]) -> usize {
    let mut previous: &[u8] = &[];
    let mut len = 0;
    for (key, value) in entries {
        len += entry_len(previous, key, value);
        previous = key;
    }
    len
}

fn entry_len(previous: &[u8], key: &[u8], value: &[u8]) -> usize {
    let shared = shared_len(previous, key);
    let rest = key.len() - shared;
    varint_len(shared) + varint_len(rest) + rest + varint_len(value.len()) + value.len()
}

fn shared_len(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// A run's entries, checked to be in strictly increasing order.
fn decode(index: Index, run: &[u8]) -> Result<Vec<Entry>> {
    let mut entries: Vec<Entry> = Vec::new();
    let mut ordered = true;
    walk(index, run, |key, value| {
        ordered &= entries.last().is_none_or(|(last, _)| key > &last[..]);
        entries.push((key.to_vec(), value.to_vec()));
        ControlFlow::Continue(())
    })?;
    match ordered && !entries.is_empty() {
        true => Ok(entries),
        false => Err(index.malformed()),
    }
}

/// Hands a run's entries to `visit` in order, until it breaks. The key is rebuilt in one buffer
/// as the run is read, so a lookup allocates nothing per entry.
fn walk(
    index: Index,
    run: &[u8],
    mut visit: impl FnMut(&[u8], &[u8]) -> ControlFlow<()>,
) -> Result<()> {
    let mut key = Vec::new();
    let mut at = 0;
    while at < run.len() {
        let value = next_entry(run, &mut at, &mut key).ok_or_else(|| index.malformed())?;
        if visit(&key, value).is_break() {
            break;
        }
    }
    Ok(())
}

/// Reads the entry at `at` into `key` (which holds the previous entry's key) and returns its
/// value; `None` if the bytes there are not an entry.
fn next_entry<'a>(run: &'a [u8], at: &mut usize, key: &mut Vec<u8>) -> Option<&'a [u8]> {
    let shared = varint(run, at)?;
    let rest = varint(run, at)?;
    if shared > key.len() {
        return None;
    }
    let suffix = run.get(*at..at.checked_add(rest)?)?;
    *at += rest;
    key.truncate(shared);
    key.extend_from_slice(suffix);
    let len = varint(run, at)?;
    let value = run.get(*at..at.checked_add(len)?)?;
    *at += len;
    Some(value)
}

fn put_varint(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push(n as u8 | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn varint_len(n: usize) -> usize {
    (usize::BITS - (n | 1).leading_zeros()).div_ceil(7) as usize
}

fn varint(bytes: &[u8], at: &mut usize) -> Option<usize> {
    let mut n = 0usize;
    for shift in (0..usize::BITS).step_by(7) {
        let byte = *bytes.get(*at)?;
        *at += 1;
        let bits = usize::from(byte & 0x7f);
        // The last byte holds what is left of the number's bits, no more.
        if bits.leading_zeros() < shift {
            return None;
        }
        n |= bits << shift;
        if byte & 0x80 == 0 {
            return Some(n);
        }
    }
    None
}

/// Moves an older database's index entries (one sled key each, under `S` and `J`) into runs,
/// [`MIGRATE_STEP`] at a time: each step writes the runs, makes them durable with `durable`,
/// and only then removes the old keys, so a crash at any point leaves every entry in a run or
/// still where it was, and the next opening goes on (merging an entry a run already holds
/// changes nothing). The caller marks the database with the new format first, so that an
/// older podiumd never opens one half moved. Returns how many entries it moved.
pub(super) fn migrate(tree: &sled::Tree, mut durable: impl FnMut() -> Result<()>) -> Result<u64> {
    let mut moved = 0u64;
    for index in [Index::Streams, Index::Ids] {
        loop {
            let mut entries = BTreeMap::new();
            let mut removals = sled::Batch::default();
            for single in tree.scan_prefix([index.singles()]).take(MIGRATE_STEP) {
                let (key, value) = single.map_err(storage)?;
                entries.insert(key[1..].to_vec(), value.to_vec());
                removals.remove(key);
            }
            if entries.is_empty() {
                break;
            }
            moved += entries.len() as u64;
            let mut runs = sled::Batch::default();
            merge(tree, index, entries, &mut runs)?;
            tree.apply_batch(runs).map_err(storage)?;
            durable()?;
            tree.apply_batch(removals).map_err(storage)?;
        }
    }
    if moved > 0 {
        durable()?;
        tracing::info!(entries = moved, "event log: indexes packed into runs");
    }
    Ok(moved)
}

#[cfg(test)]
mod tests;
