//! Tests of bounded decompression and the record-level produce checks (`records.rs`):
//! decompression bombs under every codec, corrupt streams with valid CRCs, record counts and
//! offset deltas that disagree with the records, control batches from clients, timestamps.

use std::ops::ControlFlow;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};
use kafka_protocol::records::Compression;

use super::*;
use crate::batch::test_util::batch_with;
use crate::batch::{ATTRIBUTES_POS, BatchError, BatchHeader, CRC_POS, LOG_OVERHEAD};
use crate::log::{Log, LogConfig};
use crate::types::LeaderEpoch;

const CODECS: [(Compression, u8); 5] = [
    (Compression::None, 0),
    (Compression::Gzip, 1),
    (Compression::Snappy, 2),
    (Compression::Lz4, 3),
    (Compression::Zstd, 4),
];

fn compress(codec: u8, raw: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = Vec::new();
    let fill = |b: &mut BytesMut| {
        b.extend_from_slice(raw);
        Ok(())
    };
    match codec {
        0 => out.extend_from_slice(raw),
        1 => Gzip::compress(&mut out, fill).expect("gzip"),
        2 => Snappy::compress(&mut out, fill).expect("snappy"),
        3 => Lz4::compress(&mut out, fill).expect("lz4"),
        _ => Zstd::compress(&mut out, fill).expect("zstd"),
    }
    out
}

/// One encoded record (Kafka's DefaultRecord layout).
fn record(offset_delta: i64, ts_delta: i64, key: Option<&[u8]>, value: Option<&[u8]>) -> Vec<u8> {
    fn varint(v: i64, out: &mut Vec<u8>) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        loop {
            let b = (z & 0x7f) as u8;
            z >>= 7;
            if z == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }
    let mut body = vec![0u8];
    varint(ts_delta, &mut body);
    varint(offset_delta, &mut body);
    for field in [key, value] {
        match field {
            None => varint(-1, &mut body),
            Some(f) => {
                varint(f.len() as i64, &mut body);
                body.extend_from_slice(f);
            }
        }
    }
    varint(0, &mut body);
    let mut out = Vec::new();
    varint(body.len() as i64, &mut out);
    out.extend_from_slice(&body);
    out
}

/// A batch around an (uncompressed) records section, compressed with `codec`, with the given
/// header counts and a valid CRC.
fn build(codec: u8, raw: &[u8], record_count: i32, last_offset_delta: i32, base_ts: i64) -> Vec<u8> {
    let body = compress(codec, raw);
    let h = BatchHeader {
        base_offset: 0,
        batch_length: (BATCH_HEADER_LEN - LOG_OVERHEAD + body.len()) as i32,
        partition_leader_epoch: -1,
        magic: 2,
        crc: 0,
        attributes: i16::from(codec),
        last_offset_delta,
        base_timestamp: base_ts,
        max_timestamp: base_ts,
        producer_id: -1,
        producer_epoch: -1,
        base_sequence: -1,
        record_count,
    };
    let mut out = h.encode().to_vec();
    out.extend_from_slice(&body);
    fix_crc(&mut out);
    out
}

