//! The one coalescing publisher of poll results and Q&A, and the latest-value channels their
//! watchers read.
//!
//! **Fan-out costs per watcher, not per change**: every watched key (a poll; a session's
//! questions) has its latest value in `watch` channels; the publisher replaces the values
//! about ten times a second at most (one publish every [`COALESCE`] on average, see
//! [`Pace`]), and each watcher sends whatever is latest when it is ready. A slow watcher skips
//! to the newest value instead of queueing.
//!
//! **A publish wakes its watchers a wave at a time.** A key's watchers are split over channels
//! of at most [`WAVE`] receivers ([`Fanout`]), and the publisher lets at most about two waves'
//! worth of woken watchers wait in podiumd's runtime's queue ([`publish_in_waves`]). Waking 20,000
//! watchers at once put 20,000 tasks in the runtime's queue, and everything woken after them
//! (a failover's status on its way to the video switcher) waited for all of them.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use podium_eventlog::Projector;
use tokio::sync::watch;
use tonic::Status;

use crate::store::FeedbackModel;

/// The time between two of a publisher's publishes, on average under a steady stream of
/// changes: ten a second.
pub const COALESCE: Duration = Duration::from_millis(100);

/// How many watchers of a key one channel wakes at once.
const WAVE: usize = 1024;

/// How many waves a publish lets wait in the watchers' runtime's queue.
const AHEAD: usize = 2;

/// One wave of a key's watchers: a channel of at most [`WAVE`] receivers.
type Wave<T> = watch::Sender<Arc<T>>;

/// One watched key's waves, each holding the key's latest value once the publish reaches it.
pub(crate) struct Fanout<T> {
    waves: Vec<Wave<T>>,
    /// The value being published: a wave opened while a publish goes on starts from it, not
    /// from a wave the publish has not reached yet.
    latest: Arc<T>,
}

impl<T> Fanout<T> {
    fn new(value: Arc<T>) -> Self {
        Self {
            waves: vec![watch::channel(value.clone()).0],
            latest: value,
        }
    }

    /// A receiver in the first wave with room, or in a new wave holding the latest value.
    fn subscribe(&mut self) -> watch::Receiver<Arc<T>> {
        if let Some(wave) = self.waves.iter().find(|w| w.receiver_count() < WAVE) {
            return wave.subscribe();
        }
        let (wave, receiver) = watch::channel(self.latest.clone());
        self.waves.push(wave);
        receiver
    }

    /// Takes `value` as the latest; the waves to send it to.
    fn publishing(&mut self, value: Arc<T>) -> Vec<Wave<T>> {
        self.latest = value;
        self.waves.clone()
    }

    /// Drops the empty waves at the end (never the first), so that a key which had thousands
    /// of watchers and has a few left is published in as few waves.
    fn trim(&mut self) {
        while self.waves.len() > 1 && self.waves.last().is_some_and(|w| w.receiver_count() == 0) {
            self.waves.pop();
        }
    }

    fn watchers(&self) -> usize {
        self.waves.iter().map(|w| w.receiver_count()).sum()
    }
}

/// One [`Fanout`] per watched key (a poll; a session's questions).
pub(crate) type Channels<T> = Arc<Mutex<HashMap<(String, String), Fanout<T>>>>;

