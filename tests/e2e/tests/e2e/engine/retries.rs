//! A moderator's command sent again with the same request id, on a cluster: answered with the
//! first outcome through another node, and after the node that ran the engine died.

use std::time::Duration;

use nix::sys::signal::Signal;
use podium_client::{Client, pb};
use podium_e2e::{
    CONFERENCE, Odc, PATIENCE,
    http::{self, form},
};
use tonic::{Code, Status};

use podium_e2e::Podiumd;
use podium_natscluster::NatsCluster;

use super::{LEASE, holder, issued_token, until_holds};
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

/// Two nodes of a cluster, node one running the status engine, and a session of a conference
/// made through node one.
struct Pair {
    one: Podiumd,
    two: Podiumd,
    admin1: Client,
    admin2: Client,
    session: pb::Session,
}

impl Pair {
    async fn start(cluster: &NatsCluster) -> Self {
        let lease = ["--engine-lease", LEASE];
        let one = node_with(cluster, &lease);
        assert_eq!(holder(&[&one]).await, 0);
        let two = node_with(cluster, &lease);
        let admin1 = Client::connect(&one.addr, Some(ADMIN.into()))
            .await
            .unwrap();
        let admin2 = Client::connect(&two.addr, Some(ADMIN.into()))
            .await
            .unwrap();
        let odc = Odc::create(&admin1, CONFERENCE).await.unwrap();
        let session = crate::nodes::talk(&admin1, &odc).await;
        Self {
            one,
            two,
            admin1,
            admin2,
            session,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_start_sent_again_after_the_engine_s_node_died_is_answered_not_refused() {
    let cluster = crate::nodes::cluster().await;
    let Pair {
        mut one,
        two,
        admin1,
        admin2,
        session,
    } = Pair::start(&cluster).await;

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

/// The value of the hidden field `name` of a page's form.
fn hidden(page: &str, name: &str) -> String {
    http::field(page, name).expect("the field")
}

/// The console on a node that does not run the status engine, whose node froze: the start
/// gets no answer in time, and the page comes back with the same form to send it again, which
/// starts the session once the engine runs elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_offers_to_send_again_a_start_that_got_no_answer() {
    let cluster = crate::nodes::cluster().await;
    let Pair {
        one,
        two,
        admin2,
        session,
        ..
    } = Pair::start(&cluster).await;
    let moderator = issued_token(&admin2, pb::Role::Moderator, "", "Sokha, moderator").await;
    let session_name = two.session_cookie();
    let signed_in = format!("{session_name}={moderator}");
    let confirm_path = format!("/m/confirm/start/{}", session.id);
    let confirm = tokio::time::timeout(PATIENCE, async {
        loop {
            let page = http::request(
                &two.addr,
                "GET",
                &confirm_path,
                &[("cookie", &signed_in)],
                "",
            )
            .await
            .unwrap();
            if page.status == 200 {
                return page;
            }
            // Node two has not read the session yet.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the confirmation page");
    let (csrf, request_id) = (
        hidden(&confirm.body, "csrf"),
        hidden(&confirm.body, "request_id"),
    );
    let cookies = format!("{signed_in}; podium_csrf={csrf}");
    let stage_path = format!("/m/stage/start/{}", session.id);
    let press = |page: &str| {
        let fields = [
            ("csrf", csrf.clone()),
            ("kind", hidden(page, "kind")),
            ("speaker", hidden(page, "speaker")),
            ("request_id", hidden(page, "request_id")),
        ];
        let body = form(
            &fields
                .iter()
                .map(|(k, v)| (*k, v.as_str()))
                .collect::<Vec<_>>(),
        );
        let (addr, cookies, path) = (two.addr.clone(), cookies.clone(), stage_path.clone());
        async move {
            http::request(&addr, "POST", &path, &[("cookie", &cookies)], &body)
                .await
                .unwrap()
        }
    };

    // The node that runs the engine freezes: it hears the start and does not answer (504).
    // Should NATS have dropped the silent node before the start left (it does after a few
    // seconds; a loaded machine can delay the press that long), no one hears it (503): the
    // same page, saying podium could not confirm.
    one.signal(Signal::SIGSTOP).unwrap();
    let unanswered = press(&confirm.body).await;
    assert!(
        matches!(unanswered.status, 503 | 504),
        "{} {}",
        unanswered.status,
        unanswered.body
    );
    assert!(
        unanswered.body.contains("Send again"),
        "{}",
        unanswered.body
    );
    assert!(
        unanswered.body.contains("it is carried out only once"),
        "{}",
        unanswered.body
    );
    assert_eq!(hidden(&unanswered.body, "request_id"), request_id);

    // Node two takes the engine over; the moderator taps "Send again".
    until_holds(&two, true).await;
    let sent = tokio::time::timeout(PATIENCE, async {
        loop {
            let sent = press(&unanswered.body).await;
            match sent.status {
                303 => return sent,
                // Node two has just taken over and is still reading the session.
                503 | 504 => tokio::time::sleep(Duration::from_millis(200)).await,
                _ => panic!("{} {}", sent.status, sent.body),
            }
        }
    })
    .await
    .expect("sent again in time");
    assert_eq!(sent.header("location"), Some("/m/?done=ok"));
    // Once more, as a double tap: answered, not "already live".
    let twice = press(&unanswered.body).await;
    assert_eq!(twice.status, 303, "{}", twice.body);
    let status = super::status_on(&admin2, &session.id).await;
    assert_eq!(status.state(), pb::SessionState::Live);
    one.signal(Signal::SIGCONT).unwrap();
}
