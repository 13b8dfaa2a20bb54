//! Bounded reading of the records inside a v2 record batch: every decompression in Fjord goes
//! through here. Decompression streams (gzip, snappy, lz4, zstd) with a cap on the bytes it
//! produces, so a small "decompression bomb" costs at most the cap in CPU and never the cap in
//! memory when scanning; records are parsed as Kafka's `DefaultRecord` (length, attributes,
//! timestamp delta, offset delta, key, value, headers) and checked as Kafka's record iterator
//! checks them: each record's fields fill exactly its declared length, the batch holds exactly
//! `recordCount` records and nothing follows the last one.
//!
//! - [`scan_records`] streams the records of one batch through a visitor without holding more
//!   than a 64 KiB window of decompressed data (produce validation, timestamp lookups);
//! - [`validate_records`] is the produce path's record-level check (Kafka's `LogValidator`);
//! - [`decompress_bounded`] and [`RecordIter`] materialise a records section for callers that
//!   need the bytes (the log cleaner, the group coordinator's load).
//!
//! Errors are [`BatchError`]s: a codec stream that does not decode is `CorruptRecords`
//! (CORRUPT_MESSAGE), output past the cap is `DecompressedTooLarge` (MESSAGE_TOO_LARGE), records
//! that do not parse or do not match the header are `InvalidRecords` (INVALID_RECORD).

use std::io::{self, Read};
use std::ops::ControlFlow;

use crate::batch::{BATCH_HEADER_LEN, BatchError, BatchHeader, MAX_RECORD_ERRORS, RecordError, RecordErrorKind};

/// Size of the window the streaming scanner decompresses into.
const WINDOW: usize = 64 * 1024;
/// xerial snappy-java framing: 8 magic bytes, then version and compatible version (i32 each).
const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_LEN: usize = 16;

/// The fixed fields of one record; key and value are described by their lengths (-1 = null).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordMeta {
    /// Record attributes (unused by Kafka today, always 0).
    pub attributes: i8,
    /// Timestamp relative to the batch's base timestamp.
    pub timestamp_delta: i64,
    /// Offset relative to the batch's base offset.
    pub offset_delta: i32,
    /// Key length, -1 for a null key.
    pub key_len: i32,
    /// Value length, -1 for a null value (a tombstone).
    pub value_len: i32,
    /// Number of headers.
    pub header_count: i32,
}

/// One record of a materialised records section, borrowing its bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// The fixed fields.
    pub meta: RecordMeta,
    /// The key bytes, `None` for a null key.
    pub key: Option<&'a [u8]>,
    /// The value bytes, `None` for a null value.
    pub value: Option<&'a [u8]>,
    /// The whole encoded record, length prefix included (for copying it unchanged).
    pub raw: &'a [u8],
    /// Byte position of the record in the records section.
    pub position: usize,
}

/// Marks an io::Error raised because the output cap was reached.
#[derive(Debug)]
struct OverLimit;

impl std::fmt::Display for OverLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("decompressed output over the limit")
    }
}

impl std::error::Error for OverLimit {}

fn over_limit() -> io::Error {
    io::Error::other(OverLimit)
}

/// Snappy as Kafka writes it (xerial framing: a header, then length-prefixed raw blocks) or, as
/// snappy-java falls back to, one raw snappy block. Each block's declared size is checked against
/// the remaining budget before anything is allocated.
struct SnappyReader<'a> {
    src: &'a [u8],
    framed: bool,
    block: Vec<u8>,
    pos: usize,
    budget: usize,
    done: bool,
}

