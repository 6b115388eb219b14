//! Property tests under concurrency. Several tasks append with random expected versions and
//! retry earlier batches while subscribers start before and during the appends, with and
//! without filters and with live buffers small enough to lag. Afterwards every acknowledged
//! event is in the log exactly once, positions are dense, stream versions contiguous, conflicts
//! tell the truth, retries are deduplicated, and each subscriber saw exactly the log's order
//! from its start. The same scenarios run on sled and on a three-server JetStream cluster.

use std::{collections::HashMap, collections::HashSet, sync::Arc, time::Duration};

use anyhow::{Context, bail, ensure};
use futures::StreamExt;
use podium_eventlog::{
    AppendOutcome, EventLog, EventLogError, ExpectedVersion, Filter, NewEvent, RecordedEvent,
    SubscriptionItem, read_whole_stream, subscribe,
};
use proptest::{collection::vec, prelude::*, sample::Index, test_runner::TestRunner};
use tempfile::TempDir;
use tokio::{sync::watch, task::JoinHandle};
use uuid::Uuid;

use crate::helpers::{
    Place, TYPE_A, TYPE_B, check_caught_up, cluster, event, events_of, has_seen, read_everything,
    runtime, same_event, streams_of,
};

const STREAMS: [&str; 3] = ["prop/a", "prop/b", "other/c"];
/// The last event of every scenario; every filter below matches it.
const END_STREAM: &str = "prop/end";
/// Where scenarios pad the log so that every subscriber's start position exists.
const PAD_STREAM: &str = "other/pad";

#[derive(Debug, Clone, Copy)]
enum Expect {
    Any,
    NoStream,
    /// A guess, usually wrong.
    Exact(u64),
    /// The stream's version as read just before appending: right unless another task wins.
    Read,
}

#[derive(Debug, Clone)]
enum Op {
    Fresh {
        stream: usize,
        len: usize,
        type_b: bool,
        expect: Expect,
    },
    /// Sends an earlier batch of the same task again, ids and all.
    Retry { earlier: Index, expect: Expect },
}

#[derive(Debug, Clone)]
struct SubscriberPlan {
    /// `None` starts before any append; otherwise just before that op of that task.
    start: Option<(Index, Index)>,
    /// Start position as a percentage of the head at start (past the head above 100).
    from_percent: u64,
    filter: u8,
    /// After each item, waits for this many more appends to finish, so that the appenders run
    /// ahead and a small live buffer overflows.
    slowness: u8,
}

#[derive(Debug, Clone)]
struct Scenario {
    tasks: Vec<Vec<Op>>,
    subscribers: Vec<SubscriberPlan>,
    live_buffer: usize,
}

fn expect() -> impl Strategy<Value = Expect> {
    prop_oneof![
        Just(Expect::Any),
        Just(Expect::NoStream),
        (0u64..6).prop_map(Expect::Exact),
        Just(Expect::Read)
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..STREAMS.len(), 1usize..=3, any::<bool>(), expect())
            .prop_map(|(stream, len, type_b, expect)| Op::Fresh { stream, len, type_b, expect }),
        1 => (any::<Index>(), expect()).prop_map(|(earlier, expect)| Op::Retry { earlier, expect }),
    ]
}

fn subscriber() -> impl Strategy<Value = SubscriberPlan> {
    (
        proptest::option::of((any::<Index>(), any::<Index>())),
        0u64..=120,
        0u8..4,
        0u8..4,
    )
        .prop_map(|(start, from_percent, filter, slowness)| SubscriberPlan {
            start,
            from_percent,
            filter,
            slowness,
        })
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        vec(vec(op(), 1..12), 2..6),
        vec(subscriber(), 0..5),
        prop_oneof![Just(1usize), Just(3), Just(4096)],
    )
        .prop_map(|(tasks, subscribers, live_buffer)| Scenario {
            tasks,
            subscribers,
            live_buffer,
        })
}

fn filter(choice: u8) -> Filter {
    let prefix = Some("prop/".to_owned());
    let types = vec![TYPE_A.to_owned()];
    match choice {
        0 => Filter::default(),
        1 => Filter {
            stream_prefix: prefix,
            event_types: vec![],
        },
        2 => Filter {
            stream_prefix: None,
            event_types: types,
        },
        _ => Filter {
            stream_prefix: prefix,
            event_types: types,
        },
    }
}

