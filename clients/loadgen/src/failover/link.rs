//! The two ends the failover scenario measures between: a speaker agent whose heartbeats it
//! stops and resumes at will, and a watcher that stamps each status it receives.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{
    PATIENCE, Podium, connect,
    setup::{Show, on_air},
};

use anyhow::{Context, anyhow, bail};
use futures::StreamExt;
use podium_client::{Client, StatusUpdate, pb};
use tokio::{
    sync::{mpsc, oneshot},
    task::JoinHandle,
    time::Instant,
};
use tokio_stream::wrappers::ReceiverStream;

/// An instant on this process's tokio clock, for the measurement, and the wall clock, to split
/// it at the time podiumd put in the status.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stamp {
    pub(super) at: Instant,
    pub(super) wall: SystemTime,
}

impl Stamp {
    pub(super) fn now() -> Self {
        Self {
            at: Instant::now(),
            wall: SystemTime::now(),
        }
    }

    /// Microseconds since the Unix epoch.
    pub(super) fn wall_us(&self) -> i64 {
        self.wall
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64)
    }
}

// ---- The speaker agent ----

/// What the scenario tells the agent's task.
pub(super) enum Pulse {
    /// Stop sending heartbeats and answer with the instant the last one was sent.
    Stop(oneshot::Sender<Option<Stamp>>),
    /// Send heartbeats again, the first at once.
    Resume,
}

/// A speaker agent on its own connection whose heartbeats the scenario stops and resumes at
/// will. Unlike `podium_client::agent::run_agent` it never reconnects by itself.
pub(crate) struct Agent {
    /// `None` once closed.
    pub(super) pulses: Option<mpsc::Sender<Pulse>>,
    pub(super) task: JoinHandle<anyhow::Result<()>>,
}

impl Agent {
    /// Connects, says hello, waits for the welcome and starts heartbeats at the interval podiumd
    /// asks for.
    pub(crate) async fn connect(podium: &Podium, show: &Show) -> anyhow::Result<Self> {
        let client = connect(podium, &show.speaker_token).await?;
        let (requests, outbound) = mpsc::channel(16);
        let hello = pb::AgentHello {
            session_id: show.session_id.clone(),
            test_connection: false,
            agent: format!("podium-loadgen {}", env!("CARGO_PKG_VERSION")),
        };
        requests
            .send(pb::LinkRequest {
                message: Some(pb::link_request::Message::Hello(hello)),
            })
            .await
            .map_err(|_| anyhow!("the speaker link closed before hello"))?;
        let mut inbound = client
            .presence()
            .link(ReceiverStream::new(outbound))
            .await
            .context("podiumd refused the speaker link")?
            .into_inner();
        let welcome = match tokio::time::timeout(PATIENCE, inbound.message()).await {
            Err(_) => bail!("no welcome on the speaker link within {PATIENCE:?}"),
            Ok(Err(status)) => bail!("the speaker link failed: {}", status.message()),
            Ok(Ok(Some(pb::LinkResponse {
                message: Some(pb::link_response::Message::Welcome(welcome)),
            }))) => welcome,
            Ok(Ok(other)) => bail!("expected a welcome on the speaker link, got {other:?}"),
        };
        let interval = Duration::from_millis(u64::from(welcome.heartbeat_interval_ms.max(10)));
        let (pulses, commands) = mpsc::channel(4);
        let task = tokio::spawn(beat(client, requests, inbound, interval, commands));
        Ok(Self {
            pulses: Some(pulses),
            task,
        })
    }

    /// Stops the heartbeats; returns the instant the last one was sent.
    pub(crate) async fn stop(&mut self) -> anyhow::Result<Stamp> {
        let (reply, answer) = oneshot::channel();
        self.command(Pulse::Stop(reply)).await?;
        answer
            .await
            .map_err(|_| anyhow!("the speaker agent stopped"))?
            .context("the speaker agent had sent no heartbeat")
    }

    pub(super) async fn resume(&mut self) -> anyhow::Result<()> {
        self.command(Pulse::Resume).await
    }

    /// Sends a command; if the task has ended, says why.
    pub(super) async fn command(&mut self, pulse: Pulse) -> anyhow::Result<()> {
        let pulses = self
            .pulses
            .as_ref()
            .context("the speaker agent is closed")?;
        if pulses.send(pulse).await.is_ok() {
            return Ok(());
        }
        Err(match (&mut self.task).await {
            Ok(Err(error)) => error.context("the speaker agent failed"),
            _ => anyhow!("the speaker agent stopped"),
        })
    }

    /// Closes the stream and the connection: the task ends when its commands do, and drops
    /// both. Dropping an agent does the same without waiting.
    pub(crate) async fn close(&mut self) {
        if self.pulses.take().is_some() {
            let _ = tokio::time::timeout(PATIENCE, &mut self.task).await;
        }
    }
}

