//! The bridge's loop: follow the room's status, carry out each new decision in OBS, read the
//! result back, and keep the picture the reporter sends to podium.
//!
//! One task owns the state and OBS's connection; the local copies are prepared by a task of
//! their own (a fetch must never hold up a fallback), and the reports go out through a third.

use std::{
    collections::BTreeMap,
    future::Future,
    path::PathBuf,
    pin::pin,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use futures::{StreamExt, stream::BoxStream};
use obws::events::Event;
use podium_client::{Client, StatusUpdate, pb};
use tokio::{sync::watch, time::Instant};

use crate::{
    config::Config,
    library::Library,
    obs::{Obs, ObsError},
    report,
};

/// A recording on air is confirmed when OBS's cursor is this close to where the talk is.
pub const CURSOR_TOLERANCE_MS: u64 = 1_500;
/// How often the picture is read back from OBS, and a lost OBS is tried again at most.
const TICK: Duration = Duration::from_secs(1);
/// OBS's event for a scene the bridge switched to within this long is the bridge's own.
const RECENT: Duration = Duration::from_secs(2);
/// How often the local copies are brought up to date with new uploads.
const PREPARE_EVERY: Duration = Duration::from_secs(60);

/// Why the bridge stopped.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("podium refused: {}", .0.message())]
    Podium(#[from] tonic::Status),
    /// The configuration names no room (a bridge serves one; [`Config::from_toml`] refuses
    /// such a file, a `Config` built in code is checked here).
    #[error("the bridge's room must not be empty")]
    NoRoom,
}

/// Runs the bridge for `config.room` until `shutdown` completes or podium refuses for good (a
/// bad token, an unknown conference).
pub async fn run(
    client: Client,
    conference_id: String,
    config: Config,
    obs_password: Option<String>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), BridgeError> {
    if config.room.trim().is_empty() {
        return Err(BridgeError::NoRoom);
    }
    let name = config.name.clone().unwrap_or_else(host_name);
    let initial = pb::ProgramOutput {
        room_id: config.room.clone(),
        bridge: name,
        ..Default::default()
    };
    let (report_tx, report_rx) = watch::channel(initial.clone());
    let reporter = tokio::spawn(report::run(
        client.clone(),
        conference_id.clone(),
        report_rx,
    ));
    let (sessions_tx, sessions_rx) = watch::channel(Vec::new());
    let (held_tx, mut held_rx) = watch::channel(Held::default());
    let recheck = std::sync::Arc::new(tokio::sync::Notify::new());
    let library = tokio::spawn(prepare_library(
        client.clone(),
        conference_id.clone(),
        Library::new(config.recordings_dir.clone()),
        sessions_rx,
        held_tx,
        recheck.clone(),
    ));
    let mut state = State {
        config,
        obs_password,
        sessions: BTreeMap::new(),
        decision: None,
        expected_scene: None,
        output: initial,
        obs: None,
        next_attempt: Instant::now(),
        held: Held::default(),
        apply_problems: Vec::new(),
        read_problem: None,
        obs_error: String::new(),
        recent_scenes: Vec::new(),
        recheck,
    };
    let mut status = pin!(client.watch_status(&conference_id, &state.config.room));
    let mut events: Option<BoxStream<'static, Event>> = None;
    let mut tick = tokio::time::interval(TICK);
    let mut shutdown = pin!(shutdown);
    let result = loop {
        tokio::select! {
            update = status.next() => match update {
                Some(Ok(update)) => {
                    state.on_status(update).await;
                    let ids: Vec<String> = state.sessions.keys().cloned().collect();
                    sessions_tx.send_if_modified(|known| (*known != ids).then(|| *known = ids).is_some());
                }
                Some(Err(status)) => break Err(status.into()),
                None => break Ok(()),
            },
            event = next_event(&mut events) => match event {
                Some(Event::CurrentProgramSceneChanged { name }) => state.on_scene(name),
                Some(_) => {}
                None => {
                    events = None;
                    state.lost(obws::Error::Disconnected.into());
                }
            },
            Ok(()) = held_rx.changed() => {
                state.held = held_rx.borrow_and_update().clone();
                // The copy a fallback lacked has arrived: put the recording on air now.
                if state.apply_problems.iter().any(|p| p.kind == pb::PlayoutProblemKind::RecordingMissing as i32) {
                    state.apply().await;
                }
            }
            _ = tick.tick() => {
                if state.obs.is_none() && Instant::now() >= state.next_attempt {
                    events = state.reconnect().await;
                } else {
                    state.read_back().await;
                }
            }
            () = &mut shutdown => break Ok(()),
        }
        state.output.problems = state.problems();
        state.output.recordings_held = state.held.files.keys().cloned().collect();
        report_tx.send_if_modified(|sent| {
            (*sent != state.output)
                .then(|| *sent = state.output.clone())
                .is_some()
        });
    };
    library.abort();
    // The reporter's stream ends with the channel, and podium stores "bridge disconnected".
    drop(report_tx);
    let _ = tokio::time::timeout(Duration::from_secs(3), reporter).await;
    result
}

/// What the library task has ready.
#[derive(Debug, Clone, Default, PartialEq)]
struct Held {
    files: BTreeMap<String, PathBuf>,
    problems: Vec<String>,
}

async fn prepare_library(
    client: Client,
    conference_id: String,
    mut library: Library,
    mut sessions: watch::Receiver<Vec<String>>,
    held: watch::Sender<Held>,
    recheck: std::sync::Arc<tokio::sync::Notify>,
) {
    loop {
        let ids = sessions.borrow_and_update().clone();
        if !ids.is_empty() {
            let files = |library: &Library| -> BTreeMap<String, PathBuf> {
                library
                    .held()
                    .into_iter()
                    .filter_map(|id| library.file(&id).map(|p| (id, p.to_path_buf())))
                    .collect()
            };
            let problems = library
                .prepare(&client, &conference_id, &ids, |library| {
                    let files = files(library);
                    held.send_if_modified(|h| {
                        (h.files != files).then(|| h.files = files).is_some()
                    });
                })
                .await;
            for problem in &problems {
                tracing::warn!(%problem, "a recording is not ready on this machine");
            }
            held.send_replace(Held {
                files: files(&library),
                problems,
            });
        }
        tokio::select! {
            changed = sessions.changed() => if changed.is_err() { return },
            () = recheck.notified() => {
                for id in library.held() {
                    if library.file(&id).is_some_and(|p| !p.exists()) {
                        library.forget(&id);
                    }
                }
            }
            () = tokio::time::sleep(PREPARE_EVERY) => {}
        }
    }
}

async fn next_event(events: &mut Option<BoxStream<'static, Event>>) -> Option<Event> {
    match events {
        Some(stream) => stream.next().await,
        None => std::future::pending().await,
    }
}

struct State {
    config: Config,
    obs_password: Option<String>,
    /// The room's sessions as podium last said.
    sessions: BTreeMap<String, pb::SessionStatus>,
    /// The decision being carried out: the room's live session and its source.
    decision: Option<(String, pb::Source)>,
    /// The scene the bridge last put on the program, to tell a person's switch from its own.
    expected_scene: Option<String>,
    output: pb::ProgramOutput,
    obs: Option<Obs>,
    next_attempt: Instant,
    held: Held,
    /// What went wrong carrying out the current decision.
    apply_problems: Vec<pb::PlayoutProblem>,
    /// What OBS refused when the output was last read back.
    read_problem: Option<pb::PlayoutProblem>,
    /// Why OBS was last unreachable.
    obs_error: String,
    /// Scenes the bridge itself switched to lately: OBS's events for them are not a person's.
    recent_scenes: Vec<(String, Instant)>,
    recheck: std::sync::Arc<tokio::sync::Notify>,
}

fn problem(kind: pb::PlayoutProblemKind, message: String) -> pb::PlayoutProblem {
    pb::PlayoutProblem {
        kind: kind as i32,
        message,
    }
}

impl State {
    fn problems(&self) -> Vec<pb::PlayoutProblem> {
        let mut problems = Vec::new();
        if self.obs.is_none() {
            problems.push(problem(
                pb::PlayoutProblemKind::ObsUnreachable,
                format!(
                    "OBS unreachable at {}: {}",
                    self.config.obs.address, self.obs_error
                ),
            ));
        }
        problems.extend(self.apply_problems.iter().cloned());
        problems.extend(self.read_problem.iter().cloned());
        problems.extend(
            self.held
                .problems
                .iter()
                .take(4)
                .map(|p| problem(pb::PlayoutProblemKind::RecordingMissing, p.clone())),
        );
        problems
    }

    async fn on_status(&mut self, update: StatusUpdate) {
        let sessions = match update {
            StatusUpdate::Snapshot { sessions, .. } => sessions,
            StatusUpdate::Changed { session, .. } => vec![*session],
        };
        fold(&mut self.sessions, self.config.room.trim(), sessions);
        // The room's live session; the latest to go live if two overlap.
        let decision = self
            .sessions
            .values()
            .filter(|s| s.state == pb::SessionState::Live as i32)
            .max_by_key(|s| s.went_live_at.map(|t| (t.seconds, t.nanos)))
            .and_then(|s| Some((s.session_id.clone(), s.source.clone()?)));
        // The same decision again (a resumed watch, another field changed): nothing to do.
        if decision.is_some() && decision != self.decision {
            self.decision = decision;
            self.output.manual_override = false;
            self.apply().await;
        }
    }

    /// Carries out the current decision: for a recording, the media first (play, seek to where
    /// the talk is now), then the scene, so the audience never sees a black frame or the
    /// talk's start.
    async fn apply(&mut self) {
        let Some((session_id, source)) = self.decision.clone() else {
            return;
        };
        self.apply_problems.clear();
        self.output.session_id = session_id.clone();
        self.output.decided = Some(source.clone());
        self.output.confirmed = false;
        self.output.confirmed_at = None;
        let mut scene = self.config.scene_for(&source).to_owned();
        let Some(obs) = &self.obs else {
            return;
        };
        if source.kind == pb::SourceKind::Recording as i32 {
            match self
                .held
                .files
                .get(&source.recording_id)
                .filter(|p| p.exists())
            {
                None => {
                    self.recheck.notify_one();
                    self.apply_problems.push(problem(
                        pb::PlayoutProblemKind::RecordingMissing,
                        format!(
                            "recording {} is not on the playout machine: slate on air",
                            source.recording_id
                        ),
                    ));
                    scene = self.config.scenes.slate.clone();
                }
                Some(file) => {
                    let position = || talk_position(&source);
                    tracing::info!(session = %session_id, recording = %source.recording_id, offset_ms = position(), "playing the recording");
                    if let Err(e) = obs
                        .play_from(&self.config.obs.media_input, file, position)
                        .await
                    {
                        self.apply_problems.push(problem(
                            pb::PlayoutProblemKind::SeekFailed,
                            format!(
                                "OBS did not play {} from {} ms: {e}",
                                source.recording_id,
                                position()
                            ),
                        ));
                    }
                }
            }
        }
        self.expected_scene = Some(scene.clone());
        self.recent_scenes.retain(|(_, at)| at.elapsed() < RECENT);
        self.recent_scenes.push((scene.clone(), Instant::now()));
        tracing::info!(session = %session_id, scene = %scene, "switching the program scene");
        match obs.switch(&scene).await {
            Ok(()) => {}
            Err(e) if e.is_transport() => {
                self.lost(e);
                return;
            }
            Err(e) => self.apply_problems.push(problem(
                pb::PlayoutProblemKind::SwitchFailed,
                format!("OBS did not switch to scene {scene}: {e}"),
            )),
        }
        self.read_back().await;
    }

    /// Reads the program scene, the media and the output's health back from OBS.
    async fn read_back(&mut self) {
        let Some(obs) = &self.obs else { return };
        let result: Result<(), ObsError> = async {
            let scene = obs.program_scene().await?;
            let expected = self.expected_scene.clone();
            // A person's switch back to the scene podium wants ends their override.
            if self.output.manual_override && expected.as_deref() == Some(scene.as_str()) {
                self.output.manual_override = false;
            }
            let mut confirmed = !self.output.manual_override
                && self.apply_problems.is_empty()
                && self.decision.is_some()
                && expected.as_deref() == Some(scene.as_str());
            let recording = self
                .decision
                .as_ref()
                .filter(|(_, s)| s.kind == pb::SourceKind::Recording as i32);
            if let Some((_, source)) = recording {
                let media = obs.media(&self.config.obs.media_input).await?;
                self.output.media_cursor_ms = media.cursor_ms;
                self.output.media_state = media.state.to_owned();
                confirmed &= media.playing
                    && media.cursor_ms.abs_diff(talk_position(source)) <= CURSOR_TOLERANCE_MS;
            } else {
                self.output.media_cursor_ms = 0;
                self.output.media_state.clear();
            }
            if confirmed && !self.output.confirmed {
                self.output.confirmed_at =
                    Some(podium_proto::time::timestamp_from_millis(now() as i64));
            }
            self.output.confirmed = confirmed;
            self.output.scene = scene;
            self.output.health = Some(obs.health().await?);
            Ok(())
        }
        .await;
        match result {
            Ok(()) => self.read_problem = None,
            Err(e) if e.is_transport() => self.lost(e),
            Err(e) => {
                self.output.confirmed = false;
                self.read_problem = Some(problem(
                    pb::PlayoutProblemKind::ObsRefused,
                    format!("OBS refused to read the output back: {e}"),
                ));
            }
        }
    }

    /// A person switched OBS's program scene: not undone, reported as an override.
    fn on_scene(&mut self, scene: String) {
        let own = self
            .recent_scenes
            .iter()
            .any(|(name, at)| *name == scene && at.elapsed() < RECENT);
        if own || self.expected_scene.as_deref() == Some(scene.as_str()) {
            return;
        }
        tracing::warn!(scene = %scene, "manual scene change in OBS: left alone until podium decides again");
        self.output.manual_override = true;
        self.output.confirmed = false;
        self.output.scene = scene;
    }

    fn lost(&mut self, error: ObsError) {
        if self.obs.take().is_some() {
            tracing::warn!(%error, "lost OBS; trying again");
        }
        self.obs_error = error.to_string();
        self.output.obs_connected = false;
        self.output.confirmed = false;
        self.next_attempt = Instant::now() + TICK;
    }

    /// Connects to OBS again and puts the current decision back on air, from where the talk
    /// is now (an OBS that restarted shows its saved scene and an idle media input).
    async fn reconnect(&mut self) -> Option<BoxStream<'static, Event>> {
        let password = self
            .obs_password
            .clone()
            .or_else(|| self.config.obs.password.clone());
        match Obs::connect(&self.config.obs.address, password.as_deref()).await {
            Ok(obs) => {
                let events = obs.events().ok().map(|s| s.boxed());
                tracing::info!(address = %self.config.obs.address, "connected to OBS");
                self.obs = Some(obs);
                self.output.obs_connected = true;
                self.output.manual_override = false;
                // OBS may have kept the decision (the connection dropped, OBS did not restart):
                // then nothing is switched or restarted.
                self.read_back().await;
                if !self.output.confirmed {
                    self.apply().await;
                }
                events
            }
            Err(error) => {
                let message = error.to_string();
                if message != self.obs_error {
                    tracing::warn!(%error, address = %self.config.obs.address, "OBS not reachable");
                }
                self.obs_error = message;
                self.next_attempt = Instant::now() + TICK * 2;
                None
            }
        }
    }
}

