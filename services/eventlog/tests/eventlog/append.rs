//! Appends and reads: versions and positions, expected-version semantics and conflicts, atomic
//! batches, validation, reopening and closing.

use podium_eventlog::{
    AppendOutcome, EventLog, EventLogError, ExpectedVersion, NewEvent, SledEventLog, SledOptions,
    read_whole_stream,
};
use uuid::Uuid;

use crate::helpers::{
    TYPE_A, TestLog, ballot, check_ballot, checked_log, event, events, read_everything, same_event,
};

fn outcome(
    first_version: u64,
    last_version: u64,
    first_position: u64,
    last_position: u64,
) -> AppendOutcome {
    AppendOutcome {
        first_version,
        last_version,
        first_position,
        last_position,
        deduplicated: false,
    }
}

fn assert_conflict(
    result: podium_eventlog::Result<AppendOutcome>,
    stream: &str,
    expected: ExpectedVersion,
    actual: Option<u64>,
) {
    match result {
        Err(EventLogError::Conflict {
            stream: s,
            expected: e,
            actual: a,
        }) => {
            assert_eq!((s.as_str(), e, a), (stream, expected, actual));
        }
        other => panic!("expected a conflict on {stream} with actual {actual:?}, got {other:?}"),
    }
}

#[tokio::test]
async fn appends_get_stream_versions_and_dense_positions() {
    let t = TestLog::new();
    let log = &t.log;
    assert_eq!(log.head(), 0);

    let a = events(3);
    assert_eq!(
        log.append("room/a", ExpectedVersion::NoStream, a.clone())
            .await
            .unwrap(),
        outcome(0, 2, 0, 2)
    );
    let b = events(2);
    assert_eq!(
        log.append("room/b", ExpectedVersion::Any, b.clone())
            .await
            .unwrap(),
        outcome(0, 1, 3, 4)
    );
    let a2 = events(1);
    assert_eq!(
        log.append("room/a", ExpectedVersion::Exact(2), a2.clone())
            .await
            .unwrap(),
        outcome(3, 3, 5, 5)
    );
    assert_eq!(log.head(), 6);

    let all = checked_log(log.as_ref()).await;
    let sent: Vec<&NewEvent> = a.iter().chain(&b).chain(&a2).collect();
    assert!(all.iter().zip(&sent).all(|(r, s)| same_event(r, s)));
    let streams: Vec<&str> = all.iter().map(|e| e.stream.as_str()).collect();
    assert_eq!(
        streams,
        ["room/a", "room/a", "room/a", "room/b", "room/b", "room/a"]
    );
    assert_eq!(
        all.iter().map(|e| e.stream_version).collect::<Vec<_>>(),
        [0, 1, 2, 0, 1, 3]
    );
}

