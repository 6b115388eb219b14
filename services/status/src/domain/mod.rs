//! The failover engine's rules, with no clock, storage or transport: a pure state machine per
//! session, fed heartbeats, stream opens and closes, timer ticks and moderator commands, each
//! with the time it happened. It answers with events; [`SessionLive::apply`] folds them.
//!
//! **The persistent status of a session is a fold of its events**, so a replay rebuilds it
//! exactly. What is not persisted (when each speaker's last heartbeat arrived, since when a link
//! has been poor or healthy) is the [`Monitor`]: it is rebuilt from live heartbeats, and after a
//! restart a reconnect grace keeps the source on air until speakers are back.
//!
//! [`types`] the vocabulary, [`live`] the fold, [`machine`] the rules.

pub mod live;
pub mod machine;
pub mod types;

pub use live::{LinkView, SessionLive};
pub use machine::{Machine, Monitor, Track};
pub use types::{
    Alert, AlertKind, Cause, Context, DEFAULT_RECONNECT_GRACE_MS, Figures, Lifecycle, LinkState,
    Millis, RecordingRef, Refusal, Source, SourceKind, StatusEvent, Target,
};

#[cfg(test)]
mod tests;
