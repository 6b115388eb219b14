//! The single writer of the sled backend: group commit, and recovery from a failed write.
//!
//! One thread takes every append request that is waiting, decides each against the stream
//! heads (including the effects of earlier requests of the same group), applies the group as
//! one sled batch, flushes it, makes sled's files durable with `fdatasync` (sled's own flush
//! ends in `sync_file_range`, which a power cut can undo), and only then answers the callers,
//! advances the durable head and announces the batch to live subscribers. Before each group it
//! checks the free space under the log (a full disk leaves sled 0.34 refusing every write, and
//! reads too); after a failed write it drops the database and opens it again once the disk has
//! room.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, atomic::Ordering},
    thread::JoinHandle,
    time::SystemTime,
};

use prost::Message;
use tokio::sync::{broadcast, mpsc};
use uuid::Uuid;

use super::{
    AppendRequest, Shared, SledFiles, SledOptions, Store,
    chunks::{Chunks, next_position},
    ids,
    keys::{id_key, stream_key},
    read::stream_head,
    storage, unsyncable,
};
use crate::{AppendOutcome, CommittedBatch, EventLogError, ExpectedVersion, RecordedEvent, Result};

/// The single writer: decides, applies, flushes, syncs and answers, one group at a time.
pub(super) struct Writer {
    shared: Arc<Shared>,
    /// The writer's handle on the database; `None` only after a failed reopening.
    store: Option<Store>,
    /// The database's files, synced after every flush; `None` with `store`.
    files: Option<SledFiles>,
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
    /// The file system reports no capacity (some FUSE ones answer statvfs with zeros), so
    /// free space is unknown; logged once.
    capacity_unknown: bool,
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

/// How long a read waits before looking again while the writer swaps the database.
pub(super) const REOPEN_PAUSE: std::time::Duration = std::time::Duration::from_millis(10);
/// Free bytes the writer wants before it reopens a database that failed a write: sled writes
/// while it opens.
const REOPEN_ROOM: u64 = 4 << 20;

/// Effects of the group being built, not yet in sled.
struct Pending {
    heads: HashMap<String, u64>,
    ids: HashMap<Uuid, ids::Stored>,
    /// The group's events, packed onto the end of the log.
    chunks: Chunks,
}

impl Pending {
    fn new(chunks: Chunks) -> Self {
        Self {
            heads: HashMap::new(),
            ids: HashMap::new(),
            chunks,
        }
    }
}

impl Writer {
    /// Starts the writer thread on the database `Store::open` opened, whose next position is
    /// `head`.
    pub(super) fn start(
        shared: Arc<Shared>,
        (store, files): (Store, SledFiles),
        path: PathBuf,
        options: &SledOptions,
        live: broadcast::Sender<CommittedBatch>,
        head: u64,
        requests: mpsc::Receiver<AppendRequest>,
    ) -> Result<JoinHandle<()>> {
        let writer = Writer {
            shared,
            store: Some(store),
            files: Some(files),
            path,
            cache_bytes: options.cache_bytes,
            reserve_bytes: options.reserve_bytes,
            broken: None,
            live,
            next: head,
            max_group: options.max_group.max(1),
            unflushed: false,
            capacity_unknown: false,
        };
        std::thread::Builder::new()
            .name("podium-log-writer".into())
            .spawn(move || writer.run(requests))
            .map_err(|e| EventLogError::Storage(format!("cannot start writer thread: {e}")))
    }

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

    /// The database, ready for the next group: room on the disk, and open again after a
    /// failed write.
    fn ready(&mut self) -> Result<Store> {
        if let Err(error) = self.has_room() {
            tracing::warn!(%error, "disk nearly full; appends are refused");
            return Err(EventLogError::DiskFull(error.to_string()));
        }
        if self.broken.is_some() {
            if let Err(error) = self.reopen() {
                tracing::warn!(%error, "event log still cannot write; appends are refused");
                return Err(error);
            }
            self.broken = None;
        }
        self.store
            .clone()
            .ok_or_else(|| EventLogError::Storage("the database could not be reopened".into()))
    }

