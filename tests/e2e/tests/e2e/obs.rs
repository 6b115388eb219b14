//! The playout bridge against a real OBS Studio: `podiumd`, a speaker agent, `podium bridge
//! obs` and OBS under Xvfb are separate processes; the test reads OBS back through its own
//! obs-websocket connection, as a person at the production machine would see it.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use nix::sys::signal::Signal;
use podium_bridge::Obs;
use podium_client::pb;
use podium_e2e::{
    CONFERENCE, PATIENCE, Show, Speaker, Talk, binary,
    board::{millis, watch_session},
    cli, cli_lines, cli_process, http,
    obs::{MEDIA_INPUT, ObsStudio, PASSWORD, talk_mp4},
    signal,
};
use tokio::sync::mpsc;

/// The bridge's playout machine: its configuration, its recordings, its log.
struct Playout {
    dir: tempfile::TempDir,
    bridge: Option<Child>,
}

impl Playout {
    /// Writes the bridge's configuration for the show's hall and starts `podium bridge obs`.
    fn start(show: &Show, obs: &ObsStudio, token: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "room = \"{room}\"\nrecordings_dir = \"{dir}/recordings\"\nname = \"playout-test\"\n\n\
             [obs]\naddress = \"{address}\"\nmedia_input = \"{MEDIA_INPUT}\"\n\n\
             [scenes]\nspeaker = \"Speaker\"\nbackup = \"Backup\"\nrecording = \"Recording\"\nslate = \"Slate\"\n",
            room = show.odc.hall.id,
            dir = dir.path().display(),
            address = obs.address(),
        );
        std::fs::write(dir.path().join("bridge.toml"), config).unwrap();
        let mut playout = Self { dir, bridge: None };
        playout.launch(show, token);
        playout
    }

    fn launch(&mut self, show: &Show, token: &str) {
        let log = std::fs::File::create(self.dir.path().join("bridge.log")).unwrap();
        let config = self.dir.path().join("bridge.toml");
        let child = Command::new(binary("podium").unwrap())
            .args(["--conference", CONFERENCE, "bridge", "obs", "--config"])
            .arg(&config)
            .env("PODIUM_ADDR", &show.server.addr)
            .env("PODIUM_TOKEN", token)
            .env("OBS_PASSWORD", PASSWORD)
            .env("PODIUM_CONFIG", self.dir.path().join("cli.toml"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.bridge = Some(child);
    }

    fn recordings(&self) -> PathBuf {
        self.dir.path().join("recordings")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("bridge.log")).unwrap_or_default()
    }
}

impl Drop for Playout {
    fn drop(&mut self) {
        if let Some(mut child) = self.bridge.take() {
            let _ = signal(&child, Signal::SIGINT);
            std::thread::sleep(Duration::from_millis(300));
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- bridge log ---\n{}", self.log());
        }
    }
}

/// The show's talk in the hall, Sarah as backup, back to the speaker once stable for 2 s,
/// with the test talk uploaded through the CLI; a speaker token for Sokha and an integration
/// token for the bridge.
async fn stage() -> (Show, String, String) {
    let talk = Talk::new(
        "Open data in Cambodia",
        "2030-11-14T02:00:00Z",
        "2030-11-14T02:45:00Z",
    )
    .backup(Speaker::Sarah)
    .failover(pb::FailoverPolicy {
        failback: pb::FailbackMode::ReturnWhenStable as i32,
        clear_after_ms: 2_000,
        ..Default::default()
    });
    let show = Show::start().session(talk).await.unwrap();
    let admin = show.server.admin_token().unwrap();
    let media = talk_mp4().unwrap();
    let (ok, out, err) = cli(
        &show.server,
        &admin,
        &[
            "--conference",
            CONFERENCE,
            "recording",
            "upload",
            media.to_str().unwrap(),
            "--session",
            show.session_id(),
            "--duration",
            "60s",
        ],
    )
    .unwrap();
    assert!(ok, "upload: {out}{err}");
    let speaker = show
        .token(pb::Role::Speaker, Some(Speaker::Sokha), "Sokha's laptop")
        .await
        .unwrap();
    let integration = show
        .token(pb::Role::Integration, None, "playout machine")
        .await
        .unwrap();
    (show, speaker, integration)
}

