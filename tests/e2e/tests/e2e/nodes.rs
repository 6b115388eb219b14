//! Two podiumd nodes on one NATS JetStream cluster, and a client given both addresses: a write
//! through one node is read through the other (read-your-writes: the client sends the log
//! position the first node answered with, and the second waits until it has applied it), and
//! when the node in use is killed the client moves to the other and goes on.
//!
//! Both nodes are given one admin token (`--admin-token`) and one cluster key; what else the
//! nodes share (token signing keys, personal and poll keys, recordings) is `shared.rs`'s.

use std::time::Duration;

use nix::sys::signal::Signal;
use podium_client::{
    Client, LOG_POSITION_HEADER, MIN_POSITION_HEADER, POSITION_UNREACHED_HEADER, pb,
};
use podium_e2e::{
    Attendee, CONFERENCE, NewPoll, Odc, PATIENCE, Podiumd, ballot,
    http::{self, form},
    join, open_poll, text,
};
use podium_natscluster::NatsCluster;
use tonic::{Code, Request};

/// podiumd's cookie for a page write's position (services/server/src/positions.rs).
const PAGE_POSITION_COOKIE: &str = "podium_at";

pub(crate) const ADMIN: &str = "an-admin-token-both-nodes-are-given-0123456789";

/// A podiumd node on `cluster`, with the admin token every node is given.
pub(crate) fn node(cluster: &NatsCluster) -> Podiumd {
    node_with(cluster, &[])
}

pub(crate) fn node_with(cluster: &NatsCluster, args: &[&str]) -> Podiumd {
    let all = cluster_args(cluster, args);
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    Podiumd::start_with(&all).unwrap()
}

/// The arguments of a podiumd node on `cluster`, with the admin token every node is given, and
/// `args`.
pub(crate) fn cluster_args(cluster: &NatsCluster, args: &[&str]) -> Vec<String> {
    let mut all = cluster.podiumd_args().unwrap();
    all.extend(["--admin-token".to_owned(), ADMIN.into()]);
    all.extend(args.iter().map(|a| (*a).to_owned()));
    all
}

/// An admin client of each node, in order.
pub(crate) async fn admins(nodes: &[Podiumd]) -> Vec<Client> {
    let mut admins = Vec::with_capacity(nodes.len());
    for node in nodes {
        admins.push(
            Client::connect(&node.addr, Some(ADMIN.into()))
                .await
                .unwrap(),
        );
    }
    admins
}

/// A three-server JetStream cluster on loopback.
pub(crate) async fn cluster() -> NatsCluster {
    tokio::task::spawn_blocking(|| NatsCluster::start(3))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("no JetStream cluster: {e}"))
}

/// A talk by Sokha added through `admin` to the conference `odc`.
pub(crate) async fn talk(admin: &Client, odc: &Odc) -> pb::Session {
    admin
        .agenda()
        .add_session(odc.session(
            "Open data in Cambodia",
            "2030-11-14T02:00:00Z",
            "2030-11-14T02:45:00Z",
            vec![odc.sokha.id.clone()],
        ))
        .await
        .unwrap()
        .into_inner()
        .session
        .unwrap()
}

