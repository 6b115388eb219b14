//! What only the JetStream backend needs proving: appends that land after atomic batches, claims
//! of ids that outlive JetStream's duplicate window, appends fenced against another writer, and
//! a log several processes share.

use std::time::Duration;

use podium_eventlog::{
    AppendOutcome, EventLog, EventLogError, ExpectedVersion, Filter, NatsEventLog, NatsOptions,
    read_whole_stream, subscribe,
};
use podium_natscluster::NatsCluster;
use uuid::Uuid;

use crate::helpers::{
    Place, TYPE_A, checked_log, cluster, collect_until, event, events, events_of, runtime,
    same_event,
};

#[test]
fn an_append_after_a_batch_lands_after_the_whole_batch() {
    let cluster = cluster();
    runtime().block_on(async {
        let t = Place::on(&cluster).open(64).await;
        let first = t
            .log
            .append("poll/a", ExpectedVersion::NoStream, events(3))
            .await
            .unwrap();
        assert_eq!((first.first_version, first.last_version), (0, 2));
        let second = t
            .log
            .append("poll/a", ExpectedVersion::Any, events(2))
            .await
            .unwrap();
        assert_eq!((second.first_version, second.last_version), (3, 4));
        let stream = read_whole_stream(t.log.as_ref(), "poll/a").await.unwrap();
        assert_eq!(stream.len(), 5);
        checked_log(t.log.as_ref()).await;
    });
}

#[test]
fn concurrent_appends_to_one_stream_take_each_version_once() {
    let cluster = cluster();
    runtime().block_on(async {
        let t = Place::on(&cluster).open(64).await;
        let tasks: Vec<_> = (0..4)
            .map(|k| {
                let log = t.log.clone();
                tokio::spawn(async move {
                    let mut outcomes = Vec::new();
                    for i in 0..30 {
                        let n = 1 + (i + k) % 3;
                        let outcome = log
                            .append("poll/shared", ExpectedVersion::Any, events(n))
                            .await
                            .unwrap();
                        outcomes.push(outcome);
                    }
                    outcomes
                })
            })
            .collect();
        for task in tasks {
            let outcomes = task.await.unwrap();
            for pair in outcomes.windows(2) {
                assert!(
                    pair[1].first_version > pair[0].last_version,
                    "{:?} then {:?}",
                    pair[0],
                    pair[1]
                );
            }
        }
        checked_log(t.log.as_ref()).await;
    });
}

#[test]
fn a_cluster_that_syncs_lazily_is_refused_unless_told() {
    let lazy = podium_natscluster::NatsCluster::start_lazy(3).expect("a lazy cluster");
    runtime().block_on(async {
        let options = NatsOptions {
            servers: lazy.urls(),
            monitors: lazy.monitor_urls(),
            ..NatsOptions::default()
        };
        let error = NatsEventLog::open(options.clone())
            .await
            .err()
            .expect("a lazy cluster is refused")
            .to_string();
        assert!(error.contains("syncs JetStream lazily"), "{error}");
        let unseen = NatsOptions {
            monitors: Vec::new(),
            ..options.clone()
        };
        let error = NatsEventLog::open(unseen).await.err().unwrap().to_string();
        assert!(error.contains("without their monitoring URLs"), "{error}");
        let told = NatsOptions {
            unsafe_lazy_sync: true,
            ..options
        };
        let log = NatsEventLog::open(told)
            .await
            .expect("told to accept the risk");
        log.append("poll/a", ExpectedVersion::NoStream, events(1))
            .await
            .unwrap();
    });
}

/// Options for a log of its own on `cluster` whose JetStream forgets message ids after a
/// second, so that a test sees what only podium's claims keep.
fn forgetful(cluster: &NatsCluster) -> NatsOptions {
    NatsOptions {
        servers: cluster.urls(),
        monitors: cluster.monitor_urls(),
        prefix: format!("t{}", Uuid::new_v4().simple()),
        duplicate_window: Duration::from_secs(1),
        ..NatsOptions::default()
    }
}

