//! Secrets every podiumd node on one cluster must share: the token signing keys (a token one
//! node issued works on every node) and anonymous polls' voter keys (an attendee is one voter
//! whichever node takes the ballot).
//!
//! They live in the JetStream key-value bucket `<prefix>-secrets`, replicated like the log.
//! Every value is sealed with the **cluster key**, 32 bytes every node is given
//! (`--cluster-key-file`) and the cluster never sees: `nonce (24 bytes) || XChaCha20-Poly1305
//! (cluster key, plain, associated data = the entry's key)`, where `plain` is one byte (1 a
//! value, 2 erased) and the value. The servers' disks, their backups and anyone who can read
//! the bucket learn nothing without the cluster key; a value moved to another entry does not
//! open.
//!
//! **Erasure.** An erased secret is not deleted but overwritten by an "erased" value, so that no
//! node can create it again. The bucket keeps two revisions of each key so that the secret is
//! still there to be erased for good: JetStream's message delete, which overwrites the message
//! in each server's message store. The bucket's stream allows deletes for that (the log's
//! stream does not). A crash between the two steps leaves the old revision; erasing again
//! finishes it. JetStream's replication log may hold the old value, sealed, until JetStream
//! compacts it.
//!
//! Reads go to the stream's leader (the stream allows no direct gets), so a compare-and-set
//! never starts from a replica's stale value.
//!
//! Every node keeps the latest value of each entry in memory, fed by a watch of the bucket and
//! by its own reads and writes, so that hot paths (verifying a token) read no network.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_nats::jetstream::{
    self,
    kv::{self, Operation},
    stream::{self, DiscardPolicy, StorageType},
};
use bytes::Bytes;
use chacha20poly1305::{
    KeyInit as _, XChaCha20Poly1305, XNonce,
    aead::{Aead as _, Payload},
};
use futures::StreamExt as _;
use rand::RngCore as _;
use tokio::{sync::watch, task::JoinHandle};

use super::{
    SETTLE, open_or_create,
    read::{lost_a_race, nats},
    refused_while_settling, while_cluster_settles,
};
use crate::{EventLogError, Result};

/// How long opening waits for every secret to be in memory.
const LOAD: Duration = Duration::from_secs(30);
/// How long creating a secret goes on while another node's write of it is in flight.
const RACE: Duration = Duration::from_secs(10);
/// Length of the cluster key.
pub const CLUSTER_KEY_LEN: usize = 32;
/// The entry that proves, at start-up, that this node was given the same cluster key as the
/// nodes before it.
const CHECK: &str = "cluster-key-check";
const CHECK_VALUE: &[u8] = b"podium cluster key";
const VALUE: u8 = 1;
const ERASED: u8 = 2;

/// A shared secret's latest state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Secret {
    Value(Vec<u8>),
    /// It was erased: it may never be created again.
    Erased,
}

/// An entry as this node last saw it: its state and its revision (the bucket's sequence).
type Seen = (Secret, u64);

/// The shared secrets of a cluster (see the module's documentation).
pub struct SharedSecrets {
    store: kv::Store,
    stream: stream::Stream,
    cipher: Arc<XChaCha20Poly1305>,
    seen: Arc<Mutex<HashMap<String, Seen>>>,
    changed: watch::Sender<u64>,
    watcher: JoinHandle<()>,
}

impl std::fmt::Debug for SharedSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedSecrets").finish_non_exhaustive()
    }
}

impl Drop for SharedSecrets {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

/// An entry's key in the bucket: the name with every byte a key may not hold written `=XX`.
fn key_of(name: &str) -> String {
    let mut key = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'/') {
            key.push(byte as char);
        } else {
            key.push_str(&format!("={byte:02X}"));
        }
    }
    key
}

/// The name [`key_of`] wrote as `key`.
fn name_of(key: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(key.len());
    let mut rest = key.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        if byte == b'=' {
            let mut decoded = [0u8];
            hex::decode_to_slice(tail.get(..2)?, &mut decoded).ok()?;
            bytes.push(decoded[0]);
            rest = &tail[2..];
        } else {
            bytes.push(byte);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

fn seal(cipher: &XChaCha20Poly1305, key: &str, secret: &Secret) -> Result<Bytes> {
    let plain = match secret {
        Secret::Value(value) => [&[VALUE][..], value].concat(),
        Secret::Erased => vec![ERASED],
    };
    let mut nonce = [0u8; 24];
    rand::rng().fill_bytes(&mut nonce);
    let sealed = cipher
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: &plain,
                aad: key.as_bytes(),
            },
        )
        .map_err(|_| EventLogError::Storage("sealing a shared secret failed".into()))?;
    Ok([&nonce[..], &sealed].concat().into())
}

