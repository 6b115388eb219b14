//! The gRPC face of access: the interceptor that authenticates every call, the helper every
//! RPC uses to get its caller, and the `podium.v1.Access` service.

use std::{sync::Arc, time::Duration};

use podium_eventlog::{EventLog, Projector};
use podium_proto::{
    ServiceError, ServiceErrorCode,
    v1::{self as pb, access_server::Access},
};
use tonic::{Request, Response, Status, service::Interceptor};

use crate::{
    directory::Directory,
    domain::{AccessError, Principal, Role},
    limits::RateLimits,
    token_admin,
    tokens::{DEFAULT_TTL, MAX_TTL, TokenKeys, new_attendee_id, new_token_id, short_id},
};

impl ServiceError for AccessError {
    fn error_code(&self) -> ServiceErrorCode {
        match self {
            AccessError::Unauthenticated(_) => ServiceErrorCode::Unauthenticated,
            AccessError::PermissionDenied(_) => ServiceErrorCode::PermissionDenied,
            AccessError::NotFound(_) => ServiceErrorCode::NotFound,
            AccessError::FailedPrecondition(_) => ServiceErrorCode::FailedPrecondition,
            AccessError::InvalidArgument { .. } => ServiceErrorCode::InvalidArgument,
            // Logged with its cause by `into_status`; the client sees "internal error".
            AccessError::Internal(_) => ServiceErrorCode::Internal,
        }
    }
}

podium_proto::service_error_status!(AccessError);

/// Authenticates the bearer token of every request, if there is one, and puts the
/// [`Principal`] into the request's extensions. A request without a token passes (`Join` and
/// health checks need none); a request with a bad token is refused here.
#[derive(Clone, Debug)]
pub struct Authenticator {
    keys: Arc<TokenKeys>,
}

impl Authenticator {
    pub fn new(keys: Arc<TokenKeys>) -> Self {
        Self { keys }
    }
}

impl Interceptor for Authenticator {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let Some(value) = request.metadata().get("authorization") else {
            return Ok(request);
        };
        let value = value
            .to_str()
            .map_err(|_| Status::unauthenticated("authorization header is not ASCII"))?;
        let token = bearer_token(value)
            .ok_or_else(|| Status::unauthenticated("authorization must be \"Bearer <token>\""))?;
        let principal = self.keys.verify(token)?;
        request.extensions_mut().insert(principal);
        Ok(request)
    }
}

/// The token in an `authorization` header's value, `Bearer <token>`; None if it is not one.
pub fn bearer_token(value: &str) -> Option<&str> {
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
}

/// The caller of an RPC, or UNAUTHENTICATED.
pub fn caller<T>(request: &Request<T>) -> Result<Principal, Status> {
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| {
            Status::unauthenticated("missing bearer token: send \"authorization: Bearer <token>\"")
        })
}

pub fn role_to_proto(role: Role) -> pb::Role {
    match role {
        Role::Admin => pb::Role::Admin,
        Role::Organiser => pb::Role::Organiser,
        Role::Moderator => pb::Role::Moderator,
        Role::Integration => pb::Role::Integration,
        Role::Speaker => pb::Role::Speaker,
        Role::Attendee => pb::Role::Attendee,
    }
}

fn role_from_proto(role: i32) -> Result<Role, AccessError> {
    let invalid = || {
        AccessError::InvalidArgument { field: "role", message: "must be one of ROLE_ADMIN, ROLE_ORGANISER, ROLE_MODERATOR, ROLE_INTEGRATION, ROLE_SPEAKER".into() }
    };
    Ok(match pb::Role::try_from(role).map_err(|_| invalid())? {
        pb::Role::Unspecified => return Err(invalid()),
        pb::Role::Admin => Role::Admin,
        pb::Role::Organiser => Role::Organiser,
        pb::Role::Moderator => Role::Moderator,
        pb::Role::Integration => Role::Integration,
        pb::Role::Speaker => Role::Speaker,
        pb::Role::Attendee => Role::Attendee,
    })
}

pub fn principal_to_proto(p: &Principal) -> pb::Principal {
    pb::Principal {
        id: p.id.clone(),
        name: p.name.clone(),
        role: role_to_proto(p.role) as i32,
        conference_id: p.conference_id.clone().unwrap_or_default(),
        speaker_id: p.speaker_id.clone().unwrap_or_default(),
        expires_at: p.expires_at.map(prost_types::Timestamp::from),
        token_id: p.token_id.clone().unwrap_or_default(),
    }
}

/// The `podium.v1.Access` service.
pub struct AccessService {
    keys: Arc<TokenKeys>,
    directory: Projector<Directory>,
    /// Where issued and revoked tokens are recorded.
    log: Arc<dyn EventLog>,
    limits: Option<Arc<RateLimits>>,
    /// How long after a conference's last session its attendee tokens keep working.
    attendee_margin: Duration,
}