impl<'a> SnappyReader<'a> {
    fn new(body: &'a [u8], budget: usize) -> SnappyReader<'a> {
        let framed = body.len() >= XERIAL_HEADER_LEN && body.starts_with(XERIAL_MAGIC);
        SnappyReader {
            src: if framed { &body[XERIAL_HEADER_LEN..] } else { body },
            framed,
            block: Vec::new(),
            pos: 0,
            budget,
            done: false,
        }
    }

    /// Decodes the next block into `self.block`; false at the end of the stream.
    fn next_block(&mut self) -> io::Result<bool> {
        let corrupt = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("snappy: {what}"));
        let block = if self.framed {
            if self.src.is_empty() {
                return Ok(false);
            }
            if self.src.len() < 4 {
                return Err(corrupt("truncated block length"));
            }
            let len = u32::from_be_bytes([self.src[0], self.src[1], self.src[2], self.src[3]]) as usize;
            let rest = &self.src[4..];
            if len > rest.len() {
                return Err(corrupt("block extends past the end of the stream"));
            }
            let (block, tail) = rest.split_at(len);
            self.src = tail;
            block
        } else {
            if self.done {
                return Ok(false);
            }
            self.done = true;
            std::mem::take(&mut self.src)
        };
        let len = snap::raw::decompress_len(block).map_err(|e| corrupt(&e.to_string()))?;
        if len > self.budget {
            return Err(over_limit());
        }
        self.budget -= len;
        self.block.clear();
        self.block.resize(len, 0);
        let n = snap::raw::Decoder::new()
            .decompress(block, &mut self.block)
            .map_err(|e| corrupt(&e.to_string()))?;
        self.block.truncate(n);
        self.pos = 0;
        Ok(true)
    }
}

impl Read for SnappyReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.block.len() {
            if buf.is_empty() || !self.next_block()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.block.len() - self.pos);
        buf[..n].copy_from_slice(&self.block[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// A streaming decompressor over one batch's records section.
enum Decoder<'a> {
    Gzip(Box<flate2::read::MultiGzDecoder<&'a [u8]>>),
    Snappy(SnappyReader<'a>),
    Lz4(Box<lz4::Decoder<&'a [u8]>>),
    Zstd(Box<zstd::stream::read::Decoder<'static, &'a [u8]>>),
}

impl<'a> Decoder<'a> {
    /// `None` for codec 0 (no compression).
    fn new(codec: u8, body: &'a [u8], limit: usize) -> Result<Option<Decoder<'a>>, BatchError> {
        let corrupt = |e: io::Error| BatchError::CorruptRecords(e.to_string());
        Ok(Some(match codec {
            0 => return Ok(None),
            1 => Decoder::Gzip(Box::new(flate2::read::MultiGzDecoder::new(body))),
            2 => Decoder::Snappy(SnappyReader::new(body, limit)),
            3 => Decoder::Lz4(Box::new(lz4::Decoder::new(body).map_err(corrupt)?)),
            4 => Decoder::Zstd(Box::new(
                zstd::stream::read::Decoder::with_buffer(body).map_err(corrupt)?,
            )),
            other => return Err(BatchError::InvalidCompression(other)),
        }))
    }

    /// After the stream returned end-of-file: whether it really ended where the codec says it
    /// ends (lz4's reader reports a truncated frame as a plain end of file).
    fn check_complete(self) -> Result<(), BatchError> {
        match self {
            Decoder::Lz4(d) => d
                .finish()
                .1
                .map_err(|_| BatchError::CorruptRecords("lz4 frame is truncated".to_string())),
            _ => Ok(()),
        }
    }
}

impl Read for Decoder<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoder::Gzip(d) => d.read(buf),
            Decoder::Snappy(d) => d.read(buf),
            Decoder::Lz4(d) => d.read(buf),
            Decoder::Zstd(d) => d.read(buf),
        }
    }
}

fn io_error(e: io::Error, limit: usize) -> BatchError {
    if e.get_ref().is_some_and(|inner| inner.is::<OverLimit>()) {
        BatchError::DecompressedTooLarge { limit }
    } else {
        BatchError::CorruptRecords(e.to_string())
    }
}

/// Decompresses a records section (`codec` from the batch attributes) into memory, refusing
/// to produce more than `limit` bytes. Codec 0 returns the input unchanged.
pub fn decompress_bounded(codec: u8, body: &[u8], limit: usize) -> Result<Vec<u8>, BatchError> {
    let Some(mut decoder) = Decoder::new(codec, body, limit)? else {
        return Ok(body.to_vec());
    };
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit).min(1 << 20));
    let read = (&mut decoder)
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| io_error(e, limit))?;
    if read > limit {
        return Err(BatchError::DecompressedTooLarge { limit });
    }
    decoder.check_complete()?;
    Ok(out)
}

