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
