//! How the sled backend lays out its one tree: the encoding of its keys. Its key spaces share
//! the tree, so that a whole group commit is one atomic `apply_batch`:
//!
//! | key | value |
//! | --- | --- |
//! | `C` position (u64 BE) | a chunk: the events from that position on, each encoded as `podium.v1.Event` (see [`super::chunks`]) |
//! | `S` stream `0x00` version (u64 BE) | position |
//! | `J` event id (16 bytes) | position, version (the stream is the stored event's) |
//! | `F` | the layout's format, one byte (see [`super::format`]) |
//!
//! Big-endian numbers make sled's byte order the numeric order, so a range of `C` keys is a
//! range of positions and the last `S` key of a stream is its head. A stream name never holds
//! `0x00` (see `validate_append`), so one stream's keys never fall inside another's range.
//!
//! An event id is stored once in the whole log, whatever its stream: a retry to the same
//! stream is answered, and a request id reused for another stream is refused, never applied a
//! second time. Databases written before that rule index ids by stream under `I` (stream
//! `0x00` id); opening one moves them to `J` (see `ids::migrate`). Databases written before
//! chunks hold one event per key under `L` (position); opening one packs them into chunks
//! (see `chunks::migrate`).

use uuid::Uuid;

use crate::{EventLogError, Result};

/// The log: first position → a chunk of events.
pub(super) const CHUNK: u8 = b'C';
/// The log of databases from before chunks: position → event.
pub(super) const LOG: u8 = b'L';
/// The stream index: stream and version → position.
pub(super) const STREAM: u8 = b'S';
/// The id index: event id → position and version.
pub(super) const ID: u8 = b'J';
/// The format mark: the key is this byte alone, its value one byte (see [`super::format`]).
pub(super) const FORMAT: &[u8] = b"F";
/// The id index of databases from before ids were unique in the whole log: stream and event
/// id → position and version.
pub(super) const LEGACY_ID: u8 = b'I';

/// `C` + the position of a chunk's first event.
pub(super) fn chunk_key(first: u64) -> [u8; 9] {
    position_key(CHUNK, first)
}

/// `L` + position: the layout of older databases.
pub(super) fn log_key(position: u64) -> [u8; 9] {
    position_key(LOG, position)
}

fn position_key(space: u8, position: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = space;
    key[1..].copy_from_slice(&position.to_be_bytes());
    key
}

/// A key space's prefix for one stream: the space, the name, `0x00`.
pub(super) fn stream_prefix(space: u8, stream: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(stream.len() + 18);
    key.push(space);
    key.extend_from_slice(stream.as_bytes());
    key.push(0);
    key
}

/// `S` + stream + version.
pub(super) fn stream_key(stream: &str, version: u64) -> Vec<u8> {
    let mut key = stream_prefix(STREAM, stream);
    key.extend_from_slice(&version.to_be_bytes());
    key
}

/// `J` + event id.
pub(super) fn id_key(id: Uuid) -> [u8; 17] {
    let mut key = [0u8; 17];
    key[0] = ID;
    key[1..].copy_from_slice(id.as_bytes());
    key
}

/// `I` + stream + event id: the layout of older databases.
#[cfg(test)]
pub(super) fn legacy_id_key(stream: &str, id: Uuid) -> Vec<u8> {
    let mut key = stream_prefix(LEGACY_ID, stream);
    key.extend_from_slice(id.as_bytes());
    key
}

/// The event id of an `I` key (the key ends with it).
pub(super) fn legacy_id(key: &[u8]) -> Option<Uuid> {
    match key.first() {
        Some(&LEGACY_ID) if key.len() >= 19 => Uuid::from_slice(&key[key.len() - 16..]).ok(),
        _ => None,
    }
}

/// The big-endian number at the start of `bytes`.
pub(super) fn be_u64(bytes: &[u8]) -> Result<u64> {
    let array: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| EventLogError::Storage("index entry is shorter than 8 bytes".into()))?;
    Ok(u64::from_be_bytes(array))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_older_id_key_gives_back_its_id() {
        let id = Uuid::new_v4();
        for stream in ["a", "conference/c-1/poll/p-2"] {
            assert_eq!(legacy_id(&legacy_id_key(stream, id)), Some(id));
        }
        assert_eq!(legacy_id(&stream_key("a", 3)), None);
        assert_eq!(legacy_id(&id_key(id)), None);
        assert_eq!(legacy_id(b"I"), None);
    }

    #[test]
    fn chunk_keys_sort_by_position() {
        let pairs = [
            (0, 1),
            (255, 256),
            (65_535, 65_536),
            (u64::from(u32::MAX), 1 << 32),
            (1, u64::MAX),
        ];
        for (a, b) in pairs {
            assert!(chunk_key(a) < chunk_key(b), "{a} < {b}");
            assert_eq!(be_u64(&chunk_key(b)[1..]).unwrap(), b);
        }
    }

    #[test]
    fn a_streams_key_range_holds_only_that_stream() {
        let (lo, hi) = (stream_key("a", 0), stream_key("a", u64::MAX));
        assert!(stream_key("a", 1) < stream_key("a", 256) && stream_key("a", 256) < hi);
        for other in ["a/b", "ab", "a-", "a.", "A", "b", "conference/a"] {
            for version in [0, 1, u64::MAX] {
                let key = stream_key(other, version);
                assert!(
                    key < lo || key > hi,
                    "{other} {version} falls inside stream a"
                );
            }
        }
        assert!(!chunk_key(7).starts_with(&[STREAM]) && !chunk_key(7).starts_with(&[LOG]));
        assert!(!stream_key("a", 7).starts_with(&[ID]));
        assert!(!id_key(Uuid::nil()).starts_with(&[LEGACY_ID]));
    }

    #[test]
    fn short_index_values_are_errors_not_panics() {
        assert!(matches!(be_u64(&[1, 2, 3]), Err(EventLogError::Storage(_))));
        assert_eq!(be_u64(&[0, 0, 0, 0, 0, 0, 1, 0, 9]).unwrap(), 256);
    }
}
