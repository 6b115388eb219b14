//! Live status with real processes: `podiumd`, a `podium speaker connect` agent killed or
//! stopped with real signals, and a watcher following the status stream through the client
//! library.

use std::time::Duration;

use futures::StreamExt;
use nix::sys::signal::Signal;
use podium_client::{Client, pb};
use podium_e2e::{
    CONFERENCE, PATIENCE, Podiumd, Show, Speaker, Talk,
    board::{millis, watch_session},
    cli_process, metrics, signal,
};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tonic::{Request, Status, metadata::MetadataValue};

mod readiness;
mod rooms;

/// The session's failover_after: three times podiumd's default, so a real agent process on a
/// loaded machine does not miss it before a test stops or kills it (it sends several heartbeats
/// a second). Tests that check nothing moved wait longer than this.
const FAILOVER_AFTER_MS: u32 = 3_000;

/// Long enough past [`FAILOVER_AFTER_MS`] that a failover, had one been due, has happened.
const PAST_FAILOVER_AFTER: Duration = Duration::from_millis(FAILOVER_AFTER_MS as u64 + 1_000);

/// The conference with one session (Sokha speaking, Sarah as backup) and optionally a
/// recording; returns it with a speaker token for Sokha.
async fn stage(failback: pb::FailbackMode, with_recording: bool) -> (Show, String) {
    stage_with(failback, with_recording, &[]).await
}

/// [`stage`] on a podiumd started with `args`.
async fn stage_with(
    failback: pb::FailbackMode,
    with_recording: bool,
    args: &[&str],
) -> (Show, String) {
    let talk = Talk::new(
        "Open data in Cambodia",
        "2030-11-14T02:00:00Z",
        "2030-11-14T02:45:00Z",
    )
    .backup(Speaker::Sarah)
    .failover(pb::FailoverPolicy {
        failback: failback as i32,
        clear_after_ms: 2_000,
        failover_after_ms: FAILOVER_AFTER_MS,
        ..Default::default()
    });
    let show = Show::start().args(args).session(talk).await.unwrap();
    if with_recording {
        upload(&show.server, &show.admin, show.session_id(), 45 * 60 * 1000).await;
    }
    let speaker_token = show
        .token(pb::Role::Speaker, Some(Speaker::Sokha), "Sokha's laptop")
        .await
        .unwrap();
    (show, speaker_token)
}

/// Uploads a small recording through the raw generated stub.
async fn upload(
    server: &Podiumd,
    _admin: &Client,
    session_id: &str,
    duration_ms: u64,
) -> pb::Recording {
    // An MP4 index of the talk's length around no media: probed and checked like a real one.
    let bytes = podium_client::placeholder_mp4(duration_ms);
    let header = pb::RecordingHeader {
        request_id: Client::request_id(),
        conference_id: CONFERENCE.into(),
        session_id: session_id.into(),
        sha256: hex::encode(Sha256::digest(&bytes)),
        size_bytes: bytes.len() as u64,
        media_type: "video/mp4".into(),
        duration_ms,
        language: "km".into(),
        captions: vec![],
        file_name: "talk.mp4".into(),
        backup: false,
    };
    let messages = vec![
        pb::UploadRecordingRequest {
            part: Some(pb::upload_recording_request::Part::Header(header)),
        },
        pb::UploadRecordingRequest {
            part: Some(pb::upload_recording_request::Part::Chunk(bytes)),
        },
    ];
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let token: MetadataValue<_> = format!("Bearer {}", server.admin_token().unwrap())
        .parse()
        .unwrap();
    let mut client = pb::recordings_client::RecordingsClient::with_interceptor(
        channel,
        move |mut r: Request<()>| {
            r.metadata_mut().insert("authorization", token.clone());
            Ok::<_, Status>(r)
        },
    );
    client
        .upload_recording(futures::stream::iter(messages))
        .await
        .unwrap()
        .into_inner()
        .recording
        .unwrap()
}

/// Waits until a status satisfies `what`; returns it.
pub(crate) async fn until(
    rx: &mut mpsc::UnboundedReceiver<pb::SessionStatus>,
    what: impl Fn(&pb::SessionStatus) -> bool,
) -> pb::SessionStatus {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let status = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("status in time")
            .expect("watcher alive");
        if what(&status) {
            return status;
        }
    }
}

pub(crate) fn on_air(s: &pb::SessionStatus) -> pb::SourceKind {
    s.source
        .as_ref()
        .map_or(pb::SourceKind::Unspecified, |s| s.kind())
}

pub(crate) fn speaker_link(s: &pb::SessionStatus, speaker_id: &str) -> pb::LinkState {
    s.links
        .iter()
        .find(|l| l.speaker_id == speaker_id)
        .map_or(pb::LinkState::Unspecified, |l| l.state())
}

