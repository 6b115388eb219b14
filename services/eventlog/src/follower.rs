//! The one follower of the log that feeds every read model of a process: one subscription, one
//! read and one decoding of each event, applied to each registered model whose filter matches.
//! Before it was, each model replayed the whole log through a subscription of its own, and
//! start-up read the log once per model.
//!
//! With snapshots on ([`Follower::with_snapshots`]), a model that implements [`Snapshot`] is
//! loaded from its file at start and the follower starts at the lowest position any model needs;
//! a model skips what its snapshot already holds. A snapshot that does not match (corrupt,
//! another format, past the log's head, of another log) is ignored with a warning and that model
//! is rebuilt from the log. Snapshots are written again every `every` events and when
//! [`FollowerHandle::snapshot`] asks (podiumd does at a clean shutdown).

use std::{
    path::PathBuf,
    sync::{Arc, RwLock},
    time::Instant,
};

use futures::StreamExt;
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

use crate::{
    EventLog, EventLogError, Filter, Projection, Projector, RecordedEvent, Result,
    SubscriptionItem, durable,
    personal::PersonalKeys,
    snapshot::{Snapshot, SnapshotError, SnapshotFile, snapshot_path},
    subscribe,
};

/// How long the follower waits before following the log again after a failed read.
const RESUBSCRIBE_PAUSE: std::time::Duration = std::time::Duration::from_millis(100);

/// Read models waiting to be fed by one pass over the log. Register them with
/// [`Follower::add`] (or [`Follower::add_snapshotted`]), then [`Follower::start`].
pub struct Follower {
    log: Arc<dyn EventLog>,
    members: Vec<Box<dyn Member>>,
    snapshots: Option<Snapshots>,
    personal: Option<Arc<PersonalKeys>>,
}

#[derive(Debug, Clone)]
struct Snapshots {
    dir: PathBuf,
    every: u64,
}

/// Asks a running follower for snapshots.
#[derive(Debug, Clone)]
pub struct FollowerHandle {
    requests: mpsc::Sender<oneshot::Sender<Result<(), SnapshotError>>>,
    started_from: Arc<[(&'static str, u64)]>,
    applied: watch::Receiver<u64>,
}

impl FollowerHandle {
    /// The position below which every model has applied the log, as it moves; closed once the
    /// follower stops.
    pub fn applied(&self) -> watch::Receiver<u64> {
        self.applied.clone()
    }

    /// The position each model started from: its snapshot's, or 0 when it was rebuilt from the
    /// whole log.
    pub fn started_from(&self, model: &str) -> Option<u64> {
        self.started_from
            .iter()
            .find(|(name, _)| *name == model)
            .map(|(_, from)| *from)
    }

    /// Returns once the follower has stopped (the log closed) and let go of the log, so that
    /// the log's directory can be opened again.
    pub async fn stopped(&self) {
        self.requests.closed().await;
    }

    /// Writes a snapshot of every snapshotted model that changed since its last one, at the
    /// position the follower has reached, and returns once they are durable.
    pub async fn snapshot(&self) -> Result<(), SnapshotError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(reply)
            .await
            .map_err(|_| SnapshotError::Stopped)?;
        answer.await.map_err(|_| SnapshotError::Stopped)?
    }
}

impl Follower {
    pub fn new(log: Arc<dyn EventLog>) -> Self {
        Self {
            log,
            members: Vec::new(),
            snapshots: None,
            personal: None,
        }
    }

    /// Opens the personal fields of every event before the models see it (and writes
    /// `[erased]` in those of erased people), so no model holds ciphertext.
    pub fn with_personal(mut self, keys: Arc<PersonalKeys>) -> Self {
        self.personal = Some(keys);
        self
    }

    /// Loads snapshots from and writes them to `dir`, a new one of each model every `every`
    /// events it has applied past its last (0: only when asked).
    pub fn with_snapshots(mut self, dir: PathBuf, every: u64) -> Self {
        self.snapshots = Some(Snapshots { dir, every });
        self
    }

    /// Registers a read model. Its projector answers reads at once (the initial state) and
    /// waits (`wait_for`, `catch_up`) until the follower has started and caught up.
    pub fn add<P: Projection>(
        &mut self,
        name: &'static str,
        initial: P,
        filter: Filter,
    ) -> Projector<P> {
        self.register(name, initial, filter, None)
    }

