//! Record-batch header view and validation (Kafka magic v2 format).
//!
//! Layout (big endian): baseOffset i64 @0, batchLength i32 @8 (bytes after this field),
//! partitionLeaderEpoch i32 @12, magic i8 @16, crc u32 @17 (CRC-32C over bytes from @21 to the
//! end of the batch), attributes i16 @21, lastOffsetDelta i32 @23, baseTimestamp i64 @27,
//! maxTimestamp i64 @35, producerId i64 @43, producerEpoch i16 @51, baseSequence i32 @53,
//! recordCount i32 @57; records follow the 61-byte header.
//!
//! baseOffset, batchLength and partitionLeaderEpoch are outside the CRC, so the leader stamps
//! offsets and its epoch in place without recomputing it. Nothing here copies or decompresses
//! the payload; the record-level checks are in [`crate::records`].

use std::ops::Range;

/// Size of the fixed v2 batch header.
pub const BATCH_HEADER_LEN: usize = 61;
/// Bytes before (and not counted in) `batchLength`: baseOffset + batchLength.
pub const LOG_OVERHEAD: usize = 12;
/// The only supported record batch format.
pub const MAGIC_V2: i8 = 2;

const MIN_BATCH_LENGTH: i32 = (BATCH_HEADER_LEN - LOG_OVERHEAD) as i32;

pub(crate) const BASE_OFFSET_POS: usize = 0;
pub(crate) const BATCH_LENGTH_POS: usize = 8;
pub(crate) const LEADER_EPOCH_POS: usize = 12;
pub(crate) const MAGIC_POS: usize = 16;
pub(crate) const CRC_POS: usize = 17;
pub(crate) const ATTRIBUTES_POS: usize = 21;
const LAST_OFFSET_DELTA_POS: usize = 23;
const BASE_TIMESTAMP_POS: usize = 27;
pub(crate) const MAX_TIMESTAMP_POS: usize = 35;
const PRODUCER_ID_POS: usize = 43;
const PRODUCER_EPOCH_POS: usize = 51;
const BASE_SEQUENCE_POS: usize = 53;
const RECORD_COUNT_POS: usize = 57;

const COMPRESSION_MASK: i16 = 0x07;
const TIMESTAMP_TYPE_BIT: i16 = 1 << 3;
const TRANSACTIONAL_BIT: i16 = 1 << 4;
const CONTROL_BIT: i16 = 1 << 5;
/// Highest compression codec id Kafka defines (zstd).
const MAX_COMPRESSION: u8 = 4;

