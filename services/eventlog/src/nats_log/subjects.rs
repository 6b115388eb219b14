//! How the log's streams map onto one JetStream stream's subjects, and how its messages map back
//! to [`RecordedEvent`]s.
//!
//! Event `v` of podium stream `s` is the message on `<prefix>.e.<token(s)>.<v>`. A stream's
//! events share the filter `<prefix>.e.<token(s)>.*`, whose last sequence fences appends with an
//! expected version; the exact subject of one version finds it in one lookup. The message body
//! is the stored form of every backend, the public `podium.v1.Event`, without the two fields
//! only the server knows: the position (its sequence less one) and the time it was stored.

use std::time::SystemTime;

use async_nats::{HeaderMap, jetstream::message::StreamMessage};
use podium_proto::v1 as pb;
use prost::Message;
use uuid::Uuid;

use crate::{EventLogError, NewEvent, RecordedEvent, Result};

/// The subject's token for a podium stream. Stream names hold ASCII letters, digits and
/// `/ - _ . :`; a subject token may hold all of them but the dot, which becomes `%` (a character
/// no stream name holds, so two streams never share a token).
pub fn token(stream: &str) -> String {
    stream.replace('.', "%")
}

/// The header on the last message of every append (one message, or an atomic batch's commit):
/// the head moves only to the end of a whole append.
pub const LAST_OF_APPEND: &str = "Podium-Last";

/// The subject of every event of the log.
pub fn all(prefix: &str) -> String {
    format!("{prefix}.e.>")
}

/// The filter matching every event of `stream`.
pub fn of_stream(prefix: &str, stream: &str) -> String {
    format!("{prefix}.e.{}.*", token(stream))
}

/// The subject of version `version` of `stream`.
pub fn at_version(prefix: &str, stream: &str, version: u64) -> String {
    format!("{prefix}.e.{}.{version}", token(stream))
}

/// The message body of `event`, appended as version `version` of `stream`.
pub fn body(stream: &str, version: u64, event: &NewEvent) -> Vec<u8> {
    pb::Event {
        id: event.id.to_string(),
        stream: stream.to_owned(),
        stream_version: version,
        position: 0,
        r#type: event.event_type.clone(),
        payload: event.payload.clone(),
        recorded_at: None,
    }
    .encode_to_vec()
}

/// The headers every event message carries: its id as JetStream's message id, so a publish
/// sent twice within the stream's duplicate window is stored once.
pub fn headers(id: Uuid) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(async_nats::header::NATS_MESSAGE_ID, id.to_string().as_str());
    headers
}

/// The event a stored message holds.
pub fn recorded(message: &StreamMessage) -> Result<RecordedEvent> {
    decode(message.sequence, message.time.into(), &message.payload)
}

/// The event stored with sequence `sequence` at `stored` with body `body`.
pub fn decode(sequence: u64, stored: SystemTime, body: &[u8]) -> Result<RecordedEvent> {
    let position = sequence.saturating_sub(1);
    let corrupt = |reason: String| EventLogError::Corrupt { position, reason };
    let mut event =
        pb::Event::decode(body).map_err(|e| corrupt(format!("not a podium.v1.Event: {e}")))?;
    event.position = position;
    event.recorded_at = Some(prost_types::Timestamp::from(stored));
    RecordedEvent::from_proto(event).map_err(corrupt)
}

/// The id a stored message was published with, read from its header without decoding it.
pub fn message_id(message: &StreamMessage) -> Option<Uuid> {
    message
        .headers
        .get(async_nats::header::NATS_MESSAGE_ID)
        .and_then(|v| Uuid::parse_str(v.as_str()).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stream_name_is_one_token_of_its_own() {
        assert_eq!(
            token("conference/odc2024/agenda"),
            "conference/odc2024/agenda"
        );
        assert_eq!(token("session/a.b:c"), "session/a%b:c");
        assert_ne!(token("a.b"), token("a_b"));
        assert_eq!(at_version("podium", "poll/x.1", 7), "podium.e.poll/x%1.7");
        assert_eq!(of_stream("podium", "poll/x.1"), "podium.e.poll/x%1.*");
        assert!(!token("a.b.c").contains('.'));
    }
}
