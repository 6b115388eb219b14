//! The bridge's report stream (`Playout/Report`): the latest picture whenever it changes and
//! every 2 seconds, reopened with backoff when podium goes away. The stream ends, and podium
//! stores "bridge disconnected", when the bridge drops its side of the channel.

use std::time::Duration;

use podium_client::{Client, pb};
use tokio::sync::watch;

const HEARTBEAT: Duration = Duration::from_secs(2);

pub async fn run(
    client: Client,
    conference_id: String,
    output: watch::Receiver<pb::ProgramOutput>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let mut latest = output.clone();
        let conference_id = conference_id.clone();
        let reports = async_stream::stream! {
            let mut beat = tokio::time::interval(HEARTBEAT);
            loop {
                let output = latest.borrow_and_update().clone();
                yield pb::PlayoutReportRequest { conference_id: conference_id.clone(), output: Some(output) };
                tokio::select! {
                    changed = latest.changed() => if changed.is_err() { break },
                    _ = beat.tick() => {}
                }
            }
        };
        let opened = tokio::time::Instant::now();
        match client.playout().report(reports).await {
            // The bridge is stopping: its side of the channel is gone.
            Ok(_) => return,
            Err(status) => {
                if output.has_changed().is_err() {
                    return;
                }
                tracing::warn!(code = ?status.code(), message = status.message(), "podium did not take the report stream; trying again");
            }
        }
        // A stream that lived a while was no quick failure: start the backoff over.
        if opened.elapsed() > Duration::from_secs(10) {
            backoff = Duration::from_millis(100);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