/// The secret a stored value holds, or `None` when it does not open with this cluster key.
fn open(cipher: &XChaCha20Poly1305, key: &str, value: &[u8]) -> Option<Secret> {
    let nonce = <[u8; 24]>::try_from(value.get(..24)?).ok()?;
    let plain = cipher
        .decrypt(
            &XNonce::from(nonce),
            Payload {
                msg: &value[24..],
                aad: key.as_bytes(),
            },
        )
        .ok()?;
    match plain.split_first()? {
        (&VALUE, value) => Some(Secret::Value(value.to_vec())),
        (&ERASED, []) => Some(Secret::Erased),
        _ => None,
    }
}

/// Keeps what `entry` says in `seen`, unless `seen` already holds a later revision. True when
/// it changed what `seen` holds.
fn remember(seen: &Mutex<HashMap<String, Seen>>, name: &str, entry: Option<Seen>) -> bool {
    let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
    match (seen.get(name), entry) {
        (Some((_, known)), Some((_, revision))) if *known >= revision => false,
        (_, Some(entry)) => {
            seen.insert(name.to_owned(), entry);
            true
        }
        // A delete is never written: a key that reads as absent was read from behind.
        (_, None) => false,
    }
}

impl SharedSecrets {
    /// Opens the bucket (creating it, with `replicas` copies, where it does not exist), checks
    /// that `cluster_key` is the key the other nodes were given, and starts watching.
    pub(super) async fn open(
        client: async_nats::Client,
        prefix: &str,
        replicas: usize,
        cluster_key: &[u8; CLUSTER_KEY_LEN],
    ) -> Result<Self> {
        let js = jetstream::new(client);
        let bucket = format!("{prefix}-secrets");
        let stream_name = format!("KV_{bucket}");
        // A key-value bucket's stream, as async-nats would make it, but one that allows
        // deletes: erasure overwrites the old revision.
        let stream = open_or_create(
            || js.get_stream(&stream_name),
            || {
                js.get_or_create_stream(stream::Config {
                    name: stream_name.clone(),
                    description: Some("podium's shared secrets, sealed".into()),
                    subjects: vec![format!("$KV.{bucket}.>")],
                    max_messages_per_subject: 2,
                    storage: StorageType::File,
                    num_replicas: replicas,
                    allow_rollup: true,
                    deny_delete: false,
                    deny_purge: false,
                    allow_direct: false,
                    discard: DiscardPolicy::New,
                    ..Default::default()
                })
            },
        )
        .await?;
        let config = &stream.cached_info().config;
        if config.deny_delete || config.max_messages_per_subject < 2 || config.allow_direct {
            return Err(EventLogError::Storage(format!(
                "the stream {stream_name} must allow deletes, keep two revisions per key and \
                 serve reads from its leader only: erasure and compare-and-set rely on it"
            )));
        }
        let store = while_cluster_settles(|| js.get_key_value(&bucket)).await?;
        let cipher = Arc::new(XChaCha20Poly1305::new(&(*cluster_key).into()));
        let seen = Arc::default();
        let changed = watch::Sender::new(0);
        let (loaded, mut ready) = watch::channel(false);
        let watcher = tokio::spawn(watch_bucket(
            store.clone(),
            cipher.clone(),
            Arc::clone(&seen),
            changed.clone(),
            loaded,
        ));
        let secrets = Self {
            store,
            stream,
            cipher,
            seen,
            changed,
            watcher,
        };
        let checked = secrets.get_or_create(CHECK, || CHECK_VALUE.to_vec()).await;
        if matches!(&checked, Ok(Secret::Value(value)) if value == CHECK_VALUE) {
            // Every secret in memory before anything reads them: the bucket holds one at least
            // (the check), so the watch comes to its last one.
            if tokio::time::timeout(LOAD, ready.wait_for(|loaded| *loaded))
                .await
                .is_err()
            {
                tracing::warn!(
                    "the shared secrets are not all loaded yet; reading the rest as needed"
                );
            }
        }
        match checked {
            Ok(Secret::Value(value)) if value == CHECK_VALUE => Ok(secrets),
            Ok(_) | Err(EventLogError::Corrupt { .. }) => Err(EventLogError::Storage(format!(
                "the cluster key does not open the secrets the other podiumd nodes keep in the \
                 bucket {bucket}: give every node the same --cluster-key-file"
            ))),
            Err(error) => Err(error),
        }
    }

    /// The secret `name` as this node last saw it, without asking the cluster: for hot paths.
    /// Another node's write reaches it within moments.
    pub fn cached(&self, name: &str) -> Option<Secret> {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .map(|(secret, _)| secret.clone())
    }