fn invalid(what: impl Into<String>) -> BatchError {
    BatchError::InvalidRecords(what.into())
}

/// Reads a zig-zag varint of at most `max_bytes` bytes from `next_byte`.
fn varint(max_bytes: usize, mut next_byte: impl FnMut() -> Result<u8, BatchError>) -> Result<i64, BatchError> {
    let mut raw: u64 = 0;
    for i in 0..max_bytes {
        let b = next_byte()?;
        raw |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64));
        }
    }
    Err(invalid("varint too long"))
}

/// A window over the decompressed (or plain) records section.
struct Stream<'a> {
    decoder: Option<Decoder<'a>>,
    /// The plain section when there is no decoder, else the window.
    plain: &'a [u8],
    window: Vec<u8>,
    pos: usize,
    produced: usize,
    limit: usize,
    eof: bool,
}

impl<'a> Stream<'a> {
    fn new(codec: u8, body: &'a [u8], limit: usize) -> Result<Stream<'a>, BatchError> {
        let decoder = Decoder::new(codec, body, limit)?;
        let plain = if decoder.is_some() { &[][..] } else { body };
        Ok(Stream {
            decoder,
            plain,
            window: Vec::new(),
            pos: 0,
            produced: 0,
            limit,
            eof: false,
        })
    }

    fn data(&self) -> &[u8] {
        if self.decoder.is_some() {
            &self.window
        } else {
            self.plain
        }
    }

    /// Makes at least one unread byte available; false at the end of the section.
    fn fill(&mut self) -> Result<bool, BatchError> {
        if self.pos < self.data().len() {
            return Ok(true);
        }
        let Some(decoder) = self.decoder.as_mut() else {
            return Ok(false);
        };
        if self.eof {
            return Ok(false);
        }
        self.window.resize(WINDOW, 0);
        self.pos = 0;
        let n = loop {
            match decoder.read(&mut self.window) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_error(e, self.limit)),
            }
        };
        self.window.truncate(n);
        if n == 0 {
            self.eof = true;
            if let Some(d) = self.decoder.take() {
                d.check_complete()?;
            }
            // Keep `data()` pointing at the (empty) window.
            self.decoder = None;
            self.plain = &[];
            return Ok(false);
        }
        self.produced += n;
        if self.produced > self.limit {
            return Err(BatchError::DecompressedTooLarge { limit: self.limit });
        }
        Ok(true)
    }

    /// Reads the rest of the section (within the cap), for its codec errors.
    fn drain(&mut self) -> Result<(), BatchError> {
        loop {
            self.pos = self.data().len();
            if !self.fill()? {
                return Ok(());
            }
        }
    }

    fn byte(&mut self) -> Result<u8, BatchError> {
        if !self.fill()? {
            return Err(invalid("records section ends inside a record"));
        }
        let b = self.data()[self.pos];
        self.pos += 1;
        Ok(b)
    }

    fn skip(&mut self, mut n: usize) -> Result<(), BatchError> {
        while n > 0 {
            if !self.fill()? {
                return Err(invalid("records section ends inside a record"));
            }
            let step = n.min(self.data().len() - self.pos);
            self.pos += step;
            n -= step;
        }
        Ok(())
    }
}

/// Where the record parser takes its bytes from.
trait ByteSource {
    fn byte(&mut self) -> Result<u8, BatchError>;
    fn skip(&mut self, n: usize) -> Result<(), BatchError>;
}

impl ByteSource for Stream<'_> {
    fn byte(&mut self) -> Result<u8, BatchError> {
        Stream::byte(self)
    }
    fn skip(&mut self, n: usize) -> Result<(), BatchError> {
        Stream::skip(self, n)
    }
}

/// A records section in memory.
struct Slice<'a> {
    data: &'a [u8],
    pos: usize,
}

