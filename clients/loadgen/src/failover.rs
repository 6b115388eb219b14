//! The failover scenario: how long after a speaker's link drops a watcher sees the recording on
//! air, beyond the `failover_after` the session waits by design. The target (README, "Targets") is a p99
//! within `failover_after` + 100 ms, so the figure reported here should stay under 100 ms.
//!
//! One conference with a room, a speaker, a session (sticky failback), a recording and a
//! speaker token; the session goes live on the speaker. Three connections to podiumd: the
//! moderator (the admin token), a speaker agent that this scenario drives itself over
//! `Presence/Link`, and a watcher following `Stage/WatchStatus`. For each drop:
//!
//! 1. the speaker is on air with a healthy link (a moderator switches back after a fallback);
//! 2. heartbeats go on for 300 to 700 ms, varied so that the drop falls anywhere between two
//!    heartbeats and two engine ticks;
//! 3. the heartbeats stop: `t_drop` is the instant the last one was handed to the stream. In
//!    `freeze` mode the stream stays open, like a stopped process or a half-open link; in
//!    `close` mode the agent's connection is dropped, like a killed process;
//! 4. `t_seen` is the instant the watcher receives a status with the recording on air.
//!
//! The sample is `t_seen − t_drop − failover_after`. Both instants come from this process's
//! tokio clock, so no clocks need to agree. The report also splits each sample at the `since`
//! podiumd puts on the recording, the moment its engine decided: how late the rule fired, and
//! how long the decision took to reach the watcher. That split compares podiumd's wall clock
//! with this process's, which only agree on one machine, and only to the millisecond.

use std::{
    collections::BTreeMap,
    fmt,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, anyhow, bail};
use futures::StreamExt;
use podium_client::{Client, StatusUpdate, pb};
use sha2::{Digest, Sha256};
use tokio::{
    sync::{mpsc, oneshot},
    task::JoinHandle,
    time::Instant,
};
use tokio_stream::wrappers::ReceiverStream;

use crate::{Podium, stats::Distribution};

/// Target (README, "Targets"): p99 from the link dropping to the recording on air within failover_after + this.
pub const TARGET_MARGIN: Duration = Duration::from_millis(100);
/// How long a step that should happen at once may take before the scenario gives up.
const PATIENCE: Duration = Duration::from_secs(10);

/// How the agent drops its link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DropMode {
    /// Heartbeats stop, the stream stays open (a frozen agent, a half-open link).
    Freeze,
    /// Heartbeats stop and the agent's connection is closed (a killed agent).
    Close,
}

impl fmt::Display for DropMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DropMode::Freeze => "freeze: heartbeats stop, the stream stays open",
            DropMode::Close => "close: heartbeats stop, the connection is closed",
        })
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub drops: usize,
    /// The session's failover_after; podiumd accepts 100 ms and more.
    pub failover_after: Duration,
    pub mode: DropMode,
}

/// What the scenario measured.
#[derive(Debug, Clone)]
pub struct Report {
    pub config: Config,
    /// `t_seen − t_drop − failover_after` per drop, in microseconds.
    pub latency: Distribution,
    /// The same, split at the `since` podiumd put on the recording (its wall clock in whole
    /// milliseconds, so each part is ±1 ms): from the last heartbeat sent to the fallback
    /// decided, minus failover_after...
    pub decided: Distribution,
    /// ...and from the fallback decided to the watcher receiving it (the append with its
    /// flush, the subscription, the status stream).
    pub delivered: Distribution,
    /// How many fallbacks each cause produced, as the status reported it.
    pub causes: BTreeMap<String, usize>,
}