/// The agent's task: heartbeats on the ticker while beating, acknowledgements drained so that
/// the server never blocks on a full stream, commands from the scenario. Ends when the scenario
/// drops the agent, which drops the stream and the connection with it.
pub(super) async fn beat(
    _client: Client,
    requests: mpsc::Sender<pb::LinkRequest>,
    mut inbound: tonic::Streaming<pb::LinkResponse>,
    interval: Duration,
    mut commands: mpsc::Receiver<Pulse>,
) -> anyhow::Result<()> {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut beating = true;
    let mut seq = 0u64;
    let mut last_sent = None;
    loop {
        tokio::select! {
            _ = ticker.tick(), if beating => {
                seq += 1;
                // The figures play no part in the silence rule; zero is a healthy link.
                let heartbeat = pb::Heartbeat { seq, figures: Some(pb::LinkFigures::default()) };
                requests
                    .send(pb::LinkRequest { message: Some(pb::link_request::Message::Heartbeat(heartbeat)) })
                    .await
                    .map_err(|_| anyhow!("the speaker link closed"))?;
                last_sent = Some(Stamp::now());
            }
            command = commands.recv() => match command {
                Some(Pulse::Stop(reply)) => {
                    beating = false;
                    let _ = reply.send(last_sent);
                }
                Some(Pulse::Resume) => {
                    beating = true;
                    ticker.reset_immediately();
                }
                None => return Ok(()),
            },
            message = inbound.message() => match message {
                Ok(Some(_)) => {}
                Ok(None) => bail!("podiumd closed the speaker link"),
                Err(status) => bail!("the speaker link failed: {}", status.message()),
            },
        }
    }
}

// ---- The watcher ----

/// Follows the session's status on its own connection, stamping each status with the instant
/// it arrived.
pub(super) struct Watcher {
    pub(super) statuses: mpsc::Receiver<Result<(Stamp, pb::SessionStatus), String>>,
    pub(super) latest: Option<(Stamp, pb::SessionStatus)>,
}

impl Watcher {
    pub(super) fn start(client: Client, conference_id: &str, session_id: &str) -> Self {
        let (tx, statuses) = mpsc::channel(256);
        let updates = client.watch_status(conference_id, "");
        let session_id = session_id.to_owned();
        tokio::spawn(async move {
            futures::pin_mut!(updates);
            while let Some(update) = updates.next().await {
                let at = Stamp::now();
                let sessions = match update {
                    Ok(StatusUpdate::Snapshot { sessions, .. }) => sessions,
                    Ok(StatusUpdate::Changed { session, .. }) => vec![*session],
                    Err(status) => {
                        let _ = tx.send(Err(status.message().to_owned())).await;
                        return;
                    }
                };
                for s in sessions.into_iter().filter(|s| s.session_id == session_id) {
                    if tx.send(Ok((at, s))).await.is_err() {
                        return;
                    }
                }
            }
        });
        Self {
            statuses,
            latest: None,
        }
    }

    /// Waits until the session's status satisfies `what` (the latest one seen counts), at most
    /// `within`; returns it with the instant it arrived.
    pub(super) async fn until(
        &mut self,
        waiting_for: &str,
        within: Duration,
        what: impl Fn(&pb::SessionStatus) -> bool,
    ) -> anyhow::Result<(Stamp, pb::SessionStatus)> {
        if let Some(latest) = self.latest.as_ref().filter(|(_, s)| what(s)) {
            return Ok(latest.clone());
        }
        let deadline = Instant::now() + within;
        loop {
            let next = tokio::time::timeout_at(deadline, self.statuses.recv())
                .await
                .map_err(|_| anyhow!("gave up after {within:?} waiting for {waiting_for}"))?;
            let (at, status) = match next {
                Some(Ok(stamped)) => stamped,
                Some(Err(message)) => bail!("the status stream failed: {message}"),
                None => bail!("the status stream ended"),
            };
            let satisfied = what(&status);
            self.latest = Some((at, status));
            if satisfied {
                return self.latest.clone().context("just set");
            }
        }
    }

    /// Takes every status that has arrived; returns the first with something other than the
    /// speaker on air, if any.
    pub(super) fn drain(&mut self) -> anyhow::Result<Option<pb::SessionStatus>> {
        let mut off_air = None;
        while let Ok(next) = self.statuses.try_recv() {
            let (at, status) = next.map_err(|m| anyhow!("the status stream failed: {m}"))?;
            if off_air.is_none() && on_air(&status) != pb::SourceKind::Speaker {
                off_air = Some(status.clone());
            }
            self.latest = Some((at, status));
        }
        Ok(off_air)
    }
}
