//! The register of tokens: those issued with `IssueToken` (for `ListTokens`) and every revoked
//! token id (for the check on every request). A read model of the `TokenIssued` and
//! `TokenRevoked` events, so that every node refuses a revoked token, also after a restart.
//!
//! A revocation is keyed by the token's conference and id: an organiser can revoke only their
//! own conference's tokens, even by guessing another conference's attendee id.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use podium_eventlog::{
    Projection, RecordedEvent,
    personal::{self, PersonKind},
    snapshot::{self, Snapshot, SnapshotError},
};
use podium_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// The stream a token's events go to: `tokens/conference/<id>`, or `tokens/admin`.
pub fn token_stream(conference_id: Option<&str>) -> String {
    match conference_id {
        Some(conference) => format!("tokens/conference/{conference}"),
        None => "tokens/admin".into(),
    }
}

/// The event types this read model folds.
pub fn register_event_types() -> Vec<String> {
    use prost::Name;
    vec![
        pb::TokenIssued::full_name(),
        pb::TokenRevoked::full_name(),
        pb::PersonErased::full_name(),
    ]
}

/// A token as issued, and its revocation if any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub issued: IssuedRecord,
    pub revoked: Option<Revocation>,
}

/// What `TokenIssued` says, times in whole seconds since the epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedRecord {
    pub token_id: String,
    pub role: i32,
    pub conference_id: String,
    pub holder_id: String,
    pub holder_name: String,
    pub speaker_id: String,
    pub issued_by: String,
    pub issued_at: u64,
    pub expires_at: u64,
}

/// Who revoked a token, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    pub revoked_by: String,
    pub revoked_at: u64,
}

/// Issued tokens by id, revoked ids by conference.
#[derive(Debug, Serialize, Deserialize)]
pub struct TokenRegister {
    issued: BTreeMap<String, TokenRecord>,
    /// Revocations of tokens not in `issued` (attendees', older tokens'), by conference id
    /// ("" for admin tokens) and token id: looked up by `&str`, without allocating.
    unrecorded: BTreeMap<String, BTreeMap<String, Revocation>>,
    /// Counts revocations, so that open streams re-check their token only when one happens.
    #[serde(skip, default = "revision")]
    revision: Arc<watch::Sender<u64>>,
}

fn revision() -> Arc<watch::Sender<u64>> {
    Arc::new(watch::Sender::new(0))
}

impl Default for TokenRegister {
    fn default() -> Self {
        Self {
            issued: BTreeMap::new(),
            unrecorded: BTreeMap::new(),
            revision: revision(),
        }
    }
}

impl TokenRegister {
    /// True when the token `token_id` of `conference_id` (None for admin) has been revoked.
    pub fn is_revoked(&self, conference_id: Option<&str>, token_id: &str) -> bool {
        self.revocation(conference_id, token_id).is_some()
    }

    /// Changes whenever a token is revoked.
    pub fn revisions(&self) -> watch::Receiver<u64> {
        self.revision.subscribe()
    }

    /// An issued token by id.
    pub fn get(&self, token_id: &str) -> Option<&TokenRecord> {
        self.issued.get(token_id)
    }

    /// The revocation of a token, whether it was recorded as issued or not.
    pub fn revocation(&self, conference_id: Option<&str>, token_id: &str) -> Option<&Revocation> {
        let conference_id = conference_id.unwrap_or_default();
        let recorded = self
            .issued
            .get(token_id)
            .filter(|record| record.issued.conference_id == conference_id)
            .and_then(|record| record.revoked.as_ref());
        recorded.or_else(|| self.unrecorded.get(conference_id)?.get(token_id))
    }

    /// Issued tokens, newest first, of one conference (`Some("")` for admin tokens) or all.
    pub fn list(&self, conference_id: Option<&str>) -> Vec<&TokenRecord> {
        let mut tokens: Vec<&TokenRecord> = self
            .issued
            .values()
            .filter(|r| conference_id.is_none_or(|c| r.issued.conference_id == c))
            .collect();
        tokens.sort_by(|a, b| {
            (b.issued.issued_at, &b.issued.token_id).cmp(&(a.issued.issued_at, &a.issued.token_id))
        });
        tokens
    }
}

/// Whole seconds since the epoch of a protobuf timestamp; 0 when unset.
pub(crate) fn seconds(timestamp: Option<&prost_types::Timestamp>) -> u64 {
    timestamp.map_or(0, |t| u64::try_from(t.seconds).unwrap_or(0))
}

/// A protobuf timestamp of whole seconds since the epoch; unset for 0.
pub(crate) fn timestamp(seconds: u64) -> Option<prost_types::Timestamp> {
    (seconds > 0).then(|| (UNIX_EPOCH + Duration::from_secs(seconds)).into())
}

