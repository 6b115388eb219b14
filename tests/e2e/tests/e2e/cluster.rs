//! podiumd with its event log on a real three-server NATS JetStream cluster (`--log nats://...`):
//! a ballot storm goes on while one NATS server is killed with SIGKILL and another is frozen
//! with SIGSTOP, the killed server catches up once restarted, no acknowledged ballot is lost,
//! and a podiumd killed and started again replays the same tallies from the cluster.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use futures::StreamExt;
use podium_client::{Client, pb};
use podium_e2e::{CONFERENCE, NewPoll, PATIENCE, Show, ballot};

/// The tally the attendees' last acknowledged ballots make.
pub(crate) fn tally(last: &[Option<String>]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for option in last.iter().flatten() {
        *counts.entry(option.clone()).or_insert(0) += 1;
    }
    counts
}

/// The poll's results as podiumd answers them, when they count `ballots` ballots.
pub(crate) async fn results(
    client: &Client,
    poll: &pb::Poll,
    ballots: u64,
) -> BTreeMap<String, u64> {
    results_when(client, poll, |counted, _| counted == ballots).await
}

/// The poll's results as podiumd answers them, once `done` accepts their count of ballots and
/// their tally.
pub(crate) async fn results_when(
    client: &Client,
    poll: &pb::Poll,
    done: impl Fn(u64, &BTreeMap<String, u64>) -> bool,
) -> BTreeMap<String, u64> {
    let mut stream = client
        .polls()
        .watch_results(pb::WatchResultsRequest {
            conference_id: CONFERENCE.into(),
            poll_id: poll.id.clone(),
            language: "en".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut last = BTreeMap::new();
    loop {
        let message = tokio::time::timeout(PATIENCE, stream.next())
            .await
            .unwrap_or_else(|_| panic!("results in time; the last: {last:?}"))
            .unwrap()
            .unwrap();
        if let Some(results) = message.results {
            last = results
                .options
                .iter()
                .filter(|o| o.count > 0)
                .map(|o| (o.option_id.clone(), o.count))
                .collect();
            if done(results.ballots, &last) {
                return last;
            }
        }
    }
}

/// Waits until the storm has `n` more acknowledged ballots than `from`.
async fn storm_until(cast: &AtomicU64, from: u64, n: u64, phase: &str) -> u64 {
    let target = from + n;
    let started = std::time::Instant::now();
    tokio::time::timeout(PATIENCE * 4, async {
        while cast.load(Ordering::Relaxed) < target {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the storm stopped {phase}"));
    println!("{n} ballots {phase} in {:?}", started.elapsed());
    cast.load(Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ballot_storm_outlives_a_killed_and_a_frozen_nats_server() {
    let mut cluster = crate::nodes::cluster().await;
    let on_cluster = cluster.podiumd_args().unwrap();
    let on_cluster: Vec<&str> = on_cluster.iter().map(String::as_str).collect();
    let mut show = Show::start()
        .args(&on_cluster)
        // A storm, not an attack: no attendee is slowed down.
        .args(&["--rate-ballots", "1000000"])
        .poll(NewPoll::single_choice(&["Budgets", "Health", "Schools"]))
        .attendees(8)
        .await
        .unwrap();
    let poll = show.polls[0].clone();

    // Every attendee changes their ballot again and again; a ballot that fails (its server
    // went away mid-request) is sent again with the same id until it is acknowledged.
    let stop = Arc::new(AtomicBool::new(false));
    let cast = Arc::new(AtomicU64::new(0));
    let mut storm = Vec::new();
    for (i, attendee) in show.attendees.iter().enumerate() {
        let (client, poll) = (attendee.client.clone(), poll.clone());
        let (stop, cast) = (stop.clone(), cast.clone());
        storm.push(tokio::spawn(async move {
            let (mut n, mut last, mut retries) = (i, None, 0u32);
            while !stop.load(Ordering::Relaxed) {
                let option = poll.options[n % poll.options.len()].id.clone();
                let request = ballot(&poll, vec![option.clone()]);
                while let Err(status) = client.polls().cast_ballot(request.clone()).await {
                    retries += 1;
                    assert!(retries < 200, "ballots kept failing: {status}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                last = Some(option);
                cast.fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
            last
        }));
    }
    let mut seen = storm_until(&cast, 0, 100, "at first").await;

    // The server podiumd's client is connected to, so that the kill is felt.
    let serving = cluster
        .serving("podiumd")
        .unwrap()
        .expect("podiumd is connected");
    cluster.kill(serving).unwrap();
    seen = storm_until(&cast, seen, 100, "after a server was killed").await;
    tokio::task::block_in_place(|| cluster.restart(serving)).unwrap();
    seen = storm_until(&cast, seen, 100, "after it was restarted").await;

    let serving = cluster
        .serving("podiumd")
        .unwrap()
        .expect("podiumd is connected");
    cluster.pause(serving).unwrap();
    seen = storm_until(&cast, seen, 100, "while a server was frozen").await;
    cluster.resume(serving).unwrap();
    storm_until(&cast, seen, 100, "after it was resumed").await;

    stop.store(true, Ordering::Relaxed);
    let mut last = Vec::new();
    for task in storm {
        last.push(task.await.unwrap());
    }
    let expected = tally(&last);
    let admin = show.admin.clone();
    assert_eq!(results(&admin, &poll, 8).await, expected);

    // Every server holds the whole log, the restarted and the resumed one too.
    let leader_head = tokio::task::block_in_place(|| {
        let heads: Vec<Option<u64>> = (0..3)
            .map(|i| cluster.last_sequence(i, "podium").unwrap())
            .collect();
        heads
    });
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let heads: Vec<Option<u64>> = (0..3)
            .map(|i| cluster.last_sequence(i, "podium").unwrap())
            .collect();
        if heads.iter().all(|h| *h == heads[0] && h.is_some()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the servers never agreed on the log: {heads:?} (first seen {leader_head:?})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // podiumd killed outright and started again: the tallies come back from the cluster.
    show.server.crash_and_restart().await.unwrap();
    let admin = show.server.admin().await.unwrap();
    assert_eq!(results(&admin, &poll, 8).await, expected);
}
