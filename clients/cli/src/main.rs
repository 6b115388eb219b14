//! `podium`: the command line for everyone who uses podium. Organisers set up conferences,
//! rooms, speakers and sessions; anyone with a token reads the agenda; attendees join with a
//! code; integrators tail the event feed. Tables for people, `--json` for scripts; errors print
//! the server's message and exit non-zero.

#![forbid(unsafe_code)]

mod export;
mod output;
mod poll;
mod qa;
mod rating;
mod recording;
mod settings;
mod stage;

use std::{collections::HashMap, path::PathBuf};

use anyhow::{Context, anyhow, bail};
use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use clap::{Args, Parser, Subcommand, ValueEnum};
use futures::StreamExt;
use output::{Out, clock, label, print_conference, print_session, table, text};
use podium_client::{Client, FeedItem, Tls, payload_to_json, pb};

#[derive(Debug, Parser)]
#[command(
    name = "podium",
    version,
    about = "The command line of podium, the control plane for hybrid conferences"
)]
struct Cli {
    /// podiumd's address, host:port.
    #[arg(long, global = true, env = "PODIUM_ADDR")]
    addr: Option<String>,
    /// Bearer token.
    #[arg(long, global = true, env = "PODIUM_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The conference to work on; defaults to the config file's, then the token's own.
    #[arg(long, short = 'c', global = true, env = "PODIUM_CONFERENCE")]
    conference: Option<String>,
    /// Print JSON (protobuf's JSON mapping) instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// Language to show titles in (e.g. km); the conference's default language otherwise.
    #[arg(long, global = true)]
    lang: Option<String>,
    /// PEM file of the CA that signed podiumd's certificate (TLS; implies https).
    #[arg(long, global = true, env = "PODIUM_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// PEM client certificate, for a podiumd that asks for mutual TLS.
    #[arg(long, global = true, env = "PODIUM_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM key of the client certificate.
    #[arg(long, global = true, env = "PODIUM_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// The name in podiumd's certificate, when it is not the host of --addr.
    #[arg(long, global = true, env = "PODIUM_TLS_DOMAIN")]
    tls_domain: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create, show and list conferences.
    #[command(subcommand)]
    Conference(ConferenceCmd),
    /// Add rooms.
    #[command(subcommand)]
    Room(RoomCmd),
    /// Add and list speakers.
    #[command(subcommand)]
    Speaker(SpeakerCmd),
    /// Schedule, list and show sessions.
    #[command(subcommand)]
    Session(SessionCmd),
    /// Find slots that suit every speaker.
    #[command(subcommand)]
    Slots(SlotsCmd),
    /// Issue tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// Join a conference as an attendee with its join code.
    Join(JoinArgs),
    /// Show who the token belongs to.
    Whoami,
    /// Follow a conference's event feed.
    #[command(subcommand)]
    Events(EventsCmd),
    /// The live status of every session.
    #[command(subcommand)]
    Status(stage::StatusCmd),
    /// Put a source on air: the speaker, the recording, a backup speaker, or the slate.
    Switch(stage::SwitchArgs),
    /// Pin what is on air: no rule moves it until you unpin.
    Pin { session: String },
    /// Let the failover rules move the source again.
    Unpin { session: String },
    /// Readiness of the coming sessions: test connection, recording, backup, local hours.
    Preflight(stage::PreflightArgs),
    /// Create, open, close and watch live polls.
    #[command(subcommand)]
    Poll(poll::PollCmd),
    /// Vote in a poll (attendees).
    Vote(poll::VoteArgs),
    /// The conference's feedback as open data (CSV or JSON): aggregated and anonymised.
    Export(export::ExportArgs),
    /// Ask, upvote, list and moderate a session's questions.
    #[command(subcommand)]
    Qa(qa::QaCmd),
    /// Rate a session once it is live, 1 to 5 (attendees).
    Rate(rating::RateArgs),
    /// Session ratings: count, mean, distribution and comments (moderators).
    Ratings { session: Option<String> },
    /// Upload, fetch and list pre-recorded talks.
    #[command(subcommand)]
    Recording(recording::RecordingCmd),
    /// Save the address, token or conference to the config file.
    #[command(subcommand)]
    Config(ConfigCmd),
}

