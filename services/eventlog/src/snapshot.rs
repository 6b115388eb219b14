//! Snapshots of read models: a model's state written to a file with the log position it
//! reflects, so that a restart loads it and replays only the tail of the log instead of all of
//! it. A snapshot is an optimisation and never changes what a model holds: one that does not
//! match the log it is loaded beside is ignored with a warning and the model is rebuilt from
//! the log.
//!
//! The file, `<dir>/<model>.snapshot`, written through [`crate::durable`]:
//!
//! | bytes | what |
//! | --- | --- |
//! | 8 | magic `PODSNAP\0` |
//! | 4 | the file layout's version ([`LAYOUT`]), little-endian |
//! | 4 | the model's format version ([`Snapshot::VERSION`]) |
//! | 8 | position: every event below it is in the model |
//! | 16 | the id of the event at `position - 1` (nil when 0), to tell another log |
//! | 8 | length of the body |
//! | n | the body: the model in postcard |
//! | 32 | SHA-256 of everything before it |

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    hash::BuildHasher,
    path::{Path, PathBuf},
};

use serde::{Serialize, Serializer, de::DeserializeOwned};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::Projection;

const MAGIC: &[u8; 8] = b"PODSNAP\0";
/// The layout of the file around the body; a model's own shape has its own version.
pub const LAYOUT: u32 = 1;
const HEADER: usize = 8 + 4 + 4 + 8 + 16 + 8;
const CHECKSUM: usize = 32;

/// A read model that can be written to a snapshot and loaded from one.
pub trait Snapshot: Projection {
    /// The version of the model's serialized shape. Bump it with every change to a type the
    /// snapshot holds: a file of another version is ignored and the model rebuilt from the log.
    const VERSION: u32;

    /// The model's state, in [`encode`]'s format.
    fn save(&self) -> Result<Vec<u8>, SnapshotError>;

    /// Replaces this model's state with the saved one, keeping what is not state (shared
    /// handles such as a word counter or a change notifier) and rebuilding any cache derived from
    /// the state. On error the model is left as it was.
    fn restore(&mut self, bytes: &[u8]) -> Result<(), SnapshotError>;
}

/// Why a snapshot was not written or not used.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("not a snapshot, or a truncated one")]
    Malformed,
    #[error("checksum does not match: the file is corrupt")]
    Corrupt,
    #[error("written in layout {found}, this build reads layout {LAYOUT}")]
    OtherLayout { found: u32 },
    #[error("model format {found}, this build reads format {expected}")]
    OtherVersion { found: u32, expected: u32 },
    #[error("taken at position {position}, past the log's head {head}")]
    PastHead { position: u64, head: u64 },
    #[error("taken of another log: event {position} is {found}, the snapshot expects {expected}")]
    OtherLog {
        position: u64,
        expected: Uuid,
        found: Uuid,
    },
    #[error("body does not decode: {0}")]
    Decode(String),
    #[error("reading the log: {0}")]
    Log(String),
    #[error("the read models' follower has stopped")]
    Stopped,
}

/// Serializes a model's state for [`Snapshot::save`].
pub fn encode<T: Serialize>(state: &T) -> Result<Vec<u8>, SnapshotError> {
    postcard::to_stdvec(state).map_err(|e| SnapshotError::Decode(e.to_string()))
}

/// Deserializes what [`encode`] wrote, for [`Snapshot::restore`].
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, SnapshotError> {
    postcard::from_bytes(bytes).map_err(|e| SnapshotError::Decode(e.to_string()))
}

/// A `HashMap` in key order (`#[serde(serialize_with = "...")]`), so that equal models write
/// equal bytes: that is how the tests compare a model loaded from a snapshot with a replayed one.
pub fn sorted_map<K, V, H, S>(map: &HashMap<K, V, H>, serializer: S) -> Result<S::Ok, S::Error>
where
    K: Ord + Serialize,
    V: Serialize,
    H: BuildHasher,
    S: Serializer,
{
    serializer.collect_map(map.iter().collect::<BTreeMap<_, _>>())
}

/// A `HashSet` in order, for the same reason as [`sorted_map`].
pub fn sorted_set<T, H, S>(set: &HashSet<T, H>, serializer: S) -> Result<S::Ok, S::Error>
where
    T: Ord + Serialize,
    H: BuildHasher,
    S: Serializer,
{
    serializer.collect_seq(set.iter().collect::<BTreeSet<_>>())
}

