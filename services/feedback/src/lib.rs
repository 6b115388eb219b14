//! podium's feedback service: live polls of every kind, one ballot per attendee, anonymous
//! polls whose link to attendees is destroyed at close, word clouds that segment Khmer
//! properly, and results streamed to watchers at most ten times a second per poll; session
//! Q&A with upvotes and moderation, streamed the same way; session ratings for moderators.
//!
//! Layers: [`domain`] (polls, tallies and words, pure), [`store`] (events, the read model,
//! anonymity keys), [`grpc`] (the `podium.v1.Polls` and `podium.v1.Questions` services and their publishers).

#![forbid(unsafe_code)]

pub mod domain;
pub mod grpc;
pub mod store;

pub use grpc::{PollsService, qa::QuestionsService, ratings::RatingsService};
pub use store::{FeedbackModel, VoterKeys, feedback_event_types};