impl Report {
    /// Whether the p99 meets its target.
    pub fn meets_target(&self) -> bool {
        self.latency
            .percentile(99.0)
            .is_some_and(|p99| p99 < TARGET_MARGIN.as_micros() as i64)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let causes: Vec<String> = self
            .causes
            .iter()
            .map(|(cause, n)| format!("{cause} x{n}"))
            .collect();
        writeln!(
            f,
            "drops           {} ({})",
            self.latency.len(),
            self.config.mode
        )?;
        writeln!(
            f,
            "failover_after  {} ms",
            self.config.failover_after.as_millis()
        )?;
        writeln!(f, "causes seen     {}", causes.join(", "))?;
        writeln!(
            f,
            "link drop -> watcher sees the recording, minus failover_after (ms):"
        )?;
        writeln!(f, "                {}", self.latency)?;
        writeln!(
            f,
            "split at the recording's `since` (podiumd's clock, whole ms, so +-1 ms each):"
        )?;
        writeln!(f, "  decided       {}", self.decided)?;
        writeln!(f, "  delivered     {}", self.delivered)?;
        write!(
            f,
            "target          p99 within failover_after + {} ms , i.e. p99 above < {} ms: {}",
            TARGET_MARGIN.as_millis(),
            TARGET_MARGIN.as_millis(),
            if self.meets_target() { "met" } else { "MISSED" }
        )
    }
}

/// Runs the scenario against `podium`; `progress` hears each sample (drop number from 1, µs).
pub async fn run(
    podium: &Podium,
    config: &Config,
    mut progress: impl FnMut(usize, i64),
) -> anyhow::Result<Report> {
    let admin = connect(podium, &podium.admin_token).await?;
    let show = set_up(&admin, config.failover_after).await?;
    let mut watcher = Watcher::start(
        connect(podium, &podium.admin_token).await?,
        &show.conference_id,
        &show.session_id,
    );
    let mut agent = Agent::connect(podium, &show).await?;
    watcher
        .until("the speaker's link healthy", PATIENCE, |s| {
            healthy(s, &show.speaker_id)
        })
        .await?;
    admin
        .stage()
        .start_session(pb::StartSessionRequest {
            conference_id: show.conference_id.clone(),
            session_id: show.session_id.clone(),
        })
        .await
        .context("cannot start the session")?;
    watcher
        .until("the session live", PATIENCE, |s| {
            s.state() == pb::SessionState::Live
        })
        .await?;

    let mut samples = Vec::with_capacity(config.drops);
    let (mut decided, mut delivered) = (Vec::new(), Vec::new());
    let mut causes = BTreeMap::new();
    for drop in 1..=config.drops {
        let ready = watcher
            .until("the speaker's link healthy", PATIENCE, |s| {
                healthy(s, &show.speaker_id)
            })
            .await?;
        if on_air(&ready.1) != pb::SourceKind::Speaker {
            switch_to_speaker(&admin, &show).await?;
        }
        watcher
            .until("the speaker on air with a healthy link", PATIENCE, |s| {
                on_air(s) == pb::SourceKind::Speaker && healthy(s, &show.speaker_id)
            })
            .await?;
        tokio::time::sleep(keep_alive(drop)).await;
        if let Some(early) = watcher.drain()? {
            bail!(
                "drop {drop}: {:?} went on air ({:?}) before the link dropped; were heartbeats late?",
                on_air(&early),
                early.cause()
            );
        }

        let t_drop = agent.stop().await?;
        if config.mode == DropMode::Close {
            agent.close().await;
        }
        let (t_seen, fallen) = watcher
            .until(
                "the recording on air after the link dropped",
                config.failover_after + PATIENCE,
                |s| on_air(s) != pb::SourceKind::Speaker,
            )
            .await?;
        if on_air(&fallen) != pb::SourceKind::Recording {
            bail!(
                "drop {drop}: {:?} went on air instead of the recording",
                on_air(&fallen)
            );
        }
        if t_seen.at < t_drop.at {
            bail!("drop {drop}: the session fell back before the link dropped");
        }
        let failover_us = config.failover_after.as_micros() as i64;
        let sample = (t_seen.at - t_drop.at).as_micros() as i64 - failover_us;
        samples.push(sample);
        let since = fallen
            .source
            .as_ref()
            .and_then(|s| s.since)
            .unwrap_or_default();
        let decided_at = since.seconds * 1_000_000 + i64::from(since.nanos) / 1_000;
        decided.push(decided_at - t_drop.wall_us() - failover_us);
        delivered.push(t_seen.wall_us() - decided_at);
        *causes
            .entry(fallen.cause().as_str_name().to_owned())
            .or_insert(0) += 1;
        progress(drop, sample);

        match config.mode {
            DropMode::Freeze => agent.resume().await?,
            DropMode::Close => agent = Agent::connect(podium, &show).await?,
        }
    }

    agent.close().await;
    // Tidy on a podiumd that outlives the run; the measurement is already taken.
    let _ = admin
        .stage()
        .end_session(pb::EndSessionRequest {
            conference_id: show.conference_id.clone(),
            session_id: show.session_id.clone(),
        })
        .await;
    Ok(Report {
        config: config.clone(),
        latency: Distribution::new(samples),
        decided: Distribution::new(decided),
        delivered: Distribution::new(delivered),
        causes,
    })
}

