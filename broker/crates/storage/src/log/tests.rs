//! Tests of the partition log: append/read, indexes, timestamps, retention, recovery,
//! truncation, epochs and flushing.

use std::fs;
use std::path::Path;

use kafka_protocol::records::Compression;

use super::*;
use crate::batch::test_util::{batch, batch_with};
use crate::batch::{MAX_TIMESTAMP_POS, scan_batches, verify_crc};

fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        segment_ms: None,
        retention_ms: None,
        retention_bytes: None,
        index_interval_bytes: 256,
        ..LogConfig::default()
    }
}

fn open(dir: &Path, config: LogConfig, clean: bool) -> Log {
    Log::open(dir, config, clean).expect("open log")
}

/// Appends `count` batches of `records` records each, timestamps from `ts0` step 10 per batch.
fn fill(log: &mut Log, count: usize, records: usize, value_len: usize, ts0: i64) -> Vec<AppendInfo> {
    let infos = (0..count)
        .map(|i| {
            let b = batch(records, value_len, ts0 + 10 * i as i64);
            log.append(&b, LeaderEpoch(0), ts0 + 10 * i as i64).expect("append")
        })
        .collect();
    let leo = log.log_end_offset();
    log.set_high_watermark(leo);
    infos
}

/// Headers of the batches in a byte buffer, checking each CRC.
fn headers(bytes: &[u8]) -> Vec<BatchHeader> {
    scan_batches(bytes)
        .map(|r| {
            let b = r.expect("valid batch");
            verify_crc(&b.header, b.bytes).expect("valid crc");
            b.header
        })
        .collect()
}

/// Reads the whole log from `from` to the high watermark, batch headers only.
fn read_all(log: &Log, from: i64) -> Vec<BatchHeader> {
    let mut out = Vec::new();
    let mut next = from;
    while next < log.high_watermark().0 {
        let plan = log
            .read(Offset(next), log.high_watermark(), 1 << 20, true)
            .expect("read");
        assert!(!plan.is_empty(), "empty read at {next}");
        let hs = headers(&plan.read_bytes().expect("read bytes"));
        next = hs.last().expect("a batch").next_offset();
        out.extend(hs);
    }
    out
}

fn seg_files(dir: &Path, suffix: &str) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(suffix))
        .collect();
    v.sort();
    v
}

#[test]
fn append_then_read_returns_producer_bytes_with_stamped_offsets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), LogConfig::default(), true);
    let b1 = batch(3, 20, 1_000);
    let b2 = batch(2, 20, 2_000);
    let i1 = log.append(&b1, LeaderEpoch(5), 10).expect("append");
    let i2 = log.append(&b2, LeaderEpoch(5), 11).expect("append");
    assert_eq!((i1.base_offset, i1.last_offset), (Offset(0), Offset(2)));
    assert_eq!((i2.base_offset, i2.last_offset), (Offset(3), Offset(4)));
    assert_eq!(i1.record_count, 3);
    assert_eq!(i1.bytes, b1.len());
    assert_eq!(i1.log_append_time_ms, None);
    assert_eq!(log.log_end_offset(), Offset(5));
    // The high watermark is the caller's business.
    assert_eq!(log.high_watermark(), Offset(0));
    assert!(
        log.read(Offset(0), log.high_watermark(), 1 << 20, true)
            .expect("read")
            .is_empty()
    );
    log.set_high_watermark(Offset(100));
    assert_eq!(log.high_watermark(), Offset(5));

    let plan = log.read(Offset(0), Offset(5), 1 << 20, true).expect("read");
    assert_eq!(plan.first_offset(), Some(Offset(0)));
    let bytes = plan.read_bytes().expect("bytes");
    assert_eq!(bytes.len(), b1.len() + b2.len());
    let hs = headers(&bytes);
    assert_eq!(hs.len(), 2);
    assert_eq!(hs[1].base_offset, 3);
    assert_eq!(hs[0].partition_leader_epoch, 5);
    // Only baseOffset and partitionLeaderEpoch differ from what the producer sent.
    assert_eq!(&bytes[16..b1.len()], &b1[16..]);
    assert_eq!(&bytes[b1.len() + 16..], &b2[16..]);
}

#[test]
fn append_multiple_batches_in_one_call_assigns_consecutive_offsets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), LogConfig::default(), true);
    let mut payload = batch(2, 10, 100);
    payload.extend_from_slice(&batch(4, 10, 300));
    payload.extend_from_slice(&batch(1, 10, 200));
    let info = log.append(&payload, LeaderEpoch(1), 0).expect("append");
    assert_eq!((info.base_offset, info.last_offset), (Offset(0), Offset(6)));
    assert_eq!(info.max_timestamp, 300);
    assert_eq!(info.offset_of_max_timestamp, Offset(5));
    log.set_high_watermark(Offset(7));
    let hs = read_all(&log, 0);
    let bases: Vec<i64> = hs.iter().map(|h| h.base_offset).collect();
    assert_eq!(bases, vec![0, 2, 6]);
}

#[test]
fn append_invalid_batch_leaves_log_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), LogConfig::default(), true);
    log.append(&batch(1, 10, 1), LeaderEpoch(0), 0).expect("append");
    let size = log.size_bytes();
    let mut bad = batch(1, 10, 1);
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let mut payload = batch(1, 10, 1);
    payload.extend_from_slice(&bad);
    assert!(matches!(
        log.append(&payload, LeaderEpoch(0), 0),
        Err(Error::Batch(BatchError::CorruptCrc { .. }))
    ));
    let too_big = batch(1, 2 << 20, 1);
    assert!(matches!(
        log.append(&too_big, LeaderEpoch(0), 0),
        Err(Error::Batch(BatchError::TooLarge { .. }))
    ));
    assert_eq!(log.size_bytes(), size);
    assert_eq!(log.log_end_offset(), Offset(1));
}

#[test]
fn append_rolls_by_size_and_reads_span_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), small_config(), true);
    let infos = fill(&mut log, 60, 3, 100, 1_000);
    assert!(log.segment_count() > 5, "segments: {}", log.segment_count());
    // Every segment except the last respects segment_bytes.
    for name in seg_files(dir.path(), ".log") {
        let len = fs::metadata(dir.path().join(&name)).expect("stat").len();
        assert!(len <= 4096, "{name} is {len} bytes");
    }
    // Segment names are the log end offset at roll time.
    let bases = log.segment_base_offsets();
    assert_eq!(bases[0], Offset(0));
    assert!(bases.iter().all(|b| infos.iter().any(|i| i.base_offset == *b)));
    let hs = read_all(&log, 0);
    assert_eq!(hs.len(), 60);
    for (h, i) in hs.iter().zip(&infos) {
        assert_eq!(h.base_offset, i.base_offset.0);
    }
    // A plan stays within one segment.
    let plan = log.read(Offset(0), log.high_watermark(), 1 << 30, true).expect("read");
    assert!(plan.len() <= 4096);
}

