//! The engine under paused tokio time, over an in-memory log whose flush takes a set time: many
//! sessions failing over together, heartbeats queued behind a flush, a failed append, and slots
//! leaving when their session ends.

use std::{sync::atomic::Ordering, time::Duration};

use podium_core::FailoverPolicy;
use podium_eventlog::{Filter, NewEvent, RequestId};
use podium_proto::v1 as pb;
use prost::Name;

use super::*;
use crate::{
    codec::decode,
    domain::{Figures, SourceKind},
    model::status_model_event_types,
};
use memory::{Arrival, MemoryLog};

const CONFERENCE: &str = "conf-uplink";
const GRACE: Millis = 10_000;

fn session(i: usize) -> String {
    format!("ses-{i}")
}

fn speaker(i: usize) -> String {
    format!("spk-{i}")
}

/// A new command's request id.
fn fresh() -> RequestId {
    Uuid::now_v7().into()
}

/// A moderator's new command to session `i` through `engine` (one node's).
async fn moderate(engine: &EngineHandle, i: usize, command: Command) -> Result<u64, StatusError> {
    engine
        .command(CONFERENCE, &session(i), command, fresh(), "moderator")
        .await
}

/// Session `i` on the agenda, in a room of its own with one speaker.
fn scheduled(i: usize) -> NewEvent {
    NewEvent::new(
        Uuid::new_v4(),
        &pb::SessionScheduled {
            conference_id: CONFERENCE.into(),
            session_id: session(i),
            room_id: format!("room-{i}"),
            speaker_ids: vec![speaker(i)],
            ..Default::default()
        },
    )
}

fn failover_after() -> Millis {
    Millis::from(FailoverPolicy::default().failover_after_ms)
}

/// A conference of `sessions` sessions, each in a room of its own with one speaker and a
/// recording, and an engine over it.
struct Venue {
    log: Arc<MemoryLog>,
    engine: EngineHandle,
    model: Projector<StatusModel>,
    clock: Clock,
    sessions: usize,
}

impl Venue {
    async fn new(sessions: usize, flush: Duration) -> Self {
        Self::with_lease(sessions, flush, None).await
    }

    /// The venue, with an engine that runs while `lease` says its node holds it.
    async fn with_lease(
        sessions: usize,
        flush: Duration,
        lease: Option<Arc<dyn podium_eventlog::Lease>>,
    ) -> Self {
        let log = MemoryLog::new(flush);
        let agenda = format!("conference/{CONFERENCE}/agenda");
        let mut seed = vec![NewEvent::new(
            Uuid::new_v4(),
            &pb::ConferenceCreated {
                conference_id: CONFERENCE.into(),
                default_language: "en".into(),
                time_zone: "UTC".into(),
                ..Default::default()
            },
        )];
        for i in 0..sessions {
            seed.push(scheduled(i));
            seed.push(NewEvent::new(
                Uuid::new_v4(),
                &pb::RecordingRegistered {
                    recording: Some(pb::Recording {
                        id: format!("rec-{i}"),
                        conference_id: CONFERENCE.into(),
                        session_id: session(i),
                        duration_ms: 3_600_000,
                        ..Default::default()
                    }),
                },
            ));
        }
        let seeded = log.store(&agenda, ExpectedVersion::NoStream, seed);
        assert!(seeded.is_ok(), "seeded: {seeded:?}");
        let dyn_log: Arc<dyn EventLog> = log.clone();
        let filter = Filter {
            stream_prefix: None,
            event_types: status_model_event_types(),
        };
        let model = Projector::start("status", dyn_log.clone(), StatusModel::default(), filter)
            .await
            .expect("model starts");
        let clock = Clock::new();
        let engine = Engine::spawn(dyn_log, model.clone(), clock, GRACE, lease)
            .await
            .expect("engine starts");
        Self {
            log,
            engine,
            model,
            clock,
            sessions,
        }
    }

    async fn send(
        &self,
        i: usize,
        command: Command,
        request: RequestId,
    ) -> Result<u64, StatusError> {
        self.engine
            .command(CONFERENCE, &session(i), command, request, "moderator")
            .await
    }

    /// Connects every speaker and starts every session, all at once, so that no speaker is
    /// silent for long before the heartbeats begin.
    async fn start_all(&self) {
        for i in 0..self.sessions {
            self.engine
                .connected(CONFERENCE, &session(i), &speaker(i), 1)
                .await
                .expect("engine runs");
        }
        let started = futures::future::join_all(
            (0..self.sessions)
                .map(|i| async move { moderate(&self.engine, i, Command::Start).await }),
        )
        .await;
        assert!(started.iter().all(Result::is_ok), "{started:?}");
    }

