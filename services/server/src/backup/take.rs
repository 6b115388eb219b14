//! Taking a backup of a running node. The log's durable head is read once, under the lock
//! that creates and destroys anonymous polls' keys, so the keys and the events agree; appends
//! go on meanwhile (nothing waits for the backup), and the backup holds the events below that
//! head only. The recordings' files are those registered by events in the backup: an upload
//! still in flight is not registered yet, so no half recording is ever copied.

use std::{collections::HashMap, path::PathBuf, sync::Arc, time::SystemTime};

use futures::Stream;
use podium_access::TokenKeys;
use podium_eventlog::{
    EventLog,
    personal::{KEYS_FILE, PersonalKeys},
};
use podium_feedback::VoterKeys;
use podium_proto::v1::{self as pb, backup_record::Record};
use podium_status::RecordingStore;
use prost::Name;
use sha2::{Digest, Sha256};
use tokio::{io::AsyncReadExt, sync::watch};

use super::{
    BackupError, POLL_KEYS,
    format::{CHUNK_BYTES, Encoder, FORMAT_VERSION},
    recording_path,
};

/// Bytes gathered before a piece of the file goes out.
const PIECE_BYTES: usize = 256 << 10;
/// Events read from the log at a time.
const PAGE: u64 = 1024;

/// What a backup is taken from: the node's log, its data directory, and the polls' keys when
/// this process runs the polls.
#[derive(Clone)]
pub struct BackupSource {
    pub log: Arc<dyn EventLog>,
    pub data_dir: PathBuf,
    pub voter_keys: Option<Arc<VoterKeys>>,
    /// The tokens' signing keys, copied as they are in use (between rotations).
    pub token_keys: Arc<TokenKeys>,
    /// The per-person keys: read after the head, so every key an event below it was sealed
    /// with is in (keys are durable before their events), and an erased person's is zeros.
    pub personal: Arc<PersonalKeys>,
    /// The recordings' store, when this process has one: its gate is held while the head is
    /// read and every stored file opened, so a deletion's collection cannot take a file the
    /// backup needs (an open file stays readable after it is removed).
    pub recordings: Option<Arc<RecordingStore>>,
}

impl BackupSource {
    /// The backup file, in pieces. It ends early with an error if `stop` turns true (the
    /// server is shutting down) or anything cannot be read; a caller keeps the file only when
    /// the stream ended without one.
    pub fn stream(
        self,
        include_recordings: bool,
        mut stop: watch::Receiver<bool>,
    ) -> impl Stream<Item = Result<Vec<u8>, BackupError>> + Send {
        async_stream::try_stream! {
            let (head, keys, mut opened) = {
                let _still = match (&self.recordings, include_recordings) {
                    (Some(store), true) => Some(store.registering().await),
                    _ => None,
                };
                let (head, keys) = self.keys_and_head().await?;
                let opened = if include_recordings {
                    open_stored(&self.data_dir).await?
                } else {
                    HashMap::new()
                };
                (head, keys, opened)
            };
            tracing::info!(head, keys = keys.len(), include_recordings, "backup started");
            let mut encoder = Encoder::new();
            encoder.push(Record::Header(pb::BackupHeader {
                format_version: FORMAT_VERSION,
                podium_version: env!("CARGO_PKG_VERSION").to_owned(),
                taken_at: Some(SystemTime::now().into()),
                log_head: head,
                recordings_included: include_recordings,
            }));
            for (path, secret) in keys {
                encoder.push(Record::Key(pb::BackupKey { path, secret }));
            }

            // The recordings registered and not deleted up to the head, by id: their content.
            let mut recordings: Vec<(String, String, u64)> = Vec::new();
            let mut from = 0;
            while from < head {
                let page = self.log.read_page(from, (head - from).min(PAGE) as usize).await?;
                let before = from;
                for event in page {
                    let mut event = event?;
                    if event.position >= head {
                        break;
                    }
                    // An erased person's fields never reach a backup.
                    self.personal.drop_erased(&mut event);
                    if event.event_type == pb::RecordingRegistered::full_name()
                        && let Ok(pb::RecordingRegistered { recording: Some(r) }) = event.decode()
                    {
                        recordings.push((r.id, r.sha256, r.size_bytes));
                    } else if event.event_type == pb::RecordingDeleted::full_name()
                        && let Ok(pb::RecordingDeleted { recording: Some(r), .. }) = event.decode()
                    {
                        recordings.retain(|(id, ..)| *id != r.id);
                    }
                    from = event.position + 1;
                    encoder.push(Record::Event(event.to_proto()));
                    // Events are up to 1 MiB each: a piece goes out as soon as it is big enough.
                    if let Some(piece) = encoder.take(PIECE_BYTES) {
                        yield piece;
                    }
                }
                if from == before {
                    Err(BackupError::Corrupt(format!(
                        "the log ended at position {from}, below its head {head}"
                    )))?;
                }
                if *stop.borrow_and_update() {
                    Err(BackupError::ShuttingDown)?;
                }
            }

            // Each content once, in the order first registered.
            let mut distinct = std::collections::HashSet::new();
            let contents: Vec<(String, u64)> = recordings
                .into_iter()
                .filter(|(_, sha256, _)| distinct.insert(sha256.clone()))
                .map(|(_, sha256, size_bytes)| (sha256, size_bytes))
                .collect();
            if include_recordings {
                for (sha256, size_bytes) in &contents {
                    let path = recording_path(&self.data_dir, sha256);
                    let unreadable = |e: std::io::Error| {
                        BackupError::Recording(format!("the file of recording {sha256} cannot be read: {e}"))
                    };
                    let mut file = match opened.remove(sha256) {
                        Some(file) => file,
                        None => tokio::fs::File::open(&path).await.map_err(unreadable)?,
                    };
                    let len = file.metadata().await.map_err(unreadable)?.len();
                    if len != *size_bytes {
                        Err(BackupError::Recording(format!(
                            "the stored file of recording {sha256} is {len} bytes, not the {size_bytes} registered"
                        )))?;
                    }
                    encoder.push(Record::Recording(pb::BackupRecordingFile {
                        sha256: sha256.clone(),
                        size_bytes: *size_bytes,
                    }));
                    // Hashed as it is read: a file damaged on disk fails this backup, instead of
                    // making it one that no restore accepts.
                    let mut hasher = Sha256::new();
                    let mut left = len;
                    while left > 0 {
                        let mut chunk = vec![0u8; (left as usize).min(CHUNK_BYTES)];
                        file.read_exact(&mut chunk).await.map_err(unreadable)?;
                        left -= chunk.len() as u64;
                        hasher.update(&chunk);
                        encoder.push(Record::Chunk(chunk));
                        if let Some(piece) = encoder.take(PIECE_BYTES) {
                            yield piece;
                        }
                        if *stop.borrow_and_update() {
                            Err(BackupError::ShuttingDown)?;
                        }
                    }
                    let digest = hex::encode(hasher.finalize());
                    if digest != *sha256 {
                        Err(BackupError::Recording(format!(
                            "the stored file of recording {sha256} has changed on disk (its SHA-256 is now {digest})"
                        )))?;
                    }
                }
            }
            tracing::info!(head, recordings = contents.len(), include_recordings, "backup taken");
            yield encoder.finish();
        }
    }

