//! Subscriptions: stored events then live ones with one `CaughtUp` at the seam, catch-up over
//! many pages, filters, start positions past the head, the lag path back to storage, and the end
//! of a subscription when the log closes.

use std::time::Duration;

use futures::StreamExt;
use podium_eventlog::{
    EventLog, ExpectedVersion, Filter, NewEvent, SledOptions, SubscriptionItem, subscribe,
};
use tokio::sync::broadcast::error::RecvError;

use crate::helpers::{
    TYPE_A, TYPE_B, TestLog, check_caught_up, collect_until, event, events, events_of, has_seen,
    read_everything, subscribe_until,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_events_then_live_ones() {
    let t = TestLog::new();
    t.log
        .append("s", ExpectedVersion::Any, events(10))
        .await
        .unwrap();
    let mut sub = Box::pin(subscribe(t.dyn_log(), 0, Filter::default()));

    let stored = collect_until(sub.by_ref(), |items| items.len() == 11).await;
    assert_eq!(stored.last(), Some(&SubscriptionItem::CaughtUp(10)));
    assert_eq!(events_of(&stored), read_everything(t.log.as_ref()).await);

    let live_batch = events(5);
    t.log
        .append("s", ExpectedVersion::Exact(9), live_batch.clone())
        .await
        .unwrap();
    t.log
        .append("u", ExpectedVersion::Any, events(1))
        .await
        .unwrap();
    let live = collect_until(sub, |items| items.len() == 6).await;
    assert_eq!(
        events_of(&live),
        read_everything(t.log.as_ref()).await[10..]
    );
}

#[tokio::test]
async fn starting_in_the_middle_skips_what_came_before() {
    let t = TestLog::new();
    t.log
        .append("s", ExpectedVersion::Any, events(10))
        .await
        .unwrap();
    let items = collect_until(subscribe(t.dyn_log(), 4, Filter::default()), |items| {
        items.len() == 7
    })
    .await;
    check_caught_up(&items, 4);
    let positions: Vec<u64> = events_of(&items).iter().map(|e| e.position).collect();
    assert_eq!(positions, [4, 5, 6, 7, 8, 9]);
    assert_eq!(items.last(), Some(&SubscriptionItem::CaughtUp(10)));
}

#[tokio::test]
async fn starting_past_the_head_waits_for_that_position() {
    let t = TestLog::new();
    t.log
        .append("s", ExpectedVersion::Any, events(3))
        .await
        .unwrap();
    let mut sub = Box::pin(subscribe(t.dyn_log(), 8, Filter::default()));
    let first = collect_until(sub.by_ref(), |items| !items.is_empty()).await;
    assert_eq!(first, [SubscriptionItem::CaughtUp(8)]);

    for _ in 0..4 {
        t.log
            .append("s", ExpectedVersion::Any, events(2))
            .await
            .unwrap();
    }
    let last = t.log.read_all(10, 1).await.unwrap()[0].id;
    let live = collect_until(
        sub,
        |items| matches!(items.last(), Some(SubscriptionItem::Event(e)) if e.id == last),
    )
    .await;
    let positions: Vec<u64> = events_of(&live).iter().map(|e| e.position).collect();
    assert_eq!(positions, [8, 9, 10]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_apply_to_stored_and_live_events() {
    let t = TestLog::new();
    let log = &t.log;
    let mixed = |n: usize| -> Vec<NewEvent> {
        (0..n)
            .map(|i| event(if i % 2 == 0 { TYPE_A } else { TYPE_B }))
            .collect()
    };
    log.append("conference/odc/agenda", ExpectedVersion::Any, mixed(4))
        .await
        .unwrap();
    log.append("conference/other/agenda", ExpectedVersion::Any, mixed(4))
        .await
        .unwrap();

    let filters = [
        Filter {
            stream_prefix: Some("conference/odc/".into()),
            event_types: vec![],
        },
        Filter {
            stream_prefix: None,
            event_types: vec![TYPE_B.into()],
        },
        Filter {
            stream_prefix: Some("conference/odc/".into()),
            event_types: vec![TYPE_A.into(), "podium.test.C".into()],
        },
    ];
    let mut subs = Vec::new();
    for filter in &filters {
        // Poll each up to its seam, so what follows is filtered on the live path.
        let mut sub = Box::pin(subscribe(t.dyn_log(), 1, filter.clone()));
        let stored = collect_until(sub.by_ref(), |items| {
            matches!(items.last(), Some(SubscriptionItem::CaughtUp(_)))
        })
        .await;
        subs.push((stored, sub));
    }

    let sentinel = event(TYPE_A);
    log.append("conference/other/agenda", ExpectedVersion::Any, mixed(3))
        .await
        .unwrap();
    log.append("conference/odc/agenda", ExpectedVersion::Any, mixed(3))
        .await
        .unwrap();
    log.append(
        "conference/odc/end",
        ExpectedVersion::Any,
        vec![event(TYPE_B), sentinel.clone()],
    )
    .await
    .unwrap();
    let all = read_everything(log.as_ref()).await;

    for (filter, (mut items, sub)) in filters.iter().zip(subs) {
        // The sentinel is the last event; the type-B filter's last match is the one before it.
        let end = if filter.event_types == [TYPE_B.to_owned()] {
            all[all.len() - 2].id
        } else {
            sentinel.id
        };
        items.extend(
            collect_until(
                sub,
                |items| matches!(items.last(), Some(SubscriptionItem::Event(e)) if e.id == end),
            )
            .await,
        );
        check_caught_up(&items, 1);
        let expected: Vec<_> = all[1..]
            .iter()
            .filter(|e| filter.matches(e))
            .cloned()
            .collect();
        assert!(
            !expected.is_empty() && expected.len() < all.len() - 1,
            "the filter {filter:?} should select some"
        );
        assert_eq!(events_of(&items), expected, "filter {filter:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catching_up_over_many_pages_while_appends_continue_misses_nothing() {
    let t = TestLog::new();
    // Several catch-up pages, and not a whole number of them.
    for _ in 0..5 {
        t.log
            .append("stored", ExpectedVersion::Any, events(1000))
            .await
            .unwrap();
    }
    let sentinel = event(TYPE_A);
    let subscriber = tokio::spawn(subscribe_until(
        t.dyn_log(),
        0,
        Filter::default(),
        sentinel.id,
    ));
    // Commits while the subscriber reads storage: some land in pages it reads ahead, some only
    // in its live channel.
    for i in 0..50 {
        t.log
            .append(&format!("live/{}", i % 3), ExpectedVersion::Any, events(20))
            .await
            .unwrap();
    }
    t.log
        .append("end", ExpectedVersion::NoStream, vec![sentinel])
        .await
        .unwrap();
    let items = subscriber.await.unwrap();
    check_caught_up(&items, 0);
    assert_eq!(events_of(&items), read_everything(t.log.as_ref()).await);
}

#[tokio::test]
async fn a_lagging_subscriber_reads_storage_and_misses_nothing() {
    // One batch of live buffer: any subscriber that is not polled between two commits lags.
    let t = TestLog::with_options(SledOptions {
        live_buffer: 1,
        ..SledOptions::default()
    });
    t.log
        .append("s", ExpectedVersion::Any, events(5))
        .await
        .unwrap();
    let mut sub = Box::pin(subscribe(t.dyn_log(), 2, Filter::default()));
    let caught_up = collect_until(sub.by_ref(), |items| items.len() == 4).await;
    assert_eq!(caught_up.last(), Some(&SubscriptionItem::CaughtUp(5)));

    // While nobody polls the subscription, fifty commits overflow its live channel, as they do
    // this receiver's.
    let mut witness = t.log.listen();
    for i in 0..50 {
        t.log
            .append("s", ExpectedVersion::Exact(4 + i), events(1))
            .await
            .unwrap();
    }
    assert!(
        matches!(witness.recv().await, Err(RecvError::Lagged(_))),
        "the live channel should have overflowed"
    );

    let last = t.log.read_all(54, 1).await.unwrap()[0].id;
    let live = collect_until(
        sub,
        |items| matches!(items.last(), Some(SubscriptionItem::Event(e)) if e.id == last),
    )
    .await;
    assert_eq!(events_of(&live), read_everything(t.log.as_ref()).await[5..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_subscribers_with_a_tiny_buffer_see_every_event_once() {
    let t = TestLog::with_options(SledOptions {
        live_buffer: 1,
        ..SledOptions::default()
    });
    t.log
        .append("s", ExpectedVersion::Any, events(100))
        .await
        .unwrap();
    let sentinel = event(TYPE_A);
    let subscribers: Vec<_> = [0u64, 50, 100, 150]
        .into_iter()
        .map(|from| {
            let log = t.dyn_log();
            let last = sentinel.id;
            tokio::spawn(async move {
                let mut sub = std::pin::pin!(subscribe(log, from, Filter::default()));
                let mut items = Vec::new();
                while let Some(item) = sub.next().await {
                    let item = item.unwrap();
                    items.push(item);
                    if has_seen(&items, last) {
                        break;
                    }
                    // A slow consumer: let the appenders run ahead.
                    for _ in 0..3 {
                        tokio::task::yield_now().await;
                    }
                }
                (from, items)
            })
        })
        .collect();
    let appenders: Vec<_> = (0..4)
        .map(|i| {
            let log = t.log.clone();
            tokio::spawn(async move {
                for _ in 0..40 {
                    log.append(&format!("live/{i}"), ExpectedVersion::Any, events(1))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for appender in appenders {
        appender.await.unwrap();
    }
    t.log
        .append("end", ExpectedVersion::NoStream, vec![sentinel])
        .await
        .unwrap();
    let all = read_everything(t.log.as_ref()).await;
    for subscriber in subscribers {
        let (from, items) = tokio::time::timeout(Duration::from_secs(60), subscriber)
            .await
            .unwrap()
            .unwrap();
        check_caught_up(&items, from);
        assert_eq!(
            events_of(&items),
            all[from as usize..],
            "subscriber from {from}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_end_when_the_log_closes() {
    let t = TestLog::new();
    t.log
        .append("s", ExpectedVersion::Any, events(3))
        .await
        .unwrap();
    let mut sub = Box::pin(subscribe(t.dyn_log(), 0, Filter::default()));
    let stored = collect_until(sub.by_ref(), |items| items.len() == 4).await;
    assert_eq!(stored.last(), Some(&SubscriptionItem::CaughtUp(3)));

    let last = events(2);
    t.log
        .append("s", ExpectedVersion::Any, last.clone())
        .await
        .unwrap();
    t.log.close().unwrap();
    let rest: Vec<_> = tokio::time::timeout(Duration::from_secs(10), sub.collect::<Vec<_>>())
        .await
        .expect("the subscription should end when the log closes");
    let rest: Vec<_> = rest.into_iter().map(Result::unwrap).collect();
    // What was committed before closing is still delivered.
    assert_eq!(
        events_of(&rest).iter().map(|e| e.id).collect::<Vec<_>>(),
        last.iter().map(|e| e.id).collect::<Vec<_>>()
    );

    // A subscription opened after closing replays storage and ends.
    let late: Vec<_> = tokio::time::timeout(
        Duration::from_secs(10),
        subscribe(t.dyn_log(), 1, Filter::default()).collect::<Vec<_>>(),
    )
    .await
    .expect("a subscription to a closed log should end");
    assert_eq!(late.len(), 5, "{late:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_after_the_last_seen_position_continues_exactly() {
    let t = TestLog::new();
    t.log
        .append("s", ExpectedVersion::Any, events(6))
        .await
        .unwrap();
    let marker = event(TYPE_B);
    t.log
        .append("s", ExpectedVersion::Any, vec![marker.clone()])
        .await
        .unwrap();
    let filter = Filter {
        stream_prefix: None,
        event_types: vec![TYPE_B.into()],
    };
    let first = subscribe_until(t.dyn_log(), 0, filter.clone(), marker.id).await;
    let resume = events_of(&first).last().unwrap().position + 1;

    let later = event(TYPE_B);
    t.log
        .append("s", ExpectedVersion::Any, events(3))
        .await
        .unwrap();
    t.log
        .append("s", ExpectedVersion::Any, vec![later.clone()])
        .await
        .unwrap();
    let second = subscribe_until(t.dyn_log(), resume, filter, later.id).await;
    assert_eq!(
        events_of(&second)
            .iter()
            .map(|e| (e.id, e.position))
            .collect::<Vec<_>>(),
        [(later.id, 10)]
    );
}
