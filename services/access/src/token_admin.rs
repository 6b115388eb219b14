//! Managing tokens once issued: listing them, revoking one, rotating the signing key. The
//! `podium.v1.Access` methods in `grpc` call these.

use std::{sync::Arc, time::Duration};

use podium_eventlog::{EventLog, ExpectedVersion, NewEvent, Projector, RequestId};
use podium_proto::v1 as pb;
use tonic::Status;

use crate::{
    domain::{AccessError, ORGANISERS, Principal},
    register::{TokenRegister, timestamp, token_stream, unix_seconds},
    tokens::{MAX_TTL, TokenKeys},
};

/// The register, which podiumd attaches at start-up.
pub(crate) fn register(keys: &TokenKeys) -> Result<&Projector<TokenRegister>, Status> {
    keys.register().ok_or_else(|| {
        tracing::error!("the token register is not attached to the keys");
        Status::internal("internal error")
    })
}

/// Records a token just issued, so that `ListTokens` shows it and `RevokeToken` finds its
/// conference. Returns once the register has it.
pub(crate) async fn record_issued(
    log: &Arc<dyn EventLog>,
    keys: &TokenKeys,
    issuer: &Principal,
    issued: &Principal,
) -> Result<(), Status> {
    let token_id = issued.token_id.clone().unwrap_or_default();
    let event = pb::TokenIssued {
        token_id,
        role: crate::grpc::role_to_proto(issued.role) as i32,
        conference_id: issued.conference_id.clone().unwrap_or_default(),
        holder_id: issued.id.clone(),
        holder_name: issued.name.clone(),
        speaker_id: issued.speaker_id.clone().unwrap_or_default(),
        issued_by: issuer.id.clone(),
        issued_at: Some(std::time::SystemTime::now().into()),
        expires_at: issued.expires_at.map(Into::into),
        // Sealed by the log (a speaker's name is theirs to have erased).
        personal: None,
    };
    let outcome = log
        .append(
            &token_stream(issued.conference_id.as_deref()),
            ExpectedVersion::Any,
            vec![NewEvent::new(uuid::Uuid::now_v7(), &event)],
        )
        .await
        .map_err(Status::from)?;
    register(keys)?
        .wait_for(outcome.last_position)
        .await
        .map_err(Status::from)
}

pub(crate) fn list(
    keys: &TokenKeys,
    caller: &Principal,
    request: pb::ListTokensRequest,
) -> Result<pb::ListTokensResponse, Status> {
    let named = request.conference_id.trim();
    let conference = if !named.is_empty() {
        Some(named.to_owned())
    } else {
        caller.conference_id.clone()
    };
    match &conference {
        Some(conference) => caller.require(conference, ORGANISERS, "list tokens")?,
        None => caller.require_admin("list every conference's tokens")?,
    }
    let register = register(keys)?.read();
    let tokens = register
        .list(conference.as_deref())
        .into_iter()
        .map(|record| {
            let issued = &record.issued;
            pb::IssuedToken {
                token_id: issued.token_id.clone(),
                role: issued.role,
                conference_id: issued.conference_id.clone(),
                holder_id: issued.holder_id.clone(),
                holder_name: issued.holder_name.clone(),
                speaker_id: issued.speaker_id.clone(),
                issued_by: issued.issued_by.clone(),
                issued_at: timestamp(issued.issued_at),
                expires_at: timestamp(issued.expires_at),
                revoked_at: record
                    .revoked
                    .as_ref()
                    .and_then(|r| timestamp(r.revoked_at)),
                revoked_by: record
                    .revoked
                    .as_ref()
                    .map(|r| r.revoked_by.clone())
                    .unwrap_or_default(),
                last_seen: keys.last_seen(&issued.token_id).map(Into::into),
            }
        })
        .collect();
    Ok(pb::ListTokensResponse { tokens })
}

pub(crate) async fn revoke(
    log: &Arc<dyn EventLog>,
    keys: &TokenKeys,
    caller: &Principal,
    request: pb::RevokeTokenRequest,
) -> Result<pb::RevokeTokenResponse, Status> {
    const ID: podium_text::Limit = podium_text::Limit::line(100);
    let token_id =
        podium_text::clean("token_id", &request.token_id, &ID).map_err(AccessError::from)?;
    let reason = revocation_reason(&request.reason)?;
    let named = request.conference_id.trim();
    let register = register(keys)?;
    // The token's conference: the register's record; for a token podium has no record of (an
    // attendee's), the one named, else the caller's.
    let not_found = || AccessError::NotFound(format!("no token {token_id} found"));
    let conference = match register.read().get(&token_id) {
        Some(record) => {
            let own = &record.issued.conference_id;
            if !named.is_empty() && named != own {
                return Err(not_found().into());
            }
            (!own.is_empty()).then(|| own.clone())
        }
        None => {
            let conference = match named {
                "" => caller.conference_id.clone(),
                named => Some(named.to_owned()),
            };
            if !crate::is_attendee_id(&token_id) || conference.is_none() {
                return Err(AccessError::NotFound(format!(
                    "no token {token_id} found: give an id from `podium token list`, or an \
                     attendee's id with their conference"
                ))
                .into());
            }
            conference
        }
    };
    // Another conference's token is not found, as if it did not exist.
    match &conference {
        Some(conference) => caller
            .require(conference, ORGANISERS, "revoke tokens")
            .map_err(|e| match e {
                AccessError::NotFound(_) => not_found(),
                other => other,
            })?,
        None => caller.require_admin("revoke admin tokens")?,
    }
    record_revocation(
        log,
        keys,
        conference.as_deref(),
        &token_id,
        &caller.id,
        reason,
    )
    .await
}