/// Property cases: `PROPTEST_CASES` when set, else a number that keeps the suite quick.
fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(default)
}

/// One append as a task made it, with what came back.
struct Record {
    /// Index of the op that first sent this batch (itself unless a retry).
    origin: usize,
    stream: String,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
    result: podium_eventlog::Result<AppendOutcome>,
}

/// A running subscriber and the position it started from.
type Subscription = (
    u64,
    JoinHandle<anyhow::Result<(Filter, Vec<SubscriptionItem>)>>,
);

/// What the tasks and subscribers of a scenario share.
#[derive(Clone)]
struct Shared {
    log: Arc<dyn EventLog>,
    /// The id of the scenario's last event.
    end: Uuid,
    /// How many appends have finished; `u64::MAX` once all have.
    appends: Arc<watch::Sender<u64>>,
}

fn start_subscriber(shared: &Shared, plan: &SubscriberPlan) -> Subscription {
    let Shared { log, end, appends } = shared.clone();
    let mut appended = appends.subscribe();
    let head = log.head();
    let from = if head == 0 {
        plan.from_percent / 20
    } else {
        head * plan.from_percent / 100
    };
    let (filter, slowness) = (filter(plan.filter), plan.slowness);
    let handle = tokio::spawn(async move {
        let mut sub = std::pin::pin!(subscribe(log, from, filter.clone()));
        let mut items = Vec::new();
        let collect = async {
            while let Some(item) = sub.next().await {
                let item = item?;
                items.push(item);
                if has_seen(&items, end) {
                    return Ok(());
                }
                if slowness > 0 {
                    let target = appended.borrow().saturating_add(slowness.into());
                    appended.wait_for(|&n| n >= target).await?;
                }
            }
            bail!("subscription ended before the last event")
        };
        tokio::time::timeout(Duration::from_secs(20), collect)
            .await
            .context("subscription stalled")??;
        Ok((filter, items))
    });
    (from, handle)
}

async fn run_task(
    shared: Shared,
    ops: Vec<Op>,
    subscribers: Vec<(usize, SubscriberPlan)>,
) -> anyhow::Result<(Vec<Record>, Vec<Subscription>)> {
    let log = shared.log.clone();
    let mut records: Vec<Record> = Vec::new();
    let mut started = Vec::new();
    for (j, op) in ops.into_iter().enumerate() {
        for (_, plan) in subscribers.iter().filter(|(at, _)| *at == j) {
            started.push(start_subscriber(&shared, plan));
        }
        let (origin, stream, events, expect) = match op {
            Op::Retry { earlier, expect } if j > 0 => {
                let k = records[earlier.index(j)].origin;
                (
                    k,
                    records[k].stream.clone(),
                    records[k].events.clone(),
                    expect,
                )
            }
            Op::Retry { expect, .. } => (j, STREAMS[0].to_owned(), vec![event(TYPE_A)], expect),
            Op::Fresh {
                stream,
                len,
                type_b,
                expect,
            } => {
                let kind = if type_b { TYPE_B } else { TYPE_A };
                (
                    j,
                    STREAMS[stream].to_owned(),
                    (0..len).map(|_| event(kind)).collect(),
                    expect,
                )
            }
        };
        let expected = match expect {
            Expect::Any => ExpectedVersion::Any,
            Expect::NoStream => ExpectedVersion::NoStream,
            Expect::Exact(v) => ExpectedVersion::Exact(v),
            Expect::Read => match read_whole_stream(log.as_ref(), &stream).await?.last() {
                Some(last) => ExpectedVersion::Exact(last.stream_version),
                None => ExpectedVersion::NoStream,
            },
        };
        let result = log.append(&stream, expected, events.clone()).await;
        shared.appends.send_modify(|n| *n += 1);
        records.push(Record {
            origin,
            stream,
            expected,
            events,
            result,
        });
    }
    Ok((records, started))
}

