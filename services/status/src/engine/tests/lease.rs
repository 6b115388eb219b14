//! The engine on several nodes, under paused time: a new holder of the lease takes live
//! sessions over and times silence from then on, and an engine deposed while it was frozen is
//! refused by the log when it wakes and decides.
//!
//! The lease here is a [`Seat`] the test hands out and takes back by hand; the real one, on a
//! JetStream cluster, has its own tests in podium-eventlog, and the e2e tests run both together.

use async_trait::async_trait;
use bytes::Bytes;
use podium_eventlog::{Lease, Result as LogResult, Term};
use tokio::sync::watch;

use super::*;

/// A node's seat: held or not as the test says. A frozen node's seat still says it holds.
struct Seat {
    node: String,
    held: watch::Sender<Option<Term>>,
    /// The later terms the engine told it of, in order.
    outranked: std::sync::Mutex<Vec<u64>>,
    /// What the engine announced to every node, in order.
    announced: std::sync::Mutex<Vec<Bytes>>,
}

impl Seat {
    fn holding(node: &str, number: u64) -> Arc<Self> {
        let term = Term {
            node: node.into(),
            number,
        };
        Arc::new(Self {
            node: node.into(),
            held: watch::channel(Some(term)).0,
            outranked: std::sync::Mutex::default(),
            announced: std::sync::Mutex::default(),
        })
    }

    /// The node learns it lost the lease.
    fn lose(&self) {
        self.held.send_replace(None);
    }
}

#[async_trait]
impl Lease for Seat {
    fn node(&self) -> &str {
        &self.node
    }

    fn held(&self) -> watch::Receiver<Option<Term>> {
        self.held.subscribe()
    }

    fn valid(&self) -> bool {
        self.held.borrow().is_some()
    }

    fn holder(&self) -> Option<Term> {
        self.held.borrow().clone()
    }

    async fn tell(&self, _payload: Bytes) -> LogResult<()> {
        Err(EventLogError::Storage("no other node in this test".into()))
    }

    async fn ask(&self, _payload: Bytes) -> LogResult<Bytes> {
        Err(EventLogError::Storage("no other node in this test".into()))
    }

    fn deliveries(&self) -> Option<tokio::sync::mpsc::Receiver<podium_eventlog::Delivery>> {
        None
    }

    async fn announce(&self, payload: Bytes) -> LogResult<()> {
        self.announced.lock().expect("not poisoned").push(payload);
        Ok(())
    }

    fn announcements(&self) -> Option<tokio::sync::mpsc::Receiver<Bytes>> {
        None
    }

    fn outranked(&self, term: u64) {
        self.outranked.lock().expect("not poisoned").push(term);
    }
}

/// Another node's engine over the venue's log and model.
async fn engine_of(venue: &Venue, seat: Arc<Seat>) -> EngineHandle {
    let log: Arc<dyn EventLog> = venue.log.clone();
    Engine::spawn(log, venue.model.clone(), venue.clock, GRACE, Some(seat))
        .await
        .expect("engine starts")
}

fn figures() -> Figures {
    Figures {
        round_trip_ms: 40,
        loss_percent: 0.0,
        upstream_kbps: 2500,
    }
}