#[test]
fn append_rolls_by_time_from_first_batch_timestamp() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        segment_ms: Some(1_000),
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), config, true);
    log.append(&batch(1, 10, 10_000), LeaderEpoch(0), 10_000)
        .expect("append");
    log.append(&batch(1, 10, 10_900), LeaderEpoch(0), 10_900)
        .expect("append");
    assert_eq!(log.segment_count(), 1);
    log.append(&batch(1, 10, 11_001), LeaderEpoch(0), 11_001)
        .expect("append");
    assert_eq!(log.segment_count(), 2);
    assert_eq!(log.segment_base_offsets(), vec![Offset(0), Offset(2)]);
    log.set_high_watermark(log.log_end_offset());
    assert_eq!(read_all(&log, 0).len(), 3);
}

#[test]
fn append_rolls_when_index_is_full() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        index_interval_bytes: 0,
        segment_index_bytes: 24, // 3 offset entries, 2 time entries
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), config, true);
    fill(&mut log, 10, 1, 10, 100);
    assert!(log.segment_count() >= 3, "segments: {}", log.segment_count());
    assert_eq!(read_all(&log, 0).len(), 10);
}

#[test]
fn index_lookup_lands_on_batch_containing_each_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        segment_bytes: 64 * 1024,
        index_interval_bytes: 300,
        ..small_config()
    };
    let mut log = open(dir.path(), config, true);
    // Batches of 1..=7 records so offsets and positions are irregular.
    for i in 0..300usize {
        let b = batch(1 + i % 7, 20 + (i * 13) % 90, i as i64);
        log.append(&b, LeaderEpoch(0), i as i64).expect("append");
    }
    let leo = log.log_end_offset();
    log.set_high_watermark(leo);
    assert!(log.segment_count() > 1);
    for offset in 0..leo.0 {
        let plan = log.read(Offset(offset), leo, 1, true).expect("read");
        let hs = headers(&plan.read_bytes().expect("bytes"));
        assert_eq!(hs.len(), 1, "offset {offset}");
        assert!(
            hs[0].base_offset <= offset && offset <= hs[0].last_offset(),
            "offset {offset} read batch {}..={}",
            hs[0].base_offset,
            hs[0].last_offset()
        );
    }
}

#[test]
fn read_respects_max_bytes_min_one_batch_and_max_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), LogConfig::default(), true);
    let infos = fill(&mut log, 10, 4, 100, 0); // 10 batches x 4 records
    let batch_len = infos[0].bytes;
    let hw = log.high_watermark();
    assert_eq!(hw, Offset(40));

    // max_bytes: whole batches only.
    let plan = log.read(Offset(0), hw, batch_len * 3 + 10, false).expect("read");
    assert_eq!(plan.len(), batch_len * 3);
    // Smaller than one batch: nothing, unless min_one_batch (KIP-74).
    assert!(log.read(Offset(0), hw, batch_len - 1, false).expect("read").is_empty());
    let one = log.read(Offset(0), hw, batch_len - 1, true).expect("read");
    assert_eq!(one.len(), batch_len);
    assert!(log.read(Offset(0), hw, 0, false).expect("read").is_empty());
    // A mid-batch start returns the whole containing batch.
    let mid = log.read(Offset(6), hw, batch_len, false).expect("read");
    assert_eq!(mid.first_offset(), Some(Offset(4)));
    assert_eq!(mid.len(), batch_len);
    // max_offset at a batch boundary stops before it.
    let plan = log.read(Offset(0), Offset(12), 1 << 20, true).expect("read");
    assert_eq!(headers(&plan.read_bytes().expect("bytes")).len(), 3);
    // max_offset inside a batch excludes that batch.
    let plan = log.read(Offset(0), Offset(14), 1 << 20, true).expect("read");
    assert_eq!(headers(&plan.read_bytes().expect("bytes")).len(), 3);
    let plan = log.read(Offset(13), Offset(14), 1 << 20, true).expect("read");
    assert!(plan.is_empty());
    // offset == max_offset, and offsets between the high watermark and the end: empty.
    assert!(
        log.read(Offset(12), Offset(12), 1 << 20, true)
            .expect("read")
            .is_empty()
    );
    log.append(&batch(1, 10, 0), LeaderEpoch(0), 0).expect("append");
    assert!(
        log.read(Offset(40), log.high_watermark(), 1 << 20, true)
            .expect("read")
            .is_empty()
    );
    assert_eq!(
        log.read(Offset(40), log.log_end_offset(), 1 << 20, true)
            .expect("read")
            .len(),
        log.size_bytes() as usize - 10 * batch_len
    );
}

#[test]
fn read_outside_log_is_offset_out_of_range() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), LogConfig::default(), true);
    fill(&mut log, 3, 2, 10, 0);
    assert!(
        log.read(Offset(6), Offset(6), 100, true)
            .expect("read at end")
            .is_empty()
    );
    match log.read(Offset(7), Offset(7), 100, true) {
        Err(Error::OffsetOutOfRange {
            offset,
            log_start,
            log_end,
        }) => {
            assert_eq!((offset, log_start, log_end), (Offset(7), Offset(0), Offset(6)));
        }
        other => panic!("expected out of range, got {other:?}"),
    }
    assert!(matches!(
        log.read(Offset(-1), Offset(6), 100, true),
        Err(Error::OffsetOutOfRange { .. })
    ));
    log.delete_records_before(Offset(4)).expect("delete records");
    assert!(matches!(
        log.read(Offset(3), Offset(6), 100, true),
        Err(Error::OffsetOutOfRange { .. })
    ));
    assert!(!log.read(Offset(4), Offset(6), 100, true).expect("read").is_empty());
}

