//! A moderator's command sent again with the same request id, on a cluster: answered with the
//! first outcome through another node, and after the node that ran the engine died.

use nix::sys::signal::Signal;
use podium_client::{Client, pb};
use podium_e2e::{CONFERENCE, Odc};
use tonic::{Code, Status};

use super::{LEASE, holder, until_holds};
use crate::nodes::{ADMIN, node_with};

async fn start(
    client: &Client,
    session_id: &str,
    request_id: &str,
) -> Result<pb::SessionStatus, Status> {
    let request = pb::StartSessionRequest {
        conference_id: CONFERENCE.into(),
        session_id: session_id.into(),
        request_id: request_id.into(),
    };
    let reply = client.stage().start_session(request).await?;
    Ok(reply.into_inner().status.expect("a status"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_sent_again_after_the_engine_s_node_died_is_answered_not_refused() {
    let cluster = crate::nodes::cluster().await;
    let lease = ["--engine-lease", LEASE];
    let mut one = node_with(&cluster, &lease);
    assert_eq!(holder(&[&one]).await, 0);
    let two = node_with(&cluster, &lease);
    let admin1 = Client::connect(&one.addr, Some(ADMIN.into()))
        .await
        .unwrap();
    let admin2 = Client::connect(&two.addr, Some(ADMIN.into()))
        .await
        .unwrap();
    let odc = Odc::create(&admin1, CONFERENCE).await.unwrap();
    let session = crate::nodes::talk(&admin1, &odc).await;

    // Started through node two: node one's engine carries it out.
    let request_id = Client::request_id();
    let first = start(&admin2, &session.id, &request_id).await.unwrap();
    assert_eq!(first.state(), pb::SessionState::Live);
    let went_live = first.source.clone().and_then(|s| s.since);
    assert!(went_live.is_some(), "{first:?}");
    // Sent again through node one, where the engine runs: the same going live, not "already
    // live".
    let again = start(&admin1, &session.id, &request_id).await.unwrap();
    assert_eq!(again.source.and_then(|s| s.since), went_live);

    // Node one dies before the moderator hears back; node two takes the engine over, and the
    // moderator's client sends the start once more.
    one.stop(Signal::SIGKILL).await.unwrap();
    until_holds(&two, true).await;
    let after = start(&admin2, &session.id, &request_id).await.unwrap();
    assert_eq!(after.state(), pb::SessionState::Live);
    assert_eq!(after.source.and_then(|s| s.since), went_live);
    // A new start is a new command, and the session is live.
    let other = start(&admin2, &session.id, &Client::request_id()).await;
    assert_eq!(
        other.map_err(|s| s.code()).err(),
        Some(Code::FailedPrecondition)
    );
}