    /// Registers a read model that is loaded from and written to snapshots.
    pub fn add_snapshotted<P: Snapshot>(
        &mut self,
        name: &'static str,
        initial: P,
        filter: Filter,
    ) -> Projector<P> {
        let codec = Codec {
            version: P::VERSION,
            save: P::save,
            restore: P::restore,
        };
        self.register(name, initial, filter, Some(codec))
    }

    fn register<P: Projection>(
        &mut self,
        name: &'static str,
        initial: P,
        filter: Filter,
        codec: Option<Codec<P>>,
    ) -> Projector<P> {
        let state = Arc::new(RwLock::new(initial));
        let (applied_tx, applied) = watch::channel(0u64);
        self.members.push(Box::new(Model {
            name,
            state: state.clone(),
            filter,
            from: 0,
            applied: applied_tx,
            codec,
            replayed: 0,
            on_disk: 0,
            tried: 0,
        }));
        Projector {
            state,
            applied,
            log: Arc::downgrade(&self.log),
        }
    }

    /// Loads the snapshots, replays the log once from the lowest position any model needs,
    /// then follows it live in a background task until the log closes.
    pub async fn start(mut self) -> Result<FollowerHandle> {
        let started = Instant::now();
        if let Some(snapshots) = &self.snapshots {
            let head = self.log.head();
            for member in &mut self.members {
                member.load(&*self.log, snapshots, head).await;
            }
        }
        let from = self.members.iter().map(|m| m.from()).min().unwrap_or(0);
        let mut events = Box::pin(subscribe(self.log.clone(), from, Filter::default()));
        let mut last_id = None;
        let next = loop {
            match events.next().await {
                Some(item) => match item? {
                    SubscriptionItem::Event(event) => {
                        if let Some(keys) = &self.personal {
                            keys.fetch_missing(&event).await;
                        }
                        apply(&mut self.members, self.personal.as_deref(), &event);
                        last_id = Some(event.id);
                    }
                    SubscriptionItem::CaughtUp(position) => break position,
                },
                None => return Err(EventLogError::Closed),
            }
        };
        for member in &mut self.members {
            member.advance(next);
            tracing::info!(
                read_model = member.name(),
                from = member.from(),
                events = member.replayed(),
                "read model replayed"
            );
        }
        tracing::info!(
            from,
            to = next,
            models = self.members.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "log followed to its head"
        );
        let (requests, asks) = mpsc::channel(4);
        let started_from = self.members.iter().map(|m| (m.name(), m.from())).collect();
        let (applied, applied_rx) = watch::channel(next);
        let live = Live {
            log: self.log,
            members: self.members,
            snapshots: self.snapshots,
            personal: self.personal,
            next,
            last_id,
            applied,
        };
        tokio::spawn(live.run(events, asks));
        Ok(FollowerHandle {
            requests,
            started_from,
            applied: applied_rx,
        })
    }
}

/// Feeds one event to every model, its personal fields opened first (only if a model takes
/// it: replay below a model's snapshot, or a type no model here folds, decrypts nothing).
fn apply(members: &mut [Box<dyn Member>], personal: Option<&PersonalKeys>, event: &RecordedEvent) {
    let opened = personal
        .filter(|_| members.iter().any(|m| m.wants(event)))
        .and_then(|keys| keys.open_event(event));
    let event = opened.as_ref().unwrap_or(event);
    for member in members {
        member.apply(event);
    }
}

type Events =
    std::pin::Pin<Box<dyn futures::Stream<Item = Result<SubscriptionItem>> + Send + 'static>>;

/// The follower after start-up: applies live events, writes snapshots.
struct Live {
    log: Arc<dyn EventLog>,
    members: Vec<Box<dyn Member>>,
    snapshots: Option<Snapshots>,
    personal: Option<Arc<PersonalKeys>>,
    /// Every position below this has been applied to every model.
    next: u64,
    /// The id of the event at `next - 1`, recorded in snapshots to tell another log.
    last_id: Option<Uuid>,
    /// `next`, for those who wait on every model at once.
    applied: watch::Sender<u64>,
}

impl Live {
    async fn run(
        mut self,
        mut events: Events,
        mut asks: mpsc::Receiver<oneshot::Sender<Result<(), SnapshotError>>>,
    ) {
        loop {
            if let Some(snapshots) = &self.snapshots
                && snapshots.every > 0
                && self
                    .members
                    .iter()
                    .any(|m| m.snapshotted() && self.next - m.tried() >= snapshots.every)
            {
                // A failure is logged; the model is tried again `every` events later.
                let _ = self.take_snapshots().await;
            }
            tokio::select! {
                item = events.next() => match item {
                    Some(Ok(SubscriptionItem::Event(event))) => {
                        if let Some(keys) = &self.personal {
                            keys.fetch_missing(&event).await;
                        }
                        apply(&mut self.members, self.personal.as_deref(), &event);
                        self.next = event.position + 1;
                        self.last_id = Some(event.id);
                        for member in &mut self.members {
                            member.advance(self.next);
                        }
                        self.applied.send_replace(self.next);
                        metrics::gauge!(crate::metrics::READ_MODEL_LAG)
                            .set(self.log.head().saturating_sub(self.next) as f64);
                    }
                    Some(Ok(SubscriptionItem::CaughtUp(_))) => {}
                    // The log was closed: the models are final, and waiters learn it.
                    None | Some(Err(EventLogError::Closed)) => break,
                    Some(Err(error)) => {
                        // A read that failed (the log's database being reopened after a write
                        // error) must not freeze the models: follow again from where they are.
                        let next = self.next;
                        tracing::warn!(%error, next, "read models resubscribing");
                        tokio::time::sleep(RESUBSCRIBE_PAUSE).await;
                        events = Box::pin(subscribe(self.log.clone(), next, Filter::default()));
                    }
                },
                Some(reply) = asks.recv() => {
                    let _ = reply.send(self.take_snapshots().await);
                }
            }
        }
    }

