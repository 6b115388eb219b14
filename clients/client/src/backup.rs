//! Taking a backup of a podiumd node into a file (`Diagnostics/Backup`, admin token). The bytes
//! go to `<out>.part`, which is fsynced and renamed to `<out>` only when the server has sent the
//! whole backup; a backup that fails half-way leaves no file that looks whole, and none is ever
//! overwritten.

use std::path::Path;

use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::{Client, TransferError, pb, recordings::part_path};

impl Client {
    /// Writes a backup of the node to `out`, which must not exist yet; returns its size in
    /// bytes. `progress` hears the bytes written so far. With `include_recordings` the
    /// recordings' files are in it too. Restore it with `podiumd restore`.
    pub async fn backup_to_file(
        &self,
        include_recordings: bool,
        out: &Path,
        mut progress: impl FnMut(u64) + Send,
    ) -> Result<u64, TransferError> {
        let file_error = |path: &Path| {
            let path = path.to_path_buf();
            move |error| TransferError::File { path, error }
        };
        if tokio::fs::try_exists(out).await.map_err(file_error(out))? {
            return Err(TransferError::File {
                path: out.to_path_buf(),
                error: std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "already exists; choose another name or remove it",
                ),
            });
        }
        let mut pieces = self
            .diagnostics()
            .backup(pb::BackupRequest { include_recordings })
            .await?
            .into_inner();
        let part = part_path(out);
        // Never another run's file: a `.part` already there is a backup in progress or one
        // that was stopped, for its owner to remove.
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&part)
            .await
            .map_err(|error| TransferError::File {
                path: part.clone(),
                error: if error.kind() == std::io::ErrorKind::AlreadyExists {
                    std::io::Error::new(
                        error.kind(),
                        "already exists: another backup is being written, or one was stopped (remove it)",
                    )
                } else {
                    error
                },
            })?;
        let mut written = 0u64;
        let copied: Result<(), TransferError> = async {
            while let Some(piece) = pieces.next().await {
                let piece = piece?;
                file.write_all(&piece.data)
                    .await
                    .map_err(file_error(&part))?;
                written += piece.data.len() as u64;
                progress(written);
            }
            file.sync_all().await.map_err(file_error(&part))?;
            Ok(())
        }
        .await;
        drop(file);
        if let Err(error) = copied {
            let _ = tokio::fs::remove_file(&part).await;
            return Err(error);
        }
        // A link, not a rename: it refuses to replace a file that appeared at `out` meanwhile.
        // Then the directory is fsynced, so the name survives a power cut.
        let (from, to) = (part.clone(), out.to_path_buf());
        tokio::task::spawn_blocking(move || {
            std::fs::hard_link(&from, &to)?;
            std::fs::remove_file(&from)?;
            let dir = match to.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
                _ => std::path::PathBuf::from("."),
            };
            std::fs::File::open(dir)?.sync_all()
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r)
        .map_err(file_error(out))?;
        Ok(written)
    }
}