#[test]
fn offset_for_timestamp_finds_exact_record_in_plain_and_compressed_batches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        segment_bytes: 2048,
        index_interval_bytes: 100,
        ..small_config()
    };
    let mut log = open(dir.path(), config, true);
    // Batch k holds 5 records with timestamps 1000*k + 100*i (i = 0..5).
    for k in 0..20i64 {
        let compression = match k % 4 {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Lz4,
            _ => Compression::Zstd,
        };
        let b = batch_with(5, 50, compression, |i| 1_000 * k + 100 * i as i64);
        log.append(&b, LeaderEpoch(0), 0).expect("append");
    }
    log.set_high_watermark(log.log_end_offset());
    assert!(log.segment_count() > 2);
    // Exact record hits and in-between timestamps, across all codecs.
    for k in 0..20i64 {
        for i in 0..5i64 {
            let ts = 1_000 * k + 100 * i;
            assert_eq!(
                log.offset_for_timestamp(ts).expect("lookup"),
                Some((Offset(5 * k + i), ts)),
                "ts {ts}"
            );
            assert_eq!(
                log.offset_for_timestamp(ts - 50).expect("lookup"),
                Some((Offset(5 * k + i), ts)),
                "ts {}",
                ts - 50
            );
        }
    }
    assert_eq!(log.offset_for_timestamp(-5).expect("lookup"), Some((Offset(0), 0)));
    assert_eq!(log.offset_for_timestamp(19_401).expect("lookup"), None);
    // Records at or above the high watermark are not visible.
    log.set_high_watermark(Offset(50));
    assert_eq!(
        log.offset_for_timestamp(9_000).expect("lookup"),
        Some((Offset(45), 9_000))
    );
    assert_eq!(log.offset_for_timestamp(9_401).expect("lookup"), None);
    assert_eq!(log.max_timestamp(), Some((Offset(99), 19_400)));
}

#[test]
fn offset_for_timestamp_skips_records_below_log_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), LogConfig::default(), true);
    let b = batch_with(10, 10, Compression::None, |i| 100 * i as i64);
    log.append(&b, LeaderEpoch(0), 0).expect("append");
    log.set_high_watermark(Offset(10));
    log.delete_records_before(Offset(4)).expect("delete");
    assert_eq!(log.offset_for_timestamp(0).expect("lookup"), Some((Offset(4), 400)));
    assert_eq!(log.offset_for_timestamp(650).expect("lookup"), Some((Offset(7), 700)));
}

#[test]
fn log_append_time_stamps_batches_with_valid_crc() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        timestamp_type: TimestampType::LogAppendTime,
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), config, true);
    let info = log.append(&batch(3, 10, 5), LeaderEpoch(0), 77_000).expect("append");
    assert_eq!(info.log_append_time_ms, Some(77_000));
    assert_eq!(info.max_timestamp, 77_000);
    log.append(&batch(2, 10, 5), LeaderEpoch(0), 88_000).expect("append");
    log.set_high_watermark(log.log_end_offset());
    let plan = log.read(Offset(0), log.high_watermark(), 1 << 20, true).expect("read");
    let bytes = plan.read_bytes().expect("bytes");
    let hs = headers(&bytes); // checks the CRCs
    assert!(hs.iter().all(|h| h.is_log_append_time()));
    assert_eq!(hs[0].max_timestamp, 77_000);
    assert_eq!(
        i64::from_be_bytes(bytes[MAX_TIMESTAMP_POS..MAX_TIMESTAMP_POS + 8].try_into().expect("8")),
        77_000
    );
    assert_eq!(
        log.offset_for_timestamp(80_000).expect("lookup"),
        Some((Offset(3), 88_000))
    );
    assert_eq!(log.max_timestamp(), Some((Offset(4), 88_000)));
    // LogAppendTime: every record of the batch has the append time; the first one is reported.
    assert_eq!(
        log.max_timestamp_record().expect("lookup").map(|(o, _)| o.0 <= 4),
        Some(true)
    );
}

#[test]
fn retention_by_time_deletes_old_segments_and_advances_log_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        retention_ms: Some(10_000),
        ..small_config()
    };
    let mut log = open(dir.path(), config, true);
    // Old data, then new data.
    fill(&mut log, 30, 2, 100, 1_000);
    let old_leo = log.log_end_offset();
    let old_bases = log.segment_base_offsets();
    for i in 0..30 {
        log.append(&batch(2, 100, 100_000 + i), LeaderEpoch(0), 100_000)
            .expect("append");
    }
    log.set_high_watermark(log.log_end_offset());
    let before = log.segment_count();
    let files_before = seg_files(dir.path(), ".log").len();
    let size_before = log.size_bytes();
    let out = log.apply_retention(105_000).expect("retention");
    assert!(out.segments_deleted > 0);
    assert_eq!(log.segment_count(), before - out.segments_deleted);
    assert_eq!(seg_files(dir.path(), ".log").len(), files_before - out.segments_deleted);
    assert_eq!(seg_files(dir.path(), ".index").len(), log.segment_count());
    assert_eq!(seg_files(dir.path(), ".timeindex").len(), log.segment_count());
    assert_eq!(log.size_bytes(), size_before - out.bytes_deleted);
    assert_eq!(out.log_start_offset, log.log_start_offset());
    assert_eq!(log.log_start_offset(), log.segment_base_offsets()[0]);
    // Everything old is gone but nothing new: the segment holding the last old offset stays
    // unless it ends exactly there.
    let expected_start = if old_bases.contains(&old_leo) || log.segment_base_offsets()[0] == old_leo {
        old_leo
    } else {
        *old_bases.iter().rev().find(|b| b.0 < old_leo.0).expect("a base")
    };
    assert_eq!(log.log_start_offset(), expected_start);
    assert_eq!(
        read_all(&log, log.log_start_offset().0).last().map(|h| h.next_offset()),
        Some(log.log_end_offset().0)
    );
    // Persisted.
    drop(log);
    let log = open(dir.path(), small_config(), false);
    assert_eq!(log.log_start_offset(), out.log_start_offset);
}

#[test]
fn retention_never_deletes_above_high_watermark_or_active_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        retention_ms: Some(0),
        ..small_config()
    };
    let mut log = open(dir.path(), config, true);
    fill(&mut log, 30, 2, 100, 1_000);
    log.set_high_watermark(Offset(0));
    assert_eq!(log.apply_retention(1_000_000).expect("retention").segments_deleted, 0);
    log.set_high_watermark(log.log_end_offset());
    let n = log.segment_count();
    let out = log.apply_retention(1_000_000).expect("retention");
    assert_eq!(out.segments_deleted, n - 1);
    assert_eq!(log.segment_count(), 1);
    assert!(log.size_bytes() > 0);
}

