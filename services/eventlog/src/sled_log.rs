//! The sled backend of [`EventLog`]: podium's embedded default.
//!
//! One sled tree holds three key spaces, so that a whole group commit is one atomic
//! `apply_batch`:
//!
//! | key | value |
//! | --- | --- |
//! | `L` position (u64 BE) | the event, encoded as `podium.v1.Event` |
//! | `S` stream `0x00` version (u64 BE) | position |
//! | `I` stream `0x00` event id (16 bytes) | position, version |
//!
//! All writes go through one writer thread. It takes every append request that is waiting,
//! decides each against the stream heads (including the effects of earlier requests of the same
//! group), applies them as one batch and calls sled's `flush` once: group commit, so durability
//! costs one fsync per group, not per append. Only after the flush does it answer the callers,
//! advance the durable head that readers respect, and announce the batch to live subscribers.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::SystemTime,
};

use async_trait::async_trait;
use podium_proto::v1 as pb;
use prost::Message;
use tokio::sync::{broadcast, mpsc, oneshot};
use uuid::Uuid;

use crate::{
    AppendOutcome, CommittedBatch, EventLog, EventLogError, ExpectedVersion, NewEvent, Page,
    RecordedEvent, Result,
};

const LOG: u8 = b'L';
const STREAM: u8 = b'S';
const ID: u8 = b'I';

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
    /// writes, so that sled never meets a full disk (which leaves it refusing reads too).
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

/// The open sled database and its one tree.
#[derive(Clone)]
struct Store {
    db: sled::Db,
    tree: sled::Tree,
}

impl Store {
    fn open(path: &Path, cache_bytes: u64) -> Result<Self> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(cache_bytes)
            .open()
            .map_err(storage)?;
        let tree = db.open_tree("events").map_err(storage)?;
        Ok(Self { db, tree })
    }
}

struct Shared {
    /// Replaced by the writer when it reopens sled after a failed write (sled 0.34 refuses
    /// every write after its first I/O error); `None` only if that reopening failed.
    store: RwLock<Option<Store>>,
    /// How many times the writer has reopened the database.
    generation: AtomicU64,
    /// Every position below this is flushed; readers never look past it.
    durable_head: AtomicU64,
    /// Weak, because the writer owns the only strong sender: when it stops, the channel closes
    /// and live subscriptions end, however many of them still hold the log.
    live: broadcast::WeakSender<CommittedBatch>,
}

impl Shared {
    /// The current database. While the writer reopens it, this waits for the new one.
    fn store(&self) -> Result<Store> {
        self.store
            .read()
            .map_err(|_| EventLogError::Closed)?
            .clone()
            .ok_or_else(|| EventLogError::Storage("the database could not be reopened".into()))
    }

    fn tree(&self) -> Result<sled::Tree> {
        Ok(self.store()?.tree)
    }

    /// Runs `read` on the current tree. A read that failed while the writer reopened the
    /// database (a failed write leaves sled refusing reads too) runs once more on the new one.
    fn read<T>(&self, read: impl Fn(&sled::Tree) -> Result<T>) -> Result<T> {
        let generation = self.generation.load(Ordering::Acquire);
        let result = read(&self.tree()?);
        match result {
            Err(EventLogError::Storage(_) | EventLogError::DiskFull(_)) => {
                // The writer may not have seen its failure yet: give it a moment to reopen.
                // Taking the tree waits for a reopening in progress.
                for _ in 0..REREAD_WAITS {
                    let tree = self.tree()?;
                    if self.generation.load(Ordering::Acquire) != generation {
                        return read(&tree);
                    }
                    std::thread::sleep(REOPEN_PAUSE);
                }
                result
            }
            other => other,
        }
    }
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
        let store = Store::open(&path, options.cache_bytes)?;
        let head = next_position(&store.tree)?;
        let (live, _) = broadcast::channel(options.live_buffer.max(1));
        let shared = Arc::new(Shared {
            store: RwLock::new(Some(store.clone())),
            generation: AtomicU64::new(0),
            durable_head: AtomicU64::new(head),
            live: live.downgrade(),
        });
        let (tx, rx) = mpsc::channel(options.queue.max(1));
        let writer = Writer {
            shared: shared.clone(),
            store: Some(store),
            path: path.clone(),
            cache_bytes: options.cache_bytes,
            reserve_bytes: options.reserve_bytes,
            broken: None,
            live,
            next: head,
            max_group: options.max_group.max(1),
            unflushed: false,
        };
        let handle = std::thread::Builder::new()
            .name("podium-log-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| EventLogError::Storage(format!("cannot start writer thread: {e}")))?;
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
        let durable = self.head();
        self.shared.read(|tree| {
            let start = stream_key(stream, from_version);
            let end = stream_key(stream, u64::MAX);
            let mut events = Vec::new();
            for entry in tree.range(start..=end) {
                if events.len() >= limit {
                    break;
                }
                let (_, value) = entry.map_err(storage)?;
                let position = be_u64(&value)?;
                if position >= durable {
                    break;
                }
                events.push(load(tree, position)?);
            }
            Ok(events)
        })
    }

