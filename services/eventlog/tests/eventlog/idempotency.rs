//! Idempotency by event id: a retry returns the original outcome and writes nothing, whatever
//! its expected version, for ever (across reopening), and concurrent retries write once.

use podium_eventlog::{AppendOutcome, EventLog, EventLogError, ExpectedVersion, NewEvent};

use crate::helpers::{TestLog, checked_log, events, read_everything};

fn deduplicated(original: AppendOutcome) -> AppendOutcome {
    AppendOutcome {
        deduplicated: true,
        ..original
    }
}

#[tokio::test]
async fn a_retry_returns_the_original_outcome_and_writes_nothing() {
    let t = TestLog::new();
    let log = &t.log;
    log.append("vote/1", ExpectedVersion::Any, events(2))
        .await
        .unwrap();
    let batch = events(3);
    let original = log
        .append("vote/1", ExpectedVersion::Exact(1), batch.clone())
        .await
        .unwrap();
    assert!(!original.deduplicated);
    log.append("vote/2", ExpectedVersion::Any, events(1))
        .await
        .unwrap();
    let before = read_everything(log.as_ref()).await;

    // The expected version of a retry does not matter: it was right the first time.
    for expected in [
        ExpectedVersion::Exact(1),
        ExpectedVersion::Any,
        ExpectedVersion::NoStream,
        ExpectedVersion::Exact(40),
    ] {
        let again = log.append("vote/1", expected, batch.clone()).await.unwrap();
        assert_eq!(again, deduplicated(original), "retry with {expected}");
    }
    assert_eq!(log.head(), 6);
    assert_eq!(read_everything(log.as_ref()).await, before);
}

#[tokio::test]
async fn a_retry_with_changed_payloads_is_still_the_same_write() {
    let t = TestLog::new();
    let batch = events(2);
    let original = t
        .log
        .append("s", ExpectedVersion::Any, batch.clone())
        .await
        .unwrap();
    let changed: Vec<NewEvent> = batch
        .into_iter()
        .map(|e| NewEvent {
            payload: b"other".to_vec(),
            ..e
        })
        .collect();
    assert_eq!(
        t.log
            .append("s", ExpectedVersion::Any, changed)
            .await
            .unwrap(),
        deduplicated(original)
    );
    let stored = t.log.read_all(0, 10).await.unwrap();
    assert!(
        stored.iter().all(|e| e.payload == e.id.as_bytes()),
        "the original payloads stay"
    );
}

#[tokio::test]
async fn idempotency_is_permanent_across_reopening() {
    let t = TestLog::new();
    let batch = events(4);
    t.log
        .append("q/1", ExpectedVersion::Any, events(1))
        .await
        .unwrap();
    let original = t
        .log
        .append("q/1", ExpectedVersion::Exact(0), batch.clone())
        .await
        .unwrap();
    let single = events(1);
    let original_single = t
        .log
        .append("q/2", ExpectedVersion::NoStream, single.clone())
        .await
        .unwrap();
    let before = read_everything(t.log.as_ref()).await;

    let t = t.reopen().reopen();
    assert_eq!(
        t.log
            .append("q/1", ExpectedVersion::NoStream, batch.clone())
            .await
            .unwrap(),
        deduplicated(original)
    );
    assert_eq!(
        t.log
            .append("q/2", ExpectedVersion::Any, single)
            .await
            .unwrap(),
        deduplicated(original_single)
    );
    assert_eq!(read_everything(t.log.as_ref()).await, before);

    // A batch mixing a stored id with a new one is refused after reopening too.
    let mut partial = events(1);
    partial.push(batch[2].clone());
    assert!(matches!(
        t.log.append("q/1", ExpectedVersion::Any, partial).await,
        Err(EventLogError::PartialDuplicate { .. })
    ));
    assert_eq!(t.log.head(), 6);
}

#[tokio::test]
async fn a_partial_duplicate_is_refused_whole() {
    let t = TestLog::new();
    let stored = events(2);
    t.log
        .append("s", ExpectedVersion::Any, stored.clone())
        .await
        .unwrap();
    for mixed in [
        vec![stored[0].clone(), events(1).remove(0)],
        vec![events(1).remove(0), stored[1].clone()],
    ] {
        let result = t.log.append("s", ExpectedVersion::Any, mixed).await;
        assert!(
            matches!(result, Err(EventLogError::PartialDuplicate { ref stream }) if stream == "s"),
            "{result:?}"
        );
    }
    assert_eq!(t.log.head(), 2);
}

#[tokio::test]
async fn an_id_stored_in_one_stream_is_refused_in_any_other_for_ever() {
    let t = TestLog::new();
    let batch = events(2);
    t.log
        .append("a", ExpectedVersion::Any, batch.clone())
        .await
        .unwrap();
    // A request id sent again for something else: refused, whole, naming both streams.
    for reused in [batch.clone(), vec![events(1).remove(0), batch[1].clone()]] {
        let refused = t.log.append("b", ExpectedVersion::Any, reused).await;
        assert!(
            matches!(&refused, Err(EventLogError::ReusedId { stream, owner, .. }) if stream == "b" && owner == "a"),
            "{refused:?}"
        );
    }
    // Two requests with one id for two streams at once: one is stored, the other refused.
    let contested = events(1);
    let (first, second) = tokio::join!(
        t.log.append("c", ExpectedVersion::Any, contested.clone()),
        t.log.append("d", ExpectedVersion::Any, contested.clone()),
    );
    assert!(
        first.is_ok() != second.is_ok(),
        "exactly one of {first:?} and {second:?} is stored"
    );
    assert_eq!(checked_log(t.log.as_ref()).await.len(), 3);
    // The rule outlives a restart, and a retry into the owning stream is still answered.
    let t = t.reopen();
    assert!(matches!(
        t.log.append("b", ExpectedVersion::Any, batch.clone()).await,
        Err(EventLogError::ReusedId { .. })
    ));
    let retried = t
        .log
        .append("a", ExpectedVersion::Any, batch)
        .await
        .unwrap();
    assert!(retried.deduplicated);
    assert_eq!(checked_log(t.log.as_ref()).await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_retries_of_one_batch_write_it_once() {
    let t = TestLog::new();
    for round in 0..20 {
        let batch = events(3);
        let head = t.log.head();
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (log, batch) = (t.log.clone(), batch.clone());
                tokio::spawn(async move { log.append("shared", ExpectedVersion::Any, batch).await })
            })
            .collect();
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.unwrap().unwrap());
        }
        assert_eq!(
            outcomes.iter().filter(|o| !o.deduplicated).count(),
            1,
            "round {round}: {outcomes:?}"
        );
        let written = outcomes.iter().find(|o| !o.deduplicated).copied().unwrap();
        assert!(outcomes.iter().all(|o| AppendOutcome {
            deduplicated: false,
            ..*o
        } == written));
        assert_eq!(
            (written.first_position, written.last_position),
            (head, head + 2)
        );
        assert_eq!(t.log.head(), head + 3);
    }
    assert_eq!(checked_log(t.log.as_ref()).await.len(), 60);
}
