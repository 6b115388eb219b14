//! The event log's benchmark, not a test: it prints figures. Run it with
//! `cargo bench -p podium-eventlog --bench append`.
//!
//! It measures durable appends per second with 1, 64 and 256 concurrent appenders (each awaits
//! its append before sending the next; single ~100-byte events, like a ballot, to one stream per
//! appender) against same-run baselines of one sled insert plus flush per append, with and
//! without an `fdatasync` of sled's file after it (what durable costs per append without group
//! commit; sled's flush alone ends in `sync_file_range`, which a power cut can undo), then a
//! restart with a large log: the time from reopening it to a read model having applied every
//! event through `Projector::start`, the path podiumd takes at start-up. The same appenders
//! then run against a three-server NATS JetStream cluster on loopback (every server syncing
//! each write), printed as a ratio to sled's figure at the same concurrency: on one machine
//! the three servers, the benchmark and its appenders share the same cores, so the ratio is
//! what means something, not the absolute rate. The cluster needs `nats-server` 2.14 or later
//! (`$PODIUM_NATS_SERVER` or the `PATH`); without one, that part says why and is left out.
//! `PODIUM_BENCH_SECS` (default 3) sets the length of each throughput run and
//! `PODIUM_BENCH_EVENTS` (default 1,000,000) the size of the replayed log. Under
//! `cargo test --benches` it makes a quick smoke run instead.

#![forbid(unsafe_code)]

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use podium_eventlog::{
    EventLog, ExpectedVersion, Filter, NatsEventLog, NatsOptions, NewEvent, Projection, Projector,
    RecordedEvent, SledEventLog, SledOptions,
};
use podium_natscluster::NatsCluster;
use tempfile::TempDir;
use uuid::Uuid;

/// Events per append while loading the log to replay.
const LOAD_BATCH: usize = 1000;
/// Target of the design brief for replaying a million events.
const REPLAY_TARGET: Duration = Duration::from_secs(3);

fn env_number(name: &str, default: u64) -> anyhow::Result<u64> {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .with_context(|| format!("{name} must be a number")),
        Err(_) => Ok(default),
    }
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not, and gets a quick smoke run.
    let smoke = !std::env::args().any(|arg| arg == "--bench");
    let (seconds, replay_events) = if smoke {
        (Duration::from_millis(200), 10_000)
    } else {
        (
            Duration::from_secs(env_number("PODIUM_BENCH_SECS", 3)?),
            env_number("PODIUM_BENCH_EVENTS", 1_000_000)?,
        )
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    println!(
        "podium-eventlog append benchmark: {} cpus, {:.1}s per run, debug assertions {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        seconds.as_secs_f64(),
        if cfg!(debug_assertions) {
            "on (numbers mean little)"
        } else {
            "off"
        }
    );

    let flushed = baseline(seconds, false)?;
    println!(
        "baseline      one sled insert + flush per append, no group commit  appends/s={:.0}  p50={:.2}ms  p99={:.2}ms",
        flushed.rate, flushed.p50_ms, flushed.p99_ms
    );
    let baseline = baseline(seconds, true)?;
    println!(
        "baseline      one sled insert + flush + fdatasync per append        appends/s={:.0}  p50={:.2}ms  p99={:.2}ms",
        baseline.rate, baseline.p50_ms, baseline.p99_ms
    );
    let mut sled_rates = Vec::new();
    for appenders in [1, 64, 256] {
        let run = runtime.block_on(async {
            let dir = TempDir::new()?;
            let log = Arc::new(SledEventLog::open(dir.path(), SledOptions::default())?);
            let run = appends(log.clone(), appenders, seconds).await;
            log.close()?;
            run
        })?;
        println!(
            "appenders={appenders:<4} appends/s={:.0}  p50={:.2}ms  p99={:.2}ms  ratio to the fdatasync baseline={:.1}x",
            run.rate,
            run.p50_ms,
            run.p99_ms,
            run.rate / baseline.rate
        );
        sled_rates.push(run.rate);
    }
    match NatsCluster::start(3) {
        Ok(cluster) => {
            for (appenders, sled_rate) in [1, 64, 256].into_iter().zip(sled_rates) {
                let run = runtime.block_on(async {
                    let log = NatsEventLog::open(NatsOptions {
                        servers: cluster.urls(),
                        monitors: cluster.monitor_urls(),
                        prefix: format!("bench{appenders}"),
                        ..NatsOptions::default()
                    })
                    .await?;
                    appends(Arc::new(log), appenders, seconds).await
                })?;
                println!(
                    "jetstream R3 appenders={appenders:<4} appends/s={:.0}  p50={:.2}ms  p99={:.2}ms  ratio to sled at {appenders}={:.2}",
                    run.rate,
                    run.p50_ms,
                    run.p99_ms,
                    run.rate / sled_rate
                );
            }
        }
        Err(error) => println!("jetstream: not measured: {error}"),
    }
    runtime.block_on(replay(replay_events))
}