    async fn read_page(&self, from: u64, limit: usize) -> Result<Page> {
        let durable = self.head();
        if from >= durable || limit == 0 {
            return Ok(Page::new(None, std::iter::empty()));
        }
        let end = durable.min(from.saturating_add(limit as u64));
        // sled may have to load pages from disk, so the read runs on a blocking thread: a
        // runtime worker never waits for the disk, and a caller that polls this future once
        // and goes on working (as `subscribe` does during catch-up) gets the next page read on
        // the other core meanwhile. The read returns sled's own buffers, and the page decodes
        // them on the caller's thread, one event at a time, as they are taken.
        let shared = self.shared.clone();
        let entries = match tokio::runtime::Handle::try_current() {
            Ok(runtime) => runtime
                .spawn_blocking(move || shared.read(|tree| read_range(tree, from, end)))
                .await
                .map_err(|e| {
                    if e.is_cancelled() {
                        EventLogError::Closed
                    } else {
                        EventLogError::Storage(format!("reading the log failed: {e}"))
                    }
                })??,
            // Outside a tokio runtime there is no blocking pool: read in place.
            Err(_) => shared.read(|tree| read_range(tree, from, end))?,
        };
        let last = match entries.last() {
            Some((key, _)) => Some(be_u64(&key[1..])?),
            None => None,
        };
        let events = entries
            .into_iter()
            .map(|(key, value)| decode_stored(be_u64(&key[1..])?, &value));
        Ok(Page::new(last, events))
    }

    fn head(&self) -> u64 {
        self.shared.durable_head.load(Ordering::Acquire)
    }

    fn listen(&self) -> broadcast::Receiver<CommittedBatch> {
        match self.shared.live.upgrade() {
            Some(live) => live.subscribe(),
            // Closed: a receiver whose sender is already gone, so it reports `Closed`.
            None => broadcast::channel(1).1,
        }
    }
}

fn validate_append(stream: &str, events: &[NewEvent]) -> Result<()> {
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
    if events.is_empty() || events.len() > MAX_BATCH_EVENTS {
        return invalid(format!("a batch holds 1 to {MAX_BATCH_EVENTS} events"));
    }
    for event in events {
        if event.payload.len() > MAX_PAYLOAD {
            return invalid(format!(
                "event {} is larger than {MAX_PAYLOAD} bytes",
                event.id
            ));
        }
        if event.event_type.is_empty() {
            return invalid(format!("event {} has no type", event.id));
        }
    }
    let mut ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
    ids.sort_unstable();
    if ids.windows(2).any(|w| w[0] == w[1]) {
        return invalid("a batch names the same event id twice".into());
    }
    Ok(())
}

/// The single writer: decides, applies, flushes and answers, one group at a time.
struct Writer {
    shared: Arc<Shared>,
    /// The writer's handle on the database; `None` only after a failed reopening.
    store: Option<Store>,
    path: PathBuf,
    cache_bytes: u64,
    reserve_bytes: u64,
    /// Why the last commit failed, until the database has been reopened. sled 0.34 refuses
    /// every write after an I/O error (a full disk, a failed fsync), so the writer reopens it
    /// before the next commit, once the disk has room again.
    broken: Option<Failure>,
    live: broadcast::Sender<CommittedBatch>,
    next: u64,
    max_group: usize,
    /// A failed commit may have left applied but unflushed events in sled, where idempotency
    /// lookups find them: the next group flushes even if it writes nothing new.
    unflushed: bool,
}

/// A failed commit, kept to answer appends until the writer has recovered.
#[derive(Debug, Clone)]
struct Failure {
    disk_full: bool,
    message: String,
}