/// Where the talk is now: the decision's offset plus the time since it was made.
fn talk_position(source: &pb::Source) -> u64 {
    let since = podium_proto::time::millis(&source.since).max(0) as u64;
    source.offset_ms + now().saturating_sub(since)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "playout bridge".to_owned())
}

/// Folds statuses podium sent into the room's sessions. A session an organiser moved to
/// another room is sent once more, with its new room: it is no longer this room's.
fn fold(
    sessions: &mut BTreeMap<String, pb::SessionStatus>,
    room: &str,
    statuses: Vec<pb::SessionStatus>,
) {
    for status in statuses {
        if podium_client::left_room(room, &status) {
            sessions.remove(&status.session_id);
        } else {
            sessions.insert(status.session_id.clone(), status);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_moved_to_another_room_leaves_the_bridges_sessions() {
        let status = |id: &str, room: &str| pb::SessionStatus {
            session_id: id.into(),
            room_id: room.into(),
            ..Default::default()
        };
        let mut sessions = BTreeMap::new();
        fold(
            &mut sessions,
            "hall",
            vec![status("keynote", "hall"), status("panel", "hall")],
        );
        assert_eq!(sessions.len(), 2);
        fold(&mut sessions, "hall", vec![status("keynote", "breakout")]);
        assert_eq!(sessions.keys().collect::<Vec<_>>(), ["panel"]);
    }
}
