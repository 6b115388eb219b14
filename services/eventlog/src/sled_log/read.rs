//! Reads of the sled backend: streams, pages of the log, stream heads and the id index, and
//! the decoding of stored events. Every read goes through [`Shared::read`], which runs it on
//! the current database and once more if the writer reopened the database meanwhile (after a
//! failed write sled refuses reads too). Callers pass the durable head; nothing at or past it
//! is returned, so nothing unacknowledged is ever delivered.

use std::sync::{Arc, atomic::Ordering};

use podium_proto::v1 as pb;
use prost::Message;

use super::{
    Shared, Store, chunks,
    keys::{STREAM, be_u64, stream_key, stream_prefix},
    storage,
    writer::REOPEN_PAUSE,
};
use crate::{EventLogError, Page, RecordedEvent, Result};

/// How many pauses a failed read waits for the writer to reopen the database.
const REREAD_WAITS: u32 = 20;

impl Shared {
    /// The current database. While the writer reopens it, this waits for the new one.
    pub(super) fn store(&self) -> Result<Store> {
        self.store
            .read()
            .map_err(|_| EventLogError::Closed)?
            .clone()
            .ok_or_else(|| EventLogError::Storage("the database could not be reopened".into()))
    }

    pub(super) fn tree(&self) -> Result<sled::Tree> {
        Ok(self.store()?.tree)
    }

    /// Runs `read` on the current tree. A read that failed while the writer reopened the
    /// database (a failed write leaves sled refusing reads too) runs once more on the new one.
    pub(super) fn read<T>(&self, read: impl Fn(&sled::Tree) -> Result<T>) -> Result<T> {
        let generation = self.generation.load(Ordering::Acquire);
        let result = read(&self.tree()?);
        match result {
            Err(EventLogError::Storage(_) | EventLogError::DiskFull(_)) => {
                // The writer may not have seen its failure yet: give it a moment to reopen.
                // Taking the tree waits for a reopening in progress.
                for _ in 0..REREAD_WAITS {
                    let tree = self.tree()?;
                    if self.generation.load(Ordering::Acquire) != generation {
                        return read(&tree);
                    }
                    std::thread::sleep(REOPEN_PAUSE);
                }
                result
            }
            other => other,
        }
    }

    /// An error about a stored event, saying which file holds it.
    pub(super) fn naming_the_file(&self, error: EventLogError) -> EventLogError {
        corrupt_in(&self.db_file, error)
    }

    /// Up to `limit` events of `stream` from `from_version`, none at or past `durable`.
    pub(super) fn stream_events(
        &self,
        stream: &str,
        from_version: u64,
        limit: usize,
        durable: u64,
    ) -> Result<Vec<RecordedEvent>> {
        self.read(|tree| {
            let start = stream_key(stream, from_version);
            let end = stream_key(stream, u64::MAX);
            let mut events = Vec::new();
            for entry in tree.range(start..=end) {
                if events.len() >= limit {
                    break;
                }
                let (_, value) = entry.map_err(storage)?;
                let position = be_u64(&value)?;
                if position >= durable {
                    break;
                }
                events.push(load(tree, position).map_err(|e| self.naming_the_file(e))?);
            }
            Ok(events)
        })
    }
}

/// Up to `limit` events of the log from `from`, none at or past `durable`, read off the
/// runtime's threads and decoded as they are taken.
pub(super) async fn page(
    shared: Arc<Shared>,
    from: u64,
    limit: usize,
    durable: u64,
) -> Result<Page> {
    if from >= durable || limit == 0 {
        return Ok(Page::new(None, std::iter::empty()));
    }
    let end = durable.min(from.saturating_add(limit as u64));
    // sled may have to load pages from disk, so the read runs on a blocking thread: a
    // runtime worker never waits for the disk, and a caller that polls this future once
    // and goes on working (as `subscribe` does during catch-up) gets the next page read on
    // the other core meanwhile. The read returns sled's own buffers, and the page decodes
    // them on the caller's thread, one event at a time, as they are taken.
    let reader = shared.clone();
    let entries = match tokio::runtime::Handle::try_current() {
        Ok(runtime) => runtime
            .spawn_blocking(move || reader.read(|tree| chunks::range(tree, from, end)))
            .await
            .map_err(blocking_failed)?,
        // Outside a tokio runtime there is no blocking pool: read in place.
        Err(_) => shared.read(|tree| chunks::range(tree, from, end)),
    }
    // A chunk that does not parse is named with its file, as an event that does not decode.
    .map_err(|e| shared.naming_the_file(e))?;
    let last = entries.last().map(|(position, _)| *position);
    let events = entries.into_iter().map(move |(position, value)| {
        decode_stored(position, &value).map_err(|e| shared.naming_the_file(e))
    });
    Ok(Page::new(last, events))
}

