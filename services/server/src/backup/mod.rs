//! Backups of a running node and restores into a new data directory.
//!
//! [`take`] streams a consistent backup while podiumd serves (the `Diagnostics/Backup` RPC that
//! `podium admin backup` calls): the log up to its durable head when the call arrives, the keys
//! beside it, and optionally the recordings' files. [`restore()`] (`podiumd restore`) reads such
//! a file into a new data directory, all or nothing. [`format`](mod@format) is the file: the magic bytes,
//! length-delimited `podium.v1.BackupRecord` messages, and a closing digest; `backup.proto`
//! documents it for anyone who reads it without podium.

pub mod format;
pub mod restore;
pub mod take;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use podium_status::RecordingStore;

pub use format::BackupError;
pub use restore::{Restored, restore};
pub use take::BackupSource;

/// The files the token signing key and the keys rotated out (still in their grace period) live
/// in, under the data directory.
use podium_access::keyring::{KEY_FILE as TOKEN_KEY, RETIRED_FILE as RETIRED_TOKEN_KEYS};
/// The directory of anonymous polls' voter keys, under the data directory.
pub(crate) const POLL_KEYS: &str = "poll-keys";
/// The recording store's directory, under the data directory.
pub(crate) const RECORDINGS: &str = "recordings";

/// Where the recording with this SHA-256 keeps its bytes under `data_dir`.
fn recording_path(data_dir: &Path, sha256: &str) -> PathBuf {
    RecordingStore::content_path_in(&data_dir.join(RECORDINGS), sha256)
}

/// The log's directory under `data_dir`.
pub(crate) fn log_path(data_dir: &Path) -> PathBuf {
    data_dir.join("log")
}