/// Starts the task that, whenever keys are marked dirty, replaces the value of each watched one
/// with `build`'s, at the pace of [`Pace`], on `runtime`; and the one that closes every channel
/// when `shutdown` turns true ([`close_at_shutdown`]), on the caller's.
///
/// podiumd gives the publishers a runtime on a thread of their own ([`crate::PublishingThread`],
/// which says why). The caller's runtime must be the one the watchers run on: a publish that
/// wakes more than [`AHEAD`] x [`WAVE`] watchers (over all its keys) waits for it
/// ([`publish_in_waves`]), so while that runtime is blocked the publisher goes on only with
/// publishes that wake fewer.
pub(crate) fn spawn_publisher<T: Send + Sync + 'static>(
    runtime: &tokio::runtime::Handle,
    model: Projector<FeedbackModel>,
    dirty: Arc<Mutex<HashMap<(String, String), u64>>>,
    changed: Arc<tokio::sync::Notify>,
    channels: Channels<T>,
    shutdown: watch::Receiver<bool>,
    build: impl Fn(&FeedbackModel, &(String, String)) -> Option<T> + Send + 'static,
) {
    close_at_shutdown(channels.clone(), shutdown);
    // The runtime the watchers run on: the caller's, podiumd's.
    let watchers_runtime = tokio::runtime::Handle::current();
    runtime.spawn(async move {
        let mut pace = Pace::default();
        loop {
            changed.notified().await;
            // A wake-up whose changes a publish already took (a change that came while the
            // publisher waited for its turn leaves one behind) takes no turn.
            if dirty.lock().is_ok_and(|d| d.is_empty()) {
                continue;
            }
            pace.ready().await;
            let batch: Vec<(String, String)> = match dirty.lock() {
                Ok(mut d) => d.drain().map(|(key, _)| key).collect(),
                Err(_) => return,
            };
            // Built under the model's read lock and sent after it and after the channels'
            // lock: waking every watcher takes a while, and neither the follower folding the
            // next ballot nor a watcher arriving or leaving must wait for that.
            let mut sends = Vec::new();
            {
                let Ok(mut fanouts) = channels.lock() else {
                    return;
                };
                let m = model.read();
                for key in &batch {
                    let Some(fanout) = fanouts.get_mut(key) else {
                        continue;
                    };
                    let Some(value) = build(&m, key).map(Arc::new) else {
                        continue;
                    };
                    let waves = fanout.publishing(value.clone()).into_iter().enumerate();
                    sends.extend(waves.map(|(k, wave)| (k, wave, value.clone())));
                }
            }
            publish_in_waves(first_waves_first(sends), &watchers_runtime).await;
        }
    });
}

/// Sends each value to its wave in turn, and after every [`WAVE`] watchers woken spawns a probe
/// task on `watchers_runtime` (the runtime the watchers' tasks run on); with [`AHEAD`] probes
/// not yet run, it waits for the oldest. So at most about [`AHEAD`] x [`WAVE`] woken watchers
/// wait in that runtime's queue at any time, and whatever is woken meanwhile waits behind a
/// few thousand tasks, not every watcher of the poll; keys with a few watchers each are sent
/// without a wait.
async fn publish_in_waves<T>(
    sends: Vec<(Wave<T>, Arc<T>)>,
    watchers_runtime: &tokio::runtime::Handle,
) {
    let mut probes = std::collections::VecDeque::with_capacity(AHEAD);
    let mut woken = 0;
    for (wave, value) in sends {
        if probes.len() == AHEAD
            && let Some(probe) = probes.pop_front()
        {
            // An error only if the runtime is shutting down: the rest are sent at once.
            let _ = probe.await;
        }
        woken += wave.receiver_count();
        wave.send_replace(value);
        if woken >= WAVE {
            probes.push_back(watchers_runtime.spawn(async {}));
            woken = 0;
        }
    }
}

/// The waves of a publish's keys, every key's first wave before any key's second, so that a
/// poll with a few watchers does not wait for all of a crowded one's.
fn first_waves_first<T>(mut sends: Vec<(usize, Wave<T>, Arc<T>)>) -> Vec<(Wave<T>, Arc<T>)> {
    sends.sort_by_key(|(k, _, _)| *k);
    sends
        .into_iter()
        .map(|(_, wave, value)| (wave, value))
        .collect()
}

/// When the publisher may publish again (one pace for all the keys of a publisher): one
/// publish every [`COALESCE`] on average, with [`COALESCE`] of tolerance (a generic cell rate
/// algorithm, as a token bucket holding two), and never two within 50 ms as scheduled; a
/// change that finds the pace allows it is published at once. So a steady stream of changes is
/// published ten times a second, and at most eleven times in any second; changes that come ten a
/// second (the cap) are published as they come, and one that comes late, followed by one on
/// time, does not make the ones after them wait.
///
/// A publish used to be followed by a sleep of [`COALESCE`]: every publish's own duration, and
/// the timer's lateness, pushed the next turn later, so ballots that came ten a second had each
/// wait a little longer than the one before, anything from nothing to a whole [`COALESCE`]
/// (`podium-loadgen fanout --watchers 2000`: p50 58 ms, p99 105 ms, where reaching every
/// watcher takes about 15).
///
/// The console's live board and the speaker page's live part render at this pace too.
#[derive(Clone, Copy, Debug, Default)]
pub struct Pace {
    /// When the next publish would be due at exactly one every [`COALESCE`].
    due: Option<tokio::time::Instant>,
    /// The last publish's turn.
    last: Option<tokio::time::Instant>,
}

