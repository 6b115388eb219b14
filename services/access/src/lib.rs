//! podium's access model: signed bearer tokens that carry a principal, a role and a scope; the
//! admin bootstrap; joining a conference with its join code; and the authorisation rule every
//! RPC of every service applies.
//!
//! Layers: [`domain`] (roles and the scope rule), [`tokens`] (signing, verifying, revocation),
//! [`keyring`] (the signing keys, their rotation and files), [`register`] (issued and revoked
//! tokens, a read model), [`directory`] (this service's read model of conferences and speakers),
//! [`grpc`] (interceptor and the `podium.v1.Access` service).

#![forbid(unsafe_code)]

pub mod directory;
pub mod domain;
pub mod grpc;
pub mod keyring;
pub mod limits;
pub mod register;
mod token_admin;
pub mod tokens;

pub use directory::{Directory, directory_event_types};
pub use domain::{AccessError, EVERYONE, MODERATORS, ORGANISERS, Principal, Role, STAFF};
pub use grpc::{AccessService, Authenticator, caller};
pub use limits::{Action, RateLimits, Rates};
pub use register::{TokenRegister, register_event_types, token_stream};
pub use token_admin::{record_revocation, revocation_reason};
pub use tokens::{TokenKeys, is_attendee_id};