    async fn heartbeat(&self, i: usize) {
        let figures = Figures {
            round_trip_ms: 40,
            loss_percent: 0.0,
            upstream_kbps: 2500,
        };
        self.engine
            .heartbeat(CONFERENCE, &session(i), &speaker(i), 1, figures)
            .await
            .expect("engine runs");
    }

    /// Every session's speakers heartbeat every 250 ms for `beats` beats; returns the time of
    /// the last one.
    async fn heartbeats(&self, beats: usize) -> Millis {
        let mut last = self.clock.now();
        for beat in 0..beats {
            if beat > 0 {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            last = self.clock.now();
            for i in 0..self.sessions {
                self.heartbeat(i).await;
            }
        }
        last
    }

    /// Each switch of session `i`'s source: when, and to what.
    fn switches(&self, i: usize) -> Vec<(Millis, SourceKind, Cause)> {
        self.log
            .stream(&status_stream(CONFERENCE, &session(i)))
            .iter()
            .filter_map(|e| match decode(e) {
                Ok(Some((_, _, StatusEvent::Switched { to, cause, at, .. }))) => {
                    Some((at, to.kind, cause))
                }
                _ => None,
            })
            .collect()
    }

    fn switch_arrivals(&self) -> Vec<Arrival> {
        self.log
            .arrivals()
            .into_iter()
            .filter(|a| a.event_types.contains(&pb::SourceSwitched::full_name()))
            .collect()
    }
}

use crate::domain::Cause;

#[tokio::test(start_paused = true)]
async fn fifty_sessions_whose_heartbeats_stop_together_fail_over_together_at_failover_after() {
    let venue = Venue::new(50, Duration::from_millis(30)).await;
    venue.start_all().await;
    let last = venue.heartbeats(8).await;
    // The venue's uplink fails: no session hears from its speaker again.
    tokio::time::sleep(Duration::from_millis(failover_after() + 2_000)).await;

    let due = last + failover_after();
    for i in 0..50 {
        assert_eq!(
            venue.switches(i),
            vec![(due, SourceKind::Recording, Cause::HeartbeatTimeout)],
            "session {i}"
        );
    }
    // Every failover reached the log at the same instant, so one flush stored them all: none
    // waited for another's.
    let arrivals = venue.switch_arrivals();
    assert_eq!(arrivals.len(), 50);
    let due_at = venue.clock.instant(due);
    assert!(
        arrivals.iter().all(|a| a.at == due_at),
        "{:?}",
        arrivals.iter().map(|a| a.at - due_at).collect::<Vec<_>>()
    );
}

#[tokio::test(start_paused = true)]
async fn a_heartbeat_queued_while_an_append_is_in_flight_is_timed_from_its_arrival() {
    let venue = Venue::new(2, Duration::from_millis(400)).await;
    venue.start_all().await;
    venue.heartbeats(4).await;
    // Session 0's moderator pins: its append takes 400 ms to flush.
    let engine = venue.engine.clone();
    let pin = tokio::spawn(async move { moderate(&engine, 0, Command::Pin(true)).await });
    tokio::time::sleep(Duration::from_millis(10)).await;
    // Session 1's speaker sends one last heartbeat while the flush goes on.
    let arrived = venue.clock.now();
    venue.heartbeat(1).await;
    assert!(matches!(pin.await, Ok(Ok(_))));
    tokio::time::sleep(Duration::from_millis(failover_after() + 2_000)).await;

    assert_eq!(
        venue.switches(1),
        vec![(
            arrived + failover_after(),
            SourceKind::Recording,
            Cause::HeartbeatTimeout
        )]
    );
    // Pinned: session 0 stays with its speaker although it is silent too.
    assert_eq!(venue.switches(0), Vec::new());
}

#[tokio::test(start_paused = true)]
async fn decisions_of_one_session_are_pipelined_and_each_command_answered_once_stored() {
    let venue = Venue::new(1, Duration::from_millis(200)).await;
    venue.start_all().await;
    let sent = venue.clock.now();
    let (pin, unpin, again) = tokio::join!(
        venue.send(0, Command::Pin(true), fresh()),
        venue.send(0, Command::Pin(false), fresh()),
        // Decides nothing, so it is answered after the appends ahead of it.
        venue.send(0, Command::Pin(false), fresh()),
    );
    let (pin, unpin, again) = (
        pin.expect("pinned"),
        unpin.expect("unpinned"),
        again.expect("answered"),
    );
    assert!(pin < unpin && unpin <= again, "{pin} {unpin} {again}");
    // Both appends were in flight together: one flush, not two.
    assert_eq!(venue.clock.now(), sent + 200);
    let pins: Vec<_> = venue
        .log
        .stream(&status_stream(CONFERENCE, &session(0)))
        .iter()
        .filter_map(|e| match decode(e) {
            Ok(Some((_, _, StatusEvent::Pinned { pinned, .. }))) => Some(pinned),
            _ => None,
        })
        .collect();
    assert_eq!(pins, vec![true, false]);
}

#[tokio::test(start_paused = true)]
async fn a_failed_append_leaves_no_decision_behind_and_gives_the_reconnect_grace() {
    let venue = Venue::new(1, Duration::from_millis(20)).await;
    venue.start_all().await;
    venue.heartbeats(4).await;
    venue.log.failures.store(1, Ordering::SeqCst);
    let refused = venue.send(0, Command::Pin(true), fresh()).await;
    assert!(matches!(refused, Err(StatusError::Log(_))), "{refused:?}");
    let reloaded = venue.clock.now();
    // The speaker goes silent. The machine was read again from the log (not pinned), and
    // waits for the grace, as after a restart, before its rules fire.
    tokio::time::sleep(Duration::from_millis(GRACE + 2_000)).await;
    assert_eq!(
        venue.switches(0),
        vec![(
            reloaded + GRACE,
            SourceKind::Recording,
            Cause::HeartbeatTimeout
        )]
    );
    // The pin that was not stored can be made again.
    venue
        .send(0, Command::Pin(true), fresh())
        .await
        .expect("pinned");
    let pinned = venue
        .log
        .stream(&status_stream(CONFERENCE, &session(0)))
        .iter()
        .filter(|e| matches!(decode(e), Ok(Some((_, _, StatusEvent::Pinned { .. })))))
        .count();
    assert_eq!(pinned, 1);
}

#[tokio::test(start_paused = true)]
async fn a_session_s_slot_leaves_once_it_has_ended_and_its_agent_has_gone() {
    let venue = Venue::new(3, Duration::from_millis(20)).await;
    venue.start_all().await;
    venue.heartbeats(2).await;
    assert_eq!(venue.engine.slots().await.ok(), Some(3));

    venue.send(0, Command::End, fresh()).await.expect("ended");
    // Its agent is still connected: the link's fate is still followed.
    assert_eq!(venue.engine.slots().await.ok(), Some(3));
    venue
        .engine
        .closed(CONFERENCE, &session(0), &speaker(0), 1)
        .await
        .expect("engine runs");
    // Once the link is known lost nothing is left to decide.
    tokio::time::sleep(Duration::from_millis(failover_after() + 100)).await;
    assert_eq!(venue.engine.slots().await.ok(), Some(2));

    // Heartbeats of an unknown session create nothing.
    venue
        .engine
        .heartbeat(CONFERENCE, "ses-nowhere", "spk-0", 1, Figures::default())
        .await
        .expect("engine runs");
    assert_eq!(venue.engine.slots().await.ok(), Some(2));
    // The ended session still refuses commands, from its stream.
    let again = venue.send(0, Command::Start, fresh()).await;
    assert!(
        matches!(again, Err(StatusError::FailedPrecondition(_))),
        "{again:?}"
    );
}

/// Sessions 1 and 2 added to the agenda, one append each, while the log holds back its
/// announcements: stored, but not yet read by the engine's model, as another node's writes are
/// before this node's tail delivers them.
fn schedule_unannounced(venue: &Venue) {
    venue.log.hold();
    for i in 1..=2 {
        let stored = venue.log.store(
            &format!("conference/{CONFERENCE}/agenda"),
            ExpectedVersion::Any,
            vec![scheduled(i)],
        );
        assert!(stored.is_ok(), "{stored:?}");
    }
}

/// On a cluster, a session made through another node a moment before may not have reached this
/// node's read model when a start for it does: the start waits for the model to read the log
/// as far as it is stored, instead of being answered NOT_FOUND, and a pin sent while it waits
/// is decided after it, even once the model knows the session.
#[tokio::test(start_paused = true)]
async fn a_start_for_a_session_this_node_has_not_read_yet_waits_for_it() {
    let venue = Venue::new(1, Duration::from_millis(20)).await;
    schedule_unannounced(&venue);
    let engine = venue.engine.clone();
    let start = tokio::spawn(async move { moderate(&engine, 1, Command::Start).await });
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !start.is_finished(),
        "answered before the model read the session"
    );

