//! The status service's parts, when this process runs it: its read model, its engine (with the
//! engine's lease on a log several nodes share) and the recordings' store.

use std::sync::Arc;

use podium_eventlog::{EventLog, Lease, NatsLease, Projector};
use podium_status::{
    Clock, Engine, EngineHandle, RecordingStore, StatusModel, recordings::needed_content,
};

use crate::{Config, ServerError, backup, log_store::LogStore};

pub(crate) struct StatusParts {
    pub(crate) model: Projector<StatusModel>,
    pub(crate) engine: EngineHandle,
    pub(crate) recordings: Arc<RecordingStore>,
    /// On several nodes: the lease of the engine, released at a clean stop.
    pub(crate) lease: Option<Arc<NatsLease>>,
}

impl StatusParts {
    /// Starts the engine (taking part in its lease on a shared log) and opens the recordings'
    /// store, removing files no recording needs any more.
    pub(crate) async fn open(
        config: &Config,
        store: &LogStore,
        log: Arc<dyn EventLog>,
        model: Projector<StatusModel>,
    ) -> Result<Self, ServerError> {
        let grace = config.reconnect_grace.as_millis() as u64;
        let lease = store.engine_lease(config).await?;
        let engine = Engine::spawn(
            log,
            model.clone(),
            Clock::new(),
            grace,
            lease.clone().map(|l| l as Arc<dyn Lease>),
        )
        .await?;
        let dir = config.data_dir.join(backup::RECORDINGS);
        let mut recordings = RecordingStore::open(dir.clone(), config.max_recording_bytes)
            .map_err(|source| ServerError::Recordings {
                path: dir.display().to_string(),
                source,
            })?;
        if let Some(blobs) = store.blobs(config).await? {
            recordings = recordings.with_shared(blobs);
            // Recordings uploaded while this node ran alone, for every node.
            match recordings.share_local().await {
                Ok(0) => {}
                Ok(put) => {
                    tracing::info!(recordings = put, "gave the cluster this node's recordings")
                }
                Err(error) => {
                    tracing::error!(%error, "cannot give the cluster this node's recordings")
                }
            }
        }
        // Files of recordings deleted while the last collection could not run (a crash, an I/O
        // error) go now; the model has replayed the whole log.
        if let Err(error) = recordings.collect(needed_content(model.clone())).await {
            tracing::warn!(%error, "recordings' files no recording needs could not be removed");
        }
        let recordings = Arc::new(recordings);
        let needed = model.clone();
        recordings.collect_every(move || needed_content(needed.clone()));
        Ok(Self {
            model,
            engine,
            recordings,
            lease,
        })
    }
}
