//! The NATS JetStream backend of [`EventLog`]: the log of a cluster, replicated by JetStream
//! (three copies by default) so that no machine's loss loses an acknowledged event or stops
//! the conference.
//!
//! One JetStream stream holds the whole log ([`subjects`] maps streams onto its subjects); its
//! sequence, less one, is the global position: dense, because the stream denies deletes and
//! purges and a failed atomic batch takes no sequence. [`append`] fences every publish by the
//! stream's last sequence and keeps ids unique for ever; [`read`] reads many events at once
//! from any replica but never returns fewer than it owes; [`tail`] follows the stream for live
//! subscribers. Durability is JetStream's: a publish is acknowledged once a majority of the
//! replicas has it, and on disk only if the servers sync every write (`sync_interval: always`,
//! see `deploy/nats/`).

mod append;
mod blobs;
mod claims;
mod durability;
mod lease;
mod read;
mod secrets;
mod subjects;
mod tail;

use std::{
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use async_nats::jetstream::{self, kv, stream::StorageType};
use async_trait::async_trait;
use tokio::{sync::broadcast, task::JoinHandle};
use uuid::Uuid;

use crate::{
    AppendOutcome, CommittedBatch, EventLog, EventLogError, ExpectedVersion, NewEvent, Page,
    RecordedEvent, Result, sled_log::validate_append,
};
pub use blobs::SharedBlobs;
pub use lease::NatsLease;
use read::{Reader, nats};
pub use secrets::{CLUSTER_KEY_LEN, Secret, SharedSecrets};
pub use tail::TailRestarts;

/// How to reach the cluster and what to keep there.
#[derive(Debug, Clone)]
pub struct NatsOptions {
    /// The servers' URLs (`nats://host:4222`); the client moves between them on its own.
    pub servers: Vec<String>,
    /// Names what podium keeps on the cluster: the JetStream stream `<prefix>`, its subjects
    /// `<prefix>.e.>`, and the key-value bucket `<prefix>-ids`. ASCII letters, digits, `-`
    /// and `_`.
    pub prefix: String,
    /// Copies of every event: 3 survives the loss of any one server.
    pub replicas: usize,
    /// A NATS credentials file (`.creds`), for a cluster with accounts.
    pub credentials: Option<PathBuf>,
    /// A PEM file of the certificate authorities to trust, for a cluster serving TLS.
    pub tls_ca: Option<PathBuf>,
    /// Refuse a server that does not offer TLS.
    pub require_tls: bool,
    /// Committed batches buffered for live subscribers before a slow one lags.
    pub live_buffer: usize,
    /// The servers' monitoring URLs (`http://host:8222`), where podium checks that every
    /// server holding the log syncs each write to disk.
    pub monitors: Vec<String>,
    /// How long JetStream itself remembers a message id, when podium creates the stream. Two
    /// appends of one id racing each other are told apart within it; podium's claims keep ids
    /// unique after it.
    pub duplicate_window: Duration,
    /// Run on servers that sync lazily (or whose settings podium cannot see): an acknowledged
    /// event can then be lost in a power cut of the cluster's machines.
    pub unsafe_lazy_sync: bool,
}

impl Default for NatsOptions {
    fn default() -> Self {
        Self {
            servers: vec!["nats://127.0.0.1:4222".into()],
            prefix: "podium".into(),
            replicas: 3,
            credentials: None,
            tls_ca: None,
            require_tls: false,
            live_buffer: 4096,
            monitors: Vec::new(),
            duplicate_window: Duration::from_secs(120),
            unsafe_lazy_sync: false,
        }
    }
}

/// What every part of the backend shares.
struct Inner {
    client: async_nats::Client,
    js: jetstream::Context,
    reader: Reader,
    ids: kv::Store,
    /// The bucket's own stream, read through its leader: a claim read from a replica could be
    /// older than one just written.
    ids_stream: jetstream::stream::Stream,
    /// The bucket's name.
    bucket: String,
    prefix: String,
    /// One past the last sequence this process knows is stored: its own acknowledged appends
    /// and everything the tail has delivered.
    head: Arc<AtomicU64>,
    live: broadcast::WeakSender<CommittedBatch>,
    /// How long JetStream remembers a message id on this stream.
    duplicate_window: Duration,
    /// Changes each time the client connects to a server: the tail follows again on a new
    /// consumer after each.
    connections: tokio::sync::watch::Receiver<()>,
    restarts: tail::Restarts,
}

/// The event log on a NATS JetStream cluster.
pub struct NatsEventLog {
    inner: Arc<Inner>,
    tail: JoinHandle<()>,
}

impl NatsEventLog {
    /// Connects to the cluster and creates the stream and the bucket where they do not exist
    /// yet. An existing stream that would let events be deleted, or that keeps fewer copies
    /// than asked, is refused.
    pub async fn open(options: NatsOptions) -> Result<Self> {
        let prefix = options.prefix.clone();
        if prefix.is_empty()
            || !prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(EventLogError::InvalidAppend(format!(
                "the NATS prefix {prefix:?} must be ASCII letters, digits, - and _"
            )));
        }
        let (connected, connections) = tokio::sync::watch::channel(());
        let client = connect(&options, connected).await?;
        let js = jetstream::new(client.clone());
        let stream = while_cluster_settles(|| {
            js.get_or_create_stream(jetstream::stream::Config {
                name: prefix.clone(),
                description: Some("podium's event log".into()),
                subjects: vec![subjects::all(&prefix)],
                storage: StorageType::File,
                num_replicas: options.replicas,
                deny_delete: true,
                deny_purge: true,
                allow_direct: true,
                allow_atomic_publish: true,
                duplicate_window: options.duplicate_window,
                ..Default::default()
            })
        })
        .await?;
        // Known once the client has heard from a server, which answering for the stream is.
        check_version(&client.server_info().version)?;
        let info = while_cluster_settles(|| stream.get_info()).await?;
        let config = &info.config;
        check_stream(config, &subjects::all(&prefix), options.replicas)?;
        let bucket = format!("{prefix}-ids");
        let description = "podium's event ids: where each was appended";
        let ids = key_value_bucket(&js, &bucket, description, options.replicas).await?;
        let ids_stream = while_cluster_settles(|| js.get_stream(format!("KV_{bucket}"))).await?;
        let ids_info = while_cluster_settles(|| ids_stream.get_info()).await?;
        check_claims(&ids_info.config, options.replicas)?;
        if options.unsafe_lazy_sync {
            tracing::warn!(
                "--unsafe-lazy-sync: the NATS servers' sync setting is not checked; an acknowledged event can be lost in a power cut"
            );
        } else {
            // Every server that holds the log or the claims, whether it is up now or not.
            let holders = [&info.cluster, &ids_info.cluster]
                .into_iter()
                .flatten()
                .flat_map(|c| {
                    c.leader
                        .iter()
                        .cloned()
                        .chain(c.replicas.iter().map(|r| r.name.clone()))
                })
                .collect();
            durability::check(&options.monitors, &holders).await?;
        }
        let head = info.state.last_sequence;
        let live = broadcast::channel(options.live_buffer.max(1)).0;
        let head_cell = Arc::new(AtomicU64::new(head));
        let inner = Arc::new(Inner {
            reader: Reader {
                client: client.clone(),
                stream,
                prefix: prefix.clone(),
                head: head_cell.clone(),
            },
            client,
            js,
            ids,
            ids_stream,
            bucket,
            prefix,
            head: head_cell,
            duplicate_window: config.duplicate_window,
            live: live.downgrade(),
            connections,
            restarts: tail::Restarts::default(),
        });
        crate::metrics::tail_restarts_from_zero();
        let tail = tokio::spawn(tail::follow(inner.clone(), live, head + 1));
        tracing::info!(head, "event log opened on NATS JetStream");
        Ok(Self { inner, tail })
    }

    /// Starts keeping the status engine's lease for `node` (see [`crate::lease`]), in the
    /// bucket `<prefix>-lease` with `replicas` copies: a node that holds it and stops renewing
    /// it is replaced after `ttl`.
    pub async fn lease(&self, node: String, ttl: Duration, replicas: usize) -> Result<NatsLease> {
        NatsLease::start(
            self.inner.client.clone(),
            self.inner.prefix.clone(),
            replicas,
            node,
            ttl,
        )
        .await
    }

    /// The recordings every node of the cluster can fetch (see [`SharedBlobs`]); the object
    /// store is made with `replicas` copies where it does not exist.
    pub async fn blobs(&self, replicas: usize) -> Result<SharedBlobs> {
        SharedBlobs::open(self.inner.client.clone(), &self.inner.prefix, replicas).await
    }

    /// The secrets every node of the cluster shares, sealed with `cluster_key` (see
    /// [`SharedSecrets`]); the bucket is made with `replicas` copies where it does not exist.
    pub async fn secrets(
        &self,
        cluster_key: &[u8; CLUSTER_KEY_LEN],
        replicas: usize,
    ) -> Result<SharedSecrets> {
        SharedSecrets::open(
            self.inner.client.clone(),
            &self.inner.prefix,
            replicas,
            cluster_key,
        )
        .await
    }

    /// How many times the live tail followed again on a new consumer, by cause, since the log
    /// opened.
    pub fn tail_restarts(&self) -> TailRestarts {
        self.inner.restarts.read()
    }

    /// The address of the NATS server this process last connected to, as that server announces
    /// it (while the client is disconnected, the one it lost).
    pub fn server(&self) -> String {
        let info = self.inner.client.server_info();
        format!("{}:{}", info.host, info.port)
    }

    /// Stops following the cluster: live subscriptions end. Appends already acknowledged are
    /// on the cluster. Idempotent.
    pub fn close(&self) {
        self.tail.abort();
    }
}

