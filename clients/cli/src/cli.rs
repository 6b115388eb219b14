//! The command tree as clap sees it: the global flags every command takes and the list of
//! commands, each pointing at the arguments its own module defines. Help text is written here
//! and beside each command's arguments, so `podium --help` reads like this file.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::{access, agenda, events, export, poll, qa, rating, recording, settings, stage};

#[derive(Debug, Parser)]
#[command(
    name = "podium",
    version,
    about = "The command line of podium, the control plane for hybrid conferences"
)]
pub struct Cli {
    /// podiumd's address, host:port; several nodes of one conference separated by commas (the
    /// next is used when one cannot be reached; `health` asks every one).
    #[arg(long, global = true, env = "PODIUM_ADDR")]
    pub addr: Option<String>,
    /// Bearer token.
    #[arg(long, global = true, env = "PODIUM_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The conference to work on; defaults to the config file's, then the token's own.
    #[arg(long, short = 'c', global = true, env = "PODIUM_CONFERENCE")]
    pub conference: Option<String>,
    /// Print JSON (protobuf's JSON mapping) instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// Language to show titles in (e.g. km); the conference's default language otherwise.
    #[arg(long, global = true)]
    pub lang: Option<String>,
    /// PEM file of the CA that signed podiumd's certificate (TLS; implies https).
    #[arg(long, global = true, env = "PODIUM_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// PEM client certificate, for a podiumd that asks for mutual TLS.
    #[arg(long, global = true, env = "PODIUM_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM key of the client certificate.
    #[arg(long, global = true, env = "PODIUM_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The name in podiumd's certificate, when it is not the host of --addr.
    #[arg(long, global = true, env = "PODIUM_TLS_DOMAIN")]
    pub tls_domain: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The node at a glance for its operator (admin token).
    #[command(subcommand)]
    Admin(crate::admin::AdminCmd),
    /// Whether podiumd serves: prints SERVING, NOT_SERVING or SERVICE_UNKNOWN and fails unless
    /// SERVING (no token needed; for health checks). Given several nodes, asks each at once and
    /// prints one line per node, failing unless every node serves.
    Health {
        /// One service's health, e.g. podium.v1.Polls; podiumd as a whole if omitted.
        #[arg(long)]
        service: Option<String>,
    },
    /// Run a playout bridge: podium's decisions carried out in OBS Studio.
    #[command(subcommand)]
    Bridge(crate::bridge::BridgeCmd),
    /// Create, show and list conferences.
    #[command(subcommand)]
    Conference(agenda::ConferenceCmd),
    /// Add rooms.
    #[command(subcommand)]
    Room(agenda::RoomCmd),
    /// Add and list speakers.
    #[command(subcommand)]
    Speaker(agenda::SpeakerCmd),
    /// Schedule, list and show sessions.
    #[command(subcommand)]
    Session(agenda::SessionCmd),
    /// Find slots that suit every speaker.
    #[command(subcommand)]
    Slots(agenda::SlotsCmd),
    /// Issue tokens.
    #[command(subcommand)]
    Token(access::TokenCmd),
    /// What podium holds about one person, and erasing them (data-protection requests).
    #[command(subcommand)]
    Privacy(crate::privacy::PrivacyCmd),
    /// Join a conference as an attendee with its join code.
    Join(access::JoinArgs),
    /// Show who the token belongs to.
    Whoami,
    /// Follow a conference's event feed.
    #[command(subcommand)]
    Events(events::EventsCmd),
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
    Config(settings::ConfigCmd),
}
