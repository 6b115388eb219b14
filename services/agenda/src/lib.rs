//! podium's agenda service: conferences, rooms, speakers and sessions, with every time shown in
//! the zones of the people concerned, warnings for slots outside a speaker's hours, and a slot
//! finder.
//!
//! Layers: [`domain`] (state and rules, pure), [`store`] (events in and out of the log, the
//! read model), [`grpc`] (the `podium.v1.Agenda` service, its answers in `views`).

#![forbid(unsafe_code)]

pub mod domain;
pub mod error;
pub mod grpc;
pub mod store;
mod views;

pub use error::AgendaError;
pub use grpc::AgendaService;
pub use store::{AgendaStore, agenda_stream, conference_prefix};