/// Default of [`AccessService::with_attendee_margin`]: a week, to rate the sessions and read
/// the results after the conference.
pub const ATTENDEE_MARGIN: Duration = Duration::from_secs(7 * 24 * 3600);

impl AccessService {
    /// `keys` must have the token register attached ([`TokenKeys::watch_revocations`]).
    pub fn new(
        keys: Arc<TokenKeys>,
        directory: Projector<Directory>,
        log: Arc<dyn EventLog>,
    ) -> Self {
        Self {
            keys,
            directory,
            log,
            limits: None,
            attendee_margin: ATTENDEE_MARGIN,
        }
    }

    /// Attendee tokens end this long after the conference's last session ends (podiumd's
    /// `--attendee-token-margin-hours`), or after 30 days if that is sooner.
    pub fn with_attendee_margin(mut self, margin: Duration) -> Self {
        self.attendee_margin = margin;
        self
    }

    /// How long an attendee token issued now for `conference_id` may live, or why none may.
    fn attendee_ttl(&self, conference_id: &str) -> Result<Duration, AccessError> {
        let Some(end) = self.directory.read().conference_end(conference_id) else {
            // Nothing scheduled yet: the default lifetime.
            return Ok(DEFAULT_TTL);
        };
        let Some(until) = end.checked_add(self.attendee_margin) else {
            return Ok(DEFAULT_TTL);
        };
        match until.duration_since(std::time::SystemTime::now()) {
            Ok(left) if !left.is_zero() => Ok(left.min(DEFAULT_TTL)),
            _ => Err(AccessError::FailedPrecondition(format!(
                "conference {conference_id} is over: attendees could join until {} hours after \
                 its last session",
                self.attendee_margin.as_secs() / 3600
            ))),
        }
    }

    /// Limits joins per client address (podiumd's `--rate-joins`); unlimited without.
    pub fn with_rate_limits(mut self, limits: Arc<RateLimits>) -> Self {
        self.limits = Some(limits);
        self
    }

    /// True when the directory knows the conference (and the speaker, if one is named).
    fn knows(&self, conference_id: &str, speaker_id: Option<&str>) -> bool {
        let directory = self.directory.read();
        directory.has_conference(conference_id)
            && speaker_id.is_none_or(|s| directory.has_speaker(conference_id, s))
    }

    /// On a miss, before answering NOT_FOUND: the agenda may have just written the conference,
    /// speaker or join code, and a client that got its answer must find them here too.
    async fn catch_up(&self) -> Result<(), Status> {
        self.directory.catch_up().await.map_err(Status::from)
    }

    fn sign(&self, principal: Principal, ttl: Duration) -> Result<String, Status> {
        self.keys.issue(&principal, ttl).map_err(|e| {
            tracing::error!(error = %e, "signing a token failed");
            Status::internal("could not sign token")
        })
    }
}

/// A token holder's name: one line of at most 100 characters, cleaned under podium's text
/// policy; `default` when left empty.
fn holder_name(field: &'static str, name: &str, default: &str) -> Result<String, AccessError> {
    const NAME: podium_text::Limit = podium_text::Limit::line(100).optional();
    let name = podium_text::clean(field, name, &NAME)?;
    Ok(if name.is_empty() {
        default.to_owned()
    } else {
        name
    })
}