impl ByteSource for Slice<'_> {
    fn byte(&mut self) -> Result<u8, BatchError> {
        let b = *self
            .data
            .get(self.pos)
            .ok_or_else(|| invalid("records section ends inside a record"))?;
        self.pos += 1;
        Ok(b)
    }
    fn skip(&mut self, n: usize) -> Result<(), BatchError> {
        if n > self.data.len() - self.pos {
            return Err(invalid("records section ends inside a record"));
        }
        self.pos += n;
        Ok(())
    }
}

/// One record's body: at most `left` more bytes of `src`.
struct Body<'s, S> {
    src: &'s mut S,
    used: usize,
    len: usize,
}

impl<S: ByteSource> Body<'_, S> {
    fn byte(&mut self) -> Result<u8, BatchError> {
        if self.used >= self.len {
            return Err(invalid("record field extends past the record's length"));
        }
        self.used += 1;
        self.src.byte()
    }

    fn varint(&mut self, max_bytes: usize) -> Result<i64, BatchError> {
        varint(max_bytes, || self.byte())
    }

    /// A length-prefixed field: (length or -1, position of its bytes in the body).
    fn field(&mut self, what: &str) -> Result<(i32, Option<usize>), BatchError> {
        let n = self.varint(5)?;
        if n < -1 || n > i64::from(i32::MAX) {
            return Err(invalid(format!("invalid {what} length {n}")));
        }
        if n < 0 {
            return Ok((-1, None));
        }
        let n = n as usize;
        if n > self.len - self.used {
            return Err(invalid(format!("{what} extends past the record's length")));
        }
        let at = self.used;
        self.used += n;
        self.src.skip(n)?;
        Ok((n as i32, Some(at)))
    }
}

/// Parses one record body of `len` bytes (after its length prefix), checking that the fields
/// fill exactly that length. Returns the fields and the body positions of key and value.
fn parse_body<S: ByteSource>(src: &mut S, len: i64) -> Result<(RecordMeta, Option<usize>, Option<usize>), BatchError> {
    let len = usize::try_from(len)
        .ok()
        .filter(|l| *l > 0)
        .ok_or_else(|| invalid(format!("invalid record length {len}")))?;
    let mut b = Body { src, used: 0, len };
    let attributes = b.byte()? as i8;
    let timestamp_delta = b.varint(10)?;
    let offset_delta = i32::try_from(b.varint(5)?).map_err(|_| invalid("offset delta out of range"))?;
    let (key_len, key_at) = b.field("key")?;
    let (value_len, value_at) = b.field("value")?;
    let header_count = b.varint(5)?;
    let header_count = i32::try_from(header_count)
        .ok()
        .filter(|c| *c >= 0)
        .ok_or_else(|| invalid(format!("invalid header count {header_count}")))?;
    for _ in 0..header_count {
        if b.field("header key")?.0 < 0 {
            return Err(invalid("null header key"));
        }
        b.field("header value")?;
    }
    if b.used != len {
        return Err(invalid(format!(
            "record declares {len} bytes but its fields take {}",
            b.used
        )));
    }
    Ok((
        RecordMeta {
            attributes,
            timestamp_delta,
            offset_delta,
            key_len,
            value_len,
            header_count,
        },
        key_at,
        value_at,
    ))
}

/// Streams the records of one batch (`batch` is the whole batch, header included) through
/// `visit`, decompressing at most `limit` bytes and holding at most a 64 KiB window. Checks the
/// structure as Kafka's record iterator does: exactly `recordCount` records, each filling its
/// declared length, nothing after the last. A visitor that breaks stops the scan early (and
/// skips the checks of the rest). Returns the number of records visited.
pub fn scan_records(
    header: &BatchHeader,
    batch: &[u8],
    limit: usize,
    mut visit: impl FnMut(&RecordMeta) -> Result<ControlFlow<()>, BatchError>,
) -> Result<u32, BatchError> {
    let body = batch
        .get(BATCH_HEADER_LEN..header.total_len().min(batch.len()))
        .unwrap_or(&[]);
    let mut s = Stream::new(header.compression(), body, limit)?;
    match scan_stream(header, &mut s, &mut visit) {
        // Records that do not parse out of a compressed stream are most often a corrupt stream
        // that decoded into garbage before its checksum was reached: read on to tell.
        Err(BatchError::InvalidRecords(reason)) => match s.drain() {
            Err(corrupt @ BatchError::CorruptRecords(_)) => Err(corrupt),
            _ => Err(BatchError::InvalidRecords(reason)),
        },
        other => other,
    }
}