struct Run {
    rate: f64,
    p50_ms: f64,
    p99_ms: f64,
}

impl Run {
    fn new(count: usize, elapsed: Duration, mut latencies: Vec<Duration>) -> Self {
        latencies.sort_unstable();
        let at = |q: f64| {
            let i = ((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1));
            latencies.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
        };
        Self {
            rate: count as f64 / elapsed.as_secs_f64(),
            p50_ms: at(0.50),
            p99_ms: at(0.99),
        }
    }
}

/// A ballot-sized event: a `google.protobuf.Any` of about 100 bytes.
fn ballot(id: Uuid) -> NewEvent {
    let message = prost_types::Any {
        type_url: "podium.bench/Ballot".into(),
        value: id.as_bytes().repeat(5),
    };
    NewEvent::new(id, &message)
}

/// What durability costs without group commit: one insert and one flush per append, and with
/// `fdatasync`, one fdatasync of sled's database file after each flush too.
fn baseline(seconds: Duration, fdatasync: bool) -> anyhow::Result<Run> {
    let dir = TempDir::new()?;
    let db = sled::Config::new()
        .path(dir.path())
        .mode(sled::Mode::HighThroughput)
        .open()?;
    let file = std::fs::File::open(dir.path().join("db"))?;
    let value = vec![7u8; 200];
    let mut latencies = Vec::new();
    let start = Instant::now();
    while start.elapsed() < seconds {
        let began = Instant::now();
        db.insert((latencies.len() as u64).to_be_bytes(), value.as_slice())?;
        db.flush()?;
        if fdatasync {
            file.sync_data()?;
        }
        latencies.push(began.elapsed());
    }
    Ok(Run::new(latencies.len(), start.elapsed(), latencies))
}