    /// The keys beside the log, and the log's head read with the polls' keys held still.
    async fn keys_and_head(&self) -> Result<(u64, Vec<(String, Vec<u8>)>), BackupError> {
        let source = self.clone();
        tokio::task::spawn_blocking(move || {
            let poll_dir = source.data_dir.join(POLL_KEYS);
            let (head, polls) = match &source.voter_keys {
                Some(keys) => keys.export(|| source.log.head()),
                None => VoterKeys::read_dir(&poll_dir).map(|keys| (source.log.head(), keys)),
            }
            .map_err(BackupError::io(format!("reading {}", poll_dir.display())))?;
            let mut keys: Vec<(String, Vec<u8>)> = source
                .token_keys
                .key_files()
                .into_iter()
                // A node never rotated has no retired keys, and a backup no empty file.
                .filter(|(_, contents)| !contents.is_empty())
                .map(|(name, contents)| (name.to_owned(), contents))
                .collect();
            keys.extend(
                polls
                    .into_iter()
                    .map(|(name, key)| (format!("{POLL_KEYS}/{name}"), key)),
            );
            let personal = source.personal.export().map_err(|e| {
                BackupError::io(format!("reading {KEYS_FILE}"))(std::io::Error::other(e))
            })?;
            keys.push((KEYS_FILE.to_owned(), personal));
            Ok((head, keys))
        })
        .await
        .map_err(|e| BackupError::io("reading the keys")(std::io::Error::other(e)))?
    }
}

/// Every file in the data directory's recordings store, opened, by name (its SHA-256).
async fn open_stored(
    data_dir: &std::path::Path,
) -> Result<HashMap<String, tokio::fs::File>, BackupError> {
    // The directory the content paths are in (a path with an empty name).
    let dir = recording_path(data_dir, "");
    let mut opened = HashMap::new();
    let mut entries = match tokio::fs::read_dir(&dir).await {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(opened),
        Err(e) => return Err(BackupError::io(format!("reading {}", dir.display()))(e)),
    };
    let unreadable = |e| BackupError::io(format!("reading {}", dir.display()))(e);
    while let Some(entry) = entries.next_entry().await.map_err(unreadable)? {
        if let Some(name) = entry.file_name().to_str() {
            let file = tokio::fs::File::open(entry.path())
                .await
                .map_err(unreadable)?;
            opened.insert(name.to_owned(), file);
        }
    }
    Ok(opened)
}
