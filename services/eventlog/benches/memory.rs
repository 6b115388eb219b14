//! How the sled log's memory grows with the log, not a test: it prints figures. Run it with
//! `cargo bench -p podium-eventlog --bench memory`.
//!
//! It appends ballot-shaped events (about 120 bytes, each to a stream of its own, as every
//! attendee's ballot in a poll is) from 64 appenders through [`SledEventLog`] with a 16 MiB
//! page cache, the soak's setting, and prints the process's resident memory after each third of
//! the run ("day"), then opens the log again in a fresh handle and prints what opening it costs.
//! It does that twice, each in a process of its own: with random event ids (UUID v4), and with
//! time-ordered ones (UUID v7, what podium's own clients make). Then, without podium, it
//! writes as many keys into a bare sled tree, appended at the end and at random places, and
//! prints sled's own growth per key: the floor any layout of the log pays per key it writes.
//! `PODIUM_BENCH_EVENTS` (default 1,500,000, the soak's ballots) sets the size. Under
//! `cargo test --benches` it makes a quick smoke run.
//!
//! What it shows: sled 0.34 keeps memory for every leaf of its tree (a leaf holds at most 16
//! keys), whatever its cache size, and more for a leaf that takes keys at random places (up to
//! ten fragments each, until sled consolidates it) than for one only ever appended to. The log
//! writes three keys per event: its chunk (four of this benchmark's ballots share one), the
//! stream's version and the event id. The growth per event is the slope between days; the
//! first day also fills the cache.

use std::{path::Path, sync::Arc, time::Instant};

use anyhow::Context;
use podium_eventlog::{EventLog, ExpectedVersion, NewEvent, SledEventLog, SledOptions};

const APPENDERS: u64 = 64;
const CACHE_BYTES: u64 = 16 << 20;

fn resident_mib() -> anyhow::Result<f64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .context("no VmRSS in /proc/self/status")?
        .parse()?;
    Ok(kib / 1024.0)
}

fn open(dir: &Path) -> anyhow::Result<Arc<SledEventLog>> {
    let options = SledOptions {
        cache_bytes: CACHE_BYTES,
        ..Default::default()
    };
    Ok(Arc::new(SledEventLog::open(dir, options)?))
}

/// How the appenders make event ids.
#[derive(Clone, Copy, PartialEq)]
enum Ids {
    /// UUID v4, as a client that draws them at random does.
    Random,
    /// UUID v7, as podium's client library and pages do: the event-id index is appended to.
    TimeOrdered,
}

impl Ids {
    const ALL: [Ids; 2] = [Ids::Random, Ids::TimeOrdered];

    fn name(self) -> &'static str {
        match self {
            Ids::Random => "random",
            Ids::TimeOrdered => "time-ordered",
        }
    }

    fn of(name: &str) -> Option<Ids> {
        Self::ALL.into_iter().find(|ids| ids.name() == name)
    }

    fn make(self) -> uuid::Uuid {
        match self {
            Ids::Random => uuid::Uuid::new_v4(),
            Ids::TimeOrdered => uuid::Uuid::now_v7(),
        }
    }
}

