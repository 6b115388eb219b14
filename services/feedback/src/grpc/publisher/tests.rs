//! The publisher's channels, waves and pace, without a server.

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

/// The waves of p1 that a publish of `value` takes, as the publisher takes them.
fn take(channels: &Channels<u32>, value: u32) -> Vec<Wave<u32>> {
    channels
        .lock()
        .unwrap()
        .get_mut(&key("p1"))
        .unwrap()
        .publishing(Arc::new(value))
}

/// A current-thread runtime: what is spawned on it waits until someone calls `block_on`.
fn idle_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

/// Runs the publish on a thread and runtime of its own, as podiumd's publishing thread does,
/// with `watchers` as the watchers' runtime; the receiver hears when the publish has ended.
fn publish_on_a_thread(
    sends: Vec<(Wave<u32>, Arc<u32>)>,
    watchers: &tokio::runtime::Runtime,
) -> tokio::sync::oneshot::Receiver<()> {
    let (done, finished) = tokio::sync::oneshot::channel();
    let handle = watchers.handle().clone();
    std::thread::spawn(move || {
        idle_runtime().block_on(publish_in_waves(sends, &handle));
        let _ = done.send(());
    });
    finished
}

/// Polls `reached` until it holds; panics after 30 s, saying `what` never happened.
fn wait_until(what: &str, mut reached: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !reached() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(1));
    }
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
    for wave in take(&channels, 2) {
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
    let taken = take(&channels, 2);
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
    let watchers = idle_runtime();
    // Full waves: a probe follows each.
    let waves: Vec<Wave<u32>> = (0..AHEAD + 2)
        .map(|_| watch::channel(Arc::new(0)).0)
        .collect();
    let receivers: Vec<Vec<_>> = waves
        .iter()
        .map(|w| (0..WAVE).map(|_| w.subscribe()).collect())
        .collect();
    let seen = || -> Vec<u32> { receivers.iter().map(|r| **r[0].borrow()).collect() };

    let sending = waves.iter().map(|w| (w.clone(), Arc::new(1))).collect();
    let finished = publish_on_a_thread(sending, &watchers);
    wait_until("the first waves never sent", || seen()[AHEAD - 1] == 1);
    // Sending the next wave at once would take microseconds; the publisher waits for the
    // runtime to reach the first wave's tasks.
    std::thread::sleep(Duration::from_millis(200));
    let mut expected = vec![1; AHEAD];
    expected.extend([0, 0]);
    assert_eq!(seen(), expected);

    // Running, the watchers' runtime lets the publish reach every wave.
    watchers.block_on(finished).unwrap();
    assert_eq!(seen(), vec![1; AHEAD + 2]);
}

#[test]
fn a_publish_to_many_keys_of_a_few_watchers_each_does_not_wait() {
    // The watchers' runtime never runs: a probe on it would never be reached.
    let watchers = idle_runtime();
    let waves: Vec<Wave<u32>> = (0..50).map(|_| watch::channel(Arc::new(0)).0).collect();
    let receivers: Vec<_> = waves.iter().map(|w| w.subscribe()).collect();
    let sending = waves.iter().map(|w| (w.clone(), Arc::new(1))).collect();
    let finished = publish_on_a_thread(sending, &watchers);
    // Waited for on another runtime, so the watchers' one still never runs.
    idle_runtime()
        .block_on(async { tokio::time::timeout(Duration::from_secs(30), finished).await })
        .expect("the publish waited for the watchers' runtime")
        .unwrap();
    assert!(receivers.iter().all(|r| **r.borrow() == 1));
}

#[test]
fn every_key_s_first_wave_goes_before_any_key_s_second() {
    let wave = |n: u32| (watch::channel(Arc::new(n)).0, Arc::new(n));
    let [(a0, v0), (a1, v1), (b0, v2)] = [wave(0), wave(1), wave(2)];
    let order = first_waves_first(vec![(0, a0, v0), (1, a1, v1), (0, b0, v2)]);
    let values: Vec<u32> = order.iter().map(|(_, v)| **v).collect();
    assert_eq!(values, [0, 2, 1], "the crowded key's second wave waits");
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

#[test]
fn at_shutdown_a_publish_between_waves_still_lets_every_watcher_end() {
    // The watchers' runtime, idle: the publish stops before its third wave.
    let watchers_runtime = idle_runtime();
    let channels = Channels::<u32>::default();
    let mut watchers: Vec<_> = (0..(AHEAD + 1) * WAVE)
        .map(|_| open(&channels, "p1", 1))
        .collect();
    let sends = take(&channels, 2)
        .into_iter()
        .map(|w| (w, Arc::new(2)))
        .collect();
    let finished = publish_on_a_thread(sends, &watchers_runtime);
    wait_until("the first waves never sent", || {
        *watchers[AHEAD * WAVE - 1].latest() == 2
    });

    // Shutdown closes the channels (as `close_at_shutdown` does) while the publish waits.
    channels.lock().unwrap().clear();
    // Once podiumd's runtime runs, the publish ends, and with it every watcher's stream.
    watchers_runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(30), finished)
            .await
            .expect("the publish ends once the runtime runs")
            .unwrap();
        for watcher in &mut watchers {
            loop {
                let ended = tokio::time::timeout(Duration::from_secs(10), watcher.changed())
                    .await
                    .expect("a watcher ends at shutdown");
                match ended {
                    Ok(()) => assert_eq!(*watcher.latest(), 2),
                    Err(status) => {
                        assert_eq!(status.code(), tonic::Code::Unavailable);
                        break;
                    }
                }
            }
        }
    });
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
