//! Taking a backup of a podiumd node into a file (`Diagnostics/Backup`, admin token). The bytes
//! go to `<out>.part`, which is fsynced and renamed to `<out>` only when the server has sent the
//! whole backup; a backup that fails half-way leaves no file that looks whole.

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
        let mut file = tokio::fs::File::create(&part)
            .await
            .map_err(file_error(&part))?;
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
        tokio::fs::rename(&part, out)
            .await
            .map_err(file_error(out))?;
        Ok(written)
    }
}
