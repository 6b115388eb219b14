//! Who may do what: roles, principals and the scope rule, with no transport in sight.
//!
//! **A principal scoped to one conference finds nothing of another**: the check answers
//! `NotFound`, exactly as for a conference that does not exist, so tokens do not leak which
//! conferences exist.

use std::time::SystemTime;

/// What a token allows. Mirrors `podium.v1.Role`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Admin,
    Organiser,
    Moderator,
    Integration,
    Speaker,
    Attendee,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Admin,
        Role::Organiser,
        Role::Moderator,
        Role::Integration,
        Role::Speaker,
        Role::Attendee,
    ];

    /// The lowercase name used in tokens and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Organiser => "organiser",
            Role::Moderator => "moderator",
            Role::Integration => "integration",
            Role::Speaker => "speaker",
            Role::Attendee => "attendee",
        }
    }

    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Roles that may set up a conference.
pub const ORGANISERS: &[Role] = &[Role::Admin, Role::Organiser];
/// Roles that run the show: start and switch sessions, run polls, moderate questions.
pub const MODERATORS: &[Role] = &[Role::Admin, Role::Organiser, Role::Moderator];
/// Roles that run a conference on the day or read all of its events.
pub const STAFF: &[Role] = &[
    Role::Admin,
    Role::Organiser,
    Role::Moderator,
    Role::Integration,
];
/// Every role.
pub const EVERYONE: &[Role] = &Role::ALL;

/// The authenticated holder of a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Stable id: "admin", an attendee id, or the subject a token was issued to.
    pub id: String,
    pub name: String,
    pub role: Role,
    /// None only for admin.
    pub conference_id: Option<String>,
    /// Set for speakers.
    pub speaker_id: Option<String>,
    /// None for the configured admin token, which does not expire.
    pub expires_at: Option<SystemTime>,
    /// The token's id, to revoke it by; None for the configured admin secret and for tokens
    /// issued before tokens had ids.
    pub token_id: Option<String>,
}

/// Why a request may not go ahead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{field}: {message}")]
    InvalidArgument {
        field: &'static str,
        message: String,
    },
    #[error("{0}")]
    Internal(String),
}

impl From<podium_text::TextError> for AccessError {
    fn from(e: podium_text::TextError) -> Self {
        Self::InvalidArgument {
            field: e.field,
            message: e.message(),
        }
    }
}

impl Principal {
    /// The built-in administrator.
    pub fn admin() -> Self {
        Self {
            id: "admin".into(),
            name: "admin".into(),
            role: Role::Admin,
            conference_id: None,
            speaker_id: None,
            expires_at: None,
            token_id: None,
        }
    }

    /// May this principal see anything of `conference_id`? Answers `NotFound` if not.
    pub fn check_conference(&self, conference_id: &str) -> Result<(), AccessError> {
        match (&self.role, &self.conference_id) {
            (Role::Admin, _) => Ok(()),
            (_, Some(own)) if own == conference_id => Ok(()),
            _ => Err(AccessError::NotFound(format!(
                "conference {conference_id} not found"
            ))),
        }
    }

    /// Checks the scope, then that the role is one of `allowed`; `action` completes the
    /// sentence "a `<role>` token may not ...".
    pub fn require(
        &self,
        conference_id: &str,
        allowed: &[Role],
        action: &str,
    ) -> Result<(), AccessError> {
        self.check_conference(conference_id)?;
        if allowed.contains(&self.role) {
            Ok(())
        } else {
            Err(AccessError::PermissionDenied(format!(
                "{} {} token may not {action}",
                article(self.role),
                self.role
            )))
        }
    }

    /// Admin only.
    pub fn require_admin(&self, action: &str) -> Result<(), AccessError> {
        if self.role == Role::Admin {
            Ok(())
        } else {
            Err(AccessError::PermissionDenied(format!(
                "only an admin token may {action}"
            )))
        }
    }

    /// True for roles that may see a conference's join code.
    pub fn sees_join_code(&self) -> bool {
        matches!(self.role, Role::Admin | Role::Organiser | Role::Moderator)
    }
}

fn article(role: Role) -> &'static str {
    match role {
        Role::Admin | Role::Organiser | Role::Integration | Role::Attendee => "an",
        Role::Moderator | Role::Speaker => "a",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scoped(role: Role, conference: &str) -> Principal {
        Principal {
            id: "p1".into(),
            name: "Dara".into(),
            role,
            conference_id: Some(conference.into()),
            speaker_id: None,
            expires_at: None,
            token_id: None,
        }
    }

    #[test]
    fn other_conference_is_not_found() {
        let p = scoped(Role::Organiser, "odc2024");
        assert_eq!(
            p.require("other", ORGANISERS, "add rooms"),
            Err(AccessError::NotFound("conference other not found".into()))
        );
        assert!(p.require("odc2024", ORGANISERS, "add rooms").is_ok());
    }

    #[test]
    fn wrong_role_is_denied_with_the_action() {
        let p = scoped(Role::Attendee, "odc2024");
        assert_eq!(
            p.require("odc2024", ORGANISERS, "add sessions"),
            Err(AccessError::PermissionDenied(
                "an attendee token may not add sessions".into()
            ))
        );
    }

    #[test]
    fn admin_sees_every_conference() {
        assert!(
            Principal::admin()
                .require("any", ORGANISERS, "add rooms")
                .is_ok()
        );
    }

    #[test]
    fn role_names_round_trip() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
