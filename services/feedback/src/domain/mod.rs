//! The feedback rules with no storage or transport: polls and their tallies, and words.

pub mod poll;
pub mod words;