impl Failure {
    fn of(error: &EventLogError) -> Self {
        match error {
            EventLogError::DiskFull(message) => Self {
                disk_full: true,
                message: message.clone(),
            },
            EventLogError::Storage(message) => Self {
                disk_full: false,
                message: message.clone(),
            },
            other => Self {
                disk_full: false,
                message: other.to_string(),
            },
        }
    }

    fn error(&self) -> EventLogError {
        if self.disk_full {
            EventLogError::DiskFull(self.message.clone())
        } else {
            EventLogError::Storage(self.message.clone())
        }
    }
}

/// How often the writer tries to open the database again while the old one's last handles
/// (a read in flight, sled's own threads) still hold its file lock.
const REOPEN_ATTEMPTS: u32 = 200;
const REOPEN_PAUSE: std::time::Duration = std::time::Duration::from_millis(10);
/// Free bytes the writer wants before it reopens a database that failed a write: sled writes
/// while it opens.
const REOPEN_ROOM: u64 = 4 << 20;
/// How many pauses a failed read waits for the writer to reopen the database.
const REREAD_WAITS: u32 = 20;

/// Effects of the group being built, not yet in sled.
#[derive(Default)]
struct Pending {
    heads: HashMap<String, u64>,
    ids: HashMap<(String, Uuid), (u64, u64)>,
}

impl Writer {
    fn run(mut self, mut requests: mpsc::Receiver<AppendRequest>) {
        while let Some(first) = requests.blocking_recv() {
            let mut group = vec![first];
            while group.len() < self.max_group {
                match requests.try_recv() {
                    Ok(request) => group.push(request),
                    Err(_) => break,
                }
            }
            self.commit(group);
        }
        tracing::debug!("event log writer stopped");
    }

    fn commit(&mut self, group: Vec<AppendRequest>) {
        if let Err(error) = self.has_room() {
            tracing::warn!(%error, "disk nearly full; appends are refused");
            for request in group {
                let _ = request
                    .reply
                    .send(Err(EventLogError::DiskFull(error.to_string())));
            }
            return;
        }
        if self.broken.is_some() {
            if let Err(error) = self.reopen() {
                tracing::warn!(%error, "event log still cannot write; appends are refused");
                for request in group {
                    let _ = request.reply.send(Err(error_like(&error)));
                }
                return;
            }
            self.broken = None;
        }
        let Some(store) = self.store.clone() else {
            for request in group {
                let _ = request.reply.send(Err(EventLogError::Storage(
                    "the database could not be reopened".into(),
                )));
            }
            return;
        };
        let mut batch = sled::Batch::default();
        let mut pending = Pending::default();
        let mut committed: Vec<RecordedEvent> = Vec::new();
        let mut answers = Vec::with_capacity(group.len());
        let start = self.next;
        let now = SystemTime::now();
        for request in group {
            let decision = self.decide(
                &store.tree,
                &request,
                &mut pending,
                &mut batch,
                &mut committed,
                now,
            );
            answers.push((request.reply, decision));
        }
        if !committed.is_empty() || self.unflushed {
            let result = store
                .tree
                .apply_batch(batch)
                .and_then(|()| store.db.flush().map(|_| ()))
                .map_err(storage);
            if let Err(error) = result {
                tracing::error!(%error, "event log commit failed, appends of this group are not acknowledged");
                // Re-read the head: sled may hold part of what we applied in memory. Those events
                // were never acknowledged; a retry with the same ids finds them, and is answered
                // only once a later flush has made them durable.
                self.next = next_position(&store.tree).unwrap_or(start);
                self.unflushed = true;
                let failure = Failure::of(&error);
                let durable = self.shared.durable_head.load(Ordering::Acquire);
                for (reply, decision) in answers {
                    let answer = match decision {
                        Ok(outcome) if outcome.deduplicated && outcome.last_position < durable => {
                            Ok(outcome)
                        }
                        Ok(_) => Err(failure.error()),
                        Err(e) => Err(e),
                    };
                    let _ = reply.send(answer);
                }
                // sled 0.34 refuses every write after an I/O error: the next commit reopens
                // it, once the disk has room. Reopening needs room too, so until then the old
                // database serves reads (those that would finish a split the failed batch
                // began fail).
                self.broken = Some(failure);
                return;
            }
            self.unflushed = false;
            self.shared.durable_head.store(self.next, Ordering::Release);
            // No subscriber is not an error. Events a failed commit left behind are not in this
            // batch; subscribers see the position jump and read them from storage.
            if !committed.is_empty() {
                let _ = self.live.send(committed.into());
            }
        }
        for (reply, decision) in answers {
            let _ = reply.send(decision);
        }
    }

