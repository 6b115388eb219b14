//! The agenda from the command line: conferences, rooms, speakers in their own zones, sessions
//! and the slot finder. Times people type are read in the conference's zone; tables show each
//! speaker's own time beside the conference's.

use anyhow::{Context as _, anyhow, bail};
use chrono::{Duration, Utc};
use chrono_tz::Tz;
use clap::{Subcommand, ValueEnum};
use podium_client::{Client, pb};
use podium_proto::{Translations, time::timestamp};

use crate::{
    Ctx,
    output::{clock, label, print_conference, print_session, table},
    parse, stage,
};

#[derive(Debug, Subcommand)]
pub enum ConferenceCmd {
    /// Create a conference (admin token).
    Create {
        /// Short id, e.g. odc2024. Generated if omitted.
        #[arg(long)]
        id: Option<String>,
        /// Title; repeat with LANG=TEXT for translations, e.g. --title km="សន្និសីទ...".
        #[arg(long, required = true)]
        title: Vec<String>,
        /// IANA time zone of the venue, e.g. Asia/Phnom_Penh.
        #[arg(long)]
        time_zone: String,
        /// Default language tag.
        #[arg(long, default_value = "en")]
        language: String,
        /// Join code for attendees; generated if omitted.
        #[arg(long)]
        join_code: Option<String>,
    },
    /// Show a conference with its rooms and speakers.
    Show {
        /// Defaults to --conference.
        id: Option<String>,
    },
    /// List the conferences the token can see.
    List,
}

