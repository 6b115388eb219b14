//! The status engine on three podiumd nodes over one JetStream cluster: it runs on the node
//! that holds its lease; the agent's heartbeats reach it from another node; when its node is
//! frozen (SIGSTOP) another takes over and the frozen one, woken, writes nothing; when its node
//! is killed (SIGKILL) mid-talk, during a ballot storm through all three nodes, another takes
//! over, a silent speaker still falls back, the attendees' clients move to live nodes and no
//! acknowledged ballot is lost.
//!
//! Set-up goes through node 1, the agent is connected to node 2 (with a token node 2 issued),
//! a board watches through node 3.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use futures::StreamExt;
use nix::sys::signal::Signal;
use podium_client::{Client, StatusUpdate, pb};
use podium_e2e::{
    CONFERENCE, NewPoll, Odc, PATIENCE, Podiumd, ballot,
    board::{millis, watch_session},
    cli, cli_process, metrics, open_poll, signal,
};
use tonic::Code;

use crate::{
    nodes::{ADMIN, joined, node_with},
    status::{on_air, speaker_link, until},
};

mod retries;

/// The lease's time-to-live the nodes are given, in seconds.
const LEASE: &str = "2";

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

async fn holds_lease(node: &Podiumd) -> bool {
    metrics::scrape(node)
        .await
        .is_ok_and(|text| metrics::sample(&text, "podium_status_engine_lease_held") == 1.0)
}