    /// Whether the file system under the log keeps `reserve_bytes` free.
    /// After a failure, reopening needs at least [`REOPEN_ROOM`] too.
    fn has_room(&self) -> std::io::Result<()> {
        let free = fs2::available_space(&self.path)?;
        let needed = match self.broken {
            Some(_) => self.reserve_bytes.max(REOPEN_ROOM),
            None => self.reserve_bytes,
        };
        if free < needed {
            return Err(std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                format!(
                    "{free} bytes free under {}, below the {} bytes kept free",
                    self.path.display(),
                    needed
                ),
            ));
        }
        Ok(())
    }

    /// Drops the database and opens it again from disk.
    fn reopen(&mut self) -> Result<()> {
        // Readers wait on the lock while the database is swapped. sled releases its file lock
        // only when the last handle on the old database is dropped, hence the attempts.
        let mut slot = self
            .shared
            .store
            .write()
            .map_err(|_| EventLogError::Closed)?;
        self.store = None;
        *slot = None;
        let mut attempt = 0;
        let store = loop {
            match Store::open(&self.path, self.cache_bytes) {
                Ok(store) => break store,
                Err(error) if attempt >= REOPEN_ATTEMPTS => {
                    tracing::error!(%error, "cannot reopen the event log");
                    return Err(error);
                }
                Err(_) => {
                    attempt += 1;
                    std::thread::sleep(REOPEN_PAUSE);
                }
            }
        };
        let head = next_position(&store.tree)?;
        let durable = self.shared.durable_head.load(Ordering::Acquire);
        if head < durable {
            tracing::error!(
                head,
                durable,
                "the reopened event log ends before the durable head"
            );
        }
        *slot = Some(store.clone());
        self.shared.generation.fetch_add(1, Ordering::AcqRel);
        drop(slot);
        self.store = Some(store);
        // Everything in the reopened database is on disk: events of a failed commit that made
        // it there are durable now, though never acknowledged (as after a crash).
        self.next = head;
        self.shared.durable_head.store(head, Ordering::Release);
        self.unflushed = false;
        tracing::info!(head, "event log reopened");
        Ok(())
    }

    fn decide(
        &mut self,
        tree: &sled::Tree,
        request: &AppendRequest,
        pending: &mut Pending,
        batch: &mut sled::Batch,
        committed: &mut Vec<RecordedEvent>,
        now: SystemTime,
    ) -> Result<AppendOutcome> {
        let stream = request.stream.as_str();
        // Idempotency first: a retry of a write that succeeded is answered, not rejected.
        let mut seen = Vec::with_capacity(request.events.len());
        for event in &request.events {
            let key = (request.stream.clone(), event.id);
            let found = match pending.ids.get(&key) {
                Some(found) => Some(*found),
                None => lookup_id(tree, stream, event.id)?,
            };
            seen.push(found);
        }
        if seen.iter().all(Option::is_some) {
            let (first_position, first_version) = seen[0].unwrap_or_default();
            let (last_position, last_version) = seen[seen.len() - 1].unwrap_or_default();
            return Ok(AppendOutcome {
                first_version,
                last_version,
                first_position,
                last_position,
                deduplicated: true,
            });
        }
        if seen.iter().any(Option::is_some) {
            return Err(EventLogError::PartialDuplicate {
                stream: request.stream.clone(),
            });
        }

        let current = match pending.heads.get(stream) {
            Some(v) => Some(*v),
            None => stream_head(tree, stream)?,
        };
        let fits = match request.expected {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => current.is_none(),
            ExpectedVersion::Exact(v) => current == Some(v),
        };
        if !fits {
            return Err(EventLogError::Conflict {
                stream: request.stream.clone(),
                expected: request.expected,
                actual: current,
            });
        }

        let first_version = current.map_or(0, |v| v + 1);
        let first_position = self.next;
        for (i, event) in request.events.iter().enumerate() {
            let version = first_version + i as u64;
            let position = self.next;
            self.next += 1;
            let recorded = RecordedEvent {
                id: event.id,
                stream: request.stream.clone(),
                stream_version: version,
                position,
                event_type: event.event_type.clone(),
                payload: event.payload.clone(),
                recorded_at: now,
            };
            batch.insert(
                log_key(position).to_vec(),
                recorded.to_proto().encode_to_vec(),
            );
            batch.insert(stream_key(stream, version), position.to_be_bytes().to_vec());
            let mut id_value = position.to_be_bytes().to_vec();
            id_value.extend_from_slice(&version.to_be_bytes());
            batch.insert(id_key(stream, event.id), id_value);
            pending
                .ids
                .insert((request.stream.clone(), event.id), (position, version));
            committed.push(recorded);
        }
        let last_version = first_version + request.events.len() as u64 - 1;
        pending.heads.insert(request.stream.clone(), last_version);
        Ok(AppendOutcome {
            first_version,
            last_version,
            first_position,
            last_position: self.next - 1,
            deduplicated: false,
        })
    }
}

