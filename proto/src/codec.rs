//! The protobuf codec of every podium service and client: prost's, with a small first encode
//! buffer per stream.
//!
//! tonic gives each response stream an encode buffer of 8 KiB, and the part a message did not
//! use stays allocated for as long as the stream is open. A podium server holds tens of
//! thousands of idle watch streams whose updates are a few hundred bytes, so that buffer was
//! most of the memory each watcher cost (`podium-loadgen fanout`, README "Targets"). Here a
//! stream starts with [`ENCODE_BUFFER_BYTES`] and the buffer grows when a message needs more;
//! messages are the same bytes on the wire.

use std::marker::PhantomData;

use prost::Message;
use tonic::codec::{BufferSettings, Codec};
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
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(BufferSettings::new(
            ENCODE_BUFFER_BYTES,
            YIELD_THRESHOLD_BYTES,
        ))
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(BufferSettings::default())
    }
}