/// Waits until one of `nodes` holds the engine's lease; returns its index.
async fn holder(nodes: &[&Podiumd]) -> usize {
    tokio::time::timeout(PATIENCE, async {
        loop {
            for (i, node) in nodes.iter().enumerate() {
                if holds_lease(node).await {
                    return i;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("a node took the status engine's lease")
}

/// The session's status as `client`'s node reads it.
async fn status_on(client: &Client, session_id: &str) -> pb::SessionStatus {
    let updates = client.watch_status(CONFERENCE, "");
    futures::pin_mut!(updates);
    let first = tokio::time::timeout(PATIENCE, updates.next())
        .await
        .expect("a snapshot in time")
        .expect("the stream opened")
        .unwrap_or_else(|status| panic!("watch refused: {status}"));
    let StatusUpdate::Snapshot { sessions, .. } = first else {
        panic!("the first update is not a snapshot");
    };
    sessions
        .into_iter()
        .find(|s| s.session_id == session_id)
        .expect("the session in the snapshot")
}

/// Waits until `node` holds the lease (or, with `false`, does not).
async fn until_holds(node: &Podiumd, held: bool) {
    tokio::time::timeout(PATIENCE, async {
        while holds_lease(node).await != held {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{} never came to hold = {held}", node.addr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_engine_runs_on_one_node_and_moves_when_that_node_is_frozen_or_killed() {
    let cluster = crate::nodes::cluster().await;
    let began = std::time::Instant::now();
    let phase = |what: &str| println!("{:>6} ms  {what}", began.elapsed().as_millis());
    // A storm, not an attack: no attendee is slowed down.
    let lease = ["--engine-lease", LEASE, "--rate-ballots", "1000000"];
    // Node 1 starts alone, so it takes the lease; the others find it held.
    let one = node_with(&cluster, &lease);
    assert_eq!(holder(&[&one]).await, 0);
    let two = node_with(&cluster, &lease);
    let three = node_with(&cluster, &lease);

    // Set-up through node 1.
    let admin1 = Client::connect(&one.addr, Some(ADMIN.into()))
        .await
        .unwrap();
    let odc = Odc::create(&admin1, CONFERENCE).await.unwrap();
    let session = crate::nodes::talk(&admin1, &odc).await;
    let sid = session.id.as_str();

    // The agent on node 2, with a token node 2 issued; a board on node 3.
    let admin2 = Client::connect(&two.addr, Some(ADMIN.into()))
        .await
        .unwrap();
    let speaker_token = speaker_token(&two, &odc.sokha.id).await;
    let admin3 = Client::connect(&three.addr, Some(ADMIN.into()))
        .await
        .unwrap();
    let mut board = watch_session(&admin3, sid);
    let mut agent = cli_process(
        &two,
        &speaker_token,
        &["speaker", "connect", "--session", sid],
    )
    .unwrap();
    // Heartbeats reach node 1's engine from node 2, and its decisions reach node 3's board.
    until(&mut board, |s| {
        speaker_link(s, &odc.sokha.id) == pb::LinkState::Healthy
    })
    .await;
    // Started through node 3: the command goes to node 1's engine and back.
    let started = admin3
        .stage()
        .start_session(pb::StartSessionRequest {
            request_id: Client::request_id(),
            conference_id: CONFERENCE.into(),
            session_id: sid.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(on_air(&started), pb::SourceKind::Speaker);
    until(&mut board, |s| s.state() == pb::SessionState::Live).await;

    phase("live on the speaker, through three nodes");
    // Node 1 freezes. Node 2 or 3 takes the engine over; the speaker, still heard through node
    // 2, stays on air.
    one.signal(Signal::SIGSTOP).unwrap();
    let new = holder(&[&two, &three]).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Node 1 wakes, its engine still holding the speaker's last heartbeat from before the
    // freeze, long past failover_after: it must not fall back, nor anything else.
    phase("node 2 or 3 runs the engine, node 1 frozen 3 s more");
    one.signal(Signal::SIGCONT).unwrap();
    until_holds(&one, false).await;
    phase("woken node 1 gave the lease up");
    // Long enough for any decision of the woken engine to land, had it made one.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let text = metrics::scrape(&one).await.unwrap();
    println!(
        "woken node: {} appends fenced",
        metrics::sample(&text, "podium_status_appends_fenced_total")
    );
    let status = status_on(&admin3, sid).await;
    assert_eq!(on_air(&status), pb::SourceKind::Speaker, "{status:?}");
    assert_eq!(speaker_link(&status, &odc.sokha.id), pb::LinkState::Healthy);
    // A command given to the woken node reaches the engine where it runs now.
    let pinned = admin1
        .stage()
        .pin(pb::PinRequest {
            request_id: Client::request_id(),
            conference_id: CONFERENCE.into(),
            session_id: sid.into(),
            pinned: false,
        })
        .await;
    assert!(pinned.is_ok(), "{pinned:?}");
    phase("a command through node 1 reached the engine");
    // Every node names the same node as running the engine; the operator sees it too.
    let mut named = Vec::new();
    for admin in [&admin1, &admin2, &admin3] {
        let node = admin
            .diagnostics()
            .node(pb::NodeRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(node.log_backend, "nats");
        named.push((
            node.node_name,
            node.status_engine_node,
            node.status_engine_term,
        ));
    }
    assert!(
        named
            .iter()
            .all(|(_, holder, term)| *holder == named[0].1 && *term == named[0].2 && *term >= 2),
        "{named:?}"
    );
    assert_eq!(
        named
            .iter()
            .filter(|(name, holder, _)| name == holder)
            .count(),
        1,
        "{named:?}"
    );
    let (ok, out, err) = cli(&three, ADMIN, &["admin", "status"]).unwrap();
    assert!(ok, "{err}");
    assert!(out.contains("status engine"), "{out}");

    // A ballot storm through all three nodes, which goes on across the kill below.
    let addresses = [one.addr.clone(), two.addr.clone(), three.addr.clone()];
    let storm = Storm::start(&admin1, &one, &odc, &addresses).await;
    phase("a ballot storm through the three nodes");

    // Mid-talk, the node running the engine is killed and the agent goes silent at the same
    // instant (the venue's uplink and a server gone together). Another node takes over and
    // falls back a whole failover_after after taking over.
    signal(&agent, Signal::SIGSTOP).unwrap();
    let killed_at = now_ms();
    let (mut dead, survivors) = match new {
        0 => (two, vec![one, three]),
        _ => (three, vec![one, two]),
    };
    dead.stop(Signal::SIGKILL).await.unwrap();
    // The storm stops at once: each attendee's last acknowledged ballot may be one the killed
    // node acknowledged, and it must be counted. Then each votes in a second poll, which the
    // attendees whose node died can only do through another node.
    let storm = storm.finish().await;
    let survivor = Client::connect(&survivors[0].addr, Some(ADMIN.into()))
        .await
        .unwrap();
    let mut watch = watch_session(&survivor, sid);
    let fell_back = until(&mut watch, |s| on_air(s) != pb::SourceKind::Speaker).await;
    assert_eq!(
        fell_back.cause(),
        pb::Cause::HeartbeatTimeout,
        "{fell_back:?}"
    );
    let since = millis(&fell_back.source.as_ref().unwrap().since);
    println!(
        "fallback {} ms after the engine's node was killed (failover_after 1000 ms + lease {LEASE} s)",
        since.saturating_sub(killed_at)
    );
    phase("the silent speaker fell back");
    let runs = holder(&[&survivors[0], &survivors[1]]).await;
    println!("the engine runs on surviving node {runs}");
    // Every surviving node comes to tell the same: each follows the log on its own, and the
    // other may still be applying the storm's ballots before the fallback.
    for node in &survivors {
        let client = Client::connect(&node.addr, Some(ADMIN.into()))
            .await
            .unwrap();
        let mut watch = watch_session(&client, sid);
        let told = until(&mut watch, |s| on_air(s) != pb::SourceKind::Speaker).await;
        assert_eq!(on_air(&told), on_air(&fell_back), "on {}", node.addr);
    }
    signal(&agent, Signal::SIGKILL).unwrap();
    agent.wait().unwrap();

    // Every surviving node counts each attendee's last acknowledged ballot, some of them
    // acknowledged by the killed node.
    let expected = crate::cluster::tally(&storm.last);
    let admins = crate::nodes::admins(&survivors).await;
    for admin in &admins {
        let counted = crate::cluster::results_when(admin, &storm.poll, |ballots, tally| {
            ballots == storm.last.len() as u64 && *tally == expected
        })
        .await;
        assert_eq!(counted, expected);
    }
    phase("no acknowledged ballot lost");
    // Every attendee votes once more, in a second poll: those whose node died can only do so
    // through another node, which their client finds by itself.
    let second = open_poll(&admins[0], NewPoll::single_choice(&["Yes", "No"]), "")
        .await
        .unwrap();
    let yes = second.options[0].id.clone();
    for client in &storm.clients {
        acknowledged(client, ballot(&second, vec![yes.clone()])).await;
    }
    let all_yes = crate::cluster::tally(&vec![Some(yes); storm.clients.len()]);
    for admin in &admins {
        let counted = crate::cluster::results_when(admin, &second, |ballots, tally| {
            ballots == storm.clients.len() as u64 && *tally == all_yes
        })
        .await;
        assert_eq!(counted, all_yes);
    }
    phase("every attendee voted again through a live node");
}

/// Sends `request` through `client` until it is acknowledged, as an attendee's phone does: a
/// call that failed because its node went away (or has not applied the poll yet) is sent again
/// with the same ballot id, and moves to another node by itself.
async fn acknowledged(client: &Client, request: pb::CastBallotRequest) {
    tokio::time::timeout(PATIENCE, async {
        loop {
            match client.polls().cast_ballot(request.clone()).await {
                Ok(_) => return,
                Err(status)
                    if podium_client::retryable(&status) || status.code() == Code::NotFound =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(status) => panic!("a ballot was refused: {status}"),
            }
        }
    })
    .await
    .expect("a ballot was acknowledged in time");
}

/// Attendees voting again and again, each through a client that knows every node (its own
/// first) and moves on when its node dies; a ballot is sent again with its id until
/// acknowledged.
struct Storm {
    poll: pb::Poll,
    stop: Arc<AtomicBool>,
    clients: Vec<Client>,
    voters: Vec<tokio::task::JoinHandle<Option<String>>>,
}

/// A storm that has stopped: its poll, each attendee's last acknowledged ballot, and their
/// clients.
struct Stormed {
    poll: pb::Poll,
    last: Vec<Option<String>>,
    clients: Vec<Client>,
}

impl Storm {
    async fn start(admin: &Client, node: &Podiumd, odc: &Odc, addresses: &[String]) -> Self {
        let poll = open_poll(
            admin,
            NewPoll::single_choice(&["Budgets", "Health", "Schools"]),
            "",
        )
        .await
        .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (mut clients, mut voters) = (Vec::new(), Vec::new());
        for i in 0..6 {
            let attendee = joined(node, odc.join_code(), &format!("Voter {i}")).await;
            let order: Vec<&str> = (0..addresses.len())
                .map(|k| addresses[(i + k) % addresses.len()].as_str())
                .collect();
            let client = Client::connect(&order.join(","), Some(attendee.token))
                .await
                .unwrap();
            clients.push(client.clone());
            let (poll, stop) = (poll.clone(), stop.clone());
            voters.push(tokio::spawn(async move {
                let mut last = None;
                let mut n = i;
                while !stop.load(Ordering::Relaxed) {
                    let option = poll.options[n % poll.options.len()].id.clone();
                    acknowledged(&client, ballot(&poll, vec![option.clone()])).await;
                    last = Some(option);
                    n += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                last
            }));
        }
        // Under way before anything is killed.
        tokio::time::sleep(Duration::from_secs(1)).await;
        Self {
            poll,
            stop,
            clients,
            voters,
        }
    }

    /// Stops the storm once every attendee's ballot in flight is acknowledged.
    async fn finish(self) -> Stormed {
        self.stop.store(true, Ordering::Relaxed);
        let mut last = Vec::new();
        for voter in self.voters {
            last.push(voter.await.unwrap());
        }
        Stormed {
            poll: self.poll,
            last,
            clients: self.clients,
        }
    }
}

/// A speaker token issued by `node`, retried until `node` knows the speaker (it reads the log
/// another node wrote).
async fn speaker_token(node: &Podiumd, speaker_id: &str) -> String {
    let admin = Client::connect(&node.addr, Some(ADMIN.into()))
        .await
        .unwrap();
    let name = format!("agent through {}", node.addr);
    issued_token(&admin, pb::Role::Speaker, speaker_id, &name).await
}

/// A token of `role` issued through `admin`'s node, once that node has read the conference
/// (and the speaker).
async fn issued_token(admin: &Client, role: pb::Role, speaker_id: &str, name: &str) -> String {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let issued = admin
                .access()
                .issue_token(pb::IssueTokenRequest {
                    role: role as i32,
                    conference_id: CONFERENCE.into(),
                    speaker_id: speaker_id.into(),
                    name: name.into(),
                    ttl_seconds: 0,
                })
                .await;
            match issued {
                Ok(issued) => return issued.into_inner().token,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    })
    .await
    .expect("a token in time")
}

/// A speaker's newer agent connected through one node ends the older one connected through
/// another, as it does on one node: the engine, which hears of both, tells every node which
/// connection the newer one replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_agent_through_another_node_ends_the_older_one() {
    use podium_client::agent::{AgentConfig, AgentEvent, run_agent};

    let cluster = crate::nodes::cluster().await;
    let lease = ["--engine-lease", LEASE];
    let one = node_with(&cluster, &lease);
    assert_eq!(holder(&[&one]).await, 0);
    let two = node_with(&cluster, &lease);
    let admin1 = Client::connect(&one.addr, Some(ADMIN.into()))
        .await
        .unwrap();
    let odc = Odc::create(&admin1, CONFERENCE).await.unwrap();
    let session = crate::nodes::talk(&admin1, &odc).await;

    let on_one = Client::connect(&one.addr, Some(speaker_token(&one, &odc.sokha.id).await))
        .await
        .unwrap();
    let on_two = Client::connect(&two.addr, Some(speaker_token(&two, &odc.sokha.id).await))
        .await
        .unwrap();

    let older = run_agent(on_one, AgentConfig::new(&session.id));
    futures::pin_mut!(older);
    assert!(matches!(
        older.next().await,
        Some(Ok(AgentEvent::Connected(_)))
    ));
    // Node two reads the session written through node one before its agent asks for it.
    let admin2 = Client::connect(&two.addr, Some(ADMIN.into()))
        .await
        .unwrap();
    tokio::time::timeout(PATIENCE, async {
        while admin2
            .agenda()
            .get_session(pb::GetSessionRequest {
                conference_id: CONFERENCE.into(),
                session_id: session.id.clone(),
            })
            .await
            .is_err()
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("node two reads the session");
    // Node two forwards its agent's connect to node one once it has read who runs the engine
    // (it reads the lease every 200 ms); a connect forwarded before that is lost, and a lost
    // connect leaves the newer agent unheard while the older one lives.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let newer = run_agent(on_two, AgentConfig::new(&session.id));
    futures::pin_mut!(newer);
    assert!(matches!(
        newer.next().await,
        Some(Ok(AgentEvent::Connected(_)))
    ));

    // The older agent, on node one, is told why it stops.
    let told = tokio::time::timeout(PATIENCE, async {
        loop {
            match older.next().await {
                Some(Ok(AgentEvent::Acked { .. })) => continue,
                other => return other,
            }
        }
    })
    .await
    .expect("the older agent, still acknowledged, was never told to stop");
    let Some(Err(status)) = told else {
        panic!("expected the older agent to be replaced, got {told:?}")
    };
    assert_eq!(status.code(), Code::Aborted);
    assert!(
        status.message().contains("replaced by a newer agent"),
        "{}",
        status.message()
    );
    assert!(older.next().await.is_none(), "a replaced agent stops");
    // The newer one goes on being heard.
    let acked = tokio::time::timeout(PATIENCE, async {
        loop {
            if let Some(Ok(AgentEvent::Acked { .. })) = newer.next().await {
                return;
            }
        }
    })
    .await;
    assert!(acked.is_ok(), "the newer agent is no longer heard");
}
