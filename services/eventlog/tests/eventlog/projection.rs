//! Read models: a `Projector` replays the stored events its filter matches, then follows live
//! ones; `wait_for` gives read-your-writes, `catch_up` shows what other writers appended, and
//! the model stops when the log closes. One `Follower` feeds several models, and a restart
//! loads their snapshots and replays only the tail.

use podium_eventlog::{
    EventLog, EventLogError, ExpectedVersion, Filter, Follower, Projection, Projector,
    RecordedEvent, Snapshot, SnapshotError, snapshot,
};

use crate::helpers::{TYPE_A, TYPE_B, TestLog, event, events};

/// Remembers the positions it was given.
#[derive(Default)]
struct Positions(Vec<u64>);

impl Projection for Positions {
    fn apply(&mut self, event: &RecordedEvent) {
        self.0.push(event.position);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projector_replays_then_follows_the_log() {
    let t = TestLog::new();
    t.log
        .append("poll/1", ExpectedVersion::Any, events(3))
        .await
        .unwrap();
    t.log
        .append("room/1", ExpectedVersion::Any, events(2))
        .await
        .unwrap();
    let filter = Filter {
        stream_prefix: Some("poll/".into()),
        event_types: vec![],
    };
    let polls = Projector::start("polls", t.dyn_log(), Positions::default(), filter)
        .await
        .unwrap();
    assert_eq!(
        polls.read().0,
        [0, 1, 2],
        "replay applies only what the filter matches"
    );

    let o = t
        .log
        .append(
            "poll/2",
            ExpectedVersion::Any,
            vec![event(TYPE_A), event(TYPE_B)],
        )
        .await
        .unwrap();
    polls.wait_for(o.last_position).await.unwrap();
    assert_eq!(
        polls.read().0,
        [0, 1, 2, 5, 6],
        "a write is visible once wait_for returns"
    );

    // Positions the filter skips still count as read.
    let skipped = t
        .log
        .append("room/1", ExpectedVersion::Any, events(1))
        .await
        .unwrap();
    polls.wait_for(skipped.last_position).await.unwrap();
    assert_eq!(polls.read().0.len(), 5);

    t.log.close().unwrap();
    assert!(matches!(
        polls.wait_for(t.log.head() + 10).await,
        Err(EventLogError::Closed)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_shows_every_write_durable_before_it() {
    let t = TestLog::new();
    let polls = Projector::start(
        "polls",
        t.dyn_log(),
        Positions::default(),
        Filter::default(),
    )
    .await
    .unwrap();
    polls.catch_up().await.unwrap();
    assert!(
        polls.read().0.is_empty(),
        "an empty log: nothing to wait for"
    );

    // Writes this projector's owner never saw the positions of, like another service's.
    for _ in 0..20 {
        t.log
            .append("agenda/1", ExpectedVersion::Any, events(3))
            .await
            .unwrap();
        polls.catch_up().await.unwrap();
        let head = t.log.head();
        assert_eq!(
            polls.read().0,
            (0..head).collect::<Vec<_>>(),
            "every durable write is applied once catch_up returns"
        );
    }
}

/// `Positions` that can be snapshotted, and counts how many events it was given in this process.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Snapped {
    positions: Vec<u64>,
    #[serde(skip)]
    applied_here: usize,
}

impl Projection for Snapped {
    fn apply(&mut self, event: &RecordedEvent) {
        self.positions.push(event.position);
        self.applied_here += 1;
    }
}

impl Snapshot for Snapped {
    const VERSION: u32 = 1;

    fn save(&self) -> Result<Vec<u8>, SnapshotError> {
        snapshot::encode(self)
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        let loaded: Self = snapshot::decode(bytes)?;
        self.positions = loaded.positions;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_follower_feeds_every_model_and_restarts_from_their_snapshots() {
    let t = TestLog::new();
    let snapshots = t.dir.path().join("snapshots");
    t.log
        .append("poll/1", ExpectedVersion::Any, events(3))
        .await
        .unwrap();
    t.log
        .append("room/1", ExpectedVersion::Any, events(2))
        .await
        .unwrap();
    let polls_only = || Filter {
        stream_prefix: Some("poll/".into()),
        event_types: vec![],
    };

    let mut follower = Follower::new(t.dyn_log()).with_snapshots(snapshots.clone(), 0);
    let polls = follower.add_snapshotted("polls", Snapped::default(), polls_only());
    let all = follower.add("all", Positions::default(), Filter::default());
    let handle = follower.start().await.unwrap();
    assert_eq!(polls.read().positions, [0, 1, 2]);
    assert_eq!(all.read().0, [0, 1, 2, 3, 4]);

    let live = t
        .log
        .append("poll/2", ExpectedVersion::Any, events(2))
        .await
        .unwrap();
    polls.wait_for(live.last_position).await.unwrap();
    all.wait_for(live.last_position).await.unwrap();
    assert_eq!(polls.read().positions, [0, 1, 2, 5, 6]);
    assert_eq!(all.read().0, [0, 1, 2, 3, 4, 5, 6]);
    handle.snapshot().await.unwrap();

    // A follower started later (as after a restart) loads the snapshot and is given only the
    // tail. The same open log: reopening it in this process races sled's file lock.
    t.log
        .append("poll/3", ExpectedVersion::Any, events(1))
        .await
        .unwrap();
    let mut follower = Follower::new(t.dyn_log()).with_snapshots(snapshots, 0);
    let polls = follower.add_snapshotted("polls", Snapped::default(), polls_only());
    let all = follower.add("all", Positions::default(), Filter::default());
    follower.start().await.unwrap();
    assert_eq!(polls.read().positions, [0, 1, 2, 5, 6, 7]);
    assert_eq!(polls.read().applied_here, 1, "only the tail is replayed");
    assert_eq!(all.read().0, (0..8).collect::<Vec<_>>());
}
