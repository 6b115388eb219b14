//! Recordings to and from files: [`hash_file`] takes a file's SHA-256 and size in one pass,
//! [`Client::upload_recording_file`] streams a file to podiumd in chunks, and
//! [`Client::fetch_recording_file`] downloads one into `<out>.part` (resuming from what is
//! there if asked), checks its SHA-256 and renames it to `<out>`. A file is never held in
//! memory, and file work and hashing run on the blocking pool. Each takes a progress callback
//! for bars and logs.

use std::{
    fs,
    io::{self, Read, Write},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use futures::StreamExt;
use sha2::{Digest, Sha256};
use tonic::{Code, Status};

use crate::{Client, pb};

/// Size of the chunks an upload sends (the server takes up to 4 MiB).
pub const UPLOAD_CHUNK_BYTES: usize = 1 << 20;

/// Why a transfer failed.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("{}: {error}", .path.display())]
    File { path: PathBuf, error: io::Error },
    #[error("{}", .0.message())]
    Rpc(#[from] Status),
    /// The bytes received are not what the server said they would be.
    #[error("{0}")]
    Corrupt(String),
}

/// How far a transfer has got, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub done: u64,
    pub total: u64,
}

/// What a fetch wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub path: PathBuf,
    pub size_bytes: u64,
    pub sha256: String,
    /// Bytes that were already in `<out>.part` and not fetched again.
    pub resumed_from: u64,
}

/// The SHA-256 (lowercase hex) and size of the file at `path`, read in chunks.
pub async fn hash_file(
    path: &Path,
    mut progress: impl FnMut(Progress) + Send + 'static,
) -> Result<(String, u64), TransferError> {
    let path = path.to_path_buf();
    blocking(path.clone(), move || {
        let mut file = fs::File::open(&path)?;
        let total = file.metadata()?.len();
        let (hasher, done) = hash_from(&mut file, Sha256::new(), |done| {
            progress(Progress { done, total })
        })?;
        Ok((hex::encode(hasher.finalize()), done))
    })
    .await
}

/// Feeds everything `reader` has into `hasher`, a chunk at a time.
fn hash_from(
    reader: &mut impl Read,
    mut hasher: Sha256,
    mut progress: impl FnMut(u64),
) -> io::Result<(Sha256, u64)> {
    let mut buffer = vec![0; UPLOAD_CHUNK_BYTES];
    let mut done = 0u64;
    loop {
        let n = reader.read(&mut buffer)?;
        if n == 0 {
            return Ok((hasher, done));
        }
        hasher.update(&buffer[..n]);
        done += n as u64;
        progress(done);
    }
}

impl Client {
    /// Uploads the file at `path` as a recording described by `header`. `sha256` and
    /// `size_bytes` are taken from the file if the header leaves them empty, and `request_id`
    /// is generated if empty: send the same header again to retry safely.
    pub async fn upload_recording_file(
        &self,
        path: &Path,
        mut header: pb::RecordingHeader,
        mut progress: impl FnMut(Progress) + Send + 'static,
    ) -> Result<pb::Recording, TransferError> {
        if header.sha256.is_empty() {
            let (sha256, size) = hash_file(path, |_| {}).await?;
            header.sha256 = sha256;
            header.size_bytes = size;
        }
        if header.request_id.is_empty() {
            header.request_id = Client::request_id();
        }
        let total = header.size_bytes;
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(|error| TransferError::File {
                path: path.to_path_buf(),
                error,
            })?;
        // A read error ends the request stream early; it is reported instead of the server's
        // "the upload ended after ..." that follows.
        let read_error: Arc<Mutex<Option<io::Error>>> = Arc::default();
        let failed = read_error.clone();
        let parts = async_stream::stream! {
            use pb::upload_recording_request::Part;
            yield pb::UploadRecordingRequest { part: Some(Part::Header(header)) };
            let mut sent = 0u64;
            loop {
                match read_chunk(&mut file).await {
                    Ok(chunk) if chunk.is_empty() => break,
                    Ok(chunk) => {
                        sent += chunk.len() as u64;
                        yield pb::UploadRecordingRequest { part: Some(Part::Chunk(chunk)) };
                        progress(Progress { done: sent, total });
                    }
                    Err(e) => {
                        *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                        break;
                    }
                }
            }
        };
        let result = self.recordings().upload_recording(parts).await;
        if let Some(source) = read_error.lock().unwrap_or_else(|p| p.into_inner()).take() {
            return Err(TransferError::File {
                path: path.to_path_buf(),
                error: source,
            });
        }
        result?
            .into_inner()
            .recording
            .ok_or_else(|| Status::internal("server sent no recording").into())
    }

