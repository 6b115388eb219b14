//! podium's live status service: speaker presence, the failover engine that falls back to a
//! speaker's pre-recorded talk when their link drops, moderator switching and pinning, the status
//! stream, pre-flight readiness, and the recordings themselves.
//!
//! Layers: [`domain`] (the pure state machine), then on the storage side [`codec`] (status
//! events to and from protobuf) <- [`model`] (the read model, the whole fold) <- [`engine`] (the
//! clock and the task that owns the machines), and the gRPC services on top.

#![forbid(unsafe_code)]

pub mod codec;
pub mod domain;
pub mod engine;
pub mod error;
pub mod metrics;
pub mod model;
pub mod playout;
pub mod presence;
pub mod publisher;
pub mod recordings;
pub mod stage;

pub use engine::{Clock, Engine, EngineHandle};
pub use error::StatusError;
pub use model::{StatusModel, status_model_event_types};
pub use playout::PlayoutService;
pub use presence::PresenceService;
pub use recordings::{RecordingStore, RecordingsService};
pub use stage::StageService;
