//! The `podium.v1.Diagnostics` service: `Ping`, the no-op baseline of every benchmark. It goes
//! through the same interceptor and token check as a ballot, and stores nothing; `Process`,
//! the process's own figures (memory, open files, threads, tasks) for the soak and an operator;
//! `Node`, the node at a glance for `podium admin status`; and `Backup`, a backup of the node
//! while it serves ([`crate::backup`]).

use std::{path::PathBuf, pin::Pin, sync::Arc, time::Instant};

use futures::{Stream, StreamExt};
use podium_access::caller;
use podium_eventlog::EventLog;
use podium_proto::v1::{self as pb, diagnostics_server::Diagnostics};
use tokio::sync::watch;
use tonic::{Request, Response, Status};

use crate::{
    backup::{BackupError, BackupSource},
    metrics::RpcMetricsLayer,
};

/// What `Node` reads. Without it (tests that serve `Ping` alone) `Node` is UNAVAILABLE.
#[derive(Clone)]
pub struct NodeFacts {
    pub started: Instant,
    pub log: Arc<dyn EventLog>,
    /// `sled` or `nats`.
    pub log_backend: &'static str,
    /// The read models' applied position (they share one follower).
    pub applied: Option<watch::Receiver<u64>>,
    pub streams: RpcMetricsLayer,
    pub data_dir: PathBuf,
    pub disk_reserve: u64,
    /// What `Backup` copies: the polls' keys when this process runs the polls.
    pub voter_keys: Option<Arc<podium_feedback::VoterKeys>>,
    /// What `Backup` copies: the tokens' signing keys.
    pub token_keys: Arc<podium_access::TokenKeys>,
    /// What `Backup` copies: the per-person keys.
    pub personal: Arc<podium_eventlog::personal::PersonalKeys>,
    /// The recordings' store when this process runs the status service: a backup holds its
    /// files still while it reads the log's head.
    pub recordings: Option<Arc<podium_status::RecordingStore>>,
    /// Turns true when the server begins to shut down: a backup in progress ends.
    pub stop: watch::Receiver<bool>,
    /// On several nodes: the status engine's lease, which names this node and the holder.
    pub lease: Option<Arc<dyn podium_eventlog::Lease>>,
}

#[derive(Default)]
pub struct DiagnosticsService {
    node: Option<NodeFacts>,
    /// podiumd's runtimes besides the one serving gRPC (the poll and Q&A publishers'), whose
    /// tasks `Process` counts with the serving runtime's.
    runtimes: Vec<tokio::runtime::Handle>,
}

impl DiagnosticsService {
    pub fn new(node: NodeFacts) -> Self {
        Self {
            node: Some(node),
            runtimes: Vec::new(),
        }
    }

    /// Counts the tasks of `runtimes` too.
    pub fn with_runtimes(mut self, runtimes: Vec<tokio::runtime::Handle>) -> Self {
        self.runtimes = runtimes;
        self
    }
}

type BackupStream = Pin<Box<dyn Stream<Item = Result<pb::BackupChunk, Status>> + Send>>;

#[tonic::async_trait]
impl Diagnostics for DiagnosticsService {
    type BackupStream = BackupStream;

    async fn ping(
        &self,
        request: Request<pb::PingRequest>,
    ) -> Result<Response<pb::PingResponse>, Status> {
        caller(&request)?;
        Ok(Response::new(pb::PingResponse {
            seq: request.into_inner().seq,
        }))
    }

    async fn process(
        &self,
        request: Request<pb::ProcessRequest>,
    ) -> Result<Response<pb::ProcessResponse>, Status> {
        caller(&request)?.require_admin("read the process figures")?;
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let open_files = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
        let tasks = std::iter::once(&tokio::runtime::Handle::current())
            .chain(&self.runtimes)
            .map(|runtime| runtime.metrics().num_alive_tasks() as u64)
            .sum();
        Ok(Response::new(pb::ProcessResponse {
            resident_bytes: field("VmRSS:") * 1024,
            open_files,
            threads: field("Threads:"),
            tasks,
        }))
    }

