//! Request frames in, response frames out. A frame here is the bytes after the 4-byte size prefix;
//! the network layer owns the prefix on reads and `encode_response` writes it on responses.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::versions::supported_range;

/// Why a request frame could not be turned into a request. Every variant carries what the
/// network layer needs to answer or to log before closing the connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("request frame of {len} bytes is shorter than a request header")]
    Truncated { len: usize },
    #[error("unknown api key {api_key}")]
    UnknownApiKey { api_key: i16, correlation_id: i32 },
    #[error("api {api_key:?} is not served by this broker")]
    UnsupportedApi { api_key: ApiKey, correlation_id: i32 },
    #[error("api {api_key:?} version {version} is outside the supported range {min}..={max}")]
    UnsupportedVersion {
        api_key: ApiKey,
        version: i16,
        min: i16,
        max: i16,
        correlation_id: i32,
    },
    #[error("malformed {api_key:?} v{version} request: {reason}")]
    Malformed {
        api_key: ApiKey,
        version: i16,
        correlation_id: i32,
        reason: String,
    },
}

/// Failure to encode a response: a bug on our side, never caused by client input.
#[derive(Debug, thiserror::Error)]
#[error("cannot encode {api_key:?} v{version} response: {reason}")]
pub struct EncodeError {
    pub api_key: ApiKey,
    pub version: i16,
    pub reason: String,
}

/// A request decoded at a version the broker implements.
#[derive(Debug)]
pub struct DecodedRequest {
    pub api_key: ApiKey,
    pub header: RequestHeader,
    pub body: RequestKind,
}

impl DecodedRequest {
    pub fn version(&self) -> i16 {
        self.header.request_api_version
    }
    pub fn correlation_id(&self) -> i32 {
        self.header.correlation_id
    }
}

/// The fixed leading fields of every request header: api key, api version, correlation id.
pub fn peek_header(frame: &[u8]) -> Option<(i16, i16, i32)> {
    let head: &[u8; 8] = frame.get(..8)?.try_into().ok()?;
    let api_key = i16::from_be_bytes([head[0], head[1]]);
    let version = i16::from_be_bytes([head[2], head[3]]);
    let correlation_id = i32::from_be_bytes([head[4], head[5], head[6], head[7]]);
    Some((api_key, version, correlation_id))
}

/// Decodes one request frame. Versions outside [`crate::SUPPORTED_APIS`] are refused before any
/// body decoding. Record batches inside the body stay slices of `frame` (no copy).
pub fn decode_request(frame: Bytes) -> Result<DecodedRequest, DecodeError> {
    let (raw_key, version, correlation_id) = peek_header(&frame).ok_or(DecodeError::Truncated { len: frame.len() })?;
    let api_key = ApiKey::try_from(raw_key).map_err(|()| DecodeError::UnknownApiKey {
        api_key: raw_key,
        correlation_id,
    })?;
    let range = supported_range(api_key).ok_or(DecodeError::UnsupportedApi {
        api_key,
        correlation_id,
    })?;
    if version < range.min || version > range.max {
        return Err(DecodeError::UnsupportedVersion {
            api_key,
            version,
            min: range.min,
            max: range.max,
            correlation_id,
        });
    }
    let malformed = |reason: String| DecodeError::Malformed {
        api_key,
        version,
        correlation_id,
        reason,
    };
    let mut buf = frame;
    let header = RequestHeader::decode(&mut buf, api_key.request_header_version(version))
        .map_err(|e| malformed(format!("header: {e}")))?;
    let body = RequestKind::decode(api_key, &mut buf, version).map_err(|e| malformed(e.to_string()))?;
    Ok(DecodedRequest { api_key, header, body })
}

/// Appends one size-prefixed frame to `out`: whatever `write` encodes (a header and a body),
/// preceded by its length; on an error nothing is left in `out`.
fn write_frame(
    out: &mut BytesMut,
    api_key: ApiKey,
    version: i16,
    write: impl FnOnce(&mut BytesMut) -> Result<(), String>,
) -> Result<(), EncodeError> {
    let fail = |reason: String| EncodeError {
        api_key,
        version,
        reason,
    };
    let start = out.len();
    out.put_i32(0);
    if let Err(reason) = write(out) {
        out.truncate(start);
        return Err(fail(reason));
    }
    let size = i32::try_from(out.len() - start - 4).map_err(|e| fail(e.to_string()))?;
    out[start..start + 4].copy_from_slice(&size.to_be_bytes());
    Ok(())
}

