//! The signing keys of a cluster: one ring for every node, kept as a shared secret
//! ([`SharedSecrets`], sealed with the cluster key) instead of files in each node's data
//! directory, so that a token any node issued verifies on every node and a rotation on one
//! node reaches them all.

use std::{
    path::Path,
    sync::{Arc, Weak},
    time::{Duration, SystemTime},
};

use podium_eventlog::{Secret, SharedSecrets, durable};
use uuid::Uuid;

use super::{Bootstrap, Rotation, TokenKeys};
use crate::keyring::{KEY_FILE, Keyring, Rotating, SHARED_NAME};

fn invalid(reason: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, reason)
}

/// The ring as the cluster holds it now, and its revision; `None` when there is none yet.
async fn read(shared: &SharedSecrets) -> std::io::Result<Option<(Keyring, u64)>> {
    match shared
        .get(SHARED_NAME)
        .await
        .map_err(std::io::Error::other)?
    {
        Some((Secret::Value(bytes), revision)) => Keyring::from_shared(&bytes)
            .map(|ring| Some((ring, revision)))
            .map_err(invalid),
        Some((Secret::Erased, _)) => Err(invalid("the shared key ring was erased".into())),
        None => Ok(None),
    }
}

impl TokenKeys {
    /// Loads the cluster's ring, or creates it when this is the cluster's first node, and
    /// keeps following it; writes the admin token file into `data_dir` as
    /// [`bootstrap`](Self::bootstrap) does.
    pub async fn bootstrap_shared(
        data_dir: &Path,
        configured_admin: Option<String>,
        shared: Arc<SharedSecrets>,
    ) -> std::io::Result<Bootstrap> {
        durable::create_dir_all(data_dir)?;
        // A node that ran alone before brings its keys, so the tokens it issued keep working:
        // the first such node to start gives the cluster its ring.
        let own = match data_dir.join(KEY_FILE).exists() {
            true => Some(Keyring::load(data_dir, SystemTime::now())?.0),
            false => None,
        };
        let own_shared = own.as_ref().map(Keyring::to_shared);
        let mut new_key = false;
        let stored = shared
            .get_or_create(SHARED_NAME, || {
                own_shared.clone().unwrap_or_else(|| {
                    new_key = true;
                    Keyring::generated().to_shared()
                })
            })
            .await
            .map_err(std::io::Error::other)?;
        let Secret::Value(bytes) = stored else {
            return Err(invalid("the shared key ring was erased".into()));
        };
        let ring = Keyring::from_shared(&bytes).map_err(invalid)?;
        let known = |id: &str| ring.current.id == id || ring.retired.iter().any(|r| r.key.id == id);
        if let Some(own) = &own
            && !known(&own.current.id)
        {
            tracing::warn!(
                own = %own.current.id,
                cluster = %ring.current.id,
                "this node's token keys in its data directory are not the cluster's: tokens it issued alone are refused"
            );
        }
        let mut keys = TokenKeys::with_ring(ring, Some(data_dir.to_owned()), configured_admin);
        keys.shared = Some(shared);
        // The admin token file of a node that joins is signed again if another node's key
        // signed it: a node's own file is checked like a restarted one's.
        let bootstrap = keys.with_admin_token(data_dir, new_key)?;
        Ok(bootstrap)
    }

    /// Keeps this node's ring equal to the cluster's: another node's rotation is taken up
    /// within moments, and open streams re-check their tokens. Does nothing off a cluster.
    pub fn follow_shared(self: &Arc<Self>) {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let keys: Weak<Self> = Arc::downgrade(self);
        let mut changes = shared.changes();
        tokio::spawn(async move {
            while changes.changed().await.is_ok() {
                let Some(keys) = keys.upgrade() else { return };
                keys.take_up_latest().await;
            }
        });
    }

    /// Uses the cluster's ring, as this node last saw it, from now on if it is not the ring in
    /// use already, and signs the admin token file again with its key.
    async fn take_up_latest(self: &Arc<Self>) {
        let Some(shared) = &self.shared else { return };
        {
            // Read and replaced under one lock: what the shared secrets hold only moves forward,
            // so whichever caller comes last installs the newest ring.
            let mut current = self.ring.write().unwrap_or_else(|p| p.into_inner());
            let Some(Secret::Value(bytes)) = shared.cached(SHARED_NAME) else {
                return;
            };
            // Compared as stored: whole seconds.
            if current.to_shared() == bytes {
                return;
            }
            match Keyring::from_shared(&bytes) {
                Ok(ring) => {
                    tracing::info!(key = %ring.current.id, "signing keys changed");
                    *current = ring;
                }
                Err(error) => {
                    tracing::error!(%error, "cannot read the cluster's key ring");
                    return;
                }
            }
        }
        self.rotations.send_modify(|n| *n += 1);
        // A file written and fsynced: on the blocking pool.
        let keys = self.clone();
        if let Err(error) = tokio::task::spawn_blocking(move || keys.sign_admin_token_again()).await
        {
            tracing::error!(%error, "could not sign the admin token file again");
        }
    }

    /// Rotates the key: on a cluster, for every node (refused when another node rotated at
    /// the same moment); otherwise in this node's data directory.
    pub async fn rotate_everywhere(
        self: &Arc<Self>,
        grace: Duration,
        request: Option<Uuid>,
    ) -> std::io::Result<(Rotation, bool)> {
        let Some(shared) = self.shared.clone() else {
            let keys = self.clone();
            return tokio::task::spawn_blocking(move || keys.rotate(grace, request))
                .await
                .map_err(std::io::Error::other)?;
        };
        let (ring, revision) = read(&shared)
            .await?
            .ok_or_else(|| invalid("the cluster has no key ring".into()))?;
        // A retry, to this node or another: the cluster's ring remembers the first answer.
        let (next, rotation) = match ring.rotation_for(grace, SystemTime::now(), request) {
            Rotating::Answered(first) => return Ok((first, false)),
            Rotating::Next(next, rotation) => (next, rotation),
        };
        let written = shared
            .write(
                SHARED_NAME,
                &Secret::Value(next.to_shared()),
                Some(revision),
            )
            .await
            .map_err(std::io::Error::other)?;
        if written.is_none() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::WouldBlock,
                "another node rotated the signing key at the same moment; nothing changed here, \
                 try again",
            ));
        }
        // The ring the cluster holds now: this one, or a later one another node wrote since.
        self.take_up_latest().await;
        Ok((rotation, true))
    }
}