/// Waits until the session's program output satisfies `what`; returns the status.
async fn until_output(
    rx: &mut mpsc::UnboundedReceiver<pb::SessionStatus>,
    what: impl Fn(&pb::ProgramOutput, &pb::SessionStatus) -> bool,
) -> pb::SessionStatus {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut last = None;
    loop {
        let Ok(status) = tokio::time::timeout_at(deadline, rx.recv()).await else {
            panic!("no such output in time; last status: {last:#?}");
        };
        let status = status.expect("watcher alive");
        if let Some(output) = &status.output
            && what(output, &status)
        {
            return status;
        }
        last = Some(status);
    }
}

fn decided(output: &pb::ProgramOutput) -> pb::SourceKind {
    output
        .decided
        .as_ref()
        .map_or(pb::SourceKind::Unspecified, |s| s.kind())
}

fn confirmed(output: &pb::ProgramOutput, kind: pb::SourceKind, scene: &str) -> bool {
    output.confirmed && decided(output) == kind && output.scene == scene
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// How far OBS's media cursor is from where the talk is now.
async fn cursor_error(obs: &Obs, source: &pb::Source) -> i64 {
    let media = obs.media(MEDIA_INPUT).await.unwrap();
    assert!(media.playing, "the recording is {}", media.state);
    let expected = source.offset_ms + (now_ms() - millis(&source.since));
    media.cursor_ms as i64 - expected as i64
}

async fn program(obs: &Obs) -> String {
    obs.program_scene().await.unwrap()
}

async fn stage_call(show: &Show, kind: pb::SourceKind) {
    show.admin
        .stage()
        .switch_source(pb::SwitchSourceRequest {
            conference_id: CONFERENCE.into(),
            session_id: show.session_id().into(),
            kind: kind as i32,
            ..Default::default()
        })
        .await
        .unwrap();
}

async fn start_session(show: &Show) {
    show.admin
        .stage()
        .start_session(pb::StartSessionRequest {
            request_id: podium_client::Client::request_id(),
            conference_id: CONFERENCE.into(),
            session_id: show.session_id().into(),
        })
        .await
        .unwrap();
}

/// The first line of `podium status watch` (not on a terminal: a line per change) that
/// contains `wanted`.
async fn cli_board_line(show: &Show, wanted: &str) -> String {
    let token = show.server.admin_token().unwrap();
    let mut watch = cli_lines(
        &show.server,
        &token,
        &["--conference", CONFERENCE, "status", "watch"],
    )
    .unwrap();
    watch.find(wanted).await.unwrap()
}

/// The moderator console's page, signed in with a moderator's link.
async fn web_board(show: &Show) -> String {
    let addr = &show.server.addr;
    let moderator = show
        .token(pb::Role::Moderator, None, "Sokha, moderator")
        .await
        .unwrap();
    let signed_in = http::request(addr, "GET", &format!("/m/?token={moderator}"), &[], "")
        .await
        .unwrap();
    let session_name = show.server.session_cookie();
    let cookie = format!(
        "{session_name}={}",
        signed_in.cookie(&session_name).unwrap()
    );
    http::request(addr, "GET", "/m/", &[("cookie", &cookie)], "")
        .await
        .unwrap()
        .body
}

/// The recording is on the playout machine once the pre-flight report says so.
async fn until_recording_on_playout(show: &Show) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let report = show.preflight().await.unwrap();
        if report.sessions.iter().any(|s| s.recording_on_playout) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{report:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn screenshot_path(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/obs");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Connects Sokha's agent, starts the session and waits until OBS shows the speaker.
async fn go_live(
    show: &Show,
    speaker: &str,
    board: &mut mpsc::UnboundedReceiver<pb::SessionStatus>,
) -> (Child, pb::SessionStatus) {
    let agent = cli_process(
        &show.server,
        speaker,
        &["speaker", "connect", "--session", show.session_id()],
    )
    .unwrap();
    start_session(show).await;
    let live = until_output(board, |o, _| {
        confirmed(o, pb::SourceKind::Speaker, "Speaker")
    })
    .await;
    (agent, live)
}

#[tokio::test]
async fn a_dropped_link_reaches_obs_and_the_moderators_switches_follow() {
    let (show, speaker, integration) = stage().await;
    let obs_studio = ObsStudio::start().await.unwrap();
    let obs = obs_studio.connect().await.unwrap();
    let playout = Playout::start(&show, &obs_studio, &integration);
    let mut board = watch_session(&show.admin, show.session_id());
    until_recording_on_playout(&show).await;

    let (mut agent, live) = go_live(&show, &speaker, &mut board).await;
    assert!(live.output.unwrap().bridge_connected);
    let before = obs.screenshot("Speaker", 320).await.unwrap();
    std::fs::write(screenshot_path("program-before-fallback.png"), &before).unwrap();
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    // The speaker's laptop freezes: heartbeats stop, podium falls back, OBS follows.
    signal(&agent, Signal::SIGSTOP).unwrap();
    let fallen = until_output(&mut board, |o, _| {
        confirmed(o, pb::SourceKind::Recording, "Recording")
    })
    .await;
    let output = fallen.output.clone().unwrap();
    let source = fallen.source.clone().unwrap();
    assert_eq!(
        output.decided.as_ref(),
        Some(&source),
        "the bridge carried out this decision"
    );
    assert_eq!(program(&obs).await, "Recording");
    let error = cursor_error(&obs, &source).await;
    // The bridge's own bound for a confirmed recording: OBS decodes in software here, and on a
    // loaded machine its playback falls behind the wall clock. The talk is further in than
    // that, so a recording played from its start still fails.
    assert!(
        source.offset_ms > podium_bridge::CURSOR_TOLERANCE_MS,
        "{source:?}"
    );
    assert!(
        error.unsigned_abs() <= podium_bridge::CURSOR_TOLERANCE_MS,
        "OBS's cursor is {error} ms from the talk's position"
    );
    assert_eq!(output.media_state, "playing");
    println!(
        "fallback confirmed by OBS {} ms after the decision (offset {} ms, cursor off by {error} ms)",
        output.delay_ms, source.offset_ms
    );
    // Both boards put what OBS shows beside what podium decided.
    let line = cli_board_line(&show, "program: confirmed: Recording").await;
    assert!(line.contains("RECORDING"), "{line}");
    let console = web_board(&show).await;
    assert!(
        console.contains("confirmed: Recording"),
        "the console's board: {console}"
    );
    // A flat colour compresses to a few hundred bytes; the talk's test pattern does not. OBS
    // draws the media input's next decoded frame on its next render, which on a loaded machine
    // can trail the cursor the bridge read back: look again for a few seconds.
    let looked = Instant::now();
    let after = loop {
        let shot = obs.screenshot("Recording", 320).await.unwrap();
        if shot.len() > 4 * before.len() || looked.elapsed() > Duration::from_secs(10) {
            break shot;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!(
        "the talk's picture was on the program after looking for {} ms",
        looked.elapsed().as_millis()
    );
    std::fs::write(screenshot_path("program-after-fallback.png"), &after).unwrap();
    assert!(
        after.len() > 4 * before.len(),
        "speaker {} bytes, recording {} bytes",
        before.len(),
        after.len()
    );

    // The link comes back: return_when_stable puts the speaker back on OBS.
    signal(&agent, Signal::SIGCONT).unwrap();
    until_output(&mut board, |o, _| {
        confirmed(o, pb::SourceKind::Speaker, "Speaker")
    })
    .await;
    assert_eq!(program(&obs).await, "Speaker");

    // The moderator's switches reach OBS. Pinned, no rule moves the backup speaker, whose
    // link never came up, off air: not in podium, not in OBS.
    stage_call(&show, pb::SourceKind::Slate).await;
    until_output(&mut board, |o, _| {
        confirmed(o, pb::SourceKind::Slate, "Slate")
    })
    .await;
    show.admin
        .stage()
        .pin(pb::PinRequest {
            request_id: podium_client::Client::request_id(),
            conference_id: CONFERENCE.into(),
            session_id: show.session_id().into(),
            pinned: true,
        })
        .await
        .unwrap();
    stage_call(&show, pb::SourceKind::BackupSpeaker).await;
    until_output(&mut board, |o, _| {
        confirmed(o, pb::SourceKind::BackupSpeaker, "Backup")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    assert_eq!(program(&obs).await, "Backup");
    agent.kill().unwrap();
    agent.wait().unwrap();
    drop(playout);
}

#[tokio::test]
async fn obs_restarts_podiumd_restarts_and_a_person_switching_scenes_are_handled() {
    let (mut show, speaker, integration) = stage().await;
    let mut obs_studio = ObsStudio::start().await.unwrap();
    let playout = Playout::start(&show, &obs_studio, &integration);
    let mut board = watch_session(&show.admin, show.session_id());
    until_recording_on_playout(&show).await;
    let (mut agent, _) = go_live(&show, &speaker, &mut board).await;
    agent.kill().unwrap();
    agent.wait().unwrap();
    until_output(&mut board, |o, _| {
        confirmed(o, pb::SourceKind::Recording, "Recording")
    })
    .await;

    // OBS crashes mid-fallback: the board says so; back, it plays the talk from where it is.
    obs_studio.kill().unwrap();
    until_output(&mut board, |o, _| {
        o.problems
            .iter()
            .any(|p| p.kind() == pb::PlayoutProblemKind::ObsUnreachable)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    obs_studio.restart().await.unwrap();
    let restored = until_output(&mut board, |o, _| {
        confirmed(o, pb::SourceKind::Recording, "Recording") && o.problems.is_empty()
    })
    .await;
    let obs = obs_studio.connect().await.unwrap();
    assert_eq!(program(&obs).await, "Recording");
    let error = cursor_error(&obs, restored.source.as_ref().unwrap()).await;
    assert!(
        error.abs() <= 1_500,
        "after OBS restarted, cursor off by {error} ms"
    );

    // A person at the OBS machine cuts to the slate: reported, and left alone.
    obs.switch("Slate").await.unwrap();
    until_output(&mut board, |o, _| o.manual_override && o.scene == "Slate").await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(program(&obs).await, "Slate", "the bridge fought the person");

    // podiumd is killed and starts again: the bridge follows it again and replays no old
    // decision.
    drop(board);
    show.server.crash_and_restart().await.unwrap();
    show.admin = show.server.admin().await.unwrap();
    let mut board = watch_session(&show.admin, show.session_id());
    let back = until_output(&mut board, |o, _| {
        o.bridge_connected && o.manual_override && o.scene == "Slate"
    })
    .await;
    assert_eq!(
        back.source.as_ref().map(|s| s.kind()),
        Some(pb::SourceKind::Recording)
    );
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(program(&obs).await, "Slate", "an old decision was replayed");

    // The playout machine dies while podiumd is down: once podiumd is back, the board must not
    // show its bridge connected for ever (it waits --reconnect-grace for it to report).
    drop(board);
    show.server.stop(Signal::SIGTERM).await.unwrap();
    drop(playout);
    show.server.start_again().unwrap();
    show.admin = show.server.admin().await.unwrap();
    let mut board = watch_session(&show.admin, show.session_id());
    until_output(&mut board, |o, _| !o.bridge_connected).await;
}

#[tokio::test]
async fn the_bridge_fetches_recordings_ahead_and_fetches_a_corrupted_copy_again() {
    let (show, _speaker, integration) = stage().await;
    let obs_studio = ObsStudio::start().await.unwrap();
    let mut playout = Playout::start(&show, &obs_studio, &integration);
    until_recording_on_playout(&show).await;
    let copies: Vec<PathBuf> = std::fs::read_dir(playout.recordings())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(copies.len(), 1, "{copies:?}");
    let original = std::fs::read(talk_mp4().unwrap()).unwrap();
    assert_eq!(std::fs::read(&copies[0]).unwrap(), original);

    // Someone's disk flips bytes; the bridge restarts and checks what it holds.
    let mut bytes = original.clone();
    bytes[1000] ^= 0xff;
    std::fs::write(&copies[0], &bytes).unwrap();
    let mut bridge = playout.bridge.take().unwrap();
    signal(&bridge, Signal::SIGINT).unwrap();
    bridge.wait().unwrap();
    playout.launch(&show, &integration);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while std::fs::read(&copies[0]).ok().as_ref() != Some(&original) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the corrupted copy stayed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        playout.log().contains("does not match its SHA-256"),
        "{}",
        playout.log()
    );
}