/// Why a record batch was rejected. The broker maps these to Kafka error codes
/// (`broker/src/handlers/errors.rs`): `Truncated`, `InvalidMagic`, `CorruptCrc`,
/// `InvalidLength`, `InvalidCompression`, `CorruptRecords` -> CORRUPT_MESSAGE; `TooLarge`,
/// `DecompressedTooLarge` -> MESSAGE_TOO_LARGE; `InvalidRecordCount`, `Empty`, `InvalidRecords`,
/// `ControlBatch` -> INVALID_RECORD; `RejectedRecords` -> INVALID_TIMESTAMP when one of its
/// records has a bad timestamp, else INVALID_RECORD.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// The buffer ends inside a batch header or a batch body.
    #[error("record batch truncated")]
    Truncated,
    /// The magic byte is not 2.
    #[error("unsupported record batch magic {0}, only magic 2 is supported")]
    InvalidMagic(i8),
    /// The CRC-32C over attributes..end does not match the stored one.
    #[error("record batch crc mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CorruptCrc {
        /// CRC stored in the header.
        stored: u32,
        /// CRC computed over the bytes.
        computed: u32,
    },
    /// batchLength is smaller than the rest of the header.
    #[error("invalid record batch length {0}")]
    InvalidLength(i32),
    /// recordCount < 1 or recordCount != lastOffsetDelta + 1.
    #[error("invalid record count {count} for last offset delta {last_offset_delta}")]
    InvalidRecordCount {
        /// recordCount from the header.
        count: i32,
        /// lastOffsetDelta from the header.
        last_offset_delta: i32,
    },
    /// The batch (including the 12-byte log overhead) exceeds max.message.bytes.
    #[error("record batch of {size} bytes exceeds the maximum of {max} bytes")]
    TooLarge {
        /// Whole batch size in bytes.
        size: usize,
        /// The configured limit.
        max: usize,
    },
    /// The compression codec in the attributes is unknown.
    #[error("unknown compression codec {0}")]
    InvalidCompression(u8),
    /// The payload holds no batch at all.
    #[error("no record batch in payload")]
    Empty,
    /// The records do not parse as Kafka records or do not match the batch header (record
    /// count, offset deltas, bytes after the last record). Kafka: INVALID_RECORD.
    #[error("invalid records in batch: {0}")]
    InvalidRecords(String),
    /// The compressed records section is not a valid stream of its codec (Kafka:
    /// CORRUPT_MESSAGE).
    #[error("corrupt compressed records: {0}")]
    CorruptRecords(String),
    /// The records decompress to more than the cap (`max.message.bytes` times
    /// `storage.max_compression_ratio`): a decompression bomb (Kafka: MESSAGE_TOO_LARGE).
    #[error("records decompress to more than {limit} bytes")]
    DecompressedTooLarge {
        /// The cap in bytes.
        limit: usize,
    },
    /// A client sent a control batch (transaction marker); only the broker writes them
    /// (Kafka: INVALID_RECORD).
    #[error("clients are not allowed to write control records")]
    ControlBatch,
    /// Records that parse but fail Kafka's per-record checks (a keyless record on a compacted
    /// topic, a timestamp outside `message.timestamp.before/after.max.ms`, LogAppendTime set by
    /// a producer): the whole payload is refused and these name the records (KIP-467). The
    /// message is Kafka's `RecordValidationException` message.
    #[error("{}", rejected_records_message(.errors, *.total))]
    RejectedRecords {
        /// The first [`MAX_RECORD_ERRORS`] record errors, in record order.
        errors: Vec<RecordError>,
        /// How many records failed in all.
        total: usize,
    },
}

/// Most record errors one refused payload lists (each costs a message in the response); a
/// client batch holds at most librdkafka's `batch.num.messages` default of 10000 records, but a
/// compressed batch may decompress to millions.
pub const MAX_RECORD_ERRORS: usize = 10_000;

/// Which of Kafka's per-record checks a record failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordErrorKind {
    /// No key on a compacted topic (Kafka: INVALID_RECORD).
    MissingKey,
    /// Timestamp out of bounds or a producer-set LogAppendTime (Kafka: INVALID_TIMESTAMP).
    InvalidTimestamp,
}

/// One record that failed Kafka's per-record checks (a `ProduceResponse.RecordError`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    /// Index of the record among the records of the partition's produce payload (for the one
    /// batch a client sends per partition, its index in that batch: Kafka's `batch_index`).
    pub batch_index: i32,
    /// The check it failed.
    pub kind: RecordErrorKind,
    /// Kafka's message for it (`batch_index_error_message`).
    pub message: String,
}

/// Kafka's `LogValidator.processRecordErrors` message for a refused batch.
fn rejected_records_message(errors: &[RecordError], total: usize) -> String {
    if errors.iter().any(|e| e.kind == RecordErrorKind::InvalidTimestamp) {
        return "One or more records have been rejected due to invalid timestamp".to_string();
    }
    let shown: Vec<String> = errors
        .iter()
        .take(3)
        .map(|e| format!("RecordError(batchIndex={}, message='{}')", e.batch_index, e.message))
        .collect();
    format!(
        "One or more records have been rejected due to {total} record errors in total, and only showing the first three errors at most: [{}]",
        shown.join(", ")
    )
}