async fn start(show: &Show) -> pb::SessionStatus {
    show.admin
        .stage()
        .start_session(pb::StartSessionRequest {
            request_id: Client::request_id(),
            conference_id: CONFERENCE.into(),
            session_id: show.session_id().into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap()
}

#[tokio::test]
async fn a_killed_agent_falls_back_to_the_recording_from_where_the_talk_had_got_to() {
    let (show, speaker_token) = stage(pb::FailbackMode::Sticky, true).await;
    let mut statuses = watch_session(&show.admin, show.session_id());
    let mut agent = cli_process(
        &show.server,
        &speaker_token,
        &["speaker", "connect", "--session", show.session_id()],
    )
    .unwrap();
    until(&mut statuses, |s| {
        speaker_link(s, &show.odc.sokha.id) == pb::LinkState::Healthy
    })
    .await;
    let live = start(&show).await;
    assert_eq!(on_air(&live), pb::SourceKind::Speaker);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let before = metrics::scrape(&show.server).await.unwrap();

    signal(&agent, Signal::SIGKILL).unwrap();
    agent.wait().unwrap();
    let fallen = until(&mut statuses, |s| on_air(s) == pb::SourceKind::Recording).await;
    let source = fallen.source.clone().unwrap();
    assert_eq!(fallen.cause(), pb::Cause::StreamClosed);
    // The recording starts where the live talk had got to.
    let went_live = millis(&fallen.went_live_at);
    assert_eq!(source.offset_ms, millis(&source.since) - went_live);
    assert!(source.offset_ms >= 1_500, "offset {} ms", source.offset_ms);
    assert_eq!(source.recording_sha256.len(), 64);
    // The stream may coalesce a session's states: the alert can come with the fallback.
    let alerted = if fallen.alerts.is_empty() {
        until(&mut statuses, |s| !s.alerts.is_empty()).await
    } else {
        fallen
    };
    assert_eq!(alerted.alerts[0].kind(), pb::AlertKind::Failover);
    assert!(
        alerted.alerts[0].message.contains(&show.odc.sokha.id),
        "{}",
        alerted.alerts[0].message
    );

    // The operator's figures moved with it, and Prometheus' linter takes them. The engine
    // counts a switch when the log acknowledges it, which may be just after the watcher saw it;
    // and a scrape reads one counter after another, so both are waited for.
    let counted = [
        r#"podium_failovers_total{cause="stream_closed"}"#,
        r#"podium_source_switches_total{to="recording",cause="stream_closed"}"#,
    ];
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let after = loop {
        let scraped = metrics::scrape(&show.server).await.unwrap();
        if counted
            .iter()
            .all(|series| metrics::sample(&scraped, series) > metrics::sample(&before, series))
            || tokio::time::Instant::now() > deadline
        {
            break scraped;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    metrics::promtool_check(&after).unwrap();
    // The Grafana dashboard asks only for what podiumd exports.
    let dashboard = metrics::dashboard_metrics().unwrap();
    assert!(dashboard.len() > 10, "{dashboard:?}");
    for name in dashboard {
        assert!(
            after.contains(&format!("# TYPE {name} ")),
            "deploy/grafana/podium.json queries {name}, which /metrics does not have"
        );
    }
    let moved = |series: &str| metrics::sample(&after, series) - metrics::sample(&before, series);
    assert_eq!(
        moved(r#"podium_failovers_total{cause="stream_closed"}"#),
        1.0
    );
    assert_eq!(
        moved(r#"podium_source_switches_total{to="recording",cause="stream_closed"}"#),
        1.0
    );
    let on_air = |text: &str, source: &str| {
        metrics::sample(
            text,
            &format!(r#"podium_sessions_on_air{{source="{source}"}}"#),
        )
    };
    assert_eq!(
        (on_air(&before, "speaker"), on_air(&before, "recording")),
        (1.0, 0.0)
    );
    assert_eq!(
        (on_air(&after, "speaker"), on_air(&after, "recording")),
        (0.0, 1.0)
    );
    assert_eq!(metrics::sample(&before, "podium_agents_connected"), 1.0);
    assert_eq!(metrics::sample(&after, "podium_agents_connected"), 0.0);
    // This test's watcher holds a status stream.
    assert!(metrics::sample(&after, r#"podium_open_streams{method="WatchStatus"}"#) >= 1.0);
    assert!(moved("podium_log_events_appended_total") >= 1.0, "{after}");
    assert!(moved("podium_log_head_position") >= 1.0, "{after}");
}

#[tokio::test]
async fn a_stopped_agent_falls_back_by_heartbeat_timeout_and_sticky_stays_on_the_recording() {
    let (show, speaker_token) = stage(pb::FailbackMode::Sticky, true).await;
    let mut statuses = watch_session(&show.admin, show.session_id());
    let mut agent = cli_process(
        &show.server,
        &speaker_token,
        &["speaker", "connect", "--session", show.session_id()],
    )
    .unwrap();
    until(&mut statuses, |s| {
        speaker_link(s, &show.odc.sokha.id) == pb::LinkState::Healthy
    })
    .await;
    start(&show).await;

    // SIGSTOP: no FIN, the TCP connection stays open, only the heartbeats stop.
    signal(&agent, Signal::SIGSTOP).unwrap();
    let fallen = until(&mut statuses, |s| on_air(s) == pb::SourceKind::Recording).await;
    assert_eq!(fallen.cause(), pb::Cause::HeartbeatTimeout);

    signal(&agent, Signal::SIGCONT).unwrap();
    until(&mut statuses, |s| {
        speaker_link(s, &show.odc.sokha.id) == pb::LinkState::Healthy
    })
    .await;
    // Well past clear_after (2 s): sticky keeps the recording on air.
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    let now = show
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
    assert_eq!(on_air(&now), pb::SourceKind::Recording);
    agent.kill().unwrap();
    agent.wait().unwrap();
}

#[tokio::test]
async fn return_when_stable_goes_back_to_the_speaker_after_clear_after() {
    let (show, speaker_token) = stage(pb::FailbackMode::ReturnWhenStable, true).await;
    let mut statuses = watch_session(&show.admin, show.session_id());
    let mut agent = cli_process(
        &show.server,
        &speaker_token,
        &["speaker", "connect", "--session", show.session_id()],
    )
    .unwrap();
    until(&mut statuses, |s| {
        speaker_link(s, &show.odc.sokha.id) == pb::LinkState::Healthy
    })
    .await;
    start(&show).await;
    signal(&agent, Signal::SIGSTOP).unwrap();
    until(&mut statuses, |s| on_air(s) == pb::SourceKind::Recording).await;
    signal(&agent, Signal::SIGCONT).unwrap();
    let healthy = until(&mut statuses, |s| {
        speaker_link(s, &show.odc.sokha.id) == pb::LinkState::Healthy
    })
    .await;
    let back = until(&mut statuses, |s| on_air(s) == pb::SourceKind::Speaker).await;
    assert_eq!(back.cause(), pb::Cause::LinkStable);
    let healthy_at = millis(
        &healthy
            .links
            .iter()
            .find(|l| l.speaker_id == show.odc.sokha.id)
            .unwrap()
            .changed_at,
    );
    assert!(
        millis(&back.source.as_ref().unwrap().since) >= healthy_at + 2_000,
        "returned before clear_after"
    );
    agent.kill().unwrap();
    agent.wait().unwrap();
}

#[tokio::test]
async fn a_moderator_switch_and_a_missing_recording_reach_the_watcher() {
    let (show, speaker_token) = stage(pb::FailbackMode::Sticky, false).await;
    let mut statuses = watch_session(&show.admin, show.session_id());
    start(&show).await;
    // No agent ever connected and there is no recording: the slate, with an alert.
    // The switch and its alert are two events of one append: the watcher sees both.
    let slate = until(&mut statuses, |s| {
        on_air(s) == pb::SourceKind::Slate && !s.alerts.is_empty()
    })
    .await;
    assert_eq!(slate.alerts[0].kind(), pb::AlertKind::NoRecording);

    let moderator = show.admin.stage();
    let switch = |kind: pb::SourceKind, recording: &str| pb::SwitchSourceRequest {
        request_id: Client::request_id(),
        conference_id: CONFERENCE.into(),
        session_id: show.session_id().into(),
        kind: kind as i32,
        speaker_id: String::new(),
        recording_id: recording.into(),
    };
    let missing = moderator
        .clone()
        .switch_source(switch(pb::SourceKind::Recording, "rec-nope"))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
    moderator
        .clone()
        .pin(pb::PinRequest {
            request_id: Client::request_id(),
            conference_id: CONFERENCE.into(),
            session_id: show.session_id().into(),
            pinned: true,
        })
        .await
        .unwrap();
    moderator
        .clone()
        .switch_source(switch(pb::SourceKind::BackupSpeaker, ""))
        .await
        .unwrap();
    let backup = until(&mut statuses, |s| {
        on_air(s) == pb::SourceKind::BackupSpeaker
    })
    .await;
    assert_eq!(
        backup.source.as_ref().unwrap().speaker_id,
        show.odc.sarah.id
    );
    assert_eq!(backup.cause(), pb::Cause::Moderator);
    assert!(backup.pinned);
    // Pinned: Sarah has no agent, yet no rule moves her off air, past failover_after.
    tokio::time::sleep(PAST_FAILOVER_AFTER).await;
    let still = moderator
        .clone()
        .pin(pb::PinRequest {
            request_id: Client::request_id(),
            conference_id: CONFERENCE.into(),
            session_id: show.session_id().into(),
            pinned: true,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(on_air(&still), pb::SourceKind::BackupSpeaker);

    let wrong_token = Client::connect(&show.server.addr, Some(speaker_token.clone()))
        .await
        .unwrap();
    let denied = wrong_token
        .stage()
        .switch_source(switch(pb::SourceKind::Slate, ""))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::PermissionDenied);
}

#[tokio::test]
async fn a_restart_mid_session_restores_the_source_and_fires_no_failover_inside_the_grace() {
    // A grace well past the agent's back-off (its attempts come 0.1, 0.3, 0.7, 1.5, 3.1, 6.3 s
    // after the drop): with the default 5 s, a slow stop and start on a loaded machine left the
    // agent's reconnection, and this test's 2.5 s of quiet after it, at the grace's edge.
    let (mut show, speaker_token) =
        stage_with(pb::FailbackMode::Sticky, true, &["--reconnect-grace", "20"]).await;
    let mut agent = cli_process(
        &show.server,
        &speaker_token,
        &["speaker", "connect", "--session", show.session_id()],
    )
    .unwrap();
    let mut statuses = watch_session(&show.admin, show.session_id());
    until(&mut statuses, |s| {
        speaker_link(s, &show.odc.sokha.id) == pb::LinkState::Healthy
    })
    .await;
    start(&show).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    show.server.restart().await.unwrap();
    // The agent reconnects by itself; give it well past failover_after, inside the grace.
    let admin = show.server.admin().await.unwrap();
    let mut statuses = watch_session(&admin, show.session_id());
    let restored = until(&mut statuses, |s| {
        speaker_link(s, &show.odc.sokha.id) == pb::LinkState::Healthy
    })
    .await;
    assert_eq!(on_air(&restored), pb::SourceKind::Speaker);
    tokio::time::sleep(PAST_FAILOVER_AFTER).await;
    let feed = admin.follow_feed(CONFERENCE, 0, vec!["podium.v1.SourceSwitched".into()]);
    futures::pin_mut!(feed);
    let first = feed.next().await.unwrap().unwrap();
    assert!(
        matches!(first, podium_client::FeedItem::CaughtUp(_)),
        "no source switch at all, found {first:?}"
    );
    agent.kill().unwrap();
    agent.wait().unwrap();
}

#[tokio::test]
async fn a_newer_agent_replaces_the_older_and_strangers_are_refused() {
    let (show, speaker_token) = stage(pb::FailbackMode::Sticky, true).await;
    let speaker = Client::connect(&show.server.addr, Some(speaker_token.clone()))
        .await
        .unwrap();
    let first = podium_client::agent::run_agent(
        speaker.clone(),
        podium_client::agent::AgentConfig::new(show.session_id()),
    );
    futures::pin_mut!(first);
    assert!(matches!(
        first.next().await,
        Some(Ok(podium_client::agent::AgentEvent::Connected(_)))
    ));
    let second = podium_client::agent::run_agent(
        speaker.clone(),
        podium_client::agent::AgentConfig::new(show.session_id()),
    );
    futures::pin_mut!(second);
    assert!(matches!(
        second.next().await,
        Some(Ok(podium_client::agent::AgentEvent::Connected(_)))
    ));
    // The older agent is told why it stops, and does not fight back.
    let told = loop {
        match tokio::time::timeout(PATIENCE, first.next())
            .await
            .expect("in time")
        {
            Some(Ok(podium_client::agent::AgentEvent::Acked { .. })) => continue,
            other => break other,
        }
    };
    let Some(Err(status)) = told else {
        panic!("expected the older agent to be replaced, got {told:?}")
    };
    assert_eq!(status.code(), tonic::Code::Aborted);
    assert!(
        status.message().contains("replaced by a newer agent"),
        "{}",
        status.message()
    );
    assert!(first.next().await.is_none(), "a replaced agent stops");

    // A speaker of another session, and a token that is not a speaker's, are refused.
    let other = Talk::new(
        "Another talk",
        "2030-11-15T02:00:00Z",
        "2030-11-15T02:30:00Z",
    )
    .by(Speaker::Sarah);
    let other_id = show.add_session(other).await.unwrap().id;
    let stranger =
        podium_client::agent::run_agent(speaker, podium_client::agent::AgentConfig::new(&other_id));
    futures::pin_mut!(stranger);
    let refused = stranger.next().await.unwrap().unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    assert!(
        refused.message().contains(&other_id),
        "{}",
        refused.message()
    );
    let not_a_speaker = podium_client::agent::run_agent(
        show.admin.clone(),
        podium_client::agent::AgentConfig::new(show.session_id()),
    );
    futures::pin_mut!(not_a_speaker);
    assert_eq!(
        not_a_speaker.next().await.unwrap().unwrap_err().code(),
        tonic::Code::PermissionDenied
    );
}
