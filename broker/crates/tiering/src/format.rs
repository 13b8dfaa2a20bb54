//! The segment object format: one object per closed segment, written front to back so it can be
//! streamed in a multipart upload, and read with ranged GETs.
//!
//! ```text
//! [data: the segment's record batches, byte-identical to the local .log file]
//! [meta: offset/time index | chunk checksums | leader-epoch entries | producer-state snapshot]
//! [footer: FOOTER_LEN bytes, fixed layout, at the very end]
//! ```
//!
//! The footer names the data and meta lengths and carries CRC-32C checksums of the whole data
//! (content checksum), of the meta section and of itself. Data is verified chunk by chunk on read
//! (`chunk_bytes` per chunk, one CRC each), so a ranged read never trusts unverified bytes.
//! The producer-state snapshot section is versioned and optional: version 1 holds the bytes of
//! fjord-storage's producer-state snapshot file taken at the segment's end offset (its own
//! versioned, CRC-checked format), or nothing if the log had no snapshot there.

use bytes::{BufMut, Bytes, BytesMut};
use fjord_storage::batch::{BATCH_HEADER_LEN, BatchHeader};

/// Magic at the start of the footer.
pub const MAGIC: &[u8; 8] = b"FJSEGOB1";
/// Format version written by this code.
pub const VERSION: u32 = 1;
/// Fixed footer size.
pub const FOOTER_LEN: usize = 72;
/// An index entry at least every this many data bytes.
pub const INDEX_INTERVAL: u64 = 64 * 1024;
/// Version of the producer-state snapshot section (1: a fjord-storage snapshot file, maybe empty).
pub const PRODUCER_SNAPSHOT_VERSION: u16 = 1;

/// One sparse index entry: the batch starting at `position` has base offset `offset`; the
/// batches from here to the next entry have timestamps up to `max_timestamp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    /// Base offset of the batch at `position`.
    pub offset: i64,
    /// Byte position of the batch in the data section.
    pub position: u64,
    /// Largest batch max timestamp from this entry up to the next one.
    pub max_timestamp: i64,
}

/// The fixed-size footer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Footer {
    /// Format version.
    pub version: u32,
    /// Size of the checksummed data chunks.
    pub chunk_bytes: u32,
    /// Base offset of the first batch.
    pub base_offset: i64,
    /// Last offset of the last batch.
    pub last_offset: i64,
    /// Bytes of record data.
    pub data_len: u64,
    /// Bytes of the meta section.
    pub meta_len: u64,
    /// CRC-32C of the data section (content checksum).
    pub data_crc: u32,
    /// CRC-32C of the meta section.
    pub meta_crc: u32,
    /// Largest batch max timestamp.
    pub max_timestamp: i64,
}

impl Footer {
    /// Encodes the footer (FOOTER_LEN bytes, last 4 = CRC-32C of the rest).
    pub fn encode(&self) -> [u8; FOOTER_LEN] {
        let mut b = BytesMut::with_capacity(FOOTER_LEN);
        b.put_slice(MAGIC);
        b.put_u32(self.version);
        b.put_u32(self.chunk_bytes);
        b.put_i64(self.base_offset);
        b.put_i64(self.last_offset);
        b.put_u64(self.data_len);
        b.put_u64(self.meta_len);
        b.put_u32(self.data_crc);
        b.put_u32(self.meta_crc);
        b.put_i64(self.max_timestamp);
        b.put_bytes(0, FOOTER_LEN - 4 - b.len());
        let crc = crc32c::crc32c(&b);
        b.put_u32(crc);
        let mut out = [0u8; FOOTER_LEN];
        out.copy_from_slice(&b);
        out
    }

