//! `podium-loadgen`: runs one scenario against a podiumd on loopback (its own by default) and
//! prints the figures. Progress goes to stderr, the figures to stdout.

#![forbid(unsafe_code)]

use std::{path::PathBuf, time::Duration};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use podium_loadgen::{
    Podium, backup,
    failover::{
        self, DropMode,
        audience::{Audience, AudienceReport},
    },
    fanout,
    podiumd::{self, LocalPodiumd},
    soak, startup,
    stats::ms,
    votes,
};

/// Scenarios that measure podium, each printing its figures beside its target (README, "Targets").
#[derive(Debug, Parser)]
#[command(name = "podium-loadgen", version)]
struct Cli {
    /// A running podiumd to measure, on loopback. By default podium-loadgen starts its own, the
    /// podiumd built next to it, with a temporary data directory.
    #[arg(long, global = true)]
    addr: Option<String>,
    /// The admin token of the podiumd named by --addr.
    #[arg(long, global = true, env = "PODIUM_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// The time from a speaker's link dropping to a watcher seeing the recording on air, minus
    /// failover_after, over many drops.
    Failover(FailoverArgs),
    /// Durable ballots per second, as a ratio to the no-op Ping of the same podiumd.
    Votes(VotesArgs),
    /// Watchers on one poll while ballots arrive ten a second: ballot acknowledged to every
    /// watcher updated, and podiumd's memory per idle watcher; with --web, the same over the
    /// browsers' transport (SSE over HTTP/1.1), printed beside it.
    Fanout(FanoutArgs),
    /// A whole conference at accelerated pace: podiumd's memory, open files, threads and tasks
    /// after each day, and every poll's tally against the ballots cast.
    Soak(SoakArgs),
    /// podiumd's time to SERVING on a log of many events, without a snapshot and with one.
    Startup(StartupArgs),
    /// A backup of a podiumd on a log of many events while appends go on, and its restore.
    Backup(BackupArgs),
    /// Three podiumd nodes on a NATS JetStream cluster (it needs `nats-server` 2.14 or later):
    /// the node running the status engine killed as the speaker falls silent, and the time
    /// until a watcher sees the recording on air.
    Takeover(TakeoverArgs),
}

#[derive(Debug, Args)]
struct TakeoverArgs {
    /// How many times the engine's node is killed, each on a log and nodes of their own.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    drops: u32,
    /// The session's failover_after in milliseconds.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(100..))]
    failover_after_ms: u32,
    /// The engine's lease time-to-live in milliseconds (podiumd's `--engine-lease`).
    #[arg(long, default_value_t = 3000, value_parser = clap::value_parser!(u32).range(500..=60_000))]
    lease_ms: u32,
}

#[derive(Debug, Args)]
struct BackupArgs {
    /// Events in the log that is backed up.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Seconds the appends are timed on the idle node first.
    #[arg(long, default_value_t = 5)]
    baseline_seconds: u64,
}

#[derive(Debug, Args)]
struct SoakArgs {
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    days: u32,
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    rooms: u32,
    /// Sessions per room per day.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    sessions: u32,
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u32).range(1..))]
    attendees: u32,
    /// Polls per session.
    #[arg(long, default_value_t = 3)]
    polls: u32,
    /// Questions per session.
    #[arg(long, default_value_t = 20)]
    questions: u32,
    /// The sessions' failover_after in milliseconds (podiumd's minimum is 100).
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(100..))]
    failover_after_ms: u32,
}

#[derive(Debug, Args)]
struct StartupArgs {
    /// Events in the log podiumd starts on.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
}

#[derive(Debug, Args)]
struct VotesArgs {
    /// Concurrent attendees, each on its own connection.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Seconds each phase (Ping, then ballots) runs.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Spread the attendees over this many podiumd nodes that podium-loadgen starts on a
    /// three-server NATS JetStream cluster (it needs `nats-server` 2.14 or later); 1 measures
    /// one podiumd on sled (or the one --addr names).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=8))]
    nodes: u32,
}

