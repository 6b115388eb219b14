//! The recordings' bytes on disk, beside the log: `sha256/<64 hex>` holds each distinct content
//! once, `tmp/` holds uploads in progress. An upload streams into a temporary file and is hashed
//! as it arrives, so no file is ever held in memory; only when its size and SHA-256 match the
//! declared ones, and [`probe`] finds a video file podium can play, is it flushed and renamed
//! into place. Anything else (a mismatch, the size limit, something that is not video, a stream
//! that ends early, a cancelled request) removes the temporary file: an [`Upload`] that is
//! dropped before [`Upload::keep`] succeeded leaves nothing behind.
//!
//! Every file operation runs on tokio's blocking pool, hashing included.

use std::{
    fs,
    io::{self, Read, Seek, SeekFrom, Write},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use podium_eventlog::{SharedBlobs, durable};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use podium_proto::v1 as pb;

use super::{
    MAX_CHUNK_BYTES,
    probe::{self, ProbeError},
};
use crate::error::StatusError;

/// How long an object of the cluster's store is spared by a collection after it was put: an
/// upload another node kept and put a moment ago has its registration on the way to this node's
/// log. A later collection takes it if nothing registered it (on a cluster, one runs every
/// `SETTLE`: [`RecordingStore::collect_every`]).
pub const SETTLE: Duration = Duration::from_secs(600);

/// How long a periodic collection waits for the read model to catch up with the log.
const CATCH_UP: Duration = Duration::from_secs(30);

/// The content-addressed file store of recordings.
#[derive(Debug)]
pub struct RecordingStore {
    dir: PathBuf,
    max_bytes: u64,
    /// Held (shared) by an upload from the moment its file is in place until its registration
    /// is in the read model, and (exclusively) by [`RecordingStore::collect`]: a file is never
    /// collected between being kept and being referred to.
    gate: Arc<tokio::sync::RwLock<()>>,
    /// On a cluster: where every node's recordings are, for a node that lacks one.
    shared: Option<Arc<SharedBlobs>>,
}

/// What [`RecordingStore::collect`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Collected {
    pub files: u64,
    pub bytes: u64,
}

impl RecordingStore {
    /// Opens (or creates) the store in `dir`, accepting recordings of up to `max_bytes`.
    /// Uploads left unfinished by an earlier process are removed.
    pub fn open(dir: PathBuf, max_bytes: u64) -> io::Result<Self> {
        durable::create_dir_all(&dir.join("sha256"))?;
        let tmp = dir.join("tmp");
        durable::create_dir_all(&tmp)?;
        let mut removed = 0u32;
        for entry in fs::read_dir(&tmp)? {
            let path = entry?.path();
            if path.is_dir() {
                fs::remove_dir_all(&path)?;
            } else {
                fs::remove_file(&path)?;
            }
            removed += 1;
        }
        if removed > 0 {
            tracing::info!(removed, dir = %tmp.display(), "removed unfinished uploads");
        }
        // Content only: a fetch's temporary file a crash left is not a recording's.
        let mut stored = 0u64;
        for entry in fs::read_dir(dir.join("sha256"))? {
            let entry = entry?;
            if entry.file_name().to_str().is_some_and(is_sha256) {
                stored += entry.metadata()?.len();
            }
        }
        metrics::gauge!(crate::metrics::RECORDING_BYTES).set(stored as f64);
        Ok(Self {
            dir,
            max_bytes,
            gate: Arc::new(tokio::sync::RwLock::new(())),
            shared: None,
        })
    }

