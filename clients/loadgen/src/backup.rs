//! Backups: a backup of a running podiumd on a log of many events (`podium admin backup`'s
//! call), what it costs the appends that go on meanwhile, and a restore of it (`podiumd
//! restore`) into a new data directory, checked event for event against the original.
//!
//! The log is written as for [`crate::startup`]. The appends are `Agenda/AddRoom` calls, one
//! after another, each a durable write: first for a while on an idle node (the baseline), then
//! while the backup runs. Their p99 during the backup as a ratio to the baseline says whether
//! the backup holds appends up (it reads the log like any reader and never takes the writer's
//! lock, so the ratio should stay near 1 on idle cores; on two cores it also shares the CPU).

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use podium_client::{Client, pb};
use podium_eventlog::{EventLog, SledEventLog, SledOptions};

use crate::{failover::setup::conference, podiumd::LocalPodiumd, startup, stats::Distribution};

#[derive(Debug, Clone)]
pub struct Config {
    pub events: u64,
    /// How long appends are timed on the idle node before the backup.
    pub baseline: Duration,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub events: u64,
    pub write: Duration,
    /// The backup's size and time, from the call to the file renamed into place.
    pub bytes: u64,
    pub backup: Duration,
    /// `AddRoom` round trips before and during the backup, in microseconds.
    pub idle: Distribution,
    pub during: Distribution,
    /// `podiumd restore`, from spawning it to its exit.
    pub restore: Duration,
    /// Events compared between the original log and the restored one (the backup's head).
    pub compared: u64,
}

pub async fn run(
    binary: &Path,
    config: &Config,
    progress: impl Fn(&str),
) -> anyhow::Result<Report> {
    let (tmp, events, write) = startup::written("backup", config.events, &progress).await?;
    let dir = tmp.path();
    progress(&format!(
        "wrote {events} events in {:.1} s; starting podiumd",
        write.as_secs_f64()
    ));
    let podiumd = LocalPodiumd::start_in(binary, dir, "podiumd.log", None).await?;
    let admin = Client::connect(
        &podiumd.podium().addr,
        Some(podiumd.podium().admin_token.clone()),
    )
    .await?;
    // The first call waits for the replay: podiumd answers once its read models are ready.
    let conference = conference(&admin, "podium-loadgen backup").await?.id;

    progress(&format!(
        "timing appends on the idle node for {:?}",
        config.baseline
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let idle = {
        let appender = tokio::spawn(append_until(
            admin.clone(),
            conference.clone(),
            stop.clone(),
        ));
        tokio::time::sleep(config.baseline).await;
        stop.store(true, Ordering::Relaxed);
        appender.await??
    };

    progress("taking the backup while the appends go on");
    stop.store(false, Ordering::Relaxed);
    let appender = tokio::spawn(append_until(
        admin.clone(),
        conference.clone(),
        stop.clone(),
    ));
    let file = dir.join("odc.podium-backup");
    let started = Instant::now();
    let bytes = admin
        .backup_to_file(false, &file, |_| {})
        .await
        .context("taking the backup")?;
    let backup = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let during = appender.await??;
    podiumd.stop().await?;

    progress("restoring it with podiumd restore");
    let restored = dir.join("restored");
    let started = Instant::now();
    let output = tokio::process::Command::new(binary)
        .arg("restore")
        .arg(&file)
        .arg("--data-dir")
        .arg(&restored)
        .output()
        .await
        .context("cannot run podiumd restore")?;
    let restore = started.elapsed();
    if !output.status.success() {
        bail!(
            "podiumd restore failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    progress("comparing the restored log with the original, event for event");
    let compared = compare(&dir.join("data").join("log"), &restored.join("log")).await?;
    Ok(Report {
        events,
        write,
        bytes,
        backup,
        idle,
        during,
        restore,
        compared,
    })
}

/// `AddRoom` calls one after another until `stop`; their round trips in microseconds.
async fn append_until(
    admin: Client,
    conference: String,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Distribution> {
    let mut samples = Vec::new();
    let mut agenda = admin.agenda();
    // Room names are unique in a conference: each appender has its own.
    let prefix = crate::fresh_name("appender");
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        agenda
            .add_room(pb::AddRoomRequest {
                request_id: Client::request_id(),
                conference_id: conference.clone(),
                name: format!("Room {prefix}-{}", samples.len() + 1),
                capacity: 100,
            })
            .await
            .context("an append failed")?;
        samples.push(started.elapsed().as_micros() as i64);
    }
    Ok(Distribution::new(samples))
}

/// Checks that the restored log holds the original's events, the same in every field, up to
/// its head (the original went on past it); returns how many were compared.
async fn compare(original: &Path, restored: &Path) -> anyhow::Result<u64> {
    let original = SledEventLog::open(original, SledOptions::default())?;
    let restored = SledEventLog::open(restored, SledOptions::default())?;
    let head = restored.head();
    if original.head() < head {
        bail!(
            "the restored log's head {head} is past the original's {}",
            original.head()
        );
    }
    let mut from = 0;
    while from < head {
        let limit = (head - from).min(4096) as usize;
        let (a, b) = (
            original.read_all(from, limit).await?,
            restored.read_all(from, limit).await?,
        );
        if a != b {
            bail!(
                "the restored log differs from the original between {from} and {}",
                from + limit as u64
            );
        }
        from += limit as u64;
    }
    Ok(head)
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mib = self.bytes as f64 / (1 << 20) as f64;
        writeln!(
            f,
            "log             {} events written in {:.1} s",
            self.events,
            self.write.as_secs_f64()
        )?;
        writeln!(
            f,
            "backup          {mib:.1} MiB in {:.2} s, {:.0} MiB/s, {:.0} events/s",
            self.backup.as_secs_f64(),
            mib / self.backup.as_secs_f64(),
            self.compared as f64 / self.backup.as_secs_f64()
        )?;
        writeln!(
            f,
            "appends idle    {} ms ({} calls)",
            self.idle,
            self.idle.len()
        )?;
        writeln!(
            f,
            "appends during  {} ms ({} calls)",
            self.during,
            self.during.len()
        )?;
        if let (Some(idle), Some(during)) =
            (self.idle.percentile(99.0), self.during.percentile(99.0))
            && idle > 0
        {
            writeln!(f, "p99 during / idle  {:.2}", during as f64 / idle as f64)?;
        }
        write!(
            f,
            "restore         {:.2} s, {:.0} events/s; {} events identical to the original",
            self.restore.as_secs_f64(),
            self.compared as f64 / self.restore.as_secs_f64(),
            self.compared
        )
    }
}