/// Appends one size-prefixed response frame (header + body) to `out`.
pub fn encode_response(
    out: &mut BytesMut,
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> Result<(), EncodeError> {
    write_frame(out, api_key, version, |out| {
        ResponseHeader::default()
            .with_correlation_id(correlation_id)
            .encode(out, api_key.response_header_version(version))
            .map_err(|e| e.to_string())?;
        body.encode(out, version).map_err(|e| e.to_string())
    })
}

/// Appends one size-prefixed request frame (header + body) to `out`: the client side, used by a
/// follower's replica fetcher to talk to its leader.
pub fn encode_request(
    out: &mut BytesMut,
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    client_id: &str,
    body: &RequestKind,
) -> Result<(), EncodeError> {
    write_frame(out, api_key, version, |out| {
        RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(kafka_protocol::protocol::StrBytes::from_string(
                client_id.to_string(),
            )))
            .encode(out, api_key.request_header_version(version))
            .map_err(|e| e.to_string())?;
        body.encode(out, version).map_err(|e| e.to_string())
    })
}

/// Decodes a response frame (the bytes after the size prefix) of `api_key` at `version`:
/// its correlation id and body.
pub fn decode_response(frame: Bytes, api_key: ApiKey, version: i16) -> Result<(i32, ResponseKind), String> {
    let mut buf = frame;
    let header = ResponseHeader::decode(&mut buf, api_key.response_header_version(version))
        .map_err(|e| format!("{api_key:?} v{version} response header: {e}"))?;
    let body = ResponseKind::decode(api_key, &mut buf, version)
        .map_err(|e| format!("{api_key:?} v{version} response: {e}"))?;
    Ok((header.correlation_id, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest};
    use kafka_protocol::protocol::StrBytes;

    fn frame_for(api_key: ApiKey, version: i16, body: &impl Encodable) -> Bytes {
        let mut out = BytesMut::new();
        RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(7)
            .with_client_id(Some(StrBytes::from_static_str("test")))
            .encode(&mut out, api_key.request_header_version(version))
            .expect("header encodes");
        body.encode(&mut out, version).expect("body encodes");
        out.freeze()
    }

    #[test]
    fn decode_request_supported_version_yields_body() {
        let frame = frame_for(ApiKey::Metadata, 12, &MetadataRequest::default());
        let req = decode_request(frame).expect("decodes");
        assert_eq!(req.api_key, ApiKey::Metadata);
        assert_eq!(req.correlation_id(), 7);
        assert_eq!(req.header.client_id.as_deref(), Some("test"));
        assert!(matches!(req.body, RequestKind::Metadata(_)));
    }

    #[test]
    fn decode_request_too_new_version_is_refused_before_decoding() {
        let frame = frame_for(ApiKey::ApiVersions, 3, &ApiVersionsRequest::default());
        let mut raw = BytesMut::from(&frame[..]);
        raw[2..4].copy_from_slice(&99i16.to_be_bytes());
        let err = decode_request(raw.freeze()).expect_err("refused");
        assert!(matches!(
            err,
            DecodeError::UnsupportedVersion {
                version: 99,
                correlation_id: 7,
                ..
            }
        ));
    }

    #[test]
    fn decode_request_unknown_key_and_garbage_are_errors_not_panics() {
        let mut raw = BytesMut::new();
        raw.put_i16(9999);
        raw.put_i16(0);
        raw.put_i32(1);
        assert!(matches!(
            decode_request(raw.freeze()),
            Err(DecodeError::UnknownApiKey { api_key: 9999, .. })
        ));
        assert!(matches!(
            decode_request(Bytes::from_static(b"\x00")),
            Err(DecodeError::Truncated { len: 1 })
        ));
        // A valid header followed by a body cut short.
        let frame = frame_for(
            ApiKey::Metadata,
            12,
            &MetadataRequest::default().with_topics(Some(vec![])),
        );
        let cut = frame.slice(..frame.len() - 2);
        assert!(matches!(decode_request(cut), Err(DecodeError::Malformed { .. })));
    }

    #[test]
    fn decode_request_never_panics_on_random_frames() {
        // A cheap deterministic fuzz: xorshift bytes behind every real header prefix.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for api in crate::SUPPORTED_APIS {
            for version in api.min..=api.max {
                for len in [0usize, 1, 5, 17, 64, 300] {
                    let mut raw = BytesMut::new();
                    raw.put_i16(api.key as i16);
                    raw.put_i16(version);
                    raw.put_i32(1);
                    for _ in 0..len {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        raw.put_u8(x as u8);
                    }
                    let _ = decode_request(raw.freeze());
                }
            }
        }
    }

    #[test]
    fn encode_response_writes_size_prefix_and_v0_header_for_api_versions() {
        let mut out = BytesMut::new();
        let body = ResponseKind::ApiVersions(Default::default());
        encode_response(&mut out, ApiKey::ApiVersions, 3, 42, &body).expect("encodes");
        let size = i32::from_be_bytes([out[0], out[1], out[2], out[3]]) as usize;
        assert_eq!(size, out.len() - 4);
        assert_eq!(i32::from_be_bytes([out[4], out[5], out[6], out[7]]), 42);
        // Response header v0 has no tagged-field byte: the error code follows the correlation id.
        assert_eq!(i16::from_be_bytes([out[8], out[9]]), 0);
    }
}
