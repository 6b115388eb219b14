//! Anonymous polls' voter keys: one random key per poll turns an attendee's id into a voter
//! id (HMAC-SHA256), so that a poll counts one ballot per attendee without storing who chose
//! what. When the poll closes, its key is destroyed, and with it the last link from attendees
//! to their choices.
//!
//! On one node the keys are files in the data directory. On a cluster they are shared secrets
//! ([`SharedSecrets`], sealed with the cluster key), so that an attendee is the same voter on
//! every node, and closing the poll destroys the key for every node.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex},
};

use hmac::{Hmac, Mac};
use podium_eventlog::{Secret, SharedSecrets};
use rand::RngCore;
use sha2::Sha256;

/// A poll's key file: its name in the keys' directory and its bytes.
pub type KeyFile = (String, Vec<u8>);

/// Per-poll keys that turn an attendee id into a voter id for anonymous polls. A key lives in
/// `<dir>/<conference>--<poll>.key` until the poll closes, then it is deleted, and with it the
/// last link from attendees to their choices.
#[derive(Debug)]
pub struct VoterKeys {
    dir: PathBuf,
    /// Keys in use, so that a ballot costs no file read; one lock also makes creation race-free.
    /// `None` for a key this process destroyed: a ballot that raced the close must not create
    /// it again.
    cache: Mutex<HashMap<PathBuf, Option<Vec<u8>>>>,
    /// On a cluster: where the keys live instead of files.
    shared: Option<Arc<SharedSecrets>>,
}

/// What the shared secrets call a poll's key: this, then its file name.
const SHARED_PREFIX: &str = "poll-key/";

/// A new poll key.
fn new_key() -> Vec<u8> {
    let mut key = vec![0u8; 32];
    rand::rng().fill_bytes(&mut key);
    key
}

/// The voter id `key` gives `attendee`.
fn voter_id(key: &[u8], attendee: &str) -> std::io::Result<String> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).map_err(std::io::Error::other)?;
    mac.update(attendee.as_bytes());
    let digest = mac.finalize().into_bytes();
    Ok(format!("anon-{}", hex::encode(&digest[..16])))
}

impl VoterKeys {
    pub fn open(dir: PathBuf) -> std::io::Result<Self> {
        podium_eventlog::durable::create_dir_all(&dir)?;
        Ok(Self {
            dir,
            cache: Mutex::default(),
            shared: None,
        })
    }

    /// The keys of a cluster, shared by every node.
    pub fn shared(secrets: Arc<SharedSecrets>) -> Self {
        Self {
            dir: PathBuf::new(),
            cache: Mutex::default(),
            shared: Some(secrets),
        }
    }

    /// The keys of a cluster, given first the poll keys of `dir`, this node's directory from
    /// when it ran alone, so that its open anonymous polls keep their voters. A key the cluster
    /// has already is left as it is.
    pub async fn shared_with_files(
        secrets: Arc<SharedSecrets>,
        dir: &std::path::Path,
    ) -> std::io::Result<Self> {
        let dir = dir.to_owned();
        let files = tokio::task::spawn_blocking(move || Self::read_dir(&dir))
            .await
            .map_err(std::io::Error::other)??;
        for (file, key) in files {
            let name = format!("{SHARED_PREFIX}{file}");
            secrets
                .get_or_create(&name, || key)
                .await
                .map_err(std::io::Error::other)?;
        }
        Ok(Self::shared(secrets))
    }

    /// The voter id of `attendee` in an anonymous poll, wherever the keys live; creates the key
    /// on first use (durably, before any ballot uses it). `None` once the poll's key was
    /// destroyed: the poll is closed.
    pub async fn voter_of(
        self: &Arc<Self>,
        conference_id: &str,
        poll_id: &str,
        attendee: &str,
    ) -> std::io::Result<Option<String>> {
        let Some(shared) = &self.shared else {
            // The first ballot writes the poll's key file: file work goes to the blocking pool.
            let (keys, c, p, a) = (
                self.clone(),
                conference_id.to_owned(),
                poll_id.to_owned(),
                attendee.to_owned(),
            );
            return tokio::task::spawn_blocking(move || keys.voter(&c, &p, &a))
                .await
                .map_err(std::io::Error::other)?;
        };
        let name = format!("{SHARED_PREFIX}{}", Self::file_name(conference_id, poll_id));
        match shared.get_or_create(&name, new_key).await {
            Ok(Secret::Value(key)) => voter_id(&key, attendee).map(Some),
            Ok(Secret::Erased) => Ok(None),
            Err(error) => Err(std::io::Error::other(error)),
        }
    }

