//! Large files every podiumd node of a cluster must be able to serve (recordings), in the
//! JetStream object store `<prefix>-blobs`, replicated like the log. Each node keeps its own
//! copy on disk for serving; this store is where a node that lacks one fetches it.

use std::{
    path::Path,
    time::{Duration, SystemTime},
};

use async_nats::jetstream::{
    self,
    object_store::{self, GetErrorKind, InfoErrorKind, ObjectStore},
    stream::StorageType,
};
use tokio::io::AsyncWriteExt as _;

use super::{open_or_create, read::nats};
use crate::{Result, durable};

/// The shared blobs of a cluster (see the module's documentation).
pub struct SharedBlobs {
    store: ObjectStore,
}

impl std::fmt::Debug for SharedBlobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedBlobs").finish_non_exhaustive()
    }
}

impl SharedBlobs {
    /// Opens the object store (creating it, with `replicas` copies, where it does not exist).
    pub(super) async fn open(
        client: async_nats::Client,
        prefix: &str,
        replicas: usize,
    ) -> Result<Self> {
        let js = jetstream::new(client);
        let bucket = format!("{prefix}-blobs");
        let store = open_or_create(
            || js.get_object_store(&bucket),
            || {
                js.create_object_store(object_store::Config {
                    bucket: bucket.clone(),
                    description: Some("podium's recordings, shared by every node".into()),
                    storage: StorageType::File,
                    num_replicas: replicas,
                    ..Default::default()
                })
            },
        )
        .await?;
        Ok(Self { store })
    }

    /// True when the cluster holds `name`.
    pub async fn has(&self, name: &str) -> Result<bool> {
        match self.store.info(name).await {
            Ok(info) => Ok(!info.deleted),
            Err(e) if e.kind() == InfoErrorKind::NotFound => Ok(false),
            Err(e) => Err(nats(e)),
        }
    }

    /// Stores the file at `path` as `name`, unless the cluster holds `name` already.
    pub async fn put_file(&self, name: &str, path: &Path) -> Result<()> {
        if self.has(name).await? {
            return Ok(());
        }
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(|e| crate::EventLogError::Storage(format!("{}: {e}", path.display())))?;
        self.store.put(name, &mut file).await.map_err(nats)?;
        Ok(())
    }

    /// Copies `name` from the cluster to `target`, durably (through a temporary file beside
    /// it). False when the cluster does not hold `name`.
    pub async fn fetch(&self, name: &str, target: &Path) -> Result<bool> {
        let mut object = match self.store.get(name).await {
            Ok(object) => object,
            Err(e) if e.kind() == GetErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(nats(e)),
        };
        let storage =
            |e: std::io::Error| crate::EventLogError::Storage(format!("{}: {e}", target.display()));
        let temp = target.with_extension(format!("fetch-{}", uuid::Uuid::new_v4().simple()));
        let copied = async {
            let mut file = tokio::fs::File::create(&temp).await?;
            tokio::io::copy(&mut object, &mut file).await?;
            file.flush().await?;
            file.sync_all().await?;
            let (temp, target) = (temp.clone(), target.to_owned());
            tokio::task::spawn_blocking(move || durable::rename(&temp, &target))
                .await
                .map_err(std::io::Error::other)?
        }
        .await;
        if copied.is_err() {
            let _ = tokio::fs::remove_file(&temp).await;
        }
        copied.map_err(storage)?;
        Ok(true)
    }

    /// Deletes `name` from the cluster (nothing when it holds none).
    pub async fn delete(&self, name: &str) -> Result<()> {
        match self.store.delete(name).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == object_store::DeleteErrorKind::NotFound => Ok(()),
            Err(e) => Err(nats(e)),
        }
    }

    /// The names the cluster holds that were put at least `settled_for` ago, by the time the
    /// putting node's clock gave each against this machine's clock (an object with no time
    /// counts as settled). A collection spares younger ones: an upload put by another node
    /// whose registration has not reached this node's log yet. Putting content the store holds
    /// already does not make it younger.
    pub async fn names(&self, settled_for: Duration) -> Result<Vec<String>> {
        use futures::StreamExt as _;
        let mut list = self.store.list().await.map_err(nats)?;
        let mut names = Vec::new();
        let now = SystemTime::now();
        while let Some(info) = list.next().await {
            let info = info.map_err(nats)?;
            let put_at = info.modified.map(SystemTime::from);
            let age = put_at.map(|at| now.duration_since(at).unwrap_or_default());
            if !info.deleted && age.is_none_or(|age| age >= settled_for) {
                names.push(info.name);
            }
        }
        Ok(names)
    }
}
