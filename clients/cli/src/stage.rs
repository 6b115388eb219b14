//! The show on the day: starting and ending sessions, switching and pinning the source, the
//! pre-flight report, and the speaker agent (`podium speaker connect`); the live status board is
//! `status_watch.rs`, with the names and texts it shares from here.

use std::{collections::BTreeMap, path::PathBuf, sync::Arc};

use anyhow::{Context as _, anyhow};
use clap::{Args, Subcommand, ValueEnum};
use futures::StreamExt;
use podium_client::{
    Client,
    agent::{AgentConfig, AgentEvent, run_agent},
    pb,
};

use crate::{
    Ctx,
    output::{label, table},
};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SourceArg {
    /// The live speaker.
    Speaker,
    /// The pre-recorded talk, from where the live talk had got to.
    Recording,
    /// A backup speaker.
    Backup,
    /// "Please stand by".
    Slate,
}

#[derive(Debug, Args)]
pub struct SwitchArgs {
    /// The session.
    pub session: String,
    #[arg(value_enum)]
    pub to: SourceArg,
    /// Which speaker or backup speaker (default: the first).
    #[arg(long)]
    pub speaker: Option<String>,
    /// Which recording (default: the primary).
    #[arg(long)]
    pub recording: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum StatusCmd {
    /// A live board of every room: the session, what is on air, each speaker's link.
    Watch {
        /// Only this room.
        #[arg(long)]
        room: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct PreflightArgs {
    /// Sessions starting within this many hours.
    #[arg(long, default_value_t = 24)]
    pub hours: u32,
    /// Every session that has not ended.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// The session you present.
    #[arg(long)]
    pub session: String,
    /// A green-room test connection: recorded for the pre-flight report, never on air.
    #[arg(long)]
    pub test: bool,
    /// Packet loss of your media link in percent, if your media tool shows it.
    #[arg(long, default_value_t = 0.0)]
    pub loss: f32,
    /// Upstream bitrate of your media link in kbit/s.
    #[arg(long, default_value_t = 0)]
    pub kbps: u32,
    /// A file a media tool keeps up to date with "loss=1.5 kbps=2400"; read at every heartbeat.
    #[arg(long)]
    pub media_file: Option<PathBuf>,
}

fn print_status(s: &pb::SessionStatus, names: &Names) {
    println!("Session     {} ({})", s.session_id, s.title);
    println!("State       {}", state(s.state));
    println!("On air      {}", on_air(s.source.as_ref(), names));
    if s.pinned {
        println!("Pinned      yes");
    }
    for link in &s.links {
        println!("Link        {}", link_text(link, names));
    }
    for alert in &s.alerts {
        println!("alert: {}", alert.message);
    }
}

/// Speaker and room names for people.
#[derive(Default)]
pub(crate) struct Names {
    speakers: BTreeMap<String, String>,
    pub(crate) rooms: BTreeMap<String, String>,
}

impl Names {
    pub(crate) async fn load(ctx: &Ctx, conference_id: &str) -> Names {
        let Ok(conference) = ctx.fetch_conference(conference_id).await else {
            return Names::default();
        };
        Names {
            speakers: conference
                .speakers
                .into_iter()
                .map(|s| (s.id, s.name))
                .collect(),
            rooms: conference
                .rooms
                .into_iter()
                .map(|r| (r.id, r.name))
                .collect(),
        }
    }

    fn speaker(&self, id: &str) -> String {
        self.speakers
            .get(id)
            .cloned()
            .unwrap_or_else(|| id.to_owned())
    }
}

pub(crate) fn state(state: i32) -> &'static str {
    match pb::SessionState::try_from(state) {
        Ok(pb::SessionState::Live) => "LIVE",
        Ok(pb::SessionState::Ended) => "ended",
        _ => "scheduled",
    }
}

pub(crate) fn on_air(source: Option<&pb::Source>, names: &Names) -> String {
    let Some(source) = source else {
        return "-".into();
    };
    match pb::SourceKind::try_from(source.kind) {
        Ok(pb::SourceKind::Speaker) => format!("speaker {}", names.speaker(&source.speaker_id)),
        Ok(pb::SourceKind::BackupSpeaker) => {
            format!("backup speaker {}", names.speaker(&source.speaker_id))
        }
        Ok(pb::SourceKind::Recording) => {
            let s = source.offset_ms / 1000;
            format!(
                "RECORDING {} from {}:{:02}",
                source.recording_id,
                s / 60,
                s % 60
            )
        }
        Ok(pb::SourceKind::Slate) => "SLATE (please stand by)".into(),
        _ => "-".into(),
    }
}

/// What the room's program output really shows, beside what podium decided ("On air").
pub(crate) fn program_text(status: &pb::SessionStatus) -> String {
    let Some(o) = &status.output else {
        return "-".into();
    };
    let mut lines = Vec::new();
    if !o.bridge_connected {
        lines.push(format!("bridge {} OFFLINE", o.bridge));
    } else if o.manual_override {
        lines.push(format!("MANUAL OVERRIDE in OBS: {}", o.scene));
    } else if o.confirmed && o.decided == status.source {
        let cursor = if o.media_state.is_empty() {
            String::new()
        } else {
            let s = o.media_cursor_ms / 1000;
            format!(" at {}:{:02}", s / 60, s % 60)
        };
        lines.push(format!(
            "confirmed: {}{cursor} (+{} ms)",
            o.scene, o.delay_ms
        ));
    } else {
        lines.push(format!("NOT CONFIRMED: OBS shows {}", o.scene));
    }
    lines.extend(o.problems.iter().map(|p| format!("! {}", p.message)));
    if let Some(h) = &o.health {
        if h.reconnecting {
            lines.push("stream RECONNECTING".into());
        } else if h.streaming {
            lines.push(format!(
                "streaming, congestion {:.0}%, {} of {} frames skipped",
                h.congestion * 100.0,
                h.skipped_frames,
                h.total_frames
            ));
        }
        if h.render_skipped_frames > 0 {
            lines.push(format!(
                "{} frames skipped rendering",
                h.render_skipped_frames
            ));
        }
    }
    lines.join("\n")
}

pub(crate) fn link_text(link: &pb::SpeakerLink, names: &Names) -> String {
    let state = match pb::LinkState::try_from(link.state) {
        Ok(pb::LinkState::Healthy) => "healthy",
        Ok(pb::LinkState::Poor) => "POOR",
        Ok(pb::LinkState::Lost) => "LOST",
        _ => "offline",
    };
    let figures = link
        .figures
        .as_ref()
        .map(|f| {
            format!(
                " rtt {} ms, loss {:.1}%, {} kbps",
                f.round_trip_ms, f.packet_loss_percent, f.upstream_kbps
            )
        })
        .unwrap_or_default();
    let backup = if link.backup { " (backup)" } else { "" };
    format!(
        "{}{backup}: {state}{figures}",
        names.speaker(&link.speaker_id)
    )
}

/// How many times a stage command is sent, with the same request id, before the CLI gives up
/// on an answer (the server carries it out once however many times it is sent).
const COMMAND_ATTEMPTS: u32 = 4;

pub async fn session_lifecycle(ctx: &Ctx, session: String, start: bool) -> anyhow::Result<()> {
    let conference_id = ctx.conference().await?;
    let status = Client::send_once(COMMAND_ATTEMPTS, |request_id| {
        let (mut stage, conference_id, session_id) =
            (ctx.client.stage(), conference_id.clone(), session.clone());
        async move {
            Ok(match start {
                true => {
                    let request = pb::StartSessionRequest {
                        conference_id,
                        session_id,
                        request_id,
                    };
                    stage.start_session(request).await?.into_inner().status
                }
                false => {
                    let request = pb::EndSessionRequest {
                        conference_id,
                        session_id,
                        request_id,
                    };
                    stage.end_session(request).await?.into_inner().status
                }
            })
        }
    })
    .await?;
    show(ctx, &conference_id, status).await
}

async fn show(
    ctx: &Ctx,
    conference_id: &str,
    status: Option<pb::SessionStatus>,
) -> anyhow::Result<()> {
    let status = status.context("server sent no status")?;
    if !ctx.out.json(&status) {
        print_status(&status, &Names::load(ctx, conference_id).await);
    }
    Ok(())
}

pub async fn switch(ctx: &Ctx, args: SwitchArgs) -> anyhow::Result<()> {
    let conference_id = ctx.conference().await?;
    let kind = match args.to {
        SourceArg::Speaker => pb::SourceKind::Speaker,
        SourceArg::Recording => pb::SourceKind::Recording,
        SourceArg::Backup => pb::SourceKind::BackupSpeaker,
        SourceArg::Slate => pb::SourceKind::Slate,
    };
    let request = pb::SwitchSourceRequest {
        conference_id: conference_id.clone(),
        session_id: args.session,
        kind: kind as i32,
        speaker_id: args.speaker.unwrap_or_default(),
        recording_id: args.recording.unwrap_or_default(),
        request_id: String::new(),
    };
    let status = Client::send_once(COMMAND_ATTEMPTS, |request_id| {
        let (mut stage, request) = (ctx.client.stage(), request.clone());
        async move {
            let request = pb::SwitchSourceRequest {
                request_id,
                ..request
            };
            Ok(stage.switch_source(request).await?.into_inner().status)
        }
    })
    .await?;
    show(ctx, &conference_id, status).await
}

pub async fn pin(ctx: &Ctx, session: String, pinned: bool) -> anyhow::Result<()> {
    let conference_id = ctx.conference().await?;
    let status = Client::send_once(COMMAND_ATTEMPTS, |request_id| {
        let request = pb::PinRequest {
            conference_id: conference_id.clone(),
            session_id: session.clone(),
            pinned,
            request_id,
        };
        let mut stage = ctx.client.stage();
        async move { Ok(stage.pin(request).await?.into_inner().status) }
    })
    .await?;
    show(ctx, &conference_id, status).await
}

pub async fn preflight(ctx: &Ctx, args: PreflightArgs) -> anyhow::Result<()> {
    let conference_id = ctx.conference().await?;
    let report = ctx
        .client
        .stage()
        .preflight(pb::PreflightRequest {
            conference_id,
            within_hours: args.hours,
            all: args.all,
        })
        .await?
        .into_inner();
    if ctx.out.json(&report) {
        return Ok(());
    }
    if report.sessions.is_empty() {
        println!("no sessions in that window (try --all)");
        return Ok(());
    }
    let mut t = table(&[
        "Session",
        "Starts",
        "Readiness",
        "Speakers (their time)",
        "Reasons",
        "Playout",
    ]);
    for s in &report.sessions {
        let ready = if s.readiness == pb::Readiness::Ready as i32 {
            "READY"
        } else {
            "AT RISK"
        };
        let speakers: Vec<String> = s
            .speakers
            .iter()
            .map(|sp| {
                format!(
                    "{}{}: {}{}",
                    sp.name,
                    if sp.backup { " (backup)" } else { "" },
                    label(&sp.start),
                    if sp.tested { ", tested" } else { "" }
                )
            })
            .collect();
        t.add_row(vec![
            format!("{}\n{}", s.title, s.session_id),
            label(&s.start).to_owned(),
            ready.to_owned(),
            speakers.join("\n"),
            s.reasons.join("\n"),
            match (s.playout_bridge, s.recording_on_playout) {
                (false, _) => "no bridge".to_owned(),
                (true, true) => "recording on the playout machine".to_owned(),
                (true, false) => "RECORDING NOT ON THE PLAYOUT MACHINE".to_owned(),
            },
        ]);
    }
    println!("{t}");
    Ok(())
}

/// "loss=1.5 kbps=2400" (either may be missing).
fn read_media_file(path: &PathBuf) -> Option<(f32, u32)> {
    let text = std::fs::read_to_string(path).ok()?;
    let (mut loss, mut kbps) = (0.0, 0);
    for part in text.split_whitespace() {
        match part.split_once('=') {
            Some(("loss", v)) => loss = v.parse().ok()?,
            Some(("kbps", v)) => kbps = v.parse().ok()?,
            _ => {}
        }
    }
    Some((loss, kbps))
}

pub async fn connect(ctx: &Ctx, args: ConnectArgs) -> anyhow::Result<()> {
    let mut config = AgentConfig::new(&args.session);
    config.test_connection = args.test;
    config.agent = format!(
        "podium {} ({})",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS
    );
    let (loss, kbps, file) = (args.loss, args.kbps, args.media_file.clone());
    config.media = Arc::new(move || {
        file.as_ref()
            .and_then(read_media_file)
            .unwrap_or((loss, kbps))
    });
    let events = run_agent(ctx.client.clone(), config);
    futures::pin_mut!(events);
    let mut acks = 0u64;
    while let Some(event) = events.next().await {
        match event.map_err(|status| anyhow!("{} ({:?})", status.message(), status.code()))? {
            AgentEvent::Connected(w) => eprintln!(
                "connected: conference {}, session {}, speaker {}; heartbeat every {} ms, fallback after {} ms of silence{}",
                w.conference_id,
                w.session_id,
                w.speaker_id,
                w.heartbeat_interval_ms,
                w.failover_after_ms,
                if args.test { " (test connection)" } else { "" }
            ),
            AgentEvent::Acked { round_trip_ms, .. } => {
                acks += 1;
                // A line every 10 s is enough for a person.
                if acks % 40 == 1 {
                    eprintln!("link ok: round trip {round_trip_ms} ms");
                }
            }
            AgentEvent::TestRecorded(f) => {
                println!(
                    "test connection recorded: round trip {} ms, loss {:.1}%, {} kbps",
                    f.round_trip_ms, f.packet_loss_percent, f.upstream_kbps
                );
                return Ok(());
            }
            AgentEvent::Disconnected { reason, retry_in } => eprintln!(
                "link lost ({reason}); reconnecting in {} ms",
                retry_in.as_millis()
            ),
        }
    }
    Ok(())
}
