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
//! of at most [`WAVE`] receivers ([`Fanout`]), and the publisher sends to the next wave only once
//! podiumd's runtime has reached the one before last ([`publish_in_waves`]). Waking 20,000
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
/// which says why). The caller's runtime must be the one the watchers run on: a publish to a
/// key with more than [`AHEAD`] waves waits for it between waves ([`publish_in_waves`]), so
/// the publisher goes on while that runtime is blocked only for keys of up to
/// [`AHEAD`] x [`WAVE`] watchers.
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
            // Every key's first wave before any key's second: a poll with a few watchers does
            // not wait for all of a crowded one's.
            sends.sort_by_key(|(k, _, _)| *k);
            let sends = sends.into_iter().map(|(_, wave, value)| (wave, value));
            publish_in_waves(sends.collect(), &watchers_runtime).await;
        }
    });
}

/// Sends each value to its wave in turn, and before sending one waits until `watchers_runtime`
/// (the runtime the watchers' tasks run on) has run a task queued behind the wave [`AHEAD`]
/// before it: at most that many waves' tasks wait in its queue at any time, so whatever is
/// woken meanwhile waits behind a few thousand tasks, not every watcher of the poll.
async fn publish_in_waves<T>(
    sends: Vec<(Wave<T>, Arc<T>)>,
    watchers_runtime: &tokio::runtime::Handle,
) {
    let mut probes = std::collections::VecDeque::with_capacity(AHEAD);
    let last = sends.len().saturating_sub(1);
    for (k, (wave, value)) in sends.into_iter().enumerate() {
        // A wave nobody is in wakes no one: given the value (a watcher may join it), not paced.
        if wave.receiver_count() == 0 {
            wave.send_replace(value);
            continue;
        }
        if probes.len() == AHEAD
            && let Some(probe) = probes.pop_front()
        {
            // An error only if the runtime is shutting down: the rest are sent at once.
            let _ = probe.await;
        }
        wave.send_replace(value);
        if k < last {
            probes.push_back(watchers_runtime.spawn(async {}));
        }
    }
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
mod tests {
    use super::*;

    fn key(poll: &str) -> (String, String) {
        ("odc2024".to_owned(), poll.to_owned())
    }

    fn open(channels: &Channels<u32>, poll: &str, value: u32) -> Watch<u32> {
        let (_, running) = watch::channel(false);
        subscribe::<_, Status>(channels, &running, key(poll), || Ok(value)).unwrap()
    }

    fn watched(channels: &Channels<u32>) -> usize {
        channels.lock().unwrap().len()
    }

    #[test]
    fn a_channel_lives_while_watched_and_leaves_with_its_last_watcher() {
        let channels = Channels::<u32>::default();
        let mut first = open(&channels, "p1", 1);
        // A second watcher shares the channel: `first` is not called again.
        let mut second = open(&channels, "p1", 99);
        let other = open(&channels, "p2", 2);
        assert_eq!(watched(&channels), 2);
        assert_eq!((*first.latest(), *second.latest()), (1, 1));

        drop(first);
        assert_eq!(watched(&channels), 2, "p1 still has a watcher");
        drop(second);
        assert_eq!(
            watched(&channels),
            1,
            "p1's channel left with its last watcher"
        );
        drop(other);
        assert_eq!(watched(&channels), 0);

        // Watched again, the key opens a fresh channel from the model's current value.
        let mut again = open(&channels, "p1", 7);
        assert_eq!(*again.latest(), 7);
    }

    #[tokio::test]
    async fn watchers_see_the_publisher_s_updates_until_they_leave() {
        let channels = Channels::<u32>::default();
        let mut watcher = open(&channels, "p1", 1);
        watcher.latest();
        let sender = channels.lock().unwrap()[&key("p1")].waves[0].clone();
        sender.send_replace(Arc::new(2));
        watcher.changed().await.unwrap();
        assert_eq!(*watcher.latest(), 2);
        drop(watcher);
        assert_eq!(watched(&channels), 0);
    }

    #[test]
    fn watchers_fill_waves_of_at_most_wave_and_a_new_wave_starts_at_the_latest_value() {
        let channels = Channels::<u32>::default();
        let mut watchers: Vec<_> = (0..2 * WAVE + 10)
            .map(|_| open(&channels, "p1", 1))
            .collect();
        let waves = |channels: &Channels<u32>| -> Vec<usize> {
            channels.lock().unwrap()[&key("p1")]
                .waves
                .iter()
                .map(|w| w.receiver_count())
                .collect()
        };
        assert_eq!(waves(&channels), [WAVE, WAVE, 10]);

        // One leaves the first wave: the next watcher takes its place.
        watchers.swap_remove(0);
        watchers.push(open(&channels, "p1", 99));
        assert_eq!(waves(&channels), [WAVE, WAVE, 10]);

        // A wave opened after a publish starts at the published value.
        let taken = channels
            .lock()
            .unwrap()
            .get_mut(&key("p1"))
            .unwrap()
            .publishing(Arc::new(2));
        for wave in taken {
            wave.send_replace(Arc::new(2));
        }
        watchers.extend((0..WAVE - 10).map(|_| open(&channels, "p1", 99)));
        let mut last = open(&channels, "p1", 99);
        assert_eq!(waves(&channels), [WAVE, WAVE, WAVE, 1]);
        assert_eq!(*last.latest(), 2);

        // The last wave's only watcher leaves: the empty wave at the end goes.
        drop(last);
        assert_eq!(waves(&channels), [WAVE, WAVE, WAVE]);
        drop(watchers);
        assert_eq!(watched(&channels), 0);
    }

    #[test]
    fn a_wave_opened_while_a_publish_goes_on_starts_from_the_published_value() {
        let channels = Channels::<u32>::default();
        let mut full: Vec<_> = (0..WAVE).map(|_| open(&channels, "p1", 1)).collect();
        // The publisher has taken the waves to send 2 to, and reached none of them yet.
        let taken = channels
            .lock()
            .unwrap()
            .get_mut(&key("p1"))
            .unwrap()
            .publishing(Arc::new(2));
        assert_eq!(taken.len(), 1);
        // A watcher arrives meanwhile; the first wave is full, so it opens a wave the publish
        // will not reach.
        let mut late = open(&channels, "p1", 99);
        assert_eq!(*late.latest(), 2);
        assert_eq!(
            *full[0].latest(),
            1,
            "the publish has not reached the first wave"
        );
    }

    #[test]
    fn a_publish_sends_a_wave_only_once_the_watchers_runtime_has_reached_the_ones_before() {
        // The watchers' runtime, not running: nothing queued on it runs until `block_on`.
        let watchers = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let waves: Vec<Wave<u32>> = (0..AHEAD + 2)
            .map(|_| watch::channel(Arc::new(0)).0)
            .collect();
        let receivers: Vec<_> = waves.iter().map(|w| w.subscribe()).collect();
        let seen = || -> Vec<u32> { receivers.iter().map(|r| **r.borrow()).collect() };

        let (done, finished) = tokio::sync::oneshot::channel();
        let handle = watchers.handle().clone();
        let sending = waves.iter().map(|w| (w.clone(), Arc::new(1))).collect();
        let publisher = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            runtime.block_on(publish_in_waves(sending, &handle));
            let _ = done.send(());
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while seen()[AHEAD - 1] != 1 {
            assert!(
                std::time::Instant::now() < deadline,
                "the first waves never sent"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        // Sending the next wave at once would take microseconds; the publisher waits for the
        // runtime to reach the first wave's tasks.
        std::thread::sleep(Duration::from_millis(200));
        let mut expected = vec![1; AHEAD];
        expected.extend([0, 0]);
        assert_eq!(seen(), expected);

        // Running, the watchers' runtime lets the publish reach every wave.
        watchers.block_on(finished).unwrap();
        publisher.join().unwrap();
        assert_eq!(seen(), vec![1; AHEAD + 2]);
    }

    #[tokio::test(start_paused = true)]
    async fn shutting_down_ends_every_watcher_unavailable_and_refuses_new_ones() {
        let channels = Channels::<u32>::default();
        let (stop, shutdown) = watch::channel(false);
        let closing = close_at_shutdown(channels.clone(), shutdown.clone());
        let watch = |poll: &str| subscribe::<_, Status>(&channels, &shutdown, key(poll), || Ok(1));
        let (mut one, mut two) = (watch("p1").unwrap(), watch("p2").unwrap());
        one.latest();
        two.latest();

        stop.send_replace(true);
        closing.await.unwrap();
        for watcher in [&mut one, &mut two] {
            let ended = tokio::time::timeout(Duration::from_secs(10), watcher.changed())
                .await
                .expect("a watcher ends at shutdown");
            assert_eq!(ended.unwrap_err().code(), tonic::Code::Unavailable);
        }
        assert_eq!(
            watch("p3").err().map(|s| s.code()),
            Some(tonic::Code::Unavailable)
        );
        assert_eq!(watched(&channels), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn changes_at_the_cap_are_published_as_they_come() {
        use tokio::time::{Instant, advance, sleep_until};
        let mut pace = Pace::default();
        // A poll at its cap: a change every COALESCE, each publish taking 7 ms. Every change
        // is published the moment it comes (with a sleep of COALESCE after each publish, the
        // waits grew by 7 ms a change: 0, 7, 14, ... up to a whole COALESCE).
        let start = Instant::now();
        for k in 0..50u32 {
            let comes = start + COALESCE * k;
            sleep_until(comes).await;
            pace.ready().await;
            assert_eq!(Instant::now() - comes, Duration::ZERO, "change {k} waited");
            advance(Duration::from_millis(7)).await;
        }
        // A change long after the last is published at once.
        advance(COALESCE * 5).await;
        let late = Instant::now();
        pace.ready().await;
        assert_eq!(Instant::now(), late);
    }

    #[test]
    fn a_storm_is_published_ten_times_a_second_at_most_eleven_in_any_second() {
        let mut pace = Pace::default();
        let start = tokio::time::Instant::now();
        // A change every millisecond for three seconds, each turn taken as the publisher
        // would: the next change it sees is the first one after its turn.
        let mut turns = Vec::new();
        let mut at = start;
        while at < start + Duration::from_secs(3) {
            let turn = pace.turn(at);
            assert!(turn - at <= COALESCE, "a change waited {:?}", turn - at);
            turns.push(turn);
            at = turn + Duration::from_millis(1);
        }
        for pair in turns.windows(2) {
            assert!(
                pair[1] - pair[0] >= MIN_GAP,
                "{:?} apart",
                pair[1] - pair[0]
            );
        }
        for (k, turn) in turns.iter().enumerate() {
            let in_second = turns[k..]
                .iter()
                .take_while(|t| **t - *turn < Duration::from_secs(1))
                .count();
            assert!(
                in_second <= 11,
                "{in_second} turns in the second from turn {k}"
            );
        }
        // Two at the start (the tolerance), then one every COALESCE.
        assert_eq!(turns[1] - turns[0], MIN_GAP);
        for pair in turns[2..].windows(2) {
            assert_eq!(pair[1] - pair[0], COALESCE);
        }
    }

    #[test]
    fn a_late_change_does_not_make_the_later_ones_wait() {
        let mut pace = Pace::default();
        let start = tokio::time::Instant::now();
        // Changes ten a second; one in twenty comes up to 50 ms late (a stall of the machine),
        // and every other one up to 2 ms late (the network, the log). Timed from the last turn,
        // each late one moved every later turn for good; counted against one every COALESCE
        // with a COALESCE of tolerance, none waits.
        for k in 0..400u32 {
            let late = match k % 20 {
                5 => Duration::from_millis(u64::from(k % 50)),
                _ => Duration::from_millis(u64::from(k % 3)),
            };
            let comes = start + COALESCE * k + late;
            let turn = pace.turn(comes);
            assert_eq!(turn, comes, "change {k} waited {:?}", turn - comes);
        }
    }
}
