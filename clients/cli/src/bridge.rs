//! `podium bridge obs`: the playout bridge for one room, run on the machine that produces the
//! room's program in OBS Studio. See `podium_bridge` for what it does.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use podium_bridge::Config;

use crate::context::Ctx;

#[derive(Subcommand, Debug)]
pub enum BridgeCmd {
    /// Carry out podium's decisions for one room in OBS Studio and report what is on air.
    /// Runs until interrupted; needs an integration (or moderator) token.
    Obs(ObsArgs),
}

#[derive(Args, Debug)]
pub struct ObsArgs {
    /// The bridge's configuration file (room, OBS address, scenes, media input, directory).
    #[arg(long)]
    pub config: PathBuf,
    /// obs-websocket's password, if OBS asks for one.
    #[arg(long, env = "OBS_PASSWORD", hide_env_values = true)]
    pub obs_password: Option<String>,
}

pub async fn run(ctx: &Ctx, cmd: BridgeCmd) -> anyhow::Result<()> {
    let BridgeCmd::Obs(args) = cmd;
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("cannot read {}", args.config.display()))?;
    let config =
        Config::from_toml(&text).map_err(|e| anyhow::anyhow!("{}: {e}", args.config.display()))?;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,obws=warn".into()),
        )
        .init();
    let conference = ctx.conference().await?;
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    let shutdown = async {
        tokio::select! {
            () = stop => {}
            () = terminate => {}
        }
    };
    podium_bridge::run(
        ctx.client.clone(),
        conference,
        config,
        args.obs_password,
        shutdown,
    )
    .await?;
    Ok(())
}
