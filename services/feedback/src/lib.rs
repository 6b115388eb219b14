//! podium's feedback service: live polls of every kind, one ballot per attendee, anonymous
//! polls whose link to attendees is destroyed at close, word clouds that segment Khmer
//! properly, and results streamed to watchers at most ten times a second per poll.
//!
//! Layers: [`domain`] (polls, tallies and words, pure), [`store`] (events, the read model,
//! anonymity keys), [`grpc`] (the `podium.v1.Polls` service and the results publisher).

#![forbid(unsafe_code)]

pub mod domain;
pub mod grpc;
pub mod store;

pub use grpc::PollsService;
pub use store::{FeedbackModel, VoterKeys, feedback_event_types};
