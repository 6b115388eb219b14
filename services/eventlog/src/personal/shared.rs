//! Personal keys on a cluster: one key per person for every node, kept as shared secrets
//! ([`SharedSecrets`], sealed with the cluster key) under `person/<SHA-256 of the subject>`,
//! so that a name sealed on one node opens on every node, and erasing a person destroys their
//! key for every node (an "erased" mark, and the old value overwritten on the servers' disks).
//!
//! Sealing and opening stay synchronous: they read the keys this node holds in memory.
//! [`PersonalKeys::prepare`] makes the keys of events about to be appended first (durably, on
//! the cluster), and [`PersonalKeys::fetch_missing`] fetches the key of an event another node
//! sealed before it is opened, should this node's watch of the bucket not have brought it yet.

use std::sync::Arc;

use prost::{Message as _, Name};
use rand::RngCore as _;

use super::{KeyStore, KeyStoreError, Personal as _, PersonalKeys, Slot, SubjectDigest, digest};
use crate::{EventLogError, NewEvent, RecordedEvent, Result, Secret, SharedSecrets};
use podium_proto::v1 as pb;

/// What the shared secrets call personal keys: this, then the subject's digest in hex.
const PREFIX: &str = "person/";

fn name_of(subject: &str) -> String {
    name_of_digest(&digest(subject))
}

fn name_of_digest(digest: &SubjectDigest) -> String {
    format!("{PREFIX}{}", hex::encode(digest))
}

/// The digest a shared name holds.
fn digest_of(name: &str) -> Option<SubjectDigest> {
    hex::decode(name.strip_prefix(PREFIX)?)
        .ok()?
        .try_into()
        .ok()
}

fn slot_of(secret: Secret) -> Option<Slot> {
    match secret {
        Secret::Value(key) => key.try_into().ok().map(Slot::Key),
        Secret::Erased => Some(Slot::Erased),
    }
}

/// The person an event is about, if it is of a personal type.
fn subject_of(event_type: &str, payload: &[u8]) -> Option<String> {
    for_personal_type!(event_type, T => {
        T::decode(payload).ok().and_then(|message| message.subject())
    }, None)
}

/// The person whose key a sealed event needs, if it is sealed (and not erased).
fn sealed_subject_of(event_type: &str, payload: &[u8]) -> Option<String> {
    for_personal_type!(event_type, T => {
        let mut message = T::decode(payload).ok()?;
        message.sealed().take().filter(|sealed| !sealed.erased).map(|sealed| sealed.subject)
    }, None)
}

impl PersonalKeys {
    /// Keeps the keys in the cluster's `secrets` from now on, instead of the file.
    pub fn with_shared(mut self, secrets: Arc<SharedSecrets>) -> Self {
        self.shared = Some(secrets);
        self
    }

    /// True when the keys are a cluster's.
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// `subject`'s key, or the mark that it was erased, as this node holds it.
    pub(super) fn slot(&self, subject: &str) -> Option<Slot> {
        match &self.shared {
            Some(shared) => shared.cached(&name_of(subject)).and_then(slot_of),
            None => self.store.get(&digest(subject)),
        }
    }

    /// The key to seal `subject`'s fields with: created in the file when it has none; on a
    /// cluster, made by [`prepare`](Self::prepare) before.
    pub(super) fn slot_to_seal(&self, subject: &str) -> std::result::Result<Slot, KeyStoreError> {
        match &self.shared {
            Some(_) => self.slot(subject).ok_or_else(|| KeyStoreError::Invalid {
                path: "the cluster's shared secrets".into(),
                reason: format!("no key was made for {subject} before sealing"),
            }),
            None => self.store.get_or_create(&digest(subject)),
        }
    }

    /// On a cluster: makes (durably, on the cluster) the key of every person `events` are
    /// about, or takes the one another node made. Nothing to do off a cluster.
    pub async fn prepare(&self, events: &[NewEvent]) -> Result<()> {
        let Some(shared) = &self.shared else {
            return Ok(());
        };
        for event in events {
            if let Some(subject) = subject_of(&event.event_type, &event.payload) {
                shared
                    .get_or_create(&name_of(&subject), || {
                        let mut key = vec![0u8; 32];
                        rand::rng().fill_bytes(&mut key);
                        key
                    })
                    .await?;
            }
        }
        Ok(())
    }