#[test]
fn retention_by_size_deletes_oldest_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        retention_bytes: Some(10_000),
        ..small_config()
    };
    let mut log = open(dir.path(), config, true);
    fill(&mut log, 80, 2, 100, 1_000);
    assert!(log.size_bytes() > 20_000);
    let out = log.apply_retention(2_000).expect("retention");
    assert!(out.segments_deleted > 0);
    assert!(log.size_bytes() >= 10_000, "deleted one too many: {}", log.size_bytes());
    assert!(
        log.size_bytes() - log.segments[0].size < 10_000,
        "size {}",
        log.size_bytes()
    );
    assert_eq!(log.log_start_offset(), log.segment_base_offsets()[0]);
    assert!(matches!(
        log.read(Offset(0), log.high_watermark(), 100, true),
        Err(Error::OffsetOutOfRange { .. })
    ));
}

#[test]
fn retention_rolls_idle_active_segment_then_deletes_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        segment_ms: Some(1_000),
        retention_ms: Some(5_000),
        ..LogConfig::default()
    };
    let mut log = open(dir.path(), config, true);
    fill(&mut log, 3, 2, 10, 10_000);
    let out = log.apply_retention(10_500).expect("retention");
    assert!(!out.rolled);
    assert_eq!(log.segment_count(), 1);
    let out = log.apply_retention(12_000).expect("retention");
    assert!(out.rolled);
    assert_eq!(out.segments_deleted, 0);
    assert_eq!(log.segment_count(), 2);
    let out = log.apply_retention(16_000).expect("retention");
    assert_eq!(out.segments_deleted, 1);
    assert_eq!(log.log_start_offset(), Offset(6));
    assert_eq!(log.log_end_offset(), Offset(6));
    assert_eq!(log.size_bytes(), 0);
}

#[test]
fn delete_records_before_advances_start_deletes_segments_and_persists() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), small_config(), true);
    fill(&mut log, 40, 2, 100, 0);
    log.set_high_watermark(Offset(60));
    assert!(matches!(
        log.delete_records_before(Offset(61)),
        Err(Error::OffsetOutOfRange { .. })
    ));
    let segs = log.segment_count();
    assert_eq!(log.delete_records_before(Offset(41)).expect("delete"), Offset(41));
    assert!(log.segment_count() < segs);
    assert!(log.segment_base_offsets()[0].0 <= 41);
    assert_eq!(log.log_start_offset(), Offset(41));
    // Lower values are a no-op.
    assert_eq!(log.delete_records_before(Offset(10)).expect("delete"), Offset(41));
    // The batch holding 41 starts at 40 and is still readable from 41.
    let plan = log.read(Offset(41), log.high_watermark(), 1 << 20, true).expect("read");
    assert_eq!(plan.first_offset(), Some(Offset(40)));
    log.close().expect("close");
    let log = open(dir.path(), small_config(), true);
    assert_eq!(log.log_start_offset(), Offset(41));
    assert_eq!(log.log_end_offset(), Offset(80));
}

#[test]
fn delete_records_before_log_end_rolls_and_empties_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), LogConfig::default(), true);
    fill(&mut log, 5, 2, 10, 0);
    assert_eq!(log.delete_records_before(Offset(10)).expect("delete"), Offset(10));
    assert_eq!(log.segment_count(), 1);
    assert_eq!(log.segment_base_offsets(), vec![Offset(10)]);
    assert_eq!(log.size_bytes(), 0);
    let info = log.append(&batch(1, 10, 0), LeaderEpoch(0), 0).expect("append");
    assert_eq!(info.base_offset, Offset(10));
}

#[test]
fn recovery_cuts_torn_tail_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), LogConfig::default(), true);
    fill(&mut log, 5, 2, 100, 0);
    let last_len = batch(2, 100, 0).len() as u64;
    log.checkpoint().expect("checkpoint");
    drop(log); // crash: no close
    let seg = dir.path().join("00000000000000000000.log");
    let len = fs::metadata(&seg).expect("stat").len();
    fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .expect("open")
        .set_len(len - last_len / 2)
        .expect("cut");
    let mut log = open(dir.path(), LogConfig::default(), false);
    assert_eq!(log.log_end_offset(), Offset(8));
    assert_eq!(fs::metadata(&seg).expect("stat").len(), len - last_len);
    assert_eq!(log.open_stats().bytes_truncated, last_len - last_len / 2);
    assert!(log.open_stats().segments_recovered >= 1);
    assert_eq!(log.high_watermark(), Offset(8));
    assert_eq!(read_all(&log, 0).len(), 4);
    // Appends continue right after the cut.
    let info = log.append(&batch(1, 10, 0), LeaderEpoch(0), 0).expect("append");
    assert_eq!(info.base_offset, Offset(8));
}

#[test]
fn recovery_truncates_batch_with_bad_crc() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), LogConfig::default(), true);
    fill(&mut log, 5, 2, 100, 0);
    drop(log);
    let seg = dir.path().join("00000000000000000000.log");
    let mut bytes = fs::read(&seg).expect("read");
    let n = bytes.len();
    bytes[n - 10] ^= 0x55;
    fs::write(&seg, &bytes).expect("write");
    let log = open(dir.path(), LogConfig::default(), false);
    assert_eq!(log.log_end_offset(), Offset(8));
    assert_eq!(
        fs::metadata(&seg).expect("stat").len(),
        (n - batch(2, 100, 0).len()) as u64
    );
}

#[test]
fn recovery_removes_garbage_after_last_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), LogConfig::default(), true);
    fill(&mut log, 5, 2, 100, 0);
    let size = log.size_bytes();
    drop(log);
    let seg = dir.path().join("00000000000000000000.log");
    let mut bytes = fs::read(&seg).expect("read");
    bytes.extend_from_slice(&[0xab; 300]);
    fs::write(&seg, &bytes).expect("write");
    let log = open(dir.path(), LogConfig::default(), false);
    assert_eq!(log.log_end_offset(), Offset(10));
    assert_eq!(log.size_bytes(), size);
    assert_eq!(fs::metadata(&seg).expect("stat").len(), size);
    // Zero-filled tails (preallocated or lost pages) are cut too.
    drop(log);
    let mut bytes = fs::read(&seg).expect("read");
    bytes.extend_from_slice(&[0; 4096]);
    fs::write(&seg, &bytes).expect("write");
    let log = open(dir.path(), LogConfig::default(), false);
    assert_eq!(log.log_end_offset(), Offset(10));
    assert_eq!(log.size_bytes(), size);
}

