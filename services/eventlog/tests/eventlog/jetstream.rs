//! What only the JetStream backend needs proving: appends that land after atomic batches, claims
//! of ids that outlive JetStream's duplicate window, appends fenced against another writer, and
//! a log several processes share.

use podium_eventlog::{ExpectedVersion, read_whole_stream};

use crate::helpers::{Place, checked_log, cluster, events, runtime};

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