    /// Every secret whose name starts with `prefix`, as this node last saw them, sorted by name.
    pub fn cached_all(&self, prefix: &str) -> Vec<(String, Secret)> {
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<(String, Secret)> = seen
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .map(|(name, (secret, _))| (name.clone(), secret.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }

    /// Counts the changes this node has seen, its own and other nodes'.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Keeps what this node read or wrote, and tells [`changes`](Self::changes) when it is new.
    fn learn(&self, name: &str, entry: Seen) {
        if remember(&self.seen, name, Some(entry)) {
            self.changed.send_modify(|n| *n += 1);
        }
    }

    /// The secret `name` and its revision, as the cluster has it now; asked again while the
    /// cluster settles.
    pub async fn get(&self, name: &str) -> Result<Option<(Secret, u64)>> {
        let key = key_of(name);
        let entry = while_cluster_settles(|| self.store.entry(key.as_str())).await?;
        let seen = match entry {
            Some(entry) if entry.operation == Operation::Put => {
                let secret = open(&self.cipher, &key, &entry.value).ok_or_else(|| {
                    EventLogError::Corrupt {
                        position: entry.revision,
                        reason: format!(
                            "the shared secret {name} does not open with this cluster key"
                        ),
                    }
                })?;
                Some((secret, entry.revision))
            }
            _ => None,
        };
        if let Some(entry) = &seen {
            self.learn(name, entry.clone());
        }
        Ok(seen)
    }

    /// The secret `name`; when there is none, the value `make` gives, stored first (durably, on
    /// the cluster). When two nodes create it at once, both get the one stored first.
    pub async fn get_or_create(
        &self,
        name: &str,
        make: impl FnOnce() -> Vec<u8>,
    ) -> Result<Secret> {
        if let Some(secret) = self.cached(name) {
            return Ok(secret);
        }
        if let Some((secret, _)) = self.get(name).await? {
            return Ok(secret);
        }
        // Made only when the cluster has none.
        let created = Secret::Value(make());
        let deadline = tokio::time::Instant::now() + RACE;
        loop {
            if self.write(name, &created, None).await?.is_some() {
                return Ok(created);
            }
            // Another node's write came first. The read below may not see it yet (it was
            // still in flight), and it may yet fail: read, and create, again.
            if tokio::time::Instant::now() >= deadline {
                return Err(EventLogError::Storage(format!(
                    "the shared secret {name} was neither created nor found within {RACE:?}; \
                     try again"
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            if let Some((secret, _)) = self.get(name).await? {
                return Ok(secret);
            }
        }
    }

    /// Stores `secret` as `name`, if `name`'s revision is still `revision` (`None`: if it has
    /// none). The new revision, or `None` when another write came first.
    pub async fn write(
        &self,
        name: &str,
        secret: &Secret,
        revision: Option<u64>,
    ) -> Result<Option<u64>> {
        let key = key_of(name);
        let sealed = seal(&self.cipher, &key, secret)?;
        let started = tokio::time::Instant::now();
        let written = loop {
            let written = self.write_once(&key, sealed.clone(), revision).await;
            match &written {
                // Nothing was stored: send it again. (Not after a time-out, which may have
                // stored it: sent again, it would lose to itself and report a race.)
                Err((false, error))
                    if refused_while_settling(error) && started.elapsed() < SETTLE =>
                {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                _ => break written,
            }
        };
        match written {
            Ok(revision) => {
                self.learn(name, (secret.clone(), revision));
                Ok(Some(revision))
            }
            Err((true, _)) => Ok(None),
            Err((false, error)) => Err(nats(error)),
        }
    }

    /// One compare-and-set of the sealed value of `key`: its new revision, or whether it lost
    /// to another write and what went wrong.
    async fn write_once(
        &self,
        key: &str,
        sealed: Bytes,
        revision: Option<u64>,
    ) -> std::result::Result<u64, (bool, String)> {
        match revision {
            None => self.store.create(key, sealed).await.map_err(|e| {
                (
                    e.kind() == kv::CreateErrorKind::AlreadyExists || lost_a_race(&e),
                    e.to_string(),
                )
            }),
            // A wrong revision is JetStream's 10071, which `lost_a_race` reads.
            Some(revision) => self
                .store
                .update(key, sealed, revision)
                .await
                .map_err(|e| (lost_a_race(&e), e.to_string())),
        }
    }

    /// Erases the secret `name` for good (see the module's documentation), on every node. True
    /// when a value was destroyed now.
    pub async fn erase(&self, name: &str) -> Result<bool> {
        let destroyed = loop {
            let current = self.get(name).await?;
            let (destroyed, revision) = match current {
                Some((Secret::Erased, _)) => break false,
                Some((Secret::Value(_), revision)) => (true, Some(revision)),
                None => (false, None),
            };
            if self.write(name, &Secret::Erased, revision).await?.is_some() {
                break destroyed;
            }
        };
        // Every revision before the "erased" one is overwritten on disk.
        let key = key_of(name);
        let mut history = self.store.history(key.as_str()).await.map_err(nats)?;
        let mut earlier = Vec::new();
        while let Some(entry) = history.next().await {
            let entry = entry.map_err(nats)?;
            if entry.operation != Operation::Put
                || open(&self.cipher, &key, &entry.value) != Some(Secret::Erased)
            {
                earlier.push(entry.revision);
            }
        }
        for revision in earlier {
            if let Err(error) = self.stream.delete_message(revision).await {
                // Another node erasing at the same time may have deleted it first.
                if self.stream.get_raw_message(revision).await.is_ok() {
                    return Err(nats(error));
                }
            }
        }
        Ok(destroyed)
    }

    /// Every secret whose name starts with `prefix`, as the cluster has them now.
    pub async fn list(&self, prefix: &str) -> Result<Vec<(String, Secret)>> {
        let mut keys = self.store.keys().await.map_err(nats)?;
        let mut names = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(nats)?;
            if let Some(name) = name_of(&key).filter(|name| name.starts_with(prefix)) {
                names.push(name);
            }
        }
        let mut secrets = Vec::with_capacity(names.len());
        for name in names {
            if let Some((secret, _)) = self.get(&name).await? {
                secrets.push((name, secret));
            }
        }
        Ok(secrets)
    }
}

/// Follows the bucket: every entry's latest state into `seen`. Starts again after a lost
/// connection.
async fn watch_bucket(
    store: kv::Store,
    cipher: Arc<XChaCha20Poly1305>,
    seen: Arc<Mutex<HashMap<String, Seen>>>,
    changed: watch::Sender<u64>,
    loaded: watch::Sender<bool>,
) {
    loop {
        match store.watch_with_history(">").await {
            Ok(mut entries) => {
                while let Some(entry) = entries.next().await {
                    let Ok(entry) = entry else { break };
                    let last = entry.delta == 0;
                    let Some(name) = name_of(&entry.key) else {
                        if last {
                            loaded.send_replace(true);
                        }
                        continue;
                    };
                    let state = match entry.operation {
                        Operation::Put => match open(&cipher, &entry.key, &entry.value) {
                            Some(secret) => Some((secret, entry.revision)),
                            None => {
                                tracing::error!(secret = %name, "a shared secret does not open with this node's cluster key");
                                if last {
                                    loaded.send_replace(true);
                                }
                                continue;
                            }
                        },
                        Operation::Delete | Operation::Purge => None,
                    };
                    if remember(&seen, &name, state) {
                        changed.send_modify(|n| *n += 1);
                    }
                    // In memory before opening goes on.
                    if last {
                        loaded.send_replace(true);
                    }
                }
            }
            Err(error) => tracing::warn!(%error, "cannot watch the shared secrets; trying again"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_keys() {
        for name in ["token-keyring", "poll-key/conf 1/ünï.c*de", "a=b.c>d"] {
            let key = key_of(name);
            assert!(
                key.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_/=".contains(&b)),
                "{key}"
            );
            assert_eq!(name_of(&key).as_deref(), Some(name));
        }
    }

    #[test]
    fn a_sealed_value_opens_only_under_its_key_and_its_name() {
        let cipher = XChaCha20Poly1305::new(&[7u8; 32].into());
        let other = XChaCha20Poly1305::new(&[8u8; 32].into());
        let secret = Secret::Value(b"voter key".to_vec());
        let sealed = seal(&cipher, "a", &secret).unwrap();
        assert!(!sealed.windows(9).any(|w| w == b"voter key"));
        assert_eq!(open(&cipher, "a", &sealed), Some(secret));
        assert_eq!(open(&cipher, "b", &sealed), None);
        assert_eq!(open(&other, "a", &sealed), None);
        let erased = seal(&cipher, "a", &Secret::Erased).unwrap();
        assert_eq!(open(&cipher, "a", &erased), Some(Secret::Erased));
    }

    #[test]
    fn a_later_revision_is_never_replaced_by_an_earlier_one() {
        let seen = Mutex::default();
        let value = |v: &[u8]| Secret::Value(v.to_vec());
        assert!(remember(&seen, "k", Some((value(b"1"), 5))));
        assert!(!remember(&seen, "k", Some((value(b"0"), 4))));
        assert!(remember(&seen, "k", Some((Secret::Erased, 6))));
        assert_eq!(seen.lock().unwrap()["k"], (Secret::Erased, 6));
        assert!(
            !remember(&seen, "k", None),
            "an absent read removes nothing"
        );
        assert_eq!(seen.lock().unwrap()["k"], (Secret::Erased, 6));
    }
}
