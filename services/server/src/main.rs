//! The `podiumd` binary: parses configuration, sets up tracing, binds the listener and runs
//! podium until SIGINT or SIGTERM.

#![forbid(unsafe_code)]

use std::io::IsTerminal;

use clap::{CommandFactory, FromArgMatches, parser::ValueSource};
use podium_server::{Command, Config, LogFormat, Podium, backup};
use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
    // Before the runtime's threads: podiumd may start itself again here.
    podium_server::malloc::settle();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let matches = Config::command().get_matches();
    let config = Config::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if config.print_config {
        println!("{:#}", config.effective());
        return Ok(());
    }
    if let Some(Command::Restore { file }) = &config.command {
        // Never into the default by accident: the directory is named on purpose.
        if matches.value_source("data_dir") == Some(ValueSource::DefaultValue) {
            eprintln!(
                "podiumd: restore needs --data-dir (or PODIUM_DATA_DIR): the new directory to restore into"
            );
            std::process::exit(2);
        }
        if config.log.log != podium_server::LogChoice::Sled {
            eprintln!(
                "podiumd: restore writes a sled log into a new data directory; a NATS cluster's \
                 log is backed up and restored with JetStream's own tools (see deploy/README.md)"
            );
            std::process::exit(2);
        }
        restore(file, &config.data_dir);
    }
    if let Err(problem) = config.validate() {
        eprintln!("podiumd: {problem}");
        std::process::exit(2);
    }
    // mp4-atom warns of every box it does not know, which QuickTime files are full of; a file
    // podium cannot use is refused with its reason all the same.
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,mp4_atom=error"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: a file or a journal gets plain text.
        .with_ansi(std::io::stderr().is_terminal());
    match config.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }

    tracing::info!(config = %config.effective(), "effective configuration");
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    // The real address, where `--listen` asked for port 0: the node's default name holds it.
    let mut config = config;
    config.listen = listener.local_addr()?;
    let podium = Podium::open(config).await?;
    // One line on stdout once podiumd is ready, with the real address, for scripts and tests
    // that ask for port 0.
    println!("podiumd listening on {}", listener.local_addr()?);

    if let Err(error) = podium.serve(listener, shutdown_signal()).await {
        tracing::error!(%error, "podiumd stopped with an error");
        return Err(error.into());
    }
    Ok(())
}

/// `podiumd restore`: says what came back, or why nothing did, and exits.
fn restore(file: &std::path::Path, data_dir: &std::path::Path) -> ! {
    match backup::restore(file, data_dir) {
        Ok(restored) => {
            let taken = restored.taken_at.map_or_else(String::new, |at| {
                format!(" (taken {})", prost_types::Timestamp::from(at))
            });
            println!(
                "restored {} events, {} keys and {} of {} recording files from {}{taken} into {}",
                restored.head,
                restored.keys,
                restored.recording_files,
                restored.recordings,
                file.display(),
                data_dir.display(),
            );
            if restored.erased_events > 0 {
                println!(
                    "dropped the personal fields of {} events of erased people",
                    restored.erased_events
                );
            }
            let missing = restored.recordings.saturating_sub(restored.recording_files);
            if missing > 0 {
                println!(
                    "the backup holds no files for {missing} recordings: upload them again \
                     (podium recording upload), or restore a backup taken with --recordings"
                );
            }
            println!("start podiumd with --data-dir {}", data_dir.display());
            std::process::exit(0)
        }
        Err(error) => {
            eprintln!("podiumd: cannot restore {}: {error}", file.display());
            std::process::exit(1)
        }
    }
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => tracing::info!("SIGINT received"),
                    _ = terminate.recv() => tracing::info!("SIGTERM received"),
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only SIGINT stops podiumd");
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
        tracing::info!("interrupt received");
    }
}