#[tokio::test]
async fn reads_honour_start_and_limit() {
    let t = TestLog::new();
    let log = &t.log;
    log.append("s", ExpectedVersion::Any, events(5))
        .await
        .unwrap();
    log.append("t", ExpectedVersion::Any, events(5))
        .await
        .unwrap();
    log.append("s", ExpectedVersion::Any, events(5))
        .await
        .unwrap();

    let page = log.read_all(3, 4).await.unwrap();
    assert_eq!(
        page.iter().map(|e| e.position).collect::<Vec<_>>(),
        [3, 4, 5, 6]
    );
    assert!(log.read_all(3, 0).await.unwrap().is_empty());
    assert_eq!(log.read_all(13, 100).await.unwrap().len(), 2);
    assert!(log.read_all(15, 100).await.unwrap().is_empty());
    assert!(log.read_all(u64::MAX, usize::MAX).await.unwrap().is_empty());
    assert_eq!(log.read_all(0, usize::MAX).await.unwrap().len(), 15);

    let s = log.read_stream("s", 3, 4).await.unwrap();
    assert_eq!(
        s.iter()
            .map(|e| (e.stream_version, e.position))
            .collect::<Vec<_>>(),
        [(3, 3), (4, 4), (5, 10), (6, 11)]
    );
    assert!(log.read_stream("s", 3, 0).await.unwrap().is_empty());
    assert!(log.read_stream("s", 10, 10).await.unwrap().is_empty());
    assert!(log.read_stream("nobody", 0, 10).await.unwrap().is_empty());
    // A stream whose name extends another's is a different stream.
    assert!(log.read_stream("s/", 0, 10).await.unwrap().is_empty());
    assert!(log.read_stream("", 0, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn read_whole_stream_crosses_page_boundaries() {
    let t = TestLog::new();
    // Exactly two pages of the helper's 1024, the edge where a short page ends the loop.
    for _ in 0..2 {
        t.log
            .append("long", ExpectedVersion::Any, events(1024))
            .await
            .unwrap();
    }
    t.log
        .append("other", ExpectedVersion::Any, events(1))
        .await
        .unwrap();
    let long = read_whole_stream(t.log.as_ref(), "long").await.unwrap();
    assert_eq!(long.len(), 2048);
    assert!(
        long.iter()
            .enumerate()
            .all(|(i, e)| e.stream_version == i as u64)
    );
}

#[tokio::test]
async fn no_stream_conflicts_once_the_stream_exists() {
    let t = TestLog::new();
    t.log
        .append("poll/1", ExpectedVersion::NoStream, events(2))
        .await
        .unwrap();
    let result = t
        .log
        .append("poll/1", ExpectedVersion::NoStream, events(1))
        .await;
    assert_conflict(result, "poll/1", ExpectedVersion::NoStream, Some(1));
    assert_eq!(t.log.head(), 2);
}

#[tokio::test]
async fn exact_conflicts_report_the_actual_version() {
    let t = TestLog::new();
    let log = &t.log;
    assert_conflict(
        log.append("q", ExpectedVersion::Exact(0), events(1)).await,
        "q",
        ExpectedVersion::Exact(0),
        None,
    );
    log.append("q", ExpectedVersion::NoStream, events(3))
        .await
        .unwrap();
    for wrong in [0, 1, 3, 7, u64::MAX] {
        let result = log
            .append("q", ExpectedVersion::Exact(wrong), events(1))
            .await;
        assert_conflict(result, "q", ExpectedVersion::Exact(wrong), Some(2));
    }
    assert_eq!(
        log.append("q", ExpectedVersion::Exact(2), events(2))
            .await
            .unwrap(),
        outcome(3, 4, 3, 4)
    );
    assert_conflict(
        log.append("q", ExpectedVersion::Exact(2), events(1)).await,
        "q",
        ExpectedVersion::Exact(2),
        Some(4),
    );
    assert_eq!(log.head(), 5);
}

#[tokio::test]
async fn any_appends_to_new_and_existing_streams() {
    let t = TestLog::new();
    assert_eq!(
        t.log
            .append("x", ExpectedVersion::Any, events(1))
            .await
            .unwrap(),
        outcome(0, 0, 0, 0)
    );
    assert_eq!(
        t.log
            .append("x", ExpectedVersion::Any, events(2))
            .await
            .unwrap(),
        outcome(1, 2, 1, 2)
    );
}

#[tokio::test]
async fn conflict_messages_help_the_caller() {
    let t = TestLog::new();
    t.log
        .append("room/7", ExpectedVersion::Any, events(2))
        .await
        .unwrap();
    let error = t
        .log
        .append("room/7", ExpectedVersion::Exact(0), events(1))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "wrong expected version for stream room/7: expected version 0, stream is at version 1"
    );
    let error = t
        .log
        .append("room/8", ExpectedVersion::Exact(0), events(1))
        .await
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "wrong expected version for stream room/8: expected version 0, stream does not exist"
    );
}

#[tokio::test]
async fn a_failed_batch_writes_nothing() {
    let t = TestLog::new();
    let log = &t.log;
    let first = events(2);
    log.append("s", ExpectedVersion::Any, first.clone())
        .await
        .unwrap();
    let before = read_everything(log.as_ref()).await;

    // One bad event in the middle rejects the whole batch.
    let mut batch = events(3);
    batch[1].event_type.clear();
    assert!(matches!(
        log.append("s", ExpectedVersion::Any, batch).await,
        Err(EventLogError::InvalidAppend(_))
    ));
    // A conflict rejects the whole batch.
    assert!(
        log.append("s", ExpectedVersion::NoStream, events(3))
            .await
            .is_err()
    );
    // So does a batch that repeats some, not all, stored ids.
    let mut partial = events(2);
    partial.push(first[1].clone());
    assert!(matches!(
        log.append("s", ExpectedVersion::Any, partial.clone()).await,
        Err(EventLogError::PartialDuplicate { stream }) if stream == "s"
    ));

    assert_eq!(log.head(), 2);
    assert_eq!(read_everything(log.as_ref()).await, before);
    // The new ids of the rejected batch were not recorded: they append normally afterwards.
    let fresh: Vec<NewEvent> = partial[..2].to_vec();
    assert_eq!(
        log.append("s", ExpectedVersion::Exact(1), fresh)
            .await
            .unwrap(),
        outcome(2, 3, 2, 3)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_batches_are_never_interleaved() {
    let t = TestLog::new();
    let mut tasks = Vec::new();
    for task in 0..8 {
        let log = t.log.clone();
        tasks.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for _ in 0..10 {
                let batch = events(4);
                let stream = if task % 2 == 0 { "shared" } else { "other" };
                let o = log
                    .append(stream, ExpectedVersion::Any, batch.clone())
                    .await
                    .unwrap();
                outcomes.push((o, batch));
            }
            outcomes
        }));
    }
    let mut acknowledged = Vec::new();
    for task in tasks {
        acknowledged.extend(task.await.unwrap());
    }
    let all = checked_log(t.log.as_ref()).await;
    assert_eq!(all.len(), 8 * 10 * 4);
    for (o, batch) in acknowledged {
        assert_eq!(
            (
                o.last_position - o.first_position,
                o.last_version - o.first_version
            ),
            (3, 3)
        );
        let stored = &all[o.first_position as usize..=o.last_position as usize];
        assert!(stored.iter().zip(&batch).all(|(r, s)| same_event(r, s)));
        assert!(
            stored
                .iter()
                .zip(o.first_version..)
                .all(|(r, v)| r.stream_version == v)
        );
    }
}

