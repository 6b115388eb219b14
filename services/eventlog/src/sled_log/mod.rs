//! The sled backend of [`EventLog`]: podium's embedded default.
//!
//! One sled tree holds the log and its indexes (the key spaces are in [`keys`]), so that a
//! whole group commit is one atomic `apply_batch`. All writes go through one writer thread
//! ([`writer`]): group commit, so durability costs one sled flush and one `fdatasync` of the
//! database file per group (see [`sync`]: sled's flush alone does not survive a power cut),
//! not per append. Reads ([`read`]) never look past the durable head the writer advances
//! after that fdatasync. This file holds the handle that ties them together: opening,
//! closing, and the [`EventLog`] methods.

mod chunks;
mod format;
mod ids;
mod import;
mod keys;
mod read;
mod sync;
mod writer;

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    thread::JoinHandle,
};

use async_trait::async_trait;
use tokio::sync::{broadcast, mpsc, oneshot};
use uuid::Uuid;

pub use chunks::decode_chunk;
pub use import::SledImport;
pub use read::decode_stored;
use sync::SledFiles;
use writer::Writer;

use crate::{
    AppendOutcome, CommittedBatch, EventLog, EventLogError, ExpectedVersion, NewEvent, Page,
    RecordedEvent, Result, durable,
};

/// Longest stream name accepted, in bytes.
pub const MAX_STREAM_LEN: usize = 256;
/// Most events in one append.
pub const MAX_BATCH_EVENTS: usize = 1024;
/// Largest single payload, in bytes.
pub const MAX_PAYLOAD: usize = 1 << 20;

/// Tuning of the sled backend.
#[derive(Debug, Clone)]
pub struct SledOptions {
    /// Most append requests the writer folds into one flush.
    pub max_group: usize,
    /// Append requests that may wait for the writer before callers wait to enqueue.
    pub queue: usize,
    /// Committed batches buffered for live subscribers before a slow one lags.
    pub live_buffer: usize,
    /// sled's page cache, in bytes.
    pub cache_bytes: u64,
    /// Free space the file system must keep: below it appends are refused before sled
    /// writes, so that sled never meets a full disk (which leaves it refusing reads too). 0
    /// turns the check off; a file system that reports no capacity is not checked either.
    pub reserve_bytes: u64,
}

impl Default for SledOptions {
    fn default() -> Self {
        Self {
            max_group: 512,
            queue: 4096,
            live_buffer: 4096,
            cache_bytes: 256 << 20,
            reserve_bytes: 64 << 20,
        }
    }
}

struct AppendRequest {
    stream: String,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
    reply: oneshot::Sender<Result<AppendOutcome>>,
}

/// How long opening waits for sled's file lock to be let go before refusing (2 s was not
/// always enough on a loaded 2-core CI machine; a second podiumd on the same data directory is
/// still refused, only later).
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// sled refuses to open a database another handle still holds with its own error, of kind
/// `Other` ("could not acquire lock on ..."), not the lock's `WouldBlock`.
fn lock_held(error: &std::io::Error) -> bool {
    error.kind() == std::io::ErrorKind::WouldBlock
        || error.to_string().starts_with("could not acquire lock")
}

/// The open sled database and its one tree.
#[derive(Clone)]
struct Store {
    db: sled::Db,
    tree: sled::Tree,
}

impl Store {
    /// Opens (or creates) the database in `path`, with everything in it durable: the files
    /// for the writer to sync after each flush come with it.
    fn open(path: &Path, cache_bytes: u64) -> Result<(Self, SledFiles)> {
        durable::create_dir_all(path).map_err(|e| unsyncable(path, e))?;
        let config = sled::Config::new().path(path).cache_capacity(cache_bytes);
        // sled's file lock may still be held by a log closed a moment ago (its flusher thread
        // lets go just after the close returns; seen in CI) or by a process that is exiting:
        // wait for it a little before refusing.
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        let opened = loop {
            // sled recovers the database while it opens; should it panic on what it finds
            // there, podiumd refuses to start with an error naming the file, as for any other
            // damage.
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| config.open())) {
                Ok(Err(sled::Error::Io(e)))
                    if lock_held(&e) && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => break other,
            }
        };
        let db = opened
            .map_err(|panic| {
                let why = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                EventLogError::Storage(format!(
                    "{} cannot be recovered: sled panicked while opening it: {why}",
                    path.join("db").display()
                ))
            })?
            .map_err(|e| unopenable(path, e))?;
        let tree = db.open_tree("events").map_err(|e| unopenable(path, e))?;
        let files = SledFiles::open(path).map_err(|e| unsyncable(path, e))?;
        Ok((Self { db, tree }, files))
    }

    /// Makes everything written so far durable: sled's flush, then the fsyncs of its `files`
    /// (see [`sync`]), for a step that must be on disk before the next begins.
    fn make_durable(&self, files: &mut SledFiles, path: &Path) -> Result<()> {
        self.db.flush().map_err(storage)?;
        files.sync().map_err(|e| unsyncable(path, e))
    }
}