impl Drop for NatsEventLog {
    fn drop(&mut self) {
        self.close();
    }
}

/// True when `error` is what JetStream answers while the cluster is still settling (just
/// started, a server just came back, a stream just made): one of the refusals of
/// [`refused_while_settling`], or no answer at all (the request times out).
pub(super) fn settling(error: &str) -> bool {
    refused_while_settling(error) || error.contains("timed out")
}

/// True when `error` is a refusal of a settling cluster, which stored nothing: "no suitable
/// peers" (10005), "temporarily unavailable" (10008), or no stream for a publish's subject
/// yet (a new stream's interest has not reached this server). A write refused so can be sent
/// again; one that timed out may have been stored.
pub(super) fn refused_while_settling(error: &str) -> bool {
    ["10005", "10008", "no stream found for given subject"]
        .iter()
        .any(|sign| error.contains(sign))
}

/// Runs `request` again while the cluster is still [settling], for a few seconds. Gives up
/// after [`SETTLE`].
async fn while_cluster_settles<
    T,
    E: std::fmt::Display,
    F: Future<Output = std::result::Result<T, E>>,
>(
    mut request: impl FnMut() -> F,
) -> Result<T> {
    let started = tokio::time::Instant::now();
    loop {
        match request().await {
            Ok(value) => return Ok(value),
            Err(e) => {
                if !settling(&e.to_string()) || started.elapsed() > SETTLE {
                    return Err(nats(e));
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

/// What `get` finds, or else what `create` makes: how every bucket podium keeps in JetStream is
/// opened, by whichever node starts first. Both run again while the cluster settles.
async fn open_or_create<T, E1, E2, F1, F2>(
    get: impl FnMut() -> F1,
    create: impl FnMut() -> F2,
) -> Result<T>
where
    E1: std::fmt::Display,
    E2: std::fmt::Display,
    F1: Future<Output = std::result::Result<T, E1>>,
    F2: Future<Output = std::result::Result<T, E2>>,
{
    match while_cluster_settles(get).await {
        Ok(found) => Ok(found),
        Err(_) => while_cluster_settles(create).await,
    }
}

/// The key-value bucket `bucket`, on file storage with `replicas` copies and one revision per
/// key, made where it does not exist yet.
async fn key_value_bucket(
    js: &jetstream::Context,
    bucket: &str,
    description: &str,
    replicas: usize,
) -> Result<kv::Store> {
    open_or_create(
        || js.get_key_value(bucket),
        || {
            js.create_key_value(kv::Config {
                bucket: bucket.into(),
                description: description.into(),
                history: 1,
                storage: StorageType::File,
                num_replicas: replicas,
                ..Default::default()
            })
        },
    )
    .await
}

/// How long opening the log waits for a settling cluster.
pub(super) const SETTLE: Duration = Duration::from_secs(30);

/// The most events in one append: JetStream's largest atomic batch by default (sled takes a few
/// more).
const MAX_BATCH: usize = 1000;

/// Refuses a log stream that could lose or hide events: one that allows deletes or purges,
/// drops messages by age, count or size, keeps fewer copies than asked, takes no atomic
/// batches or direct gets, or does not hold podium's subjects.
fn check_stream(config: &jetstream::stream::Config, subjects: &str, replicas: usize) -> Result<()> {
    let name = &config.name;
    let refuse = |why: &str| {
        Err(EventLogError::Storage(format!(
            "the JetStream stream {name} {why}: podium will not keep its log there"
        )))
    };
    if !config.deny_delete || !config.deny_purge {
        return refuse("allows deletes or purges");
    }
    if config.retention != jetstream::stream::RetentionPolicy::Limits
        || !config.max_age.is_zero()
        || config.max_messages > 0
        || config.max_bytes > 0
        || config.max_messages_per_subject > 0
    {
        return refuse("drops messages (by retention, age, count or size)");
    }
    if !config.allow_atomic_publish || !config.allow_direct {
        return refuse("takes no atomic batches or no direct gets");
    }
    if !config.subjects.iter().any(|s| s == subjects) {
        return refuse(&format!("does not hold the subjects {subjects}"));
    }
    if config.num_replicas < replicas {
        return refuse(&format!(
            "keeps {} copies, fewer than the {replicas} asked",
            config.num_replicas
        ));
    }
    Ok(())
}

/// Refuses a claims bucket that forgets claims or keeps fewer copies than asked.
fn check_claims(config: &jetstream::stream::Config, replicas: usize) -> Result<()> {
    if !config.max_age.is_zero() || config.num_replicas < replicas {
        return Err(EventLogError::Storage(format!(
            "the bucket {} forgets its entries or keeps fewer than {replicas} copies: podium's event ids would not stay unique",
            config.name
        )));
    }
    Ok(())
}

/// The oldest server podium runs on. Atomic batches came in 2.12, but up to 2.12.8 at least a
/// stream's last sequence on a filter of several subjects missed the last message of an atomic
/// batch just stored, for reads and for the expected-sequence check alike, so two appends could
/// take one version (found by this crate's tests; 2.14 is right).
pub(super) const OLDEST_SERVER: (u64, u64) = (2, 14);

/// `major.minor` of a server's version string (`2.15.1`, `3.0.0-beta`).
pub(super) fn major_minor(version: &str) -> Option<(u64, u64)> {
    let mut parts = version.split(['.', '-']).map(|p| p.parse::<u64>().ok());
    Some((parts.next()??, parts.next()??))
}

fn check_version(version: &str) -> Result<()> {
    match major_minor(version) {
        Some(major_minor) if major_minor >= OLDEST_SERVER => Ok(()),
        _ => Err(EventLogError::Storage(format!(
            "the NATS server is version {version}; podium needs {}.{} or later",
            OLDEST_SERVER.0, OLDEST_SERVER.1
        ))),
    }
}

/// Connects to the cluster; each connection (the first, and each after the client lost its
/// server) changes `connected`.
async fn connect(
    options: &NatsOptions,
    connected: tokio::sync::watch::Sender<()>,
) -> Result<async_nats::Client> {
    let mut connect = async_nats::ConnectOptions::new()
        .name("podiumd")
        .connection_timeout(Duration::from_secs(5))
        // A server that froze holds its connection open: two missed pings (about 4 s) and the
        // client moves to another, instead of after the default two minutes.
        .ping_interval(Duration::from_secs(2))
        // A healthy cluster answers in milliseconds; a request to a leader that just died is
        // better sent again (every caller retries) than waited on for the default 10 s.
        .request_timeout(Some(Duration::from_secs(3)))
        .event_callback(move |event| {
            match &event {
                async_nats::Event::Connected => {
                    connected.send_replace(());
                    tracing::info!("connected to a NATS server");
                }
                async_nats::Event::Disconnected => {
                    tracing::warn!("lost the connection to the NATS server; connecting again")
                }
                async_nats::Event::LameDuckMode => {
                    tracing::info!("the NATS server is shutting down (lame duck mode)")
                }
                async_nats::Event::Draining | async_nats::Event::Closed => {
                    tracing::debug!(%event, "NATS client")
                }
                // One per message a slow subscription dropped: the subscriber says what it lost.
                async_nats::Event::SlowConsumer(_) => tracing::debug!(%event, "NATS client"),
                _ => tracing::warn!(%event, "NATS client"),
            }
            std::future::ready(())
        })
        .retry_on_initial_connect();
    if let Some(credentials) = &options.credentials {
        connect = connect
            .credentials_file(credentials)
            .await
            .map_err(|e| EventLogError::Storage(format!("{}: {e}", credentials.display())))?;
    }
    if let Some(ca) = &options.tls_ca {
        connect = connect.add_root_certificates(ca.clone());
    }
    connect = connect.require_tls(options.require_tls);
    let servers = options
        .servers
        .iter()
        .map(|s| {
            s.parse::<async_nats::ServerAddr>()
                .map_err(|e| EventLogError::Storage(format!("the NATS server {s:?}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    connect.connect(servers).await.map_err(nats)
}

#[async_trait]
impl EventLog for NatsEventLog {
    async fn append(
        &self,
        stream: &str,
        expected: ExpectedVersion,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome> {
        validate_append(stream, &events)?;
        if events.len() > MAX_BATCH {
            return Err(EventLogError::InvalidAppend(format!(
                "a batch on the JetStream log holds at most {MAX_BATCH} events (the servers' largest atomic batch)"
            )));
        }
        append::append(&self.inner, stream, expected, &events).await
    }

    async fn read_stream(
        &self,
        stream: &str,
        from_version: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>> {
        self.inner
            .reader
            .stream_events(stream, from_version, limit)
            .await
    }

    async fn read_page(&self, from: u64, limit: usize) -> Result<Page> {
        let head = self.head();
        let to = head.min(from.saturating_add(limit as u64));
        if from >= to {
            return Ok(Page::from(Vec::new()));
        }
        let messages = self.inner.reader.positions(from, to).await?;
        let last = messages.last().map(|m| m.sequence - 1);
        Ok(Page::new(
            last,
            messages.into_iter().map(|m| subjects::recorded(&m)),
        ))
    }

    async fn find(&self, stream: &str, id: Uuid) -> Result<Option<(u64, u64)>> {
        Ok(match claims::resolve(&self.inner, id).await? {
            claims::Claim::Stored {
                stream: owner,
                position,
                version,
            } if owner == stream => Some((position, version)),
            _ => None,
        })
    }

    fn head(&self) -> u64 {
        self.inner.head.load(Ordering::Acquire)
    }

    /// Asks the stream for its last sequence: the tail may be behind it (it delivers within
    /// milliseconds, but a stalled consumer is noticed only after a few seconds).
    async fn head_now(&self) -> Result<u64> {
        let info = self.inner.reader.stream.get_info().await.map_err(nats)?;
        Ok(info.state.last_sequence.max(self.head()))
    }

    fn listen(&self) -> broadcast::Receiver<CommittedBatch> {
        crate::listen_to(&self.inner.live)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_older_than_2_14_are_refused() {
        for good in ["2.14.0", "2.15.1", "3.0.0-beta"] {
            assert!(check_version(good).is_ok(), "{good}");
        }
        for bad in ["2.12.8", "2.9.25", "", "v2.15"] {
            let error = check_version(bad).unwrap_err().to_string();
            assert!(error.contains("needs 2.14 or later"), "{bad}: {error}");
        }
    }
}
