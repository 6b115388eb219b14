//! `podium`: the command line for everyone who uses podium. Organisers set up conferences,
//! rooms, speakers and sessions; anyone with a token reads the agenda; attendees join with a
//! code; integrators tail the event feed. Tables for people, `--json` for scripts; errors print
//! the server's message and exit non-zero. This file only dispatches: the command tree is in
//! `cli.rs`, each command's arguments and work in its own module.

#![forbid(unsafe_code)]

mod access;
mod admin;
mod agenda;
mod bridge;
mod cli;
mod context;
mod events;
mod export;
mod output;
mod parse;
mod poll;
mod privacy;
mod qa;
mod rating;
mod recording;
mod session_change;
mod settings;
mod stage;
mod status_watch;

use clap::Parser;

use cli::{Cli, Command};
use context::Ctx;

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

async fn run(cli: Cli) -> anyhow::Result<()> {
    // Read first, so that a broken config file is reported by every command alike.
    let file = settings::load()?;
    if let Command::Config(cmd) = &cli.command {
        let given = settings::FileSettings {
            addr: cli.addr.clone(),
            token: cli.token.clone(),
            conference: cli.conference.clone(),
        };
        return settings::run(cmd, given);
    }
    if let Command::Health { service } = &cli.command {
        // Needs no token, and asks every node named, not only the first that answers.
        let tls = context::tls(&cli)?;
        return admin::health(
            &context::address(&cli, &file),
            tls.as_ref(),
            service.as_deref(),
        )
        .await;
    }
    let ctx = Ctx::connect(&cli, file).await?;
    match cli.command {
        Command::Conference(cmd) => agenda::conference(&ctx, cmd).await,
        Command::Room(cmd) => agenda::room(&ctx, cmd).await,
        Command::Speaker(cmd) => agenda::speaker(&ctx, cmd).await,
        Command::Session(cmd) => agenda::session(&ctx, cmd).await,
        Command::Slots(cmd) => agenda::slots(&ctx, cmd).await,
        Command::Token(cmd) => access::token(&ctx, cmd).await,
        Command::Privacy(cmd) => privacy::privacy(&ctx, cmd).await,
        Command::Join(args) => access::join(&ctx, args).await,
        Command::Whoami => access::whoami(&ctx).await,
        Command::Events(cmd) => events::run(&ctx, cmd).await,
        Command::Status(cmd) => status_watch::watch(&ctx, cmd).await,
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
        Command::Bridge(cmd) => bridge::run(&ctx, cmd).await,
        Command::Admin(cmd) => admin::run(&ctx, cmd).await,
        // Answered above, before connecting: config needs no server, health connects itself.
        Command::Config(_) | Command::Health { .. } => Ok(()),
    }
}