async fn run(place: Place, scenario: Scenario) -> anyhow::Result<()> {
    let t = place.open(scenario.live_buffer).await;
    let end = event(TYPE_A);
    let shared = Shared {
        log: t.log.clone(),
        end: end.id,
        appends: Arc::new(watch::channel(0).0),
    };
    let mut subscriptions = Vec::new();
    let mut during: Vec<Vec<(usize, SubscriberPlan)>> = vec![Vec::new(); scenario.tasks.len()];
    for plan in &scenario.subscribers {
        match plan.start {
            None => subscriptions.push(start_subscriber(&shared, plan)),
            Some((task, op)) => {
                let task = task.index(scenario.tasks.len());
                during[task].push((op.index(scenario.tasks[task].len()), plan.clone()));
            }
        }
    }
    let tasks: Vec<_> = scenario
        .tasks
        .iter()
        .zip(during)
        .map(|(ops, subs)| tokio::spawn(run_task(shared.clone(), ops.clone(), subs)))
        .collect();
    let mut records = Vec::new();
    for task in tasks {
        let (task_records, started) = task.await??;
        records.push(task_records);
        subscriptions.extend(started);
    }
    shared.appends.send_replace(u64::MAX);
    // Subscribers that started past the head wait for their position: pad the log up to the
    // furthest of them, so that the last event reaches every subscriber.
    let furthest = subscriptions
        .iter()
        .map(|(from, _)| *from)
        .max()
        .unwrap_or(0);
    let appended = t.log.head();
    if furthest > appended {
        let padding = (appended..furthest).map(|_| event(TYPE_B)).collect();
        t.log
            .append(PAD_STREAM, ExpectedVersion::NoStream, padding)
            .await?;
    }
    t.log
        .append(END_STREAM, ExpectedVersion::NoStream, vec![end.clone()])
        .await?;

    let all = read_everything(t.log.as_ref()).await;
    check_appends(&records, &all[..appended as usize])?;
    for (from, subscription) in subscriptions {
        let (filter, items) = subscription.await??;
        check_caught_up(&items, from);
        let expected: Vec<&RecordedEvent> = all
            .iter()
            .skip(from as usize)
            .filter(|e| filter.matches(e))
            .collect();
        let got = events_of(&items);
        ensure!(
            got.iter().eq(expected.iter().copied()),
            "subscriber from {from} with {filter:?} saw positions {:?}, the log has {:?}",
            got.iter().map(|e| e.position).collect::<Vec<_>>(),
            expected.iter().map(|e| e.position).collect::<Vec<_>>()
        );
    }
    // Only now: closing ends the live subscriptions.
    t.close();
    Ok(())
}

