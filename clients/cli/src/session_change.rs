//! `podium session change`: a scheduled session moved, given other speakers or retitled. The
//! service replaces every fact of the session (`Agenda/UpdateSession`), so the command reads
//! the session as it stands and sends it back with what was given on the command line.

use anyhow::{Context as _, bail};
use chrono_tz::Tz;
use clap::Args;
use podium_client::{Client, pb};
use podium_proto::time::{instant, timestamp};

use crate::{
    Ctx,
    agenda::{FailbackArg, Kind},
    output::print_session,
    parse,
};

#[derive(Debug, Args)]
pub struct Change {
    /// The session's id.
    id: String,
    /// New title; repeat with LANG=TEXT for translations (replaces every translation).
    #[arg(long)]
    title: Vec<String>,
    #[arg(long, value_enum)]
    kind: Option<Kind>,
    /// Room id.
    #[arg(long)]
    room: Option<String>,
    /// New start, "2024-11-14 09:00" in the conference's zone or RFC 3339 with an offset. Alone,
    /// it moves the session and keeps its length.
    #[arg(long)]
    start: Option<String>,
    /// New end, same forms as --start.
    #[arg(long, conflicts_with = "minutes")]
    end: Option<String>,
    /// New length in minutes, from the (new) start.
    #[arg(long)]
    minutes: Option<u32>,
    /// Speaker id; repeat for several. Replaces the session's main speakers.
    #[arg(long = "speaker")]
    speakers: Vec<String>,
    /// Backup speaker id; repeat for several. Replaces the session's backups.
    #[arg(long = "backup", conflicts_with = "no_backups")]
    backups: Vec<String>,
    /// Leave the session without backup speakers.
    #[arg(long)]
    no_backups: bool,
    /// Heartbeat silence before falling back to the recording, in ms.
    #[arg(long)]
    failover_after_ms: Option<u32>,
    #[arg(long, value_enum)]
    failback: Option<FailbackArg>,
}

pub async fn change(
    ctx: &Ctx,
    conference: &pb::Conference,
    zone: Tz,
    change: Change,
) -> anyhow::Result<()> {
    let current = ctx
        .client
        .agenda()
        .get_session(pb::GetSessionRequest {
            conference_id: conference.id.clone(),
            session_id: change.id.clone(),
        })
        .await?
        .into_inner()
        .session
        .context("podiumd answered without the session")?;
    let utc = |time: &Option<pb::ZonedTime>| {
        instant(&time.as_ref().and_then(|t| t.utc)).context("podiumd sent a session without times")
    };
    let (old_start, old_end) = (utc(&current.start)?, utc(&current.end)?);
    let start = match &change.start {
        Some(start) => parse::time(start, zone).context("--start")?,
        None => old_start,
    };
    let end = match (&change.end, change.minutes) {
        (Some(end), _) => parse::time(end, zone).context("--end")?,
        (None, Some(minutes)) => start + chrono::Duration::minutes(i64::from(minutes)),
        (None, None) => start + (old_end - old_start),
    };
    let speakers_now = |backup: bool| -> Vec<String> {
        current
            .speakers
            .iter()
            .filter(|s| s.backup == backup)
            .map(|s| s.speaker_id.clone())
            .collect()
    };
    let speaker_ids = match change.speakers {
        given if !given.is_empty() => given,
        _ => speakers_now(false),
    };
    let backup_speaker_ids = match (change.no_backups, change.backups) {
        (true, _) => Vec::new(),
        (false, given) if !given.is_empty() => given,
        _ => speakers_now(true),
    };
    let title = if change.title.is_empty() {
        current.title.clone()
    } else {
        Some(parse::localized(
            &change.title,
            &conference.default_language,
        )?)
    };
    let mut failover = current.failover.unwrap_or_default();
    if let Some(ms) = change.failover_after_ms {
        failover.failover_after_ms = ms;
    }
    if change.failback.is_some() {
        failover.failback = FailbackArg::proto(change.failback);
    }
    if end <= start {
        bail!("the session would end before it starts: give --end or --minutes too");
    }
    let session = ctx
        .client
        .agenda()
        .update_session(pb::UpdateSessionRequest {
            request_id: Client::request_id(),
            conference_id: conference.id.clone(),
            session_id: current.id,
            title,
            kind: change.kind.map_or(current.kind, Kind::proto),
            start: Some(timestamp(start)),
            end: Some(timestamp(end)),
            room_id: change.room.unwrap_or(current.room_id),
            speaker_ids,
            backup_speaker_ids,
            failover: Some(failover),
            // Another organiser's change since the read is refused, not overwritten.
            expected_revision: Some(current.revision),
        })
        .await?
        .into_inner();
    if !ctx.out.json(&session) {
        print_session(
            &session.session.unwrap_or_default(),
            &conference.default_language,
            &ctx.out,
        );
    }
    Ok(())
}