    /// Downloads recording `recording_id` of `conference_id` into `<out>.part`, checks its
    /// SHA-256 and renames it to `out`. With `resume`, bytes already in `<out>.part` (from an
    /// interrupted fetch) are kept and only the rest is fetched. A download whose checksum does
    /// not match is deleted.
    pub async fn fetch_recording_file(
        &self,
        conference_id: &str,
        recording_id: &str,
        out: &Path,
        resume: bool,
        mut progress: impl FnMut(Progress) + Send,
    ) -> Result<Fetched, TransferError> {
        let part = part_path(out);
        // What an earlier fetch left counts towards the checksum.
        let (mut state, resumed_from) = if resume && part.exists() {
            let path = part.clone();
            let (file, hasher, have) = blocking(part.clone(), move || {
                let mut file = fs::OpenOptions::new().read(true).write(true).open(&path)?;
                let (hasher, have) = hash_from(&mut file, Sha256::new(), |_| {})?;
                Ok((file, hasher, have))
            })
            .await?;
            (Some((file, hasher)), have)
        } else {
            (None, 0)
        };
        let request = pb::FetchRecordingRequest {
            conference_id: conference_id.to_owned(),
            recording_id: recording_id.to_owned(),
            offset: resumed_from,
        };
        let mut stream = match self.recordings().fetch_recording(request).await {
            Ok(response) => response.into_inner(),
            Err(status) if status.code() == Code::OutOfRange => {
                return Err(TransferError::Corrupt(format!(
                    "{} holds {resumed_from} bytes, more than the recording has; delete it and fetch again",
                    part.display()
                )));
            }
            Err(status) => return Err(status.into()),
        };
        // Created only once the server has said yes, so a refused fetch leaves no file.
        if state.is_none() {
            let path = part.clone();
            let file = blocking(part.clone(), move || fs::File::create(&path)).await?;
            state = Some((file, Sha256::new()));
        }
        let mut offset = resumed_from;
        let mut expected: Option<(u64, String)> = None;
        while let Some(message) = stream.next().await {
            let message = message?;
            match &expected {
                None => expected = Some((message.size_bytes, message.sha256.clone())),
                Some((size, sha256))
                    if *size != message.size_bytes || *sha256 != message.sha256 =>
                {
                    return Err(TransferError::Corrupt(
                        "the server changed the recording's size or checksum mid-download".into(),
                    ));
                }
                Some(_) => {}
            }
            if message.offset != offset {
                return Err(TransferError::Corrupt(format!(
                    "expected bytes from offset {offset}, got offset {}",
                    message.offset
                )));
            }
            let total = message.size_bytes;
            if message.chunk.is_empty() {
                progress(Progress {
                    done: offset,
                    total,
                });
                continue;
            }
            offset += message.chunk.len() as u64;
            let (mut file, mut hasher) = state.take().ok_or_else(|| {
                TransferError::Corrupt("an earlier write of this download failed".into())
            })?;
            state = Some(
                blocking(part.clone(), move || {
                    hasher.update(&message.chunk);
                    file.write_all(&message.chunk)?;
                    Ok((file, hasher))
                })
                .await?,
            );
            progress(Progress {
                done: offset,
                total,
            });
        }
        let (size_bytes, sha256) =
            expected.ok_or_else(|| TransferError::Corrupt("the server sent nothing".into()))?;
        if offset != size_bytes {
            return Err(TransferError::Corrupt(format!(
                "the download stopped at {offset} of {size_bytes} bytes; run it again with --resume"
            )));
        }
        let (file, hasher) = state.ok_or_else(|| {
            TransferError::Corrupt("an earlier write of this download failed".into())
        })?;
        let actual = hex::encode(hasher.finalize());
        if actual != sha256 {
            let _ = fs::remove_file(&part);
            return Err(TransferError::Corrupt(format!(
                "the bytes received have SHA-256 {actual}, not {sha256} as registered; the download was deleted"
            )));
        }
        let (from, to) = (part.clone(), out.to_path_buf());
        blocking(part.clone(), move || {
            file.sync_all()?;
            fs::rename(&from, &to)
        })
        .await?;
        Ok(Fetched {
            path: out.to_path_buf(),
            size_bytes,
            sha256,
            resumed_from,
        })
    }
}

/// `talk.mp4` -> `talk.mp4.part`.
pub fn part_path(out: &Path) -> PathBuf {
    let mut name = out.as_os_str().to_owned();
    name.push(".part");
    PathBuf::from(name)
}

/// Up to [`UPLOAD_CHUNK_BYTES`] bytes; empty at the end of the file.
async fn read_chunk(file: &mut tokio::fs::File) -> io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut chunk = vec![0; UPLOAD_CHUNK_BYTES];
    let mut filled = 0;
    while filled < chunk.len() {
        let n = file.read(&mut chunk[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    chunk.truncate(filled);
    Ok(chunk)
}

async fn blocking<T: Send + 'static>(
    path: PathBuf,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> Result<T, TransferError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(io::Error::other)
        .and_then(|r| r)
        .map_err(|error| TransferError::File { path, error })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_file_is_hashed_in_chunks_with_progress() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("talk.mp4");
        let data: Vec<u8> = (0..(UPLOAD_CHUNK_BYTES * 2 + 7))
            .map(|i| (i % 251) as u8)
            .collect();
        fs::write(&path, &data).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let (sha256, size) = hash_file(&path, move |p| log.lock().unwrap().push(p))
            .await
            .unwrap();
        assert_eq!(sha256, hex::encode(Sha256::digest(&data)));
        assert_eq!(size, data.len() as u64);
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 3);
        assert_eq!(
            seen.last(),
            Some(&Progress {
                done: size,
                total: size
            })
        );
        let missing = hash_file(&dir.path().join("nope"), |_| {})
            .await
            .unwrap_err();
        assert!(missing.to_string().contains("nope"), "{missing}");
    }

    #[test]
    fn partial_downloads_sit_beside_the_target() {
        assert_eq!(
            part_path(Path::new("/tmp/talk.mp4")),
            PathBuf::from("/tmp/talk.mp4.part")
        );
    }
}