#[test]
fn recovery_deletes_segments_after_corruption_point() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), small_config(), true);
    fill(&mut log, 60, 2, 100, 0);
    let bases = log.segment_base_offsets();
    assert!(bases.len() > 3);
    // Recovery point at the start: every segment is validated.
    drop(log);
    let second = dir.path().join(segment::file_name(bases[1].0, LOG_SUFFIX));
    let mut bytes = fs::read(&second).expect("read");
    bytes[100] ^= 0xff; // inside the first batch of the second segment
    fs::write(&second, &bytes).expect("write");
    let mut log = open(dir.path(), small_config(), false);
    assert_eq!(log.segment_count(), 2);
    assert_eq!(log.log_end_offset(), bases[1]);
    assert_eq!(log.open_stats().segments_deleted, bases.len() - 2);
    assert_eq!(seg_files(dir.path(), ".log").len(), 2);
    assert_eq!(seg_files(dir.path(), ".index").len(), 2);
    log.set_high_watermark(log.log_end_offset());
    assert_eq!(read_all(&log, 0).last().map(|h| h.next_offset()), Some(bases[1].0));
}

#[test]
fn unclean_open_only_rescans_from_recovery_point_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), small_config(), true);
    fill(&mut log, 40, 2, 100, 0);
    log.flush().expect("flush");
    assert_eq!(log.recovery_point(), log.log_end_offset());
    fill(&mut log, 2, 2, 100, 0);
    log.checkpoint().expect("checkpoint");
    let segments = log.segment_count();
    let expected_recovered = segments - log.segment_for(80);
    assert!(expected_recovered < segments);
    drop(log);
    let log = open(dir.path(), small_config(), false);
    assert_eq!(log.log_end_offset(), Offset(84));
    assert_eq!(log.segment_count(), segments);
    assert_eq!(log.open_stats().segments_recovered, expected_recovered);
}

#[test]
fn missing_or_corrupt_index_is_rebuilt_on_clean_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), small_config(), true);
    fill(&mut log, 40, 2, 100, 0);
    let bases = log.segment_base_offsets();
    log.close().expect("close");
    let index0 = dir.path().join(segment::file_name(bases[0].0, INDEX_SUFFIX));
    let good_index = fs::read(&index0).expect("read index");
    assert!(!good_index.is_empty());
    fs::remove_file(&index0).expect("remove");
    let time1 = dir.path().join(segment::file_name(bases[1].0, TIME_INDEX_SUFFIX));
    let mut t = fs::read(&time1).expect("read");
    t.push(0); // wrong size
    fs::write(&time1, &t).expect("write");
    let log = open(dir.path(), small_config(), true);
    assert_eq!(log.open_stats().indexes_rebuilt, 2);
    assert_eq!(fs::read(&index0).expect("read index"), good_index);
    assert_eq!(fs::metadata(&time1).expect("stat").len() % 12, 0);
    assert_eq!(read_all(&log, 0).len(), 40);
    assert_eq!(log.offset_for_timestamp(150).expect("lookup"), Some((Offset(30), 150)));
}

#[test]
fn corrupt_index_entries_are_rebuilt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), small_config(), true);
    fill(&mut log, 40, 2, 100, 0);
    let bases = log.segment_base_offsets();
    log.close().expect("close");
    // Last entry of a closed index points past the end of its segment.
    let index0 = dir.path().join(segment::file_name(bases[0].0, INDEX_SUFFIX));
    let mut idx = fs::read(&index0).expect("read");
    let n = idx.len();
    idx[n - 4..].copy_from_slice(&u32::MAX.to_be_bytes());
    fs::write(&index0, &idx).expect("write");
    // The active segment's index is not monotonic.
    let active_index = dir
        .path()
        .join(segment::file_name(bases[bases.len() - 1].0, INDEX_SUFFIX));
    fs::write(&active_index, [0, 0, 0, 5, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 1]).expect("write");
    let log = open(dir.path(), small_config(), true);
    assert_eq!(log.open_stats().indexes_rebuilt, 2);
    assert_eq!(log.log_end_offset(), Offset(80));
    assert_eq!(read_all(&log, 0).len(), 40);
}

#[test]
fn clean_reopen_does_not_rescan_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), small_config(), true);
    fill(&mut log, 200, 2, 100, 0);
    let leo = log.log_end_offset();
    let total = log.size_bytes();
    log.close().expect("close");
    let log = open(dir.path(), small_config(), true);
    let stats = log.open_stats();
    assert_eq!(stats.segments_recovered, 0);
    assert_eq!(stats.indexes_rebuilt, 0);
    // At most the batches after the active segment's last index entry were read.
    assert!(stats.bytes_scanned <= 256 + 2 * 300, "scanned {}", stats.bytes_scanned);
    assert!(stats.bytes_scanned < total / 10);
    assert_eq!(log.log_end_offset(), leo);
    assert_eq!(log.high_watermark(), leo);
    assert_eq!(log.recovery_point(), leo);
}

#[test]
fn reopen_after_many_segments_preserves_offsets_and_timestamps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), small_config(), true);
    fill(&mut log, 150, 3, 100, 1_000);
    log.delete_records_before(Offset(100)).expect("delete");
    let (leo, start, segs) = (log.log_end_offset(), log.log_start_offset(), log.segment_count());
    let max_ts = log.max_timestamp();
    log.close().expect("close");
    for clean in [true, false] {
        let log = open(dir.path(), small_config(), clean);
        assert_eq!(log.log_end_offset(), leo);
        assert_eq!(log.log_start_offset(), start);
        assert_eq!(log.segment_count(), segs);
        assert_eq!(log.max_timestamp(), max_ts);
        assert_eq!(
            log.offset_for_timestamp(2_000).expect("lookup"),
            Some((Offset(300), 2_000))
        );
        log.close().expect("close");
    }
    let mut log = open(dir.path(), small_config(), true);
    let info = log.append(&batch(1, 10, 0), LeaderEpoch(0), 0).expect("append");
    assert_eq!(info.base_offset, leo);
}