#[test]
fn ids_stay_unique_after_jetstream_forgets_them() {
    let cluster = cluster();
    runtime().block_on(async {
        let options = forgetful(&cluster);
        let log = NatsEventLog::open(options.clone()).await.unwrap();
        let batch = events(2);
        let first = log
            .append("poll/a", ExpectedVersion::NoStream, batch.clone())
            .await
            .unwrap();
        // Past JetStream's duplicate window.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let again = log
            .append("poll/a", ExpectedVersion::Exact(7), batch.clone())
            .await
            .unwrap();
        assert_eq!(
            again,
            AppendOutcome {
                deduplicated: true,
                ..first
            }
        );
        let reused = log
            .append("poll/b", ExpectedVersion::Any, vec![batch[0].clone()])
            .await
            .unwrap_err();
        assert!(
            matches!(&reused, EventLogError::ReusedId { owner, .. } if owner == "poll/a"),
            "{reused}"
        );
        let half = log
            .append(
                "poll/a",
                ExpectedVersion::Any,
                vec![batch[1].clone(), event(TYPE_A)],
            )
            .await
            .unwrap_err();
        assert!(
            matches!(half, EventLogError::PartialDuplicate { .. }),
            "{half}"
        );
        assert_eq!(
            log.find("poll/a", batch[1].id).await.unwrap(),
            Some((first.last_position, first.last_version))
        );
        assert_eq!(log.find("poll/b", batch[1].id).await.unwrap(), None);

        // Another process sees the same: the claims are on the cluster.
        let other = NatsEventLog::open(options).await.unwrap();
        let from_other = other
            .append("poll/a", ExpectedVersion::Any, batch)
            .await
            .unwrap();
        assert_eq!(from_other, again);
        checked_log(&other).await;
    });
}

/// Writes a claim of `id` for `<version> <first version> <stream>`, as a process that died before publishing
/// would leave it.
async fn leave_claim(cluster: &NatsCluster, options: &NatsOptions, id: Uuid, claim: &str) {
    let client = async_nats::connect(cluster.url(1)).await.unwrap();
    let ids = async_nats::jetstream::new(client)
        .get_key_value(format!("{}-ids", options.prefix))
        .await
        .unwrap();
    ids.create(id.to_string(), claim.to_owned().into())
        .await
        .unwrap();
}

#[test]
fn an_orphaned_claim_is_retried_in_its_place_and_refused_elsewhere() {
    let cluster = cluster();
    runtime().block_on(async {
        // JetStream's own window, so that the claim is young enough to publish in place.
        let options = NatsOptions {
            duplicate_window: Duration::from_secs(120),
            ..forgetful(&cluster)
        };
        let log = NatsEventLog::open(options.clone()).await.unwrap();
        // A process claimed this id for poll/a's first version and died before publishing.
        let orphan = event(TYPE_A);
        leave_claim(&cluster, &options, orphan.id, "0 0 poll/a").await;
        assert_eq!(log.find("poll/a", orphan.id).await.unwrap(), None);
        // Elsewhere it is refused while its claimant could still be publishing...
        let elsewhere = log
            .append("poll/b", ExpectedVersion::Any, vec![orphan.clone()])
            .await
            .unwrap_err();
        assert!(
            elsewhere
                .to_string()
                .contains("being appended to stream poll/a at this moment"),
            "{elsewhere}"
        );
        // ...and its retry lands where it was claimed.
        let landed = log
            .append("poll/a", ExpectedVersion::NoStream, vec![orphan.clone()])
            .await
            .unwrap();
        assert!(!landed.deduplicated);
        assert_eq!(
            log.find("poll/a", orphan.id).await.unwrap(),
            Some((landed.first_position, 0))
        );
        let stored = read_whole_stream(&log, "poll/a").await.unwrap();
        assert!(same_event(&stored[0], &orphan));
        let reused = log
            .append("poll/b", ExpectedVersion::Any, vec![orphan])
            .await
            .unwrap_err();
        assert!(
            matches!(&reused, EventLogError::ReusedId { owner, .. } if owner == "poll/a"),
            "{reused}"
        );
    });
}

