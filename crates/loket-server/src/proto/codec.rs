//! The gateway's protobuf codec: prost's, except that a request that does not decode is
//! the caller's mistake (INVALID_ARGUMENT, reason MALFORMED_MESSAGE), not the INTERNAL
//! that tonic-prost answers. build.rs makes every generated service and client use it.

use std::marker::PhantomData;

use prost::Message;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic::Status;
use tonic_prost::ProstEncoder;

use crate::Error;

/// [`tonic_prost::ProstCodec`] with decode errors as INVALID_ARGUMENT.
#[derive(Debug, Clone)]
pub struct GatewayCodec<T, U> {
    _types: PhantomData<(T, U)>,
}

impl<T, U> Default for GatewayCodec<T, U> {
    fn default() -> Self {
        Self { _types: PhantomData }
    }
}

impl<T, U> Codec for GatewayCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = GatewayDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        GatewayDecoder { _type: PhantomData }
    }
}

/// Decodes one `U`; a malformed message is [`Error::MalformedMessage`].
#[derive(Debug, Clone)]
pub struct GatewayDecoder<U> {
    _type: PhantomData<U>,
}

impl<U: Message + Default> Decoder for GatewayDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf).map(Some).map_err(|e| Error::MalformedMessage(e.to_string()).into())
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}