/// The shortest time between two publishes' turns.
const MIN_GAP: Duration = Duration::from_millis(50);

impl Pace {
    /// Waits for the next turn of a change that has just come.
    pub async fn ready(&mut self) {
        tokio::time::sleep_until(self.turn(tokio::time::Instant::now())).await;
    }

    /// The turn of a change that came at `now`, taken.
    fn turn(&mut self, now: tokio::time::Instant) -> tokio::time::Instant {
        let mut turn = now;
        if let Some(last) = self.last {
            turn = turn.max(last + MIN_GAP);
        }
        if let Some(due) = self.due {
            turn = turn.max(due - COALESCE);
        }
        self.due = Some(self.due.map_or(turn, |due| due.max(turn)) + COALESCE);
        self.last = Some(turn);
        turn
    }
}

/// Closes every channel of `channels` once `shutdown` turns true, which ends each watcher's
/// stream with UNAVAILABLE ([`Watch::changed`]); [`subscribe`] refuses from then on. Watchers
/// wait on their key's channel alone: waiting on the shutdown signal too added a waiter on one
/// channel every watcher shared, and took its lock, on every update of every watcher.
fn close_at_shutdown<T: Send + Sync + 'static>(
    channels: Channels<T>,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        if shutdown.wait_for(|stop| *stop).await.is_ok() {
            channels.lock().unwrap_or_else(|p| p.into_inner()).clear();
        }
    })
}

fn shutting_down() -> Status {
    Status::unavailable("podiumd is shutting down; reconnect")
}

/// A receiver of `key`'s latest value; the first watcher of a key opens its channels with
/// `first`'s value, later ones share them. Refused once `shutdown` is true.
pub(crate) fn subscribe<T, E>(
    channels: &Channels<T>,
    shutdown: &watch::Receiver<bool>,
    key: (String, String),
    first: impl FnOnce() -> Result<T, E>,
) -> Result<Watch<T>, Status>
where
    Status: From<E>,
{
    // Poisoned only if a thread panicked holding it: a bug, not the client's doing.
    let mut map = channels
        .lock()
        .map_err(|_| Status::internal("internal error"))?;
    // Under the lock that closing the channels takes: a channel opened before is closed.
    if *shutdown.borrow() {
        return Err(shutting_down());
    }
    let receiver = match map.get_mut(&key) {
        Some(fanout) => fanout.subscribe(),
        None => {
            let mut fanout = Fanout::new(Arc::new(first()?));
            let receiver = fanout.subscribe();
            map.insert(key.clone(), fanout);
            receiver
        }
    };
    Ok(Watch {
        receiver: Some(receiver),
        channels: channels.clone(),
        key,
    })
}

/// One watcher's receiver of a key's latest value. **A key's channel lives only while it is
/// watched**: the last watcher to leave removes it, so a conference's closed polls and ended
/// sessions leave nothing behind, and the publisher skips keys nobody watches.
pub(crate) struct Watch<T> {
    /// Always there; taken only by `drop`, under the channels' lock.
    receiver: Option<watch::Receiver<Arc<T>>>,
    channels: Channels<T>,
    key: (String, String),
}

impl<T> Watch<T> {
    /// The latest value, marked as seen.
    pub(crate) fn latest(&mut self) -> Arc<T> {
        self.receiver().borrow_and_update().clone()
    }

    fn receiver(&mut self) -> &mut watch::Receiver<Arc<T>> {
        self.receiver
            .as_mut()
            .expect("a watcher has its receiver until it is dropped")
    }

    /// Waits for a value newer than the last one seen; UNAVAILABLE once the channel has
    /// closed, which only [`close_at_shutdown`] does (while a channel has a receiver it stays
    /// in the map).
    pub(crate) async fn changed(&mut self) -> Result<(), Status> {
        self.receiver().changed().await.map_err(|_| shutting_down())
    }
}

impl<T> Drop for Watch<T> {
    fn drop(&mut self) {
        // The receiver goes under the lock `subscribe` adds receivers under, so a count of
        // none cannot race a new watcher of the key, and the last two watchers leaving at once
        // cannot each count the other and leave the channel behind.
        let mut map = self.channels.lock().unwrap_or_else(|p| p.into_inner());
        drop(self.receiver.take());
        if let Some(fanout) = map.get_mut(&self.key) {
            fanout.trim();
            if fanout.watchers() == 0 {
                map.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests;