#[test]
fn truncate_to_drops_later_records_segments_and_epochs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), small_config(), true);
    for i in 0..60 {
        let epoch = match i {
            0..20 => 1,
            20..40 => 2,
            _ => 3,
        };
        log.append(&batch(2, 100, i as i64), LeaderEpoch(epoch), 0)
            .expect("append");
    }
    log.set_high_watermark(log.log_end_offset());
    log.flush().expect("flush");
    assert_eq!(log.latest_epoch(), Some(LeaderEpoch(3)));
    let segs_before = log.segment_count();
    // Mid-batch target: the whole batch 42..=43 goes.
    log.truncate_to(Offset(43)).expect("truncate");
    assert_eq!(log.log_end_offset(), Offset(42));
    assert_eq!(log.high_watermark(), Offset(42));
    assert_eq!(log.recovery_point(), Offset(42));
    assert!(log.segment_count() < segs_before);
    assert_eq!(log.latest_epoch(), Some(LeaderEpoch(2)));
    assert_eq!(seg_files(dir.path(), ".log").len(), log.segment_count());
    assert_eq!(read_all(&log, 0).len(), 21);
    assert_eq!(log.max_timestamp(), Some((Offset(41), 20)));
    let info = log.append(&batch(1, 10, 500), LeaderEpoch(4), 0).expect("append");
    assert_eq!(info.base_offset, Offset(42));
    log.set_high_watermark(log.log_end_offset());
    assert_eq!(log.offset_for_timestamp(400).expect("lookup"), Some((Offset(42), 500)));
    log.close().expect("close");
    let log = open(dir.path(), small_config(), false);
    assert_eq!(log.log_end_offset(), Offset(43));
    assert_eq!(log.latest_epoch(), Some(LeaderEpoch(4)));
    assert_eq!(
        log.end_offset_for_epoch(LeaderEpoch(2)),
        Some((LeaderEpoch(2), Offset(42)))
    );
    assert_eq!(
        log.end_offset_for_epoch(LeaderEpoch(3)),
        Some((LeaderEpoch(2), Offset(42)))
    );
}

#[test]
fn truncate_to_the_log_end_drops_an_epoch_begun_there_without_appends() {
    // A leader that began epoch 5 at its log end and appended nothing, then became a
    // follower: the new leader (which never had epoch 5) says its epoch 1 ends at that same
    // offset. Truncating there must forget epoch 5, or every later fetch names it again.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), small_config(), true);
    for i in 0..4 {
        log.append(&batch(1, 10, i), LeaderEpoch(1), 0).expect("append");
    }
    log.begin_leader_epoch(LeaderEpoch(5));
    assert_eq!(log.latest_epoch(), Some(LeaderEpoch(5)));
    log.truncate_to(Offset(4)).expect("truncate");
    assert_eq!(log.log_end_offset(), Offset(4));
    assert_eq!(log.latest_epoch(), Some(LeaderEpoch(1)));
    log.close().expect("close");
    let log = open(dir.path(), small_config(), false);
    assert_eq!(log.latest_epoch(), Some(LeaderEpoch(1)));
}

#[test]
fn truncate_to_below_first_segment_starts_empty_log_there() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), small_config(), true);
    fill(&mut log, 40, 2, 100, 0);
    log.delete_records_before(Offset(50)).expect("delete");
    let first = log.segment_base_offsets()[0];
    assert!(first.0 > 10);
    log.truncate_to(Offset(10)).expect("truncate");
    assert_eq!(log.segment_base_offsets(), vec![Offset(10)]);
    assert_eq!(log.log_start_offset(), Offset(10));
    assert_eq!(log.log_end_offset(), Offset(10));
    assert_eq!(seg_files(dir.path(), ".log"), vec![segment::file_name(10, LOG_SUFFIX)]);
}

#[test]
fn epoch_cache_survives_reopen_and_answers_end_offsets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), LogConfig::default(), true);
    log.append(&batch(5, 10, 0), LeaderEpoch(1), 0).expect("append");
    log.append(&batch(5, 10, 0), LeaderEpoch(1), 0).expect("append");
    log.append(&batch(5, 10, 0), LeaderEpoch(3), 0).expect("append");
    log.checkpoint().expect("checkpoint");
    let text = fs::read_to_string(dir.path().join("leader-epoch-checkpoint")).expect("read");
    assert_eq!(text, "0\n2\n1 0\n3 10\n");
    drop(log);
    let log = open(dir.path(), LogConfig::default(), false);
    assert_eq!(log.latest_epoch(), Some(LeaderEpoch(3)));
    assert_eq!(
        log.end_offset_for_epoch(LeaderEpoch(1)),
        Some((LeaderEpoch(1), Offset(10)))
    );
    assert_eq!(
        log.end_offset_for_epoch(LeaderEpoch(2)),
        Some((LeaderEpoch(1), Offset(10)))
    );
    assert_eq!(
        log.end_offset_for_epoch(LeaderEpoch(3)),
        Some((LeaderEpoch(3), Offset(15)))
    );
    assert_eq!(log.end_offset_for_epoch(LeaderEpoch(4)), None);
}

#[test]
fn unclean_recovery_rebuilds_epochs_missing_from_checkpoint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), LogConfig::default(), true);
    log.append(&batch(5, 10, 0), LeaderEpoch(1), 0).expect("append");
    log.checkpoint().expect("checkpoint");
    log.append(&batch(5, 10, 0), LeaderEpoch(2), 0).expect("append");
    drop(log); // epoch 2 never checkpointed
    let log = open(dir.path(), LogConfig::default(), false);
    assert_eq!(log.latest_epoch(), Some(LeaderEpoch(2)));
    assert_eq!(
        log.end_offset_for_epoch(LeaderEpoch(1)),
        Some((LeaderEpoch(1), Offset(5)))
    );
}

#[test]
fn flush_ticket_advances_recovery_point_after_sync() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), small_config(), true);
    assert!(log.flush_ticket().is_none());
    assert_eq!(log.unflushed_messages(), 0);
    assert_eq!(log.oldest_unflushed_append_ms(), None);
    log.append(&batch(3, 100, 0), LeaderEpoch(0), 1_000).expect("append");
    log.append(&batch(3, 100, 0), LeaderEpoch(0), 2_000).expect("append");
    assert_eq!(log.unflushed_messages(), 6);
    assert_eq!(log.oldest_unflushed_append_ms(), Some(1_000));
    let ticket = log.flush_ticket().expect("ticket");
    assert_eq!(ticket.up_to(), Offset(6));
    // Appends between ticket and mark stay unflushed.
    log.append(&batch(3, 100, 0), LeaderEpoch(0), 3_000).expect("append");
    // Marking without syncing does nothing.
    log.mark_flushed(ticket.up_to());
    assert_eq!(log.recovery_point(), Offset(0));
    ticket.sync().expect("sync");
    log.mark_flushed(ticket.up_to());
    assert_eq!(log.recovery_point(), Offset(6));
    assert_eq!(log.unflushed_messages(), 3);
    assert_eq!(log.oldest_unflushed_append_ms(), Some(3_000));
    // Monotonic.
    log.mark_flushed(Offset(2));
    assert_eq!(log.recovery_point(), Offset(6));
    log.flush().expect("flush");
    assert_eq!(log.recovery_point(), Offset(9));
    assert!(log.flush_ticket().is_none());
    assert_eq!(log.oldest_unflushed_append_ms(), None);
}

