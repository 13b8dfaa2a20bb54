//! Kafka wire codec for Fjord: size-prefixed frames, request headers, the table of API versions the
//! broker implements, and response encoding. Bytes in, types out, and back: no I/O, no tokio
//! (architecture invariant 1).

pub mod chunked;
pub mod frame;
pub mod versions;

pub use chunked::encode_fetch_response_chunked;
pub use frame::{
    DecodeError, DecodedRequest, decode_request, decode_response, encode_request, encode_response, peek_header,
};
pub use kafka_protocol;
pub use versions::{SUPPORTED_APIS, SupportedApi, supported_range};
