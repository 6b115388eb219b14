//! podium's playout bridge (`podium bridge obs`): carries out podium's on-air decisions for one
//! room in OBS Studio, and tells podium what the program output really shows.
//!
//! - Before the day it fetches every recording of the room's sessions and checks each SHA-256
//!   ([`library`]), so that a fallback plays a file already on the playout machine.
//! - On the day it follows `Stage/WatchStatus` for the room ([`bridge`]); for each new decision
//!   it switches OBS's program scene, and for a recording it first plays the local copy from
//!   where the talk has got to. It reads the result back from OBS and reports it through
//!   `Playout/Report` ([`report`]), with OBS's own output figures.
//! - A person's scene switch in OBS is an override: left alone and reported. A lost OBS is
//!   tried again every couple of seconds and given the current decision when it comes back; a
//!   lost podium is followed again from the last position seen, so old decisions never replay.

#![forbid(unsafe_code)]

pub mod bridge;
pub mod config;
pub mod library;
pub mod obs;
pub mod report;

pub use bridge::{BridgeError, CURSOR_TOLERANCE_MS, run};
pub use config::Config;
pub use obs::Obs;