    /// Destroys the key of a closed poll, wherever the keys live, durably: once this returns,
    /// a power cut cannot bring it back, and on a cluster no node can use it.
    pub async fn close(
        self: &Arc<Self>,
        conference_id: &str,
        poll_id: &str,
    ) -> std::io::Result<()> {
        let Some(shared) = &self.shared else {
            // An fsync: on the blocking pool.
            let (keys, c, p) = (self.clone(), conference_id.to_owned(), poll_id.to_owned());
            return tokio::task::spawn_blocking(move || keys.destroy(&c, &p))
                .await
                .map_err(std::io::Error::other)?;
        };
        let name = format!("{SHARED_PREFIX}{}", Self::file_name(conference_id, poll_id));
        shared
            .erase(&name)
            .await
            .map(drop)
            .map_err(std::io::Error::other)
    }

    /// The name of a poll's key file in the keys' directory.
    pub fn file_name(conference_id: &str, poll_id: &str) -> String {
        format!("{conference_id}--{poll_id}.key")
    }

    fn path(&self, conference_id: &str, poll_id: &str) -> PathBuf {
        self.dir.join(Self::file_name(conference_id, poll_id))
    }

    /// The voter id of `attendee` in an anonymous poll; creates the key on first use. `None`
    /// once the poll's key was destroyed: the poll is closed.
    pub fn voter(
        &self,
        conference_id: &str,
        poll_id: &str,
        attendee: &str,
    ) -> std::io::Result<Option<String>> {
        let path = self.path(conference_id, poll_id);
        let mut cache = self
            .cache
            .lock()
            .map_err(|_| std::io::Error::other("voter keys poisoned"))?;
        let key = match cache.get(&path) {
            Some(Some(key)) => key.clone(),
            Some(None) => return Ok(None),
            None => {
                let key = match std::fs::read(&path) {
                    Ok(key) if key.len() == 32 => key,
                    _ => {
                        let key = new_key();
                        // Durable before any ballot hashed with it is acknowledged.
                        podium_eventlog::durable::write_private(&path, &key)?;
                        key
                    }
                };
                cache.insert(path.clone(), Some(key.clone()));
                key
            }
        };
        voter_id(&key, attendee).map(Some)
    }

    /// Every key on disk, as its file name and bytes, together with what `at` returns, both
    /// under the lock that creates and destroys keys. A backup reads the log's head in `at`: a
    /// key created after it is used only by ballots that commit after that head.
    pub fn export<T>(&self, at: impl FnOnce() -> T) -> std::io::Result<(T, Vec<KeyFile>)> {
        let _held = self
            .cache
            .lock()
            .map_err(|_| std::io::Error::other("voter keys poisoned"))?;
        let keys = match &self.shared {
            // As this node last saw them: a key created a moment ago on another node may be
            // missing, and so it is from a backup taken on that node a moment earlier.
            Some(shared) => shared
                .cached_all(SHARED_PREFIX)
                .into_iter()
                .filter_map(|(name, secret)| match secret {
                    Secret::Value(key) if key.len() == 32 => {
                        Some((name[SHARED_PREFIX.len()..].to_owned(), key))
                    }
                    _ => None,
                })
                .collect(),
            None => Self::read_dir(&self.dir)?,
        };
        Ok((at(), keys))
    }

    /// The keys in `dir` (of a data directory whose podiumd does not run the polls), as file
    /// names and bytes, sorted by name.
    pub fn read_dir(dir: &std::path::Path) -> std::io::Result<Vec<KeyFile>> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut keys = Vec::new();
        for entry in entries {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            // Only finished keys: `durable::write_private` writes through a temporary name.
            if !name.ends_with(".key") || !entry.file_type()?.is_file() {
                continue;
            }
            match std::fs::read(entry.path()) {
                Ok(key) if key.len() == 32 => keys.push((name, key)),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        keys.sort();
        Ok(keys)
    }

    /// Destroys the key of a closed poll, durably: once this returns, a power cut cannot
    /// bring it back.
    pub fn destroy(&self, conference_id: &str, poll_id: &str) -> std::io::Result<()> {
        let path = self.path(conference_id, poll_id);
        // Held while the file goes, so that no ballot in flight creates the key again.
        let mut cache = self
            .cache
            .lock()
            .map_err(|_| std::io::Error::other("voter keys poisoned"))?;
        cache.insert(path.clone(), None);
        podium_eventlog::durable::remove_file(&path).map(|_| ())
    }
}
