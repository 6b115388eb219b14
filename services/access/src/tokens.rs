//! Signed bearer tokens (JWT, HMAC-SHA256) and the key and admin-token bootstrap.
//!
//! The signing key lives in `<data dir>/token-signing.key`, created on first start with mode
//! 0600. The admin token is either set by configuration (a literal secret compared in constant
//! time) or issued on first start into `<data dir>/admin.token`, mode 0600; its path is logged,
//! never the token. Both files are written durably (`podium_eventlog::durable`) before use.

use std::{
    fs,
    path::{Path, PathBuf},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use podium_eventlog::durable::{self, write_private};
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::domain::{AccessError, Principal, Role};

/// Default lifetime of an issued token.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30 * 24 * 3600);
/// Longest lifetime an issued token may ask for.
pub const MAX_TTL: Duration = Duration::from_secs(400 * 24 * 3600);
/// Lifetime of the generated admin token.
const ADMIN_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
const ISSUER: &str = "podium";

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
    iat: u64,
    exp: u64,
}

/// Issues and verifies tokens with one server key.
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    /// The admin secret from configuration, if any.
    configured_admin: Option<String>,
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

impl TokenKeys {
    /// Keys from a raw secret (at least 32 bytes).
    pub fn from_secret(secret: &[u8], configured_admin: Option<String>) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        validation.leeway = 0;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            configured_admin: configured_admin.filter(|s| !s.is_empty()),
        }
    }

    /// Loads or creates the signing key in `data_dir`; writes an admin token file unless an
    /// admin token is configured or a valid file is already there.
    pub fn bootstrap(
        data_dir: &Path,
        configured_admin: Option<String>,
    ) -> std::io::Result<Bootstrap> {
        durable::create_dir_all(data_dir)?;
        let key_path = data_dir.join("token-signing.key");
        let (secret, new_key) = match fs::read(&key_path) {
            Ok(secret) if secret.len() >= 32 => (secret, false),
            Ok(_) => {
                return Err(std::io::Error::other(format!(
                    "{} is shorter than 32 bytes; remove it to generate a new key",
                    key_path.display()
                )));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut secret = vec![0u8; 32];
                rand::rng().fill_bytes(&mut secret);
                write_private(&key_path, &secret)?;
                (secret, true)
            }
            Err(e) => return Err(e),
        };
        let keys = TokenKeys::from_secret(&secret, configured_admin);
        let token_path = data_dir.join("admin.token");
        let mut admin_token_file = None;
        if keys.configured_admin.is_none() {
            let usable = !new_key
                && fs::read_to_string(&token_path)
                    .ok()
                    .is_some_and(|t| keys.verify(t.trim()).is_ok_and(|p| p.role == Role::Admin));
            if !usable {
                let token = keys.issue(&Principal::admin(), ADMIN_TTL)?;
                write_private(&token_path, format!("{token}\n").as_bytes())?;
            }
            admin_token_file = Some(token_path);
        }
        Ok(Bootstrap {
            keys,
            admin_token_file,
        })
    }

    /// Signs a token for `principal` valid for `ttl`.
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
            iat: now,
            exp: now + ttl.as_secs(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(std::io::Error::other)
    }

    /// Authenticates a bearer token.
    pub fn verify(&self, token: &str) -> Result<Principal, AccessError> {
        if let Some(admin) = &self.configured_admin
            && constant_time_eq(admin.as_bytes(), token.as_bytes())
        {
            return Ok(Principal::admin());
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| {
                AccessError::Unauthenticated(
                    match e.kind() {
                        ErrorKind::ExpiredSignature => "token has expired",
                        ErrorKind::InvalidSignature => "token signature is invalid",
                        ErrorKind::InvalidIssuer => "token was not issued by podium",
                        _ => "token is malformed",
                    }
                    .into(),
                )
            })?;
        let claims = data.claims;
        let role = Role::parse(&claims.role)
            .ok_or_else(|| AccessError::Unauthenticated("token names an unknown role".into()))?;
        if role != Role::Admin && claims.conf.is_none() {
            return Err(AccessError::Unauthenticated(
                "token has no conference scope".into(),
            ));
        }
        Ok(Principal {
            id: claims.sub,
            name: claims.name,
            role,
            conference_id: claims.conf,
            speaker_id: claims.spk,
            expires_at: Some(UNIX_EPOCH + Duration::from_secs(claims.exp)),
        })
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn organiser() -> Principal {
        Principal {
            id: "tok-1".into(),
            name: "Sophea".into(),
            role: Role::Organiser,
            conference_id: Some("odc2024".into()),
            speaker_id: None,
            expires_at: None,
        }
    }

    #[test]
    fn issued_token_verifies_to_the_same_principal() {
        let keys = TokenKeys::from_secret(&[7u8; 32], None);
        let token = keys.issue(&organiser(), DEFAULT_TTL).unwrap();
        let back = keys.verify(&token).unwrap();
        assert_eq!(back.id, "tok-1");
        assert_eq!(back.role, Role::Organiser);
        assert_eq!(back.conference_id.as_deref(), Some("odc2024"));
    }

    #[test]
    fn tampered_expired_and_foreign_tokens_are_rejected() {
        let keys = TokenKeys::from_secret(&[7u8; 32], None);
        let token = keys.issue(&organiser(), DEFAULT_TTL).unwrap();
        let mut tampered = token.clone().into_bytes();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        let err = keys
            .verify(&String::from_utf8(tampered).unwrap())
            .unwrap_err();
        assert!(matches!(err, AccessError::Unauthenticated(_)));

        let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
        let expired = keys
            .issue_at(&organiser(), an_hour_ago, Duration::from_secs(60))
            .unwrap();
        assert_eq!(
            keys.verify(&expired).unwrap_err(),
            AccessError::Unauthenticated("token has expired".into())
        );

        let other = TokenKeys::from_secret(&[8u8; 32], None);
        assert_eq!(
            other.verify(&token).unwrap_err(),
            AccessError::Unauthenticated("token signature is invalid".into())
        );
        assert_eq!(
            keys.verify("not a token").unwrap_err(),
            AccessError::Unauthenticated("token is malformed".into())
        );
    }

    #[test]
    fn configured_admin_secret_is_admin() {
        let keys = TokenKeys::from_secret(&[7u8; 32], Some("s3cret-admin".into()));
        assert_eq!(keys.verify("s3cret-admin").unwrap().role, Role::Admin);
        assert!(keys.verify("s3cret-admix").is_err());
    }

    #[test]
    fn bootstrap_writes_a_private_admin_token_once() {
        let dir = tempfile::tempdir().unwrap();
        let first = TokenKeys::bootstrap(dir.path(), None).unwrap();
        let path = first.admin_token_file.clone().unwrap();
        let token = fs::read_to_string(&path).unwrap();
        assert_eq!(first.keys.verify(token.trim()).unwrap().role, Role::Admin);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let second = TokenKeys::bootstrap(dir.path(), None).unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            token,
            "a valid token is kept"
        );
        assert!(second.keys.verify(token.trim()).is_ok());
    }
}
