//! The `podium.v1.Presence` service: speaker agents' heartbeat streams. Each heartbeat goes to
//! the engine; the stream's end (a close, a reset, a dead connection found by keepalive) tells
//! the engine the speaker is gone. A newer agent for the same speaker and session replaces the
//! older one; agents of one speaker for different sessions (a backup standing by for two talks
//! at once) run side by side.
//! A test connection (the green room) is recorded for readiness and never reaches the engine.

use std::{
    collections::HashMap,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use futures::Stream;
use podium_access::{Role, caller};
use podium_eventlog::{EventLog, ExpectedVersion, NewEvent, Projector};
use podium_proto::v1::{self as pb, presence_server::Presence};
use tokio::sync::{broadcast, oneshot, watch};
use tonic::{Request, Response, Status, Streaming};
use uuid::Uuid;

use crate::{
    codec::{figures_from_proto, figures_to_proto, presence_stream, timestamp},
    domain::Figures,
    engine::{EngineHandle, Replaced},
    model::StatusModel,
};

/// How often agents send heartbeats.
pub const HEARTBEAT_INTERVAL_MS: u32 = 250;
/// Heartbeats a test connection averages before it is recorded.
const TEST_HEARTBEATS: u32 = 4;
/// The agent's description of itself ("podium 0.1.0 on Linux").
const AGENT: podium_text::Limit = podium_text::Limit::line(200).optional();
/// How long an agent has to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// The on-air agents by conference, session and speaker: each connection's id and its kick.
type Agents = Arc<Mutex<HashMap<(String, String, String), (u64, oneshot::Sender<()>)>>>;

pub struct PresenceService {
    engine: EngineHandle,
    model: Projector<StatusModel>,
    log: Arc<dyn EventLog>,
    agents: Agents,
    next_connection: AtomicU64,
    shutdown: watch::Receiver<bool>,
}

impl PresenceService {
    pub fn new(
        engine: EngineHandle,
        model: Projector<StatusModel>,
        log: Arc<dyn EventLog>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let agents = Agents::default();
        if let Some(replacements) = engine.replacements() {
            tokio::spawn(end_replaced(replacements, agents.clone()));
        }
        Self {
            engine,
            model,
            log,
            agents,
            // Unique across nodes, whose engines may see each other's connections: each node
            // counts from its own random start.
            next_connection: AtomicU64::new(uuid::Uuid::new_v4().as_u64_pair().1 >> 16),
            shutdown,
        }
    }
}

/// Several nodes: ends this node's agents whose connections newer ones replaced through
/// other nodes, as the engine announces them (it kicks, like a newer agent on this node).
async fn end_replaced(mut replacements: broadcast::Receiver<Replaced>, agents: Agents) {
    loop {
        let replaced = match replacements.recv().await {
            Ok(replaced) => replaced,
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                tracing::warn!(missed, "announcements of replaced agents missed");
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let key = (
            replaced.conference_id,
            replaced.session_id,
            replaced.speaker_id,
        );
        let Ok(mut agents) = agents.lock() else {
            return;
        };
        if agents
            .get(&key)
            .is_some_and(|(connection, _)| *connection == replaced.connection)
            && let Some((connection, kick)) = agents.remove(&key)
        {
            tracing::info!(conference = %key.0, session = %key.1, speaker = %key.2, connection, "agent replaced by a newer one on another node");
            let _ = kick.send(());
        }
    }
}

/// Tells the engine and the agent registry that a connection ended, however it ended.
struct Departure {
    engine: EngineHandle,
    agents: Agents,
    conference_id: String,
    session_id: String,
    speaker_id: String,
    connection: u64,
    on_air: bool,
}

impl Drop for Departure {
    fn drop(&mut self) {
        if let Ok(mut agents) = self.agents.lock() {
            let key = (
                self.conference_id.clone(),
                self.session_id.clone(),
                self.speaker_id.clone(),
            );
            if agents.get(&key).is_some_and(|(c, _)| *c == self.connection) {
                agents.remove(&key);
            }
        }
        // Before the engine hears of the close: whoever sees the failover it may cause finds
        // the agent gone from /metrics.
        metrics::gauge!(crate::metrics::AGENTS).decrement(1);
        if self.on_air {
            let (engine, c, s, sp, connection) = (
                self.engine.clone(),
                self.conference_id.clone(),
                self.session_id.clone(),
                self.speaker_id.clone(),
                self.connection,
            );
            tokio::spawn(async move {
                let _ = engine.closed(&c, &s, &sp, connection).await;
            });
        }
        tracing::info!(conference = %self.conference_id, speaker = %self.speaker_id, connection = self.connection, "agent disconnected");
    }
}

type LinkStream = Pin<Box<dyn Stream<Item = Result<pb::LinkResponse, Status>> + Send>>;

fn response(message: pb::link_response::Message) -> pb::LinkResponse {
    pb::LinkResponse {
        message: Some(message),
    }
}

#[tonic::async_trait]
impl Presence for PresenceService {
    type LinkStream = LinkStream;

    async fn link(
        &self,
        request: Request<Streaming<pb::LinkRequest>>,
    ) -> Result<Response<Self::LinkStream>, Status> {
        let speaker = SpeakerCaller::of(&request)?;
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(HELLO_TIMEOUT, inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("send hello within 10 s of connecting"))??;
        let Some(pb::LinkRequest {
            message: Some(pb::link_request::Message::Hello(hello)),
        }) = first
        else {
            return Err(Status::invalid_argument(
                "hello: the first message must be hello",
            ));
        };
        let (agent, session_id, policy) = self
            .check_session(&speaker, "hello.agent", &hello.agent, &hello.session_id)
            .await?;
        let SpeakerCaller {
            conference_id,
            speaker_id,
        } = speaker;
        let test = hello.test_connection;
        let connection = self.next_connection.fetch_add(1, Ordering::Relaxed);
        let (kick, mut kicked) = oneshot::channel();
        // Only on-air agents replace each other: a green-room test while live must not knock
        // the speaker's real agent off (its kick sender is simply dropped, never fired).
        if !test {
            let replaced = self
                .agents
                .lock()
                .map_err(|_| Status::internal("internal error"))?
                .insert(
                    (
                        conference_id.clone(),
                        session_id.clone(),
                        speaker_id.clone(),
                    ),
                    (connection, kick),
                );
            if let Some((_, older)) = replaced {
                let _ = older.send(());
            }
        }
        if !test {
            self.engine
                .connected(&conference_id, &session_id, &speaker_id, connection)
                .await?;
        }
        tracing::info!(conference = %conference_id, session = %session_id, speaker = %speaker_id, connection, test, agent = %agent, "agent connected");

        metrics::gauge!(crate::metrics::AGENTS).increment(1);
        let departure = Departure {
            engine: self.engine.clone(),
            agents: self.agents.clone(),
            conference_id: conference_id.clone(),
            session_id: session_id.clone(),
            speaker_id: speaker_id.clone(),
            connection,
            on_air: !test,
        };
        let welcome = pb::Welcome {
            conference_id: conference_id.clone(),
            session_id: session_id.clone(),
            speaker_id: speaker_id.clone(),
            heartbeat_interval_ms: heartbeat_interval(u64::from(policy.failover_after_ms)),
            failover_after_ms: policy.failover_after_ms,
        };
        let engine = self.engine.clone();
        let log = self.log.clone();
        let model = self.model.clone();
        let mut shutdown = self.shutdown.clone();
        let stream = async_stream::try_stream! {
            let _departure = departure;
            yield response(pb::link_response::Message::Welcome(welcome));
            let mut tested: Vec<Figures> = Vec::new();
            loop {
                let message = tokio::select! {
                    _ = shutdown.wait_for(|stop| *stop) => Err(Status::unavailable("podiumd is shutting down; the agent reconnects")),
                    _ = &mut kicked, if !test => Err(Status::aborted(format!("replaced by a newer agent for speaker {speaker_id} in session {session_id}; this one stops"))),
                    message = inbound.message() => Ok(message),
                }?;
                let heartbeat = match message {
                    Ok(Some(pb::LinkRequest { message: Some(pb::link_request::Message::Heartbeat(h)) })) => h,
                    Ok(Some(pb::LinkRequest { message: Some(pb::link_request::Message::Hello(_)) })) => {
                        Err(Status::invalid_argument("hello: already sent on this stream"))?
                    }
                    Ok(Some(pb::LinkRequest { message: None })) => continue,
                    // The agent closed its side, or the connection died.
                    Ok(None) | Err(_) => break,
                };
                // A speaker the organiser has since taken off the session (UpdateSession, before
                // it went live) stops here rather than be its link. Never waiting for the model:
                // while a fold holds it, the next heartbeat looks.
                let taken_off = model.try_read().is_some_and(|model| {
                    !model
                        .session(&conference_id, &session_id)
                        .is_some_and(|session| session.has_speaker(&speaker_id))
                });
                if taken_off {
                    Err(Status::permission_denied(format!(
                        "speaker {speaker_id} is no longer a speaker of session {session_id}; this agent stops"
                    )))?;
                }
                let figures = figures_from_proto(heartbeat.figures);
                if test {
                    if tested.len() < TEST_HEARTBEATS as usize {
                        tested.push(figures);
                        if tested.len() == TEST_HEARTBEATS as usize {
                            let average = average(&tested);
                            let recorded = record_test(log.as_ref(), &conference_id, &session_id, &speaker_id, average, engine.clock().now()).await?;
                            // As RecordTest: a pre-flight report read after this answer shows the test.
                            model.wait_for(recorded).await?;
                            yield response(pb::link_response::Message::TestRecorded(pb::TestRecorded { figures: Some(figures_to_proto(&average)) }));
                        }
                    }
                } else {
                    engine.heartbeat(&conference_id, &session_id, &speaker_id, connection, figures).await?;
                }
                yield response(pb::link_response::Message::Ack(pb::HeartbeatAck { seq: heartbeat.seq }));
            }
        };
        Ok(Response::new(Box::pin(stream)))
    }

    async fn record_test(
        &self,
        request: Request<pb::RecordTestRequest>,
    ) -> Result<Response<pb::RecordTestResponse>, Status> {
        let speaker = SpeakerCaller::of(&request)?;
        let r = request.into_inner();
        if r.samples < TEST_HEARTBEATS {
            return Err(Status::invalid_argument(format!(
                "samples: at least {TEST_HEARTBEATS} round trips, like a test over Link; got {}",
                r.samples
            )));
        }
        let (agent, session_id, _) = self
            .check_session(&speaker, "agent", &r.agent, &r.session_id)
            .await?;
        let figures = figures_from_proto(r.figures);
        tracing::info!(conference = %speaker.conference_id, session = %session_id, speaker = %speaker.speaker_id, agent = %agent, samples = r.samples, "test measured by the client");
        let recorded = record_test(
            self.log.as_ref(),
            &speaker.conference_id,
            &session_id,
            &speaker.speaker_id,
            figures,
            self.engine.clock().now(),
        )
        .await?;
        // So that a pre-flight report read after this answer shows the test.
        self.model.wait_for(recorded).await?;
        Ok(Response::new(pb::RecordTestResponse {
            figures: Some(figures_to_proto(&figures)),
        }))
    }
}

/// The conference and speaker of a speaker token; any other token is refused.
struct SpeakerCaller {
    conference_id: String,
    speaker_id: String,
}

impl SpeakerCaller {
    fn of<T>(request: &Request<T>) -> Result<Self, Status> {
        let principal = caller(request)?;
        let (Role::Speaker, Some(conference_id), Some(speaker_id)) = (
            principal.role,
            principal.conference_id.clone(),
            principal.speaker_id.clone(),
        ) else {
            return Err(Status::permission_denied(
                "only a speaker token can connect a speaker agent",
            ));
        };
        Ok(Self {
            conference_id,
            speaker_id,
        })
    }
}

impl PresenceService {
    /// The cleaned agent text, the session id and its policy, once the session is known to
    /// have this speaker. `agent_field` names the agent text in errors.
    async fn check_session(
        &self,
        speaker: &SpeakerCaller,
        agent_field: &'static str,
        agent: &str,
        session_id: &str,
    ) -> Result<(String, String, podium_core::FailoverPolicy), Status> {
        // Free text that reaches the logs: cleaned like any other, so it cannot forge log lines.
        let agent = podium_text::clean(agent_field, agent, &AGENT)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let session_id = session_id.trim().to_owned();
        let SpeakerCaller {
            conference_id,
            speaker_id,
        } = speaker;
        // A session the agenda has just added may not be in the read model yet.
        self.model
            .catch_up_unless(|m| m.session(conference_id, &session_id).is_some())
            .await?;
        let model = self.model.read();
        let session = model
            .session(conference_id, &session_id)
            .ok_or_else(|| Status::not_found(format!("session {session_id} not found")))?;
        if !session.has_speaker(speaker_id) {
            return Err(Status::permission_denied(format!(
                "speaker {speaker_id} is not a speaker of session {session_id}"
            )));
        }
        Ok((agent, session_id, session.policy))
    }
}

/// 250 ms, or a quarter of failover_after when that is shorter (never below 25 ms), so that a
/// short failover_after is not mistaken for silence between heartbeats.
pub fn heartbeat_interval(failover_after_ms: u64) -> u32 {
    (failover_after_ms / 4).clamp(25, u64::from(HEARTBEAT_INTERVAL_MS)) as u32
}

fn average(samples: &[Figures]) -> Figures {
    let n = samples.len().max(1);
    Figures {
        round_trip_ms: (samples
            .iter()
            .map(|f| u64::from(f.round_trip_ms))
            .sum::<u64>()
            / n as u64) as u32,
        loss_percent: samples.iter().map(|f| f.loss_percent).sum::<f32>() / n as f32,
        upstream_kbps: (samples
            .iter()
            .map(|f| u64::from(f.upstream_kbps))
            .sum::<u64>()
            / n as u64) as u32,
    }
}

async fn record_test(
    log: &dyn EventLog,
    conference_id: &str,
    session_id: &str,
    speaker_id: &str,
    figures: Figures,
    at: u64,
) -> Result<u64, Status> {
    let event = pb::TestConnectionRecorded {
        conference_id: conference_id.to_owned(),
        speaker_id: speaker_id.to_owned(),
        session_id: session_id.to_owned(),
        figures: Some(figures_to_proto(&figures)),
        at: Some(timestamp(at)),
    };
    let stream = presence_stream(conference_id, speaker_id);
    let appended = log
        .append(
            &stream,
            ExpectedVersion::Any,
            vec![NewEvent::new(Uuid::now_v7(), &event)],
        )
        .await?;
    tracing::info!(conference = %conference_id, speaker = %speaker_id, "test connection recorded");
    Ok(appended.last_position)
}