/// A corrupt event's error, saying which file holds it; any other error as it is.
pub(super) fn corrupt_in(file: &std::path::Path, error: EventLogError) -> EventLogError {
    match error {
        EventLogError::Corrupt { position, reason } => EventLogError::Corrupt {
            position,
            reason: format!("{reason} (in {})", file.display()),
        },
        other => other,
    }
}

/// A read on the blocking pool that did not finish: cancelled as the runtime shut down, or
/// panicked.
pub(super) fn blocking_failed(error: tokio::task::JoinError) -> EventLogError {
    if error.is_cancelled() {
        EventLogError::Closed
    } else {
        EventLogError::Storage(format!("reading the log failed: {error}"))
    }
}

/// The version of the stream's last stored event, if the stream exists.
pub(super) fn stream_head(tree: &sled::Tree, stream: &str) -> Result<Option<u64>> {
    match tree.scan_prefix(stream_prefix(STREAM, stream)).next_back() {
        Some(entry) => {
            let (key, _) = entry.map_err(storage)?;
            Ok(Some(be_u64(&key[key.len() - 8..])?))
        }
        None => Ok(None),
    }
}

pub(super) fn load(tree: &sled::Tree, position: u64) -> Result<RecordedEvent> {
    match chunks::find(tree, position)? {
        Some(value) => decode_stored(position, &value),
        None => Err(EventLogError::Corrupt {
            position,
            reason: "indexed event is missing".into(),
        }),
    }
}

/// Decodes the stored bytes of the event at `position` (one entry of a chunk) back into the
/// event, refusing one that does not parse or claims another position. Public so that the
/// fuzz targets and property tests (`tests/fuzz/harness`) drive the very function that replay
/// uses.
pub fn decode_stored(position: u64, bytes: &[u8]) -> Result<RecordedEvent> {
    let corrupt = |reason: String| EventLogError::Corrupt { position, reason };
    let event = pb::Event::decode(bytes).map_err(|e| corrupt(e.to_string()))?;
    let event = RecordedEvent::from_proto(event).map_err(corrupt)?;
    if event.position != position {
        return Err(corrupt(format!("it claims position {}", event.position)));
    }
    Ok(event)
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use uuid::Uuid;

    use super::*;

    #[test]
    fn heads_are_read_from_the_indexes() -> Result<()> {
        let db = sled::Config::new()
            .temporary(true)
            .open()
            .map_err(storage)?;
        let tree = db.open_tree("events").map_err(storage)?;
        assert_eq!(chunks::next_position(&tree)?, 0);
        assert_eq!(stream_head(&tree, "a")?, None);
        let mut position = 0u64;
        let mut log = chunks::Chunks::at(&tree, 0)?;
        for (stream, versions) in [("a", 3u64), ("a-b", 300), ("b", 1)] {
            for version in 0..versions {
                log.push(position, &[]);
                tree.insert(stream_key(stream, version), &position.to_be_bytes())
                    .map_err(storage)?;
                position += 1;
            }
        }
        let mut batch = sled::Batch::default();
        log.write(&mut batch);
        tree.apply_batch(batch).map_err(storage)?;
        assert_eq!(chunks::next_position(&tree)?, 304);
        assert_eq!(stream_head(&tree, "a")?, Some(2));
        assert_eq!(stream_head(&tree, "a-b")?, Some(299));
        assert_eq!(stream_head(&tree, "b")?, Some(0));
        assert_eq!(stream_head(&tree, "c")?, None);
        Ok(())
    }

    #[test]
    fn stored_events_are_checked_against_their_position() {
        let recorded = RecordedEvent {
            id: Uuid::new_v4(),
            stream: "s".into(),
            stream_version: 0,
            position: 5,
            event_type: "podium.test.A".into(),
            payload: vec![1, 2],
            recorded_at: SystemTime::now(),
        };
        let bytes = recorded.to_proto().encode_to_vec();
        assert_eq!(decode_stored(5, &bytes).unwrap(), recorded);
        assert!(matches!(
            decode_stored(6, &bytes),
            Err(EventLogError::Corrupt { position: 6, .. })
        ));
        assert!(matches!(
            decode_stored(5, &[0xff, 0xff]),
            Err(EventLogError::Corrupt { .. })
        ));
    }
}
