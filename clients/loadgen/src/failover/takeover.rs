//! The take-over scenario: several podiumd nodes on a three-server NATS JetStream cluster on
//! loopback, and the node running the status engine killed (SIGKILL) mid-talk at the instant
//! the speaker's agent goes silent (a server and the venue's uplink lost together). Another
//! node takes the engine's lease once it has gone unrenewed for its time-to-live, and falls
//! back a whole `failover_after` after taking over. The figure is the time from the last
//! heartbeat to a watcher seeing the recording on air, beside its bound: `failover_after` + the
//! lease + 500 ms.
//!
//! Each drop runs on a log of its own (a new `--nats-prefix`) with three fresh nodes: node 1
//! starts alone and takes the lease; nodes 2 and 3 start after it. The set-up and the speaker's
//! agent go through node 2, the watcher through node 3; node 1, holding the engine, is the one
//! killed.

use std::{fmt, path::Path, time::Duration};

use anyhow::{Context, bail};
use podium_client::pb;
use podium_natscluster::NatsCluster;
use tokio::{io::AsyncReadExt as _, io::AsyncWriteExt as _, net::TcpStream, time::Instant};

use super::{
    PATIENCE, connect, go_live_on, keep_alive,
    setup::{healthy, on_air, set_up},
};
use crate::{Podium, podiumd::LocalPodiumd, stats::Distribution};

/// The admin token every node is given.
const ADMIN: &str = "podium-loadgen-takeover-admin-token-0123456789";

#[derive(Debug, Clone)]
pub struct Config {
    pub drops: usize,
    pub failover_after: Duration,
    /// The engine's lease time-to-live (`--engine-lease`).
    pub lease: Duration,
}

impl Config {
    /// The most the fallback may take after the last heartbeat.
    pub fn bound(&self) -> Duration {
        self.failover_after + self.lease + Duration::from_millis(500)
    }
}

#[derive(Debug, Clone)]
pub struct Report {
    pub config: Config,
    /// Last heartbeat to the watcher seeing the recording on air, in microseconds.
    pub fallback: Distribution,
    /// The node's kill to another node holding the lease (as its `/metrics` says, polled every
    /// 50 ms), in microseconds.
    pub taken: Distribution,
}

impl Report {
    pub fn meets_target(&self) -> bool {
        self.fallback
            .max()
            .is_some_and(|max| max <= self.config.bound().as_micros() as i64)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "drops           {} (the engine's node killed as the agent falls silent)",
            self.fallback.len()
        )?;
        writeln!(
            f,
            "failover_after  {} ms, engine lease {} ms",
            self.config.failover_after.as_millis(),
            self.config.lease.as_millis()
        )?;
        writeln!(f, "kill -> another node holds the lease (ms):")?;
        writeln!(f, "                {}", self.taken)?;
        writeln!(
            f,
            "last heartbeat -> watcher sees the recording (ms, bound {} ms):",
            self.config.bound().as_millis()
        )?;
        writeln!(f, "                {}", self.fallback)?;
        write!(
            f,
            "target          every drop within failover_after + lease + 500 ms: {}",
            if self.meets_target() { "met" } else { "MISSED" }
        )
    }
}

/// Runs the scenario with `binary` as podiumd; `progress` hears each drop's figures.
pub async fn run(
    binary: &Path,
    config: &Config,
    mut progress: impl FnMut(usize, i64, i64),
) -> anyhow::Result<Report> {
    let cluster = tokio::task::spawn_blocking(|| NatsCluster::start(3))
        .await
        .context("the cluster's start panicked")?
        .context("cannot start a three-server NATS JetStream cluster")?;
    let (mut fallback, mut taken) = (Vec::new(), Vec::new());
    for drop in 1..=config.drops {
        let (fell_back, took) = once(binary, &cluster, config, drop).await?;
        progress(drop, fell_back, took);
        fallback.push(fell_back);
        taken.push(took);
    }
    Ok(Report {
        config: config.clone(),
        fallback: Distribution::new(fallback),
        taken: Distribution::new(taken),
    })
}

/// One drop on a log of its own: (last heartbeat to fallback seen, kill to lease taken), in µs.
async fn once(
    binary: &Path,
    cluster: &NatsCluster,
    config: &Config,
    drop: usize,
) -> anyhow::Result<(i64, i64)> {
    let data = tempfile::Builder::new()
        .prefix("podium-loadgen-takeover-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let prefix = crate::fresh_name("takeover");
    let mut args = cluster
        .podiumd_args()
        .context("cannot write the cluster key")?;
    args.extend([
        "--nats-prefix".into(),
        prefix,
        "--engine-lease".into(),
        format!("{}", config.lease.as_secs_f64()),
    ]);
    let start = |n: usize| {
        let dir = data.path().join(format!("node-{n}"));
        let args = args.clone();
        async move {
            std::fs::create_dir_all(&dir)?;
            LocalPodiumd::start_with(binary, &dir, "podiumd.log", None, &args, Some(ADMIN)).await
        }
    };
    let one = start(1).await?;
    until_holds(one.podium(), "node 1").await?;
    let (two, three) = (start(2).await?, start(3).await?);

    let admin = connect(two.podium(), ADMIN).await?;
    let show = set_up(&admin, config.failover_after).await?;
    let (mut watcher, mut agent, _) =
        go_live_on(three.podium(), two.podium(), &admin, &show).await?;
    watcher
        .until("the speaker on air", PATIENCE, |s| {
            on_air(s) == pb::SourceKind::Speaker && healthy(s, &show.speaker_id)
        })
        .await?;
    tokio::time::sleep(keep_alive(drop)).await;

    let last = agent.stop().await?;
    let killed = Instant::now();
    one.kill().await?;
    let survivors = [two.podium().clone(), three.podium().clone()];
    let took = tokio::time::timeout(PATIENCE, async {
        loop {
            for node in &survivors {
                if holds_lease(node).await {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .map(|()| killed.elapsed())
    .context("no surviving node took the engine's lease")?;
    let (seen, fallen) = watcher
        .until(
            "the recording on air after the engine's node died",
            config.bound() + PATIENCE,
            |s| on_air(s) != pb::SourceKind::Speaker,
        )
        .await?;
    if on_air(&fallen) != pb::SourceKind::Recording {
        bail!(
            "drop {drop}: {:?} went on air instead of the recording",
            on_air(&fallen)
        );
    }
    agent.close().await;
    Ok((
        (seen.at - last.at).as_micros() as i64,
        took.as_micros() as i64,
    ))
}

/// Whether `node` runs the status engine, as its `/metrics` says.
async fn holds_lease(node: &Podium) -> bool {
    let Ok(text) = metrics(&node.addr).await else {
        return false;
    };
    text.lines()
        .any(|line| line.trim() == "podium_status_engine_lease_held 1")
}

async fn until_holds(node: &Podium, name: &str) -> anyhow::Result<()> {
    tokio::time::timeout(PATIENCE, async {
        while !holds_lease(node).await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .with_context(|| format!("{name} did not take the engine's lease"))
}

/// The text of `GET /metrics` on podiumd's port.
async fn metrics(addr: &str) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(addr).await?;
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut reply = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut reply)).await??;
    Ok(reply)
}