fn fix_crc(b: &mut [u8]) {
    let crc = crc32c::crc32c(&b[ATTRIBUTES_POS..]);
    b[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
}

fn checks(limit: usize) -> RecordChecks {
    RecordChecks {
        origin: AppendOrigin::Client,
        max_decompressed_bytes: limit,
        require_keys: false,
        create_time: true,
        timestamp_before_max_ms: i64::MAX,
        timestamp_after_max_ms: i64::MAX,
        now_ms: 1_000_000,
    }
}

fn validate(b: &[u8], c: &RecordChecks) -> Result<(), BatchError> {
    let h = BatchHeader::parse(b).expect("header");
    validate_records(&h, b, c)
}

#[test]
fn real_batches_of_every_codec_validate_and_scan() {
    for (compression, codec) in CODECS {
        let b = batch_with(50, 100, compression, |i| 1_000 + i as i64);
        validate(&b, &checks(1 << 20)).unwrap_or_else(|e| panic!("codec {codec}: {e}"));
        let h = BatchHeader::parse(&b).expect("header");
        let mut seen = Vec::new();
        let n = scan_records(&h, &b, 1 << 20, |r| {
            seen.push((r.offset_delta, r.timestamp_delta, r.key_len, r.value_len));
            Ok(ControlFlow::Continue(()))
        })
        .expect("scan");
        assert_eq!(n, 50);
        assert_eq!(seen[49], (49, 49, 6, 100), "codec {codec}");
        let data = decompress_bounded(codec, &b[BATCH_HEADER_LEN..], 1 << 20).expect("decompress");
        let views: Vec<_> = RecordIter::new(&data).collect::<Result<_, _>>().expect("parse");
        assert_eq!(views.len(), 50);
        assert_eq!(views[3].key, Some(&b"key-3"[..]));
        assert_eq!(views[3].value.map(<[u8]>::len), Some(100));
        assert_eq!(views[3].raw.len(), data.len() / 50);
        let first = first_record_at_or_after(&h, &b, 1_010, 0, 1 << 20).expect("lookup");
        assert_eq!(first, Some((10, 1_010)));
    }
}

#[test]
fn bombs_stop_at_the_cap_under_every_codec() {
    // One record with a 64 MiB value of zeros: compresses to a few KiB to 64 KiB.
    let value = vec![0u8; 64 << 20];
    let raw = record(0, 0, Some(b"k"), Some(&value));
    for (_, codec) in &CODECS[1..] {
        let b = build(*codec, &raw, 1, 0, 1_000);
        assert!(b.len() < 4 << 20, "codec {codec}: {} bytes", b.len());
        let started = Instant::now();
        assert_eq!(
            validate(&b, &checks(1 << 20)),
            Err(BatchError::DecompressedTooLarge { limit: 1 << 20 }),
            "codec {codec}"
        );
        assert_eq!(
            decompress_bounded(*codec, &b[BATCH_HEADER_LEN..], 1 << 20),
            Err(BatchError::DecompressedTooLarge { limit: 1 << 20 }),
            "codec {codec}"
        );
        let h = BatchHeader::parse(&b).expect("header");
        assert!(first_record_at_or_after(&h, &b, 0, 0, 1 << 20).is_err());
        // Bounded work: nowhere near the time to inflate 64 MiB three times in a debug build.
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "codec {codec}: {:?}",
            started.elapsed()
        );
        // Within a large enough cap the same batch is valid.
        if *codec != 1 {
            validate(&b, &checks(128 << 20)).expect("valid under a 128 MiB cap");
        }
    }
}

#[test]
fn snappy_block_claiming_a_huge_length_is_refused_before_allocating() {
    // A raw snappy block whose header claims 4 GiB - 1 of output.
    let body = [0xff, 0xff, 0xff, 0xff, 0x0f, 0x00];
    assert_eq!(
        decompress_bounded(2, &body, 1 << 20),
        Err(BatchError::DecompressedTooLarge { limit: 1 << 20 })
    );
    let mut framed = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
    framed.extend_from_slice(&(body.len() as u32).to_be_bytes());
    framed.extend_from_slice(&body);
    assert_eq!(
        decompress_bounded(2, &framed, 1 << 20),
        Err(BatchError::DecompressedTooLarge { limit: 1 << 20 })
    );
}

#[test]
fn corrupt_streams_with_valid_crcs_are_corrupt_records() {
    for (compression, codec) in &CODECS[1..] {
        let good = batch_with(20, 200, *compression, |i| 1_000 + i as i64);
        // Truncated stream (batch length and CRC fixed up).
        let mut cut = good[..good.len() - 7].to_vec();
        let len = (cut.len() - LOG_OVERHEAD) as i32;
        cut[8..12].copy_from_slice(&len.to_be_bytes());
        fix_crc(&mut cut);
        assert!(
            matches!(validate(&cut, &checks(1 << 20)), Err(BatchError::CorruptRecords(_))),
            "codec {codec}: {:?}",
            validate(&cut, &checks(1 << 20))
        );
        // Garbage in the middle of the stream.
        let mut flipped = good.clone();
        let mid = BATCH_HEADER_LEN + (good.len() - BATCH_HEADER_LEN) / 2;
        for b in &mut flipped[mid..mid + 8] {
            *b ^= 0x5a;
        }
        fix_crc(&mut flipped);
        let err = validate(&flipped, &checks(1 << 20)).expect_err("corrupt stream accepted");
        assert!(matches!(err, BatchError::CorruptRecords(_)), "codec {codec}: {err:?}");
    }
    // Not a stream of its codec at all.
    let bogus = build(0, &[0x13; 40], 1, 0, 0);
    for codec in 1..=4u8 {
        let mut b = bogus.clone();
        b[ATTRIBUTES_POS + 1] = codec;
        fix_crc(&mut b);
        assert!(
            matches!(validate(&b, &checks(1 << 20)), Err(BatchError::CorruptRecords(_))),
            "codec {codec}"
        );
    }
}