/// The fixed 61-byte header of a v2 record batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record.
    pub base_offset: i64,
    /// Bytes after the batchLength field.
    pub batch_length: i32,
    /// Leader epoch stamped by the leader that appended the batch.
    pub partition_leader_epoch: i32,
    /// Format version (always 2 once parsed).
    pub magic: i8,
    /// CRC-32C over attributes..end.
    pub crc: u32,
    /// Compression, timestamp type, transactional and control bits.
    pub attributes: i16,
    /// Offset of the last record relative to `base_offset`.
    pub last_offset_delta: i32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest record timestamp (or the append time for LogAppendTime).
    pub max_timestamp: i64,
    /// Idempotent/transactional producer id, -1 if none.
    pub producer_id: i64,
    /// Producer epoch, -1 if none.
    pub producer_epoch: i16,
    /// Sequence number of the first record, -1 if none.
    pub base_sequence: i32,
    /// Number of records in the batch.
    pub record_count: i32,
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

impl BatchHeader {
    /// Parses the header at the start of `buf`. Checks that the header is complete, the magic is 2
    /// and batchLength covers at least the header; does not check the body or the CRC.
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        if buf.len() < BATCH_HEADER_LEN {
            return Err(BatchError::Truncated);
        }
        let magic = buf[MAGIC_POS] as i8;
        if magic != MAGIC_V2 {
            return Err(BatchError::InvalidMagic(magic));
        }
        let batch_length = be_i32(buf, BATCH_LENGTH_POS);
        if batch_length < MIN_BATCH_LENGTH {
            return Err(BatchError::InvalidLength(batch_length));
        }
        Ok(BatchHeader {
            base_offset: be_i64(buf, BASE_OFFSET_POS),
            batch_length,
            partition_leader_epoch: be_i32(buf, LEADER_EPOCH_POS),
            magic,
            crc: be_i32(buf, CRC_POS) as u32,
            attributes: be_i16(buf, ATTRIBUTES_POS),
            last_offset_delta: be_i32(buf, LAST_OFFSET_DELTA_POS),
            base_timestamp: be_i64(buf, BASE_TIMESTAMP_POS),
            max_timestamp: be_i64(buf, MAX_TIMESTAMP_POS),
            producer_id: be_i64(buf, PRODUCER_ID_POS),
            producer_epoch: be_i16(buf, PRODUCER_EPOCH_POS),
            base_sequence: be_i32(buf, BASE_SEQUENCE_POS),
            record_count: be_i32(buf, RECORD_COUNT_POS),
        })
    }

    /// Writes the header in wire format.
    pub fn encode(&self) -> [u8; BATCH_HEADER_LEN] {
        let mut out = [0u8; BATCH_HEADER_LEN];
        out[BASE_OFFSET_POS..BASE_OFFSET_POS + 8].copy_from_slice(&self.base_offset.to_be_bytes());
        out[BATCH_LENGTH_POS..BATCH_LENGTH_POS + 4].copy_from_slice(&self.batch_length.to_be_bytes());
        out[LEADER_EPOCH_POS..LEADER_EPOCH_POS + 4].copy_from_slice(&self.partition_leader_epoch.to_be_bytes());
        out[MAGIC_POS] = self.magic as u8;
        out[CRC_POS..CRC_POS + 4].copy_from_slice(&self.crc.to_be_bytes());
        out[ATTRIBUTES_POS..ATTRIBUTES_POS + 2].copy_from_slice(&self.attributes.to_be_bytes());
        out[LAST_OFFSET_DELTA_POS..LAST_OFFSET_DELTA_POS + 4].copy_from_slice(&self.last_offset_delta.to_be_bytes());
        out[BASE_TIMESTAMP_POS..BASE_TIMESTAMP_POS + 8].copy_from_slice(&self.base_timestamp.to_be_bytes());
        out[MAX_TIMESTAMP_POS..MAX_TIMESTAMP_POS + 8].copy_from_slice(&self.max_timestamp.to_be_bytes());
        out[PRODUCER_ID_POS..PRODUCER_ID_POS + 8].copy_from_slice(&self.producer_id.to_be_bytes());
        out[PRODUCER_EPOCH_POS..PRODUCER_EPOCH_POS + 2].copy_from_slice(&self.producer_epoch.to_be_bytes());
        out[BASE_SEQUENCE_POS..BASE_SEQUENCE_POS + 4].copy_from_slice(&self.base_sequence.to_be_bytes());
        out[RECORD_COUNT_POS..RECORD_COUNT_POS + 4].copy_from_slice(&self.record_count.to_be_bytes());
        out
    }

    /// Whole batch size in bytes, including the 12-byte log overhead.
    pub fn total_len(&self) -> usize {
        // batch_length >= MIN_BATCH_LENGTH > 0 once parsed.
        self.batch_length.max(0) as usize + LOG_OVERHEAD
    }

    /// Offset of the last record (base offset + lastOffsetDelta).
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// Offset after the last record.
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }

    /// Compression codec id: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd.
    pub fn compression(&self) -> u8 {
        (self.attributes & COMPRESSION_MASK) as u8
    }

    /// True if the timestamps are LogAppendTime (attributes bit 3).
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_BIT != 0
    }

    /// True for transactional batches (attributes bit 4).
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    /// True for control batches such as transaction markers (attributes bit 5).
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }
}

