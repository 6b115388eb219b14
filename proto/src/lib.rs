//! podium's public API as Rust: the messages and gRPC stubs generated from `podium/v1/*.proto`,
//! and the encoded file descriptor set that the server's reflection service publishes.
//!
//! The `.proto` files are the API documentation; read them first.

#![forbid(unsafe_code)]

/// Package `podium.v1`.
pub mod v1 {
    // The comments come from the .proto files, written for protobuf readers, not for rustdoc.
    #![allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]
    tonic::include_proto!("podium.v1");

    pub use crate::shared::{SharedResults, WatchResultsResponse};
}

pub mod codec;
pub mod error;
pub mod export;
pub mod language;
pub mod shared;
pub mod time;

pub use error::{ServiceError, ServiceErrorCode, into_status};
pub use language::Translations;

/// The encoded `FileDescriptorSet` of every podium proto file, for server reflection and for
/// tools that decode events by type name.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/podium_descriptor.bin"));

/// Response metadata on every call: the log's position (the count of events, so exclusive) on
/// the node that answered, when it answered. Everything the call wrote lies below it.
pub const LOG_POSITION_HEADER: &str = "podium-log-position";

/// Request metadata: answer only once this node's read models have applied the log below this
/// position (a [`LOG_POSITION_HEADER`] another node returned), so that a client that wrote
/// through one node reads its write through any other. A node that has not got there within a
/// few seconds answers `UNAVAILABLE`, naming both positions.
pub const MIN_POSITION_HEADER: &str = "podium-min-position";

/// Response metadata on a request refused because this node did not reach its
/// [`MIN_POSITION_HEADER`] in time, with the node's log position: a position its log itself
/// has not reached is likely from another log (one restored from an older backup), and a
/// client starts again from this one.
pub const POSITION_UNREACHED_HEADER: &str = "podium-position-unreached";

/// A log position as these headers carry it: a whole number.
pub fn parse_position(value: &str) -> Option<u64> {
    value.trim().parse().ok()
}

/// The fully qualified protobuf name of a podium message, used as the event type in the log
/// (`podium.v1.ConferenceCreated`). Integrators decode an event's payload by this name.
pub fn type_name<M: prost::Name>() -> String {
    M::full_name()
}