/// A revocation's reason, as said: one line of at most 200 characters, cleaned under podium's
/// text policy; may be empty.
pub fn revocation_reason(reason: &str) -> Result<String, AccessError> {
    const REASON: podium_text::Limit = podium_text::Limit::line(200).optional();
    Ok(podium_text::clean("reason", reason, &REASON)?)
}

/// Records that the token `token_id` of `conference_id` (None: an admin token) is revoked, by
/// the principal `by`, once the caller has checked that they may. Answers after the register
/// has the revocation, so that every request and open stream from then on sees it; a token
/// already revoked is answered with its first revocation, and nothing is written.
pub async fn record_revocation(
    log: &Arc<dyn EventLog>,
    keys: &TokenKeys,
    conference_id: Option<&str>,
    token_id: &str,
    by: &str,
    reason: String,
) -> Result<pb::RevokeTokenResponse, Status> {
    let register = register(keys)?;
    if let Some(revocation) = register.read().revocation(conference_id, token_id) {
        return Ok(pb::RevokeTokenResponse {
            already_revoked: true,
            revoked_at: timestamp(revocation.revoked_at),
        });
    }
    let now = std::time::SystemTime::now();
    let event = pb::TokenRevoked {
        token_id: token_id.to_owned(),
        conference_id: conference_id.unwrap_or_default().to_owned(),
        revoked_by: by.to_owned(),
        reason,
        revoked_at: timestamp(unix_seconds(now)),
    };
    // One id per (conference, token): two revocations at once write one event.
    let id = uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_OID,
        format!(
            "podium/token-revoked/{}/{token_id}",
            conference_id.unwrap_or_default()
        )
        .as_bytes(),
    );
    let outcome = log
        .append(
            &token_stream(conference_id),
            ExpectedVersion::Any,
            vec![NewEvent::new(id, &event)],
        )
        .await
        .map_err(Status::from)?;
    register
        .wait_for(outcome.last_position)
        .await
        .map_err(Status::from)?;
    tracing::info!(
        conference = conference_id.unwrap_or("*"),
        token = %token_id,
        by = %by,
        "token revoked"
    );
    let revoked_at = register
        .read()
        .revocation(conference_id, token_id)
        .and_then(|r| timestamp(r.revoked_at));
    Ok(pb::RevokeTokenResponse {
        already_revoked: outcome.deduplicated,
        revoked_at,
    })
}

pub(crate) async fn rotate(
    keys: &Arc<TokenKeys>,
    caller: &Principal,
    request: pb::RotateSigningKeyRequest,
) -> Result<pb::RotateSigningKeyResponse, Status> {
    caller.require_admin("rotate the signing key")?;
    let grace = Duration::from_secs(request.grace_seconds);
    if grace > MAX_TTL {
        return Err(AccessError::InvalidArgument {
            field: "grace_seconds",
            message: format!("must be at most {} (400 days)", MAX_TTL.as_secs()),
        }
        .into());
    }
    // No id, no retry to recognise: such a rotation is never taken for another's retry.
    let request = match request.request_id.trim() {
        "" => None,
        _ => Some(RequestId::parse("request_id", &request.request_id)?.uuid()),
    };
    let (rotation, rotated) = keys.rotate_everywhere(grace, request).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::WouldBlock {
            return Status::aborted(e.to_string());
        }
        tracing::error!(error = %e, "rotating the signing key failed");
        Status::internal("could not write the new signing key")
    })?;
    if rotated {
        tracing::info!(
            key = %rotation.key_id,
            retired = %rotation.retired_key_id,
            grace_seconds = grace.as_secs(),
            by = %caller.id,
            "signing key rotated"
        );
    } else {
        tracing::info!(
            key = %rotation.key_id,
            by = %caller.id,
            "signing key rotation retried: answered as the first time, nothing rotated"
        );
    }
    Ok(pb::RotateSigningKeyResponse {
        key_id: rotation.key_id,
        retired_key_id: rotation.retired_key_id,
        retired_until: Some(rotation.retired_until.into()),
    })
}
