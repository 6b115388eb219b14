//! The vote storm spread over several podiumd nodes on a three-server NATS JetStream cluster on
//! loopback: the attendees join through the first node and each then talks to node `i % n`
//! with its token (every node verifies every node's tokens), as phones behind a load balancer
//! do. The figure is the same as on one node: durable ballots per second as a ratio to the
//! no-op `Ping`, both spread over the same nodes and connections in the same run.

use std::{path::Path, time::Duration};

use anyhow::Context;
use podium_client::{Client, pb};
use podium_natscluster::NatsCluster;

use super::{Config, Report, measure, poll_and_attendees};
use crate::{Podium, podiumd::LocalPodiumd};

/// The admin token every node is given.
const ADMIN: &str = "podium-loadgen-votes-admin-token-0123456789";

/// Starts a cluster and `nodes` podiumd from `binary` on it, and runs the storm over them.
pub async fn run(binary: &Path, nodes: usize, config: &Config) -> anyhow::Result<Report> {
    let cluster = tokio::task::spawn_blocking(|| NatsCluster::start(3))
        .await
        .context("the cluster's start panicked")?
        .context("cannot start a three-server NATS JetStream cluster")?;
    let data = tempfile::Builder::new()
        .prefix("podium-loadgen-votes-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let args = cluster
        .podiumd_args()
        .context("cannot write the cluster key")?;
    let mut started = Vec::with_capacity(nodes);
    for n in 1..=nodes {
        let dir = data.path().join(format!("node-{n}"));
        std::fs::create_dir_all(&dir)?;
        started.push(
            LocalPodiumd::start_with(binary, &dir, "podiumd.log", None, &args, Some(ADMIN)).await?,
        );
    }
    let podiums: Vec<Podium> = started.iter().map(|node| node.podium().clone()).collect();
    let (conference_id, poll, attendees) =
        poll_and_attendees(&podiums[0], config.clients, "votes").await?;
    let mut clients = Vec::with_capacity(attendees.len());
    for (i, (_, token)) in attendees.into_iter().enumerate() {
        let node = &podiums[i % podiums.len()];
        clients.push(Client::connect(&node.addr, Some(token)).await?);
    }
    // Every node must have the poll before the storm: a ballot through a node that has not
    // applied it yet would be refused.
    for node in &podiums[1..] {
        let admin = Client::connect(&node.addr, Some(ADMIN.into())).await?;
        tokio::time::timeout(Duration::from_secs(30), async {
            while admin
                .polls()
                .get_poll(pb::GetPollRequest {
                    conference_id: conference_id.clone(),
                    poll_id: poll.id.clone(),
                    language: String::new(),
                })
                .await
                .is_err()
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .context("a node never applied the poll")?;
    }
    let report = measure(&clients, conference_id.clone(), poll.clone(), config).await?;
    // Every node comes to one ballot per attendee: none lost, none counted twice.
    for (n, node) in podiums.iter().enumerate() {
        let admin = Client::connect(&node.addr, Some(ADMIN.into())).await?;
        let counted = counted_when(&admin, &conference_id, &poll.id, config.clients as u64)
            .await
            .with_context(|| format!("node {}'s tally", n + 1))?;
        anyhow::ensure!(
            counted == config.clients as u64,
            "node {} counts {counted} ballots of {} attendees",
            n + 1,
            config.clients
        );
    }
    Ok(report)
}

/// The ballots `poll`'s results count, once they count `expected` (or the last count seen
/// after 30 s).
async fn counted_when(
    admin: &Client,
    conference_id: &str,
    poll_id: &str,
    expected: u64,
) -> anyhow::Result<u64> {
    let mut results = admin
        .polls()
        .watch_results(pb::WatchResultsRequest {
            conference_id: conference_id.into(),
            poll_id: poll_id.into(),
            language: String::new(),
        })
        .await?
        .into_inner();
    let mut last = 0;
    let watched = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(update) = results.message().await? {
            if let Some(r) = update.results {
                let options: u64 = r.options.iter().map(|o| o.count).sum();
                last = r.ballots;
                if r.ballots == expected && options == expected {
                    break;
                }
            }
        }
        anyhow::Ok(())
    })
    .await;
    if let Ok(outcome) = watched {
        outcome?;
    }
    Ok(last)
}