    /// Parses and verifies a footer.
    pub fn decode(buf: &[u8]) -> Result<Footer, String> {
        if buf.len() != FOOTER_LEN {
            return Err(format!("footer is {} bytes, expected {FOOTER_LEN}", buf.len()));
        }
        if &buf[..8] != MAGIC {
            return Err("bad footer magic".into());
        }
        let stored = u32::from_be_bytes(buf[FOOTER_LEN - 4..].try_into().expect("4 bytes"));
        if crc32c::crc32c(&buf[..FOOTER_LEN - 4]) != stored {
            return Err("footer checksum mismatch".into());
        }
        let u32_at = |i: usize| u32::from_be_bytes(buf[i..i + 4].try_into().expect("4 bytes"));
        let u64_at = |i: usize| u64::from_be_bytes(buf[i..i + 8].try_into().expect("8 bytes"));
        let footer = Footer {
            version: u32_at(8),
            chunk_bytes: u32_at(12),
            base_offset: u64_at(16) as i64,
            last_offset: u64_at(24) as i64,
            data_len: u64_at(32),
            meta_len: u64_at(40),
            data_crc: u32_at(48),
            meta_crc: u32_at(52),
            max_timestamp: u64_at(56) as i64,
        };
        if footer.version != VERSION {
            return Err(format!("unsupported object format version {}", footer.version));
        }
        if footer.chunk_bytes == 0 {
            return Err("chunk size 0".into());
        }
        Ok(footer)
    }
}

/// The decoded meta section.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    /// Sparse offset/time index, ascending.
    pub index: Vec<IndexEntry>,
    /// CRC-32C of each data chunk.
    pub chunk_crcs: Vec<u32>,
    /// Leader-epoch entries (epoch, start offset) covering the segment, ascending.
    pub epochs: Vec<(i32, i64)>,
    /// Producer-state snapshot at the segment's end offset (empty if there was none).
    pub producer_snapshot: Bytes,
}

impl Meta {
    /// Encodes the meta section.
    pub fn encode(&self) -> Bytes {
        let mut b = BytesMut::with_capacity(16 + self.index.len() * 24 + self.chunk_crcs.len() * 4);
        b.put_u32(self.index.len() as u32);
        for e in &self.index {
            b.put_i64(e.offset);
            b.put_u64(e.position);
            b.put_i64(e.max_timestamp);
        }
        b.put_u32(self.chunk_crcs.len() as u32);
        for c in &self.chunk_crcs {
            b.put_u32(*c);
        }
        b.put_u32(self.epochs.len() as u32);
        for (epoch, start) in &self.epochs {
            b.put_i32(*epoch);
            b.put_i64(*start);
        }
        b.put_u16(PRODUCER_SNAPSHOT_VERSION);
        b.put_u32(self.producer_snapshot.len() as u32);
        b.put_slice(&self.producer_snapshot);
        b.freeze()
    }

    /// Decodes a meta section (already checksum-verified).
    pub fn decode(mut buf: &[u8]) -> Result<Meta, String> {
        use bytes::Buf;
        let short = || "meta section truncated".to_string();
        let mut meta = Meta::default();
        let need = |buf: &[u8], n: usize| if buf.remaining() < n { Err(short()) } else { Ok(()) };
        need(buf, 4)?;
        let n = buf.get_u32() as usize;
        need(buf, n.saturating_mul(24))?;
        meta.index = (0..n)
            .map(|_| IndexEntry {
                offset: buf.get_i64(),
                position: buf.get_u64(),
                max_timestamp: buf.get_i64(),
            })
            .collect();
        need(buf, 4)?;
        let n = buf.get_u32() as usize;
        need(buf, n.saturating_mul(4))?;
        meta.chunk_crcs = (0..n).map(|_| buf.get_u32()).collect();
        need(buf, 4)?;
        let n = buf.get_u32() as usize;
        need(buf, n.saturating_mul(12))?;
        meta.epochs = (0..n).map(|_| (buf.get_i32(), buf.get_i64())).collect();
        need(buf, 6)?;
        let _snapshot_version = buf.get_u16();
        let n = buf.get_u32() as usize;
        need(buf, n)?;
        meta.producer_snapshot = Bytes::copy_from_slice(&buf[..n]);
        Ok(meta)
    }
}

