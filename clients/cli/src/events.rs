//! `podium events tail`: a conference's event feed, stored events first and then live ones, one
//! line each, with payloads decoded from the descriptors so that new event types print without
//! a new release of the CLI.

use std::io::Write;

use clap::Subcommand;
use futures::StreamExt;
use podium_client::{FeedItem, payload_to_json};
use podium_proto::time::instant;

use crate::Ctx;

#[derive(Debug, Subcommand)]
pub enum EventsCmd {
    /// Print the conference's events from a position, then follow live ones (Ctrl-C stops).
    Tail {
        /// First global position; 0 replays everything.
        #[arg(long, default_value_t = 0)]
        from: u64,
        /// Only this event type, e.g. podium.v1.SessionScheduled; repeatable.
        #[arg(long = "type")]
        types: Vec<String>,
        /// Stop once every stored event has been printed instead of following.
        #[arg(long)]
        no_follow: bool,
    },
}

pub async fn run(ctx: &Ctx, cmd: EventsCmd) -> anyhow::Result<()> {
    let EventsCmd::Tail {
        from,
        types,
        no_follow,
    } = cmd;
    tail(ctx, from, types, no_follow).await
}

async fn tail(ctx: &Ctx, from: u64, types: Vec<String>, no_follow: bool) -> anyhow::Result<()> {
    let conference_id = ctx.conference().await?;
    let mut stdout = std::io::stdout().lock();
    let feed = ctx.client.follow_feed(&conference_id, from, types);
    futures::pin_mut!(feed);
    while let Some(item) = feed.next().await {
        match item? {
            FeedItem::Event(event) => {
                let payload = payload_to_json(&event.r#type, &event.payload)
                    .unwrap_or(serde_json::Value::Null);
                let written = if ctx.out.json {
                    let mut json = podium_client::message_to_json(&event);
                    if let Some(object) = json.as_object_mut() {
                        object.insert("payload".into(), payload);
                    }
                    writeln!(stdout, "{json}")
                } else {
                    let at = instant(&event.recorded_at)
                        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                        .unwrap_or_default();
                    let short = event.r#type.trim_start_matches("podium.v1.");
                    writeln!(
                        stdout,
                        "#{:<6} {at}  {short:<18} {}  {}",
                        event.position, event.stream, payload
                    )
                };
                match written {
                    Ok(()) => {}
                    // A closed pipe (`podium events tail | head`) is the reader saying "enough".
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                    Err(e) => return Err(e.into()),
                }
            }
            FeedItem::CaughtUp(position) => {
                if no_follow {
                    return Ok(());
                }
                if !ctx.out.json {
                    eprintln!(
                        "-- caught up at position {position}; following live events (Ctrl-C stops) --"
                    );
                }
            }
        }
    }
    Ok(())
}