/// How long heartbeats go on before drop `n`: 300 to 700 ms, spread by a step prime to the range.
fn keep_alive(n: usize) -> Duration {
    Duration::from_millis(300 + (n as u64 * 137) % 401)
}

async fn connect(podium: &Podium, token: &str) -> anyhow::Result<Client> {
    Client::connect(&podium.addr, Some(token.to_owned()))
        .await
        .with_context(|| format!("cannot connect to podiumd at {}", podium.addr))
}

/// What the scenario set up.
struct Show {
    conference_id: String,
    session_id: String,
    speaker_id: String,
    speaker_token: String,
}

/// A conference of its own (so that runs against one podiumd never collide), a room, a speaker,
/// a session tomorrow with the failover policy, its recording and the speaker's token.
async fn set_up(admin: &Client, failover_after: Duration) -> anyhow::Result<Show> {
    let conference_id = format!("loadgen-{}", &Client::request_id()[..8]);
    let text = |en: &str| {
        Some(pb::LocalizedText {
            text: [("en".to_owned(), en.to_owned())].into(),
        })
    };
    admin
        .agenda()
        .create_conference(pb::CreateConferenceRequest {
            request_id: Client::request_id(),
            conference_id: conference_id.clone(),
            title: text("podium-loadgen failover"),
            default_language: "en".into(),
            time_zone: "UTC".into(),
            join_code: String::new(),
        })
        .await
        .context("cannot create the conference")?;
    let room = admin
        .agenda()
        .add_room(pb::AddRoomRequest {
            request_id: Client::request_id(),
            conference_id: conference_id.clone(),
            name: "Main hall".into(),
            capacity: 300,
        })
        .await
        .context("cannot add the room")?
        .into_inner()
        .room
        .context("no room in the answer")?;
    let speaker = admin
        .agenda()
        .add_speaker(pb::AddSpeakerRequest {
            request_id: Client::request_id(),
            conference_id: conference_id.clone(),
            name: "Sokha Chan".into(),
            organisation: "Open Development Cambodia".into(),
            time_zone: "UTC".into(),
            available_from: String::new(),
            available_until: String::new(),
        })
        .await
        .context("cannot add the speaker")?
        .into_inner()
        .speaker
        .context("no speaker in the answer")?;
    // 10:00 UTC tomorrow, inside the speaker's default hours.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the system clock is before 1970")?
        .as_secs() as i64;
    let start = now - now % 86_400 + 86_400 + 10 * 3_600;
    let at = |seconds| Some(prost_types::Timestamp { seconds, nanos: 0 });
    let session_id = admin
        .agenda()
        .add_session(pb::AddSessionRequest {
            request_id: Client::request_id(),
            conference_id: conference_id.clone(),
            title: text("Failover, measured"),
            kind: pb::SessionKind::Talk as i32,
            start: at(start),
            end: at(start + 45 * 60),
            room_id: room.id,
            speaker_ids: vec![speaker.id.clone()],
            backup_speaker_ids: vec![],
            failover: Some(pb::FailoverPolicy {
                failover_after_ms: u32::try_from(failover_after.as_millis())
                    .context("failover_after is too long")?,
                failback: pb::FailbackMode::Sticky as i32,
                ..Default::default()
            }),
        })
        .await
        .context("cannot add the session")?
        .into_inner()
        .session
        .context("no session in the answer")?
        .id;
    upload_recording(admin, &conference_id, &session_id).await?;
    let speaker_token = admin
        .access()
        .issue_token(pb::IssueTokenRequest {
            role: pb::Role::Speaker as i32,
            conference_id: conference_id.clone(),
            speaker_id: speaker.id.clone(),
            name: "podium-loadgen agent".into(),
            ttl_seconds: 0,
        })
        .await
        .context("cannot issue the speaker token")?
        .into_inner()
        .token;
    Ok(Show {
        conference_id,
        session_id,
        speaker_id: speaker.id,
        speaker_token,
    })
}