/// Builds the index, checksums and epoch entries while segment data streams through it.
#[derive(Debug)]
pub struct ObjectBuilder {
    chunk_bytes: u64,
    /// Bytes of data consumed so far.
    pos: u64,
    /// Position of the next batch header.
    next_batch: u64,
    /// Last up to BATCH_HEADER_LEN - 1 bytes of data consumed (headers may straddle pieces).
    tail: Vec<u8>,
    data_crc: u32,
    chunk_crc: u32,
    chunk_crcs: Vec<u32>,
    index: Vec<IndexEntry>,
    epochs: Vec<(i32, i64)>,
    base_offset: Option<i64>,
    last_offset: i64,
    max_timestamp: i64,
}

impl ObjectBuilder {
    /// A builder cutting checksummed chunks of `chunk_bytes`.
    pub fn new(chunk_bytes: u32) -> ObjectBuilder {
        ObjectBuilder {
            chunk_bytes: u64::from(chunk_bytes.max(1)),
            pos: 0,
            next_batch: 0,
            tail: Vec::new(),
            data_crc: 0,
            chunk_crc: 0,
            chunk_crcs: Vec::new(),
            index: Vec::new(),
            epochs: Vec::new(),
            base_offset: None,
            last_offset: -1,
            max_timestamp: -1,
        }
    }

    /// Feeds the next piece of segment data.
    pub fn push(&mut self, piece: &[u8]) -> Result<(), String> {
        self.data_crc = crc32c::crc32c_append(self.data_crc, piece);
        let mut rest = piece;
        while !rest.is_empty() {
            let in_chunk = self.pos_in_chunk_after(piece.len() - rest.len());
            let room = (self.chunk_bytes - in_chunk) as usize;
            let take = room.min(rest.len());
            self.chunk_crc = crc32c::crc32c_append(self.chunk_crc, &rest[..take]);
            if take == room {
                self.chunk_crcs.push(self.chunk_crc);
                self.chunk_crc = 0;
            }
            rest = &rest[take..];
        }
        let start = self.pos;
        let end = start + piece.len() as u64;
        while self.next_batch + BATCH_HEADER_LEN as u64 <= end {
            let mut header = [0u8; BATCH_HEADER_LEN];
            let at = self.next_batch;
            if at >= start {
                let i = (at - start) as usize;
                header.copy_from_slice(&piece[i..i + BATCH_HEADER_LEN]);
            } else {
                let from_tail = (start - at) as usize;
                let t = self.tail.len() - from_tail;
                header[..from_tail].copy_from_slice(&self.tail[t..]);
                header[from_tail..].copy_from_slice(&piece[..BATCH_HEADER_LEN - from_tail]);
            }
            let h = BatchHeader::parse(&header).map_err(|e| format!("bad batch at position {at}: {e}"))?;
            self.track(at, &h);
            self.next_batch = at + h.total_len() as u64;
        }
        self.tail
            .extend_from_slice(&piece[piece.len().saturating_sub(BATCH_HEADER_LEN)..]);
        let keep = BATCH_HEADER_LEN.min(self.tail.len());
        self.tail.drain(..self.tail.len() - keep);
        self.pos = end;
        Ok(())
    }

    fn pos_in_chunk_after(&self, consumed_in_piece: usize) -> u64 {
        (self.pos + consumed_in_piece as u64) % self.chunk_bytes
    }

    fn track(&mut self, position: u64, h: &BatchHeader) {
        if self.base_offset.is_none() {
            self.base_offset = Some(h.base_offset);
        }
        self.last_offset = h.last_offset();
        self.max_timestamp = self.max_timestamp.max(h.max_timestamp);
        let new_entry = self
            .index
            .last()
            .is_none_or(|e| position - e.position >= INDEX_INTERVAL);
        if new_entry {
            self.index.push(IndexEntry {
                offset: h.base_offset,
                position,
                max_timestamp: h.max_timestamp,
            });
        } else if let Some(e) = self.index.last_mut() {
            e.max_timestamp = e.max_timestamp.max(h.max_timestamp);
        }
        if self.epochs.last().is_none_or(|&(e, _)| e != h.partition_leader_epoch) {
            self.epochs.push((h.partition_leader_epoch, h.base_offset));
        }
    }