/// Computes the CRC-32C that a batch should carry (over attributes..end).
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[ATTRIBUTES_POS.min(batch.len())..])
}

/// Checks the stored CRC of one complete batch.
pub fn verify_crc(header: &BatchHeader, batch: &[u8]) -> Result<(), BatchError> {
    let computed = compute_crc(batch);
    if computed != header.crc {
        return Err(BatchError::CorruptCrc {
            stored: header.crc,
            computed,
        });
    }
    Ok(())
}

/// One validated batch of a produce payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidatedBatch {
    /// Byte range of the whole batch in the validated buffer.
    pub range: Range<usize>,
    /// The parsed header (as sent by the producer).
    pub header: BatchHeader,
}

/// Summary of a validated produce payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidatedBatches {
    /// Every batch in buffer order.
    pub batches: Vec<ValidatedBatch>,
    /// Total records (== offsets the append will consume, since produce batches are never
    /// compacted).
    pub record_count: u64,
    /// Largest batch max timestamp.
    pub max_timestamp: i64,
    /// Offset of the last record of the batch holding `max_timestamp`, relative to the first
    /// offset of the append.
    pub max_timestamp_offset_delta: i64,
    /// Total bytes (the whole buffer).
    pub total_bytes: usize,
}

/// The batch at the start of `rest`: its header and length, once it is whole, within
/// `max_batch_bytes`, and its CRC-32C matches.
fn whole_batch_at(rest: &[u8], max_batch_bytes: usize) -> Result<(BatchHeader, usize), BatchError> {
    let header = BatchHeader::parse(rest)?;
    let total = header.total_len();
    if total > rest.len() {
        return Err(BatchError::Truncated);
    }
    if total > max_batch_bytes {
        return Err(BatchError::TooLarge {
            size: total,
            max: max_batch_bytes,
        });
    }
    verify_crc(&header, &rest[..total])?;
    Ok((header, total))
}