#[derive(Debug, Subcommand)]
pub enum RoomCmd {
    /// Add a room.
    Add {
        name: String,
        #[arg(long, default_value_t = 0)]
        capacity: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum SpeakerCmd {
    /// Add a speaker with their time zone and local hours.
    Add {
        name: String,
        /// IANA time zone, e.g. America/New_York.
        #[arg(long)]
        time_zone: String,
        #[arg(long, default_value = "")]
        organisation: String,
        /// Local availability, HH:MM-HH:MM.
        #[arg(long, default_value = "08:00-21:00")]
        hours: String,
    },
    /// List the conference's speakers.
    List,
    /// Run the speaker agent: keep the link to podium open with heartbeats (needs a speaker
    /// token). With --test, record a green-room test connection and stop.
    Connect(stage::ConnectArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Kind {
    Talk,
    Panel,
    Breakout,
    Pitch,
}

impl Kind {
    pub fn proto(self) -> i32 {
        let kind = match self {
            Kind::Talk => pb::SessionKind::Talk,
            Kind::Panel => pb::SessionKind::Panel,
            Kind::Breakout => pb::SessionKind::Breakout,
            Kind::Pitch => pb::SessionKind::Pitch,
        };
        kind as i32
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FailbackArg {
    Sticky,
    ReturnWhenStable,
}

impl FailbackArg {
    pub fn proto(failback: Option<Self>) -> i32 {
        let mode = match failback {
            None => pb::FailbackMode::Unspecified,
            Some(FailbackArg::Sticky) => pb::FailbackMode::Sticky,
            Some(FailbackArg::ReturnWhenStable) => pb::FailbackMode::ReturnWhenStable,
        };
        mode as i32
    }
}

#[derive(Debug, Subcommand)]
pub enum SessionCmd {
    /// Schedule a session. Times are in the conference's zone unless they carry an offset.
    Add {
        /// Title; repeat with LANG=TEXT for translations.
        #[arg(long, required = true)]
        title: Vec<String>,
        #[arg(long, value_enum, default_value_t = Kind::Talk)]
        kind: Kind,
        /// Room id.
        #[arg(long)]
        room: String,
        /// "2024-11-14 09:00" in the conference's zone, or RFC 3339 with an offset.
        #[arg(long)]
        start: String,
        /// End time, same forms as --start.
        #[arg(long, conflicts_with = "minutes", required_unless_present = "minutes")]
        end: Option<String>,
        /// Length in minutes, instead of --end.
        #[arg(long)]
        minutes: Option<u32>,
        /// Speaker id; repeat for several.
        #[arg(long = "speaker")]
        speakers: Vec<String>,
        /// Backup speaker id; repeat for several.
        #[arg(long = "backup")]
        backups: Vec<String>,
        /// Heartbeat silence before falling back to the recording, in ms (default 1000).
        #[arg(long)]
        failover_after_ms: Option<u32>,
        #[arg(long, value_enum)]
        failback: Option<FailbackArg>,
    },
    /// List sessions in start order.
    List {
        #[arg(long)]
        room: Option<String>,
        #[arg(long)]
        speaker: Option<String>,
    },
    /// Change a scheduled session: move it to another time or room, replace its speakers,
    /// retitle it. What is not given stays as it is; a new --start alone keeps the length.
    Change(crate::session_change::Change),
    /// Show one session, with its times in each speaker's zone.
    Show { id: String },
    /// Take a session live, on its speaker.
    Start { id: String },
    /// End a live session.
    End { id: String },
}

#[derive(Debug, Subcommand)]
pub enum SlotsCmd {
    /// Propose slots inside every named speaker's local hours.
    Suggest {
        /// Speaker id; repeat for several.
        #[arg(long = "speaker", required = true)]
        speakers: Vec<String>,
        #[arg(long)]
        minutes: u32,
        /// First day, YYYY-MM-DD in the conference's zone.
        #[arg(long)]
        from: String,
        /// Last day; defaults to --from.
        #[arg(long)]
        to: Option<String>,
        /// Only slots when this room is free.
        #[arg(long)]
        room: Option<String>,
        #[arg(long, default_value_t = 10)]
        limit: u32,
        /// Minutes between candidate starts.
        #[arg(long, default_value_t = 15)]
        step: u32,
    },
}

pub async fn conference(ctx: &Ctx, cmd: ConferenceCmd) -> anyhow::Result<()> {
    let out = &ctx.out;
    match cmd {
        ConferenceCmd::Create {
            id,
            title,
            time_zone,
            language,
            join_code,
        } => {
            let title = parse::localized(&title, &language)?;
            let created = ctx
                .client
                .agenda()
                .create_conference(pb::CreateConferenceRequest {
                    request_id: Client::request_id(),
                    conference_id: id.unwrap_or_default(),
                    title: Some(title),
                    default_language: language,
                    time_zone,
                    join_code: join_code.unwrap_or_default(),
                })
                .await?
                .into_inner();
            if !out.json(&created) {
                print_conference(&created.conference.unwrap_or_default(), out);
            }
        }
        ConferenceCmd::Show { id } => {
            let id = match id {
                Some(id) => id,
                None => ctx.conference().await?,
            };
            let conference = ctx.fetch_conference(&id).await?;
            if !out.json(&conference) {
                print_conference(&conference, out);
            }
        }
        ConferenceCmd::List => {
            let list = ctx
                .client
                .agenda()
                .list_conferences(pb::ListConferencesRequest {})
                .await?
                .into_inner();
            if !out.json(&list) {
                let mut t = table(&["Conference", "Title", "Time zone", "Rooms", "Speakers"]);
                for c in &list.conferences {
                    t.add_row(vec![
                        c.id.clone(),
                        c.title.pick(out.lang(), &c.default_language).to_owned(),
                        c.time_zone.clone(),
                        c.rooms.len().to_string(),
                        c.speakers.len().to_string(),
                    ]);
                }
                println!("{t}");
            }
        }
    }
    Ok(())
}

pub async fn room(ctx: &Ctx, cmd: RoomCmd) -> anyhow::Result<()> {
    let out = &ctx.out;
    let RoomCmd::Add { name, capacity } = cmd;
    let conference_id = ctx.conference().await?;
    let room = ctx
        .client
        .agenda()
        .add_room(pb::AddRoomRequest {
            request_id: Client::request_id(),
            conference_id,
            name,
            capacity,
        })
        .await?
        .into_inner();
    if !out.json(&room) {
        let r = room.room.unwrap_or_default();
        // The id alone on stdout, so that `ROOM=$(podium room add ...)` works.
        println!("{}", r.id);
        eprintln!("added room {} ({})", r.id, r.name);
    }
    Ok(())
}

pub async fn speaker(ctx: &Ctx, cmd: SpeakerCmd) -> anyhow::Result<()> {
    match cmd {
        SpeakerCmd::Add {
            name,
            time_zone,
            organisation,
            hours,
        } => add_speaker(ctx, name, time_zone, organisation, hours).await,
        SpeakerCmd::List => list_speakers(ctx).await,
        SpeakerCmd::Connect(args) => stage::connect(ctx, args).await,
    }
}

async fn add_speaker(
    ctx: &Ctx,
    name: String,
    time_zone: String,
    organisation: String,
    hours: String,
) -> anyhow::Result<()> {
    let out = &ctx.out;
    let conference_id = ctx.conference().await?;
    let (from, until) = hours
        .split_once('-')
        .ok_or_else(|| anyhow!("--hours must look like 08:00-21:00"))?;
    let speaker = ctx
        .client
        .agenda()
        .add_speaker(pb::AddSpeakerRequest {
            request_id: Client::request_id(),
            conference_id,
            name,
            organisation,
            time_zone,
            available_from: from.trim().to_owned(),
            available_until: until.trim().to_owned(),
        })
        .await?
        .into_inner();
    if !out.json(&speaker) {
        let s = speaker.speaker.unwrap_or_default();
        println!("{}", s.id);
        eprintln!(
            "added speaker {} ({}, {} {}-{})",
            s.id, s.name, s.time_zone, s.available_from, s.available_until
        );
    }
    Ok(())
}

async fn list_speakers(ctx: &Ctx) -> anyhow::Result<()> {
    let out = &ctx.out;
    let conference = ctx.fetch_conference(&ctx.conference().await?).await?;
    if out.json {
        let list: Vec<_> = conference
            .speakers
            .iter()
            .map(podium_client::message_to_json)
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    let mut t = table(&[
        "Speaker",
        "Name",
        "Organisation",
        "Time zone",
        "Hours (local)",
        "Local time now",
    ]);
    for s in &conference.speakers {
        let now = s
            .time_zone
            .parse::<Tz>()
            .map(|tz| Utc::now().with_timezone(&tz).format("%a %H:%M").to_string())
            .unwrap_or_default();
        t.add_row(vec![
            s.id.clone(),
            s.name.clone(),
            s.organisation.clone(),
            s.time_zone.clone(),
            format!("{}-{}", s.available_from, s.available_until),
            now,
        ]);
    }
    println!("{t}");
    Ok(())
}

pub async fn session(ctx: &Ctx, cmd: SessionCmd) -> anyhow::Result<()> {
    let out = &ctx.out;
    let conference = ctx.fetch_conference(&ctx.conference().await?).await?;
    let zone: Tz = conference
        .time_zone
        .parse()
        .map_err(|_| anyhow!("server sent an unknown zone {}", conference.time_zone))?;
    match cmd {
        SessionCmd::Add {
            title,
            kind,
            room,
            start,
            end,
            minutes,
            speakers,
            backups,
            failover_after_ms,
            failback,
        } => {
            let start = parse::time(&start, zone).context("--start")?;
            let end = match (end, minutes) {
                (Some(end), _) => parse::time(&end, zone).context("--end")?,
                (None, Some(m)) => start + Duration::minutes(i64::from(m)),
                (None, None) => bail!("give --end or --minutes"),
            };
            let failover = pb::FailoverPolicy {
                failover_after_ms: failover_after_ms.unwrap_or(0),
                failback: FailbackArg::proto(failback),
                ..Default::default()
            };
            let session = ctx
                .client
                .agenda()
                .add_session(pb::AddSessionRequest {
                    request_id: Client::request_id(),
                    conference_id: conference.id.clone(),
                    title: Some(parse::localized(&title, &conference.default_language)?),
                    kind: kind.proto(),
                    start: Some(timestamp(start)),
                    end: Some(timestamp(end)),
                    room_id: room,
                    speaker_ids: speakers,
                    backup_speaker_ids: backups,
                    failover: Some(failover),
                })
                .await?
                .into_inner();
            if !out.json(&session) {
                print_session(
                    &session.session.unwrap_or_default(),
                    &conference.default_language,
                    out,
                );
            }
        }
        SessionCmd::List { room, speaker } => {
            let list = ctx
                .client
                .agenda()
                .list_sessions(pb::ListSessionsRequest {
                    conference_id: conference.id.clone(),
                    room_id: room.unwrap_or_default(),
                    speaker_id: speaker.unwrap_or_default(),
                })
                .await?
                .into_inner();
            if out.json(&list) {
                return Ok(());
            }
            let mut t = table(&[
                "Session",
                "Starts",
                "Ends",
                "Room",
                "Title",
                "Speakers (their time)",
            ]);
            for s in &list.sessions {
                let speakers: Vec<String> = s
                    .speakers
                    .iter()
                    .map(|sp| {
                        format!(
                            "{}{}: {}{}",
                            sp.name,
                            if sp.backup { " (backup)" } else { "" },
                            label(&sp.start),
                            if sp.within_hours {
                                ""
                            } else {
                                "  outside hours"
                            }
                        )
                    })
                    .collect();
                t.add_row(vec![
                    s.id.clone(),
                    label(&s.start).to_owned(),
                    clock(&s.end),
                    s.room_name.clone(),
                    s.title
                        .pick(out.lang(), &conference.default_language)
                        .to_owned(),
                    speakers.join("\n"),
                ]);
            }
            println!("{t}");
            let warnings: usize = list.sessions.iter().map(|s| s.warnings.len()).sum();
            if warnings > 0 {
                println!("{warnings} warning(s): see `podium session show <id>`");
            }
        }
        SessionCmd::Change(change) => {
            crate::session_change::change(ctx, &conference, zone, change).await?;
        }
        SessionCmd::Start { id } => stage::session_lifecycle(ctx, id, true).await?,
        SessionCmd::End { id } => stage::session_lifecycle(ctx, id, false).await?,
        SessionCmd::Show { id } => {
            let session = ctx
                .client
                .agenda()
                .get_session(pb::GetSessionRequest {
                    conference_id: conference.id.clone(),
                    session_id: id,
                })
                .await?
                .into_inner();
            if !out.json(&session) {
                print_session(
                    &session.session.unwrap_or_default(),
                    &conference.default_language,
                    out,
                );
            }
        }
    }
    Ok(())
}

pub async fn slots(ctx: &Ctx, cmd: SlotsCmd) -> anyhow::Result<()> {
    let out = &ctx.out;
    let SlotsCmd::Suggest {
        speakers,
        minutes,
        from,
        to,
        room,
        limit,
        step,
    } = cmd;
    let conference_id = ctx.conference().await?;
    let slots = ctx
        .client
        .agenda()
        .suggest_slots(pb::SuggestSlotsRequest {
            conference_id,
            speaker_ids: speakers,
            duration_minutes: minutes,
            to_date: to.unwrap_or_else(|| from.clone()),
            from_date: from,
            room_id: room.unwrap_or_default(),
            limit,
            step_minutes: step,
        })
        .await?
        .into_inner();
    if out.json(&slots) {
        return Ok(());
    }
    if slots.slots.is_empty() {
        println!("no slot fits every speaker's hours in that range");
        return Ok(());
    }
    let names: Vec<String> = slots.slots[0]
        .speakers
        .iter()
        .map(|s| format!("{} ({})", s.name, s.time_zone))
        .collect();
    let mut header = vec!["Conference time".to_owned()];
    header.extend(names);
    let mut t = table(&header.iter().map(String::as_str).collect::<Vec<_>>());
    for slot in &slots.slots {
        let mut row = vec![format!("{} - {}", label(&slot.start), clock(&slot.end))];
        row.extend(
            slot.speakers
                .iter()
                .map(|s| format!("{} - {}", label(&s.start), clock(&s.end))),
        );
        t.add_row(row);
    }
    println!("{t}");
    Ok(())
}
