//! Moderators' commands sent again with the same request id: answered with the first outcome,
//! carried out once, whether the first is stored, in flight, forgotten by a slot that left, or
//! failed.

use super::*;
use crate::domain::Target;

impl Venue {
    /// How many events of session `i`'s status stream are of the kind `pick` picks.
    fn count(&self, i: usize, pick: impl Fn(&StatusEvent) -> bool) -> usize {
        self.log
            .stream(&status_stream(CONFERENCE, &session(i)))
            .iter()
            .filter(|e| matches!(decode(e), Ok(Some((_, _, event))) if pick(&event)))
            .count()
    }
}

fn went_live(e: &StatusEvent) -> bool {
    matches!(e, StatusEvent::WentLive { .. })
}

#[tokio::test(start_paused = true)]
async fn a_command_sent_again_is_answered_with_its_first_outcome_and_carried_out_once() {
    let venue = Venue::new(1, Duration::from_millis(20)).await;
    venue
        .engine
        .connected(CONFERENCE, &session(0), &speaker(0), 1)
        .await
        .expect("engine runs");
    let start = fresh();
    let first = venue.send(0, Command::Start, start).await.expect("started");
    // The moderator heard nothing and sends it again: the session is live, not "already live".
    let again = venue.send(0, Command::Start, start).await;
    assert_eq!(again.ok(), Some(first));
    assert_eq!(venue.count(0, went_live), 1);
    // A new start is a new command, refused.
    let other = venue.send(0, Command::Start, fresh()).await;
    assert!(
        matches!(other, Err(StatusError::FailedPrecondition(_))),
        "{other:?}"
    );

    // A switch sent three times switches once; a new one switches again.
    let slate = fresh();
    let switched = venue
        .send(0, Command::Switch(Target::Slate), slate)
        .await
        .expect("switched");
    for _ in 0..2 {
        let again = venue.send(0, Command::Switch(Target::Slate), slate).await;
        assert_eq!(again.ok(), Some(switched));
    }
    let moderator_switches = |e: &StatusEvent| {
        matches!(
            e,
            StatusEvent::Switched {
                cause: Cause::Moderator,
                ..
            }
        )
    };
    assert_eq!(venue.count(0, moderator_switches), 1);
    venue
        .send(0, Command::Switch(Target::Speaker(String::new())), fresh())
        .await
        .expect("back to the speaker");
    assert_eq!(venue.count(0, moderator_switches), 2);
    // The first switch sent yet again is still only answered: the speaker stays on air.
    assert_eq!(
        venue
            .send(0, Command::Switch(Target::Slate), slate)
            .await
            .ok(),
        Some(switched)
    );
    assert_eq!(venue.count(0, moderator_switches), 2);
}