fn storage(error: sled::Error) -> EventLogError {
    match &error {
        sled::Error::Io(io) if io.kind() == std::io::ErrorKind::StorageFull => {
            EventLogError::DiskFull(error.to_string())
        }
        _ => EventLogError::Storage(error.to_string()),
    }
}

/// The same error again, for every request of a refused group.
fn error_like(error: &EventLogError) -> EventLogError {
    Failure::of(error).error()
}

fn log_key(position: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = LOG;
    key[1..].copy_from_slice(&position.to_be_bytes());
    key
}

fn stream_prefix(space: u8, stream: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(stream.len() + 18);
    key.push(space);
    key.extend_from_slice(stream.as_bytes());
    key.push(0);
    key
}

fn stream_key(stream: &str, version: u64) -> Vec<u8> {
    let mut key = stream_prefix(STREAM, stream);
    key.extend_from_slice(&version.to_be_bytes());
    key
}

fn id_key(stream: &str, id: Uuid) -> Vec<u8> {
    let mut key = stream_prefix(ID, stream);
    key.extend_from_slice(id.as_bytes());
    key
}

fn be_u64(bytes: &[u8]) -> Result<u64> {
    let array: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| EventLogError::Storage("index entry is shorter than 8 bytes".into()))?;
    Ok(u64::from_be_bytes(array))
}

/// The position after the last stored event.
fn next_position(tree: &sled::Tree) -> Result<u64> {
    match tree.scan_prefix([LOG]).next_back() {
        Some(entry) => {
            let (key, _) = entry.map_err(storage)?;
            Ok(be_u64(&key[1..])? + 1)
        }
        None => Ok(0),
    }
}

/// The version of the stream's last stored event, if the stream exists.
fn stream_head(tree: &sled::Tree, stream: &str) -> Result<Option<u64>> {
    match tree.scan_prefix(stream_prefix(STREAM, stream)).next_back() {
        Some(entry) => {
            let (key, _) = entry.map_err(storage)?;
            Ok(Some(be_u64(&key[key.len() - 8..])?))
        }
        None => Ok(None),
    }
}

fn lookup_id(tree: &sled::Tree, stream: &str, id: Uuid) -> Result<Option<(u64, u64)>> {
    match tree.get(id_key(stream, id)).map_err(storage)? {
        Some(value) => Ok(Some((
            be_u64(&value)?,
            be_u64(value.get(8..).unwrap_or_default())?,
        ))),
        None => Ok(None),
    }
}

/// The stored entries for positions `from..end`, undecoded.
fn read_range(tree: &sled::Tree, from: u64, end: u64) -> Result<Vec<(sled::IVec, sled::IVec)>> {
    let mut entries = Vec::with_capacity(usize::try_from(end - from).unwrap_or(0));
    for entry in tree.range(log_key(from)..log_key(end)) {
        entries.push(entry.map_err(storage)?);
    }
    Ok(entries)
}

fn load(tree: &sled::Tree, position: u64) -> Result<RecordedEvent> {
    match tree.get(log_key(position)).map_err(storage)? {
        Some(value) => decode_stored(position, &value),
        None => Err(EventLogError::Corrupt {
            position,
            reason: "indexed event is missing".into(),
        }),
    }
}