/// A small primary recording: the failover engine needs one registered, not a real video.
async fn upload_recording(
    admin: &Client,
    conference_id: &str,
    session_id: &str,
) -> anyhow::Result<()> {
    let bytes = b"podium-loadgen stands in for a recorded talk. ".repeat(1_000);
    let sha256: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let header = pb::RecordingHeader {
        request_id: Client::request_id(),
        conference_id: conference_id.into(),
        session_id: session_id.into(),
        sha256,
        size_bytes: bytes.len() as u64,
        media_type: "video/mp4".into(),
        duration_ms: 45 * 60 * 1000,
        language: "en".into(),
        captions: vec![],
        file_name: "talk.mp4".into(),
        backup: false,
    };
    let parts = [
        pb::upload_recording_request::Part::Header(header),
        pb::upload_recording_request::Part::Chunk(bytes),
    ]
    .map(|part| pb::UploadRecordingRequest { part: Some(part) });
    admin
        .recordings()
        .upload_recording(futures::stream::iter(parts))
        .await
        .context("cannot upload the recording")?;
    Ok(())
}

async fn switch_to_speaker(admin: &Client, show: &Show) -> anyhow::Result<()> {
    admin
        .stage()
        .switch_source(pb::SwitchSourceRequest {
            conference_id: show.conference_id.clone(),
            session_id: show.session_id.clone(),
            kind: pb::SourceKind::Speaker as i32,
            speaker_id: String::new(),
            recording_id: String::new(),
        })
        .await
        .context("cannot switch back to the speaker")?;
    Ok(())
}

fn on_air(s: &pb::SessionStatus) -> pb::SourceKind {
    s.source
        .as_ref()
        .map_or(pb::SourceKind::Unspecified, |s| s.kind())
}

fn healthy(s: &pb::SessionStatus, speaker_id: &str) -> bool {
    s.links
        .iter()
        .any(|l| l.speaker_id == speaker_id && l.state() == pb::LinkState::Healthy)
}

/// An instant on this process's tokio clock, for the measurement, and the wall clock, to split
/// it at the time podiumd put in the status.
#[derive(Debug, Clone, Copy)]
struct Stamp {
    at: Instant,
    wall: SystemTime,
}

impl Stamp {
    fn now() -> Self {
        Self {
            at: Instant::now(),
            wall: SystemTime::now(),
        }
    }

    /// Microseconds since the Unix epoch.
    fn wall_us(&self) -> i64 {
        self.wall
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64)
    }
}

// ---- The speaker agent ----

/// What the scenario tells the agent's task.
enum Pulse {
    /// Stop sending heartbeats and answer with the instant the last one was sent.
    Stop(oneshot::Sender<Option<Stamp>>),
    /// Send heartbeats again, the first at once.
    Resume,
}