#[test]
fn a_claim_whose_place_another_event_took_is_taken_over() {
    let cluster = cluster();
    runtime().block_on(async {
        let options = forgetful(&cluster);
        let log = NatsEventLog::open(options.clone()).await.unwrap();
        // The claimant lost poll/c's first version to another append, and gave up.
        let loser = event(TYPE_A);
        leave_claim(&cluster, &options, loser.id, "0 0 poll/c").await;
        log.append("poll/c", ExpectedVersion::NoStream, events(1))
            .await
            .unwrap();
        let landed = log
            .append("poll/d", ExpectedVersion::NoStream, vec![loser.clone()])
            .await
            .unwrap();
        assert_eq!(
            log.find("poll/d", loser.id).await.unwrap(),
            Some((landed.first_position, 0))
        );
        assert_eq!(log.find("poll/c", loser.id).await.unwrap(), None);
    });
}

#[test]
fn two_processes_sending_one_batch_at_once_store_it_once() {
    let cluster = cluster();
    runtime().block_on(async {
        let place = Place::on(&cluster);
        let (one, two) = (place.open(64).await, place.open(64).await);
        for round in 0..10 {
            let batch = events(1 + round % 3);
            let (a, b) = tokio::join!(
                one.log
                    .append("poll/race", ExpectedVersion::Any, batch.clone()),
                two.log
                    .append("poll/race", ExpectedVersion::Any, batch.clone()),
            );
            let (a, b) = (a.unwrap(), b.unwrap());
            assert_eq!(
                (a.first_position, a.last_position, a.first_version),
                (b.first_position, b.last_position, b.first_version),
                "round {round}"
            );
            assert!(
                a.deduplicated != b.deduplicated,
                "round {round}: {a:?} {b:?}"
            );
            // The same id to two streams at once: one stream gets it, never both.
            let id = event(TYPE_A);
            let (c, d) = tokio::join!(
                one.log
                    .append("poll/left", ExpectedVersion::Any, vec![id.clone()]),
                two.log
                    .append("poll/right", ExpectedVersion::Any, vec![id.clone()]),
            );
            assert!(
                c.is_ok() != d.is_ok(),
                "round {round}: both or neither stored: {c:?} {d:?}"
            );
        }
        let all = checked_log(one.log.as_ref()).await;
        let mut ids: Vec<Uuid> = all.iter().map(|e| e.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), all.len(), "an id is stored twice");
    });
}

#[test]
fn processes_sharing_the_log_are_fenced_and_see_each_others_events() {
    let cluster = cluster();
    runtime().block_on(async {
        let place = Place::on(&cluster);
        let (one, two) = (place.open(64).await, place.open(64).await);
        let watcher = tokio::spawn(collect_until(
            subscribe(two.log.clone(), 0, Filter::default()),
            |items| events_of(items).len() == 40,
        ));
        // The two take turns, each expecting the version the other just made: the fence lets
        // every one through, as it must.
        let mut conflicts = 0;
        let mut landed = 0;
        let mut version = None;
        while landed < 40 {
            for log in [&one.log, &two.log] {
                let expected = version.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
                match log.append("poll/shared", expected, events(1)).await {
                    Ok(outcome) => {
                        landed += 1;
                        version = Some(outcome.last_version);
                    }
                    Err(EventLogError::Conflict { actual, .. }) => {
                        conflicts += 1;
                        version = actual;
                    }
                    Err(error) => panic!("{error}"),
                }
                if landed == 40 {
                    break;
                }
            }
        }
        assert_eq!(
            conflicts, 0,
            "each append saw the version the last one made"
        );
        let stale = one
            .log
            .append("poll/shared", ExpectedVersion::Exact(3), events(1))
            .await
            .unwrap_err();
        assert!(
            matches!(
                stale,
                EventLogError::Conflict {
                    actual: Some(39),
                    ..
                }
            ),
            "{stale}"
        );
        let seen = events_of(&watcher.await.unwrap());
        let versions: Vec<u64> = seen.iter().map(|e| e.stream_version).collect();
        assert_eq!(versions, (0..40).collect::<Vec<_>>());
        // Read through the process whose tail delivered them all.
        assert_eq!(checked_log(two.log.as_ref()).await, seen);
    });
}

