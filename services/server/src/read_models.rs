//! Every read model of a process, registered with one follower of the log: one pass over the
//! log at start-up feeds them all, from their snapshots on.

use std::sync::Arc;

use podium_access::{Directory, TokenRegister, directory_event_types, register_event_types};
use podium_agenda::AgendaStore;
use podium_eventlog::{
    EventLog, Filter, Follower, FollowerHandle, Projector, personal::PersonalKeys,
};
use podium_feedback::{FeedbackModel, domain::words::WordCounter, feedback_event_types};
use podium_status::{StatusModel, status_model_event_types};

use crate::{ServerError, config::ServiceName};

/// Every read model of a process, fed by one follower of the log.
pub struct ReadModels {
    pub follower: FollowerHandle,
    pub directory: Projector<Directory>,
    /// Issued and revoked tokens, which every request is checked against.
    pub tokens: Projector<TokenRegister>,
    pub agenda: Option<AgendaStore>,
    pub status: Option<Projector<StatusModel>>,
    pub feedback: Option<Projector<FeedbackModel>>,
}

impl ReadModels {
    /// Registers the read model of each service that `runs` (the access directory and token
    /// register always: the interceptor and the feed need them) with one follower, loads their snapshots from
    /// `snapshots` when given, and replays the log once for all of them.
    pub async fn follow(
        log: Arc<dyn EventLog>,
        personal: Arc<PersonalKeys>,
        snapshots: Option<std::path::PathBuf>,
        every: u64,
        runs: impl Fn(ServiceName) -> bool,
    ) -> Result<Self, ServerError> {
        let mut follower = Follower::new(log.clone()).with_personal(personal);
        if let Some(dir) = snapshots {
            follower = follower.with_snapshots(dir, every);
        }
        let directory = follower.add_snapshotted(
            "access-directory",
            Directory::default(),
            Filter {
                stream_prefix: None,
                event_types: directory_event_types(),
            },
        );
        let tokens = follower.add_snapshotted(
            "access-tokens",
            TokenRegister::default(),
            Filter {
                stream_prefix: None,
                event_types: register_event_types(),
            },
        );
        let agenda =
            runs(ServiceName::Agenda).then(|| AgendaStore::follow(log.clone(), &mut follower));
        let status = runs(ServiceName::Status).then(|| {
            let filter = Filter {
                stream_prefix: None,
                event_types: status_model_event_types(),
            };
            follower.add_snapshotted("status", StatusModel::default(), filter)
        });
        let feedback = runs(ServiceName::Feedback).then(|| {
            let filter = Filter {
                stream_prefix: None,
                event_types: feedback_event_types(),
            };
            let model = FeedbackModel::new(Arc::new(WordCounter::new()));
            follower.add_snapshotted("feedback", model, filter)
        });
        Ok(Self {
            follower: follower.start().await?,
            directory,
            tokens,
            agenda,
            status,
            feedback,
        })
    }
}
