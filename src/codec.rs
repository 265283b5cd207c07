//! Request decoding that lets handlers reject malformed bytes themselves.
//!
//! grpcio's own protobuf decoder rejects a request that does not parse with
//! `INTERNAL`, which reports a server fault to the caller. Server methods
//! here decode into `Decoded`, which always succeeds and carries the parse
//! error, so the handler replies `INVALID_ARGUMENT` naming the message type.

use grpcio::{GrpcSlice, Marshaller, MessageReader, Method, MethodType};
use protobuf::{CodedInputStream, Message};

/// A request message, or why its bytes did not parse.
pub struct Decoded<T>(pub Result<T, protobuf::Error>);

fn decode<T: Message>(mut reader: MessageReader) -> grpcio::Result<Decoded<T>> {
    let mut input = CodedInputStream::from_buf_read(&mut reader);
    let mut message = T::new();
    let parsed = message.merge_from(&mut input).map(|()| message);
    Ok(Decoded(parsed))
}

fn encode<T: Message>(decoded: &Decoded<T>, buffer: &mut GrpcSlice) -> grpcio::Result<()> {
    match &decoded.0 {
        Ok(message) => grpcio::pb_ser(message, buffer),
        Err(error) => Err(grpcio::Error::Codec(error.to_string().into())),
    }
}

/// Builds a server-side method whose requests decode into `Decoded`.
pub const fn server_method<Req: Message, Resp: Message>(
    ty: MethodType,
    name: &'static str,
) -> Method<Decoded<Req>, Resp> {
    Method {
        ty,
        name,
        req_mar: Marshaller {
            ser: encode::<Req>,
            de: decode::<Req>,
        },
        resp_mar: Marshaller {
            ser: grpcio::pb_ser,
            de: grpcio::pb_de,
        },
    }
}
