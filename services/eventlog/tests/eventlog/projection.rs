//! Read models: a `Projector` replays the stored events its filter matches, then follows live
//! ones; `wait_for` gives read-your-writes, `catch_up` shows what other writers appended, and
//! the model stops when the log closes.

use podium_eventlog::{
    EventLog, EventLogError, ExpectedVersion, Filter, Projection, Projector, RecordedEvent,
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