    /// Held while an upload's file is kept and registered: [`collect`](Self::collect) waits.
    pub async fn registering(&self) -> tokio::sync::RwLockReadGuard<'_, ()> {
        self.gate.read().await
    }

    /// Removes every stored file whose content `needed` (awaited once no registration is under
    /// way, so it can catch the read model up first) does not name: the files of deleted
    /// recordings that no other recording shares, and any left by a registration that never
    /// reached the log.
    pub async fn collect(
        &self,
        needed: impl Future<Output = Result<std::collections::HashSet<String>, StatusError>>,
    ) -> Result<Collected, StatusError> {
        let alone = self.gate.clone().write_owned().await;
        self.collect_alone(needed, alone).await
    }

    /// [`RecordingStore::collect`], holding the gate (`alone`). The sweep of the directory
    /// takes the guard with it to the blocking pool: should the caller stop waiting (a request
    /// timed out, a client went away), no upload moves a file in while the sweep, which goes
    /// on, could still remove it.
    async fn collect_alone(
        &self,
        needed: impl Future<Output = Result<std::collections::HashSet<String>, StatusError>>,
        alone: tokio::sync::OwnedRwLockWriteGuard<()>,
    ) -> Result<Collected, StatusError> {
        let needed = needed.await?;
        if let Some(shared) = &self.shared {
            for name in shared.names(SETTLE).await? {
                if !needed.contains(&name) {
                    shared.delete(&name).await?;
                }
            }
        }
        let dir = self.dir.join("sha256");
        let collected = blocking(move || {
            let _alone = alone;
            let mut collected = Collected::default();
            for entry in fs::read_dir(&dir)? {
                let entry = entry?;
                let name = entry.file_name();
                let name = name.to_str().unwrap_or_default();
                if needed.contains(name) {
                    continue;
                }
                let metadata = match entry.metadata() {
                    Ok(metadata) => metadata,
                    // Gone since the listing (a fetch's temporary file renamed): nothing to do.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                // A fetch from the cluster writes a temporary file here before its rename:
                // one in progress is spared, one a crash left behind goes once it is old.
                let young = metadata
                    .modified()
                    .ok()
                    .and_then(|at| at.elapsed().ok())
                    .is_none_or(|age| age < SETTLE);
                if !is_sha256(name) && young {
                    continue;
                }
                match durable::remove_file(&entry.path()) {
                    Ok(true) => {
                        collected.files += 1;
                        if is_sha256(name) {
                            collected.bytes += metadata.len();
                        }
                    }
                    Ok(false) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(collected)
        })
        .await?;
        if collected.files > 0 {
            metrics::gauge!(crate::metrics::RECORDING_BYTES).decrement(collected.bytes as f64);
            tracing::info!(
                files = collected.files,
                bytes = collected.bytes,
                "removed recordings' files that no recording refers to"
            );
        }
        Ok(collected)
    }

    /// On a cluster, collects every 10 minutes (`SETTLE`) for as long as the process runs: the
    /// shared copies a collection spared as too young, and those of recordings deleted on other
    /// nodes, go within about twice that. Nothing to do on one node, whose deletions remove
    /// their files at once.
    pub fn collect_every<F, Fut>(self: &Arc<Self>, needed: F)
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = Result<std::collections::HashSet<String>, StatusError>> + Send,
    {
        if self.shared.is_none() {
            return;
        }
        let store = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(SETTLE).await;
                let Some(store) = store.upgrade() else {
                    return;
                };
                // Never queued ahead of uploads (the gate is fair): skipped while one is
                // registering, and the read model given a bounded time.
                let Ok(alone) = store.gate.clone().try_write_owned() else {
                    tracing::debug!("an upload is registering; recordings collected next time");
                    continue;
                };
                let pending = needed();
                let needed = async {
                    tokio::time::timeout(CATCH_UP, pending).await.map_err(|_| {
                        StatusError::Unavailable("the read model did not catch up".into())
                    })?
                };
                if let Err(error) = store.collect_alone(needed, alone).await {
                    tracing::warn!(%error, "recordings' files no recording needs could not be removed; trying again later");
                }
            }
        });
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Where content with this SHA-256 (64 lowercase hex digits) is kept.
    pub fn content_path(&self, sha256: &str) -> PathBuf {
        Self::content_path_in(&self.dir, sha256)
    }

    /// Where a store in `dir` keeps content with this SHA-256, for tools that read or write
    /// the store's directory without opening it (a backup, a restore).
    pub fn content_path_in(dir: &std::path::Path, sha256: &str) -> PathBuf {
        dir.join("sha256").join(sha256)
    }

    /// The directory of uploads in progress.
    pub fn temp_dir(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    /// Refuses a declared size above the limit, before any byte is read.
    pub fn check_size(&self, size_bytes: u64) -> Result<(), StatusError> {
        if size_bytes > self.max_bytes {
            return Err(StatusError::TooLarge(format!(
                "size_bytes: {size_bytes} bytes is over this server's limit of {} bytes",
                self.max_bytes
            )));
        }
        Ok(())
    }

    /// Shares the recordings with the other nodes of a cluster through `blobs`: a kept upload
    /// is stored there too, and a recording this node lacks is fetched from there.
    pub fn with_shared(mut self, blobs: Arc<SharedBlobs>) -> Self {
        self.shared = Some(blobs);
        self
    }

    /// On a cluster: puts every recording this node holds that the cluster lacks (uploaded
    /// while the node ran alone) into the cluster's store. The number put.
    pub async fn share_local(&self) -> Result<usize, StatusError> {
        let Some(shared) = &self.shared else {
            return Ok(0);
        };
        let dir = self.dir.join("sha256");
        let names = blocking(move || {
            let mut names = Vec::new();
            for entry in fs::read_dir(&dir)? {
                if let Some(name) = entry?.file_name().to_str().filter(|n| is_sha256(n)) {
                    names.push(name.to_owned());
                }
            }
            Ok(names)
        })
        .await?;
        let mut put = 0;
        for name in names {
            if !shared.has(&name).await? {
                shared.put_file(&name, &self.content_path(&name)).await?;
                put += 1;
            }
        }
        Ok(put)
    }

    /// Starts receiving `size_bytes` bytes that should hash to `sha256`.
    pub async fn begin(&self, size_bytes: u64, sha256: &str) -> Result<Upload, StatusError> {
        self.check_size(size_bytes)?;
        let temp = self.temp_dir().join(format!("{}.part", Uuid::new_v4()));
        let path = temp.clone();
        let file = blocking(move || {
            fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
        })
        .await?;
        Ok(Upload {
            open: Some((file, Sha256::new())),
            target: self.content_path(sha256),
            temp,
            size_bytes,
            sha256: sha256.to_owned(),
            max_bytes: self.max_bytes,
            received: 0,
            checked: false,
            kept: false,
            shared: self.shared.clone(),
        })
    }

    /// Opens the content `sha256`, which must be `size_bytes` long, at `offset`.
    pub async fn open_at(
        &self,
        sha256: &str,
        size_bytes: u64,
        offset: u64,
    ) -> Result<ContentReader, StatusError> {
        let path = self.content_path(sha256);
        let open = || {
            let path = path.clone();
            blocking(move || {
                let mut file = fs::File::open(&path)?;
                let len = file.metadata()?.len();
                file.seek(SeekFrom::Start(offset))?;
                Ok((file, len))
            })
        };
        let mut opened = open().await;
        if let (Err(e), Some(shared)) = (&opened, &self.shared)
            && e.kind() == io::ErrorKind::NotFound
            && shared.fetch(sha256, &path).await?
        {
            tracing::info!(sha256, "fetched a recording from the cluster");
            metrics::gauge!(crate::metrics::RECORDING_BYTES).increment(size_bytes as f64);
            opened = open().await;
        }
        match opened {
            Ok((file, len)) if len == size_bytes => Ok(ContentReader { file: Some(file) }),
            Ok((_, len)) => {
                tracing::error!(
                    sha256,
                    len,
                    size_bytes,
                    "stored recording has the wrong size"
                );
                Err(StatusError::FailedPrecondition(format!(
                    "the stored file {sha256} is {len} bytes, not the {size_bytes} registered; upload it again"
                )))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(StatusError::FailedPrecondition(format!(
                    "the file {sha256} is not in this server's recording store (nor the cluster's); upload it again"
                )))
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// An upload in progress. Dropping it before [`Upload::keep`] succeeds removes its
/// temporary file, which is how a cancelled request or a failed check keeps nothing.
#[derive(Debug)]
pub struct Upload {
    /// Taken while a chunk is written on the blocking pool; `None` after a failed write.
    open: Option<(fs::File, Sha256)>,
    temp: PathBuf,
    target: PathBuf,
    size_bytes: u64,
    sha256: String,
    max_bytes: u64,
    received: u64,
    /// Size, SHA-256 and container checked; the file is closed.
    checked: bool,
    kept: bool,
    shared: Option<Arc<SharedBlobs>>,
}

impl Upload {
    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Hashes and writes the next chunk, refusing it if it would pass the limit or the
    /// declared size.
    pub async fn write(&mut self, chunk: Vec<u8>) -> Result<(), StatusError> {
        if chunk.len() > MAX_CHUNK_BYTES {
            return Err(StatusError::invalid(
                "chunk",
                format!(
                    "{} bytes; a chunk is at most {MAX_CHUNK_BYTES} bytes (4 MiB)",
                    chunk.len()
                ),
            ));
        }
        let total = self.received + chunk.len() as u64;
        if total > self.max_bytes {
            return Err(StatusError::TooLarge(format!(
                "the upload passed this server's limit of {} bytes; nothing was kept",
                self.max_bytes
            )));
        }
        if total > self.size_bytes {
            return Err(StatusError::invalid(
                "size_bytes",
                format!(
                    "the upload sent more than the {} bytes declared; nothing was kept",
                    self.size_bytes
                ),
            ));
        }
        if chunk.is_empty() {
            return Ok(());
        }
        let (mut file, mut hasher) = self.open.take().ok_or_else(failed_before)?;
        let (file, hasher) = blocking(move || {
            hasher.update(&chunk);
            file.write_all(&chunk)?;
            Ok((file, hasher))
        })
        .await?;
        self.open = Some((file, hasher));
        self.received = total;
        Ok(())
    }

    /// Checks the size and the SHA-256 of everything received and, if both match, flushes the
    /// file and probes it: the facts of a playable video file, or `INVALID_ARGUMENT` naming
    /// what it is not. Nothing is kept until [`Upload::keep`].
    pub async fn check(&mut self) -> Result<pb::MediaFacts, StatusError> {
        if self.received != self.size_bytes {
            return Err(StatusError::invalid(
                "size_bytes",
                format!(
                    "the upload ended after {} of the {} bytes declared; nothing was kept",
                    self.received, self.size_bytes
                ),
            ));
        }
        let (file, hasher) = self.open.take().ok_or_else(failed_before)?;
        let actual = hex::encode(hasher.finalize());
        if actual != self.sha256 {
            return Err(StatusError::invalid(
                "sha256",
                format!(
                    "{} does not match the bytes received (their SHA-256 is {actual}); nothing was kept",
                    self.sha256
                ),
            ));
        }
        let temp = self.temp.clone();
        let probed = blocking(move || {
            file.sync_all()?;
            drop(file);
            Ok(probe::probe(&temp))
        })
        .await?;
        match probed {
            Ok(media) => {
                self.checked = true;
                Ok(media)
            }
            Err(ProbeError::Io(e)) => Err(e.into()),
            Err(ProbeError::NotPlayable(why)) => Err(StatusError::invalid(
                "file",
                format!("{why}; nothing was kept"),
            )),
        }
    }

    /// Moves a checked upload into place (or drops it if that content is already stored).
    pub async fn keep(mut self) -> Result<(), StatusError> {
        if !self.checked {
            return Err(failed_before());
        }
        let (temp, target) = (self.temp.clone(), self.target.clone());
        let new = blocking(move || {
            if target.exists() {
                fs::remove_file(&temp)?;
                // An earlier upload may have stopped before making it durable.
                fs::File::open(&target)?.sync_all()?;
                durable::sync_parent(&target)?;
                Ok(false)
            } else {
                // The rename is durable only once the directories are.
                durable::rename(&temp, &target)?;
                Ok(true)
            }
        })
        .await?;
        if new {
            metrics::gauge!(crate::metrics::RECORDING_BYTES).increment(self.size_bytes as f64);
        }
        self.kept = true;
        if let Some(shared) = &self.shared {
            // On the cluster before the registration is stored, so that every node that reads
            // the registration can fetch the bytes.
            shared.put_file(&self.sha256, &self.target).await?;
        }
        Ok(())
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        if self.kept {
            return;
        }
        // One unlink; cheap enough to do here rather than on the blocking pool.
        match fs::remove_file(&self.temp) {
            Ok(()) => tracing::debug!(
                path = %self.temp.display(),
                received = self.received,
                "removed an unfinished upload"
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %self.temp.display(), error = %e, "cannot remove an unfinished upload")
            }
        }
    }
}

fn failed_before() -> StatusError {
    StatusError::Io(io::Error::other("an earlier write of this upload failed"))
}

/// Reads a stored recording chunk by chunk.
#[derive(Debug)]
pub struct ContentReader {
    /// Taken while a read runs on the blocking pool.
    file: Option<fs::File>,
}

impl ContentReader {
    /// Reads exactly `len` bytes (the caller knows how many are left).
    pub async fn read(&mut self, len: usize) -> Result<Vec<u8>, StatusError> {
        let mut file = self.file.take().ok_or_else(failed_before)?;
        let (file, chunk) = blocking(move || {
            let mut chunk = vec![0; len];
            file.read_exact(&mut chunk)?;
            Ok((file, chunk))
        })
        .await?;
        self.file = Some(file);
        Ok(chunk)
    }
}

/// Whether `text` is a SHA-256 as podium names content: 64 lowercase hex digits.
pub fn is_sha256(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(io::Error::other)?
}