/// A speaker agent on its own connection whose heartbeats the scenario stops and resumes at
/// will. Unlike `podium_client::agent::run_agent` it never reconnects by itself.
struct Agent {
    /// `None` once closed.
    pulses: Option<mpsc::Sender<Pulse>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Agent {
    /// Connects, says hello, waits for the welcome and starts heartbeats at the interval podiumd
    /// asks for.
    async fn connect(podium: &Podium, show: &Show) -> anyhow::Result<Self> {
        let client = connect(podium, &show.speaker_token).await?;
        let (requests, outbound) = mpsc::channel(16);
        let hello = pb::AgentHello {
            session_id: show.session_id.clone(),
            test_connection: false,
            agent: format!("podium-loadgen {}", env!("CARGO_PKG_VERSION")),
        };
        requests
            .send(pb::LinkRequest {
                message: Some(pb::link_request::Message::Hello(hello)),
            })
            .await
            .map_err(|_| anyhow!("the speaker link closed before hello"))?;
        let mut inbound = client
            .presence()
            .link(ReceiverStream::new(outbound))
            .await
            .context("podiumd refused the speaker link")?
            .into_inner();
        let welcome = match tokio::time::timeout(PATIENCE, inbound.message()).await {
            Err(_) => bail!("no welcome on the speaker link within {PATIENCE:?}"),
            Ok(Err(status)) => bail!("the speaker link failed: {}", status.message()),
            Ok(Ok(Some(pb::LinkResponse {
                message: Some(pb::link_response::Message::Welcome(welcome)),
            }))) => welcome,
            Ok(Ok(other)) => bail!("expected a welcome on the speaker link, got {other:?}"),
        };
        let interval = Duration::from_millis(u64::from(welcome.heartbeat_interval_ms.max(10)));
        let (pulses, commands) = mpsc::channel(4);
        let task = tokio::spawn(beat(client, requests, inbound, interval, commands));
        Ok(Self {
            pulses: Some(pulses),
            task,
        })
    }

    /// Stops the heartbeats; returns the instant the last one was sent.
    async fn stop(&mut self) -> anyhow::Result<Stamp> {
        let (reply, answer) = oneshot::channel();
        self.command(Pulse::Stop(reply)).await?;
        answer
            .await
            .map_err(|_| anyhow!("the speaker agent stopped"))?
            .context("the speaker agent had sent no heartbeat")
    }

    async fn resume(&mut self) -> anyhow::Result<()> {
        self.command(Pulse::Resume).await
    }

    /// Sends a command; if the task has ended, says why.
    async fn command(&mut self, pulse: Pulse) -> anyhow::Result<()> {
        let pulses = self
            .pulses
            .as_ref()
            .context("the speaker agent is closed")?;
        if pulses.send(pulse).await.is_ok() {
            return Ok(());
        }
        Err(match (&mut self.task).await {
            Ok(Err(error)) => error.context("the speaker agent failed"),
            _ => anyhow!("the speaker agent stopped"),
        })
    }

    /// Closes the stream and the connection: the task ends when its commands do, and drops
    /// both. Dropping an agent does the same without waiting.
    async fn close(&mut self) {
        if self.pulses.take().is_some() {
            let _ = tokio::time::timeout(PATIENCE, &mut self.task).await;
        }
    }
}

/// The agent's task: heartbeats on the ticker while beating, acknowledgements drained so that
/// the server never blocks on a full stream, commands from the scenario. Ends when the scenario
/// drops the agent, which drops the stream and the connection with it.
async fn beat(
    _client: Client,
    requests: mpsc::Sender<pb::LinkRequest>,
    mut inbound: tonic::Streaming<pb::LinkResponse>,
    interval: Duration,
    mut commands: mpsc::Receiver<Pulse>,
) -> anyhow::Result<()> {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut beating = true;
    let mut seq = 0u64;
    let mut last_sent = None;
    loop {
        tokio::select! {
            _ = ticker.tick(), if beating => {
                seq += 1;
                // The figures play no part in the silence rule; zero is a healthy link.
                let heartbeat = pb::Heartbeat { seq, figures: Some(pb::LinkFigures::default()) };
                requests
                    .send(pb::LinkRequest { message: Some(pb::link_request::Message::Heartbeat(heartbeat)) })
                    .await
                    .map_err(|_| anyhow!("the speaker link closed"))?;
                last_sent = Some(Stamp::now());
            }
            command = commands.recv() => match command {
                Some(Pulse::Stop(reply)) => {
                    beating = false;
                    let _ = reply.send(last_sent);
                }
                Some(Pulse::Resume) => {
                    beating = true;
                    ticker.reset_immediately();
                }
                None => return Ok(()),
            },
            message = inbound.message() => match message {
                Ok(Some(_)) => {}
                Ok(None) => bail!("podiumd closed the speaker link"),
                Err(status) => bail!("the speaker link failed: {}", status.message()),
            },
        }
    }
}

// ---- The watcher ----

/// Follows the session's status on its own connection, stamping each status with the instant
/// it arrived.
struct Watcher {
    statuses: mpsc::Receiver<Result<(Stamp, pb::SessionStatus), String>>,
    latest: Option<(Stamp, pb::SessionStatus)>,
}

impl Watcher {
    fn start(client: Client, conference_id: &str, session_id: &str) -> Self {
        let (tx, statuses) = mpsc::channel(256);
        let updates = client.watch_status(conference_id, "");
        let session_id = session_id.to_owned();
        tokio::spawn(async move {
            futures::pin_mut!(updates);
            while let Some(update) = updates.next().await {
                let at = Stamp::now();
                let sessions = match update {
                    Ok(StatusUpdate::Snapshot { sessions, .. }) => sessions,
                    Ok(StatusUpdate::Changed { session, .. }) => vec![*session],
                    Err(status) => {
                        let _ = tx.send(Err(status.message().to_owned())).await;
                        return;
                    }
                };
                for s in sessions.into_iter().filter(|s| s.session_id == session_id) {
                    if tx.send(Ok((at, s))).await.is_err() {
                        return;
                    }
                }
            }
        });
        Self {
            statuses,
            latest: None,
        }
    }