    // The model reads session 1, not yet all the start waits for (session 2).
    venue.log.release_one();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        venue
            .model
            .read()
            .context(CONFERENCE, &session(1))
            .is_some()
    );
    let engine = venue.engine.clone();
    let pin = tokio::spawn(async move { moderate(&engine, 1, Command::Pin(true)).await });
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!start.is_finished(), "answered before the model read all");

    venue.log.release();
    let started = start.await.expect("the start's task");
    assert!(started.is_ok(), "{started:?}");
    let pinned = pin.await.expect("the pin's task");
    assert!(pinned.is_ok(), "{pinned:?}");
    let stream = venue.log.stream(&status_stream(CONFERENCE, &session(1)));
    let decided: Vec<&str> = stream
        .iter()
        .filter_map(|e| match decode(e) {
            Ok(Some((_, _, StatusEvent::WentLive { .. }))) => Some("went live"),
            Ok(Some((_, _, StatusEvent::Pinned { .. }))) => Some("pinned"),
            _ => None,
        })
        .collect();
    assert_eq!(decided, ["went live", "pinned"]);
    // A session the log does not hold is still not found, once the model has read it all.
    let nowhere = venue
        .engine
        .command(
            CONFERENCE,
            "ses-nowhere",
            Command::Start,
            fresh(),
            "moderator",
        )
        .await;
    assert!(
        matches!(nowhere, Err(StatusError::NotFound(_))),
        "{nowhere:?}"
    );
}