fn scan_stream(
    header: &BatchHeader,
    s: &mut Stream<'_>,
    visit: &mut impl FnMut(&RecordMeta) -> Result<ControlFlow<()>, BatchError>,
) -> Result<u32, BatchError> {
    let count = u32::try_from(header.record_count).map_err(|_| invalid("negative record count"))?;
    for i in 0..count {
        if !s.fill()? {
            return Err(invalid(format!("batch declares {count} records but holds {i}")));
        }
        let len = varint(5, || s.byte())?;
        let (meta, _, _) = parse_body(s, len)?;
        if visit(&meta)?.is_break() {
            return Ok(i + 1);
        }
    }
    if s.fill()? {
        return Err(invalid(format!("bytes follow the last of the {count} records")));
    }
    Ok(count)
}

/// Iterates the records of a materialised records section (see [`decompress_bounded`]); stops
/// after the first error.
pub struct RecordIter<'a> {
    data: &'a [u8],
    pos: usize,
    failed: bool,
}

impl<'a> RecordIter<'a> {
    /// Records of `data`, a whole (decompressed) records section.
    pub fn new(data: &'a [u8]) -> RecordIter<'a> {
        RecordIter {
            data,
            pos: 0,
            failed: false,
        }
    }

    fn parse_one(&mut self) -> Result<RecordView<'a>, BatchError> {
        let data = self.data;
        let start = self.pos;
        let mut src = Slice { data, pos: start };
        let len = varint(5, || src.byte())?;
        let body_start = src.pos;
        let (meta, key_at, value_at) = parse_body(&mut src, len)?;
        self.pos = src.pos;
        let slice = |at: Option<usize>, n: i32| at.map(|a| &data[body_start + a..body_start + a + n as usize]);
        Ok(RecordView {
            meta,
            key: slice(key_at, meta.key_len),
            value: slice(value_at, meta.value_len),
            raw: &data[start..src.pos],
            position: start,
        })
    }
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<RecordView<'a>, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.data.len() {
            return None;
        }
        let item = self.parse_one();
        self.failed = item.is_err();
        Some(item)
    }
}

/// Where an append comes from (Kafka's `AppendOrigin`): client batches get every check, the
/// broker's own coordinator batches skip the ones that only concern clients.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AppendOrigin {
    /// A producer (Produce request).
    #[default]
    Client,
    /// The broker itself (the group coordinator's `__consumer_offsets` records).
    Coordinator,
}

