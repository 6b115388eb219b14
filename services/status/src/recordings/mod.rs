//! Recordings: the pre-recorded talks a session falls back to. `files` keeps their bytes,
//! content-addressed beside the log (`sha256/<hex>`), and streams uploads to disk while hashing
//! them, so a file is never held in memory; `probe` reads what a file is (container, length,
//! codecs) and refuses what is not video; `grpc` is the `podium.v1.Recordings` service,
//! which checks who may do what, registers a verified upload as a `RecordingRegistered` event
//! and answers from the status read model; `delete` deletes one and collects the files no
//! recording needs.

mod delete;
mod files;
mod grpc;
mod probe;
#[cfg(test)]
mod tests;

pub use files::{Collected, RecordingStore, Upload, is_sha256};
pub use grpc::RecordingsService;
pub use probe::{ProbeError, playout_concerns, probe};

/// The content the store must keep, from `model` once it has caught up with the log (so a
/// registration the log has and the model not yet is counted): what a collection is given.
pub async fn needed_content(
    model: podium_eventlog::Projector<crate::StatusModel>,
) -> Result<std::collections::HashSet<String>, crate::StatusError> {
    model.catch_up().await?;
    Ok(model.read().needed_content())
}

/// Largest chunk of an upload, as the proto promises.
pub const MAX_CHUNK_BYTES: usize = 4 << 20;
/// Size of the chunks a fetch streams.
pub const FETCH_CHUNK_BYTES: usize = 1 << 20;
/// Largest gRPC message the service must decode: a full chunk plus its protobuf framing. Give
/// it to `RecordingsServer::max_decoding_message_size`; tonic's default (4 MiB) is a few bytes
/// short of a 4 MiB chunk.
pub const MAX_MESSAGE_BYTES: usize = MAX_CHUNK_BYTES + (64 << 10);
/// podiumd's default for `--max-recording-bytes`: 4 GiB.
pub const DEFAULT_MAX_RECORDING_BYTES: u64 = 4 << 30;

/// The stream of a session's `RecordingRegistered` events.
pub fn recordings_stream(conference_id: &str, session_id: &str) -> String {
    format!("conference/{conference_id}/session/{session_id}/recordings")
}