#[test]
fn record_count_and_offset_deltas_must_match_the_records() {
    for (_, codec) in CODECS {
        let two: Vec<u8> = [
            record(0, 0, Some(b"a"), Some(b"1")),
            record(1, 0, Some(b"b"), Some(b"2")),
        ]
        .concat();
        validate(&build(codec, &two, 2, 1, 1_000), &checks(1 << 20)).expect("valid");
        // The header claims more records than there are (the 2^31 offsets attack).
        let lie = build(codec, &two, i32::MAX, i32::MAX - 1, 1_000);
        assert!(
            matches!(validate(&lie, &checks(1 << 20)), Err(BatchError::InvalidRecords(_))),
            "codec {codec}"
        );
        // Fewer than there are: bytes after the last record.
        let short = build(codec, &two, 1, 0, 1_000);
        assert!(matches!(
            validate(&short, &checks(1 << 20)),
            Err(BatchError::InvalidRecords(_))
        ));
        // Offset deltas that skip or repeat.
        let gap: Vec<u8> = [record(0, 0, Some(b"a"), None), record(5, 0, Some(b"b"), None)].concat();
        assert!(matches!(
            validate(&build(codec, &gap, 2, 1, 1_000), &checks(1 << 20)),
            Err(BatchError::InvalidRecords(_))
        ));
        // A record whose fields do not fill its declared length.
        let mut bad = record(0, 0, Some(b"a"), Some(b"1"));
        bad[0] += 2;
        bad.extend_from_slice(&[0, 0]);
        assert!(matches!(
            validate(&build(codec, &bad, 1, 0, 1_000), &checks(1 << 20)),
            Err(BatchError::InvalidRecords(_))
        ));
    }
}

#[test]
fn control_batches_from_clients_are_refused() {
    let mut b = batch_with(1, 10, Compression::None, |_| 1_000);
    b[ATTRIBUTES_POS + 1] |= 1 << 5;
    fix_crc(&mut b);
    assert_eq!(validate(&b, &checks(1 << 20)), Err(BatchError::ControlBatch));
    let coordinator = RecordChecks {
        origin: AppendOrigin::Coordinator,
        ..checks(1 << 20)
    };
    validate(&b, &coordinator).expect("the broker may write control batches");
}

/// The record errors of a refused batch as (index, kind).
fn rejected(result: Result<(), BatchError>) -> (Vec<(i32, RecordErrorKind)>, usize) {
    match result {
        Err(BatchError::RejectedRecords { errors, total }) => {
            (errors.iter().map(|e| (e.batch_index, e.kind)).collect(), total)
        }
        other => panic!("expected rejected records, got {other:?}"),
    }
}

#[test]
fn timestamps_are_checked_against_message_timestamp_bounds() {
    use RecordErrorKind::InvalidTimestamp;
    let c = RecordChecks {
        timestamp_before_max_ms: 1_000,
        timestamp_after_max_ms: 500,
        ..checks(1 << 20)
    };
    let at = |ts: i64| batch_with(3, 10, Compression::Lz4, move |i| ts + i as i64);
    validate(&at(999_000), &c).expect("in range");
    // Every record out of range is named, not only the first.
    let (errors, total) = rejected(validate(&at(998_000), &c));
    assert_eq!(
        errors,
        vec![(0, InvalidTimestamp), (1, InvalidTimestamp), (2, InvalidTimestamp)]
    );
    assert_eq!(total, 3);
    // 1_000_500 .. 1_000_502: only the last two are past now + 500.
    assert_eq!(
        rejected(validate(&at(1_000_500), &c)).0,
        vec![(1, InvalidTimestamp), (2, InvalidTimestamp)]
    );
    let err = validate(&at(1_000_500), &c).expect_err("refused");
    assert_eq!(
        err.to_string(),
        "One or more records have been rejected due to invalid timestamp"
    );
    let BatchError::RejectedRecords { errors, .. } = err else {
        unreachable!()
    };
    assert_eq!(
        errors[0].message,
        "Timestamp 1000501 of message with offset 1 is out of range. The timestamp should be within [999000, 1000500]"
    );
    // -1 is "no timestamp".
    validate(&build(0, &record(0, 0, None, None), 1, 0, -1), &c).expect("no timestamp");
    // A producer may not claim LogAppendTime on a CreateTime topic: every record is named.
    let mut lat = at(999_000);
    lat[ATTRIBUTES_POS + 1] |= 1 << 3;
    fix_crc(&mut lat);
    assert_eq!(rejected(validate(&lat, &c)).1, 3);
    // LogAppendTime topics overwrite timestamps: no bounds.
    let log_append = RecordChecks {
        create_time: false,
        ..c
    };
    validate(&at(1), &log_append).expect("LogAppendTime topic");
}