#[tokio::test]
async fn invalid_appends_are_rejected_before_writing() {
    let t = TestLog::new();
    let log = &t.log;
    let id = Uuid::new_v4();
    let twice = vec![
        NewEvent {
            id,
            event_type: TYPE_A.into(),
            payload: vec![1],
        },
        NewEvent {
            id,
            event_type: TYPE_A.into(),
            payload: vec![2],
        },
    ];
    let too_big = NewEvent {
        payload: vec![0; (1 << 20) + 1],
        ..event(TYPE_A)
    };
    let too_long = "x".repeat(257);
    let cases: Vec<(&str, Vec<NewEvent>)> = vec![
        ("s", Vec::new()),
        ("", events(1)),
        ("has space", events(1)),
        ("nul\0byte", events(1)),
        ("caf\u{e9}", events(1)),
        (&too_long, events(1)),
        ("s", events(1025)),
        ("s", twice),
        ("s", vec![too_big]),
    ];
    for (stream, batch) in cases {
        let result = log.append(stream, ExpectedVersion::Any, batch).await;
        assert!(
            matches!(result, Err(EventLogError::InvalidAppend(_))),
            "{stream:?} gave {result:?}"
        );
    }
    assert_eq!(log.head(), 0);
    // The limits themselves are fine.
    let longest = "conference/odc2024/".to_owned() + &"k".repeat(256 - 19);
    log.append(&longest, ExpectedVersion::NoStream, events(1024))
        .await
        .unwrap();
    log.append(
        "A-z_0.9:/",
        ExpectedVersion::NoStream,
        vec![NewEvent {
            payload: vec![0; 1 << 20],
            ..event(TYPE_A)
        }],
    )
    .await
    .unwrap();
    assert_eq!(log.head(), 1025);
}

#[tokio::test]
async fn data_and_head_survive_reopening() {
    let t = TestLog::new();
    for i in 0..5 {
        let batch: Vec<NewEvent> = (0..3).map(|_| ballot(Uuid::new_v4())).collect();
        t.log
            .append(&format!("poll/{}", i % 2), ExpectedVersion::Any, batch)
            .await
            .unwrap();
    }
    let before = checked_log(t.log.as_ref()).await;

    let t = t.reopen();
    assert_eq!(t.log.head(), 15);
    let after = checked_log(t.log.as_ref()).await;
    assert_eq!(
        after, before,
        "events changed across reopening, recorded_at included"
    );
    after.iter().for_each(check_ballot);

    // The stream heads are restored too: the next append continues both numberings.
    let o = t
        .log
        .append("poll/0", ExpectedVersion::Exact(8), events(1))
        .await
        .unwrap();
    assert_eq!(o, outcome(9, 9, 15, 15));
    assert_conflict(
        t.log
            .append("poll/1", ExpectedVersion::NoStream, events(1))
            .await,
        "poll/1",
        ExpectedVersion::NoStream,
        Some(5),
    );
}

#[tokio::test]
async fn a_closed_log_refuses_appends_and_still_reads() {
    let t = TestLog::new();
    t.log
        .append("s", ExpectedVersion::Any, events(2))
        .await
        .unwrap();
    t.log.close().unwrap();
    t.log.close().unwrap();
    assert!(matches!(
        t.log.append("s", ExpectedVersion::Any, events(1)).await,
        Err(EventLogError::Closed)
    ));
    assert_eq!(t.log.head(), 2);
    assert_eq!(t.log.read_all(0, 10).await.unwrap().len(), 2);
}

#[tokio::test]
async fn opening_a_file_instead_of_a_directory_fails_cleanly() {
    let t = TestLog::new();
    let file = t.dir.path().join("not-a-directory");
    std::fs::write(&file, b"x").unwrap();
    let result = SledEventLog::open(&file, SledOptions::default());
    assert!(
        matches!(result, Err(EventLogError::Storage(_))),
        "{result:?}"
    );
}