    /// Waits until the session's status satisfies `what` (the latest one seen counts), at most
    /// `within`; returns it with the instant it arrived.
    async fn until(
        &mut self,
        waiting_for: &str,
        within: Duration,
        what: impl Fn(&pb::SessionStatus) -> bool,
    ) -> anyhow::Result<(Stamp, pb::SessionStatus)> {
        if let Some(latest) = self.latest.as_ref().filter(|(_, s)| what(s)) {
            return Ok(latest.clone());
        }
        let deadline = Instant::now() + within;
        loop {
            let next = tokio::time::timeout_at(deadline, self.statuses.recv())
                .await
                .map_err(|_| anyhow!("gave up after {within:?} waiting for {waiting_for}"))?;
            let (at, status) = match next {
                Some(Ok(stamped)) => stamped,
                Some(Err(message)) => bail!("the status stream failed: {message}"),
                None => bail!("the status stream ended"),
            };
            let satisfied = what(&status);
            self.latest = Some((at, status));
            if satisfied {
                return self.latest.clone().context("just set");
            }
        }
    }

    /// Takes every status that has arrived; returns the first with something other than the
    /// speaker on air, if any.
    fn drain(&mut self) -> anyhow::Result<Option<pb::SessionStatus>> {
        let mut off_air = None;
        while let Ok(next) = self.statuses.try_recv() {
            let (at, status) = next.map_err(|m| anyhow!("the status stream failed: {m}"))?;
            if off_air.is_none() && on_air(&status) != pb::SourceKind::Speaker {
                off_air = Some(status.clone());
            }
            self.latest = Some((at, status));
        }
        Ok(off_air)
    }
}
