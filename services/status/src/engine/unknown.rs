//! Commands for a session the engine's read model does not know yet. On a cluster, a session
//! made through another node a moment before may not have reached this node when a command
//! for it does: the command waits for the model to read the log as far as it is stored, beside
//! the engine's loop (heartbeats and deadlines go on), and is then handled again, once.

use std::{collections::HashMap, time::Duration};

use futures::{StreamExt, future::BoxFuture, stream::FuturesUnordered};
use podium_eventlog::{Projector, lease::ASK_WAIT};

use super::{Input, Key};
use crate::model::StatusModel;

/// How long a command waits for the model: less than a forwarding node waits for its answer,
/// so that the moderator is told "not done" rather than nothing.
const WAIT: Duration = ASK_WAIT.saturating_sub(Duration::from_secs(2));

/// The commands waiting, by session, in the order they came, and one wait for the model per
/// session.
#[derive(Default)]
pub(super) struct Unknown {
    waiting: HashMap<Key, Vec<Input>>,
    catching_up: FuturesUnordered<BoxFuture<'static, (Key, Result<(), String>)>>,
}

impl Unknown {
    /// Whether commands of `key` are waiting: a later one waits behind them, so that a
    /// session's commands are decided in the order they came.
    pub(super) fn holds(&self, key: &Key) -> bool {
        self.waiting.contains_key(key)
    }

    /// Puts `command` behind the others of its session, starting the session's wait for the
    /// model if it is the first.
    pub(super) fn wait(&mut self, key: Key, command: Input, model: &Projector<StatusModel>) {
        if let Some(waiting) = self.waiting.get_mut(&key) {
            waiting.push(command);
            return;
        }
        self.waiting.insert(key.clone(), vec![command]);
        let model = model.clone();
        self.catching_up.push(Box::pin(async move {
            let caught_up = match tokio::time::timeout(WAIT, model.catch_up()).await {
                Ok(caught_up) => caught_up.map_err(|e| e.to_string()),
                Err(_) => Err(format!(
                    "session {} is not known on this node yet; nothing was done",
                    key.1
                )),
            };
            (key, caught_up)
        }));
    }

    pub(super) fn is_empty(&self) -> bool {
        self.catching_up.is_empty()
    }

    /// The commands of the next session whose wait ended, in order, and how it ended.
    pub(super) async fn next(&mut self) -> Option<(Vec<Input>, Result<(), String>)> {
        let (key, caught_up) = self.catching_up.next().await?;
        Some((self.waiting.remove(&key).unwrap_or_default(), caught_up))
    }
}
