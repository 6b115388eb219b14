//! `podium admin status`: the node at a glance for the person who runs it (admin token): its
//! version and uptime, the log's head and the read models' lag, the streams open by kind, the
//! data on disk and the room left against `--disk-reserve`; `podium admin backup`, a backup of
//! the running node into a file that `podiumd restore` reads; and `podium admin rotate-key`.

use std::{io::IsTerminal, time::Duration};

use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use podium_client::{Client, Tls, pb};
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

use crate::{Ctx, output::table, recording::human_bytes};

#[derive(Debug, Subcommand)]
pub enum AdminCmd {
    /// This podiumd node now: version, uptime, log, read-model lag, open streams, disk.
    Status,
    /// Back up the running node into a file: its log up to now, the token signing key and
    /// the open anonymous polls' keys, and with --recordings the recordings' files. The node
    /// keeps serving. Restore with `podiumd restore FILE --data-dir DIR`.
    Backup {
        /// The file to write; it must not exist yet.
        #[arg(long)]
        out: std::path::PathBuf,
        /// Include the recordings' files (may be many gigabytes); without them the backup
        /// lists the recordings, to be uploaded again after a restore.
        #[arg(long)]
        recordings: bool,
    },
    /// Replace the key that signs tokens. Tokens signed by the old key keep working for the
    /// grace period, then are refused; 0 ends them at once (for a leaked key). The admin
    /// token file podiumd generated is signed again with the new key.
    RotateKey {
        /// Hours the old key's tokens stay valid.
        #[arg(long)]
        grace_hours: u64,
    },
}

pub async fn run(ctx: &Ctx, cmd: AdminCmd) -> anyhow::Result<()> {
    match cmd {
        AdminCmd::Status => status(ctx).await,
        AdminCmd::Backup { out, recordings } => backup(ctx, &out, recordings).await,
        AdminCmd::RotateKey { grace_hours } => rotate_key(ctx, grace_hours).await,
    }
}

/// How many times a key rotation is sent, with the same request id, before the CLI gives up.
const ROTATE_ATTEMPTS: u32 = 4;

async fn rotate_key(ctx: &Ctx, grace_hours: u64) -> anyhow::Result<()> {
    // Sent again with the same request id while unanswered: the server rotates once.
    let sent = std::cell::Cell::new(0u32);
    let rotated = Client::send_once(ROTATE_ATTEMPTS, |request_id| {
        sent.set(sent.get() + 1);
        let mut access = ctx.client.access();
        async move {
            let request = pb::RotateSigningKeyRequest {
                grace_seconds: grace_hours.saturating_mul(3600),
                request_id,
            };
            Ok(access.rotate_signing_key(request).await?.into_inner())
        }
    })
    .await
    .map_err(|status| retried_with_a_retired_token(status, sent.get()))?;
    if !ctx.out.json(&rotated) {
        let until = podium_proto::time::instant(&rotated.retired_until)
            .map_or_else(String::new, |t| t.format("%Y-%m-%d %H:%M UTC").to_string());
        println!("signing key {} is now in use", rotated.key_id);
        println!(
            "tokens signed by key {} are refused from {until}",
            rotated.retired_key_id
        );
    }
    Ok(())
}

/// A retry refused because the first attempt's rotation ended the token it was sent with (the
/// generated admin token, with no grace): the rotation went through.
fn retried_with_a_retired_token(status: tonic::Status, sent: u32) -> anyhow::Error {
    if sent > 1
        && status.code() == tonic::Code::Unauthenticated
        && status.message().contains("rotated out")
    {
        return anyhow::anyhow!(
            "the signing key was rotated: the first attempt went through but its answer was \
             lost, and the token this command used was signed by the key it retired. Read the \
             new admin token (admin.token in podiumd's data directory) and run `podium admin \
             status` with it"
        );
    }
    status.into()
}

