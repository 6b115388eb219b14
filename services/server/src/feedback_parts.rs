//! The feedback service's parts, when this process runs it: its read model and the polls'
//! anonymity keys, and the services built on them with the thread their publishers run on.

use std::sync::Arc;

use podium_access::{RateLimits, TokenKeys};
use podium_eventlog::{EventLog, Projector, SharedSecrets};
use podium_feedback::{
    FeedbackModel, PollsService, PublishingThread, QuestionsService, RatingsService, VoterKeys,
};
use tokio::sync::watch;

use crate::{Config, ServerError, backup};

pub(crate) struct FeedbackParts {
    pub(crate) model: Projector<FeedbackModel>,
    pub(crate) keys: Arc<VoterKeys>,
}

/// The feedback services, built once: gRPC serves them and the pages call the same objects.
pub(crate) struct FeedbackServices {
    pub(crate) questions: Arc<QuestionsService>,
    pub(crate) ratings: Arc<RatingsService>,
    pub(crate) polls: Arc<PollsService>,
    /// The poll and Q&A publishers run on it, and end with it.
    publishing: PublishingThread,
}

impl FeedbackServices {
    /// The publishers' runtime, whose tasks `Diagnostics/Process` counts too.
    pub(crate) fn publishing_runtime(&self) -> tokio::runtime::Handle {
        self.publishing.handle().clone()
    }
}

impl FeedbackParts {
    /// Opens the polls' anonymity keys: files in the data directory, shared with the cluster
    /// when `secrets` is there.
    pub(crate) async fn open(
        config: &Config,
        secrets: Option<&Arc<SharedSecrets>>,
        model: Projector<FeedbackModel>,
    ) -> Result<Self, ServerError> {
        let dir = config.data_dir.join(backup::POLL_KEYS);
        let keys = match secrets {
            Some(shared) => VoterKeys::shared_with_files(shared.clone(), &dir)
                .await
                .map_err(|e| {
                    ServerError::Feedback(format!(
                        "cannot give the cluster the poll keys of {}: {e}",
                        dir.display()
                    ))
                })?,
            None => VoterKeys::open(dir.clone()).map_err(|e| {
                ServerError::Feedback(format!("cannot open {}: {e}", dir.display()))
            })?,
        };
        Ok(Self {
            model,
            keys: Arc::new(keys),
        })
    }

    /// The services, their publishers started on a thread of their own.
    pub(crate) fn services(
        &self,
        log: &Arc<dyn EventLog>,
        shutdown: &watch::Receiver<bool>,
        rates: &Arc<RateLimits>,
        token_keys: &Arc<TokenKeys>,
    ) -> Result<FeedbackServices, ServerError> {
        let publishing = PublishingThread::start().map_err(|error| {
            ServerError::Feedback(format!("cannot start the publishing thread: {error}"))
        })?;
        let questions = QuestionsService::new(
            log.clone(),
            self.model.clone(),
            shutdown.clone(),
            publishing.handle(),
        )
        .with_rate_limits(rates.clone())
        .with_token_keys(token_keys.clone());
        let polls = PollsService::new(
            log.clone(),
            self.model.clone(),
            self.keys.clone(),
            shutdown.clone(),
            publishing.handle(),
        )
        .with_rate_limits(rates.clone());
        Ok(FeedbackServices {
            questions: Arc::new(questions),
            ratings: Arc::new(RatingsService::new(log.clone(), self.model.clone())),
            polls: Arc::new(polls),
            publishing,
        })
    }
}
