//! podium's feedback service: live polls of every kind, one ballot per attendee, anonymous
//! polls whose link to attendees is destroyed at close, word clouds that segment Khmer
//! properly, and results streamed to watchers at most ten times a second per poll; session
//! Q&A with upvotes and moderation, streamed the same way; session ratings for moderators.
//!
//! Layers: [`domain`] (polls, tallies, questions, ratings and words, pure), [`store`] (events,
//! the read model, anonymity keys), [`commands`] (one per write RPC: decide against the model,
//! append), [`grpc`] (the `podium.v1.Polls`, `podium.v1.Questions` and `podium.v1.Ratings`
//! services and their publisher), and [`error`] (each service's refusals and their one
//! mapping to gRPC codes).

#![forbid(unsafe_code)]

pub mod commands;
pub mod domain;
pub mod error;
pub mod grpc;
mod publishing;
pub mod store;
mod voter_keys;

pub use grpc::{Pace, PollsService, qa::QuestionsService, ratings::RatingsService};
pub use publishing::PublishingThread;
pub use store::{FeedbackModel, VoterKeys, feedback_event_types};