#[test]
fn a_process_whose_tail_is_behind_still_finds_the_others_appends_in_the_head_now() {
    let cluster = cluster();
    runtime().block_on(async {
        let place = Place::on(&cluster);
        let writer = place.open(64).await;
        let Place::Nats {
            urls,
            monitors,
            prefix,
        } = &place
        else {
            unreachable!("a place on a cluster")
        };
        let reader = NatsEventLog::open(NatsOptions {
            servers: urls.clone(),
            monitors: monitors.clone(),
            prefix: prefix.clone(),
            ..NatsOptions::default()
        })
        .await
        .unwrap();
        // The reader stops following, as a stalled tail does: what the writer appends now
        // reaches it only by asking the stream.
        reader.close();
        let appended = writer
            .log
            .append("poll/a", ExpectedVersion::NoStream, events(3))
            .await
            .unwrap();
        assert_eq!(reader.head(), 0, "the reader's tail delivered nothing");
        assert_eq!(reader.head_now().await.unwrap(), appended.last_position + 1);
        assert_eq!(writer.log.head_now().await.unwrap(), writer.log.head());
    });
}

#[test]
fn the_tail_follows_again_on_a_new_consumer_when_its_client_moves_to_another_server() {
    let mut cluster = cluster();
    runtime().block_on(async {
        let options = |servers: Vec<String>, prefix: &str| NatsOptions {
            servers,
            monitors: cluster.monitor_urls(),
            prefix: prefix.to_owned(),
            ..NatsOptions::default()
        };
        let prefix = format!("t{}", Uuid::new_v4().simple());
        let reader = std::sync::Arc::new(
            NatsEventLog::open(options(cluster.urls(), &prefix))
                .await
                .unwrap(),
        );
        // The writer is a client of the other two servers, so that its appends go on while
        // the reader's server is down.
        let port = reader.server().rsplit(':').next().unwrap().to_owned();
        let lost = (0..cluster.len())
            .find(|&i| cluster.url(i).ends_with(&format!(":{port}")))
            .expect("the reader's server is one of the cluster's");
        let others = (0..cluster.len())
            .filter(|&i| i != lost)
            .map(|i| cluster.url(i))
            .collect();
        let writer = NatsEventLog::open(options(others, &prefix)).await.unwrap();
        let watcher = tokio::spawn(collect_until(
            subscribe(reader.clone(), 0, Filter::default()),
            |items| events_of(items).len() == 20,
        ));
        let mut version = None;
        let mut before = None;
        for round in 0..20 {
            if round == 10 {
                before = Some(reader.tail_restarts());
                cluster.kill(lost).unwrap();
            }
            let expected = version.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
            // The killed server may have led the stream or the ids' bucket: the same batch is
            // sent again until the elections are over.
            let batch = events(1);
            let mut attempts = 0;
            let outcome = loop {
                match writer.append("poll/a", expected, batch.clone()).await {
                    Ok(outcome) => break outcome,
                    Err(error) if attempts < 4 => {
                        attempts += 1;
                        eprintln!("append {round} again after: {error}");
                    }
                    Err(error) => panic!("append {round}: {error}"),
                }
            };
            version = Some(outcome.last_version);
        }
        let versions: Vec<u64> = events_of(&watcher.await.unwrap())
            .iter()
            .map(|e| e.stream_version)
            .collect();
        assert_eq!(versions, (0..20).collect::<Vec<_>>());
        let (before, after) = (before.unwrap(), reader.tail_restarts());
        assert!(
            after.reconnected > before.reconnected,
            "the tail did not follow again after the move: {before:?} then {after:?}"
        );
    });
}
