//! podium-core: the pure types and rules that more than one service needs, and nothing else.
//!
//! The rule of this crate: a thing belongs here only if it is pure (no tonic, no IO, no log, no
//! clock) and at least two services need it; everything else stays in the service that owns
//! it. Services depend on this crate and on the libraries (proto, eventlog, access, text),
//! never on each other. Today that is the shown forms of time ([`time`]: local hours and zoned
//! labels), a session's failover policy with its defaults and limits ([`failover`]), and the
//! refusal that names a bad field ([`InvalidField`]).

#![forbid(unsafe_code)]

pub mod failover;
pub mod invalid;
pub mod time;

pub use failover::{Failback, FailoverPolicy};
pub use invalid::InvalidField;
pub use time::{Conflict, Hours, ZonedView, hhmm, parse_hhmm, zoned};