struct Shared {
    /// Replaced by the writer when it reopens sled after a failed write (sled 0.34 refuses
    /// every write after its first I/O error); `None` only if that reopening failed.
    store: RwLock<Option<Store>>,
    /// How many times the writer has reopened the database.
    generation: AtomicU64,
    /// Every position below this is on stable storage; readers never look past it.
    durable_head: AtomicU64,
    /// Weak, because the writer owns the only strong sender: when it stops, the channel closes
    /// and live subscriptions end, however many of them still hold the log.
    live: broadcast::WeakSender<CommittedBatch>,
    /// sled's database file, named in the error about an event that does not decode.
    db_file: PathBuf,
}

/// The embedded, durable event log. Cheap to share behind an `Arc`.
pub struct SledEventLog {
    shared: Arc<Shared>,
    path: PathBuf,
    requests: std::sync::Mutex<Option<mpsc::Sender<AppendRequest>>>,
    writer: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for SledEventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledEventLog")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SledEventLog {
    /// Opens (or creates) the log in directory `path` and starts its writer thread.
    pub fn open(path: impl AsRef<Path>, options: SledOptions) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let (store, mut files) = Store::open(&path, options.cache_bytes)?;
        // What opening reads and moves is named with the file, as sled's own refusals are.
        let head = format::check(&store.tree)
            .and_then(|()| chunks::migrate(&store.tree, || store.make_durable(&mut files, &path)))
            .and_then(|()| ids::migrate(&store.tree))
            .and_then(|()| format::mark(&store.tree))
            .and_then(|()| store.make_durable(&mut files, &path))
            .and_then(|()| chunks::next_position(&store.tree))
            .map_err(|e| naming_the_file(&path, e))?;
        let (live, _) = broadcast::channel(options.live_buffer.max(1));
        let shared = Arc::new(Shared {
            store: RwLock::new(Some(store.clone())),
            generation: AtomicU64::new(0),
            durable_head: AtomicU64::new(head),
            live: live.downgrade(),
            db_file: path.join("db"),
        });
        let (tx, rx) = mpsc::channel(options.queue.max(1));
        let handle = Writer::start(
            shared.clone(),
            (store, files),
            path.clone(),
            &options,
            live,
            head,
            rx,
        )?;
        tracing::info!(path = %path.display(), head, "event log opened");
        Ok(Self {
            shared,
            path,
            requests: std::sync::Mutex::new(Some(tx)),
            writer: std::sync::Mutex::new(Some(handle)),
        })
    }

    /// Stops accepting appends, lets the writer commit what it already has, flushes and waits
    /// for the writer thread. Live subscriptions end. Idempotent.
    pub fn close(&self) -> Result<()> {
        drop(
            self.requests
                .lock()
                .map_err(|_| EventLogError::Closed)?
                .take(),
        );
        let handle = self
            .writer
            .lock()
            .map_err(|_| EventLogError::Closed)?
            .take();
        if let Some(handle) = handle
            && handle.join().is_err()
        {
            return Err(EventLogError::Storage("writer thread panicked".into()));
        }
        self.shared.store()?.db.flush().map_err(storage)?;
        Ok(())
    }

    /// Bytes sled occupies on disk.
    pub fn size_on_disk(&self) -> Result<u64> {
        self.shared.store()?.db.size_on_disk().map_err(storage)
    }

    fn sender(&self) -> Result<mpsc::Sender<AppendRequest>> {
        self.requests
            .lock()
            .map_err(|_| EventLogError::Closed)?
            .clone()
            .ok_or(EventLogError::Closed)
    }
}

impl Drop for SledEventLog {
    fn drop(&mut self) {
        if let Err(error) = self.close() {
            tracing::error!(%error, "closing the event log failed");
        }
    }
}