#[tonic::async_trait]
impl Access for AccessService {
    async fn issue_token(
        &self,
        request: Request<pb::IssueTokenRequest>,
    ) -> Result<Response<pb::IssueTokenResponse>, Status> {
        let issuer = caller(&request)?;
        let req = request.into_inner();
        let role = role_from_proto(req.role)?;
        let ttl = match req.ttl_seconds {
            0 => DEFAULT_TTL,
            s if Duration::from_secs(s) > MAX_TTL => {
                return Err(AccessError::InvalidArgument {
                    field: "ttl_seconds",
                    message: format!("must be at most {} (400 days)", MAX_TTL.as_secs()),
                }
                .into());
            }
            s => Duration::from_secs(s),
        };
        let name = holder_name("name", &req.name, role.as_str())?;
        let principal = if role == Role::Admin {
            issuer.require_admin("issue admin tokens")?;
            Principal {
                id: short_id("admin"),
                name,
                token_id: Some(new_token_id(Role::Admin)),
                ..Principal::admin()
            }
        } else {
            let conference_id = req.conference_id.trim().to_owned();
            if conference_id.is_empty() {
                return Err(AccessError::InvalidArgument {
                    field: "conference_id",
                    message: format!("is required for a {role} token"),
                }
                .into());
            }
            issuer.require(
                &conference_id,
                &[Role::Admin, Role::Organiser],
                "issue tokens",
            )?;
            if role == Role::Attendee {
                return Err(AccessError::InvalidArgument {
                    field: "role",
                    message: "attendees get their token by joining with the join code".into(),
                }
                .into());
            }
            let speaker_id = (role == Role::Speaker).then(|| req.speaker_id.trim().to_owned());
            if !self.knows(&conference_id, speaker_id.as_deref()) {
                self.catch_up().await?;
            }
            {
                let directory = self.directory.read();
                if !directory.has_conference(&conference_id) {
                    return Err(AccessError::NotFound(format!(
                        "conference {conference_id} not found"
                    ))
                    .into());
                }
                match &speaker_id {
                    Some(s) if s.is_empty() => {
                        return Err(AccessError::InvalidArgument {
                            field: "speaker_id",
                            message: "is required for a speaker token".into(),
                        }
                        .into());
                    }
                    Some(s) if !directory.has_speaker(&conference_id, s) => {
                        return Err(AccessError::NotFound(format!("speaker {s} not found")).into());
                    }
                    _ => {}
                }
            }
            Principal {
                id: speaker_id
                    .clone()
                    .unwrap_or_else(|| short_id(role.as_str())),
                name,
                role,
                conference_id: Some(conference_id),
                speaker_id,
                expires_at: None,
                token_id: Some(new_token_id(role)),
            }
        };
        let token = self.sign(principal.clone(), ttl)?;
        let issued = self.keys.inspect(&token)?;
        // Recorded before it is handed out: a token podium gave is always listed.
        token_admin::record_issued(&self.log, &self.keys, &issuer, &issued).await?;
        tracing::info!(conference = issued.conference_id.as_deref().unwrap_or("*"), issuer = %issuer.id, role = %issued.role, principal = %issued.id, "token issued");
        Ok(Response::new(pb::IssueTokenResponse {
            token,
            principal: Some(principal_to_proto(&issued)),
        }))
    }

    async fn join(
        &self,
        request: Request<pb::JoinRequest>,
    ) -> Result<Response<pb::JoinResponse>, Status> {
        // No principal yet: the TCP peer's address, never a header, is the key.
        if let Some(limits) = &self.limits {
            limits.check_join(request.remote_addr())?;
        }
        let req = request.into_inner();
        if req.join_code.trim().is_empty() {
            return Err(AccessError::InvalidArgument {
                field: "join_code",
                message: "is required".into(),
            }
            .into());
        }
        let name = holder_name("display_name", &req.display_name, "attendee")?;
        if self
            .directory
            .read()
            .conference_for_code(&req.join_code)
            .is_none()
        {
            self.catch_up().await?;
        }
        let conference_id = self
            .directory
            .read()
            .conference_for_code(&req.join_code)
            .map(str::to_owned)
            .ok_or_else(|| AccessError::NotFound("no conference has this join code".into()))?;
        let id = new_attendee_id();
        let principal = Principal {
            // An attendee's token id is their id (which moderators never see: they revoke the
            // author of a question): revoking it is revoking them.
            token_id: Some(id.clone()),
            id,
            name,
            role: Role::Attendee,
            conference_id: Some(conference_id),
            speaker_id: None,
            expires_at: None,
        };
        let ttl = self.attendee_ttl(principal.conference_id.as_deref().unwrap_or_default())?;
        let token = self.sign(principal, ttl)?;
        let joined = self.keys.inspect(&token)?;
        tracing::info!(attendee = %joined.id, conference = ?joined.conference_id, "attendee joined");
        Ok(Response::new(pb::JoinResponse {
            token,
            principal: Some(principal_to_proto(&joined)),
        }))
    }

    async fn who_am_i(
        &self,
        request: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::WhoAmIResponse>, Status> {
        let principal = caller(&request)?;
        Ok(Response::new(pb::WhoAmIResponse {
            principal: Some(principal_to_proto(&principal)),
        }))
    }

    async fn list_tokens(
        &self,
        request: Request<pb::ListTokensRequest>,
    ) -> Result<Response<pb::ListTokensResponse>, Status> {
        let caller = caller(&request)?;
        token_admin::list(&self.keys, &caller, request.into_inner()).map(Response::new)
    }

    async fn revoke_token(
        &self,
        request: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::RevokeTokenResponse>, Status> {
        let caller = caller(&request)?;
        token_admin::revoke(&self.log, &self.keys, &caller, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn rotate_signing_key(
        &self,
        request: Request<pb::RotateSigningKeyRequest>,
    ) -> Result<Response<pb::RotateSigningKeyResponse>, Status> {
        let caller = caller(&request)?;
        token_admin::rotate(&self.keys, &caller, request.into_inner())
            .await
            .map(Response::new)
    }
}
