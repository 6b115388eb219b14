//! Start-up: how long podiumd takes from its start to SERVING on a log of many events, without
//! a snapshot (every read model replayed from the whole log, in one pass) and with one (the
//! snapshots its clean shutdown left, and only the tail replayed).
//!
//! The log is written straight through the log library (`podium_server::synthetic`: a
//! three-day conference with its sessions going live, polls with ballots and re-votes,
//! questions, upvotes and ratings), in large concurrent groups: a million ballots through
//! gRPC would take longer than the measurement deserves. podiumd then starts on that data
//! directory; the time is taken from spawning the process to the first health check that
//! answers SERVING (podiumd binds, opens the log, replays, then prints its address, and sets
//! health to SERVING as it starts serving).

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use podium_eventlog::{EventLog, SledEventLog, SledOptions};
use podium_server::synthetic::{THREE_DAYS, write_conference};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

use crate::podiumd::LocalPodiumd;

/// The start-up target of issue 14.
pub const TARGET: Duration = Duration::from_secs(1);
/// The service whose health says podiumd serves: every podiumd serves it.
const SERVICE: &str = "podium.v1.Diagnostics";

#[derive(Debug, Clone)]
pub struct Config {
    pub events: u64,
}

/// One start of podiumd.
#[derive(Debug, Clone)]
pub struct Start {
    /// From spawning podiumd to the first SERVING.
    pub to_serving: Duration,
    /// The replay itself, as podiumd logged it ("log followed to its head").
    pub replay: Option<Duration>,
    /// Events the replay went through.
    pub replayed: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub events: u64,
    pub write: Duration,
    pub cold: Start,
    pub warm: Start,
}

/// Writes the log, then starts podiumd on it twice: without snapshots, and after a clean
/// shutdown with them.
pub async fn run(
    binary: &Path,
    config: &Config,
    progress: impl Fn(&str),
) -> anyhow::Result<Report> {
    let (tmp, events, write) = written("startup", config.events, &progress).await?;
    let dir = tmp.path().to_path_buf();
    progress(&format!(
        "wrote {events} events in {:.1} s; starting podiumd without snapshots",
        write.as_secs_f64()
    ));
    let snapshots = dir.join("data").join("snapshots");
    if snapshots.exists() {
        bail!("{} exists before the first start", snapshots.display());
    }
    let (cold, podiumd) = start(binary, &dir, "podiumd-cold.log").await?;
    podiumd.stop().await?;
    if !snapshots.is_dir() {
        bail!("podiumd left no snapshots in {}", snapshots.display());
    }
    progress("stopped it cleanly; starting podiumd again, from its snapshots");
    let (warm, podiumd) = start(binary, &dir, "podiumd-warm.log").await?;
    podiumd.stop().await?;
    Ok(Report {
        events,
        write,
        cold,
        warm,
    })
}

/// A temporary directory whose `data/log` holds a synthetic conference of about `events`
/// events: the directory, the events written and the time it took.
pub(crate) async fn written(
    scenario: &str,
    events: u64,
    progress: &impl Fn(&str),
) -> anyhow::Result<(tempfile::TempDir, u64, Duration)> {
    let tmp = tempfile::Builder::new()
        .prefix(&format!("podium-loadgen-{scenario}-"))
        .tempdir()
        .context("cannot create a temporary data directory")?;
    progress(&format!("writing {events} events"));
    let started = Instant::now();
    let written = write(&tmp.path().join("data").join("log"), events).await?;
    Ok((tmp, written, started.elapsed()))
}

async fn write(path: &Path, events: u64) -> anyhow::Result<u64> {
    let log = Arc::new(
        SledEventLog::open(path, SledOptions::default())
            .with_context(|| format!("cannot open a log in {}", path.display()))?,
    );
    let dyn_log: Arc<dyn EventLog> = log.clone();
    let written = write_conference(dyn_log, "loadgen", THREE_DAYS, events)
        .await
        .context("writing the conference")?;
    log.close().context("closing the log")?;
    Ok(written)
}

async fn start(binary: &Path, dir: &Path, log: &str) -> anyhow::Result<(Start, LocalPodiumd)> {
    let started = Instant::now();
    let podiumd = LocalPodiumd::start_in(binary, dir, log, None).await?;
    let endpoint =
        tonic::transport::Endpoint::from_shared(format!("http://{}", podiumd.podium().addr))
            .context("podiumd's address")?;
    let mut health = HealthClient::new(endpoint.connect().await.context("connecting to podiumd")?);
    loop {
        let answer = health
            .check(HealthCheckRequest {
                service: SERVICE.into(),
            })
            .await;
        if let Ok(answer) = answer
            && answer.get_ref().status == ServingStatus::Serving as i32
        {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!(
                "podiumd did not serve within 10 minutes; its log:\n{}",
                podiumd.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let to_serving = started.elapsed();
    let (replay, replayed) = followed(&podiumd.log());
    Ok((
        Start {
            to_serving,
            replay,
            replayed,
        },
        podiumd,
    ))
}

/// The replay's time and length from podiumd's log line "log followed to its head".
fn followed(log: &str) -> (Option<Duration>, Option<u64>) {
    let Some(line) = log.lines().find(|l| l.contains("log followed to its head")) else {
        return (None, None);
    };
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|word| word.strip_prefix(name))
            .and_then(|value| {
                value
                    .trim_matches(|c: char| !c.is_ascii_digit())
                    .parse::<u64>()
                    .ok()
            })
    };
    let replayed = match (field("from="), field("to=")) {
        (Some(from), Some(to)) => Some(to.saturating_sub(from)),
        _ => None,
    };
    (field("elapsed_ms=").map(Duration::from_millis), replayed)
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "log             {} events written in {:.1} s",
            self.events,
            self.write.as_secs_f64()
        )?;
        for (label, start) in [("no snapshot", &self.cold), ("with snapshot", &self.warm)] {
            let verdict = if start.to_serving < TARGET {
                "met"
            } else {
                "missed"
            };
            write!(
                f,
                "{label:<15} to SERVING {:>7.0} ms  (target under {} ms: {verdict})",
                start.to_serving.as_secs_f64() * 1000.0,
                TARGET.as_millis()
            )?;
            match (start.replay, start.replayed) {
                (Some(time), Some(events)) if !time.is_zero() => writeln!(
                    f,
                    "; replayed {events} events in {} ms, {:.0} events/s",
                    time.as_millis(),
                    events as f64 / time.as_secs_f64()
                )?,
                (_, Some(events)) => writeln!(f, "; replayed {events} events")?,
                _ => writeln!(f)?,
            }
        }
        Ok(())
    }
}
