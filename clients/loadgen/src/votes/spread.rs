//! The vote storm spread over several podiumd nodes on a three-server NATS JetStream cluster on
//! loopback: the attendees join through the first node and each then talks to node `i % n`
//! with its token (every node verifies every node's tokens), as phones behind a load balancer
//! do. The figure is the same as on one node: durable ballots per second as a ratio to the
//! no-op `Ping`, both spread over the same nodes and connections in the same run.

use std::{path::Path, time::Duration};

use anyhow::Context;
use podium_client::{Client, pb};

use super::{Config, Report, measure, poll_and_attendees};
use crate::{Podium, podiumd::LocalNodes};

/// The admin token every node is given.
const ADMIN: &str = "podium-loadgen-votes-admin-token-0123456789";

/// Starts a cluster and `nodes` podiumd from `binary` on it, and runs the storm over them.
pub async fn run(binary: &Path, nodes: usize, config: &Config) -> anyhow::Result<Report> {
    let started = LocalNodes::start(binary, nodes, ADMIN).await?;
    let podiums = started.podiums();
    let (conference_id, poll, attendees) =
        poll_and_attendees(&podiums[0], config.clients, "votes").await?;
    let mut clients = Vec::with_capacity(attendees.len());
    for (i, (_, token)) in attendees.into_iter().enumerate() {
        let node = &podiums[i % podiums.len()];
        clients.push(Client::connect(&node.addr, Some(token)).await?);
    }
    // Every node must have the poll before the storm: a ballot through a node that has not
    // applied it yet would be refused.
    every_node_has(podiums, ADMIN, &conference_id, &poll.id).await?;
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

/// Waits until every node in `podiums` has applied the poll, as `token` reads it.
pub(crate) async fn every_node_has(
    podiums: &[Podium],
    token: &str,
    conference_id: &str,
    poll_id: &str,
) -> anyhow::Result<()> {
    for node in podiums {
        let client = Client::connect(&node.addr, Some(token.into())).await?;
        tokio::time::timeout(Duration::from_secs(30), async {
            while client
                .polls()
                .get_poll(pb::GetPollRequest {
                    conference_id: conference_id.into(),
                    poll_id: poll_id.into(),
                    language: String::new(),
                })
                .await
                .is_err()
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .with_context(|| format!("{} never applied the poll", node.addr))?;
    }
    Ok(())
}