    /// Writes the snapshot of every snapshotted model behind the follower's position. The
    /// follower applies nothing meanwhile, so each file holds exactly the events below `next`;
    /// readers of the models go on reading.
    async fn take_snapshots(&mut self) -> Result<(), SnapshotError> {
        let Some(snapshots) = self.snapshots.clone() else {
            return Ok(());
        };
        let (next, Some(last_id)) = (self.next, self.last_id) else {
            return Ok(());
        };
        let mut outcome = Ok(());
        for member in &mut self.members {
            if !member.snapshotted() || member.on_disk() >= next {
                continue;
            }
            member.tried_at(next);
            let Some(save) = member.saver() else {
                continue;
            };
            let dir = snapshots.dir.clone();
            let name = member.name();
            let started = Instant::now();
            let written = tokio::task::spawn_blocking(move || {
                let (version, body) = save()?;
                let file = SnapshotFile {
                    version,
                    position: next,
                    last_id,
                    body,
                };
                let bytes = file.to_bytes();
                let path = snapshot_path(&dir, name);
                durable::create_dir_all(&dir)
                    .and_then(|()| durable::write_private(&path, &bytes))
                    .map_err(|source| SnapshotError::Io { path, source })?;
                Ok::<_, SnapshotError>(bytes.len())
            })
            .await
            .unwrap_or(Err(SnapshotError::Stopped));
            match written {
                Ok(bytes) => {
                    member.written_at(next);
                    tracing::info!(
                        read_model = name,
                        position = next,
                        bytes,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "snapshot written"
                    );
                }
                Err(error) => {
                    tracing::warn!(read_model = name, %error, "snapshot not written");
                    outcome = Err(error);
                }
            }
        }
        outcome
    }
}

/// How a snapshotted model is saved and restored.
struct Codec<P> {
    version: u32,
    save: fn(&P) -> Result<Vec<u8>, SnapshotError>,
    restore: fn(&mut P, &[u8]) -> Result<(), SnapshotError>,
}

/// Saves a model: its format version and body.
type Saver = Box<dyn FnOnce() -> Result<(u32, Vec<u8>), SnapshotError> + Send>;

/// One registered read model, whatever its type.
#[async_trait::async_trait]
trait Member: Send {
    fn name(&self) -> &'static str;
    /// The first position the model needs.
    fn from(&self) -> u64;
    fn replayed(&self) -> u64;
    /// Whether the model needs `event` (its position is past the model's snapshot, and the
    /// model's filter matches).
    fn wants(&self, event: &RecordedEvent) -> bool;
    /// Applies `event` if the model [`wants`](Member::wants) it.
    fn apply(&mut self, event: &RecordedEvent);
    /// Tells waiters that every position below `next` is applied.
    fn advance(&mut self, next: u64);
    fn snapshotted(&self) -> bool;
    fn on_disk(&self) -> u64;
    fn tried(&self) -> u64;
    fn tried_at(&mut self, position: u64);
    fn written_at(&mut self, position: u64);
    fn saver(&self) -> Option<Saver>;
    /// Loads the model's snapshot if there is one that matches `log`; otherwise logs why not
    /// and leaves the model to be rebuilt from the log.
    async fn load(&mut self, log: &dyn EventLog, snapshots: &Snapshots, head: u64);
}

struct Model<P> {
    name: &'static str,
    state: Arc<RwLock<P>>,
    filter: Filter,
    from: u64,
    applied: watch::Sender<u64>,
    codec: Option<Codec<P>>,
    replayed: u64,
    /// The position of the model's snapshot on disk (0: none).
    on_disk: u64,
    /// The position of the last attempt to write one.
    tried: u64,
}

#[async_trait::async_trait]
impl<P: Projection> Member for Model<P> {
    fn name(&self) -> &'static str {
        self.name
    }