/// `appenders` tasks, each appending one event at a time to its own stream of the empty `log`
/// for `seconds`.
async fn appends(
    log: Arc<dyn EventLog>,
    appenders: usize,
    seconds: Duration,
) -> anyhow::Result<Run> {
    let start = Instant::now();
    let deadline = start + seconds;
    let tasks: Vec<_> = (0..appenders)
        .map(|i| {
            let log = log.clone();
            tokio::spawn(async move {
                let stream = format!("bench/appender-{i}");
                let mut latencies = Vec::new();
                let mut expected = ExpectedVersion::NoStream;
                while Instant::now() < deadline {
                    let began = Instant::now();
                    let outcome = log
                        .append(&stream, expected, vec![ballot(Uuid::new_v4())])
                        .await?;
                    latencies.push(began.elapsed());
                    expected = ExpectedVersion::Exact(outcome.last_version);
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await??);
    }
    let elapsed = start.elapsed();
    anyhow::ensure!(
        log.head() == latencies.len() as u64,
        "head {} after {} appends",
        log.head(),
        latencies.len()
    );
    Ok(Run::new(latencies.len(), elapsed, latencies))
}

/// A read model that uses every event: it decodes each ballot, as a real projection decodes the
/// events it applies.
#[derive(Default)]
struct Ballots {
    count: u64,
    bytes: usize,
    undecodable: u64,
}

impl Projection for Ballots {
    fn apply(&mut self, event: &RecordedEvent) {
        match event.decode::<prost_types::Any>() {
            Ok(ballot) => {
                self.count += 1;
                self.bytes += ballot.value.len();
            }
            Err(_) => self.undecodable += 1,
        }
    }
}

/// Loads `events` events in large batches, then restarts as podiumd does: reopens the log and
/// replays it into a read model through `Projector::start` (the `subscribe` catch-up path), and
/// times both. The target applies to the sum, from open to caught up.
async fn replay(events: u64) -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    let log = Arc::new(SledEventLog::open(dir.path(), SledOptions::default())?);
    let started = Instant::now();
    let batches = events.div_ceil(LOAD_BATCH as u64);
    // Four loaders so that group commit folds their batches together.
    let loaders: Vec<_> = (0..4u64)
        .map(|loader| {
            let log = log.clone();
            tokio::spawn(async move {
                for b in (loader..batches).step_by(4) {
                    let n = (events - b * LOAD_BATCH as u64).min(LOAD_BATCH as u64);
                    let batch = (0..n).map(|_| ballot(Uuid::new_v4())).collect();
                    log.append(
                        &format!("replay/stream-{}", b % 100),
                        ExpectedVersion::Any,
                        batch,
                    )
                    .await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for loader in loaders {
        loader.await??;
    }
    let loaded = started.elapsed();
    log.close()?;
    let size_mb = log.size_on_disk()? as f64 / 1e6;
    drop(log);
    println!(
        "loaded        events={events}  seconds={:.2}  events/s={:.0}  batches of {LOAD_BATCH}  on disk={size_mb:.0}MB",
        loaded.as_secs_f64(),
        events as f64 / loaded.as_secs_f64()
    );

    // sled's recovery at open scans what was written since the previous open: here the whole
    // log, the worst case, as after a long run without a restart.
    let cpu_before = process_cpu_seconds();
    let started = Instant::now();
    let log: Arc<dyn EventLog> = Arc::new(SledEventLog::open(dir.path(), SledOptions::default())?);
    let opened = started.elapsed();
    let model =
        Projector::start("bench", log.clone(), Ballots::default(), Filter::default()).await?;
    let total = started.elapsed();
    let cpu = process_cpu_seconds()
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    let (count, bytes, undecodable) = {
        let m = model.read();
        (m.count, m.bytes, m.undecodable)
    };
    anyhow::ensure!(
        count == events && bytes > 0 && undecodable == 0,
        "replayed {count} of {events} events ({undecodable} undecodable)"
    );
    let per_million = total.as_secs_f64() * 1e6 / count as f64;
    println!(
        "replay        events={count}  seconds={:.2} from open to caught up (reopen {:.2} + replay into a read model {:.2})  events/s={:.0}  cpu={}  target for 1,000,000: < {}s from open, {}",
        total.as_secs_f64(),
        opened.as_secs_f64(),
        (total - opened).as_secs_f64(),
        count as f64 / total.as_secs_f64(),
        cpu.map_or("n/a".to_owned(), |s| format!("{s:.2}s")),
        REPLAY_TARGET.as_secs(),
        if per_million < REPLAY_TARGET.as_secs_f64() {
            "met"
        } else {
            "missed"
        }
    );
    Ok(())
}

/// CPU time this process has used (user + system), where Linux's `/proc` tells it: next to the
/// wall time it shows whether other work on the machine slowed a run down.
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split(' ').collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // USER_HZ is 100 on every Linux platform Rust supports.
    Some(ticks / 100.0)
}
