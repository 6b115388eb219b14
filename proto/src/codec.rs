//! The protobuf codec of every podium service and client: prost's, with a small first encode
//! buffer per stream.
//!
//! tonic gives each response stream an encode buffer of 8 KiB, and the part a message did not
//! use stays allocated for as long as the stream is open. A podium server holds tens of
//! thousands of idle watch streams whose updates are a few hundred bytes, so that buffer was
//! most of the memory each watcher cost (`podium-loadgen fanout`, README "Targets"). Here a
//! stream starts with [`ENCODE_BUFFER_BYTES`] and the buffer grows when a message needs more;
//! messages are the same bytes on the wire.
//!
//! A message that does not decode (bad protobuf, a string that is not UTF-8) is
//! INVALID_ARGUMENT, naming the message type and what is wrong, on every method, streams
//! included; tonic's own codec calls it INTERNAL, as if the server had failed.

use std::marker::PhantomData;

use prost::Message;
use tonic::{
    Code, Status,
    codec::{BufferSettings, Codec, DecodeBuf, Decoder},
};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// The first encode buffer of a stream: room for a results update or a status change.
pub const ENCODE_BUFFER_BYTES: usize = 1024;

/// How much a stream encodes before it yields to the runtime (tonic's default).
const YIELD_THRESHOLD_BYTES: usize = 32 * 1024;

/// `tonic_prost::ProstCodec` with a [`ENCODE_BUFFER_BYTES`] encode buffer; the generated stubs
/// use it (`codec_path` in `build.rs`).
#[derive(Debug, Clone, Copy)]
pub struct PodiumCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for PodiumCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for PodiumCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = PodiumDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(BufferSettings::new(
            ENCODE_BUFFER_BYTES,
            YIELD_THRESHOLD_BYTES,
        ))
    }

    fn decoder(&mut self) -> Self::Decoder {
        PodiumDecoder(ProstCodec::<T, U>::raw_decoder(BufferSettings::default()))
    }
}

/// prost's decoder, answering a message that does not decode with INVALID_ARGUMENT.
#[derive(Debug)]
pub struct PodiumDecoder<U>(ProstDecoder<U>);

impl<U: Message + Default> Decoder for PodiumDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        self.0.decode(src).map_err(|status| match status.code() {
            // prost's DecodeError, which tonic maps to INTERNAL.
            Code::Internal => Status::invalid_argument(format!(
                "the message is not a valid {}: {}",
                std::any::type_name::<U>()
                    .rsplit("::")
                    .next()
                    .unwrap_or("message"),
                status
                    .message()
                    .trim_start_matches("failed to decode Protobuf message: ")
            )),
            _ => status,
        })
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}