#[test]
fn flush_ticket_from_before_truncation_does_not_count() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), LogConfig::default(), true);
    fill(&mut log, 4, 2, 10, 0);
    let ticket = log.flush_ticket().expect("ticket");
    log.truncate_to(Offset(4)).expect("truncate");
    fill(&mut log, 4, 2, 10, 0);
    ticket.sync().expect("sync");
    log.mark_flushed(ticket.up_to());
    assert_eq!(log.recovery_point(), Offset(0));
    log.flush().expect("flush");
    assert_eq!(log.recovery_point(), Offset(12));
}

#[test]
fn flush_ticket_covers_segments_rolled_since_last_flush() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), small_config(), true);
    fill(&mut log, 10, 2, 100, 0);
    log.flush().expect("flush");
    fill(&mut log, 30, 2, 100, 0);
    let ticket = log.flush_ticket().expect("ticket");
    // The segment holding the old recovery point and every later one.
    let expected = log.segments.len() - log.segment_for(20);
    assert_eq!(ticket.files.len(), expected);
    assert!(!ticket.pending.is_empty());
    ticket.sync().expect("sync");
    log.mark_flushed(ticket.up_to());
    assert!(log.pending_sync.is_empty());
}

#[test]
fn read_plan_survives_segment_deletion() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        retention_ms: Some(0),
        ..small_config()
    };
    let mut log = open(dir.path(), config, true);
    fill(&mut log, 40, 2, 100, 0);
    let plan = log.read(Offset(0), log.high_watermark(), 1 << 20, true).expect("read");
    let expected = plan.read_bytes().expect("bytes");
    log.apply_retention(1_000_000).expect("retention");
    assert!(!dir.path().join("00000000000000000000.log").exists());
    assert_eq!(plan.read_bytes().expect("bytes after delete"), expected);
}

#[test]
fn open_creates_empty_log_and_cleans_leftovers() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("recovery-point.tmp"), "junk").expect("write");
    fs::write(dir.path().join("00000000000000000099.index"), [0u8; 8]).expect("write");
    let log = open(dir.path(), LogConfig::default(), false);
    assert_eq!(log.log_end_offset(), Offset(0));
    assert_eq!(log.max_timestamp(), None);
    assert_eq!(log.offset_for_timestamp(0).expect("lookup"), None);
    assert!(!dir.path().join("recovery-point.tmp").exists());
    assert!(!dir.path().join("00000000000000000099.index").exists());
    assert!(dir.path().join("00000000000000000000.log").exists());
    assert!(dir.path().join("log-start-offset").exists());
}

/// Rough append throughput check: `cargo test -p fjord-storage --release -- --ignored --nocapture`.
#[test]
#[ignore]
fn append_throughput_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), LogConfig::default(), true);
    for size in [16 * 1024, 64 * 1024, 128 * 1024] {
        let b = batch(size / 1024, 1000, 1);
        let total = 512 << 20;
        let n = total / b.len();
        let start = std::time::Instant::now();
        for _ in 0..n {
            log.append(&b, LeaderEpoch(0), 1).expect("append");
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "batch {} B: {:.0} MiB/s ({} appends)",
            b.len(),
            (n * b.len()) as f64 / secs / (1 << 20) as f64,
            n
        );
    }
}

#[test]
fn plans_and_tickets_are_send_and_static() {
    fn assert_send_static<T: Send + Sync + 'static>() {}
    assert_send_static::<ReadPlan>();
    assert_send_static::<FlushTicket>();
    assert_send_static::<Log>();
    assert_send_static::<Error>();
}

#[test]
fn offset_for_timestamp_handles_out_of_order_batch_timestamps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = LogConfig {
        index_interval_bytes: 0,
        segment_bytes: 512,
        ..small_config()
    };
    let mut log = open(dir.path(), config, true);
    let stamps = [100, 500, 200, 600, 300, 50, 700];
    for ts in stamps {
        log.append(&batch(2, 30, ts), LeaderEpoch(0), 0).expect("append");
    }
    log.set_high_watermark(log.log_end_offset());
    assert!(log.segment_count() > 1);
    for target in [0, 100, 150, 250, 500, 550, 650, 700] {
        let expected = stamps
            .iter()
            .position(|&ts| ts >= target)
            .map(|i| (Offset(2 * i as i64), stamps[i]));
        assert_eq!(
            log.offset_for_timestamp(target).expect("lookup"),
            expected,
            "ts {target}"
        );
    }
    assert_eq!(log.offset_for_timestamp(701).expect("lookup"), None);
    assert_eq!(log.max_timestamp(), Some((Offset(13), 700)));
}

#[test]
fn unflushed_append_marks_stay_bounded_and_conservative() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), LogConfig::default(), true);
    let b = batch(1, 10, 0);
    for ms in 0..5_000 {
        log.append(&b, LeaderEpoch(0), ms).expect("append");
    }
    assert_eq!(log.unflushed_appends.len(), MAX_APPEND_MARKS);
    assert_eq!(log.oldest_unflushed_append_ms(), Some(0));
    let ticket = log.flush_ticket().expect("ticket");
    ticket.sync().expect("sync");
    log.mark_flushed(Offset(100));
    // Marks 100.. remain; the oldest unflushed append happened at 100.
    assert_eq!(log.oldest_unflushed_append_ms(), Some(100));
    log.mark_flushed(Offset(4_000));
    // Beyond the cap the times are merged into the last mark, which keeps an older time.
    assert!(log.oldest_unflushed_append_ms().is_some_and(|t| t <= 4_000));
    log.mark_flushed(ticket.up_to());
    assert_eq!(log.oldest_unflushed_append_ms(), None);
}

#[test]
fn max_timestamp_record_finds_the_exact_record_inside_a_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = open(dir.path(), small_config(), true);
    // Two batches; the maximum timestamp (900) is carried by the 3rd record of the second.
    let first =
        crate::batch::test_util::batch_with(4, 10, kafka_protocol::records::Compression::None, |i| 100 + i as i64);
    let second = crate::batch::test_util::batch_with(5, 10, kafka_protocol::records::Compression::None, |i| {
        if i == 2 { 900 } else { 200 + i as i64 }
    });
    log.append(&first, LeaderEpoch(0), 0).expect("append");
    log.append(&second, LeaderEpoch(0), 0).expect("append");
    let leo = log.log_end_offset();
    log.set_high_watermark(leo);
    assert_eq!(
        log.max_timestamp(),
        Some((Offset(8), 900)),
        "batch granularity: the batch's last offset"
    );
    assert_eq!(log.max_timestamp_record().expect("lookup"), Some((Offset(6), 900)));
}