/// Appends `count` ballots of `day` from [`APPENDERS`] concurrent appenders.
async fn day(log: &Arc<SledEventLog>, day: u64, count: u64, ids: Ids) -> anyhow::Result<()> {
    let mut appenders = tokio::task::JoinSet::new();
    for appender in 0..APPENDERS {
        let log = log.clone();
        appenders.spawn(async move {
            for ballot in 0..count / APPENDERS {
                let poll = ballot % 240;
                let stream = format!(
                    "conference/odc2024/poll/day{day}-poll{poll:03}/ballots/att-{appender:02}{ballot:07}"
                );
                let event = NewEvent {
                    id: ids.make(),
                    event_type: "podium.v1.BallotCast".into(),
                    payload: vec![7; 120],
                };
                log.append(&stream, ExpectedVersion::NoStream, vec![event])
                    .await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = appenders.join_next().await {
        done??;
    }
    Ok(())
}

/// How a bare sled tree's memory grows per key, without podium: the same number of keys
/// appended at the end (as the log's positions are), and written at random places (as a
/// ballot's stream-index key is), each in a batch of 32 with a flush, as the log's groups are.
#[derive(Clone, Copy)]
enum Keys {
    /// A big-endian counter, a 140-byte value: the log's own keys.
    Appended,
    /// 16 random bytes, a 16-byte value: an index written at random places.
    AtRandom,
}

impl Keys {
    const ALL: [Keys; 2] = [Keys::Appended, Keys::AtRandom];

    fn name(self) -> &'static str {
        match self {
            Keys::Appended => "appended",
            Keys::AtRandom => "at-random",
        }
    }

    fn entry(self, n: u64) -> (Vec<u8>, Vec<u8>) {
        match self {
            Keys::Appended => (n.to_be_bytes().to_vec(), vec![7; 140]),
            Keys::AtRandom => (rand::random::<[u8; 16]>().to_vec(), vec![1; 16]),
        }
    }
}

/// Writes `count` keys of `keys` into a bare sled tree with the soak's cache and prints the
/// growth per key over the last two thirds (the first third also fills the cache).
fn bare_sled(count: u64, keys: Keys) -> anyhow::Result<()> {
    const GROUP: u64 = 32;
    let dir = tempfile::tempdir()?;
    let db = sled::Config::new()
        .path(dir.path())
        .cache_capacity(CACHE_BYTES)
        .open()?;
    let tree = db.open_tree("keys")?;
    let mut after_first_third = 0.0;
    let mut n = 0;
    for third in 1..=3 {
        while n < count * third / 3 {
            let mut batch = sled::Batch::default();
            for _ in 0..GROUP {
                let (key, value) = keys.entry(n);
                batch.insert(key, value);
                n += 1;
            }
            tree.apply_batch(batch)?;
            tree.flush()?;
        }
        if third == 1 {
            after_first_third = resident_mib()?;
        }
    }
    let per_key = (resident_mib()? - after_first_third) * 1_048_576.0 / (n - count / 3) as f64;
    println!(
        "bare sled, {:9} keys {per_key:5.0} bytes per key ({n} keys, one tree, 16 MiB cache)",
        keys.name()
    );
    Ok(())
}

/// The argument that makes the benchmark's own binary reopen a log and report.
const REOPEN: &str = "--reopen-and-report";
/// The argument that makes the benchmark's own binary run the three days with the ids named
/// next.
const DAYS: &str = "--days-with-ids";
/// The argument that makes the benchmark's own binary write a bare sled tree with the keys
/// named next.
const BARE: &str = "--bare-sled-keys";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let after = |flag: &str| {
        let at = args.iter().position(|a| a == flag)?;
        args.get(at + 1).cloned()
    };
    if let Some(dir) = after(REOPEN) {
        return reopen(Path::new(&dir));
    }
    let smoke = !args.iter().any(|arg| arg == "--bench");
    let events: u64 = if smoke {
        3 * APPENDERS * 50
    } else {
        match std::env::var("PODIUM_BENCH_EVENTS") {
            Ok(value) => value
                .parse()
                .context("PODIUM_BENCH_EVENTS must be a number")?,
            Err(_) => 1_500_000,
        }
    };
    if let Some(name) = after(DAYS) {
        let ids = Ids::of(&name).context("unknown ids")?;
        return days(events, ids);
    }
    if let Some(name) = after(BARE) {
        let keys = Keys::ALL
            .into_iter()
            .find(|keys| keys.name() == name)
            .context("unknown keys")?;
        return bare_sled(events, keys);
    }
    println!(
        "podium-eventlog memory benchmark: {events} ballot-shaped events in 3 days, 64 appenders, \
         {} MiB page cache, debug assertions {}",
        CACHE_BYTES >> 20,
        if cfg!(debug_assertions) { "on" } else { "off" }
    );
    // Each in a process of its own: an allocator keeps what an earlier run freed.
    for ids in Ids::ALL {
        in_child(DAYS, ids.name(), smoke)?;
    }
    // What sled itself keeps per key, as many keys as the runs above wrote events.
    for keys in Keys::ALL {
        in_child(BARE, keys.name(), smoke)?;
    }
    Ok(())
}

/// Runs this benchmark's own binary with `flag` and `name`, full size unless `smoke`.
fn in_child(flag: &str, name: &str, smoke: bool) -> anyhow::Result<()> {
    let mut run = std::process::Command::new(std::env::current_exe()?);
    run.arg(flag).arg(name);
    if !smoke {
        run.arg("--bench");
    }
    let status = run.status()?;
    anyhow::ensure!(status.success(), "the run {flag} {name} failed");
    Ok(())
}

/// Three days of `events` ballots with `ids`, in this process, then the reopening in another.
fn days(events: u64, ids: Ids) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let dir = tempfile::tempdir()?;
    println!("with {} event ids", ids.name());
    runtime.block_on(async {
        let log = open(dir.path())?;
        let start = resident_mib()?;
        println!("opened empty      RSS {start:7.1} MiB");
        let mut previous = start;
        let mut first_day = 0.0;
        for number in 1..=3 {
            let started = Instant::now();
            day(&log, number, events / 3, ids).await?;
            let now = resident_mib()?;
            let per_event = (now - previous) * 1_048_576.0 / (events / 3) as f64;
            println!(
                "after day {number}       RSS {now:7.1} MiB  (+{per_event:.0} bytes per event, {} events in {:.1} s)",
                log.head(),
                started.elapsed().as_secs_f64()
            );
            if number == 1 {
                first_day = now;
            }
            previous = now;
        }
        println!(
            "day 3 / day 1     {:.2} (the soak's target is at most 1.2)",
            previous / first_day
        );
        log.close()?;
        anyhow::Ok(())
    })?;
    drop(runtime);
    // What opening a log of this size costs, in a process of its own (this one's allocator
    // keeps what the first log freed).
    let reopened = std::process::Command::new(std::env::current_exe()?)
        .arg(REOPEN)
        .arg(dir.path())
        .output()?;
    anyhow::ensure!(
        reopened.status.success(),
        "reopening failed: {}",
        String::from_utf8_lossy(&reopened.stderr)
    );
    print!("{}", String::from_utf8_lossy(&reopened.stdout));
    Ok(())
}

/// Opens the log at `dir` and prints what that cost.
fn reopen(dir: &Path) -> anyhow::Result<()> {
    let before = resident_mib()?;
    let log = open(dir)?;
    let after = resident_mib()?;
    println!(
        "opened again      RSS {after:7.1} MiB, +{:.1} MiB to open a log of {} events in a fresh process",
        after - before,
        log.head()
    );
    Ok(())
}