async fn backup(ctx: &Ctx, out: &std::path::Path, recordings: bool) -> anyhow::Result<()> {
    // Its size is known only at the end: a counter on a terminal, nothing elsewhere.
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new_spinner();
        if let Ok(style) =
            ProgressStyle::with_template("{spinner} backing up: {bytes} {binary_bytes_per_sec}")
        {
            bar.set_style(style);
        }
        bar
    });
    let shown = bar.clone();
    let size = ctx
        .client
        .backup_to_file(recordings, out, move |written| {
            if let Some(bar) = &shown {
                bar.set_position(written);
            }
        })
        .await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let size = size.map_err(crate::recording::transfer_error)?;
    if ctx.out.json {
        let written = serde_json::json!({
            "path": out.display().to_string(),
            "sizeBytes": size.to_string(),
            "recordings": recordings,
        });
        println!("{}", serde_json::to_string_pretty(&written)?);
    } else {
        println!(
            "backup written to {} ({}{})",
            out.display(),
            human_bytes(size),
            if recordings {
                ", recordings included"
            } else {
                ", without the recordings' files"
            }
        );
    }
    Ok(())
}

async fn status(ctx: &Ctx) -> anyhow::Result<()> {
    let node = ctx
        .client
        .diagnostics()
        .node(pb::NodeRequest {})
        .await?
        .into_inner();
    if ctx.out.json(&node) {
        return Ok(());
    }
    let mut streams: Vec<_> = node.open_streams.iter().collect();
    streams.sort();
    let streams = if streams.is_empty() {
        "none".to_owned()
    } else {
        streams
            .iter()
            .map(|(method, open)| format!("{method} {open}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let disk = match (node.disk_available_bytes, node.disk_reserve_bytes) {
        (0, _) => "free space unknown".to_owned(),
        (free, 0) => format!("{} free (no reserve)", human_bytes(free)),
        (free, reserve) if free <= reserve => format!(
            "{} free, AT the {} reserve: appends are refused",
            human_bytes(free),
            human_bytes(reserve)
        ),
        (free, reserve) => format!(
            "{} free, {} above the {} reserve",
            human_bytes(free),
            human_bytes(free - reserve),
            human_bytes(reserve)
        ),
    };
    let lag = match node.read_model_lag {
        0 => "caught up".to_owned(),
        n => format!("{n} events behind"),
    };
    let mut t = table(&["", ""]);
    for (what, value) in [
        ("version", node.version.clone()),
        ("uptime", uptime(node.uptime_seconds)),
        (
            "log",
            format!("{}, head at {}", node.log_backend, node.log_head),
        ),
        ("read models", lag),
        ("open streams", streams),
        ("data", human_bytes(node.data_bytes)),
        ("disk", disk),
    ] {
        t.add_row(vec![what.to_owned(), value]);
    }
    if !node.node_name.is_empty() {
        let engine = match node.status_engine_node.as_str() {
            "" => "no node right now (its lease is changing hands)".to_owned(),
            holder if holder == node.node_name => {
                format!("this node (term {})", node.status_engine_term)
            }
            holder => format!("{holder} (term {})", node.status_engine_term),
        };
        t.add_row(vec!["node".to_owned(), node.node_name.clone()]);
        t.add_row(vec!["status engine".to_owned(), engine]);
    }
    println!("{t}");
    Ok(())
}

/// How long `podium health` waits for one node: to connect (TLS included) and to answer.
const HEALTH_WAIT: Duration = Duration::from_secs(10);

/// `podium health`: whether podiumd serves (gRPC health, no token needed). Prints the state and
/// fails unless it is SERVING, for container health checks and scripts. Given several nodes
/// (`a:50051,b:50051`), it asks each on its own connection, all at once, and prints one line
/// per node, its address and its state (or why it has none), and fails unless every one serves.
pub async fn health(address: &str, tls: Option<&Tls>, service: Option<&str>) -> anyhow::Result<()> {
    let nodes: Vec<&str> = address
        .split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .collect();
    let what = service.unwrap_or("podiumd");
    match nodes.as_slice() {
        [] => anyhow::bail!("no podiumd address in {address:?}"),
        [node] => {
            let state = match serving(node, tls, service).await {
                Health::State(state) => state,
                Health::Unreachable(e) | Health::Error(e) => return Err(e),
            };
            println!("{}", state.as_str_name());
            if state != ServingStatus::Serving {
                anyhow::bail!("{what} is not serving");
            }
            return Ok(());
        }
        _ => {}
    }
    let answers =
        futures::future::join_all(nodes.iter().map(|node| serving(node, tls, service))).await;
    let mut down = 0;
    for (node, answer) in nodes.iter().zip(answers) {
        let line = match answer {
            Health::State(state) => {
                if state != ServingStatus::Serving {
                    down += 1;
                }
                state.as_str_name().to_owned()
            }
            Health::Unreachable(e) => {
                down += 1;
                format!("UNREACHABLE {e:#}")
            }
            Health::Error(e) => {
                down += 1;
                format!("ERROR {e:#}")
            }
        };
        println!("{node} {line}");
    }
    if down > 0 {
        anyhow::bail!("{what} is not serving on {down} of {} nodes", nodes.len());
    }
    Ok(())
}

/// What one node said of its health.
enum Health {
    State(ServingStatus),
    /// No connection, or no answer within [`HEALTH_WAIT`].
    Unreachable(anyhow::Error),
    /// It answered with an error.
    Error(anyhow::Error),
}

/// One node's health, through a connection of its own.
async fn serving(node: &str, tls: Option<&Tls>, service: Option<&str>) -> Health {
    let ask = async {
        let client = match Client::connect_with(node, None, tls).await {
            Ok(client) => client,
            Err(e) => return Health::Unreachable(e.into()),
        };
        let answer = client
            .health()
            .check(HealthCheckRequest {
                service: service.unwrap_or_default().to_owned(),
            })
            .await;
        match answer {
            Ok(answer) => Health::State(answer.into_inner().status()),
            // gRPC health's answer for a service the node does not have.
            Err(status) if status.code() == tonic::Code::NotFound => {
                Health::State(ServingStatus::ServiceUnknown)
            }
            Err(status) => Health::Error(status.into()),
        }
    };
    tokio::time::timeout(HEALTH_WAIT, ask)
        .await
        .unwrap_or_else(|_| {
            Health::Unreachable(anyhow::anyhow!(
                "no answer from {node} within {} s",
                HEALTH_WAIT.as_secs()
            ))
        })
}

/// "3d 04:05:06", "04:05:06".
fn uptime(seconds: u64) -> String {
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    let clock = format!(
        "{:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    );
    if days > 0 {
        format!("{days}d {clock}")
    } else {
        clock
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn uptime_reads_as_days_and_a_clock() {
        assert_eq!(super::uptime(59), "00:00:59");
        assert_eq!(
            super::uptime(3 * 86_400 + 4 * 3600 + 5 * 60 + 6),
            "3d 04:05:06"
        );
    }

    #[test]
    fn a_retry_refused_with_the_retired_token_says_the_rotation_went_through() {
        let refused = || tonic::Status::unauthenticated("signed by a key that was rotated out");
        let said = super::retried_with_a_retired_token(refused(), 2).to_string();
        assert!(said.contains("the first attempt went through"), "{said}");
        assert!(said.contains("admin.token"), "{said}");
        // On the first attempt the token was refused before anything rotated.
        let said = super::retried_with_a_retired_token(refused(), 1).to_string();
        assert!(!said.contains("went through"), "{said}");
        let other = tonic::Status::unauthenticated("token expired");
        let said = super::retried_with_a_retired_token(other, 3).to_string();
        assert!(!said.contains("went through"), "{said}");
    }
}