/// The record-level checks of Kafka's `LogValidator` for one produce payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordChecks {
    /// Who is appending.
    pub origin: AppendOrigin,
    /// Most bytes one batch's records may decompress to.
    pub max_decompressed_bytes: usize,
    /// Refuse records without a key (`cleanup.policy` includes `compact`).
    pub require_keys: bool,
    /// `message.timestamp.type=CreateTime`: check record timestamps against the bounds below
    /// (LogAppendTime topics overwrite them instead).
    pub create_time: bool,
    /// `message.timestamp.before.max.ms`.
    pub timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms`.
    pub timestamp_after_max_ms: i64,
    /// The broker's clock for the timestamp bounds.
    pub now_ms: i64,
}

/// Kafka's `LogValidator` checks of one batch of a produce payload, after the header checks of
/// [`crate::batch::validate_produce_batches`]: no control batches from clients, records that
/// parse (decompressed within the cap), exactly `recordCount` of them with offset deltas
/// 0, 1, 2, ... (so the last is `lastOffsetDelta`), keys on compacted topics, and CreateTime
/// timestamps within `message.timestamp.before/after.max.ms` (a client may not set the
/// LogAppendTime bit on a CreateTime topic).
///
/// A batch that does not parse fails at the first problem; records that parse but fail the key
/// or timestamp checks are all collected (every record is checked, as Kafka does) and refuse the
/// batch with [`BatchError::RejectedRecords`], naming each record by its index in the batch.
pub fn validate_records(header: &BatchHeader, batch: &[u8], checks: &RecordChecks) -> Result<(), BatchError> {
    if checks.origin == AppendOrigin::Client && header.is_control() {
        return Err(BatchError::ControlBatch);
    }
    let client = checks.origin == AppendOrigin::Client;
    let producer_set_log_append_time = client && checks.create_time && header.is_log_append_time();
    let check_timestamps = client && checks.create_time && !header.is_log_append_time();
    let low = checks.now_ms.saturating_sub(checks.timestamp_before_max_ms);
    let high = checks.now_ms.saturating_add(checks.timestamp_after_max_ms);
    let mut errors: Vec<RecordError> = Vec::new();
    let mut total = 0usize;
    let mut expected: i32 = 0;
    scan_records(header, batch, checks.max_decompressed_bytes, |r| {
        if r.offset_delta != expected {
            return Err(invalid(format!(
                "record {expected} has offset delta {}",
                r.offset_delta
            )));
        }
        let index = expected;
        expected = expected.saturating_add(1);
        let offset = header.base_offset.saturating_add(i64::from(r.offset_delta));
        let ts = header.base_timestamp.wrapping_add(r.timestamp_delta);
        // Kafka's validateKey, then validateTimestamp: the first failure names the record.
        let failure = if checks.require_keys && r.key_len < 0 && !header.is_control() {
            Some((
                RecordErrorKind::MissingKey,
                "Compacted topic cannot accept message without key".to_string(),
            ))
        } else if producer_set_log_append_time {
            Some((
                RecordErrorKind::InvalidTimestamp,
                format!(
                    "Invalid timestamp type in message with offset {offset}. Producer should not set timestamp type to LogAppendTime."
                ),
            ))
        } else if check_timestamps && ts != -1 && (ts < low || ts > high) {
            // -1 is "no timestamp" (Kafka's RecordBatch.NO_TIMESTAMP).
            Some((
                RecordErrorKind::InvalidTimestamp,
                format!(
                    "Timestamp {ts} of message with offset {offset} is out of range. The timestamp should be within [{low}, {high}]"
                ),
            ))
        } else {
            None
        };
        if let Some((kind, message)) = failure {
            total += 1;
            if errors.len() < MAX_RECORD_ERRORS {
                errors.push(RecordError {
                    batch_index: index,
                    kind,
                    message,
                });
            }
        }
        Ok(ControlFlow::Continue(()))
    })?;
    if total > 0 {
        return Err(BatchError::RejectedRecords { errors, total });
    }
    Ok(())
}

/// The first record of one stored batch with timestamp >= `ts` and offset >= `from`, as
/// (offset, timestamp), scanning at most `limit` decompressed bytes. A LogAppendTime batch
/// answers with its first record at or after `from`.
pub fn first_record_at_or_after(
    header: &BatchHeader,
    batch: &[u8],
    ts: i64,
    from: i64,
    limit: usize,
) -> Result<Option<(i64, i64)>, BatchError> {
    if header.is_log_append_time() {
        return Ok((header.max_timestamp >= ts).then(|| (header.base_offset.max(from), header.max_timestamp)));
    }
    let mut found = None;
    scan_records(header, batch, limit, |r| {
        let offset = header.base_offset.saturating_add(i64::from(r.offset_delta));
        let timestamp = header.base_timestamp.wrapping_add(r.timestamp_delta);
        if timestamp >= ts && offset >= from {
            found = Some((offset, timestamp));
            return Ok(ControlFlow::Break(()));
        }
        Ok(ControlFlow::Continue(()))
    })?;
    Ok(found)
}

#[cfg(test)]
#[path = "records_tests.rs"]
mod tests;