#[derive(Debug, Args)]
struct FanoutArgs {
    #[arg(long, default_value_t = 10_000)]
    watchers: usize,
    /// Ballots cast, ten a second.
    #[arg(long, default_value_t = 100)]
    votes: usize,
    /// Watch streams per connection.
    #[arg(long, default_value_t = 100)]
    per_connection: usize,
    /// Also measure a bare tonic server-streaming fan-out (started in this process) of the same
    /// message to the same watchers, and print podium's p99 as a ratio to it.
    #[arg(long)]
    baseline: bool,
    /// Spread the watchers over this many podiumd nodes that podium-loadgen starts on a
    /// three-server NATS JetStream cluster (it needs `nats-server` 2.14 or later); the ballots
    /// go through the first. 1 measures one podiumd on sled (or the one --addr names).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=8))]
    nodes: u32,
    /// Then the same fan-out over the web transport: --web-watchers browsers' SSE streams
    /// (`GET /live/results`, HTTP/1.1, one TCP connection each), on a fresh podiumd when
    /// podium-loadgen starts its own, printed beside the gRPC figures.
    #[arg(long)]
    web: bool,
    /// SSE watchers with --web; each is a socket on both sides.
    #[arg(long, default_value_t = 2_000, value_parser = clap::value_parser!(u32).range(1..=20_000))]
    web_watchers: u32,
    /// SSE connections opened at once with --web, batch by batch.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    web_connecting: u32,
}

