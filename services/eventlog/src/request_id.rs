//! Request ids: how a client makes a write safe to retry.
//!
//! The log's idempotency rule is that an event id is written once in the whole log, for ever:
//! again to the same stream it is a retry, answered with the first outcome; to another stream
//! it is refused (`EventLogError::ReusedId`). A write RPC carries a client-chosen UUID; the service stores its event under that id
//! (or under ids derived from it), so a retried request is answered with the first one's
//! outcome. Ids of the things a write creates are derived from it too ([`RequestId::derive_id`]),
//! so a retried create names the same thing.

use std::fmt;

use podium_proto::{ServiceError, ServiceErrorCode};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// A client's request id (or a fresh one when it sent none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestId(Uuid);

/// A request id that is not a UUID; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: must be a UUID")]
pub struct InvalidRequestId {
    pub field: &'static str,
}

impl ServiceError for InvalidRequestId {
    fn error_code(&self) -> ServiceErrorCode {
        ServiceErrorCode::InvalidArgument
    }
}

podium_proto::service_error_status!(InvalidRequestId);

impl RequestId {
    /// The id in `text` (surrounding spaces ignored); a fresh one when `text` is empty, in
    /// which case a retry is not recognised, so clients should always send one.
    pub fn parse_or_new(field: &'static str, text: &str) -> Result<Self, InvalidRequestId> {
        match text.trim() {
            "" => Ok(Self(Uuid::now_v7())),
            text => Self::parse(field, text),
        }
    }

    /// The id in `text`, which must be a UUID (for ids a client must always send, such as a
    /// ballot's).
    pub fn parse(field: &'static str, text: &str) -> Result<Self, InvalidRequestId> {
        Uuid::parse_str(text.trim())
            .map(Self)
            .map_err(|_| InvalidRequestId { field })
    }

    pub fn uuid(self) -> Uuid {
        self.0
    }

    /// A stable short id for what this request creates: `prefix` + `-` + 10 hex digits of the
    /// SHA-256 of the request id.
    pub fn derive_id(self, prefix: &str) -> String {
        let digest = Sha256::digest(self.0.as_bytes());
        format!("{prefix}-{}", hex::encode(&digest[..5]))
    }
}

impl From<Uuid> for RequestId {
    fn from(id: Uuid) -> Self {
        Self(id)
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_trims_refuses_and_derives_stable_ids() {
        let text = " 6f1c3b1e-8f0e-4c8e-9a55-2b7d0c3f4a10 ";
        let id = RequestId::parse_or_new("request_id", text).unwrap();
        assert_eq!(id, RequestId::parse("request_id", text).unwrap());
        assert_eq!(id.derive_id("ses"), id.derive_id("ses"));
        assert!(id.derive_id("ses").starts_with("ses-"));
        assert_eq!(id.derive_id("ses").len(), "ses-".len() + 10);
        let e = RequestId::parse_or_new("ballot_id", "nope").unwrap_err();
        assert_eq!(e.to_string(), "ballot_id: must be a UUID");
        assert!(RequestId::parse("ballot_id", "").is_err());
        assert_ne!(
            RequestId::parse_or_new("request_id", "").unwrap(),
            RequestId::parse_or_new("request_id", "  ").unwrap()
        );
    }
}
