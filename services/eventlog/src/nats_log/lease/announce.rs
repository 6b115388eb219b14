//! [`Lease::announce`](crate::Lease::announce) on the cluster: core NATS messages on
//! `<prefix>.engine.agents`, which every node hears (the holder's subjects are
//! `<prefix>.engine.<term>`, and a term is a number).

use async_nats::Client;
use bytes::Bytes;
use futures::StreamExt;
use tokio::{sync::mpsc, task::JoinHandle};

use super::super::read::nats;
use crate::Result;

/// The subject of [`Lease::announce`](crate::Lease::announce); a term is a number, so never this.
pub(super) fn announced(prefix: &str) -> String {
    format!("{prefix}.engine.agents")
}

/// Listens on the announcements' subject, and hands what comes to the receiver returned. Full
/// (no one reading), an announcement is dropped.
pub(super) async fn hear(
    client: &Client,
    prefix: &str,
) -> Result<(JoinHandle<()>, mpsc::Receiver<Bytes>)> {
    let mut messages = client.subscribe(announced(prefix)).await.map_err(nats)?;
    let (tx, rx) = mpsc::channel(1024);
    let task = tokio::spawn(async move {
        while let Some(message) = messages.next().await {
            if let Err(mpsc::error::TrySendError::Closed(_)) = tx.try_send(message.payload) {
                break;
            }
        }
    });
    Ok((task, rx))
}
