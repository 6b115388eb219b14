//! podium's live status service: speaker presence, the failover engine that falls back to a
//! speaker's pre-recorded talk when their link drops, moderator switching and pinning, the status
//! stream, pre-flight readiness, and the recordings themselves.
//!
//! Layers: [`domain`] (the pure state machine), [`model`] and [`store`] (events in and out of
//! the log, the read model, the engine task that owns the machines), and the gRPC services.

#![forbid(unsafe_code)]

pub mod domain;
pub mod error;
pub mod model;
pub mod presence;
pub mod recordings;
pub mod stage;
pub mod store;

pub use error::StatusError;
pub use model::{StatusModel, status_model_event_types};
pub use presence::PresenceService;
pub use recordings::{RecordingStore, RecordingsService};
pub use stage::StageService;
pub use store::{Clock, Engine, EngineHandle};
