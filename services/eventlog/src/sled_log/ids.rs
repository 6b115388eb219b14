//! The id index: where each event id is stored, one entry per id for the whole log.
//!
//! A stream's retry is answered from it (same id, same stream), and a request id reused for
//! another stream (another session's question, another poll's ballot) is refused rather than
//! stored a second time under a different stream. Databases written before ids were unique in
//! the whole log kept one entry per stream and id; [`migrate`] moves them when one is opened.

use std::collections::HashMap;

use uuid::Uuid;

use super::{
    keys::{LEGACY_ID, be_u64, id_key, legacy_id},
    read, storage,
};
use crate::{EventLogError, Result};

/// Where an id is stored: its stream, position and version there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Stored {
    pub stream: String,
    pub position: u64,
    pub version: u64,
}

/// The index entry's value: position, then version.
pub(super) fn entry(position: u64, version: u64) -> Vec<u8> {
    let mut value = position.to_be_bytes().to_vec();
    value.extend_from_slice(&version.to_be_bytes());
    value
}

/// Position and version in an index entry.
fn parse(value: &[u8]) -> Result<(u64, u64)> {
    Ok((be_u64(value)?, be_u64(value.get(8..).unwrap_or_default())?))
}

/// Where `id` is stored, if anywhere. The common case, a new id, costs one lookup; the stream
/// of a stored one is read from its event.
pub(super) fn stored(tree: &sled::Tree, id: Uuid) -> Result<Option<Stored>> {
    let Some(value) = tree.get(id_key(id)).map_err(storage)? else {
        return Ok(None);
    };
    let (position, version) = parse(&value)?;
    let event = read::load(tree, position)?;
    if event.id != id {
        return Err(EventLogError::Corrupt {
            position,
            reason: format!(
                "the id index names it for event {id}, but it is {}",
                event.id
            ),
        });
    }
    Ok(Some(Stored {
        stream: event.stream,
        position,
        version,
    }))
}

/// Moves an older database's per-stream id entries to the one-per-id index, in one atomic
/// batch (a crash midway leaves the old entries, and the next opening moves them again). Writes
/// nothing when there are none. An id such a database holds in several streams keeps its first
/// place (the lowest position); later writes of it to any stream are refused as reused.
pub(super) fn migrate(tree: &sled::Tree) -> Result<()> {
    let mut first: HashMap<Uuid, (u64, u64)> = HashMap::new();
    let mut batch = sled::Batch::default();
    let mut moved = 0u64;
    for entry in tree.scan_prefix([LEGACY_ID]) {
        let (key, value) = entry.map_err(storage)?;
        let id = legacy_id(&key).ok_or_else(|| {
            EventLogError::Storage("an older id index key does not end with an event id".into())
        })?;
        let (position, version) = parse(&value)?;
        let place = first.entry(id).or_insert((position, version));
        if position < place.0 {
            *place = (position, version);
        }
        batch.remove(key);
        moved += 1;
    }
    if moved == 0 {
        return Ok(());
    }
    for (id, (position, version)) in &first {
        batch.insert(id_key(*id).to_vec(), entry(*position, *version));
    }
    tree.apply_batch(batch).map_err(storage)?;
    tracing::info!(
        entries = moved,
        ids = first.len(),
        "event log: id index moved to one entry per id"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use prost::Message;

    use super::*;
    use crate::{
        RecordedEvent, sled_log,
        sled_log::keys::{legacy_id_key, log_key},
    };

    fn store(tree: &sled::Tree, position: u64, stream: &str, id: Uuid) -> Result<()> {
        let event = RecordedEvent {
            id,
            stream: stream.into(),
            stream_version: 0,
            position,
            event_type: "podium.test.A".into(),
            payload: vec![1],
            recorded_at: SystemTime::now(),
        };
        tree.insert(log_key(position), event.to_proto().encode_to_vec())
            .map_err(storage)?;
        tree.insert(legacy_id_key(stream, id), entry(position, 0))
            .map_err(storage)?;
        Ok(())
    }

    #[test]
    fn an_older_database_has_its_ids_moved_once() -> Result<()> {
        let db = sled::Config::new()
            .temporary(true)
            .open()
            .map_err(storage)?;
        let tree = db.open_tree("events").map_err(storage)?;
        let (only, twice, absent) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        // As before the rule: one id in two streams ("c" has it first).
        store(&tree, 0, "c", twice)?;
        store(&tree, 1, "a", only)?;
        store(&tree, 2, "b", twice)?;
        // Opening packs the events first (`SledEventLog::open`).
        sled_log::chunks::migrate(&tree, || Ok(()))?;
        assert_eq!(stored(&tree, only)?, None);
        migrate(&tree)?;
        let at = |stream: &str, position| Stored {
            stream: stream.into(),
            position,
            version: 0,
        };
        assert_eq!(stored(&tree, only)?, Some(at("a", 1)));
        assert_eq!(stored(&tree, twice)?, Some(at("c", 0)));
        assert_eq!(stored(&tree, absent)?, None);
        assert!(tree.scan_prefix([LEGACY_ID]).next().is_none());
        // Nothing is left to move: a second opening writes nothing.
        let checksum = tree.checksum().map_err(storage)?;
        migrate(&tree)?;
        assert_eq!(tree.checksum().map_err(storage)?, checksum);
        Ok(())
    }

    #[test]
    fn an_index_entry_naming_another_event_is_corruption() -> Result<()> {
        let db = sled::Config::new()
            .temporary(true)
            .open()
            .map_err(storage)?;
        let tree = db.open_tree("events").map_err(storage)?;
        store(&tree, 0, "a", Uuid::new_v4())?;
        sled_log::chunks::migrate(&tree, || Ok(()))?;
        let stray = Uuid::new_v4();
        tree.insert(id_key(stray), entry(0, 0)).map_err(storage)?;
        assert!(matches!(
            stored(&tree, stray),
            Err(EventLogError::Corrupt { position: 0, .. })
        ));
        Ok(())
    }
}
