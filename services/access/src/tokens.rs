//! Signed bearer tokens (JWT, HMAC-SHA256), their revocation and the key and admin-token
//! bootstrap.
//!
//! The signing keys live in the data directory ([`crate::keyring`]), created on first start
//! with mode 0600. The admin token is either set by configuration (a literal secret compared in
//! constant time) or issued on first start into `<data dir>/admin.token`, mode 0600; its path is
//! logged, never the token. Every file is written durably (`podium_eventlog::durable`) before
//! use.
//!
//! Every token carries an id (`jti`) and names its key (`kid`). Once the token register is
//! attached ([`TokenKeys::watch_revocations`]), a revoked id is refused like a bad signature.

use std::{
    collections::HashMap,
    fs,
    path::{Path, PathBuf},
    sync::{Arc, Mutex, OnceLock, RwLock},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use jsonwebtoken::{Algorithm, Header, Validation, errors::ErrorKind};
use podium_eventlog::{
    Projector, SharedSecrets,
    durable::{self, write_private},
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use uuid::Uuid;

use crate::{
    domain::{AccessError, Principal, Role},
    keyring::{Keyring, Lookup, Rotating, SigningKey},
    register::TokenRegister,
};

/// Default lifetime of an issued token.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// Longest lifetime an issued token may ask for.
pub const MAX_TTL: Duration = Duration::from_secs(400 * 24 * 3600);
/// Lifetime of the generated admin token.
const ADMIN_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
const ISSUER: &str = "podium";
/// The generated admin token's file in the data directory.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    name: String,
    role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    conf: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    spk: Option<String>,
    /// The token's id; absent from tokens issued before tokens had ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jti: Option<String>,
    iat: u64,
    exp: u64,
}

/// Issues and verifies tokens with the server's keys.
pub struct TokenKeys {
    ring: RwLock<Keyring>,
    /// The data directory the keys (and the generated admin token) live in; None for keys
    /// made from a secret in memory.
    dir: Option<PathBuf>,
    validation: Validation,
    /// The admin secret from configuration, if any.
    configured_admin: Option<String>,
    register: OnceLock<Projector<TokenRegister>>,
    /// When this node last accepted each token id.
    seen: Mutex<HashMap<String, SystemTime>>,
    /// One rotation at a time; held across the key files' writes, while `ring` is not.
    rotating: Mutex<()>,
    /// Counts rotations, so that open streams re-check their token's key.
    rotations: watch::Sender<u64>,
    /// On a cluster: where the ring lives, shared by every node ([`shared`]).
    shared: Option<Arc<SharedSecrets>>,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys").finish_non_exhaustive()
    }
}

/// What [`TokenKeys::bootstrap`] did, for the start-up log.
#[derive(Debug)]
pub struct Bootstrap {
    pub keys: TokenKeys,
    /// Where the generated admin token was written, when one was.
    pub admin_token_file: Option<PathBuf>,
}

/// What [`TokenKeys::rotate`] did.
pub use crate::keyring::Rotation;