/// A shared `HashSet` in order.
pub fn sorted_shared_set<T, S>(
    set: &std::sync::Arc<HashSet<T>>,
    serializer: S,
) -> Result<S::Ok, S::Error>
where
    T: Ord + Serialize,
    S: Serializer,
{
    sorted_set(set, serializer)
}

/// What a snapshot file says about itself, and its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotFile {
    pub version: u32,
    pub position: u64,
    pub last_id: Uuid,
    pub body: Vec<u8>,
}

impl SnapshotFile {
    /// The file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + self.body.len() + CHECKSUM);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&LAYOUT.to_le_bytes());
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.position.to_le_bytes());
        out.extend_from_slice(self.last_id.as_bytes());
        out.extend_from_slice(&(self.body.len() as u64).to_le_bytes());
        out.extend_from_slice(&self.body);
        let checksum = Sha256::digest(&out);
        out.extend_from_slice(&checksum);
        out
    }

    /// Parses and checks a file's bytes: magic, checksum, then the layout and the model's
    /// version against `expected`. What it says about the log is checked by the caller.
    pub fn parse(bytes: &[u8], expected: u32) -> Result<Self, SnapshotError> {
        if bytes.len() < HEADER + CHECKSUM || &bytes[..8] != MAGIC {
            return Err(SnapshotError::Malformed);
        }
        let (content, checksum) = bytes.split_at(bytes.len() - CHECKSUM);
        if Sha256::digest(content)[..] != *checksum {
            return Err(SnapshotError::Corrupt);
        }
        let u32_at = |at: usize| {
            content
                .get(at..at + 4)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_le_bytes)
                .ok_or(SnapshotError::Malformed)
        };
        let u64_at = |at: usize| {
            content
                .get(at..at + 8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_le_bytes)
                .ok_or(SnapshotError::Malformed)
        };
        let layout = u32_at(8)?;
        if layout != LAYOUT {
            return Err(SnapshotError::OtherLayout { found: layout });
        }
        let version = u32_at(12)?;
        if version != expected {
            return Err(SnapshotError::OtherVersion {
                found: version,
                expected,
            });
        }
        let position = u64_at(16)?;
        let last_id = content
            .get(24..40)
            .and_then(|b| Uuid::from_slice(b).ok())
            .ok_or(SnapshotError::Malformed)?;
        let length = u64_at(40)?;
        let body = &content[HEADER..];
        if body.len() as u64 != length {
            return Err(SnapshotError::Malformed);
        }
        Ok(Self {
            version,
            position,
            last_id,
            body: body.to_vec(),
        })
    }
}

/// Where a model's snapshot lives in `dir`.
pub fn snapshot_path(dir: &Path, model: &str) -> PathBuf {
    dir.join(format!("{model}.snapshot"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> SnapshotFile {
        SnapshotFile {
            version: 3,
            position: 42,
            last_id: Uuid::new_v4(),
            body: vec![1, 2, 3, 4, 5],
        }
    }

    #[test]
    fn a_file_reads_back_as_written() {
        let f = file();
        assert_eq!(SnapshotFile::parse(&f.to_bytes(), 3).ok(), Some(f));
    }

    #[test]
    fn any_flipped_byte_or_cut_is_refused() {
        let bytes = file().to_bytes();
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x40;
            assert!(SnapshotFile::parse(&bad, 3).is_err(), "byte {at} flipped");
        }
        for len in 0..bytes.len() {
            assert!(
                SnapshotFile::parse(&bytes[..len], 3).is_err(),
                "cut at {len}"
            );
        }
    }

    #[test]
    fn another_version_is_refused() {
        assert!(matches!(
            SnapshotFile::parse(&file().to_bytes(), 4),
            Err(SnapshotError::OtherVersion {
                found: 3,
                expected: 4
            })
        ));
    }

    #[test]
    fn hash_maps_write_the_same_bytes_whatever_their_order() {
        #[derive(Serialize)]
        struct M {
            #[serde(serialize_with = "sorted_map")]
            m: HashMap<String, u64>,
            #[serde(serialize_with = "sorted_set")]
            s: HashSet<u64>,
        }
        let make = |keys: &mut dyn Iterator<Item = u64>| {
            let mut m = M {
                m: HashMap::new(),
                s: HashSet::new(),
            };
            for k in keys {
                m.m.insert(k.to_string(), k);
                m.s.insert(k);
            }
            encode(&m).ok()
        };
        assert_eq!(make(&mut (0..200)), make(&mut (0..200).rev()));
    }
}