#[tokio::test(start_paused = true)]
async fn a_retry_of_a_command_whose_append_is_in_flight_waits_for_its_answer() {
    let venue = Venue::new(1, Duration::from_millis(300)).await;
    let start = fresh();
    let (first, again) = tokio::join!(
        venue.send(0, Command::Start, start),
        venue.send(0, Command::Start, start)
    );
    let first = first.expect("started");
    assert_eq!(again.ok(), Some(first));
    assert_eq!(venue.count(0, went_live), 1);
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_the_session_s_slot_left_is_known_from_its_stream() {
    let venue = Venue::new(1, Duration::from_millis(20)).await;
    venue
        .send(0, Command::Start, fresh())
        .await
        .expect("started");
    let end = fresh();
    let ended = venue.send(0, Command::End, end).await.expect("ended");
    // Ended with no agent: nothing is left to decide, and the slot leaves with what it knew.
    assert_eq!(venue.engine.slots().await.ok(), Some(0));
    let again = venue.send(0, Command::End, end).await;
    assert_eq!(again.ok(), Some(ended));
    let ends = venue.count(0, |e| matches!(e, StatusEvent::Ended { .. }));
    assert_eq!(ends, 1);
    // The stream also keeps its events under the command's request id.
    let stored = venue.log.stream(&status_stream(CONFERENCE, &session(0)));
    assert!(
        stored
            .iter()
            .any(|e| e.id == end.uuid() && e.position == ended)
    );
    // A new end of an ended session is still refused.
    let other = venue.send(0, Command::End, fresh()).await;
    assert!(
        matches!(other, Err(StatusError::FailedPrecondition(_))),
        "{other:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_command_whose_append_failed_is_carried_out_when_sent_again() {
    let venue = Venue::new(1, Duration::from_millis(20)).await;
    venue.log.failures.store(1, Ordering::SeqCst);
    let start = fresh();
    let first = venue.send(0, Command::Start, start).await;
    assert!(first.is_err(), "{first:?}");
    assert_eq!(venue.count(0, went_live), 0);
    venue.send(0, Command::Start, start).await.expect("started");
    assert_eq!(venue.count(0, went_live), 1);
}

fn pinned(e: &StatusEvent) -> bool {
    matches!(e, StatusEvent::Pinned { .. })
}

#[tokio::test(start_paused = true)]
async fn a_command_older_than_those_remembered_is_answered_from_the_log_not_carried_out() {
    let venue = Venue::new(1, Duration::from_millis(20)).await;
    venue.start_all().await;
    let pin = fresh();
    let first = venue
        .send(0, Command::Pin(true), pin)
        .await
        .expect("pinned");
    // More commands than a session remembers (a few, in tests), ending unpinned.
    for i in 0..=commands::REMEMBERED {
        let pinned = i % 2 == 1;
        venue
            .send(0, Command::Pin(pinned), fresh())
            .await
            .expect("pinned or unpinned");
    }
    assert_eq!(venue.count(0, pinned), commands::REMEMBERED + 2);
    // The first pin, sent yet again, is decided again; the log finds its id and answers with
    // where it was stored, and the engine reads the session again: still unpinned.
    let again = venue.send(0, Command::Pin(true), pin).await;
    assert_eq!(again.ok(), Some(first));
    assert_eq!(venue.count(0, pinned), commands::REMEMBERED + 2);
    let unpin = venue.send(0, Command::Pin(false), fresh()).await;
    assert!(unpin.is_ok(), "{unpin:?}");
    assert_eq!(
        venue.count(0, pinned),
        commands::REMEMBERED + 2,
        "the engine knew the session was unpinned: unpinning changed nothing"
    );
}

#[tokio::test(start_paused = true)]
async fn an_append_the_log_reports_stored_where_it_was_to_go_is_not_read_again() {
    let venue = Venue::new(1, Duration::from_millis(20)).await;
    venue.start_all().await;
    let reads = venue.log.reads.load(Ordering::SeqCst);
    // Its first try landed inside the log, which reports the second as a duplicate.
    venue.log.echoes.store(1, Ordering::SeqCst);
    venue
        .send(0, Command::Pin(true), fresh())
        .await
        .expect("pinned");
    venue
        .send(0, Command::Pin(false), fresh())
        .await
        .expect("unpinned");
    assert_eq!(venue.log.reads.load(Ordering::SeqCst), reads);
    assert_eq!(venue.count(0, pinned), 2);
}

#[tokio::test(start_paused = true)]
async fn a_request_id_of_another_session_is_refused_without_a_reconnect_grace() {
    let venue = Venue::new(2, Duration::from_millis(20)).await;
    venue.start_all().await;
    let reused = fresh();
    venue
        .send(1, Command::Pin(true), reused)
        .await
        .expect("session 1 pinned");
    venue.heartbeats(4).await;
    let refused = venue.send(0, Command::Pin(true), reused).await;
    assert!(
        matches!(
            refused,
            Err(StatusError::Log(EventLogError::ReusedId { .. }))
        ),
        "{refused:?}"
    );
    // Session 0's speaker then falls silent: it falls back failover_after after its last
    // heartbeat, not a reconnect grace later.
    let last = venue.clock.now();
    venue.heartbeat(0).await;
    tokio::time::sleep(Duration::from_millis(GRACE + failover_after())).await;
    assert_eq!(
        venue.switches(0),
        vec![(
            last + failover_after(),
            SourceKind::Recording,
            Cause::HeartbeatTimeout
        )]
    );
}

#[tokio::test(start_paused = true)]
async fn a_command_that_changed_nothing_changes_nothing_when_sent_again_later() {
    let venue = Venue::new(1, Duration::from_millis(20)).await;
    venue.start_all().await;
    venue
        .send(0, Command::Pin(true), fresh())
        .await
        .expect("pinned");
    // A second moderator pins too: nothing changes.
    let also = fresh();
    venue
        .send(0, Command::Pin(true), also)
        .await
        .expect("already pinned");
    venue
        .send(0, Command::Pin(false), fresh())
        .await
        .expect("unpinned");
    // The second moderator's pin arrives again: it was answered, and is not carried out now.
    venue
        .send(0, Command::Pin(true), also)
        .await
        .expect("answered");
    assert_eq!(venue.count(0, pinned), 2);
}