impl TokenKeys {
    fn with_ring(ring: Keyring, dir: Option<PathBuf>, configured_admin: Option<String>) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.leeway = 0;
        Self {
            ring: RwLock::new(ring),
            dir,
            validation,
            configured_admin: configured_admin.filter(|s| !s.is_empty()),
            register: OnceLock::new(),
            seen: Mutex::new(HashMap::new()),
            rotating: Mutex::new(()),
            rotations: watch::Sender::new(0),
            shared: None,
        }
    }

    /// Keys from a raw secret (at least 32 bytes), kept in memory only.
    pub fn from_secret(secret: &[u8], configured_admin: Option<String>) -> Self {
        Self::with_ring(
            Keyring::new(SigningKey::from_secret(secret.to_vec())),
            None,
            configured_admin,
        )
    }

    /// Loads or creates the signing keys in `data_dir`; writes an admin token file unless an
    /// admin token is configured or a valid file is already there.
    pub fn bootstrap(
        data_dir: &Path,
        configured_admin: Option<String>,
    ) -> std::io::Result<Bootstrap> {
        durable::create_dir_all(data_dir)?;
        let (ring, new_key) = Keyring::load(data_dir, SystemTime::now())?;
        let keys = TokenKeys::with_ring(ring, Some(data_dir.to_owned()), configured_admin);
        keys.with_admin_token(data_dir, new_key)
    }

    /// Writes the admin token file into `data_dir` unless an admin token is configured or a
    /// valid one signed by the current key is already there (`new_key`: it cannot be).
    fn with_admin_token(self, data_dir: &Path, new_key: bool) -> std::io::Result<Bootstrap> {
        let keys = self;
        let token_path = data_dir.join(ADMIN_TOKEN_FILE);
        let mut admin_token_file = None;
        if keys.configured_admin.is_none() {
            // Signed by the current key: one signed by a retired key (a crash during a
            // rotation) would stop working when the key's grace ends.
            let usable = !new_key
                && fs::read_to_string(&token_path).ok().is_some_and(|t| {
                    keys.inspect(t.trim()).is_ok_and(|p| p.role == Role::Admin)
                        && keys.signed_by_current_key(t.trim())
                });
            if !usable {
                keys.write_admin_token(&token_path)?;
            }
            admin_token_file = Some(token_path);
        }
        Ok(Bootstrap {
            keys,
            admin_token_file,
        })
    }

    fn write_admin_token(&self, path: &Path) -> std::io::Result<()> {
        let token = self.issue(&Principal::admin(), ADMIN_TTL)?;
        write_private(path, format!("{token}\n").as_bytes())
    }

    /// From now on, refuse the tokens `register` names as revoked. Set once, at start-up.
    pub fn watch_revocations(&self, register: Projector<TokenRegister>) {
        if self.register.set(register).is_err() {
            tracing::warn!("the token register was attached twice; the first one is kept");
        }
    }

    /// The register of issued and revoked tokens, once attached.
    pub fn register(&self) -> Option<&Projector<TokenRegister>> {
        self.register.get()
    }

    /// When this node last accepted the token `token_id`.
    pub fn last_seen(&self, token_id: &str) -> Option<SystemTime> {
        self.seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(token_id)
            .copied()
    }

    /// Signs a token for `principal` valid for `ttl`. Its id is `principal.token_id`, or a
    /// new one.
    pub fn issue(&self, principal: &Principal, ttl: Duration) -> std::io::Result<String> {
        self.issue_at(principal, SystemTime::now(), ttl)
    }

    /// Signs a token as if issued at `issued_at`: for tools and tests that need a token that
    /// has already expired.
    pub fn issue_at(
        &self,
        principal: &Principal,
        issued_at: SystemTime,
        ttl: Duration,
    ) -> std::io::Result<String> {
        let now = issued_at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let claims = Claims {
            iss: ISSUER.into(),
            sub: principal.id.clone(),
            name: principal.name.clone(),
            role: principal.role.as_str().into(),
            conf: principal.conference_id.clone(),
            spk: principal.speaker_id.clone(),
            jti: Some(
                principal
                    .token_id
                    .clone()
                    .unwrap_or_else(|| new_token_id(principal.role)),
            ),
            iat: now,
            exp: now + ttl.as_secs(),
        };
        let ring = self.ring.read().unwrap_or_else(|p| p.into_inner());
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(ring.current.id.clone());
        jsonwebtoken::encode(&header, &claims, &ring.current.encoding)
            .map_err(std::io::Error::other)
    }

    /// The signing keys' files (the current key, then the retired ones) as the keys in use
    /// now, for a backup: taken between rotations, so the two always belong together, which
    /// reading the files while a rotation rewrites them would not promise.
    pub fn key_files(&self) -> [(&'static str, Vec<u8>); 2] {
        let _between_rotations = self.rotating.lock().unwrap_or_else(|p| p.into_inner());
        self.ring.read().unwrap_or_else(|p| p.into_inner()).files()
    }

    /// Replaces the signing key: tokens signed by the current one verify for `grace` more,
    /// then are refused. The generated admin token file, if podium keeps one, is signed again.
    /// Nothing changes unless the new keys are on disk.
    ///
    /// `request` is the rotation's request id: a rotation whose id this ring still remembers
    /// (the key it retired is still held) is not made again, its first answer is returned.
    /// With the answer comes whether this call rotated (`false`: it answered a retry).
    pub fn rotate(
        &self,
        grace: Duration,
        request: Option<Uuid>,
    ) -> std::io::Result<(Rotation, bool)> {
        let _one_at_a_time = self.rotating.lock().unwrap_or_else(|p| p.into_inner());
        let rotating = self
            .ring
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .rotation_for(grace, SystemTime::now(), request);
        let (next, rotation) = match rotating {
            Rotating::Answered(first) => return Ok((first, false)),
            Rotating::Next(next, rotation) => (next, rotation),
        };
        // Written before it is used, and without holding the lock every request reads.
        if let Some(dir) = &self.dir
            && self.shared.is_none()
        {
            next.save(dir)?;
        }
        *self.ring.write().unwrap_or_else(|p| p.into_inner()) = next;
        self.rotations.send_modify(|n| *n += 1);
        self.sign_admin_token_again();
        Ok((rotation, true))
    }

    /// After a rotation: the admin token file, signed by the new current key.
    fn sign_admin_token_again(&self) {
        if let Some(dir) = &self.dir
            && self.configured_admin.is_none()
        {
            // The rotation stands either way; a failure here is repaired at the next start,
            // which signs the file again since its key is no longer the current one.
            let path = dir.join(ADMIN_TOKEN_FILE);
            if let Err(error) = self.write_admin_token(&path) {
                tracing::error!(%error, path = %path.display(), "could not sign the admin token file again");
            }
        }
    }

    /// Changes whenever the signing key is rotated.
    pub fn rotations(&self) -> watch::Receiver<u64> {
        self.rotations.subscribe()
    }

    /// The first moment `token` no longer verifies on its own: the second after its expiry
    /// (expiry is checked in whole seconds), or the end of the grace of the key that signed it,
    /// whichever is first. None if it does not verify now, or never ends (the configured admin
    /// secret).
    pub fn valid_until(&self, token: &str) -> Option<SystemTime> {
        self.inspect_until(token).ok()?.1
    }

    /// [`inspect`](Self::inspect), and the token's [`valid_until`](Self::valid_until), from
    /// one verification.
    pub fn inspect_until(
        &self,
        token: &str,
    ) -> Result<(Principal, Option<SystemTime>), AccessError> {
        self.check(token, SystemTime::now(), false)
    }

    /// True when `token` names the current key in its header.
    fn signed_by_current_key(&self, token: &str) -> bool {
        let current = &self
            .ring
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .current
            .id;
        jsonwebtoken::decode_header(token).is_ok_and(|h| h.kid.as_ref() == Some(current))
    }

    /// Authenticates a bearer token, and notes it as seen (for `ListTokens`).
    pub fn verify(&self, token: &str) -> Result<Principal, AccessError> {
        Ok(self.check(token, SystemTime::now(), true)?.0)
    }

    /// Verifies a token without noting it as seen: for podium's own looks at a token (the one
    /// it has just issued, or an open stream's, again).
    pub fn inspect(&self, token: &str) -> Result<Principal, AccessError> {
        Ok(self.check(token, SystemTime::now(), false)?.0)
    }

    #[cfg(test)]
    fn verify_at(&self, token: &str, now: SystemTime) -> Result<Principal, AccessError> {
        Ok(self.check(token, now, false)?.0)
    }

    /// Verification, with the time that retired keys' grace periods are measured against;
    /// also the token's end (see [`valid_until`](Self::valid_until)).
    fn check(
        &self,
        token: &str,
        now: SystemTime,
        seen: bool,
    ) -> Result<(Principal, Option<SystemTime>), AccessError> {
        if let Some(admin) = &self.configured_admin
            && constant_time_eq(admin.as_bytes(), token.as_bytes())
        {
            return Ok((Principal::admin(), None));
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| AccessError::Unauthenticated("token is malformed".into()))?;
        let (claims, grace) = {
            let ring = self.ring.read().unwrap_or_else(|p| p.into_inner());
            let mut outcome = Err(ErrorKind::InvalidSignature.into());
            let mut grace = None;
            for candidate in ring.lookup(header.kid.as_deref(), now) {
                let key = match candidate {
                    Lookup::Usable(key, until) => {
                        grace = until;
                        key
                    }
                    Lookup::Retired => {
                        return Err(AccessError::Unauthenticated(
                            "token was signed by a key that was rotated out, and its grace \
                             period has ended"
                                .into(),
                        ));
                    }
                    Lookup::Unknown => break,
                };
                outcome = jsonwebtoken::decode::<Claims>(token, &key.decoding, &self.validation);
                if !matches!(&outcome, Err(e) if *e.kind() == ErrorKind::InvalidSignature) {
                    break;
                }
            }
            let claims = outcome
                .map_err(|e: jsonwebtoken::errors::Error| {
                    AccessError::Unauthenticated(
                        match e.kind() {
                            ErrorKind::ExpiredSignature => "token has expired",
                            ErrorKind::InvalidSignature => "token signature is invalid",
                            ErrorKind::InvalidIssuer => "token was not issued by podium",
                            _ => "token is malformed",
                        }
                        .into(),
                    )
                })?
                .claims;
            (claims, grace)
        };
        let role = Role::parse(&claims.role)
            .ok_or_else(|| AccessError::Unauthenticated("token names an unknown role".into()))?;
        if role != Role::Admin && claims.conf.is_none() {
            return Err(AccessError::Unauthenticated(
                "token has no conference scope".into(),
            ));
        }
        // An attendee's token id is their id, also in tokens from before tokens had ids.
        let token_id = claims
            .jti
            .clone()
            .or_else(|| (role == Role::Attendee).then(|| claims.sub.clone()));
        if let Some(token_id) = &token_id {
            if let Some(register) = self.register.get()
                && register.read().is_revoked(claims.conf.as_deref(), token_id)
            {
                return Err(AccessError::Unauthenticated(
                    "token has been revoked".into(),
                ));
            }
            // Attendee tokens are not listed: no lock on the path of every ballot.
            if seen && role != Role::Attendee {
                let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
                match seen.get_mut(token_id) {
                    Some(at) => *at = now,
                    None => {
                        seen.insert(token_id.clone(), now);
                    }
                }
            }
        }
        let principal = Principal {
            id: claims.sub,
            name: claims.name,
            role,
            conference_id: claims.conf,
            speaker_id: claims.spk,
            expires_at: UNIX_EPOCH.checked_add(Duration::from_secs(claims.exp)),
            token_id,
        };
        let expiry = principal
            .expires_at
            .and_then(|at| at.checked_add(Duration::from_secs(1)));
        let until = match (expiry, grace) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Ok((principal, until))
    }
}

/// A fresh token id: "tok-" and 12 hex digits (admin tokens "adm-").
pub fn new_token_id(role: Role) -> String {
    short_id(if role == Role::Admin { "adm" } else { "tok" })
}

/// The prefix of an attendee's id (which is also their token's id).
const ATTENDEE_PREFIX: &str = "att";

/// A fresh attendee id.
pub(crate) fn new_attendee_id() -> String {
    short_id(ATTENDEE_PREFIX)
}

/// Whether `id` is an attendee's id ("att-" and 12 hex digits, as joining makes them).
pub fn is_attendee_id(id: &str) -> bool {
    id.strip_prefix(ATTENDEE_PREFIX)
        .is_some_and(|rest| rest.starts_with('-'))
}

/// A fresh id: `prefix`, "-" and 12 hex digits of a random UUID.
pub(crate) fn short_id(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &id[..12])
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests;

mod shared;