    async fn node(
        &self,
        request: Request<pb::NodeRequest>,
    ) -> Result<Response<pb::NodeResponse>, Status> {
        caller(&request)?.require_admin("read the node's status")?;
        let node = self
            .node
            .as_ref()
            .ok_or_else(|| Status::unavailable("this server does not report its node"))?;
        let holder = node.lease.as_ref().and_then(|l| l.holder());
        let head = node.log.head();
        let applied = node.applied.as_ref().map_or(head, |a| *a.borrow());
        let dir = node.data_dir.clone();
        let (data_bytes, disk_available_bytes) = tokio::task::spawn_blocking(move || {
            (size_under(&dir), fs2::available_space(&dir).unwrap_or(0))
        })
        .await
        .map_err(|e| Status::internal(format!("measuring the data directory: {e}")))?;
        Ok(Response::new(pb::NodeResponse {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_seconds: node.started.elapsed().as_secs(),
            log_backend: node.log_backend.to_owned(),
            log_head: head,
            read_model_lag: head.saturating_sub(applied),
            open_streams: node.streams.open_streams(),
            data_bytes,
            disk_available_bytes,
            disk_reserve_bytes: node.disk_reserve,
            node_name: node
                .lease
                .as_ref()
                .map(|l| l.node().to_owned())
                .unwrap_or_default(),
            status_engine_node: holder.as_ref().map(|t| t.node.clone()).unwrap_or_default(),
            status_engine_term: holder.map_or(0, |t| t.number),
        }))
    }

    async fn backup(
        &self,
        request: Request<pb::BackupRequest>,
    ) -> Result<Response<BackupStream>, Status> {
        caller(&request)?.require_admin("take a backup")?;
        let node = self
            .node
            .as_ref()
            .ok_or_else(|| Status::unimplemented("this server does not take backups"))?;
        let source = BackupSource {
            log: node.log.clone(),
            data_dir: node.data_dir.clone(),
            voter_keys: node.voter_keys.clone(),
            token_keys: node.token_keys.clone(),
            personal: node.personal.clone(),
            recordings: node.recordings.clone(),
        };
        let include_recordings = request.into_inner().include_recordings;
        let stream = source
            .stream(include_recordings, node.stop.clone())
            .map(|piece| {
                piece
                    .map(|data| pb::BackupChunk { data })
                    .map_err(backup_status)
            });
        Ok(Response::new(Box::pin(stream)))
    }
}

/// The status a backup that could not be finished ends with.
fn backup_status(error: BackupError) -> Status {
    tracing::error!(%error, "backup failed");
    match error {
        BackupError::ShuttingDown => Status::unavailable(error.to_string()),
        BackupError::Corrupt(_) | BackupError::Recording(_) => {
            Status::failed_precondition(error.to_string())
        }
        _ => Status::internal(error.to_string()),
    }
}

/// Bytes of the files under `dir`, following no links; what cannot be read counts 0.
fn size_under(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => size_under(&entry.path()),
            Ok(kind) if kind.is_file() => entry.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn as_admin<T>(message: T) -> Request<T> {
        let mut request = Request::new(message);
        request
            .extensions_mut()
            .insert(podium_access::Principal::admin());
        request
    }

    #[tokio::test]
    async fn the_process_tasks_count_the_publishers_runtime_too() {
        // Never driven, so its tasks stay alive until it is shut down.
        let publishers = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for _ in 0..7 {
            publishers.spawn(std::future::pending::<()>());
        }
        let alone = DiagnosticsService::default();
        let both = DiagnosticsService::default().with_runtimes(vec![publishers.handle().clone()]);
        let tasks = |service: DiagnosticsService| async move {
            let figures = service.process(as_admin(pb::ProcessRequest {})).await;
            figures.unwrap().into_inner().tasks
        };
        let (without, with) = (tasks(alone).await, tasks(both).await);
        publishers.shutdown_background();
        assert_eq!(with, without + 7, "{without} then {with}");
    }
}