    /// Ends the data; returns the meta section (carrying `producer_snapshot`) and the footer to
    /// append.
    pub fn finish(mut self, producer_snapshot: Bytes) -> Result<(Meta, Bytes, Footer), String> {
        if self.next_batch != self.pos {
            return Err(format!(
                "segment data ends at {} inside a batch that ends at {}",
                self.pos, self.next_batch
            ));
        }
        let Some(base_offset) = self.base_offset else {
            return Err("segment holds no batches".into());
        };
        if !self.pos.is_multiple_of(self.chunk_bytes) {
            self.chunk_crcs.push(self.chunk_crc);
        }
        let meta = Meta {
            index: self.index,
            chunk_crcs: self.chunk_crcs,
            epochs: self.epochs,
            producer_snapshot,
        };
        let encoded = meta.encode();
        let footer = Footer {
            version: VERSION,
            chunk_bytes: self.chunk_bytes as u32,
            base_offset,
            last_offset: self.last_offset,
            data_len: self.pos,
            meta_len: encoded.len() as u64,
            data_crc: self.data_crc,
            meta_crc: crc32c::crc32c(&encoded),
            max_timestamp: self.max_timestamp,
        };
        Ok((meta, encoded, footer))
    }
}

/// Walks whole batches in `buf` (which starts at a batch boundary): yields (position, header).
pub fn batches(buf: &[u8]) -> impl Iterator<Item = (usize, BatchHeader)> + '_ {
    let mut pos = 0usize;
    std::iter::from_fn(move || {
        let h = BatchHeader::parse(buf.get(pos..pos + BATCH_HEADER_LEN)?).ok()?;
        let at = pos;
        pos += h.total_len();
        Some((at, h))
    })
}

/// Bytes needed to parse a batch header.
pub(crate) const fn batches_header_len() -> u64 {
    BATCH_HEADER_LEN as u64
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal valid-looking batch (header fields only matter here, not the CRC).
    pub(crate) fn batch(base_offset: i64, records: i32, epoch: i32, ts: i64, payload: usize) -> Vec<u8> {
        let total = BATCH_HEADER_LEN + payload;
        let h = BatchHeader {
            base_offset,
            batch_length: (total - 12) as i32,
            partition_leader_epoch: epoch,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: records - 1,
            base_timestamp: ts,
            max_timestamp: ts,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            record_count: records,
        };
        let mut v = h.encode().to_vec();
        v.resize(total, 0xab);
        v
    }

    #[test]
    fn builder_indexes_checksums_and_epochs_across_odd_piece_boundaries() {
        let mut data = Vec::new();
        let mut offset = 100;
        for i in 0..50 {
            data.extend(batch(offset, 3, if i < 20 { 1 } else { 2 }, 1000 + i, 5000));
            offset += 3;
        }
        let mut b = ObjectBuilder::new(7000);
        for piece in data.chunks(37) {
            b.push(piece).expect("push");
        }
        let (meta, encoded, footer) = b.finish(Bytes::from_static(b"snapshot")).expect("finish");
        assert_eq!(footer.base_offset, 100);
        assert_eq!(footer.last_offset, 100 + 150 - 1);
        assert_eq!(footer.max_timestamp, 1049);
        assert_eq!(footer.data_crc, crc32c::crc32c(&data));
        assert_eq!(meta.epochs, vec![(1, 100), (2, 160)]);
        assert_eq!(meta.chunk_crcs.len(), data.len().div_ceil(7000));
        assert_eq!(meta.chunk_crcs[1], crc32c::crc32c(&data[7000..14000]));
        assert!(meta.index.len() >= 3);
        assert_eq!(meta.index[0].position, 0);
        assert_eq!(Meta::decode(&encoded).expect("decode"), meta);
        assert_eq!(Footer::decode(&footer.encode()).expect("decode"), footer);
        let mut bad = footer.encode();
        bad[20] ^= 1;
        assert!(Footer::decode(&bad).is_err());
    }

    #[test]
    fn builder_refuses_a_torn_segment() {
        let data = batch(0, 1, 0, 0, 100);
        let mut b = ObjectBuilder::new(1024);
        b.push(&data[..data.len() - 1]).expect("push");
        assert!(b.finish(Bytes::new()).is_err());
        assert!(ObjectBuilder::new(1024).finish(Bytes::new()).is_err());
    }
}
