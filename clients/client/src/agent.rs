//! The speaker agent: holds the `Presence/Link` stream open, sends a heartbeat every 250 ms with
//! the round trip it measured itself (from the server's acknowledgements) and the loss and
//! bitrate a media tool reports, and reconnects with backoff when the link drops. A newer agent
//! for the same speaker and session replaces this one; it then stops instead of fighting back.

use std::{collections::VecDeque, sync::Arc, time::Duration};

use futures::{Stream, StreamExt};
use tokio::{sync::mpsc, time::Instant};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};

use crate::{Client, pb};

/// Loss (percent) and upstream bitrate (kbit/s) of the media link, as a media tool reports them.
pub type MediaFigures = Arc<dyn Fn() -> (f32, u32) + Send + Sync>;

/// What the agent does.
#[derive(Clone)]
pub struct AgentConfig {
    pub session_id: String,
    /// The green room: record a test connection, never go on air.
    pub test_connection: bool,
    pub interval: Duration,
    pub media: MediaFigures,
    /// Names the agent in the server's logs.
    pub agent: String,
}

impl std::fmt::Debug for AgentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentConfig")
            .field("session_id", &self.session_id)
            .field("test_connection", &self.test_connection)
            .finish_non_exhaustive()
    }
}

impl AgentConfig {
    pub fn new(session_id: &str) -> Self {
        Self {
            session_id: session_id.to_owned(),
            test_connection: false,
            interval: Duration::from_millis(250),
            media: Arc::new(|| (0.0, 0)),
            agent: format!("podium-client {}", env!("CARGO_PKG_VERSION")),
        }
    }
}

/// What happened to the agent.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentEvent {
    Connected(pb::Welcome),
    /// A heartbeat came back after `round_trip_ms`.
    Acked {
        seq: u64,
        round_trip_ms: u32,
    },
    /// The green-room test was recorded with these figures.
    TestRecorded(pb::LinkFigures),
    /// The link dropped; the agent tries again after `retry_in`.
    Disconnected {
        reason: String,
        retry_in: Duration,
    },
}

/// Refusals a reconnect cannot cure.
fn fatal(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Aborted
            | Code::PermissionDenied
            | Code::NotFound
            | Code::InvalidArgument
            | Code::Unauthenticated
            | Code::FailedPrecondition
    )
}

/// Runs the agent until it is replaced or refused; the stream reports what happens.
pub fn run_agent(
    client: Client,
    config: AgentConfig,
) -> impl Stream<Item = Result<AgentEvent, Status>> + Send + 'static {
    async_stream::try_stream! {
        let mut backoff = Duration::from_millis(100);
        loop {
            let (tx, rx) = mpsc::channel::<pb::LinkRequest>(16);
            let hello = pb::AgentHello { session_id: config.session_id.clone(), test_connection: config.test_connection, agent: config.agent.clone() };
            // The queue is empty: this cannot fail.
            let _ = tx.try_send(pb::LinkRequest { message: Some(pb::link_request::Message::Hello(hello)) });
            let failure = match client.presence().link(ReceiverStream::new(rx)).await {
                Err(status) => status,
                Ok(response) => {
                    let mut inbound = response.into_inner();
                    let mut sent: VecDeque<(u64, Instant)> = VecDeque::new();
                    let mut round_trip_ms = 0u32;
                    let mut seq = 0u64;
                    let mut ticker = tokio::time::interval(config.interval);
                    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        tokio::select! {
                            _ = ticker.tick() => {
                                seq += 1;
                                let (loss, kbps) = (config.media)();
                                let figures = pb::LinkFigures { round_trip_ms, packet_loss_percent: loss, upstream_kbps: kbps };
                                let heartbeat = pb::Heartbeat { seq, figures: Some(figures) };
                                sent.push_back((seq, Instant::now()));
                                if sent.len() > 64 {
                                    sent.pop_front();
                                }
                                if tx.send(pb::LinkRequest { message: Some(pb::link_request::Message::Heartbeat(heartbeat)) }).await.is_err() {
                                    // The server ended the call; its status says why (a newer
                                    // agent must not be fought by reconnecting).
                                    break match inbound.next().await {
                                        Some(Err(status)) => status,
                                        _ => Status::unavailable("link closed"),
                                    };
                                }
                            }
                            message = inbound.next() => match message {
                                Some(Ok(pb::LinkResponse { message: Some(message) })) => match message {
                                    pb::link_response::Message::Welcome(welcome) => {
                                        backoff = Duration::from_millis(100);
                                        // The server says how often it wants to hear from us.
                                        let asked = Duration::from_millis(u64::from(welcome.heartbeat_interval_ms.max(10)));
                                        if asked < config.interval {
                                            ticker = tokio::time::interval(asked);
                                            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                                        }
                                        yield AgentEvent::Connected(welcome);
                                    }
                                    pb::link_response::Message::Ack(ack) => {
                                        if let Some((_, at)) = sent.iter().find(|(s, _)| *s == ack.seq) {
                                            round_trip_ms = at.elapsed().as_millis().min(u128::from(u32::MAX)) as u32;
                                            yield AgentEvent::Acked { seq: ack.seq, round_trip_ms };
                                        }
                                    }
                                    pb::link_response::Message::TestRecorded(t) => {
                                        yield AgentEvent::TestRecorded(t.figures.unwrap_or_default());
                                    }
                                },
                                Some(Ok(_)) => {}
                                Some(Err(status)) => break status,
                                None => break Status::unavailable("server closed the link"),
                            },
                        }
                    }
                }
            };
            if fatal(&failure) {
                Err(failure)?;
                return;
            }
            yield AgentEvent::Disconnected { reason: failure.message().to_owned(), retry_in: backoff };
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}