/// Validates the `records` field of one partition of a Produce request: one or more
/// concatenated v2 batches. Checks every batch: magic 2, sane batchLength and fully inside the
/// buffer (no trailing partial batch), size <= `max_batch_bytes` (incl. the 12-byte log
/// overhead, as Kafka's max.message.bytes), CRC-32C, known compression codec, and
/// recordCount >= 1 and == lastOffsetDelta + 1.
///
/// Never copies or decompresses the payload: [`crate::records::validate_records`] checks the
/// records of each batch (control batches, record count, keys, timestamps).
pub fn validate_produce_batches(buf: &[u8], max_batch_bytes: usize) -> Result<ValidatedBatches, BatchError> {
    if buf.is_empty() {
        return Err(BatchError::Empty);
    }
    let mut batches = Vec::with_capacity(1);
    let mut pos = 0usize;
    let mut record_count: u64 = 0;
    let mut max_timestamp = i64::MIN;
    let mut max_timestamp_offset_delta = 0i64;
    while pos < buf.len() {
        let (header, total) = whole_batch_at(&buf[pos..], max_batch_bytes)?;
        let compression = header.compression();
        if compression > MAX_COMPRESSION {
            return Err(BatchError::InvalidCompression(compression));
        }
        if header.record_count < 1
            || header.last_offset_delta < 0
            || i64::from(header.record_count) != i64::from(header.last_offset_delta) + 1
        {
            return Err(BatchError::InvalidRecordCount {
                count: header.record_count,
                last_offset_delta: header.last_offset_delta,
            });
        }
        if header.max_timestamp > max_timestamp {
            max_timestamp = header.max_timestamp;
            max_timestamp_offset_delta = record_count as i64 + i64::from(header.last_offset_delta);
        }
        record_count += header.record_count as u64;
        batches.push(ValidatedBatch {
            range: pos..pos + total,
            header,
        });
        pos += total;
    }
    Ok(ValidatedBatches {
        batches,
        record_count,
        max_timestamp,
        max_timestamp_offset_delta,
        total_bytes: buf.len(),
    })
}

/// Validates batches copied from a partition leader (replica fetch): each a whole magic-2 batch
/// inside the buffer with a correct CRC-32C, no larger than `max_batch_bytes`, offsets strictly
/// increasing from the first. The leader already validated the records; compacted batches may
/// have fewer records than offsets, so only `record_count <= last_offset_delta + 1` is required.
pub fn validate_replicated_batches(buf: &[u8], max_batch_bytes: usize) -> Result<Vec<ValidatedBatch>, BatchError> {
    if buf.is_empty() {
        return Err(BatchError::Empty);
    }
    let mut batches = Vec::new();
    let mut pos = 0usize;
    let mut next_offset = i64::MIN;
    while pos < buf.len() {
        let (header, total) = whole_batch_at(&buf[pos..], max_batch_bytes)?;
        if header.last_offset_delta < 0
            || header.record_count < 0
            || i64::from(header.record_count) > i64::from(header.last_offset_delta) + 1
            || header.base_offset < next_offset
        {
            return Err(BatchError::InvalidRecordCount {
                count: header.record_count,
                last_offset_delta: header.last_offset_delta,
            });
        }
        next_offset = header.next_offset();
        batches.push(ValidatedBatch {
            range: pos..pos + total,
            header,
        });
        pos += total;
    }
    Ok(batches)
}

/// A batch found by [`scan_batches`].
#[derive(Clone, Copy, Debug)]
pub struct RawBatch<'a> {
    /// Byte position of the batch in the scanned buffer.
    pub position: usize,
    /// The parsed header.
    pub header: BatchHeader,
    /// The whole batch (header included).
    pub bytes: &'a [u8],
}

/// Iterator over the batches of a buffer; see [`scan_batches`].
#[derive(Clone, Debug)]
pub struct BatchIter<'a> {
    buf: &'a [u8],
    pos: usize,
    done: bool,
}

impl<'a> BatchIter<'a> {
    /// Position just after the last batch returned (the valid prefix length once the iterator
    /// is exhausted).
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes left after the last complete batch (a torn tail, or bytes after an invalid header).
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
}

impl<'a> Iterator for BatchIter<'a> {
    type Item = Result<RawBatch<'a>, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.pos >= self.buf.len() {
            return None;
        }
        let rest = &self.buf[self.pos..];
        match BatchHeader::parse(rest) {
            Ok(header) if header.total_len() <= rest.len() => {
                let total = header.total_len();
                let item = RawBatch {
                    position: self.pos,
                    header,
                    bytes: &rest[..total],
                };
                self.pos += total;
                Some(Ok(item))
            }
            Ok(_) | Err(BatchError::Truncated) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Walks batch boundaries in `buf` (header parse only, no CRC check). Stops silently at a
/// truncated tail; yields one `Err` and stops at an invalid header (bad magic or length).
/// After the iterator is exhausted, [`BatchIter::position`] is the end of the last whole batch.
pub fn scan_batches(buf: &[u8]) -> BatchIter<'_> {
    BatchIter {
        buf,
        pos: 0,
        done: false,
    }
}