#[async_trait]
impl EventLog for SledEventLog {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome> {
        validate_append(stream, &events)?;
        let (reply, answer) = oneshot::channel();
        let request = AppendRequest {
            stream: stream.to_owned(),
            expected,
            events,
            reply,
        };
        self.sender()?
            .send(request)
            .await
            .map_err(|_| EventLogError::Closed)?;
        answer.await.map_err(|_| EventLogError::Closed)?
    }

    async fn read_stream(
        &self,
        stream: &str,
        from_version: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let head = self.head();
        // sled may have to load pages from disk: read on the blocking pool, as `read_page`
        // does, so that an async worker never waits for the disk.
        let shared = self.shared.clone();
        let stream = stream.to_owned();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => runtime
                .spawn_blocking(move || shared.stream_events(&stream, from_version, limit, head))
                .await
                .map_err(read::blocking_failed)?,
            // Outside a tokio runtime there is no blocking pool: read in place.
            Err(_) => shared.stream_events(&stream, from_version, limit, head),
        }
    }

    async fn read_page(&self, from: u64, limit: usize) -> Result<Page> {
        read::page(self.shared.clone(), from, limit, self.head()).await
    }

    async fn find(&self, stream: &str, id: Uuid) -> Result<Option<(u64, u64)>> {
        let head = self.head();
        let tree = self.shared.tree()?;
        let stream = stream.to_owned();
        // Only durable events: one the writer has applied but not yet synced is not there yet.
        let lookup = move || {
            Ok(ids::stored(&tree, id)?
                .filter(|s| s.stream == stream && s.position < head)
                .map(|s| (s.position, s.version)))
        };
        // On the blocking pool, as `read_stream`: sled may have to load the page from disk.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => runtime
                .spawn_blocking(lookup)
                .await
                .map_err(read::blocking_failed)?,
            Err(_) => lookup(),
        }
    }

    fn head(&self) -> u64 {
        self.shared.durable_head.load(Ordering::Acquire)
    }

    fn listen(&self) -> broadcast::Receiver<CommittedBatch> {
        crate::listen_to(&self.shared.live)
    }
}

pub(crate) fn validate_append(stream: &str, events: &[NewEvent]) -> Result<()> {
    validate_stream(stream)?;
    if events.is_empty() || events.len() > MAX_BATCH_EVENTS {
        return Err(EventLogError::InvalidAppend(format!(
            "a batch holds 1 to {MAX_BATCH_EVENTS} events"
        )));
    }
    for event in events {
        validate_event(event.id, &event.event_type, &event.payload)?;
    }
    let mut ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
    ids.sort_unstable();
    if ids.windows(2).any(|w| w[0] == w[1]) {
        return Err(EventLogError::InvalidAppend(
            "a batch names the same event id twice".into(),
        ));
    }
    Ok(())
}

/// A stream name the log accepts: 1 to [`MAX_STREAM_LEN`] bytes of ASCII letters, digits and
/// `/ - _ . :` (never `0x00`, which separates a stream from the rest of an index key).
fn validate_stream(stream: &str) -> Result<()> {
    let invalid = |m: String| Err(EventLogError::InvalidAppend(m));
    if stream.is_empty() || stream.len() > MAX_STREAM_LEN {
        return invalid(format!("stream name must be 1 to {MAX_STREAM_LEN} bytes"));
    }
    if !stream
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/-_.:".contains(&b))
    {
        return invalid(format!(
            "stream name {stream:?} may only hold ASCII letters, digits and / - _ . :"
        ));
    }
    Ok(())
}

/// An event the log accepts: a type, and a payload of at most [`MAX_PAYLOAD`] bytes.
fn validate_event(id: Uuid, event_type: &str, payload: &[u8]) -> Result<()> {
    if payload.len() > MAX_PAYLOAD {
        return Err(EventLogError::InvalidAppend(format!(
            "event {id} is larger than {MAX_PAYLOAD} bytes"
        )));
    }
    if event_type.is_empty() {
        return Err(EventLogError::InvalidAppend(format!(
            "event {id} has no type"
        )));
    }
    Ok(())
}

fn storage(error: sled::Error) -> EventLogError {
    match &error {
        sled::Error::Io(io) if io.kind() == std::io::ErrorKind::StorageFull => {
            EventLogError::DiskFull(error.to_string())
        }
        _ => EventLogError::Storage(error.to_string()),
    }
}