/// Checks every task's results against each other and against the log they wrote.
fn check_appends(tasks: &[Vec<Record>], all: &[RecordedEvent]) -> anyhow::Result<()> {
    let mut acknowledged: Vec<(AppendOutcome, &Record)> = Vec::new();
    let mut conflicts: Vec<(&str, u64)> = Vec::new();
    for (task, records) in tasks.iter().enumerate() {
        let mut stored: HashMap<usize, AppendOutcome> = HashMap::new();
        // The head a task sees of each stream never moves backwards.
        let mut seen: HashMap<String, Option<u64>> = HashMap::new();
        let mut observe = |stream: &str, head: Option<u64>, what: &str| -> anyhow::Result<()> {
            let before = seen.get(stream).copied();
            ensure!(
                before.is_none_or(|b| b <= head),
                "task {task}: {what} saw {stream} at {head:?} after {before:?}"
            );
            seen.insert(stream.to_owned(), head);
            Ok(())
        };
        for (j, r) in records.iter().enumerate() {
            let what = format!(
                "op {j} ({} events to {} expecting {})",
                r.events.len(),
                r.stream,
                r.expected
            );
            let len = r.events.len() as u64;
            match (&r.result, stored.get(&r.origin)) {
                (Ok(outcome), Some(original)) => ensure!(
                    *outcome
                        == AppendOutcome {
                            deduplicated: true,
                            ..*original
                        },
                    "task {task}: {what}: a retry of op {} returned {outcome:?}, the original was {original:?}",
                    r.origin
                ),
                (Err(error), Some(_)) => {
                    bail!("task {task}: {what}: a retry of a stored batch failed: {error}")
                }
                (Ok(o), None) => {
                    ensure!(
                        !o.deduplicated,
                        "task {task}: {what}: new ids were deduplicated"
                    );
                    ensure!(
                        o.last_version + 1 - o.first_version == len
                            && o.last_position + 1 - o.first_position == len,
                        "task {task}: {what}: outcome {o:?} does not span the batch"
                    );
                    let fits = match r.expected {
                        ExpectedVersion::Any => true,
                        ExpectedVersion::NoStream => o.first_version == 0,
                        ExpectedVersion::Exact(v) => o.first_version == v + 1,
                    };
                    ensure!(
                        fits,
                        "task {task}: {what}: landed at version {} instead of conflicting",
                        o.first_version
                    );
                    observe(&r.stream, o.first_version.checked_sub(1), &what)?;
                    observe(&r.stream, Some(o.last_version), &what)?;
                    stored.insert(r.origin, *o);
                    acknowledged.push((*o, r));
                }
                (
                    Err(EventLogError::Conflict {
                        stream,
                        expected,
                        actual,
                    }),
                    None,
                ) => {
                    ensure!(
                        stream == &r.stream && *expected == r.expected,
                        "task {task}: {what}: conflict names {stream} {expected}"
                    );
                    let wrong = match r.expected {
                        ExpectedVersion::Any => false,
                        ExpectedVersion::NoStream => actual.is_some(),
                        ExpectedVersion::Exact(v) => *actual != Some(v),
                    };
                    ensure!(
                        wrong,
                        "task {task}: {what}: conflict although the stream was at {actual:?}"
                    );
                    observe(&r.stream, *actual, &what)?;
                    conflicts.extend(actual.map(|a| (r.stream.as_str(), a)));
                }
                (Err(error), None) => bail!("task {task}: {what}: unexpected error {error}"),
            }
        }
    }

    let written: u64 = acknowledged
        .iter()
        .map(|(o, _)| o.last_position + 1 - o.first_position)
        .sum();
    ensure!(
        all.len() as u64 == written,
        "the log holds {} events, {written} were acknowledged",
        all.len()
    );
    for (o, r) in &acknowledged {
        for (i, sent) in r.events.iter().enumerate() {
            let stored = &all[(o.first_position + i as u64) as usize];
            ensure!(
                same_event(stored, sent)
                    && stored.stream == r.stream
                    && stored.stream_version == o.first_version + i as u64,
                "acknowledged event {} of {} is not where its outcome {o:?} says",
                sent.id,
                r.stream
            );
        }
    }
    let ids: HashSet<Uuid> = all.iter().map(|e| e.id).collect();
    ensure!(
        ids.len() == all.len(),
        "an event id appears twice in the log"
    );
    streams_of(all);
    // A conflict reports a version the stream really stopped at, never the middle of a batch.
    let batch_ends: HashSet<(&str, u64)> = acknowledged
        .iter()
        .map(|(o, r)| (r.stream.as_str(), o.last_version))
        .collect();
    for (stream, actual) in conflicts {
        ensure!(
            batch_ends.contains(&(stream, actual)),
            "a conflict reported {stream} at {actual}, not the end of a batch"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(32), max_shrink_iters: 64, ..ProptestConfig::default() })]

    #[test]
    fn concurrent_appends_and_subscriptions_agree_with_the_log(scenario in scenario()) {
        let dir = TempDir::new().expect("temporary directory");
        let result = runtime().block_on(run(Place::Sled(dir.path().to_owned()), scenario));
        if let Err(error) = result {
            return Err(TestCaseError::fail(format!("{error:#}")));
        }
    }
}

/// The same property on JetStream: one cluster for every case, each case a log of its own.
#[test]
fn concurrent_appends_and_subscriptions_agree_with_the_log_on_jetstream() {
    let cluster = cluster();
    let config = ProptestConfig {
        cases: cases(16),
        max_shrink_iters: 16,
        ..ProptestConfig::default()
    };
    let result = TestRunner::new(config).run(&scenario(), |scenario| {
        runtime()
            .block_on(run(Place::on(&cluster), scenario))
            .map_err(|error| TestCaseError::fail(format!("{error:#}")))
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
}