/// Produces the stamped header of a batch about to be appended: base offset and partition
/// leader epoch (outside the CRC), plus, for LogAppendTime, the timestamp-type bit and
/// maxTimestamp, with the CRC recomputed over the new attributes..header end and `body`.
pub(crate) fn stamp_header(
    original: &[u8],
    body: &[u8],
    base_offset: i64,
    leader_epoch: i32,
    log_append_time: Option<i64>,
) -> [u8; BATCH_HEADER_LEN] {
    let mut out = [0u8; BATCH_HEADER_LEN];
    out.copy_from_slice(&original[..BATCH_HEADER_LEN]);
    out[BASE_OFFSET_POS..BASE_OFFSET_POS + 8].copy_from_slice(&base_offset.to_be_bytes());
    out[LEADER_EPOCH_POS..LEADER_EPOCH_POS + 4].copy_from_slice(&leader_epoch.to_be_bytes());
    if let Some(ts) = log_append_time {
        let attributes = be_i16(&out, ATTRIBUTES_POS) | TIMESTAMP_TYPE_BIT;
        out[ATTRIBUTES_POS..ATTRIBUTES_POS + 2].copy_from_slice(&attributes.to_be_bytes());
        out[MAX_TIMESTAMP_POS..MAX_TIMESTAMP_POS + 8].copy_from_slice(&ts.to_be_bytes());
        let crc = crc32c::crc32c_append(crc32c::crc32c(&out[ATTRIBUTES_POS..]), body);
        out[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
    }
    out
}

#[cfg(test)]
pub(crate) mod test_util {
    //! Builders for test batches.
    use bytes::{Bytes, BytesMut};
    use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};

    /// Encodes one batch of `n` records with the given timestamps (ts of record i = ts(i)).
    pub(crate) fn batch_with(
        n: usize,
        value_len: usize,
        compression: Compression,
        ts: impl Fn(usize) -> i64,
    ) -> Vec<u8> {
        let records: Vec<Record> = (0..n)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                // The encoder splits batches where offset - sequence changes.
                sequence: i as i32,
                timestamp: ts(i),
                key: Some(Bytes::from(format!("key-{i}"))),
                value: Some(Bytes::from(vec![(i % 251) as u8; value_len])),
                headers: Default::default(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            records.iter(),
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .expect("encode test batch");
        buf.to_vec()
    }

    /// One uncompressed batch of `n` records, all with timestamp `ts`.
    pub(crate) fn batch(n: usize, value_len: usize, ts: i64) -> Vec<u8> {
        batch_with(n, value_len, Compression::None, |_| ts)
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::batch;
    use super::*;

    fn set_i32(buf: &mut [u8], at: usize, v: i32) {
        buf[at..at + 4].copy_from_slice(&v.to_be_bytes());
    }

    fn fix_crc(buf: &mut [u8]) {
        let crc = compute_crc(buf);
        buf[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
    }

    #[test]
    fn validate_good_batch_returns_summary() {
        let b = batch(5, 10, 1_000);
        let v = validate_produce_batches(&b, 1 << 20).expect("valid");
        assert_eq!(v.batches.len(), 1);
        assert_eq!(v.batches[0].range, 0..b.len());
        assert_eq!(v.record_count, 5);
        assert_eq!(v.max_timestamp, 1_000);
        assert_eq!(v.max_timestamp_offset_delta, 4);
        assert_eq!(v.total_bytes, b.len());
        let h = v.batches[0].header;
        assert_eq!(h.magic, 2);
        assert_eq!(h.total_len(), b.len());
        assert_eq!(h.last_offset_delta, 4);
        assert_eq!(h.compression(), 0);
        assert!(!h.is_log_append_time() && !h.is_control() && !h.is_transactional());
    }

    #[test]
    fn validate_concatenated_batches_counts_all() {
        let mut b = batch(3, 10, 500);
        let second = batch(2, 10, 900);
        let first_len = b.len();
        b.extend_from_slice(&second);
        let v = validate_produce_batches(&b, 1 << 20).expect("valid");
        assert_eq!(v.batches.len(), 2);
        assert_eq!(v.batches[1].range, first_len..b.len());
        assert_eq!(v.record_count, 5);
        assert_eq!(v.max_timestamp, 900);
        assert_eq!(v.max_timestamp_offset_delta, 4);
    }

    #[test]
    fn validate_wrong_crc_is_corrupt_crc() {
        let mut b = batch(2, 10, 1);
        let last = b.len() - 1;
        b[last] ^= 0xff;
        assert!(matches!(
            validate_produce_batches(&b, 1 << 20),
            Err(BatchError::CorruptCrc { .. })
        ));
    }

    #[test]
    fn validate_wrong_magic_is_invalid_magic() {
        let mut b = batch(2, 10, 1);
        b[MAGIC_POS] = 1;
        assert_eq!(validate_produce_batches(&b, 1 << 20), Err(BatchError::InvalidMagic(1)));
    }

    #[test]
    fn validate_truncated_batch_is_truncated() {
        let b = batch(2, 10, 1);
        assert_eq!(
            validate_produce_batches(&b[..b.len() - 1], 1 << 20),
            Err(BatchError::Truncated)
        );
        assert_eq!(validate_produce_batches(&b[..30], 1 << 20), Err(BatchError::Truncated));
        let mut two = b.clone();
        two.extend_from_slice(&b[..70]);
        assert_eq!(validate_produce_batches(&two, 1 << 20), Err(BatchError::Truncated));
    }

    #[test]
    fn validate_length_lies_is_rejected() {
        let b = batch(2, 10, 1);
        // Longer than the buffer.
        let mut longer = b.clone();
        set_i32(&mut longer, BATCH_LENGTH_POS, (b.len() - LOG_OVERHEAD + 5) as i32);
        assert_eq!(validate_produce_batches(&longer, 1 << 20), Err(BatchError::Truncated));
        // Shorter than the header.
        let mut tiny = b.clone();
        set_i32(&mut tiny, BATCH_LENGTH_POS, 10);
        assert_eq!(
            validate_produce_batches(&tiny, 1 << 20),
            Err(BatchError::InvalidLength(10))
        );
        let mut negative = b.clone();
        set_i32(&mut negative, BATCH_LENGTH_POS, -1);
        assert_eq!(
            validate_produce_batches(&negative, 1 << 20),
            Err(BatchError::InvalidLength(-1))
        );
        // Shorter than the real batch: the CRC no longer matches.
        let mut shorter = b.clone();
        set_i32(&mut shorter, BATCH_LENGTH_POS, (b.len() - LOG_OVERHEAD - 3) as i32);
        assert!(validate_produce_batches(&shorter, 1 << 20).is_err());
    }

    #[test]
    fn validate_too_large_is_too_large() {
        let b = batch(2, 100, 1);
        assert_eq!(
            validate_produce_batches(&b, b.len() - 1),
            Err(BatchError::TooLarge {
                size: b.len(),
                max: b.len() - 1
            })
        );
        assert!(validate_produce_batches(&b, b.len()).is_ok());
    }

    #[test]
    fn validate_record_count_mismatch_is_invalid_record_count() {
        let mut b = batch(3, 10, 1);
        set_i32(&mut b, RECORD_COUNT_POS, 2);
        fix_crc(&mut b);
        assert_eq!(
            validate_produce_batches(&b, 1 << 20),
            Err(BatchError::InvalidRecordCount {
                count: 2,
                last_offset_delta: 2
            })
        );
        let mut zero = batch(1, 10, 1);
        set_i32(&mut zero, RECORD_COUNT_POS, 0);
        set_i32(&mut zero, LAST_OFFSET_DELTA_POS, -1);
        fix_crc(&mut zero);
        assert!(matches!(
            validate_produce_batches(&zero, 1 << 20),
            Err(BatchError::InvalidRecordCount { count: 0, .. })
        ));
    }

    #[test]
    fn validate_unknown_compression_is_rejected() {
        let mut b = batch(1, 10, 1);
        b[ATTRIBUTES_POS + 1] |= 0x07;
        fix_crc(&mut b);
        assert_eq!(
            validate_produce_batches(&b, 1 << 20),
            Err(BatchError::InvalidCompression(7))
        );
    }

    #[test]
    fn validate_empty_is_empty() {
        assert_eq!(validate_produce_batches(&[], 100), Err(BatchError::Empty));
    }

    #[test]
    fn header_encode_parse_round_trips() {
        let b = batch(4, 10, 77);
        let h = BatchHeader::parse(&b).expect("parse");
        assert_eq!(&h.encode()[..], &b[..BATCH_HEADER_LEN]);
    }

    #[test]
    fn stamp_log_append_time_keeps_valid_crc() {
        let b = batch(3, 50, 1_000);
        let stamped = stamp_header(&b, &b[BATCH_HEADER_LEN..], 1234, 7, Some(99_999));
        let mut whole = stamped.to_vec();
        whole.extend_from_slice(&b[BATCH_HEADER_LEN..]);
        let h = BatchHeader::parse(&whole).expect("parse");
        assert_eq!(h.base_offset, 1234);
        assert_eq!(h.partition_leader_epoch, 7);
        assert!(h.is_log_append_time());
        assert_eq!(h.max_timestamp, 99_999);
        assert_eq!(h.base_timestamp, 1_000);
        verify_crc(&h, &whole).expect("crc still valid");
        assert_ne!(h.crc, BatchHeader::parse(&b).expect("parse").crc);
        // The kafka-protocol decoder agrees.
        let mut bytes = bytes::Bytes::from(whole);
        kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes).expect("decodes");
    }

    #[test]
    fn stamp_create_time_keeps_crc_untouched() {
        let b = batch(3, 50, 1_000);
        let stamped = stamp_header(&b, &b[BATCH_HEADER_LEN..], 42, 3, None);
        assert_eq!(&stamped[CRC_POS..], &b[CRC_POS..BATCH_HEADER_LEN]);
        let mut whole = stamped.to_vec();
        whole.extend_from_slice(&b[BATCH_HEADER_LEN..]);
        let h = BatchHeader::parse(&whole).expect("parse");
        verify_crc(&h, &whole).expect("crc valid");
        assert_eq!(h.base_offset, 42);
    }

    #[test]
    fn scan_batches_stops_at_truncated_tail() {
        let one = batch(2, 10, 1);
        let mut buf = one.clone();
        buf.extend_from_slice(&one);
        buf.extend_from_slice(&one[..one.len() / 2]);
        let mut it = scan_batches(&buf);
        let found: Vec<_> = it.by_ref().map(|r| r.expect("valid").position).collect();
        assert_eq!(found, vec![0, one.len()]);
        assert_eq!(it.position(), 2 * one.len());
        assert_eq!(it.remaining(), one.len() / 2);
    }

    #[test]
    fn scan_batches_reports_bad_header_once() {
        let one = batch(2, 10, 1);
        let mut buf = one.clone();
        buf.extend_from_slice(&[0u8; 70]);
        let items: Vec<_> = scan_batches(&buf).collect();
        assert_eq!(items.len(), 2);
        assert!(items[0].is_ok());
        assert_eq!(items[1].as_ref().map(|_| ()), Err(&BatchError::InvalidMagic(0)));
    }
}
