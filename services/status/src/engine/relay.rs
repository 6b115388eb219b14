//! Inputs forwarded between nodes: a node that does not run the engine sends what its agents
//! and moderators tell it to the node that does, as `podium.v1.EngineInput` messages through
//! the [`Lease`]; that node hands them to its engine and answers commands with an
//! `EngineAnswer`.

use podium_eventlog::{Delivery, EventLogError, Lease};
use podium_proto::v1 as pb;
use prost::Message;
use std::sync::Arc;

use prost::bytes::Bytes;
use tokio::sync::{broadcast, mpsc, oneshot};
use uuid::Uuid;

use super::{Command, EngineHandle, Input, Key};
use crate::{
    codec::{figures_from_proto, figures_to_proto},
    domain::{Millis, Target},
    error::StatusError,
};

/// Sends an agent's input to the node that runs the engine. While none does, the input is
/// lost, like a heartbeat on a dropped packet: the next holder times silence from when it took
/// over.
pub(super) async fn tell(lease: &dyn Lease, input: Input) {
    let Some(message) = encode(input) else {
        return;
    };
    if let Err(error) = lease.tell(message.encode_to_vec().into()).await {
        tracing::debug!(%error, "input for the status engine not forwarded");
    }
}

/// An agent's connection that a newer one replaced (see [`EngineHandle::replacements`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replaced {
    pub conference_id: String,
    pub session_id: String,
    pub speaker_id: String,
    /// The older connection, whose stream ends.
    pub connection: u64,
}

/// Tells every node that `older` was replaced, so that the node holding it ends its stream:
/// a node kicks an older agent of its own at once, but not one connected through another node.
pub(super) fn replaced(lease: Arc<dyn Lease>, key: &Key, speaker_id: &str, older: u64) {
    let message = pb::AgentReplaced {
        conference_id: key.0.clone(),
        session_id: key.1.clone(),
        older: Some(link(speaker_id.to_owned(), older)),
    };
    tokio::spawn(async move {
        if let Err(error) = lease.announce(message.encode_to_vec().into()).await {
            tracing::warn!(%error, "a replaced agent's node not told");
        }
    });
}

/// Hands what the engine announced to every node to this node's presence service.
pub(super) async fn hear_replaced(
    mut announcements: mpsc::Receiver<Bytes>,
    replaced: broadcast::Sender<Replaced>,
) {
    while let Some(payload) = announcements.recv().await {
        let message = match pb::AgentReplaced::decode(payload) {
            Ok(pb::AgentReplaced {
                conference_id,
                session_id,
                older: Some(older),
            }) => Replaced {
                conference_id,
                session_id,
                speaker_id: older.speaker_id,
                connection: older.connection,
            },
            Ok(_) | Err(_) => {
                tracing::warn!("an announcement of the status engine not understood");
                continue;
            }
        };
        // No presence service listening (a node serving no agents): nothing to end.
        let _ = replaced.send(message);
    }
}

/// Sends a moderator's command to the node that runs the engine and waits for its answer.
pub(super) async fn ask(
    lease: &dyn Lease,
    key: Key,
    command: Command,
    request: Uuid,
    by: String,
) -> Result<u64, StatusError> {
    let (reply, _) = oneshot::channel();
    let input = Input::Command {
        key,
        command,
        request,
        by,
        at: 0,
        reply,
    };
    let Some(message) = encode(input) else {
        return Err(StatusError::Unavailable("command not forwarded".into()));
    };
    let answer = lease
        .ask(message.encode_to_vec().into())
        .await
        .map_err(|e| match e {
            // Outcome unknown: DEADLINE_EXCEEDED, never retried as if nothing happened.
            EventLogError::Unanswered(_) => StatusError::Log(e),
            e => StatusError::Unavailable(e.to_string()),
        })?;
    let answer = pb::EngineAnswer::decode(answer)
        .map_err(|e| StatusError::Unavailable(format!("the status engine's answer: {e}")))?;
    match tonic::Code::from_i32(answer.code) {
        tonic::Code::Ok => Ok(answer.position),
        tonic::Code::NotFound => Err(StatusError::NotFound(answer.message)),
        tonic::Code::FailedPrecondition => Err(StatusError::FailedPrecondition(answer.message)),
        tonic::Code::Aborted => Err(StatusError::Aborted(answer.message)),
        tonic::Code::InvalidArgument => Err(StatusError::invalid("command", answer.message)),
        // The engine's own "outcome unknown" (a retry waiting on an append that failed).
        tonic::Code::DeadlineExceeded => {
            Err(StatusError::Log(EventLogError::Unanswered(answer.message)))
        }
        _ => Err(StatusError::Unavailable(answer.message)),
    }
}

/// Hands what other nodes forward to this node's engine, for as long as the node runs. Inputs
/// keep their order; commands are answered as the engine answers them. Each is stamped with
/// this node's clock as it arrives: the engine times silence on one clock, whatever another
/// node's says (the hop costs a millisecond or two on a LAN).
pub(super) async fn serve(mut deliveries: mpsc::Receiver<Delivery>, engine: EngineHandle) {
    while let Some(Delivery { payload, reply }) = deliveries.recv().await {
        let message = match pb::EngineInput::decode(payload) {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(%error, "forwarded input for the status engine not understood");
                continue;
            }
        };
        let (tx, answer) = oneshot::channel();
        let Some(input) = decode(message, tx, engine.clock.now()) else {
            tracing::warn!("forwarded input for the status engine is incomplete");
            continue;
        };
        let is_command = matches!(input, Input::Command { .. });
        if engine.inputs.send(input).await.is_err() {
            break;
        }
        if let (true, Some(reply)) = (is_command, reply) {
            tokio::spawn(async move {
                let answered = answer
                    .await
                    .unwrap_or_else(|_| Err(StatusError::Unavailable("engine stopped".into())));
                let _ = reply.send(answer_of(answered).encode_to_vec().into());
            });
        }
    }
}