/// Decodes the value stored under `L`+`position` back into the event, refusing one that does
/// not parse or claims another position. Public so that the fuzz targets and property tests
/// (`fuzzing/`) drive the very function that replay uses.
pub fn decode_stored(position: u64, bytes: &[u8]) -> Result<RecordedEvent> {
    let corrupt = |reason: String| EventLogError::Corrupt { position, reason };
    let event = pb::Event::decode(bytes).map_err(|e| corrupt(e.to_string()))?;
    let event = RecordedEvent::from_proto(event).map_err(corrupt)?;
    if event.position != position {
        return Err(corrupt(format!("it claims position {}", event.position)));
    }
    Ok(event)
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

    fn rejected(stream: &str, events: &[NewEvent]) -> bool {
        matches!(
            validate_append(stream, events),
            Err(EventLogError::InvalidAppend(_))
        )
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

    #[test]
    fn log_keys_sort_by_position() {
        let pairs = [
            (0, 1),
            (255, 256),
            (65_535, 65_536),
            (u64::from(u32::MAX), 1 << 32),
            (1, u64::MAX),
        ];
        for (a, b) in pairs {
            assert!(log_key(a) < log_key(b), "{a} < {b}");
            assert_eq!(be_u64(&log_key(b)[1..]).unwrap(), b);
        }
    }

    #[test]
    fn a_streams_key_range_holds_only_that_stream() {
        let (lo, hi) = (stream_key("a", 0), stream_key("a", u64::MAX));
        assert!(stream_key("a", 1) < stream_key("a", 256) && stream_key("a", 256) < hi);
        for other in ["a/b", "ab", "a-", "a.", "A", "b", "conference/a"] {
            for version in [0, 1, u64::MAX] {
                let key = stream_key(other, version);
                assert!(
                    key < lo || key > hi,
                    "{other} {version} falls inside stream a"
                );
            }
            let id = Uuid::new_v4();
            assert!(!id_key(other, id).starts_with(&stream_prefix(ID, "a")));
        }
        assert!(!log_key(7).starts_with(&[STREAM]) && !stream_key("a", 7).starts_with(&[ID]));
    }

    #[test]
    fn short_index_values_are_errors_not_panics() {
        assert!(matches!(be_u64(&[1, 2, 3]), Err(EventLogError::Storage(_))));
        assert_eq!(be_u64(&[0, 0, 0, 0, 0, 0, 1, 0, 9]).unwrap(), 256);
    }

    #[test]
    fn heads_are_read_from_the_indexes() -> Result<()> {
        let db = sled::Config::new()
            .temporary(true)
            .open()
            .map_err(storage)?;
        let tree = db.open_tree("events").map_err(storage)?;
        assert_eq!(next_position(&tree)?, 0);
        assert_eq!(stream_head(&tree, "a")?, None);
        let mut position = 0u64;
        for (stream, versions) in [("a", 3u64), ("a-b", 300), ("b", 1)] {
            for version in 0..versions {
                tree.insert(log_key(position), vec![]).map_err(storage)?;
                tree.insert(stream_key(stream, version), &position.to_be_bytes())
                    .map_err(storage)?;
                let mut value = position.to_be_bytes().to_vec();
                value.extend_from_slice(&version.to_be_bytes());
                tree.insert(id_key(stream, Uuid::from_u64_pair(0, position)), value)
                    .map_err(storage)?;
                position += 1;
            }
        }
        assert_eq!(next_position(&tree)?, 304);
        assert_eq!(stream_head(&tree, "a")?, Some(2));
        assert_eq!(stream_head(&tree, "a-b")?, Some(299));
        assert_eq!(stream_head(&tree, "b")?, Some(0));
        assert_eq!(stream_head(&tree, "c")?, None);
        assert_eq!(
            lookup_id(&tree, "a-b", Uuid::from_u64_pair(0, 260))?,
            Some((260, 257))
        );
        assert_eq!(lookup_id(&tree, "a", Uuid::from_u64_pair(0, 260))?, None);
        Ok(())
    }

    #[test]
    fn stored_events_are_checked_against_their_position() {
        let recorded = RecordedEvent {
            id: Uuid::new_v4(),
            stream: "s".into(),
            stream_version: 0,
            position: 5,
            event_type: "podium.test.A".into(),
            payload: vec![1, 2],
            recorded_at: SystemTime::now(),
        };
        let bytes = recorded.to_proto().encode_to_vec();
        assert_eq!(decode_stored(5, &bytes).unwrap(), recorded);
        assert!(matches!(
            decode_stored(6, &bytes),
            Err(EventLogError::Corrupt { position: 6, .. })
        ));
        assert!(matches!(
            decode_stored(5, &[0xff, 0xff]),
            Err(EventLogError::Corrupt { .. })
        ));
    }
}