/// The terms of the `StatusEngineMoved` events of session `i`'s status stream.
fn moves(venue: &Venue, i: usize) -> Vec<u64> {
    venue
        .log
        .stream(&status_stream(CONFERENCE, &session(i)))
        .iter()
        .filter_map(term::moved_term)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn the_next_holder_takes_live_sessions_over_and_times_silence_from_then() {
    let a = Seat::holding("node-a", 1);
    let venue = Venue::with_lease(2, Duration::from_millis(5), Some(a.clone())).await;
    venue.start_all().await;
    venue.heartbeats(4).await;
    assert_eq!(
        moves(&venue, 0),
        vec![1],
        "node a fenced the session it loaded"
    );

    // Node a dies; its lease runs out; node b takes the next term.
    a.lose();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let took = venue.clock.now();
    let b = engine_of(&venue, Seat::holding("node-b", 2)).await;
    // Session 1's speaker is heard again, through whichever node its agent is connected to;
    // session 0's is silent from now on.
    for _ in 0..((failover_after() + 2_000) / 250) {
        b.heartbeat(CONFERENCE, &session(1), &speaker(1), 1, figures())
            .await
            .expect("engine runs");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    assert_eq!(moves(&venue, 0), vec![1, 2]);
    assert_eq!(moves(&venue, 1), vec![1, 2]);
    // A whole failover_after from the take-over, as if its speaker had been heard then; not
    // at a's deadline, and not at once for want of a heartbeat b never saw.
    assert_eq!(
        venue.switches(0),
        vec![(
            took + failover_after(),
            SourceKind::Recording,
            Cause::HeartbeatTimeout
        )]
    );
    assert_eq!(
        venue.switches(1),
        Vec::new(),
        "a speaker heard stays on air"
    );
    // Node a decided nothing once it knew it had lost the lease.
    assert_eq!(venue.engine.slots().await.expect("engine runs"), 0);
}

#[tokio::test(start_paused = true)]
async fn an_engine_deposed_while_frozen_is_refused_by_the_log_when_it_wakes() {
    let a = Seat::holding("node-a", 1);
    let venue = Venue::with_lease(1, Duration::from_millis(5), Some(a.clone())).await;
    venue.start_all().await;
    let last_heard_by_a = venue.heartbeats(4).await;

    // Node a is frozen (SIGSTOP) and hears nothing: its seat still says it holds term 1.
    // Node b takes term 2, and the speaker's heartbeats go to b.
    let b = engine_of(&venue, Seat::holding("node-b", 2)).await;
    for _ in 0..((failover_after() + 2_000) / 250) {
        b.heartbeat(CONFERENCE, &session(0), &speaker(0), 1, figures())
            .await
            .expect("engine runs");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Node a, awake, found the speaker silent since before its freeze and decided to fall
    // back: the append reached the log and was refused, since b's fence had moved the stream.
    let attempted = venue.switch_arrivals();
    assert_eq!(attempted.len(), 1, "{attempted:?}");
    assert_eq!(
        attempted[0].at,
        venue.clock.instant(last_heard_by_a + failover_after())
    );
    assert_eq!(
        venue.switches(0),
        Vec::new(),
        "the deposed engine's decision"
    );
    assert_eq!(moves(&venue, 0), vec![1, 2]);
    // Refused, a read its stream again, saw the newer term, and dropped the session; a
    // command it is given is refused rather than decided.
    assert_eq!(venue.engine.slots().await.expect("engine runs"), 0);
    let refused = moderate(&venue.engine, 0, Command::Pin(true)).await;
    assert!(
        matches!(refused, Err(StatusError::Unavailable(_))),
        "{refused:?}"
    );
    // The holder decides.
    moderate(&b, 0, Command::Pin(true))
        .await
        .expect("pinned by the holder");
    // a's lease was told of the later term (once for each time a met it), to give itself up.
    let told = a.outranked.lock().expect("not poisoned").clone();
    assert!(
        !told.is_empty() && told.iter().all(|t| *t == 2),
        "a's lease told {told:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_holder_whose_lease_numbered_its_terms_again_decides_nothing_and_tells_its_lease() {
    // Node a ran the engine as term 5. Then the lease's key was deleted (or the cluster was
    // restored without the lease's bucket), and node b took the lease as term 1.
    let a = Seat::holding("node-a", 5);
    let venue = Venue::with_lease(1, Duration::from_millis(5), Some(a.clone())).await;
    venue.start_all().await;
    venue.heartbeats(4).await;
    assert_eq!(moves(&venue, 0), vec![5]);
    a.lose();
    let b_seat = Seat::holding("node-b", 1);
    let b = engine_of(&venue, b_seat.clone()).await;

    let refused = moderate(&b, 0, Command::Pin(true)).await;
    match refused {
        Err(StatusError::Unavailable(message)) => assert!(
            message.contains("term 5") && message.contains("term 1"),
            "{message}"
        ),
        other => panic!("not refused as unavailable: {other:?}"),
    }
    assert_eq!(moves(&venue, 0), vec![5], "term 1 fenced nothing");
    let told = b_seat.outranked.lock().expect("not poisoned").clone();
    assert!(
        !told.is_empty() && told.iter().all(|t| *t == 5),
        "b's lease told {told:?}"
    );

    // The real lease gives itself up at term 5, and the next holder takes term 6.
    b_seat.lose();
    let c = engine_of(&venue, Seat::holding("node-c", 6)).await;
    moderate(&c, 0, Command::Pin(true))
        .await
        .expect("pinned by term 6");
    assert_eq!(moves(&venue, 0), vec![5, 6]);
}

#[tokio::test(start_paused = true)]
async fn a_deposed_engine_s_pipelined_decision_does_not_land_after_the_fence() {
    let a = Seat::holding("node-a", 1);
    let venue = Venue::with_lease(1, Duration::from_millis(400), Some(a.clone())).await;
    venue.start_all().await;
    venue.heartbeats(2).await;
    // The last heartbeat's link event is stored.
    tokio::time::sleep(Duration::from_millis(450)).await;
    let pinned = |venue: &Venue| {
        venue
            .log
            .stream(&status_stream(CONFERENCE, &session(0)))
            .iter()
            .filter(|e| matches!(decode(e), Ok(Some((_, _, StatusEvent::Pinned { .. })))))
            .count()
    };

    // Node a decides a pin; its append fails (node a is cut off, say). While it is in flight,
    // node b takes over and fences the session, and node a decides an unpin behind the pin.
    venue.log.failures.store(1, Ordering::SeqCst);
    let first = {
        let engine = venue.engine.clone();
        tokio::spawn(async move { moderate(&engine, 0, Command::Pin(true)).await })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    let _b = engine_of(&venue, Seat::holding("node-b", 2)).await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    let second = {
        let engine = venue.engine.clone();
        tokio::spawn(async move { moderate(&engine, 0, Command::Pin(false)).await })
    };
    let (first, second) = (first.await.expect("ran"), second.await.expect("ran"));
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Pipelined, the unpin would have expected the version the pin was to make, which b's
    // fence made: it would have landed after the fence. Chained, it was never sent.
    assert!(first.is_err() && second.is_err(), "{first:?} {second:?}");
    assert_eq!(pinned(&venue), 0);
    assert_eq!(moves(&venue, 0), vec![1, 2]);
}

#[tokio::test(start_paused = true)]
async fn a_newer_agent_s_connection_is_announced_to_every_node_so_the_older_one_s_node_ends_it() {
    let a = Seat::holding("node-a", 1);
    let venue = Venue::with_lease(1, Duration::from_millis(5), Some(a.clone())).await;
    venue.start_all().await;
    let announced = |seat: &Seat| -> Vec<pb::AgentReplaced> {
        seat.announced
            .lock()
            .expect("not poisoned")
            .iter()
            .map(|payload| prost::Message::decode(payload.clone()).expect("an AgentReplaced"))
            .collect()
    };
    // The speaker's agent connected as 1 when the session started (which replaced none); the
    // same connection again replaces none either.
    venue
        .engine
        .connected(CONFERENCE, &session(0), &speaker(0), 1)
        .await
        .expect("engine runs");
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(announced(&a), Vec::new());

    // A newer one (connected through another node, say) replaces it: every node hears which.
    venue
        .engine
        .connected(CONFERENCE, &session(0), &speaker(0), 2)
        .await
        .expect("engine runs");
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        announced(&a),
        vec![pb::AgentReplaced {
            conference_id: CONFERENCE.into(),
            session_id: session(0),
            older: Some(pb::AgentLink {
                speaker_id: speaker(0),
                connection: 1,
            }),
        }]
    );
}
