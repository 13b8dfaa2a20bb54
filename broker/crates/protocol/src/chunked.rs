//! Response encoding without copying record data: a buffer for kafka-protocol's encoder that
//! keeps registered record batches (`Bytes` read from segment files) as their own chunks instead
//! of copying them into the response. The connection writes the chunks in order. Fetch responses
//! are mostly record bytes, so this removes a full copy (and the page faults of a fresh buffer of
//! the response's size) from the consume path.

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, FetchResponse, ResponseHeader};
use kafka_protocol::protocol::Encodable;
use kafka_protocol::protocol::buf::ByteBufMut;

use crate::frame::EncodeError;

/// Slices shorter than this are copied: a separate chunk is not worth it.
const MIN_PINNED_LEN: usize = 4096;

/// An encoded frame as a list of chunks: small encoded parts plus record data by reference.
#[derive(Debug, Default)]
pub struct ChunkedFrame {
    chunks: Vec<Bytes>,
    tail: BytesMut,
    /// Bytes of all chunks before `tail`.
    base: usize,
    pinned: Vec<Bytes>,
}

impl ChunkedFrame {
    /// The frame's chunks, in order; their concatenation is the frame.
    pub fn into_chunks(mut self) -> Vec<Bytes> {
        self.seal_tail();
        self.chunks
    }

    pub fn len(&self) -> usize {
        self.base + self.tail.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn seal_tail(&mut self) {
        if !self.tail.is_empty() {
            self.base += self.tail.len();
            self.chunks.push(self.tail.split().freeze());
        }
    }

    /// The registered `Bytes` whose memory `src` is, if any.
    fn pinned_for(&self, src: &[u8]) -> Option<Bytes> {
        if src.len() < MIN_PINNED_LEN {
            return None;
        }
        self.pinned
            .iter()
            .find(|b| b.as_ptr() == src.as_ptr() && b.len() == src.len())
            .cloned()
    }
}

// SAFETY: every method delegates to the `BytesMut` tail, which upholds `BufMut`'s contract;
// `put_slice` either delegates too or appends a whole chunk without touching the tail.
#[allow(unsafe_code)]
unsafe impl BufMut for ChunkedFrame {
    fn remaining_mut(&self) -> usize {
        self.tail.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: the caller initialised `cnt` bytes of the slice `chunk_mut` returned, which
        // is the tail's own.
        unsafe { self.tail.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.tail.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        match self.pinned_for(src) {
            Some(bytes) => {
                self.seal_tail();
                self.base += bytes.len();
                self.chunks.push(bytes);
            }
            None => self.tail.put_slice(src),
        }
    }
}

impl ByteBufMut for ChunkedFrame {
    fn offset(&self) -> usize {
        self.len()
    }

    // Gaps (seek back and fill) are used by record-batch encoding, never by response messages;
    // they can only address the tail, which is where any gap in a message would be.
    fn seek(&mut self, offset: usize) {
        debug_assert!(offset >= self.base, "seek into a sealed chunk");
        self.tail.resize(offset.saturating_sub(self.base), 0);
    }

    fn range(&mut self, r: std::ops::Range<usize>) -> &mut [u8] {
        debug_assert!(r.start >= self.base, "range in a sealed chunk");
        let start = r.start.saturating_sub(self.base);
        let end = r.end.saturating_sub(self.base);
        &mut self.tail[start..end]
    }
}

/// Encodes one size-prefixed Fetch response frame as chunks, passing every partition's record
/// data by reference instead of copying it.
pub fn encode_fetch_response_chunked(
    version: i16,
    correlation_id: i32,
    body: &FetchResponse,
) -> Result<Vec<Bytes>, EncodeError> {
    let api_key = ApiKey::Fetch;
    let fail = |e: String| EncodeError {
        api_key,
        version,
        reason: e,
    };
    let pinned = body
        .responses
        .iter()
        .flat_map(|t| &t.partitions)
        .filter_map(|p| p.records.clone())
        .filter(|r| r.len() >= MIN_PINNED_LEN)
        .collect();
    let mut frame = ChunkedFrame {
        pinned,
        tail: BytesMut::with_capacity(4096),
        ..ChunkedFrame::default()
    };
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut frame, api_key.response_header_version(version))
        .map_err(|e| fail(e.to_string()))?;
    body.encode(&mut frame, version).map_err(|e| fail(e.to_string()))?;
    let size = i32::try_from(frame.len()).map_err(|e| fail(e.to_string()))?;
    let mut chunks = Vec::with_capacity(frame.chunks.len() + 2);
    chunks.push(Bytes::copy_from_slice(&size.to_be_bytes()));
    chunks.extend(frame.into_chunks());
    Ok(chunks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::FetchResponse;
    use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};

    fn fetch_body(records: &[Bytes]) -> FetchResponse {
        let partitions = records
            .iter()
            .enumerate()
            .map(|(i, r)| {
                PartitionData::default()
                    .with_partition_index(i as i32)
                    .with_records(Some(r.clone()))
            })
            .collect();
        FetchResponse::default().with_responses(vec![FetchableTopicResponse::default().with_partitions(partitions)])
    }

    #[test]
    fn chunked_encoding_equals_copying_encoding_for_every_fetch_version() {
        let records: Vec<Bytes> = vec![
            Bytes::from(vec![7u8; 10_000]),
            Bytes::from(vec![1u8; 100]),
            Bytes::from(vec![9u8; 70_000]),
        ];
        let body = fetch_body(&records);
        for version in 4..=17 {
            let mut copied = BytesMut::new();
            let kind = kafka_protocol::messages::ResponseKind::Fetch(body.clone());
            crate::encode_response(&mut copied, ApiKey::Fetch, version, 99, &kind).expect("encodes");
            let chunks = encode_fetch_response_chunked(version, 99, &body).expect("encodes");
            let joined: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
            assert_eq!(joined, copied.to_vec(), "fetch v{version}");
            // The two large batches are passed by reference, the small one is copied.
            let shared = chunks
                .iter()
                .filter(|c| records.iter().any(|r| r.as_ptr() == c.as_ptr()))
                .count();
            assert_eq!(shared, 2, "fetch v{version}");
        }
    }
}