/// Whole seconds since the epoch.
pub(crate) fn unix_seconds(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Projection for TokenRegister {
    fn apply(&mut self, event: &RecordedEvent) {
        if event.is::<pb::PersonErased>() {
            // A speaker's name on their tokens, opened before their key was destroyed, goes.
            if let Some(p) = personal::erased(event, PersonKind::Speaker) {
                for record in self.issued.values_mut() {
                    let issued = &mut record.issued;
                    if issued.conference_id == p.conference_id && issued.speaker_id == p.person_id {
                        issued.holder_name = personal::ERASED.to_owned();
                    }
                }
            }
        } else if event.is::<pb::TokenIssued>() {
            match event.decode::<pb::TokenIssued>() {
                Ok(t) => {
                    let record = IssuedRecord {
                        issued_at: seconds(t.issued_at.as_ref()),
                        expires_at: seconds(t.expires_at.as_ref()),
                        token_id: t.token_id,
                        role: t.role,
                        conference_id: t.conference_id,
                        holder_id: t.holder_id,
                        holder_name: t.holder_name,
                        speaker_id: t.speaker_id,
                        issued_by: t.issued_by,
                    };
                    self.issued
                        .entry(record.token_id.clone())
                        .or_insert(TokenRecord {
                            issued: record,
                            revoked: None,
                        });
                }
                Err(error) => tracing::error!(%error, "skipping undecodable event"),
            }
        } else if event.is::<pb::TokenRevoked>() {
            match event.decode::<pb::TokenRevoked>() {
                Ok(t) => {
                    let revocation = Revocation {
                        revoked_by: t.revoked_by,
                        revoked_at: seconds(t.revoked_at.as_ref()),
                    };
                    let newly = match self.issued.get_mut(&t.token_id) {
                        Some(record) if record.issued.conference_id == t.conference_id => {
                            let newly = record.revoked.is_none();
                            record.revoked.get_or_insert(revocation);
                            newly
                        }
                        _ => {
                            let tokens = self.unrecorded.entry(t.conference_id).or_default();
                            let newly = !tokens.contains_key(&t.token_id);
                            tokens.entry(t.token_id).or_insert(revocation);
                            newly
                        }
                    };
                    if newly {
                        self.revision.send_modify(|n| *n += 1);
                    }
                }
                Err(error) => tracing::error!(%error, "skipping undecodable event"),
            }
        }
    }
}

impl Snapshot for TokenRegister {
    // 2: revoked ids are no longer kept apart from their revocations.
    const VERSION: u32 = 2;

    fn save(&self) -> Result<Vec<u8>, SnapshotError> {
        snapshot::encode(self)
    }

    fn restore(&mut self, bytes: &[u8]) -> Result<(), SnapshotError> {
        let restored: TokenRegister = snapshot::decode(bytes)?;
        // The revision channel is kept: streams may already watch it.
        self.issued = restored.issued;
        self.unrecorded = restored.unrecorded;
        self.revision.send_modify(|n| *n += 1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded<M: prost::Message + prost::Name>(position: u64, message: &M) -> RecordedEvent {
        RecordedEvent {
            id: uuid::Uuid::now_v7(),
            stream: "tokens/test".into(),
            stream_version: position,
            position,
            event_type: M::full_name(),
            payload: message.encode_to_vec(),
            recorded_at: SystemTime::now(),
        }
    }

    fn revoked(conference: &str, token: &str) -> pb::TokenRevoked {
        pb::TokenRevoked {
            token_id: token.into(),
            conference_id: conference.into(),
            revoked_by: "org-1".into(),
            reason: String::new(),
            revoked_at: timestamp(1_800_000_000),
        }
    }

    #[test]
    fn a_revocation_is_scoped_to_its_conference_and_counted_once() {
        let mut register = TokenRegister::default();
        let revisions = register.revisions();
        register.apply(&recorded(
            0,
            &pb::TokenIssued {
                token_id: "tok-1".into(),
                role: pb::Role::Moderator as i32,
                conference_id: "odc".into(),
                holder_id: "mod-1".into(),
                holder_name: "Dara".into(),
                issued_at: timestamp(1_700_000_000),
                ..Default::default()
            },
        ));
        assert!(!register.is_revoked(Some("odc"), "tok-1"));

        // Another conference's organiser naming this id revokes nothing of odc's.
        register.apply(&recorded(1, &revoked("other", "tok-1")));
        assert!(!register.is_revoked(Some("odc"), "tok-1"));
        assert!(register.get("tok-1").unwrap().revoked.is_none());
        assert!(register.is_revoked(Some("other"), "tok-1"));

        register.apply(&recorded(2, &revoked("odc", "tok-1")));
        register.apply(&recorded(3, &revoked("odc", "tok-1")));
        assert!(register.is_revoked(Some("odc"), "tok-1"));
        assert!(!register.is_revoked(None, "tok-1"));
        assert_eq!(
            register
                .revocation(Some("odc"), "tok-1")
                .unwrap()
                .revoked_by,
            "org-1"
        );
        assert_eq!(*revisions.borrow(), 2, "two revocations, one repeated");

        // An attendee's token, never recorded as issued.
        register.apply(&recorded(4, &revoked("odc", "att-9")));
        assert!(register.is_revoked(Some("odc"), "att-9"));
        assert!(register.revocation(Some("odc"), "att-9").is_some());
        assert_eq!(register.list(Some("odc")).len(), 1);
    }

    #[test]
    fn a_snapshot_keeps_revocations_and_the_revision_channel() {
        let mut register = TokenRegister::default();
        register.apply(&recorded(0, &revoked("odc", "att-9")));
        let bytes = register.save().unwrap();
        let mut restored = TokenRegister::default();
        let revisions = restored.revisions();
        restored.restore(&bytes).unwrap();
        assert!(restored.is_revoked(Some("odc"), "att-9"));
        assert!(revisions.has_changed().unwrap());
    }
}
