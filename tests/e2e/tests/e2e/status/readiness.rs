//! Before going live and at a glance: the pre-flight check until a session is ready, a green
//! room test beside a live agent, and the operator's one-screen status of the node.

use futures::StreamExt;
use podium_client::{Client, pb};
use podium_e2e::{CONFERENCE, PATIENCE, Speaker, board::watch_session};

use super::{on_air, stage, start, until, upload};

#[tokio::test]
async fn preflight_reports_what_is_missing_until_the_session_is_ready() {
    let (show, speaker_token) = stage(pb::FailbackMode::Sticky, false).await;
    let report = |client: Client| async move {
        let sessions = client
            .stage()
            .preflight(pb::PreflightRequest {
                conference_id: CONFERENCE.into(),
                within_hours: 0,
                all: true,
            })
            .await
            .unwrap()
            .into_inner()
            .sessions;
        assert_eq!(sessions.len(), 1);
        sessions.into_iter().next().unwrap()
    };
    let at_risk = report(show.admin.clone()).await;
    assert_eq!(at_risk.readiness(), pb::Readiness::AtRisk);
    assert!(
        at_risk
            .reasons
            .iter()
            .any(|r| r.contains("test connection")),
        "{:?}",
        at_risk.reasons
    );
    assert!(
        at_risk.reasons.iter().any(|r| r == "no verified recording"),
        "{:?}",
        at_risk.reasons
    );
    // Sarah is the backup, in New York: 02:00 UTC is 21:00 there, outside 08:00-21:00; the
    // reason names the end that is outside.
    assert!(
        at_risk.reasons.iter().any(|r| r.starts_with("starts ")
            && r.ends_with(
                " 21:00 for Sarah Miller in America/New_York, outside their hours 08:00-21:00"
            )),
        "{:?}",
        at_risk.reasons
    );
    // The same reasons as data, one for each and in the same order, for pages to say in their
    // reader's language.
    assert_eq!(at_risk.concerns.len(), at_risk.reasons.len());
    let concerns: Vec<_> = at_risk
        .concerns
        .iter()
        .map(|c| (c.kind(), c.speaker_id.as_str()))
        .collect();
    for (concern, reason) in concerns.iter().zip(&at_risk.reasons) {
        let kind = match concern.0 {
            pb::ReadinessConcernKind::NotTested => "test connection",
            pb::ReadinessConcernKind::NoRecording => "no verified recording",
            pb::ReadinessConcernKind::OutsideHours => "outside their hours",
            pb::ReadinessConcernKind::NoBackup => "no backup",
            other => panic!("unexpected concern {other:?} ({reason})"),
        };
        assert!(reason.contains(kind), "{concern:?} beside {reason:?}");
    }
    assert!(
        concerns.contains(&(
            pb::ReadinessConcernKind::OutsideHours,
            show.odc.sarah.id.as_str()
        )),
        "{concerns:?}"
    );
    assert!(
        concerns.contains(&(pb::ReadinessConcernKind::NoRecording, "")),
        "{concerns:?}"
    );
    // Sarah's: her start, in her zone, against her hours.
    let hours = at_risk
        .concerns
        .iter()
        .find(|c| c.kind() == pb::ReadinessConcernKind::OutsideHours)
        .unwrap();
    assert_eq!(
        (
            hours.ends,
            hours.hours.as_str(),
            hours.at.as_ref().map(|a| a.time_zone.as_str())
        ),
        (false, "08:00-21:00", Some("America/New_York"))
    );
    let sarah = at_risk
        .speakers
        .iter()
        .find(|s| s.speaker_id == show.odc.sarah.id)
        .unwrap();
    assert!(sarah.backup && !sarah.within_hours);
    assert_eq!(
        sarah.start.as_ref().unwrap().label,
        "Wed 13 Nov 2030 21:00 EST (America/New_York)"
    );

    // The green room, through the real CLI, and a recording.
    let (ok, out, err) = podium_e2e::cli(
        &show.server,
        &speaker_token,
        &[
            "speaker",
            "connect",
            "--session",
            show.session_id(),
            "--test",
        ],
    )
    .unwrap();
    assert!(ok, "{err}");
    assert!(out.contains("test connection recorded"), "{out}");
    // Read at once: the agent is told the test is recorded only once the report shows it.
    let tested = report(show.admin.clone()).await;
    let sokha = |report: &pb::SessionReadiness| {
        report
            .speakers
            .iter()
            .find(|s| s.speaker_id == show.odc.sokha.id)
            .unwrap()
            .tested
    };
    assert!(sokha(&tested), "{tested:?}");
    upload(&show.server, &show.admin, show.session_id(), 45 * 60 * 1000).await;
    let better = report(show.admin.clone()).await;
    assert_eq!(better.recordings, 1);
    assert!(sokha(&better));
    assert_eq!(
        better.reasons.len(),
        1,
        "only Sarah's hours remain: {:?}",
        better.reasons
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_green_room_test_while_live_leaves_the_live_agent_on_air() {
    let (show, speaker_token) = stage(pb::FailbackMode::Sticky, true).await;
    let speaker = Client::connect(&show.server.addr, Some(speaker_token.clone()))
        .await
        .unwrap();
    // The live agent runs in a task of its own, so its heartbeats go on while the test waits
    // for the CLI below; polled only by the test, it would fall silent and fail over.
    let agent = podium_client::agent::run_agent(
        speaker,
        podium_client::agent::AgentConfig::new(show.session_id()),
    );
    let (events, mut live) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        futures::pin_mut!(agent);
        while let Some(event) = agent.next().await {
            if events.send(event).is_err() {
                break;
            }
        }
    });
    assert!(matches!(
        live.recv().await,
        Some(Ok(podium_client::agent::AgentEvent::Connected(_)))
    ));
    start(&show).await;
    let (ok, out, err) = tokio::task::block_in_place(|| {
        podium_e2e::cli(
            &show.server,
            &speaker_token,
            &[
                "speaker",
                "connect",
                "--session",
                show.session_id(),
                "--test",
            ],
        )
    })
    .unwrap();
    assert!(ok && out.contains("test connection recorded"), "{out}{err}");
    // The live agent goes on: more acknowledged heartbeats, no replacement.
    for _ in 0..8 {
        let event = tokio::time::timeout(PATIENCE, live.recv())
            .await
            .expect("in time");
        assert!(
            matches!(
                event,
                Some(Ok(podium_client::agent::AgentEvent::Acked { .. }))
            ),
            "{event:?}"
        );
    }
    let status = show
        .admin
        .stage()
        .pin(pb::PinRequest {
            request_id: Client::request_id(),
            conference_id: CONFERENCE.into(),
            session_id: show.session_id().into(),
            pinned: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(on_air(&status), pb::SourceKind::Speaker);
}

/// `podium admin status` against a running podiumd, while a board follows a session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_reads_the_node_at_a_glance() {
    let (show, _) = stage(pb::FailbackMode::Sticky, true).await;
    let mut statuses = watch_session(&show.admin, show.session_id());
    until(&mut statuses, |_| true).await;
    let admin = show.server.admin_token().unwrap();
    let (ok, out, err) = tokio::task::block_in_place(|| {
        podium_e2e::cli(&show.server, &admin, &["admin", "status"]).unwrap()
    });
    assert!(ok, "{err}");
    let line = |what: &str| {
        out.lines()
            .find(|l| l.trim_start().starts_with(what))
            .unwrap_or_else(|| panic!("no {what} in {out}"))
            .to_owned()
    };
    assert!(line("version").contains(env!("CARGO_PKG_VERSION")), "{out}");
    assert!(line("log").contains("sled, head at "), "{out}");
    assert!(line("read models").contains("caught up"), "{out}");
    assert!(line("open streams").contains("WatchStatus 1"), "{out}");
    assert!(line("disk").contains("free"), "{out}");
    // A speaker's token is refused.
    let speaker = show
        .token(pb::Role::Speaker, Some(Speaker::Sokha), "Sokha's laptop")
        .await
        .unwrap();
    let (ok, _, err) = tokio::task::block_in_place(|| {
        podium_e2e::cli(&show.server, &speaker, &["admin", "status"]).unwrap()
    });
    assert!(!ok);
    assert!(err.contains("PermissionDenied"), "{err}");
    // Health needs no role: the container's health check runs `podium health`.
    let (ok, out, err) = tokio::task::block_in_place(|| {
        podium_e2e::cli(&show.server, &speaker, &["health"]).unwrap()
    });
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "SERVING");
}