#[test]
fn keyless_records_on_compacted_topics_are_each_named() {
    let c = RecordChecks {
        require_keys: true,
        timestamp_before_max_ms: 1_000,
        timestamp_after_max_ms: 1_000,
        ..checks(1 << 20)
    };
    for (_, codec) in CODECS {
        let records = [
            record(0, 0, Some(b"a"), Some(b"1")),
            record(1, 0, None, Some(b"2")),
            record(2, 0, Some(b"c"), Some(b"3")),
            // Keyless and out of range: the key check comes first, as in Kafka.
            record(3, 5_000, None, Some(b"4")),
            record(4, 5_000, Some(b"e"), Some(b"5")),
        ]
        .concat();
        let result = validate(&build(codec, &records, 5, 4, 1_000_000), &c);
        let (errors, total) = rejected(result.clone());
        assert_eq!(
            errors,
            vec![
                (1, RecordErrorKind::MissingKey),
                (3, RecordErrorKind::MissingKey),
                (4, RecordErrorKind::InvalidTimestamp)
            ],
            "codec {codec}"
        );
        assert_eq!(total, 3);
        let keys_only = records_with_keys_missing(codec, &c);
        assert_eq!(
            keys_only.to_string(),
            "One or more records have been rejected due to 2 record errors in total, and only showing \
             the first three errors at most: [RecordError(batchIndex=0, message='Compacted topic cannot \
             accept message without key'), RecordError(batchIndex=2, message='Compacted topic cannot \
             accept message without key')]"
        );
    }
}

fn records_with_keys_missing(codec: u8, c: &RecordChecks) -> BatchError {
    let records = [
        record(0, 0, None, Some(b"1")),
        record(1, 0, Some(b"b"), Some(b"2")),
        record(2, 0, None, None),
    ]
    .concat();
    validate(&build(codec, &records, 3, 2, 1_000_000), c).expect_err("refused")
}

#[test]
fn listed_record_errors_are_capped_but_counted() {
    let c = RecordChecks {
        require_keys: true,
        ..checks(64 << 20)
    };
    let n = MAX_RECORD_ERRORS + 5;
    let records: Vec<u8> = (0..n).flat_map(|i| record(i as i64, 0, None, Some(b"v"))).collect();
    let (errors, total) = rejected(validate(&build(4, &records, n as i32, n as i32 - 1, 1_000_000), &c));
    assert_eq!(errors.len(), MAX_RECORD_ERRORS);
    assert_eq!(total, n);
}

#[test]
fn structural_errors_win_over_record_errors() {
    let c = RecordChecks {
        require_keys: true,
        ..checks(1 << 20)
    };
    // A keyless record, then a record at the wrong offset delta: the batch does not parse.
    let records = [record(0, 0, None, Some(b"1")), record(5, 0, Some(b"b"), Some(b"2"))].concat();
    assert!(matches!(
        validate(&build(0, &records, 2, 1, 1_000_000), &c),
        Err(BatchError::InvalidRecords(_))
    ));
}

#[test]
fn log_append_refuses_bad_batches_and_keeps_the_log_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        max_message_bytes: 64 << 10,
        max_compression_ratio: 4,
        ..LogConfig::default()
    };
    let mut log = Log::open(dir.path(), config, true).expect("open");
    let value = vec![0u8; 1 << 20];
    let bomb = build(4, &record(0, 0, Some(b"k"), Some(&value)), 1, 0, 1_000);
    let lie = build(
        0,
        &[record(0, 0, Some(b"a"), None), record(1, 0, Some(b"b"), None)].concat(),
        i32::MAX,
        i32::MAX - 1,
        1_000,
    );
    for (bad, expect) in [(&bomb, "decompress to more than 262144"), (&lie, "invalid records")] {
        let err = log.append(bad, LeaderEpoch(0), 1_000).expect_err("refused");
        assert!(err.to_string().contains(expect), "{err}");
    }
    assert_eq!(log.log_end_offset().0, 0);
    let good = batch_with(5, 100, Compression::Gzip, |_| 1_000);
    log.append(&good, LeaderEpoch(0), 1_000).expect("valid batch");
    assert_eq!(log.log_end_offset().0, 5);
}