#[derive(Debug, Subcommand)]
enum ConferenceCmd {
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
enum RoomCmd {
    /// Add a room.
    Add {
        name: String,
        #[arg(long, default_value_t = 0)]
        capacity: u32,
    },
}

#[derive(Debug, Subcommand)]
enum SpeakerCmd {
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
enum Kind {
    Talk,
    Panel,
    Breakout,
    Pitch,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FailbackArg {
    Sticky,
    ReturnWhenStable,
}

#[derive(Debug, Subcommand)]
enum SessionCmd {
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
    /// Show one session, with its times in each speaker's zone.
    Show { id: String },
    /// Take a session live, on its speaker.
    Start { id: String },
    /// End a live session.
    End { id: String },
}

#[derive(Debug, Subcommand)]
enum SlotsCmd {
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

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RoleArg {
    Admin,
    Organiser,
    Moderator,
    Integration,
    Speaker,
}

#[derive(Debug, Subcommand)]
enum TokenCmd {
    /// Issue a token (admin, or organiser of the conference).
    Issue {
        #[arg(long, value_enum)]
        role: RoleArg,
        /// Who holds it, e.g. "OBS bridge".
        #[arg(long, default_value = "")]
        name: String,
        /// For --role speaker.
        #[arg(long)]
        speaker: Option<String>,
        /// Days the token is valid (default 30).
        #[arg(long)]
        days: Option<u64>,
    },
}

#[derive(Debug, Args)]
struct JoinArgs {
    /// The join code, e.g. KQ7M-2XHD.
    code: String,
    /// Your display name.
    #[arg(long, default_value = "")]
    name: String,
    /// Save the token and conference to the config file.
    #[arg(long)]
    save: bool,
}

#[derive(Debug, Subcommand)]
enum EventsCmd {
    /// Print the conference's events from a position, then follow live ones (Ctrl-C stops).
    Tail {
        /// First global position; 0 replays everything.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Only this event type, e.g. podium.v1.SessionScheduled; repeatable.
        #[arg(long = "type")]
        types: Vec<String>,
        /// Stop once every stored event has been printed instead of following.
        #[arg(long)]
        no_follow: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCmd {
    /// Save --addr, --token and --conference (those given) to the config file.
    Save,
    /// Print the config file's path.
    Path,
}

const DEFAULT_ADDR: &str = "127.0.0.1:50051";

struct Ctx {
    client: Client,
    conference: Option<String>,
    out: Out,
}

impl Ctx {
    /// The conference to work on: --conference, the config file's, or the token's own.
    async fn conference(&self) -> anyhow::Result<String> {
        if let Some(c) = &self.conference {
            return Ok(c.clone());
        }
        let me = self
            .client
            .access()
            .who_am_i(pb::WhoAmIRequest {})
            .await?
            .into_inner();
        me.principal
            .map(|p| p.conference_id)
            .filter(|c| !c.is_empty())
            .ok_or_else(|| anyhow!("say which conference with --conference (or PODIUM_CONFERENCE)"))
    }

    async fn fetch_conference(&self, id: &str) -> anyhow::Result<pb::Conference> {
        let response = self
            .client
            .agenda()
            .get_conference(pb::GetConferenceRequest {
                conference_id: id.to_owned(),
            })
            .await?;
        response
            .into_inner()
            .conference
            .context("server sent no conference")
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            match error.downcast_ref::<tonic::Status>() {
                Some(status) => eprintln!("error: {} ({:?})", status.message(), status.code()),
                None => eprintln!("error: {error:#}"),
            }
            std::process::ExitCode::FAILURE
        }
    }
}

/// The TLS settings the flags ask for, if any.
fn tls(cli: &Cli) -> anyhow::Result<Option<Tls>> {
    if cli.tls_ca.is_none() && cli.tls_cert.is_none() && cli.tls_domain.is_none() {
        return Ok(None);
    }
    let read = |path: &PathBuf| {
        std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
    };
    Ok(Some(Tls {
        ca_pem: cli.tls_ca.as_ref().map(read).transpose()?,
        identity: match (&cli.tls_cert, &cli.tls_key) {
            (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
            _ => None,
        },
        domain: cli.tls_domain.clone(),
    }))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let file = settings::load()?;
    let addr = cli
        .addr
        .clone()
        .or(file.addr.clone())
        .unwrap_or_else(|| DEFAULT_ADDR.to_owned());
    let token = cli.token.clone().or(file.token.clone());
    let conference = cli.conference.clone().or(file.conference.clone());
    let lang: Option<&'static str> = cli.lang.clone().map(|l| &*Box::leak(l.into_boxed_str()));
    let out = Out {
        json: cli.json,
        lang,
    };

    if let Command::Config(cmd) = &cli.command {
        let path = settings::config_path()
            .context("no config directory for this user; set PODIUM_CONFIG")?;
        return match cmd {
            ConfigCmd::Path => {
                println!("{}", path.display());
                Ok(())
            }
            ConfigCmd::Save => {
                let path = settings::save(&settings::FileSettings {
                    addr: cli.addr,
                    token: cli.token,
                    conference: cli.conference,
                })?;
                println!("saved to {}", path.display());
                Ok(())
            }
        };
    }

    let client = Client::connect_with(&addr, token, tls(&cli)?.as_ref()).await?;
    let ctx = Ctx {
        client,
        conference,
        out,
    };
    match cli.command {
        Command::Conference(cmd) => conference_cmd(&ctx, cmd).await,
        Command::Room(RoomCmd::Add { name, capacity }) => {
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
        Command::Speaker(SpeakerCmd::Add {
            name,
            time_zone,
            organisation,
            hours,
        }) => {
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
        Command::Speaker(SpeakerCmd::List) => {
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
        Command::Session(cmd) => session_cmd(&ctx, cmd).await,
        Command::Speaker(SpeakerCmd::Connect(args)) => stage::connect(&ctx, args).await,
        Command::Status(cmd) => stage::watch(&ctx, cmd).await,
        Command::Switch(args) => stage::switch(&ctx, args).await,
        Command::Pin { session } => stage::pin(&ctx, session, true).await,
        Command::Unpin { session } => stage::pin(&ctx, session, false).await,
        Command::Preflight(args) => stage::preflight(&ctx, args).await,
        Command::Poll(cmd) => poll::run(&ctx, cmd).await,
        Command::Vote(args) => poll::vote(&ctx, args).await,
        Command::Export(args) => export::export(&ctx, args).await,
        Command::Qa(cmd) => qa::run(&ctx, cmd).await,
        Command::Rate(args) => rating::rate(&ctx, args).await,
        Command::Ratings { session } => rating::ratings(&ctx, session).await,
        Command::Recording(cmd) => recording::run(&ctx, cmd).await,
        Command::Slots(SlotsCmd::Suggest {
            speakers,
            minutes,
            from,
            to,
            room,
            limit,
            step,
        }) => {
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
        Command::Token(TokenCmd::Issue {
            role,
            name,
            speaker,
            days,
        }) => {
            let role = match role {
                RoleArg::Admin => pb::Role::Admin,
                RoleArg::Organiser => pb::Role::Organiser,
                RoleArg::Moderator => pb::Role::Moderator,
                RoleArg::Integration => pb::Role::Integration,
                RoleArg::Speaker => pb::Role::Speaker,
            };
            let conference_id = if role == pb::Role::Admin {
                String::new()
            } else {
                ctx.conference().await?
            };
            let issued = ctx
                .client
                .access()
                .issue_token(pb::IssueTokenRequest {
                    role: role as i32,
                    conference_id,
                    speaker_id: speaker.unwrap_or_default(),
                    name,
                    ttl_seconds: days.map_or(0, |d| d.saturating_mul(86_400)),
                })
                .await?
                .into_inner();
            if !out.json(&issued) {
                // The token alone on stdout, so that `TOKEN=$(podium token issue ...)` works.
                println!("{}", issued.token);
                if let Some(p) = issued.principal {
                    eprintln!(
                        "issued a {} token for {} ({})",
                        output::role(p.role),
                        p.name,
                        p.id
                    );
                }
            }
            Ok(())
        }
        Command::Join(JoinArgs { code, name, save }) => {
            let joined = ctx
                .client
                .access()
                .join(pb::JoinRequest {
                    join_code: code,
                    display_name: name,
                })
                .await?
                .into_inner();
            let principal = joined.principal.clone().unwrap_or_default();
            if save {
                let path = settings::save(&settings::FileSettings {
                    addr: Some(addr),
                    token: Some(joined.token.clone()),
                    conference: Some(principal.conference_id.clone()),
                })?;
                eprintln!(
                    "saved token for conference {} to {}",
                    principal.conference_id,
                    path.display()
                );
            }
            if !out.json(&joined) {
                println!("{}", joined.token);
                eprintln!(
                    "joined conference {} as {} ({})",
                    principal.conference_id, principal.name, principal.id
                );
            }
            Ok(())
        }
        Command::Whoami => {
            let me = ctx
                .client
                .access()
                .who_am_i(pb::WhoAmIRequest {})
                .await?
                .into_inner();
            if !out.json(&me) {
                let p = me.principal.unwrap_or_default();
                println!("{} ({}), role {}", p.name, p.id, output::role(p.role));
                if !p.conference_id.is_empty() {
                    println!("conference {}", p.conference_id);
                }
                if !p.speaker_id.is_empty() {
                    println!("speaker {}", p.speaker_id);
                }
                if let Some(exp) = p
                    .expires_at
                    .and_then(|t| DateTime::<Utc>::from_timestamp(t.seconds, 0))
                {
                    println!("expires {}", exp.format("%Y-%m-%d %H:%M UTC"));
                }
            }
            Ok(())
        }
        Command::Events(EventsCmd::Tail {
            from,
            types,
            no_follow,
        }) => events_tail(&ctx, from, types, no_follow).await,
        Command::Config(_) => Ok(()),
    }
}

async fn conference_cmd(ctx: &Ctx, cmd: ConferenceCmd) -> anyhow::Result<()> {
    let out = ctx.out;
    match cmd {
        ConferenceCmd::Create {
            id,
            title,
            time_zone,
            language,
            join_code,
        } => {
            let title = localized(&title, &language)?;
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
                        text(&c.title, out.lang, &c.default_language).to_owned(),
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

async fn session_cmd(ctx: &Ctx, cmd: SessionCmd) -> anyhow::Result<()> {
    let out = ctx.out;
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
            let start = parse_time(&start, zone).context("--start")?;
            let end = match (end, minutes) {
                (Some(end), _) => parse_time(&end, zone).context("--end")?,
                (None, Some(m)) => start + Duration::minutes(i64::from(m)),
                (None, None) => bail!("give --end or --minutes"),
            };
            let failover = pb::FailoverPolicy {
                failover_after_ms: failover_after_ms.unwrap_or(0),
                failback: match failback {
                    None => pb::FailbackMode::Unspecified,
                    Some(FailbackArg::Sticky) => pb::FailbackMode::Sticky,
                    Some(FailbackArg::ReturnWhenStable) => pb::FailbackMode::ReturnWhenStable,
                } as i32,
                ..Default::default()
            };
            let session = ctx
                .client
                .agenda()
                .add_session(pb::AddSessionRequest {
                    request_id: Client::request_id(),
                    conference_id: conference.id.clone(),
                    title: Some(localized(&title, &conference.default_language)?),
                    kind: match kind {
                        Kind::Talk => pb::SessionKind::Talk,
                        Kind::Panel => pb::SessionKind::Panel,
                        Kind::Breakout => pb::SessionKind::Breakout,
                        Kind::Pitch => pb::SessionKind::Pitch,
                    } as i32,
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
                    text(&s.title, out.lang, &conference.default_language).to_owned(),
                    speakers.join("\n"),
                ]);
            }
            println!("{t}");
            let warnings: usize = list.sessions.iter().map(|s| s.warnings.len()).sum();
            if warnings > 0 {
                println!("{warnings} warning(s): see `podium session show <id>`");
            }
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

async fn events_tail(
    ctx: &Ctx,
    from: u64,
    types: Vec<String>,
    no_follow: bool,
) -> anyhow::Result<()> {
    use std::io::Write;
    let conference_id = ctx.conference().await?;
    let mut stdout = std::io::stdout().lock();
    let feed = ctx.client.follow_feed(&conference_id, from, types);
    futures::pin_mut!(feed);
    while let Some(item) = feed.next().await {
        match item? {
            FeedItem::Event(event) => {
                let payload = payload_to_json(&event.r#type, &event.payload)
                    .unwrap_or(serde_json::Value::Null);
                let written = if ctx.out.json {
                    let mut json = podium_client::message_to_json(&event);
                    if let Some(object) = json.as_object_mut() {
                        object.insert("payload".into(), payload);
                    }
                    writeln!(stdout, "{json}")
                } else {
                    let at = event
                        .recorded_at
                        .and_then(|t| DateTime::<Utc>::from_timestamp(t.seconds, 0))
                        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                        .unwrap_or_default();
                    let short = event.r#type.trim_start_matches("podium.v1.");
                    writeln!(
                        stdout,
                        "#{:<6} {at}  {short:<18} {}  {}",
                        event.position, event.stream, payload
                    )
                };
                match written {
                    Ok(()) => {}
                    // A closed pipe (`podium events tail | head`) is the reader saying "enough".
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                    Err(e) => return Err(e.into()),
                }
            }
            FeedItem::CaughtUp(position) => {
                if no_follow {
                    return Ok(());
                }
                if !ctx.out.json {
                    eprintln!(
                        "-- caught up at position {position}; following live events (Ctrl-C stops) --"
                    );
                }
            }
        }
    }
    Ok(())
}

/// `--title "Text"` is the default language; `--title km=Text` another; one value may also
/// hold several, `en=Open budgets;km=ថវិកាបើកចំហ`.
fn localized(values: &[String], default_language: &str) -> anyhow::Result<pb::LocalizedText> {
    let mut text = HashMap::new();
    for value in values {
        let tagged: Option<Vec<(&str, &str)>> = value
            .split(';')
            .map(|part| part.split_once('=').filter(|(lang, _)| is_tag(lang)))
            .collect();
        let pairs = tagged.unwrap_or_else(|| vec![(default_language, value.as_str())]);
        for (lang, t) in pairs {
            if text.insert(lang.to_owned(), t.to_owned()).is_some() {
                bail!("language {lang} is given twice");
            }
        }
    }
    Ok(pb::LocalizedText { text })
}

fn is_tag(text: &str) -> bool {
    let mut parts = text.split('-');
    let primary = parts.next().unwrap_or_default();
    (2..=3).contains(&primary.len())
        && primary.chars().all(|c| c.is_ascii_lowercase())
        && parts.all(|p| (2..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// RFC 3339 with an offset, or a wall-clock time in `zone` ("2024-11-14 09:00").
fn parse_time(text: &str, zone: Tz) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    let naive = [
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
    .or_else(|| {
        NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
    })
    .ok_or_else(|| anyhow!("{text:?} is not a time; use \"2024-11-14 09:00\" or RFC 3339"))?;
    zone.from_local_datetime(&naive)
        .single()
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| {
            anyhow!(
                "{text} does not exist or is ambiguous in {} (a daylight-saving change)",
                zone.name()
            )
        })
}

fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_take_a_language_prefix() {
        let t = localized(
            &["Open Data Conference".into(), "km=សន្និសីទទិន្នន័យបើកចំហ".into()],
            "en",
        )
        .unwrap();
        assert_eq!(t.text["en"], "Open Data Conference");
        assert_eq!(t.text["km"], "សន្និសីទទិន្នន័យបើកចំហ");
        assert!(localized(&["A".into(), "en=B".into()], "en").is_err());
        // Not a tag: the whole value is the default language's text.
        let t = localized(&["E=mc2 for data".into()], "en").unwrap();
        assert_eq!(t.text["en"], "E=mc2 for data");
    }

    #[test]
    fn wall_clock_times_are_read_in_the_conference_zone() {
        let pp = chrono_tz::Asia::Phnom_Penh;
        assert_eq!(
            parse_time("2024-11-14 09:00", pp).unwrap().to_rfc3339(),
            "2024-11-14T02:00:00+00:00"
        );
        assert_eq!(
            parse_time("2024-11-14T09:00:00Z", pp).unwrap().to_rfc3339(),
            "2024-11-14T09:00:00+00:00"
        );
        assert!(parse_time("14/11/2024", pp).is_err());
        // 02:30 does not exist in New York on 10 March 2024.
        assert!(parse_time("2024-03-10 02:30", chrono_tz::America::New_York).is_err());
    }
}
