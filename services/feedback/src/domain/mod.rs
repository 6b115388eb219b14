//! The feedback rules with no storage or transport: polls and their tallies, questions, ratings, and words.

pub mod poll;
pub mod qa;
pub mod rating;
pub mod words;