/// A command whose session this node's model does not read in time is answered UNAVAILABLE
/// (nothing was done) before a forwarding node stops waiting; sent again once the model has
/// it, it is carried out.
#[tokio::test(start_paused = true)]
async fn a_command_whose_session_is_not_read_in_time_is_not_done_and_can_be_sent_again() {
    let venue = Venue::new(1, Duration::from_millis(20)).await;
    schedule_unannounced(&venue);
    let request = fresh();
    let asked = tokio::time::Instant::now();
    let refused = venue.send(1, Command::Start, request).await;
    assert!(
        matches!(&refused, Err(StatusError::Unavailable(m)) if m.contains("nothing was done")),
        "{refused:?}"
    );
    assert!(asked.elapsed() < podium_eventlog::lease::ASK_WAIT);
    let stream = venue.log.stream(&status_stream(CONFERENCE, &session(1)));
    assert!(stream.is_empty(), "{stream:?}");

    venue.log.release();
    let started = venue.send(1, Command::Start, request).await;
    assert!(started.is_ok(), "{started:?}");
}

#[tokio::test(start_paused = true)]
async fn watchers_of_a_conference_share_one_publisher_that_leaves_with_the_last() {
    use crate::publisher::StatusPublishers;

    let venue = Venue::new(3, Duration::from_millis(20)).await;
    let publishers = StatusPublishers::new(venue.model.clone());
    assert!(
        publishers.subscribe("no-such-conference").is_err(),
        "an unknown conference has no publisher"
    );
    assert_eq!(publishers.len(), 0);
    let mut watchers: Vec<_> = (0..20)
        .map(|_| publishers.subscribe(CONFERENCE).expect("conference exists"))
        .collect();
    assert_eq!(publishers.len(), 1);
    let before = watchers[0].borrow_and_update().position;
    venue.start_all().await;
    // Every watcher sees every session live, each with the position after its change, from the
    // one shared value.
    for watcher in &mut watchers {
        let published = watcher
            .wait_for(|p| {
                p.sessions
                    .values()
                    .filter(|e| e.status.state == pb::SessionState::Live as i32)
                    .count()
                    == 3
            })
            .await
            .expect("publisher runs");
        let changes = published.since("", None, before);
        assert_eq!(changes.len(), 3, "{changes:?}");
        assert!(changes.windows(2).all(|w| w[0].0 < w[1].0));
        assert!(
            changes
                .iter()
                .all(|(p, _)| *p > before && *p <= published.position)
        );
        let room: Vec<_> = published.since("room-1", None, before);
        assert_eq!(room.len(), 1);
        assert_eq!(room[0].1.session_id, session(1));
    }
    // The status is built once and shared.
    let first = watchers[0].borrow().sessions[&session(0)].status.clone();
    let last = watchers[19].borrow().sessions[&session(0)].status.clone();
    assert!(Arc::ptr_eq(&first, &last));
    drop((first, last));
    watchers.truncate(1);
    tokio::task::yield_now().await;
    assert_eq!(publishers.len(), 1, "one watcher keeps it");
    drop(watchers);
    for _ in 0..100 {
        if publishers.is_empty() {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(publishers.len(), 0, "gone with the last watcher");
    // A new watcher starts a new one.
    let again = publishers.subscribe(CONFERENCE).expect("conference exists");
    assert_eq!(publishers.len(), 1);
    drop(again);
}

mod lease;
mod memory;
mod retries;
