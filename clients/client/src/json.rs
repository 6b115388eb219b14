//! podium messages as JSON, using the descriptors compiled into `podium-proto`, so that any
//! message or event payload can be shown to a person or a script without hand-written
//! converters.

use std::sync::OnceLock;

use prost::Message;
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};

fn pool() -> Option<&'static DescriptorPool> {
    static POOL: OnceLock<Option<DescriptorPool>> = OnceLock::new();
    POOL.get_or_init(|| DescriptorPool::decode(podium_proto::FILE_DESCRIPTOR_SET).ok())
        .as_ref()
}

/// Encodes bytes of protobuf type `type_name` (e.g. `podium.v1.SessionScheduled`) as JSON in
/// protobuf's canonical JSON mapping. `None` if the type is unknown or the bytes do not decode.
pub fn payload_to_json(type_name: &str, bytes: &[u8]) -> Option<serde_json::Value> {
    let descriptor = pool()?.get_message_by_name(type_name)?;
    let message = DynamicMessage::decode(descriptor, bytes).ok()?;
    let options = SerializeOptions::new()
        .skip_default_fields(false)
        .stringify_64_bit_integers(false);
    message
        .serialize_with_options(serde_json::value::Serializer, &options)
        .ok()
}

/// Any podium message as JSON.
pub fn message_to_json<M: Message + prost::Name>(message: &M) -> serde_json::Value {
    payload_to_json(&M::full_name(), &message.encode_to_vec()).unwrap_or(serde_json::Value::Null)
}
