//! The key store: one random 256-bit key per person, in one file beside the log, and erasure
//! that overwrites a key where it lies.
//!
//! The file, `personal.keys`: the magic `PODKEYS1`, then fixed-size records, one per person
//! ever given a key or erased:
//!
//! | bytes | what |
//! | --- | --- |
//! | 1 | state: 1 holds a key, 2 erased, 3 void (a torn record, nobody's) |
//! | 32 | SHA-256 of the subject (`attendee/<conference>/<id>`) |
//! | 32 | the key; zeros once erased |
//! | 4 | the first 4 bytes of SHA-256 of the 65 bytes before |
//! | 3 | zero |
//!
//! A new key is appended and fsynced before any event sealed with it is appended to the log,
//! so an acknowledged event never lacks its key; fsyncs of keys created together are shared.
//! Erasure overwrites the record in place (zeros where the key was) and fsyncs before it
//! answers. A record that does not check at start-up is a torn write whose fsync never
//! finished, so nothing acknowledged relies on it: the last one is cut off; one in the middle
//! (an append that shared an fsync with a later one, or an erasure cut short) is made void,
//! its key zeroed, and its person has no key (an erasure that was cut short was never
//! answered; the key is gone either way).

use std::{
    collections::HashMap,
    fs::{File, OpenOptions},
    io::Read as _,
    os::unix::fs::{FileExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
    sync::Mutex,
};

use rand::RngCore as _;
use sha2::{Digest as _, Sha256};

const MAGIC: &[u8; 8] = b"PODKEYS1";
const RECORD: usize = 72;
const LIVE: u8 = 1;
const ERASED: u8 = 2;
const VOID: u8 = 3;

/// The SHA-256 of a subject: how the file names a person.
pub type SubjectDigest = [u8; 32];

/// A person's key, or the mark that they were erased.
#[derive(Clone, Copy)]
pub enum Slot {
    Key([u8; 32]),
    Erased,
}

/// Why the key store could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    #[error("personal key store {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("personal key store {path} is not one: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

struct Inner {
    slots: HashMap<SubjectDigest, (u64, Slot)>,
    /// The file's length: where the next record goes.
    len: u64,
}

/// The store of personal keys (see the module's documentation).
pub struct KeyStore {
    path: PathBuf,
    file: File,
    inner: Mutex<Inner>,
    /// The length up to which the file is known durable; held while fsyncing, so that keys
    /// created together share one fsync.
    synced: Mutex<u64>,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

pub fn digest(subject: &str) -> SubjectDigest {
    Sha256::digest(subject.as_bytes()).into()
}

fn checksum(body: &[u8]) -> [u8; 4] {
    let sum = Sha256::digest(body);
    [sum[0], sum[1], sum[2], sum[3]]
}

/// A record: its state, subject and key, then the checksum of the three.
fn frame(state: u8, digest: &SubjectDigest, key: &[u8; 32]) -> [u8; RECORD] {
    let mut bytes = [0u8; RECORD];
    bytes[0] = state;
    bytes[1..33].copy_from_slice(digest);
    bytes[33..65].copy_from_slice(key);
    let sum = checksum(&bytes[..65]);
    bytes[65..69].copy_from_slice(&sum);
    bytes
}

fn record(digest: &SubjectDigest, slot: Slot) -> [u8; RECORD] {
    match slot {
        Slot::Key(key) => frame(LIVE, digest, &key),
        Slot::Erased => frame(ERASED, digest, &[0; 32]),
    }
}

/// A record that belongs to nobody: all zeros but its state and checksum.
fn void_record() -> [u8; RECORD] {
    frame(VOID, &[0; 32], &[0; 32])
}

/// What a file's records hold: each subject's slot and offset, the records that did not check
/// and must be made void, and the length of the file's whole records.
type Parsed = (HashMap<SubjectDigest, (u64, Slot)>, Vec<u64>, u64);

fn parse(bytes: &[u8]) -> Result<Parsed, String> {
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err("it does not start with PODKEYS1".into());
    }
    let body = &bytes[MAGIC.len()..];
    let whole = body.len() / RECORD;
    let mut slots = HashMap::new();
    let mut torn = Vec::new();
    let mut len = MAGIC.len() as u64;
    for index in 0..whole {
        let rec = &body[index * RECORD..(index + 1) * RECORD];
        let offset = (MAGIC.len() + index * RECORD) as u64;
        let mut subject = [0u8; 32];
        subject.copy_from_slice(&rec[1..33]);
        let sound = checksum(&rec[..65]) == rec[65..69];
        if !sound && index + 1 == whole {
            // The last record's append was never made durable: nothing used its key.
            break;
        }
        len = offset + RECORD as u64;
        let slot = match (sound, rec[0]) {
            (true, LIVE) => {
                let mut key = [0u8; 32];
                key.copy_from_slice(&rec[33..65]);
                Slot::Key(key)
            }
            (true, ERASED) => Slot::Erased,
            (true, VOID) => continue,
            (true, other) => return Err(format!("record {index} has state {other}")),
            (false, _) => {
                torn.push(offset);
                continue;
            }
        };
        slots.insert(subject, (offset, slot));
    }
    Ok((slots, torn, len))
}

impl KeyStore {
    /// Opens the store at `path`, creating it (durably) when it does not exist.
    pub fn open(path: &Path) -> Result<Self, KeyStoreError> {
        let io = |source| KeyStoreError::Io {
            path: path.to_owned(),
            source,
        };
        if !path.exists() {
            crate::durable::write_private(path, MAGIC).map_err(io)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        let (slots, torn, len) = parse(&bytes).map_err(|reason| KeyStoreError::Invalid {
            path: path.to_owned(),
            reason,
        })?;
        for &offset in &torn {
            tracing::warn!(offset, path = %path.display(), "a personal key record was torn by a crash before its fsync: making it void");
            file.write_all_at(&void_record(), offset).map_err(io)?;
        }
        if len < bytes.len() as u64 {
            tracing::warn!(path = %path.display(), "cutting off a personal key that was never made durable");
        }
        file.set_len(len).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(Self {
            path: path.to_owned(),
            file,
            inner: Mutex::new(Inner { slots, len }),
            synced: Mutex::new(len),
        })
    }

    fn io(&self, source: std::io::Error) -> KeyStoreError {
        KeyStoreError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The subject's key, if it has one (`None`), or the mark that it was erased.
    pub fn get(&self, subject: &SubjectDigest) -> Option<Slot> {
        self.lock().slots.get(subject).map(|(_, slot)| *slot)
    }

    /// The subject's key, created (and durable) when it has none; `Slot::Erased` when the
    /// subject was erased.
    pub fn get_or_create(&self, subject: &SubjectDigest) -> Result<Slot, KeyStoreError> {
        let end = {
            let mut inner = self.lock();
            if let Some(&(offset, slot)) = inner.slots.get(subject) {
                // Another caller may have written it a moment ago and not fsynced it yet: no
                // event may be sealed with it before it is durable.
                drop(inner);
                self.sync_to(offset + RECORD as u64)?;
                return Ok(slot);
            }
            let mut key = [0u8; 32];
            rand::rng().fill_bytes(&mut key);
            let offset = inner.len;
            self.file
                .write_all_at(&record(subject, Slot::Key(key)), offset)
                .map_err(|e| self.io(e))?;
            inner.len = offset + RECORD as u64;
            inner.slots.insert(*subject, (offset, Slot::Key(key)));
            inner.len
        };
        self.sync_to(end)?;
        let slot = self.get(subject).unwrap_or(Slot::Erased);
        Ok(slot)
    }

    /// Returns once the file is durable up to `end`: one caller fsyncs for everyone waiting.
    fn sync_to(&self, end: u64) -> Result<(), KeyStoreError> {
        let mut synced = self
            .synced
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if *synced >= end {
            return Ok(());
        }
        let len = self.lock().len;
        self.file.sync_data().map_err(|e| self.io(e))?;
        *synced = len;
        Ok(())
    }

    /// Erases the subject's key where it lies (or records that the subject is erased when it
    /// had none), durably. True when a key was destroyed now.
    pub fn erase(&self, subject: &SubjectDigest) -> Result<bool, KeyStoreError> {
        let (destroyed, end) = {
            let mut inner = self.lock();
            let (offset, destroyed) = match inner.slots.get(subject) {
                Some((_, Slot::Erased)) => return Ok(false),
                Some((offset, Slot::Key(_))) => (*offset, true),
                None => (inner.len, false),
            };
            self.file
                .write_all_at(&record(subject, Slot::Erased), offset)
                .map_err(|e| self.io(e))?;
            inner.len = inner.len.max(offset + RECORD as u64);
            inner.slots.insert(*subject, (offset, Slot::Erased));
            (destroyed, inner.len)
        };
        // An overwrite in place is not covered by `synced`: fsync whatever it says.
        let mut synced = self
            .synced
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        self.file.sync_data().map_err(|e| self.io(e))?;
        *synced = (*synced).max(end);
        Ok(destroyed)
    }

    /// The whole file as it is now, for a backup: keys of erased people are zeros in it. Read
    /// under the lock that writes records, so no record is caught half written.
    pub fn export(&self) -> Result<Vec<u8>, KeyStoreError> {
        let inner = self.lock();
        let len = inner.len;
        let mut bytes = vec![0u8; len as usize];
        self.file
            .read_exact_at(&mut bytes, 0)
            .map_err(|e| self.io(e))?;
        Ok(bytes)
    }

    /// Every subject's key, or the mark that it was erased.
    pub fn slots(&self) -> Vec<(SubjectDigest, Slot)> {
        self.lock()
            .slots
            .iter()
            .map(|(digest, (_, slot))| (*digest, *slot))
            .collect()
    }

    /// A key store's file holding `slots`, for a backup of keys kept elsewhere (a cluster's).
    pub fn file_of(slots: impl IntoIterator<Item = (SubjectDigest, Slot)>) -> Vec<u8> {
        let mut bytes = MAGIC.to_vec();
        for (digest, slot) in slots {
            bytes.extend_from_slice(&record(&digest, slot));
        }
        bytes
    }

    /// Checks that `bytes` is a key store's file (for a restore): the number of records.
    pub fn check(bytes: &[u8]) -> Result<usize, String> {
        if !(bytes.len() - MAGIC.len().min(bytes.len())).is_multiple_of(RECORD) {
            return Err(format!(
                "its length {} is not the magic plus whole records",
                bytes.len()
            ));
        }
        let (slots, torn, _) = parse(bytes)?;
        if !torn.is_empty() {
            return Err(format!("{} records do not check", torn.len()));
        }
        Ok(slots.len())
    }

    /// How many people have a key and how many were erased.
    #[cfg(test)]
    pub(crate) fn counts(&self) -> (usize, usize) {
        let inner = self.lock();
        let erased = inner
            .slots
            .values()
            .filter(|(_, slot)| matches!(slot, Slot::Erased))
            .count();
        (inner.slots.len() - erased, erased)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_survive_a_reopen_and_erasure_overwrites_the_key_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("personal.keys");
        let (alice, bob) = (digest("attendee/c/alice"), digest("attendee/c/bob"));
        let store = KeyStore::open(&path).unwrap();
        let Slot::Key(key) = store.get_or_create(&alice).unwrap() else {
            panic!("a new subject gets a key");
        };
        store.get_or_create(&bob).unwrap();
        assert!(matches!(store.get_or_create(&alice).unwrap(), Slot::Key(k) if k == key));
        assert!(store.erase(&alice).unwrap());
        assert!(
            !store.erase(&alice).unwrap(),
            "a second erasure destroys nothing"
        );
        drop(store);

        let bytes = std::fs::read(&path).unwrap();
        assert!(
            !bytes.windows(32).any(|w| w == key),
            "the erased key's bytes are gone from the file"
        );
        let store = KeyStore::open(&path).unwrap();
        assert!(matches!(store.get(&alice), Some(Slot::Erased)));
        assert!(
            matches!(store.get_or_create(&alice).unwrap(), Slot::Erased),
            "an erased person never gets a key again"
        );
        assert!(matches!(store.get(&bob), Some(Slot::Key(_))));
        assert_eq!(store.counts(), (1, 1));
        assert_eq!(KeyStore::check(&store.export().unwrap()), Ok(2));
    }

    #[test]
    fn a_torn_last_record_is_cut_off_and_a_torn_middle_one_is_erased() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("personal.keys");
        let subjects: Vec<_> = (0..3).map(|i| digest(&format!("speaker/c/{i}"))).collect();
        let store = KeyStore::open(&path).unwrap();
        for subject in &subjects {
            store.get_or_create(subject).unwrap();
        }
        drop(store);
        let mut bytes = std::fs::read(&path).unwrap();
        // The middle record's key half overwritten (an erasure cut short), the last one's
        // checksum wrong (an append cut short), and half a record after it.
        let middle = MAGIC.len() + RECORD;
        bytes[middle + 40..middle + 50].fill(0);
        let last = MAGIC.len() + 2 * RECORD;
        bytes[last + 66] ^= 0xff;
        bytes.extend_from_slice(&[1; RECORD / 2]);
        std::fs::write(&path, &bytes).unwrap();

        let store = KeyStore::open(&path).unwrap();
        assert!(matches!(store.get(&subjects[0]), Some(Slot::Key(_))));
        assert!(
            store.get(&subjects[1]).is_none(),
            "a torn record is nobody's: its person is not erased, and gets a new key"
        );
        assert!(matches!(
            store.get_or_create(&subjects[1]).unwrap(),
            Slot::Key(_)
        ));
        assert!(store.get(&subjects[2]).is_none());
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            (MAGIC.len() + 3 * RECORD) as u64,
            "the torn tail cut off, the new key appended"
        );
        assert_eq!(store.counts(), (2, 0));
        assert!(KeyStore::check(&std::fs::read(&path).unwrap()).is_ok());
        assert!(KeyStore::check(b"PODKEYS1 and then some").is_err());
        assert!(KeyStore::check(b"nonsense").is_err());
    }
}
