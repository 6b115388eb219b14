//! The fan-out: many watchers on one poll while ballots arrive ten a second. For each ballot,
//! the time from its acknowledgement to the moment the last watcher received results that
//! include it (target: p99 under 150 ms with 20,000 watchers on one 2-core node), and
//! podiumd's resident memory per idle watcher (under 16 KiB).

use std::{
    fmt,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use futures::StreamExt;
use podium_client::{Client, pb};

use crate::{Podium, stats::Distribution, votes::poll_and_attendees};

/// Target (README, "Targets"): p99 from a ballot acknowledged to every watcher updated.
pub const TARGET_P99: Duration = Duration::from_millis(150);
/// Target (README, "Targets"): memory per idle watcher stream.
pub const TARGET_BYTES_PER_WATCHER: f64 = 8.0 * 1024.0;

#[derive(Debug, Clone)]
pub struct Config {
    pub watchers: usize,
    /// Ballots cast, one every 100 ms.
    pub votes: usize,
    /// Watch streams per connection (HTTP/2 multiplexes them).
    pub per_connection: usize,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub watchers: usize,
    pub latency: Distribution,
    /// podiumd's resident memory before the watchers and with them idle, in bytes, when this
    /// process can read it (it started podiumd itself).
    pub rss: Option<(u64, u64)>,
}

impl Report {
    pub fn bytes_per_watcher(&self) -> Option<f64> {
        self.rss
            .map(|(before, idle)| idle.saturating_sub(before) as f64 / self.watchers.max(1) as f64)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "watchers        {} on one poll", self.watchers)?;
        writeln!(f, "ballots         {} at ten a second", self.latency.len())?;
        writeln!(
            f,
            "ballot acknowledged -> every watcher updated (ms): {}",
            self.latency
        )?;
        let p99 = self.latency.percentile(99.0).unwrap_or(i64::MAX);
        writeln!(
            f,
            "target          p99 < {} ms (target at 20,000 watchers): {}",
            TARGET_P99.as_millis(),
            if p99 < TARGET_P99.as_micros() as i64 {
                "met at this size"
            } else {
                "MISSED"
            }
        )?;
        match (self.rss, self.bytes_per_watcher()) {
            (Some((before, idle)), Some(per)) => write!(
                f,
                "podiumd RSS     {:.1} MiB before, {:.1} MiB with the watchers idle: {:.1} KiB per watcher; target < 16 KiB: {}",
                before as f64 / 1048576.0,
                idle as f64 / 1048576.0,
                per / 1024.0,
                if per < TARGET_BYTES_PER_WATCHER {
                    "met"
                } else {
                    "MISSED"
                }
            ),
            _ => write!(
                f,
                "podiumd RSS     not measured (podiumd is not this process's child)"
            ),
        }
    }
}

/// Resident memory of a process, from /proc.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// What one watcher saw: (position, when).
type Seen = Arc<Mutex<Vec<(u64, Instant)>>>;

pub async fn run(
    podium: &Podium,
    config: &Config,
    pid: Option<u32>,
    mut progress: impl FnMut(&str),
) -> anyhow::Result<Report> {
    let (conference_id, poll, mut attendees) = poll_and_attendees(podium, 2, "fanout").await?;
    let (voter, _) = attendees.pop().context("no voter")?;
    let (_, watcher_token) = attendees.pop().context("no watcher")?;
    let rss_before = pid.and_then(rss_bytes);

    let connections = config.watchers.div_ceil(config.per_connection.max(1));
    let mut channels = Vec::with_capacity(connections);
    for _ in 0..connections {
        // Same attendee token, separate connections: HTTP/2 caps streams per connection.
        channels.push(Client::connect(&podium.addr, Some(watcher_token.clone())).await?);
    }
    let ready = Arc::new(AtomicUsize::new(0));
    let mut seen: Vec<Seen> = Vec::with_capacity(config.watchers);
    let mut tasks = Vec::with_capacity(config.watchers);
    for w in 0..config.watchers {
        let client = channels[w % connections].clone();
        let request = pb::WatchResultsRequest {
            conference_id: conference_id.clone(),
            poll_id: poll.id.clone(),
            language: String::new(),
        };
        let log: Seen = Arc::default();
        seen.push(log.clone());
        let ready = ready.clone();
        tasks.push(tokio::spawn(async move {
            // A real client retries a shed request (RESOURCE_EXHAUSTED) after a pause; 10,000
            // watchers starting at once can exceed podiumd's --max-concurrent-requests.
            let mut attempt = 0u32;
            let mut stream = loop {
                match client.polls().watch_results(request.clone()).await {
                    Ok(response) => break response.into_inner(),
                    Err(status)
                        if status.code() == tonic::Code::ResourceExhausted && attempt < 50 =>
                    {
                        attempt += 1;
                        tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt))).await;
                    }
                    Err(status) => return Err(status.into()),
                }
            };
            let mut first = true;
            while let Some(message) = stream.next().await {
                let message = message?;
                let at = Instant::now();
                if let Ok(mut log) = log.lock() {
                    log.push((message.position, at));
                }
                if first {
                    first = false;
                    ready.fetch_add(1, Ordering::Relaxed);
                }
            }
            anyhow::Ok(())
        }));
        if w % 1000 == 999 {
            progress(&format!("{} watchers connecting", w + 1));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while ready.load(Ordering::Relaxed) < config.watchers {
        if Instant::now() > deadline {
            bail!(
                "only {} of {} watchers got their snapshot within 120 s",
                ready.load(Ordering::Relaxed),
                config.watchers
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    progress("all watchers have their snapshot; measuring memory while idle");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_idle = pid.and_then(rss_bytes);

    let options: Vec<String> = poll.options.iter().map(|o| o.id.clone()).collect();
    let mut acks = Vec::with_capacity(config.votes);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    for i in 0..config.votes {
        tick.tick().await;
        let cast = voter
            .polls()
            .cast_ballot(pb::CastBallotRequest {
                conference_id: conference_id.clone(),
                poll_id: poll.id.clone(),
                ballot_id: Client::request_id(),
                option_ids: vec![options[i % options.len()].clone()],
                rating: 0,
                text: String::new(),
            })
            .await
            .context("ballot refused")?
            .into_inner();
        acks.push((cast.position, Instant::now()));
    }
    progress("ballots cast; waiting for every watcher to see the last one");
    let last = acks.last().map_or(0, |(p, _)| *p);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let behind = seen
            .iter()
            .filter(|s| {
                s.lock()
                    .map_or(true, |l| l.last().is_none_or(|(p, _)| *p <= last))
            })
            .count();
        if behind == 0 {
            break;
        }
        if Instant::now() > deadline {
            bail!("{behind} watchers never saw the last ballot");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for task in &tasks {
        task.abort();
    }
    // For each ballot: the latest of the watchers' first sight of a position past it.
    let mut samples = Vec::with_capacity(acks.len());
    for (position, acked) in &acks {
        let mut worst = Duration::ZERO;
        for log in &seen {
            let log = log
                .lock()
                .map_err(|_| anyhow::anyhow!("watcher log poisoned"))?;
            if let Some((_, at)) = log.iter().find(|(p, _)| p > position) {
                worst = worst.max(at.saturating_duration_since(*acked));
            }
        }
        samples.push(worst.as_micros() as i64);
    }
    Ok(Report {
        watchers: config.watchers,
        latency: Distribution::new(samples),
        rss: rss_before.zip(rss_idle),
    })
}