    /// On a cluster: fetches the key a sealed `event` needs when this node does not hold it
    /// (another node made it a moment ago and the watch has not brought it yet), so that it
    /// opens. A key the cluster does not have either is not asked for again. A failure leaves
    /// the event to open as it can (its fields read erased) and is logged.
    pub async fn fetch_missing(&self, event: &RecordedEvent) {
        let Some(shared) = &self.shared else { return };
        let Some(subject) = sealed_subject_of(&event.event_type, &event.payload) else {
            return;
        };
        let name = name_of(&subject);
        let missed = |name: &str| {
            self.missed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains(name)
        };
        if shared.cached(&name).is_some() || missed(&name) {
            return;
        }
        match shared.get(&name).await {
            Ok(Some(_)) => {}
            Ok(None) => {
                self.missed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(name);
            }
            Err(error) => {
                tracing::error!(%error, position = event.position, "cannot fetch a personal key from the cluster")
            }
        }
    }

    /// Destroys `subject`'s key, durably: in the file, or on a cluster for every node. True
    /// when there was one to destroy.
    pub async fn erase_everywhere(self: &Arc<Self>, subject: &str) -> Result<bool> {
        match &self.shared {
            Some(shared) => shared.erase(&name_of(subject)).await,
            None => {
                let (keys, subject) = (self.clone(), subject.to_owned());
                // An overwrite in place and an fsync: on the blocking pool.
                tokio::task::spawn_blocking(move || keys.erase(&subject))
                    .await
                    .map_err(|e| EventLogError::Storage(format!("erasing: {e}")))?
                    .map_err(|e| EventLogError::Storage(e.to_string()))
            }
        }
    }

    /// On a cluster: gives it the keys of this node's file, which hold what was sealed while
    /// the node ran alone: a key the cluster lacks is added, and a person erased here is erased
    /// there. The number of keys added or erased.
    pub async fn share_file_keys(&self) -> Result<usize> {
        let Some(shared) = &self.shared else {
            return Ok(0);
        };
        let mut shared_now = 0;
        for (digest, slot) in self.store.slots() {
            let name = name_of_digest(&digest);
            let held = match shared.cached(&name) {
                Some(secret) => Some(secret),
                None => shared.get(&name).await?.map(|(secret, _)| secret),
            };
            match (slot, held) {
                (Slot::Erased, Some(Secret::Value(_))) => {
                    shared.erase(&name).await?;
                    shared_now += 1;
                }
                (Slot::Erased, None) => {
                    shared.write(&name, &Secret::Erased, None).await?;
                    shared_now += 1;
                }
                (Slot::Key(key), None) => {
                    shared
                        .write(&name, &Secret::Value(key.to_vec()), None)
                        .await?;
                    shared_now += 1;
                }
                _ => {}
            }
        }
        Ok(shared_now)
    }

    /// The keys as a key store's file, for a backup: the file itself, or on a cluster the keys
    /// this node holds (erased people's as erased).
    pub fn export(&self) -> std::result::Result<Vec<u8>, KeyStoreError> {
        match &self.shared {
            Some(shared) => Ok(KeyStore::file_of(
                shared
                    .cached_all(PREFIX)
                    .into_iter()
                    .filter_map(|(name, secret)| Some((digest_of(&name)?, slot_of(secret)?))),
            )),
            None => self.store.export(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_names_hold_the_subject_s_digest_only() {
        let subject = "attendee/odc2024/att-1";
        let name = name_of(subject);
        assert!(!name.contains("odc2024"));
        assert_eq!(digest_of(&name), Some(digest(subject)));
        assert_eq!(digest_of("person/zz"), None);
        assert_eq!(digest_of("poll-key/x"), None);
    }

    #[test]
    fn a_cluster_s_keys_back_up_as_a_key_store_file() {
        let file = KeyStore::file_of([
            (digest("a"), Slot::Key([3; 32])),
            (digest("b"), Slot::Erased),
        ]);
        assert_eq!(KeyStore::check(&file), Ok(2));
    }
}