fn answer_of(answered: Result<u64, StatusError>) -> pb::EngineAnswer {
    match answered {
        Ok(position) => pb::EngineAnswer {
            position,
            ..Default::default()
        },
        Err(error) => {
            let status = tonic::Status::from(error);
            pb::EngineAnswer {
                position: 0,
                code: status.code() as i32,
                message: status.message().to_owned(),
            }
        }
    }
}

fn link(speaker_id: String, connection: u64) -> pb::AgentLink {
    pb::AgentLink {
        speaker_id,
        connection,
    }
}

/// The message of an input (its time and its reply, if any, stay here).
fn encode(input: Input) -> Option<pb::EngineInput> {
    use pb::engine_input::Input as I;
    let (key, input) = match input {
        Input::Connected {
            key,
            speaker_id,
            connection,
            ..
        } => (key, I::Connected(link(speaker_id, connection))),
        Input::Heartbeat {
            key,
            speaker_id,
            connection,
            figures,
            ..
        } => (
            key,
            I::Heartbeat(pb::AgentHeartbeat {
                link: Some(link(speaker_id, connection)),
                figures: Some(figures_to_proto(&figures)),
            }),
        ),
        Input::Closed {
            key,
            speaker_id,
            connection,
            ..
        } => (key, I::Closed(link(speaker_id, connection))),
        Input::Command {
            key,
            command,
            request,
            by,
            ..
        } => {
            use pb::engine_command::Kind;
            let (kind, target, target_id) = match command {
                Command::Start => (Kind::Start, pb::SourceKind::Unspecified, String::new()),
                Command::End => (Kind::End, pb::SourceKind::Unspecified, String::new()),
                Command::Pin(true) => (Kind::Pin, pb::SourceKind::Unspecified, String::new()),
                Command::Pin(false) => (Kind::Unpin, pb::SourceKind::Unspecified, String::new()),
                Command::Switch(Target::Speaker(id)) => (Kind::Switch, pb::SourceKind::Speaker, id),
                Command::Switch(Target::BackupSpeaker(id)) => {
                    (Kind::Switch, pb::SourceKind::BackupSpeaker, id)
                }
                Command::Switch(Target::Recording(id)) => {
                    (Kind::Switch, pb::SourceKind::Recording, id)
                }
                Command::Switch(Target::Slate) => {
                    (Kind::Switch, pb::SourceKind::Slate, String::new())
                }
            };
            (
                key,
                I::Command(pb::EngineCommand {
                    kind: kind as i32,
                    by,
                    target: target as i32,
                    target_id,
                    request_id: request.to_string(),
                }),
            )
        }
        Input::Slots { .. } => return None,
    };
    Some(pb::EngineInput {
        conference_id: key.0,
        session_id: key.1,
        input: Some(input),
    })
}

/// The input of a message; a command is answered through `reply`.
fn decode(
    message: pb::EngineInput,
    reply: oneshot::Sender<Result<u64, StatusError>>,
    at: Millis,
) -> Option<Input> {
    use pb::engine_input::Input as I;
    let key = (message.conference_id, message.session_id);
    Some(match message.input? {
        I::Connected(l) => Input::Connected {
            key,
            speaker_id: l.speaker_id,
            connection: l.connection,
            at,
        },
        I::Heartbeat(h) => {
            let l = h.link?;
            Input::Heartbeat {
                key,
                speaker_id: l.speaker_id,
                connection: l.connection,
                figures: figures_from_proto(h.figures),
                at,
            }
        }
        I::Closed(l) => Input::Closed {
            key,
            speaker_id: l.speaker_id,
            connection: l.connection,
            at,
        },
        I::Command(c) => {
            use pb::engine_command::Kind;
            let command = match Kind::try_from(c.kind).ok()? {
                Kind::Start => Command::Start,
                Kind::End => Command::End,
                Kind::Pin => Command::Pin(true),
                Kind::Unpin => Command::Pin(false),
                Kind::Switch => Command::Switch(match pb::SourceKind::try_from(c.target).ok()? {
                    pb::SourceKind::Speaker => Target::Speaker(c.target_id),
                    pb::SourceKind::BackupSpeaker => Target::BackupSpeaker(c.target_id),
                    pb::SourceKind::Recording => Target::Recording(c.target_id),
                    pb::SourceKind::Slate => Target::Slate,
                    pb::SourceKind::Unspecified => return None,
                }),
                Kind::Unspecified => return None,
            };
            Input::Command {
                key,
                command,
                // A forwarded command always has one; an unreadable one cannot be a retry.
                request: Uuid::parse_str(&c.request_id).unwrap_or_else(|_| Uuid::now_v7()),
                by: c.by,
                at,
                reply,
            }
        }
    })
}