    fn commit(&mut self, group: Vec<AppendRequest>) {
        let ready = self
            .ready()
            .and_then(|store| Ok((Chunks::at(&store.tree, self.next)?, store)));
        let (chunks, store) = match ready {
            Ok(ready) => ready,
            Err(error) => {
                for request in group {
                    let _ = request.reply.send(Err(error_like(&error)));
                }
                return;
            }
        };
        let mut batch = sled::Batch::default();
        let mut pending = Pending::new(chunks);
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
        pending.chunks.write(&mut batch);
        if !committed.is_empty() || self.unflushed {
            let events = committed.len();
            let flush_started = std::time::Instant::now();
            // Durable means on stable storage: sled's flush ends in `sync_file_range`, which
            // a power cut can undo, so the files it wrote are fdatasynced too (see `sync`).
            let result = store
                .tree
                .apply_batch(batch)
                .and_then(|()| store.db.flush().map(|_| ()))
                .map_err(storage)
                .and_then(|()| self.sync_files());
            if let Err(error) = result {
                metrics::counter!(crate::metrics::COMMIT_FAILURES).increment(1);
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
            crate::metrics::group_committed(events, flush_started.elapsed(), self.next);
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

    /// Makes everything sled has written durable: once per group, after its flush.
    fn sync_files(&mut self) -> Result<()> {
        match self.files.as_mut() {
            Some(files) => files.sync().map_err(|e| unsyncable(&self.path, e)),
            None => Err(EventLogError::Storage(
                "the database could not be reopened".into(),
            )),
        }
    }

    /// Whether the file system under the log keeps `reserve_bytes` free.
    /// After a failure, reopening needs at least [`REOPEN_ROOM`] too. A reserve of 0 turns the
    /// check off; a file system that reports no capacity at all is taken as unknown, not full.
    fn has_room(&mut self) -> std::io::Result<()> {
        if self.reserve_bytes == 0 {
            return Ok(());
        }
        let stats = fs2::statvfs(&self.path)?;
        if stats.total_space() == 0 {
            if !self.capacity_unknown {
                self.capacity_unknown = true;
                tracing::warn!(
                    path = %self.path.display(),
                    "the file system under the event log reports no capacity; free space is unknown and not checked"
                );
            }
            return Ok(());
        }
        let free = stats.available_space();
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
        // only when the last handle on the old database is dropped, which opening waits for.
        let mut slot = self
            .shared
            .store
            .write()
            .map_err(|_| EventLogError::Closed)?;
        self.store = None;
        self.files = None;
        *slot = None;
        let (store, files) = Store::open(&self.path, self.cache_bytes)
            .inspect_err(|error| tracing::error!(%error, "cannot reopen the event log"))?;
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
        self.files = Some(files);
        // Everything in the reopened database is durable (opening synced it): events of a
        // failed commit that made it there are durable now, though never acknowledged (as
        // after a crash).
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
        // Idempotency first: a retry of a write that succeeded is answered, not rejected; an
        // id stored in another stream is a request id reused for something else, refused.
        let mut seen = Vec::with_capacity(request.events.len());
        for event in &request.events {
            let found = match pending.ids.get(&event.id) {
                Some(found) => Some(found.clone()),
                None => ids::stored(tree, event.id)?,
            };
            seen.push(match found {
                None => None,
                Some(found) if found.stream == request.stream => {
                    Some((found.position, found.version))
                }
                Some(found) => {
                    return Err(EventLogError::ReusedId {
                        id: event.id,
                        stream: request.stream.clone(),
                        owner: found.stream,
                    });
                }
            });
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
            pending
                .chunks
                .push(position, &recorded.to_proto().encode_to_vec());
            batch.insert(stream_key(stream, version), position.to_be_bytes().to_vec());
            batch.insert(id_key(event.id).to_vec(), ids::entry(position, version));
            pending.ids.insert(
                event.id,
                ids::Stored {
                    stream: request.stream.clone(),
                    position,
                    version,
                },
            );
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

/// The same error again, for every request of a refused group.
fn error_like(error: &EventLogError) -> EventLogError {
    Failure::of(error).error()
}
