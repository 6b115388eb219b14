//! The one coalescing publisher of poll results and Q&A, and the latest-value channels their
//! watchers read.
//!
//! **Fan-out costs per watcher, not per change**: every watched key (a poll; a session's
//! questions) has one `watch` channel holding its latest value; the publisher replaces the
//! value at most every [`COALESCE`], and each watcher sends whatever is latest when it is
//! ready. A slow watcher skips to the newest value instead of queueing.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use podium_eventlog::Projector;
use tokio::sync::watch;
use tonic::Status;

use crate::store::FeedbackModel;

/// Shortest time between two updates of one watched key.
pub const COALESCE: Duration = Duration::from_millis(100);

/// One latest-value channel per watched key (a poll; a session's questions).
pub(crate) type Channels<T> = Arc<Mutex<HashMap<(String, String), watch::Sender<Arc<T>>>>>;

/// Starts the task that, whenever keys are marked dirty, replaces the value of each watched one
/// with `build`'s, at most every [`COALESCE`].
pub(crate) fn spawn_publisher<T: Send + Sync + 'static>(
    model: Projector<FeedbackModel>,
    dirty: Arc<Mutex<HashMap<(String, String), u64>>>,
    changed: Arc<tokio::sync::Notify>,
    channels: Channels<T>,
    build: impl Fn(&FeedbackModel, &(String, String)) -> Option<T> + Send + 'static,
) {
    tokio::spawn(async move {
        loop {
            changed.notified().await;
            let batch: Vec<(String, String)> = match dirty.lock() {
                Ok(mut d) => d.drain().map(|(key, _)| key).collect(),
                Err(_) => return,
            };
            {
                let senders = match channels.lock() {
                    Ok(c) => c,
                    Err(_) => return,
                };
                let m = model.read();
                for key in batch {
                    if let Some(sender) = senders.get(&key)
                        && let Some(value) = build(&m, &key)
                    {
                        sender.send_replace(Arc::new(value));
                    }
                }
            }
            tokio::time::sleep(COALESCE).await;
        }
    });
}

/// A receiver of `key`'s latest value; the first watcher of a key opens its channel with
/// `first`'s value, later ones share it.
pub(crate) fn subscribe<T, E>(
    channels: &Channels<T>,
    key: (String, String),
    first: impl FnOnce() -> Result<T, E>,
) -> Result<watch::Receiver<Arc<T>>, Status>
where
    Status: From<E>,
{
    // Poisoned only if a thread panicked holding it: a bug, not the client's doing.
    let mut channels = channels
        .lock()
        .map_err(|_| Status::internal("internal error"))?;
    if let Some(sender) = channels.get(&key) {
        return Ok(sender.subscribe());
    }
    let (sender, receiver) = watch::channel(Arc::new(first()?));
    channels.insert(key, sender);
    Ok(receiver)
}