/// Descriptors of this process that point into `dir` (from /proc/self/fd).
fn fds_into(dir: &Path) -> usize {
    let dir = fs::canonicalize(dir).expect("canonical dir");
    fs::read_dir("/proc/self/fd")
        .expect("list fds")
        .filter_map(|e| e.ok())
        .filter_map(|e| fs::read_link(e.path()).ok())
        .filter(|target| target.starts_with(&dir))
        .count()
}

#[test]
fn many_segments_and_logs_keep_at_most_the_file_cache_open() {
    let root = tempfile::tempdir().expect("tempdir");
    let files = FileCache::new(8);
    let mut logs = Vec::new();
    for p in 0..4 {
        let dir = root.path().join(format!("t-{p}"));
        let mut log = Log::open_with_files(&dir, small_config(), false, Arc::clone(&files)).expect("open");
        // 4 KiB segments: about 20 segments (60 files) per log.
        fill(&mut log, 80, 4, 200, 1_000);
        assert!(log.segment_count() >= 15, "{} segments", log.segment_count());
        log.flush().expect("flush");
        log.checkpoint().expect("checkpoint");
        logs.push(log);
    }
    assert!(fds_into(root.path()) <= 8, "{} descriptors open", fds_into(root.path()));
    // Every segment of every log stays readable (files reopened on use, others closed).
    for log in &logs {
        let hs = read_all(log, 0);
        assert_eq!(hs.len(), 80);
        assert_eq!(
            log.offset_for_timestamp(1_000 + 10 * 50)
                .expect("lookup")
                .map(|(o, _)| o.0),
            Some(200)
        );
    }
    assert!(fds_into(root.path()) <= 8);
    for log in logs.drain(..) {
        log.close().expect("close");
    }
    assert_eq!(fds_into(root.path()), 0, "closed logs hold no descriptors");
    // Reopening (clean, and unclean with full recovery) stays within the bound too.
    for clean in [true, false] {
        for p in 0..4 {
            let dir = root.path().join(format!("t-{p}"));
            let log = Log::open_with_files(&dir, small_config(), clean, Arc::clone(&files)).expect("reopen");
            assert_eq!(log.log_end_offset().0, 320);
            assert_eq!(read_all(&log, 0).len(), 80);
            logs.push(log);
        }
        assert!(fds_into(root.path()) <= 8, "{} descriptors open", fds_into(root.path()));
        logs.clear();
    }
    assert!(files.opens() > 8 * 4, "files were reopened through the cache");
}

/// Reads the raw bytes of the whole log from `from` up to `upto` (exclusive).
fn read_raw(log: &Log, from: i64, upto: Offset) -> Vec<u8> {
    let mut out = Vec::new();
    let mut next = from;
    while next < upto.0 {
        let plan = log.read(Offset(next), upto, 1 << 20, true).expect("read");
        if plan.is_empty() {
            break;
        }
        let bytes = plan.read_bytes().expect("read bytes");
        next = headers(&bytes).last().expect("a batch").next_offset();
        out.extend_from_slice(&bytes);
    }
    out
}

#[test]
fn a_follower_copies_the_leaders_batches_verbatim_across_segments_and_epochs() {
    let leader_dir = tempfile::tempdir().expect("tempdir");
    let follower_dir = tempfile::tempdir().expect("tempdir");
    let mut leader = open(leader_dir.path(), small_config(), false);
    let mut follower = open(follower_dir.path(), small_config(), false);
    for i in 0..12 {
        let b = batch(3, 200, 1_000 + i);
        leader
            .append(&b, LeaderEpoch(if i < 6 { 1 } else { 4 }), 1_000 + i)
            .expect("append");
    }
    // Fetch in chunks as a replica fetcher would, each at the follower's log end offset.
    let end = leader.log_end_offset();
    while follower.log_end_offset() < end {
        let from = follower.log_end_offset().0;
        let plan = leader.read(Offset(from), end, 1500, true).expect("read");
        let bytes = plan.read_bytes().expect("bytes");
        let info = follower.append_as_follower(&bytes, 2_000).expect("follower append");
        assert_eq!(info.base_offset.0, from);
    }
    assert_eq!(follower.log_end_offset(), end);
    assert!(follower.segment_count() > 1, "the follower rolled segments too");
    assert_eq!(
        read_raw(&follower, 0, end),
        read_raw(&leader, 0, end),
        "byte-identical replicas"
    );
    assert_eq!(follower.latest_epoch(), Some(LeaderEpoch(4)));
    assert_eq!(
        follower.end_offset_for_epoch(LeaderEpoch(1)),
        leader.end_offset_for_epoch(LeaderEpoch(1))
    );
    // A batch below the log end offset is refused (the follower must truncate first) and the
    // log is unchanged; a corrupt batch is refused.
    let again = leader
        .read(Offset(0), end, 1500, true)
        .expect("read")
        .read_bytes()
        .expect("bytes");
    assert!(matches!(
        follower.append_as_follower(&again, 2_000),
        Err(Error::OffsetOutOfOrder { .. })
    ));
    let mut bad = again.to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    assert!(follower.append_as_follower(&bad, 2_000).is_err());
    assert_eq!(follower.log_end_offset(), end);
    // Reopened after a crash, the copy is intact.
    drop(follower);
    let follower = open(follower_dir.path(), small_config(), false);
    assert_eq!(follower.log_end_offset(), end);
    assert_eq!(follower.latest_epoch(), Some(LeaderEpoch(4)));
}

#[test]
fn an_empty_follower_starts_where_the_leaders_log_starts() {
    let leader_dir = tempfile::tempdir().expect("tempdir");
    let follower_dir = tempfile::tempdir().expect("tempdir");
    let mut leader = open(leader_dir.path(), small_config(), false);
    fill(&mut leader, 10, 2, 300, 1_000);
    leader.delete_records_before(Offset(7)).expect("delete records");
    let start = leader.log_start_offset();
    let plan = leader
        .read(start, leader.log_end_offset(), 1 << 20, true)
        .expect("read");
    let bytes = plan.read_bytes().expect("bytes");
    let first = headers(&bytes)[0].base_offset;
    let mut follower = open(follower_dir.path(), small_config(), false);
    follower.append_as_follower(&bytes, 2_000).expect("follower append");
    assert_eq!(follower.log_start_offset().0, first);
    assert_eq!(
        follower.log_end_offset(),
        headers(&bytes).last().expect("batch").next_offset().into()
    );
}
