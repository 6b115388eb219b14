//! What podiumd nodes share on a cluster. The keys: a name sealed by one node opens on another,
//! a token issued by one node works on another, a rotation on one node reaches the others, and
//! an attendee is one voter in an anonymous poll whichever node takes their ballots. And the
//! recordings: one uploaded through one node is served by another.

use std::time::Duration;

use nix::sys::signal::Signal;
use podium_client::{Client, TransferError, pb};
use podium_e2e::{CONFERENCE, NewPoll, Odc, PATIENCE, Podiumd, ballot, open_poll};
use tonic::Code;

use crate::nodes::{ADMIN, cluster_args, joined, node};

/// Sends `request` through `client` until it is taken: the node may not have applied the poll
/// yet.
async fn vote(client: &Client, request: pb::CastBallotRequest) {
    tokio::time::timeout(PATIENCE, async {
        while let Err(status) = client.polls().cast_ballot(request.clone()).await {
            assert_eq!(status.code(), Code::NotFound, "{status}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the ballot was taken");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_rotations_and_anonymous_voters_are_the_same_on_every_node() {
    let cluster = crate::nodes::cluster().await;
    let nodes = [node(&cluster), node(&cluster)];
    let admins = crate::nodes::admins(&nodes).await;
    let odc = Odc::create(&admins[0], CONFERENCE).await.unwrap();

    // The speakers were added through the first node, their names sealed with keys it made:
    // the second node reads them.
    let names = |speakers: Vec<pb::Speaker>| {
        let mut names: Vec<String> = speakers.into_iter().map(|s| s.name).collect();
        names.sort();
        names
    };
    let expected_names = names(vec![odc.sokha.clone(), odc.sarah.clone()]);
    assert!(!expected_names.iter().any(|n| n.contains("erased")));
    let on_second = tokio::time::timeout(PATIENCE, async {
        loop {
            let got = admins[1]
                .agenda()
                .get_conference(pb::GetConferenceRequest {
                    conference_id: CONFERENCE.into(),
                })
                .await;
            match got.ok().and_then(|g| g.into_inner().conference) {
                Some(conference) if conference.speakers.len() == expected_names.len() => {
                    return names(conference.speakers);
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    })
    .await
    .expect("the second node has the speakers");
    assert_eq!(on_second, expected_names);
    let poll = open_poll(
        &admins[0],
        NewPoll::single_choice(&["Budgets", "Health", "Schools"]).anonymous(),
        "",
    )
    .await
    .unwrap();

    // Sophea joins through the first node and votes there, then changes her mind through the
    // second node with the same token: one voter, her last ballot counted, on both nodes.
    let sophea = joined(&nodes[0], odc.join_code(), "Sophea").await;
    let on_second = Client::connect(&nodes[1].addr, Some(sophea.token.clone()))
        .await
        .unwrap();
    let [first, second] = [&poll.options[0].id, &poll.options[1].id];
    vote(&sophea.client, ballot(&poll, vec![first.clone()])).await;
    vote(&on_second, ballot(&poll, vec![second.clone()])).await;
    let expected = crate::cluster::tally(&[Some(second.clone())]);
    for admin in &admins {
        let counted = crate::cluster::results_when(admin, &poll, |ballots, tally| {
            ballots == 1 && *tally == expected
        })
        .await;
        assert_eq!(counted, expected);
    }

    // The key is rotated through the second node with no grace: every node refuses tokens
    // signed by the old key from then on, and a token the first node issues afterwards works
    // on the second.
    let rotation = pb::RotateSigningKeyRequest {
        grace_seconds: 0,
        request_id: Client::request_id(),
    };
    let rotated = admins[1]
        .access()
        .rotate_signing_key(rotation.clone())
        .await
        .unwrap()
        .into_inner();
    for (n, address) in [&nodes[0].addr, &nodes[1].addr].into_iter().enumerate() {
        let old = Client::connect(address, Some(sophea.token.clone()))
            .await
            .unwrap();
        let refused = tokio::time::timeout(PATIENCE, async {
            loop {
                match old
                    .polls()
                    .cast_ballot(ballot(&poll, vec![first.clone()]))
                    .await
                {
                    Err(status) if status.code() == Code::Unauthenticated => return status,
                    _ => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("node {n} never took up the rotation"));
        assert!(refused.message().contains("rotated out"), "{refused}");
    }
    let dara = joined(&nodes[0], odc.join_code(), "Dara").await;
    let dara_on_second = Client::connect(&nodes[1].addr, Some(dara.token.clone()))
        .await
        .unwrap();
    vote(&dara_on_second, ballot(&poll, vec![first.clone()])).await;
    // The rotation retried through the other node is answered as the first time, and rotates
    // nothing: Dara's token, signed by the new key, still works.
    let retried = admins[0]
        .access()
        .rotate_signing_key(rotation)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried, rotated);
    vote(&dara_on_second, ballot(&poll, vec![first.clone()])).await;

    // Closed through the first node: the poll's key is destroyed for every node, and the close
    // says so by succeeding.
    admins[0]
        .polls()
        .close_poll(pb::ClosePollRequest {
            conference_id: CONFERENCE.into(),
            poll_id: poll.id.clone(),
        })
        .await
        .unwrap();
    let refused = dara_on_second
        .polls()
        .cast_ballot(ballot(&poll, vec![second.clone()]))
        .await;
    let refused = tokio::time::timeout(PATIENCE, async {
        let mut refused = refused;
        while refused.is_ok() {
            tokio::time::sleep(Duration::from_millis(50)).await;
            refused = dara_on_second
                .polls()
                .cast_ballot(ballot(&poll, vec![second.clone()]))
                .await;
        }
        refused.unwrap_err()
    })
    .await
    .expect("the closed poll refuses ballots on the second node");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_uploaded_through_one_node_is_served_by_another() {
    let cluster = crate::nodes::cluster().await;
    let nodes = [node(&cluster), node(&cluster)];
    let first = Client::connect(&nodes[0].addr, Some(ADMIN.into()))
        .await
        .unwrap();
    let second = Client::connect(&nodes[1].addr, Some(ADMIN.into()))
        .await
        .unwrap();
    let odc = Odc::create(&first, CONFERENCE).await.unwrap();
    let session = crate::nodes::talk(&first, &odc).await;
    let dir = tempfile::tempdir().unwrap();
    let talk = dir.path().join("talk.mp4");
    let bytes = podium_client::placeholder_mp4(20 * 60 * 1000);
    std::fs::write(&talk, &bytes).unwrap();
    let header = pb::RecordingHeader {
        conference_id: CONFERENCE.into(),
        session_id: session.id.clone(),
        media_type: "video/mp4".into(),
        file_name: "talk.mp4".into(),
        ..Default::default()
    };
    let recording = first
        .upload_recording_file(&talk, header, |_| {})
        .await
        .unwrap();

    // The second node never received the bytes: it fetches them from the cluster.
    let out = dir.path().join("fetched.mp4");
    tokio::time::timeout(PATIENCE, async {
        loop {
            match second
                .fetch_recording_file(CONFERENCE, &recording.id, &out, false, |_| {})
                .await
            {
                Ok(_) => return,
                // The registration has not reached the second node's read model yet.
                Err(TransferError::Rpc(status)) if status.code() == Code::NotFound => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(error) => panic!("the second node did not serve the recording: {error}"),
            }
        }
    })
    .await
    .expect("the second node serves the recording");
    assert_eq!(std::fs::read(&out).unwrap(), bytes);

    // Deleted through the second node, the recording's bytes stay a while in the cluster's
    // object store: put a moment ago, they could as well be another node's upload of the same
    // file on its way (objects are named by their content), so the deletion's collection spares
    // them; the collection every 10 minutes takes them.
    let log = podium_eventlog::NatsEventLog::open(podium_eventlog::NatsOptions {
        servers: cluster.urls(),
        monitors: cluster.monitor_urls(),
        prefix: "podium".into(),
        ..podium_eventlog::NatsOptions::default()
    })
    .await
    .unwrap();
    let blobs = log.blobs(3).await.unwrap();
    let held = blobs.names(Duration::ZERO).await.unwrap();
    assert!(held.contains(&recording.sha256), "{held:?}");
    second
        .recordings()
        .delete_recording(pb::DeleteRecordingRequest {
            request_id: Client::request_id(),
            conference_id: CONFERENCE.into(),
            recording_id: recording.id.clone(),
        })
        .await
        .unwrap();
    let held = blobs.names(Duration::ZERO).await.unwrap();
    assert!(held.contains(&recording.sha256), "{held:?}");
    let settled = blobs.names(Duration::from_secs(600)).await.unwrap();
    assert!(!settled.contains(&recording.sha256), "{settled:?}");
}

/// A node that ran alone (here on sled) joins the cluster with its data directory: its token
/// keys become the cluster's, so a token it issued alone works on every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_ran_alone_gives_the_cluster_its_token_keys() {
    let mut alone = Podiumd::start_with(&["--admin-token", ADMIN]).unwrap();
    let admin = Client::connect(&alone.addr, Some(ADMIN.into()))
        .await
        .unwrap();
    Odc::create(&admin, CONFERENCE).await.unwrap();
    let organiser = admin
        .access()
        .issue_token(pb::IssueTokenRequest {
            role: pb::Role::Organiser as i32,
            conference_id: CONFERENCE.into(),
            speaker_id: String::new(),
            name: "Chenda".into(),
            ttl_seconds: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .token;
    alone.stop(Signal::SIGTERM).await.unwrap();

    let cluster = crate::nodes::cluster().await;
    let args = cluster_args(&cluster, &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let _joined = Podiumd::start_in(&alone.data_dir, &args).unwrap();
    // A node that never ran alone verifies the token the first one issued then.
    let other = node(&cluster);
    let client = Client::connect(&other.addr, Some(organiser)).await.unwrap();
    client
        .agenda()
        .list_conferences(pb::ListConferencesRequest::default())
        .await
        .expect("the token of the node that ran alone works on another node");
}