/// sled could not open the database in `dir`: the error names its file, so that whoever reads
/// why podiumd did not start knows where to look.
fn unopenable(dir: &Path, error: sled::Error) -> EventLogError {
    let file = dir.join("db");
    match error {
        sled::Error::Io(io) if io.kind() == std::io::ErrorKind::StorageFull => {
            EventLogError::DiskFull(format!("cannot open {}: {io}", file.display()))
        }
        sled::Error::Corruption { at, .. } => EventLogError::Storage(format!(
            "{} is corrupt (sled found damaged data at {at:?}); nothing is served from it",
            file.display()
        )),
        other => EventLogError::Storage(format!("cannot open {}: {other}", file.display())),
    }
}

/// An error met while opening the database in `dir` (a damaged page read by the moves of an
/// older layout or by the look for the log's head), saying which file it is about.
fn naming_the_file(dir: &Path, error: EventLogError) -> EventLogError {
    let file = dir.join("db");
    match error {
        EventLogError::Storage(message) => {
            EventLogError::Storage(format!("cannot open {}: {message}", file.display()))
        }
        EventLogError::DiskFull(message) => {
            EventLogError::DiskFull(format!("cannot open {}: {message}", file.display()))
        }
        other => read::corrupt_in(&file, other),
    }
}

/// Making sled's files durable failed.
fn unsyncable(dir: &Path, error: std::io::Error) -> EventLogError {
    let message = format!("cannot make {} durable: {error}", dir.display());
    if error.kind() == std::io::ErrorKind::StorageFull {
        EventLogError::DiskFull(message)
    } else {
        EventLogError::Storage(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(payload: usize) -> NewEvent {
        NewEvent {
            id: Uuid::new_v4(),
            event_type: "podium.test.A".into(),
            payload: vec![0; payload],
        }
    }

    #[test]
    fn an_error_met_while_opening_names_the_database_file() {
        let dir = Path::new("/var/lib/podium");
        let file = "/var/lib/podium/db";
        let named = [
            naming_the_file(dir, EventLogError::Storage("Read corrupted data".into())),
            naming_the_file(dir, EventLogError::DiskFull("no space".into())),
            naming_the_file(
                dir,
                EventLogError::Corrupt {
                    position: 7,
                    reason: "bad varint".into(),
                },
            ),
        ];
        for error in named {
            let text = error.to_string();
            assert!(text.contains(file), "{text}");
        }
        assert!(matches!(
            naming_the_file(dir, EventLogError::Closed),
            EventLogError::Closed
        ));
    }

    fn rejected(stream: &str, events: &[NewEvent]) -> bool {
        matches!(
            validate_append(stream, events),
            Err(EventLogError::InvalidAppend(_))
        )
    }

    #[test]
    fn opening_waits_while_another_handle_still_holds_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let held = sled::open(dir.path()).unwrap();
        let refused = sled::open(dir.path()).map(drop).unwrap_err();
        assert!(
            matches!(&refused, sled::Error::Io(e) if lock_held(e)),
            "sled's refusal is recognised: {refused:?}"
        );
        let release = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            drop(held);
        });
        // Refused at once before the lock's error was recognised (CI's "could not acquire lock").
        assert!(Store::open(dir.path(), 1 << 20).is_ok());
        release.join().unwrap();
    }

    #[test]
    fn validation_accepts_the_limits() {
        let longest = "s".repeat(MAX_STREAM_LEN);
        let full: Vec<NewEvent> = (0..MAX_BATCH_EVENTS).map(|_| event(0)).collect();
        assert!(validate_append(&longest, &full).is_ok());
        assert!(validate_append("conference/odc-2024/poll_7.v2:a", &[event(MAX_PAYLOAD)]).is_ok());
    }

    #[test]
    fn validation_rejects_what_is_beyond_them() {
        let one = [event(0)];
        for stream in [
            "",
            "a b",
            "a\0b",
            "a\nb",
            "caf\u{e9}",
            "a*",
            &"s".repeat(MAX_STREAM_LEN + 1),
        ] {
            assert!(rejected(stream, &one), "stream {stream:?}");
        }
        assert!(rejected("s", &[]));
        let too_many: Vec<NewEvent> = (0..=MAX_BATCH_EVENTS).map(|_| event(0)).collect();
        assert!(rejected("s", &too_many));
        assert!(rejected("s", &[event(MAX_PAYLOAD + 1)]));
        let untyped = NewEvent {
            event_type: String::new(),
            ..event(0)
        };
        assert!(rejected("s", &[event(0), untyped]));
        let first = event(0);
        let twice = NewEvent {
            payload: vec![1],
            ..first.clone()
        };
        assert!(rejected("s", &[first, event(0), twice]));
    }
}