/// An attendee who joined through `node`. The join code reaches a node through the log: a node
/// that has not applied it yet refuses, and the attendee tries again.
pub(crate) async fn joined(node: &Podiumd, join_code: &str, name: &str) -> Attendee {
    tokio::time::timeout(PATIENCE, async {
        loop {
            match join(node, join_code, name).await {
                Ok(attendee) => return attendee,
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
    .await
    .expect("joined")
}

fn conference(id: &str, request_id: &str) -> pb::CreateConferenceRequest {
    pb::CreateConferenceRequest {
        request_id: request_id.into(),
        conference_id: id.into(),
        title: text(id),
        default_language: "en".into(),
        time_zone: "Asia/Phnom_Penh".into(),
        join_code: String::new(),
    }
}

fn get(id: &str) -> pb::GetConferenceRequest {
    pb::GetConferenceRequest {
        conference_id: id.into(),
    }
}

/// Sends `request` until a node takes it: a call that fails because its node went away is sent
/// again, as a user's tool would, with the same request id.
async fn create_until_taken(client: &Client, request: pb::CreateConferenceRequest) {
    tokio::time::timeout(PATIENCE, async {
        loop {
            match client.agenda().create_conference(request.clone()).await {
                Ok(_) => return,
                Err(status) if podium_client::retryable(&status) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(status) => panic!("create refused: {status}"),
            }
        }
    })
    .await
    .expect("a node took the write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_given_two_nodes_reads_its_writes_on_either_and_moves_when_one_dies() {
    let cluster = cluster().await;
    let mut first = node(&cluster);
    let mut second = node(&cluster);

    // Every answer names its node's log position.
    let only_second = Client::connect(&second.addr, Some(ADMIN.into()))
        .await
        .unwrap();
    let answer = only_second
        .agenda()
        .list_conferences(pb::ListConferencesRequest::default())
        .await
        .unwrap();
    assert!(answer.metadata().get(LOG_POSITION_HEADER).is_some());

    let both = format!("{},{}", first.addr, second.addr);
    let client = Client::connect(&both, Some(ADMIN.into())).await.unwrap();
    assert_eq!(client.nodes().current(), first.addr);
    create_until_taken(&client, conference("odc2024", &Client::request_id())).await;
    let written = client.nodes().position();
    assert!(written > 0, "the write's answer named a position");

    // The second node answers a read that names the write's position only once it has the
    // write; a position it has not reached is refused after a while, naming both.
    let mut read = Request::new(get("odc2024"));
    read.metadata_mut()
        .insert(MIN_POSITION_HEADER, written.to_string().parse().unwrap());
    let on_second = only_second.agenda().get_conference(read).await.unwrap();
    assert_eq!(on_second.into_inner().conference.unwrap().id, "odc2024");
    let mut ahead = Request::new(get("odc2024"));
    ahead.metadata_mut().insert(
        MIN_POSITION_HEADER,
        (written + 1000).to_string().parse().unwrap(),
    );
    let refused = only_second
        .agenda()
        .get_conference(ahead)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(
        refused
            .message()
            .contains(&format!("not yet to {}", written + 1000)),
        "{}",
        refused.message()
    );
    // Beyond the node's own log: a position of another log (an older backup restored), so the
    // refusal says where this log ends and the client starts again from there.
    let ends = refused
        .metadata()
        .get(POSITION_UNREACHED_HEADER)
        .expect("the refusal says where the log ends");
    let ends: u64 = ends.to_str().unwrap().parse().unwrap();
    assert!(ends < written + 1000);
    assert_eq!(only_second.nodes().position(), ends);
    let mut garbled = Request::new(get("odc2024"));
    garbled
        .metadata_mut()
        .insert(MIN_POSITION_HEADER, "soon".parse().unwrap());
    let refused = only_second
        .agenda()
        .get_conference(garbled)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().contains(MIN_POSITION_HEADER));

    // The node in use dies: the next calls go to the other, which has every write.
    first.stop(Signal::SIGKILL).await.unwrap();
    create_until_taken(&client, conference("odc2025", &Client::request_id())).await;
    assert_eq!(client.nodes().current(), second.addr);
    for id in ["odc2024", "odc2025"] {
        let got = client.agenda().get_conference(get(id)).await.unwrap();
        assert_eq!(got.into_inner().conference.unwrap().id, id);
    }

    // The first comes back and the second dies: the client moves back to the first, which
    // followed the log to the second write as it started.
    first.start_again().unwrap();
    second.stop(Signal::SIGKILL).await.unwrap();
    let again = Client::request_id();
    create_until_taken(&client, conference("odc2026", &again)).await;
    assert_eq!(client.nodes().current(), first.addr);
    let listed = client
        .agenda()
        .list_conferences(pb::ListConferencesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut ids: Vec<_> = listed.conferences.iter().map(|c| c.id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["odc2024", "odc2025", "odc2026"]);
    // A retry of the last write through this node gets its first answer, not a second
    // conference or a conflict.
    client
        .agenda()
        .create_conference(conference("odc2026", &again))
        .await
        .unwrap();
}

/// Three nodes, a poll created through the first, attendees joining each node and voting
/// through it, again and again, all at once: every node's tally is the attendees' last
/// ballots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ballot_storm_spread_over_three_nodes_tallies_exactly_on_every_node() {
    let cluster = cluster().await;
    let storm = ["--rate-ballots", "1000000"];
    let nodes = [
        node_with(&cluster, &storm),
        node_with(&cluster, &storm),
        node_with(&cluster, &storm),
    ];
    let admins = admins(&nodes).await;
    let odc = Odc::create(&admins[0], CONFERENCE).await.unwrap();
    let poll = open_poll(
        &admins[0],
        NewPoll::single_choice(&["Budgets", "Health", "Schools"]),
        "",
    )
    .await
    .unwrap();

    let mut voters = Vec::new();
    for (k, node) in nodes.iter().enumerate() {
        for i in 0..4 {
            voters.push(joined(node, odc.join_code(), &format!("Voter {k}.{i}")).await);
        }
    }
    let storm: Vec<_> = voters
        .iter()
        .enumerate()
        .map(|(i, attendee)| {
            let (client, poll) = (attendee.client.clone(), poll.clone());
            tokio::spawn(async move {
                let mut last = None;
                for n in i..i + 15 {
                    let option = poll.options[n % poll.options.len()].id.clone();
                    let request = ballot(&poll, vec![option.clone()]);
                    let mut tries = 0;
                    while let Err(status) = client.polls().cast_ballot(request.clone()).await {
                        tries += 1;
                        assert!(tries < 100, "a ballot kept failing: {status}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    last = Some(option);
                }
                last
            })
        })
        .collect();
    let mut last = Vec::new();
    for voter in storm {
        last.push(voter.await.unwrap());
    }
    // Every node comes to the tally of the last ballots (each applies the log at its own pace,
    // so an earlier tally may show first; one that never comes times out).
    let expected = crate::cluster::tally(&last);
    let voted = voters.len() as u64;
    for admin in &admins {
        let counted = crate::cluster::results_when(admin, &poll, |ballots, tally| {
            ballots == voted && *tally == expected
        })
        .await;
        assert_eq!(counted, expected);
    }
}

/// Pages have no header to carry a position: a form's write through one node sets it in a
/// cookie, and the page the browser is sent to next, asked of the other node (a load balancer's
/// choice), waits until that node has the write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_question_asked_on_a_page_through_one_node_is_on_the_next_page_through_the_other() {
    let cluster = cluster().await;
    // Behind one address, as a load balancer gives them: the cookies' names are those of the
    // public URL (no port), the same on both nodes, though the test reaches each by its own.
    let behind_one_address = ["--public-url", "http://podium.example"];
    let first = node_with(&cluster, &behind_one_address);
    let second = node_with(&cluster, &behind_one_address);
    let admin = Client::connect(&first.addr, Some(ADMIN.into()))
        .await
        .unwrap();
    let odc = Odc::create(&admin, CONFERENCE).await.unwrap();
    let session = talk(&admin, &odc).await;
    let dara = joined(&first, odc.join_code(), "Dara").await;
    let home = http::request(&first.addr, "GET", "/", &[], "")
        .await
        .unwrap();
    let csrf = home.cookie("podium_csrf").unwrap();
    let signed_in = format!("podium_csrf={csrf}; podium_session={}", dara.token);

    // The second node is frozen while a run of other writes and then the question go through
    // the first; the page is asked of it while it is still frozen (the kernel takes the
    // connection), so it is the first thing it does when woken, with all that to apply.
    let question = "Which ministries publish their budgets as open data?";
    second.signal(Signal::SIGSTOP).unwrap();
    let writers: Vec<_> = (0..8)
        .map(|writer| {
            let admin = admin.clone();
            tokio::spawn(async move {
                for i in 0..50 {
                    let id = format!("busy-{writer}-{i}");
                    admin
                        .agenda()
                        .create_conference(conference(&id, &Client::request_id()))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let asked = http::request(
        &first.addr,
        "POST",
        &format!("/session/{}/questions", session.id),
        &[("cookie", &signed_in)],
        &form(&[("csrf", &csrf), ("text", question)]),
    )
    .await;
    let asked = match asked {
        Ok(asked) => asked,
        Err(error) => {
            second.signal(Signal::SIGCONT).unwrap();
            panic!("the question was not asked: {error}");
        }
    };
    let at: Option<u64> = asked
        .cookie(PAGE_POSITION_COOKIE)
        .and_then(|at| at.parse().ok());
    let page = tokio::spawn({
        let (addr, path) = (
            second.addr.clone(),
            format!("/session/{}?done=question", session.id),
        );
        let cookie = format!("{signed_in}; {PAGE_POSITION_COOKIE}={}", at.unwrap_or(0));
        async move { http::request(&addr, "GET", &path, &[("cookie", &cookie)], "").await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    second.signal(Signal::SIGCONT).unwrap();
    assert_eq!(asked.status, 303, "{}", asked.body);
    let at = at.expect("the write's position in a cookie");
    assert!(at > 0);
    let page = page.await.unwrap().unwrap();
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains(question),
        "the page (node at {:?}, the write at {at}) lacks the question: {}",
        page.header("podium-log-position"),
        page.body
    );
    // Used once: the page clears it.
    let cleared = page.set_cookie(PAGE_POSITION_COOKIE).unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");

    // A position the node never reaches (a cookie of another podiumd on the same host) only
    // delays the page: it is shown, and the cookie cleared.
    let page = http::request(
        &second.addr,
        "GET",
        "/",
        &[(
            "cookie",
            &format!("{signed_in}; {PAGE_POSITION_COOKIE}={}", at + 1_000),
        )],
        "",
    )
    .await
    .unwrap();
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.set_cookie(PAGE_POSITION_COOKIE).is_some());
    // Pages that wrote nothing set no position.
    assert_eq!(home.set_cookie(PAGE_POSITION_COOKIE), None);
}