#[derive(Debug, Args)]
struct FailoverArgs {
    /// How many times the link drops (every room's link, with --rooms); 100 for one room, 5 for
    /// more by default.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    drops: Option<u32>,
    /// Sessions, one per room, each with its own speaker agent, followed by one watcher.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1000))]
    rooms: u32,
    /// With --rooms: every link drops at the same instant (the venue's uplink fails), instead
    /// of one after another 37 ms apart.
    #[arg(long)]
    together: bool,
    /// The session's failover_after in milliseconds (podiumd's minimum is 100).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(100..))]
    failover_after_ms: u32,
    /// freeze: the heartbeats stop and the stream stays open; close: the connection closes too.
    #[arg(long, value_enum, default_value_t = DropMode::Freeze)]
    mode: DropMode,
    /// While the links drop, this many streams watch a poll's results (in a conference of
    /// their own) and ballots arrive ten a second: failover with a hall's audience on podiumd.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=20_000))]
    audience: u32,
    /// Carry each drop to this OBS Studio (obs-websocket's host:port) through a playout bridge,
    /// and measure until OBS confirms the recording on its program output.
    #[arg(long, requires = "obs_media")]
    obs: Option<String>,
    /// obs-websocket's password.
    #[arg(long, env = "OBS_PASSWORD", hide_env_values = true)]
    obs_password: Option<String>,
    /// With --obs: a real video of at least ten minutes, played as the recording.
    #[arg(long)]
    obs_media: Option<PathBuf>,
    /// With --obs: the media input that plays recordings, and the scenes.
    #[arg(long, default_value = "Talk")]
    obs_media_input: String,
    #[arg(long, default_value = "Speaker")]
    speaker_scene: String,
    #[arg(long, default_value = "Recording")]
    recording_scene: String,
    #[arg(long, default_value = "Slate")]
    slate_scene: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The in-process playout bridge's log (with --obs), when RUST_LOG asks for it.
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_default_env() {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_env_filter(filter)
            .init();
    }
    // Start-up starts podiumds of its own, on a log it writes first.
    if let Scenario::Startup(args) = &cli.scenario {
        if cli.addr.is_some() {
            bail!("startup measures podiumds it starts itself; it takes no --addr");
        }
        let binary: PathBuf = podiumd::beside_current_exe()?;
        let config = startup::Config {
            events: args.events,
        };
        let report = startup::run(&binary, &config, |line| eprintln!("  {line}")).await?;
        println!("podium-loadgen startup");
        println!("podiumd         {}", binary.display());
        println!("{report}");
        return Ok(());
    }
    if let Scenario::Takeover(args) = &cli.scenario {
        if cli.addr.is_some() {
            bail!("takeover measures podiumd nodes it starts itself; it takes no --addr");
        }
        let binary: PathBuf = podiumd::beside_current_exe()?;
        let config = failover::takeover::Config {
            drops: args.drops as usize,
            failover_after: Duration::from_millis(u64::from(args.failover_after_ms)),
            lease: Duration::from_millis(u64::from(args.lease_ms)),
        };
        let report = failover::takeover::run(&binary, &config, |drop, fell_back, took| {
            eprintln!(
                "  drop {drop}/{}: lease taken after {} ms, recording on air {} ms after the last heartbeat",
                config.drops,
                ms(took),
                ms(fell_back)
            );
        })
        .await?;
        let cpus = std::thread::available_parallelism().map_or(0, usize::from);
        println!("podium-loadgen takeover");
        println!("podiumd         {}, three nodes", binary.display());
        println!(
            "machine         {cpus} CPUs, three NATS servers, three podiumd and the load generator on the same machine"
        );
        println!("{report}");
        return Ok(());
    }
    if let Scenario::Fanout(args) = &cli.scenario
        && args.nodes > 1
    {
        if cli.addr.is_some() || args.web {
            bail!(
                "fanout --nodes measures gRPC watchers on podiumd nodes it starts itself; it takes no --addr or --web"
            );
        }
        let binary: PathBuf = podiumd::beside_current_exe()?;
        let config = fanout::Config {
            watchers: args.watchers.max(1),
            votes: args.votes.max(1),
            per_connection: args.per_connection.max(1),
            baseline: args.baseline,
        };
        let n = args.nodes as usize;
        eprintln!(
            "fanout: {} watchers spread over {n} podiumd nodes on a NATS cluster, {} ballots at ten a second",
            config.watchers, config.votes
        );
        let nodes =
            podiumd::LocalNodes::start(&binary, n, "podium-loadgen-fanout-admin-token-0123456789")
                .await?;
        let report = fanout::run_on(nodes.podiums(), &config, &nodes.pids(), |line| {
            eprintln!("  {line}")
        })
        .await?;
        let cpus = std::thread::available_parallelism().map_or(0, usize::from);
        println!("podium-loadgen fanout --nodes {n}");
        println!(
            "podiumd         {}, {n} nodes on one NATS log",
            binary.display()
        );
        println!(
            "machine         {cpus} CPUs, three NATS servers, {n} podiumd and the load generator on the same machine"
        );
        println!("{report}");
        return Ok(());
    }
    if let Scenario::Votes(args) = &cli.scenario
        && args.nodes > 1
    {
        if cli.addr.is_some() {
            bail!("votes --nodes measures podiumd nodes it starts itself; it takes no --addr");
        }
        let binary: PathBuf = podiumd::beside_current_exe()?;
        let config = votes::Config {
            clients: args.clients.max(1),
            duration: Duration::from_secs(args.seconds.max(1)),
        };
        let nodes = args.nodes as usize;
        eprintln!(
            "votes: {} attendees spread over {nodes} podiumd nodes on a NATS cluster, {} s of Ping then {} s of ballots",
            config.clients, args.seconds, args.seconds
        );
        let report = votes::spread::run(&binary, nodes, &config).await?;
        let cpus = std::thread::available_parallelism().map_or(0, usize::from);
        println!("podium-loadgen votes --nodes {nodes}");
        println!(
            "podiumd         {}, {nodes} nodes on one NATS log",
            binary.display()
        );
        println!(
            "machine         {cpus} CPUs, three NATS servers, {nodes} podiumd and the load generator on the same machine"
        );
        println!("{report}");
        return Ok(());
    }
    if let Scenario::Backup(args) = &cli.scenario {
        if cli.addr.is_some() {
            bail!("backup measures a podiumd it starts itself; it takes no --addr");
        }
        let binary: PathBuf = podiumd::beside_current_exe()?;
        let config = backup::Config {
            events: args.events,
            baseline: Duration::from_secs(args.baseline_seconds),
        };
        let report = backup::run(&binary, &config, |line| eprintln!("  {line}")).await?;
        println!("podium-loadgen backup");
        println!("podiumd         {}", binary.display());
        println!("{report}");
        return Ok(());
    }
    // Started here so that it lives, and is killed, with main.
    let (podium, local, about) = match &cli.addr {
        Some(addr) => {
            let token = cli
                .token
                .clone()
                .context("--addr needs the admin token: --token or PODIUM_TOKEN")?;
            podiumd::require_loopback(addr).await?;
            let podium = Podium {
                addr: addr.clone(),
                admin_token: token,
            };
            (podium, None, format!("{addr} (loopback), already running"))
        }
        None => {
            let binary: PathBuf = podiumd::beside_current_exe()?;
            let local = LocalPodiumd::start(&binary).await?;
            let about = format!(
                "{} (loopback), started by podium-loadgen from {}, data in {}",
                local.podium().addr,
                binary.display(),
                local.dir().display()
            );
            (local.podium().clone(), Some(local), about)
        }
    };
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    // Other work on the machine shows in the tail of every distribution; say how much there was.
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| {
            l.split_whitespace()
                .next()
                .map(|one| format!(", load average {one} at the start"))
        })
        .unwrap_or_default();

    match cli.scenario {
        // Measured above, before any podiumd was started.
        Scenario::Startup(_) | Scenario::Backup(_) | Scenario::Takeover(_) => {}
        Scenario::Failover(args) => {
            let rooms = args.rooms as usize;
            let config = failover::Config {
                drops: args
                    .drops
                    .map_or(if rooms > 1 { 5 } else { 100 }, |d| d as usize),
                failover_after: Duration::from_millis(u64::from(args.failover_after_ms)),
                mode: args.mode,
                rooms,
                together: args.together,
            };
            let audience = Audience::start_if(&podium, args.audience as usize).await?;
            if rooms > 1 {
                eprintln!(
                    "failover: {} drops of {rooms} rooms' links{} against {}",
                    config.drops,
                    if config.together {
                        ", together"
                    } else {
                        ", 37 ms apart"
                    },
                    podium.addr
                );
                let report = failover::together::run(&podium, &config, |drop, slowest| {
                    eprintln!(
                        "  drop {drop}/{}: slowest room {} ms",
                        config.drops,
                        ms(slowest)
                    );
                })
                .await?;
                let audience = Audience::stop_if(audience).await?;
                println!(
                    "podium-loadgen failover --rooms {rooms}{}{}",
                    if config.together { " --together" } else { "" },
                    AudienceReport::flag(&audience)
                );
                println!("podiumd         {about}");
                println!(
                    "machine         {cpus} CPUs{load}, load generator and podiumd on the same machine"
                );
                println!("failover_after  {} ms", config.failover_after.as_millis());
                AudienceReport::print(&audience);
                println!("{report}");
                drop(local);
                return Ok(());
            }
            if let (Some(address), Some(media)) = (args.obs.clone(), args.obs_media.clone()) {
                let target = failover::obs::ObsTarget {
                    address,
                    password: args.obs_password.clone(),
                    media,
                    media_input: args.obs_media_input.clone(),
                    speaker_scene: args.speaker_scene.clone(),
                    recording_scene: args.recording_scene.clone(),
                    slate_scene: args.slate_scene.clone(),
                };
                eprintln!(
                    "failover through OBS at {}: {} drops against {}",
                    target.address, config.drops, podium.addr
                );
                let report = failover::obs::run(&podium, &config, &target, |drop, sample| {
                    eprintln!(
                        "  drop {drop}/{}: OBS confirmed +{} ms",
                        config.drops,
                        ms(sample)
                    );
                })
                .await?;
                let audience = Audience::stop_if(audience).await?;
                println!(
                    "podium-loadgen failover --obs{}",
                    AudienceReport::flag(&audience)
                );
                println!("podiumd         {about}");
                println!(
                    "machine         {cpus} CPUs{load}; load generator, bridge, OBS and podiumd on the same machine"
                );
                AudienceReport::print(&audience);
                println!("{report}");
                drop(local);
                return Ok(());
            }
            eprintln!(
                "failover: {} drops of about {:.1} s each against {}",
                config.drops,
                (config.failover_after.as_millis() as f64 + 700.0) / 1000.0,
                podium.addr
            );
            let every = (config.drops / 10).max(1);
            let report = failover::run(&podium, &config, |drop, sample| {
                if drop % every == 0 {
                    eprintln!("  drop {drop}/{}: {} ms", config.drops, ms(sample));
                }
            })
            .await?;
            let audience = Audience::stop_if(audience).await?;
            println!("podium-loadgen failover{}", AudienceReport::flag(&audience));
            println!("podiumd         {about}");
            println!(
                "machine         {cpus} CPUs{load}, load generator and podiumd on the same machine"
            );
            AudienceReport::print(&audience);
            println!("{report}");
        }
        Scenario::Votes(args) => {
            let config = votes::Config {
                clients: args.clients.max(1),
                duration: Duration::from_secs(args.seconds.max(1)),
            };
            eprintln!(
                "votes: {} attendees, {} s of Ping then {} s of ballots against {}",
                config.clients, args.seconds, args.seconds, podium.addr
            );
            let report = votes::run(&podium, &config).await?;
            println!("podium-loadgen votes");
            println!("podiumd         {about}");
            println!(
                "machine         {cpus} CPUs{load}, load generator and podiumd on the same machine"
            );
            println!("{report}");
        }
        Scenario::Fanout(args) => {
            let config = fanout::Config {
                watchers: args.watchers.max(1),
                votes: args.votes.max(1),
                per_connection: args.per_connection.max(1),
                baseline: args.baseline,
            };
            eprintln!(
                "fanout: {} watchers, {} ballots at ten a second against {}",
                config.watchers, config.votes, podium.addr
            );
            let pid = local.as_ref().and_then(LocalPodiumd::pid);
            let report = fanout::run(&podium, &config, pid, |line| eprintln!("  {line}")).await?;
            println!(
                "podium-loadgen fanout{}",
                if args.web { " --web" } else { "" }
            );
            println!("podiumd         {about}");
            println!(
                "machine         {cpus} CPUs{load}, load generator and podiumd on the same machine"
            );
            println!("{report}");
            if args.web {
                let web = fanout::web::Config {
                    watchers: args.web_watchers as usize,
                    votes: config.votes,
                    connecting: args.web_connecting as usize,
                };
                // A podiumd of its own, so that memory the gRPC watchers freed and podiumd kept
                // does not hide what the web watchers take.
                let fresh = match &local {
                    Some(local) => Some(LocalPodiumd::start(local.binary()).await?),
                    None => None,
                };
                let (web_podium, web_pid) = match &fresh {
                    Some(fresh) => (fresh.podium().clone(), fresh.pid()),
                    None => (podium.clone(), None),
                };
                eprintln!(
                    "fanout --web: {} SSE watchers, {} ballots at ten a second against {}",
                    web.watchers, web.votes, web_podium.addr
                );
                let web_report =
                    fanout::web::run(&web_podium, &web, web_pid, |line| eprintln!("  {line}"))
                        .await?;
                println!();
                println!(
                    "web transport   {} (loopback), {}",
                    web_podium.addr,
                    if fresh.is_some() {
                        "a second podiumd started fresh from the same binary"
                    } else {
                        "the same podiumd"
                    }
                );
                println!("{web_report}");
                println!();
                println!(
                    "the same run, side by side (ballot acknowledged -> every watcher updated)"
                );
                println!(
                    "{}",
                    fanout::web::Beside {
                        grpc: &report,
                        web: &web_report
                    }
                );
            }
        }
        Scenario::Soak(args) => {
            let config = soak::Config {
                days: args.days as usize,
                rooms: args.rooms as usize,
                sessions: args.sessions as usize,
                attendees: args.attendees as usize,
                polls: args.polls as usize,
                questions: args.questions as usize,
                failover_after: Duration::from_millis(u64::from(args.failover_after_ms)),
            };
            eprintln!("soak: against {}", podium.addr);
            let report = soak::run(&podium, &config, |line| eprintln!("  {line}")).await?;
            println!("podium-loadgen soak");
            println!("podiumd         {about}");
            println!(
                "machine         {cpus} CPUs{load}, load generator and podiumd on the same machine"
            );
            println!("{report}");
        }
    }
    drop(local);
    Ok(())
}
