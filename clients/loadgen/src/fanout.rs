//! The fan-out: many watchers on one poll while ballots arrive ten a second. For each ballot,
//! the time from its acknowledgement to the moment the last watcher received results that
//! include it (target: p99 under 150 ms with 20,000 watchers on one 2-core node, and within
//! 1.3 times a bare tonic fan-out of the same message to the same watchers in the same run,
//! `--baseline`), and podiumd's resident memory per idle watcher (under 8 KiB).

use std::{
    fmt,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use futures::{Stream, StreamExt};
use podium_client::{Client, pb};
use prost::Message;

use crate::{
    Podium,
    baseline::{
        LocalBaseline,
        pb::{WatchRequest, baseline_client::BaselineClient},
    },
    stats::Distribution,
    votes::poll_and_attendees,
};

pub mod web;

/// Target (README, "Targets"): p99 from a ballot acknowledged to every watcher updated.
pub const TARGET_P99: Duration = Duration::from_millis(150);
/// Target (README, "Targets"): podium's p99 at most this many times the bare fan-out's.
pub const TARGET_RATIO: f64 = 1.3;
/// Target (README, "Targets"): memory per idle watcher stream.
pub const TARGET_BYTES_PER_WATCHER: f64 = 8.0 * 1024.0;

#[derive(Debug, Clone)]
pub struct Config {
    pub watchers: usize,
    /// Ballots cast, one every 100 ms.
    pub votes: usize,
    /// Watch streams per connection (HTTP/2 multiplexes them).
    pub per_connection: usize,
    /// Also measure a bare tonic fan-out of the same message to the same watchers.
    pub baseline: bool,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub watchers: usize,
    /// The podiumd nodes the watchers were spread over (the ballots go through the first).
    pub nodes: usize,
    pub latency: Distribution,
    /// The encoded size of one results update, as a watcher receives it.
    pub message_bytes: usize,
    /// The bare tonic fan-out's latency in the same run (`--baseline`).
    pub baseline: Option<Distribution>,
    /// podiumd's resident memory before the watchers and with them idle, in bytes, when this
    /// process can read it (it started podiumd itself).
    pub rss: Option<(u64, u64)>,
}

impl Report {
    /// podium's p99 as a ratio to the bare fan-out's, when it was measured.
    pub fn ratio(&self) -> Option<f64> {
        let podium = self.latency.percentile(99.0)?;
        let bare = self.baseline.as_ref()?.percentile(99.0)?;
        Some(podium as f64 / (bare.max(1)) as f64)
    }

    pub fn bytes_per_watcher(&self) -> Option<f64> {
        self.rss
            .map(|(before, idle)| idle.saturating_sub(before) as f64 / self.watchers.max(1) as f64)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.nodes {
            1 => writeln!(f, "watchers        {} on one poll", self.watchers)?,
            n => writeln!(
                f,
                "watchers        {} on one poll, spread over {n} podiumd nodes on one NATS log \
                 (ballots through the first)",
                self.watchers
            )?,
        }
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
        writeln!(f, "message         {} bytes per update", self.message_bytes)?;
        if let Some(baseline) = &self.baseline {
            writeln!(
                f,
                "bare tonic fan-out of the same message, same watchers, same run (ms): {baseline}"
            )?;
            if let Some(ratio) = self.ratio() {
                writeln!(
                    f,
                    "ratio           podium p99 / bare p99 = {ratio:.2}; target <= {TARGET_RATIO}: {}",
                    if ratio <= TARGET_RATIO {
                        "met"
                    } else {
                        "MISSED"
                    }
                )?;
            }
        }
        match (self.rss, self.bytes_per_watcher()) {
            (Some((before, idle)), Some(per)) => write!(
                f,
                "podiumd RSS     {:.1} MiB before, {:.1} MiB with the watchers idle: {:.1} KiB per watcher; target < {:.0} KiB: {}",
                before as f64 / 1048576.0,
                idle as f64 / 1048576.0,
                per / 1024.0,
                TARGET_BYTES_PER_WATCHER / 1024.0,
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

/// Watchers, each on one stream of positions, recording when each position arrived. The same
/// harness measures podium, the baseline and the web transport ([`web`], whose "positions" are
/// ballot counts), so all are timed by the same code.
struct Watchers {
    seen: Vec<Seen>,
    ready: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Watchers {
    /// Starts `n` watchers; `open(w)` opens watcher `w`'s stream.
    fn spawn<F, Fut, S, E>(n: usize, open: F, progress: &mut impl FnMut(&str)) -> Self
    where
        F: Fn(usize) -> Fut,
        Fut: Future<Output = anyhow::Result<S>> + Send + 'static,
        S: Stream<Item = Result<u64, E>> + Send + 'static,
        E: Into<anyhow::Error>,
    {
        let ready = Arc::new(AtomicUsize::new(0));
        let mut seen = Vec::with_capacity(n);
        let mut tasks = Vec::with_capacity(n);
        for w in 0..n {
            let log: Seen = Arc::default();
            seen.push(log.clone());
            let ready = ready.clone();
            let opened = open(w);
            tasks.push(tokio::spawn(async move {
                let stream = opened.await?;
                futures::pin_mut!(stream);
                let mut first = true;
                while let Some(position) = stream.next().await {
                    let position = position.map_err(Into::into)?;
                    let at = Instant::now();
                    if let Ok(mut log) = log.lock() {
                        log.push((position, at));
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
        Self { seen, ready, tasks }
    }

    /// Waits until every watcher has its first message.
    async fn ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.ready.load(Ordering::Relaxed) < self.seen.len() {
            if Instant::now() > deadline {
                bail!(
                    "only {} of {} watchers got their first message within 120 s",
                    self.ready.load(Ordering::Relaxed),
                    self.seen.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Waits until every watcher has seen a position past `last`.
    async fn past(&self, last: u64) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let behind = self
                .seen
                .iter()
                .filter(|s| {
                    s.lock()
                        .map_or(true, |l| l.last().is_none_or(|(p, _)| *p <= last))
                })
                .count();
            if behind == 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{behind} watchers never saw the last update");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// For each update (its position and when it was acknowledged): the latest of the
    /// watchers' first sight of a position past it.
    fn latency(&self, acks: &[(u64, Instant)]) -> anyhow::Result<Distribution> {
        let mut samples = Vec::with_capacity(acks.len());
        for (position, acked) in acks {
            let mut worst = Duration::ZERO;
            for log in &self.seen {
                let log = log
                    .lock()
                    .map_err(|_| anyhow::anyhow!("watcher log poisoned"))?;
                if let Some((_, at)) = log.iter().find(|(p, _)| p > position) {
                    worst = worst.max(at.saturating_duration_since(*acked));
                }
            }
            samples.push(worst.as_micros() as i64);
        }
        Ok(Distribution::new(samples))
    }
}

impl Drop for Watchers {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

pub async fn run(
    podium: &Podium,
    config: &Config,
    pid: Option<u32>,
    progress: impl FnMut(&str),
) -> anyhow::Result<Report> {
    let pids: Vec<u32> = pid.into_iter().collect();
    run_on(std::slice::from_ref(podium), config, &pids, progress).await
}

/// The resident memory of every process in `pids`, summed; `None` unless every one is read.
fn total_rss(pids: &[u32]) -> Option<u64> {
    (!pids.is_empty())
        .then(|| pids.iter().map(|pid| rss_bytes(*pid)).sum::<Option<u64>>())
        .flatten()
}

/// The fan-out with the watchers' connections spread over `podiums` (nodes on one log) in
/// turn, the ballots cast through the first; memory is the sum over `pids`.
pub async fn run_on(
    podiums: &[Podium],
    config: &Config,
    pids: &[u32],
    mut progress: impl FnMut(&str),
) -> anyhow::Result<Report> {
    let first = podiums.first().context("no podiumd")?;
    let (conference_id, poll, mut attendees) = poll_and_attendees(first, 2, "fanout").await?;
    let (voter, _) = attendees.pop().context("no voter")?;
    let (_, watcher_token) = attendees.pop().context("no watcher")?;
    let rss_before = total_rss(pids);
    crate::votes::spread::every_node_has(podiums, &watcher_token, &conference_id, &poll.id).await?;

    // At least one connection to every node, so that every node has watchers.
    let connections = config
        .watchers
        .div_ceil(config.per_connection.max(1))
        .max(podiums.len());
    let mut channels = Vec::with_capacity(connections);
    for c in 0..connections {
        // Same attendee token, separate connections: HTTP/2 caps streams per connection.
        let node = &podiums[c % podiums.len()];
        channels.push(Client::connect(&node.addr, Some(watcher_token.clone())).await?);
    }
    let request = pb::WatchResultsRequest {
        conference_id: conference_id.clone(),
        poll_id: poll.id.clone(),
        language: String::new(),
    };
    let watchers = Watchers::spawn(
        config.watchers,
        |w| {
            let client = channels[w % connections].clone();
            let request = request.clone();
            async move {
                let stream = crate::votes::watch_results(&client, request).await?;
                anyhow::Ok(stream.map(|m| m.map(|m| m.position)))
            }
        },
        &mut progress,
    );
    watchers.ready().await?;
    progress("all watchers have their snapshot; measuring memory while idle");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_idle = total_rss(pids);

    let options: Vec<String> = poll.options.iter().map(|o| o.id.clone()).collect();
    let mut acks = Vec::with_capacity(config.votes);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    for i in 0..config.votes {
        tick.tick().await;
        let request = pb::CastBallotRequest {
            conference_id: conference_id.clone(),
            poll_id: poll.id.clone(),
            ballot_id: Client::request_id(),
            option_ids: vec![options[i % options.len()].clone()],
            rating: 0,
            text: String::new(),
        };
        // A ballot the log could not take for a moment (a cluster electing a leader) is sent
        // again with its id, as a phone does.
        let mut attempt = 0;
        let cast = loop {
            match voter.polls().cast_ballot(request.clone()).await {
                Ok(cast) => break cast.into_inner(),
                Err(status) if podium_client::retryable(&status) && attempt < 20 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(status) => return Err(status).context("ballot refused"),
            }
        };
        acks.push((cast.position, Instant::now()));
    }
    progress("ballots cast; waiting for every watcher to see the last one");
    watchers.past(acks.last().map_or(0, |(p, _)| *p)).await?;
    let latency = watchers.latency(&acks)?;
    drop(watchers);

    // The size of what each watcher received for a ballot, for the baseline to send the same.
    let message_bytes = channels[0]
        .polls()
        .watch_results(request)
        .await?
        .into_inner()
        .next()
        .await
        .context("the results stream ended at once")??
        .encoded_len();
    let baseline = if config.baseline {
        progress(&format!(
            "baseline: a bare tonic fan-out of {message_bytes} bytes to the same watchers"
        ));
        Some(baseline(config, message_bytes, &mut progress).await?)
    } else {
        None
    };
    Ok(Report {
        watchers: config.watchers,
        nodes: podiums.len(),
        latency,
        message_bytes,
        baseline,
        rss: rss_before.zip(rss_idle),
    })
}

/// The same fan-out through [`LocalBaseline`]: the same watchers on as many connections, the
/// same message size, updates at the same pace.
async fn baseline(
    config: &Config,
    message_bytes: usize,
    progress: &mut impl FnMut(&str),
) -> anyhow::Result<Distribution> {
    // The update's own fields take a few bytes of the message.
    let server = LocalBaseline::start(message_bytes.saturating_sub(8)).await?;
    let addr = format!("http://{}", server.addr);
    let connections = config.watchers.div_ceil(config.per_connection.max(1));
    let mut channels = Vec::with_capacity(connections);
    for _ in 0..connections {
        channels.push(
            tonic::transport::Endpoint::from_shared(addr.clone())?
                .connect()
                .await?,
        );
    }
    let watchers = Watchers::spawn(
        config.watchers,
        |w| {
            let mut client = BaselineClient::new(channels[w % connections].clone());
            async move {
                let stream = client.watch(WatchRequest {}).await?.into_inner();
                anyhow::Ok(stream.map(|u| u.map(|u| u.position)))
            }
        },
        progress,
    );
    watchers.ready().await?;
    let mut acks = Vec::with_capacity(config.votes);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    for position in 1..=config.votes as u64 {
        tick.tick().await;
        // The position before the update, as a ballot's acknowledgement carries its own.
        server.publish(position);
        acks.push((position - 1, Instant::now()));
    }
    watchers.past(config.votes as u64 - 1).await?;
    watchers.latency(&acks)
}