    fn from(&self) -> u64 {
        self.from
    }

    fn replayed(&self) -> u64 {
        self.replayed
    }

    fn wants(&self, event: &RecordedEvent) -> bool {
        event.position >= self.from && self.filter.matches(event)
    }

    fn apply(&mut self, event: &RecordedEvent) {
        if self.wants(event) {
            let mut state = self
                .state
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            state.apply(event);
            self.replayed += 1;
        }
    }

    fn advance(&mut self, next: u64) {
        self.applied.send_replace(next);
    }

    fn snapshotted(&self) -> bool {
        self.codec.is_some()
    }

    fn on_disk(&self) -> u64 {
        self.on_disk
    }

    fn tried(&self) -> u64 {
        self.tried
    }

    fn tried_at(&mut self, position: u64) {
        self.tried = position;
    }

    fn written_at(&mut self, position: u64) {
        self.on_disk = position;
    }

    fn saver(&self) -> Option<Saver> {
        let codec = self.codec.as_ref()?;
        let (version, save, state) = (codec.version, codec.save, self.state.clone());
        Some(Box::new(move || {
            let state = state
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            Ok((version, save(&state)?))
        }))
    }

    async fn load(&mut self, log: &dyn EventLog, snapshots: &Snapshots, head: u64) {
        let Some(codec) = &self.codec else {
            return;
        };
        let path = snapshot_path(&snapshots.dir, self.name);
        let read_path = path.clone();
        let bytes = match tokio::task::spawn_blocking(move || std::fs::read(read_path)).await {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(error)) if error.kind() == std::io::ErrorKind::NotFound => {
                tracing::info!(read_model = self.name, path = %path.display(), "no snapshot; replaying the whole log");
                return;
            }
            Ok(Err(source)) => {
                let error = SnapshotError::Io {
                    path: path.clone(),
                    source,
                };
                tracing::warn!(read_model = self.name, path = %path.display(), %error, "snapshot ignored; rebuilding from the log");
                return;
            }
            Err(_) => return,
        };
        let checked = match SnapshotFile::parse(&bytes, codec.version) {
            Ok(file) => matches_log(&file, log, head).await.map(|()| file),
            Err(error) => Err(error),
        };
        let restored = match checked {
            Ok(file) => {
                let (restore, state) = (codec.restore, self.state.clone());
                let position = file.position;
                tokio::task::spawn_blocking(move || {
                    let mut state = state
                        .write()
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                    restore(&mut state, &file.body)
                })
                .await
                .unwrap_or(Err(SnapshotError::Stopped))
                .map(|()| position)
            }
            Err(error) => Err(error),
        };
        match restored {
            Ok(position) => {
                self.from = position;
                self.on_disk = position;
                self.tried = position;
                tracing::info!(read_model = self.name, position, "snapshot loaded");
            }
            Err(error) => {
                tracing::warn!(read_model = self.name, path = %path.display(), %error, "snapshot ignored; rebuilding from the log");
            }
        }
    }
}

/// A snapshot belongs to this log if its position is not past the head and the event before it
/// is the one it names.
async fn matches_log(
    file: &SnapshotFile,
    log: &dyn EventLog,
    head: u64,
) -> Result<(), SnapshotError> {
    if file.position > head {
        return Err(SnapshotError::PastHead {
            position: file.position,
            head,
        });
    }
    if file.position == 0 {
        return Ok(());
    }
    let at = file.position - 1;
    let found = log
        .read_all(at, 1)
        .await
        .map_err(|e| SnapshotError::Log(format!("event {at}: {e}")))?
        .first()
        .map(|e| e.id)
        .unwrap_or_default();
    if found != file.last_id {
        return Err(SnapshotError::OtherLog {
            position: at,
            expected: file.last_id,
            found,
        });
    }
    Ok(())
}
