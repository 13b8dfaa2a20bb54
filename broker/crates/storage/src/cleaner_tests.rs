//! Tests of the log cleaner: latest value per key, codecs, tombstones, dirty ratio and lags,
//! the active segment, producer batches, keyless records, and crash recovery at every swap step.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use parking_lot::Mutex;

use super::*;
use crate::log::LogConfig;
use crate::types::LeaderEpoch;

const DAY_MS: i64 = 86_400_000;

fn compact_config() -> LogConfig {
    LogConfig {
        segment_bytes: 2048,
        segment_ms: None,
        retention_ms: None,
        retention_bytes: None,
        index_interval_bytes: 128,
        cleanup_policy: CleanupPolicy {
            delete: false,
            compact: true,
        },
        compaction: CompactionConfig {
            delete_retention_ms: DAY_MS,
            min_cleanable_dirty_ratio: 0.0,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
        },
        ..LogConfig::default()
    }
}

/// One record: key, value (None = tombstone).
type Kv = (Option<String>, Option<String>);

/// Encodes one batch of records with the codec, timestamps `ts`, and an optional producer id.
fn keyed_batch(records: &[Kv], compression: Compression, ts: i64, producer: Option<(i64, i32)>) -> Vec<u8> {
    let (pid, seq0) = producer.unwrap_or((-1, -1));
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (k, v))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: pid,
            producer_epoch: if pid >= 0 { 0 } else { -1 },
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: if pid >= 0 { seq0 + i as i32 } else { i as i32 },
            timestamp: ts,
            key: k.as_ref().map(|k| Bytes::from(k.clone())),
            value: v.as_ref().map(|v| Bytes::from(v.clone())),
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
    .expect("encode");
    buf.to_vec()
}

fn kv(k: &str, v: &str) -> Kv {
    (Some(k.to_string()), Some(v.to_string()))
}

fn tombstone(k: &str) -> Kv {
    (Some(k.to_string()), None)
}

fn append(log: &mut Log, records: &[Kv], compression: Compression, ts: i64) {
    let b = keyed_batch(records, compression, ts, None);
    log.append(&b, LeaderEpoch(0), ts).expect("append");
    let leo = log.log_end_offset();
    log.set_high_watermark(leo);
    log.flush().expect("flush");
}

/// A record read back: offset, key, value.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Read {
    offset: i64,
    key: Option<String>,
    value: Option<String>,
}

/// Reads every record from the log start offset to the high watermark, decoding (and
/// decompressing) each batch with kafka-protocol, and checks every batch's CRC.
fn read_records(log: &Log) -> (Vec<Read>, Vec<BatchHeader>) {
    let mut out = Vec::new();
    let mut headers = Vec::new();
    let mut next = log.log_start_offset().0;
    while next < log.high_watermark().0 {
        let plan = log
            .read(Offset(next), log.high_watermark(), 1 << 20, true)
            .expect("read");
        if plan.is_empty() {
            break;
        }
        let bytes = plan.read_bytes().expect("read bytes");
        for raw in crate::batch::scan_batches(&bytes) {
            let raw = raw.expect("valid batch");
            crate::batch::verify_crc(&raw.header, raw.bytes).expect("crc");
            headers.push(raw.header);
            next = raw.header.next_offset();
            let mut buf = Bytes::copy_from_slice(raw.bytes);
            let set = RecordBatchDecoder::decode(&mut buf).expect("decodes");
            for r in set.records {
                out.push(Read {
                    offset: r.offset,
                    key: r.key.map(|k| String::from_utf8(k.to_vec()).expect("utf8")),
                    value: r.value.map(|v| String::from_utf8(v.to_vec()).expect("utf8")),
                });
            }
        }
    }
    (out, headers)
}

/// Latest value per key as a consumer reading the whole log would see it.
fn latest(reads: &[Read]) -> BTreeMap<String, Option<String>> {
    let mut m = BTreeMap::new();
    for r in reads {
        m.insert(r.key.clone().expect("keyed"), r.value.clone());
    }
    m
}

fn throttler() -> Throttler {
    Throttler::new(None, Arc::new(AtomicBool::new(false)))
}

fn clean(log: &Mutex<Log>, now_ms: i64) -> Option<CleanStats> {
    clean_log(log, now_ms, &CleanerConfig::default(), &throttler()).expect("clean")
}

fn now() -> i64 {
    crate::log::now_ms()
}

/// 20 rounds over 10 keys, one batch of 5 records per append: many segments of 2 KiB.
fn fill_rounds(log: &mut Log, compression: Compression, rounds: usize) -> BTreeMap<String, Option<String>> {
    let ts = now();
    let mut expected = BTreeMap::new();
    for round in 0..rounds {
        for half in 0..2 {
            let recs: Vec<Kv> = (0..5)
                .map(|i| {
                    let k = format!("key-{}", half * 5 + i);
                    let v = format!("value-{round}-{}", "x".repeat(20));
                    expected.insert(k.clone(), Some(v.clone()));
                    (Some(k), Some(v))
                })
                .collect();
            append(log, &recs, compression, ts);
        }
    }
    expected
}

fn files_with_suffix(dir: &Path, suffix: &str) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .expect("list")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(suffix))
        .collect();
    v.sort();
    v
}

#[test]
fn cleaning_keeps_the_latest_value_per_key_and_leaves_the_active_segment_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), compact_config(), true).expect("open");
    let expected = fill_rounds(&mut log, Compression::None, 20);
    let leo = log.log_end_offset();
    assert_eq!(leo.0, 200);
    let segments_before = log.segment_count();
    assert!(segments_before > 5, "{segments_before} segments");
    let active_base = *log.segment_base_offsets().last().expect("active");
    let active_path = dir.path().join(segment::file_name(active_base.0, LOG_SUFFIX));
    let active_bytes = fs::read(&active_path).expect("read active");
    let size_before = log.size_bytes();
    let log = Mutex::new(log);

    let stats = clean(&log, now()).expect("cleanable");
    assert!(stats.records_removed > 0);
    assert!(stats.bytes_after < stats.bytes_before, "{stats:?}");
    assert_eq!(stats.first_dirty_offset, active_base);
    let log = log.into_inner();
    assert_eq!(log.log_end_offset(), leo);
    assert!(log.size_bytes() < size_before);
    assert_eq!(*log.segment_base_offsets().last().expect("active"), active_base);
    assert_eq!(
        fs::read(&active_path).expect("read active"),
        active_bytes,
        "active segment untouched"
    );
    let (reads, _) = read_records(&log);
    assert_eq!(latest(&reads), expected);
    // Cleaned part: each key at most once; offsets strictly increasing with gaps.
    let cleaned: Vec<&Read> = reads.iter().filter(|r| r.offset < active_base.0).collect();
    let mut keys: Vec<_> = cleaned.iter().map(|r| r.key.clone()).collect();
    keys.sort();
    let n = keys.len();
    keys.dedup();
    assert_eq!(keys.len(), n, "a key appears twice in the cleaned segments");
    assert!(reads.windows(2).all(|w| w[0].offset < w[1].offset));
    assert!(files_with_suffix(dir.path(), CLEANED_SUFFIX).is_empty());
    assert!(files_with_suffix(dir.path(), SWAP_SUFFIX).is_empty());

    // Reopen (clean and unclean): the cleaned log loads, indexes are sane, same records.
    drop(log);
    for clean_shutdown in [true, false] {
        let log = Log::open(dir.path(), compact_config(), clean_shutdown).expect("reopen");
        assert_eq!(log.log_end_offset(), leo);
        let mut log2 = log;
        log2.set_high_watermark(leo);
        assert_eq!(read_records(&log2).0, reads);
        log2.close().expect("close");
    }
}

#[test]
fn every_offset_stays_readable_after_cleaning() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), compact_config(), true).expect("open");
    fill_rounds(&mut log, Compression::None, 10);
    let log = Mutex::new(log);
    clean(&log, now()).expect("cleanable");
    let log = log.into_inner();
    let (reads, _) = read_records(&log);
    let hw = log.high_watermark().0;
    for offset in 0..hw {
        let plan = log
            .read(Offset(offset), log.high_watermark(), 1 << 16, true)
            .expect("read");
        assert!(!plan.is_empty(), "nothing readable at {offset}");
        let bytes = plan.read_bytes().expect("bytes");
        let h = BatchHeader::parse(&bytes).expect("header");
        assert!(h.last_offset() >= offset, "batch before {offset}");
        // The first record at or after `offset` is the next retained one.
        let next = reads.iter().find(|r| r.offset >= offset).map(|r| r.offset);
        let mut buf = Bytes::from(bytes.to_vec());
        let set = RecordBatchDecoder::decode(&mut buf).expect("decode");
        let first = set.records.iter().map(|r| r.offset).find(|o| *o >= offset);
        if let (Some(first), Some(next)) = (first, next) {
            assert_eq!(first, next);
        }
    }
}

#[test]
fn cleaning_recompresses_with_each_batch_codec() {
    for (compression, codec) in [
        (Compression::Gzip, 1u8),
        (Compression::Snappy, 2),
        (Compression::Lz4, 3),
        (Compression::Zstd, 4),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = Log::open(dir.path(), compact_config(), true).expect("open");
        let ts = now();
        let mut expected = BTreeMap::new();
        // Each batch overwrites half the keys of the one before: batches are partly retained.
        for round in 0..40 {
            let recs: Vec<Kv> = (0..4)
                .map(|i| {
                    let k = format!("k{}", (round * 2 + i) % 12);
                    let v = format!("{compression:?}-{round}-{i}-{}", "p".repeat(40));
                    expected.insert(k.clone(), Some(v.clone()));
                    (Some(k), Some(v))
                })
                .collect();
            append(&mut log, &recs, compression, ts);
        }
        let log = Mutex::new(log);
        let stats = clean(&log, now()).expect("cleanable");
        assert!(stats.records_removed > 0, "{compression:?}");
        let log = log.into_inner();
        let (reads, headers) = read_records(&log);
        assert_eq!(latest(&reads), expected, "{compression:?}");
        let rewritten: Vec<&BatchHeader> = headers
            .iter()
            .filter(|h| h.record_count > 0 && i64::from(h.record_count) < i64::from(h.last_offset_delta) + 1)
            .collect();
        assert!(!rewritten.is_empty(), "{compression:?}: no partly retained batch");
        for h in &headers {
            assert_eq!(
                h.compression(),
                codec,
                "{compression:?}: codec changed in batch at {}",
                h.base_offset
            );
        }
    }
}

#[test]
fn batch_offsets_timestamps_and_producer_fields_are_preserved() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), compact_config(), true).expect("open");
    let ts = now() - 5_000;
    // Producer 7: two batches whose records are all superseded later by producer-less records.
    for (i, seq) in [(0, 0), (1, 3)] {
        let recs: Vec<Kv> = (0..3).map(|j| kv(&format!("p{j}"), &format!("old-{i}-{j}"))).collect();
        let b = keyed_batch(&recs, Compression::None, ts + i, Some((7, seq)));
        log.append(&b, LeaderEpoch(3), ts).expect("append");
    }
    // A batch of producer 9 with one superseded and one surviving record.
    let b = keyed_batch(
        &[kv("p0", "x"), kv("only9", "kept")],
        Compression::Lz4,
        ts + 2,
        Some((9, 10)),
    );
    log.append(&b, LeaderEpoch(3), ts).expect("append");
    for round in 0..30 {
        let recs: Vec<Kv> = (0..3)
            .map(|j| kv(&format!("p{j}"), &format!("new-{round}-{}", "z".repeat(30))))
            .collect();
        append(&mut log, &recs, Compression::None, ts + 10 + round);
    }
    let before = read_records(&log).1;
    let log = Mutex::new(log);
    clean(&log, now()).expect("cleanable");
    let log = log.into_inner();
    let (reads, after) = read_records(&log);
    // Producer 7: only its last batch survives, empty, with its offsets and sequence.
    let p7: Vec<&BatchHeader> = after.iter().filter(|h| h.producer_id == 7).collect();
    assert_eq!(p7.len(), 1, "{p7:?}");
    let orig = before
        .iter()
        .find(|h| h.producer_id == 7 && h.base_sequence == 3)
        .expect("orig");
    assert_eq!(p7[0].record_count, 0);
    assert_eq!(
        (
            p7[0].base_offset,
            p7[0].last_offset_delta,
            p7[0].producer_epoch,
            p7[0].base_sequence
        ),
        (
            orig.base_offset,
            orig.last_offset_delta,
            orig.producer_epoch,
            orig.base_sequence
        )
    );
    assert_eq!(
        (p7[0].base_timestamp, p7[0].max_timestamp),
        (orig.base_timestamp, orig.max_timestamp)
    );
    assert_eq!(p7[0].partition_leader_epoch, 3);
    // Producer 9: rewritten with one record, same header fields, still lz4.
    let p9 = after.iter().find(|h| h.producer_id == 9).expect("p9 batch");
    let o9 = before.iter().find(|h| h.producer_id == 9).expect("orig p9");
    assert_eq!(p9.record_count, 1);
    assert_eq!(p9.compression(), 3);
    assert_eq!(
        (
            p9.base_offset,
            p9.last_offset_delta,
            p9.base_sequence,
            p9.base_timestamp,
            p9.max_timestamp
        ),
        (
            o9.base_offset,
            o9.last_offset_delta,
            o9.base_sequence,
            o9.base_timestamp,
            o9.max_timestamp
        )
    );
    let kept = reads
        .iter()
        .find(|r| r.key.as_deref() == Some("only9"))
        .expect("only9 kept");
    assert_eq!(kept.offset, o9.base_offset + 1);
}

#[test]
fn tombstones_are_kept_until_delete_retention_ms_has_passed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), compact_config(), true).expect("open");
    let mut expected = fill_rounds(&mut log, Compression::None, 6);
    let ts = now();
    append(
        &mut log,
        &[tombstone("key-1"), tombstone("key-2")],
        Compression::Zstd,
        ts,
    );
    expected.insert("key-1".into(), None);
    expected.insert("key-2".into(), None);
    // Push the tombstones out of the active segment.
    for i in 0..20 {
        append(
            &mut log,
            &[kv("filler", &format!("f{i}-{}", "y".repeat(100)))],
            Compression::None,
            ts,
        );
    }
    expected.insert("filler".into(), Some(format!("f19-{}", "y".repeat(100))));
    let log = Mutex::new(log);
    let stats = clean(&log, now()).expect("cleanable");
    assert_eq!(stats.tombstones_removed, 0);
    {
        let log = log.lock();
        let (reads, _) = read_records(&log);
        assert_eq!(latest(&reads), expected);
        assert_eq!(reads.iter().filter(|r| r.key.as_deref() == Some("key-1")).count(), 1);
    }
    // Nothing dirty and no tombstone due yet: nothing to do.
    assert!(log.lock().cleanable_ratio(now()).expect("ratio").is_none());
    // A day later the tombstones' segment is older than delete.retention.ms: the log is
    // cleanable again without new data, and the tombstones go.
    let later = now() + DAY_MS + 60_000;
    assert!(log.lock().cleanable_ratio(later).expect("ratio").is_some());
    let stats = clean(&log, later).expect("cleanable for tombstones");
    assert_eq!(stats.tombstones_removed, 2);
    let log = log.into_inner();
    let (reads, _) = read_records(&log);
    expected.remove("key-1");
    expected.remove("key-2");
    assert_eq!(latest(&reads), expected);
    assert!(reads.iter().all(|r| r.value.is_some()));
    // The tombstone deadline is persisted and cleared: reopening finds nothing to do.
    drop(log);
    let mut log = Log::open(dir.path(), compact_config(), true).expect("reopen");
    log.set_high_watermark(log.log_end_offset());
    assert!(log.cleanable_ratio(later).expect("ratio").is_none());
}

#[test]
fn min_cleanable_dirty_ratio_is_honoured() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = compact_config();
    config.compaction.min_cleanable_dirty_ratio = 0.5;
    let mut log = Log::open(dir.path(), config.clone(), true).expect("open");
    // 300 distinct keys: compaction cannot shrink them, so the clean section stays large.
    let mut expected = BTreeMap::new();
    for i in 0..300 {
        let (k, v) = (format!("distinct-{i}"), format!("v{i}-{}", "d".repeat(40)));
        expected.insert(k.clone(), Some(v.clone()));
        append(&mut log, &[(Some(k), Some(v))], Compression::None, now());
    }
    let log = Mutex::new(log);
    // Everything is dirty at first: ratio 1.0.
    assert_eq!(log.lock().cleanable_ratio(now()).expect("ratio"), Some(1.0));
    clean(&log, now()).expect("cleanable");
    assert_eq!(log.lock().cleanable_ratio(now()).expect("ratio"), None);
    {
        let mut l = log.lock();
        // Overwrite a few keys: about one segment of new data against ~10 clean ones.
        for i in 0..30 {
            let v = format!("new-{i}-{}", "q".repeat(40));
            expected.insert(format!("distinct-{i}"), Some(v.clone()));
            append(
                &mut l,
                &[(Some(format!("distinct-{i}")), Some(v))],
                Compression::None,
                now(),
            );
        }
        assert!(l.cleanable_ratio(now()).expect("ratio").is_none(), "below 0.5");
        // Lowering the ratio makes it cleanable.
        let mut c = config.clone();
        c.compaction.min_cleanable_dirty_ratio = 0.01;
        l.set_config(c);
        let ratio = l.cleanable_ratio(now()).expect("ratio").expect("cleanable");
        assert!(ratio > 0.01 && ratio < 0.5, "{ratio}");
    }
    let stats = clean(&log, now()).expect("cleanable");
    assert!(stats.dirty_ratio < 0.5);
    assert!(stats.records_removed > 0);
    let log = log.into_inner();
    assert_eq!(latest(&read_records(&log).0), expected);
}

#[test]
fn min_and_max_compaction_lag_are_honoured() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = compact_config();
    config.compaction.min_compaction_lag_ms = 60_000;
    let mut log = Log::open(dir.path(), config.clone(), true).expect("open");
    fill_rounds(&mut log, Compression::None, 10);
    // Records are seconds old: too young for a one-minute lag.
    assert!(log.cleanable_ratio(now()).expect("ratio").is_none());
    // Two minutes later they may be compacted.
    assert!(log.cleanable_ratio(now() + 120_000).expect("ratio").is_some());

    // max.compaction.lag.ms: a ratio of 1.0 is never reached, but the dirty data is overdue.
    config.compaction.min_compaction_lag_ms = 0;
    config.compaction.min_cleanable_dirty_ratio = 1.0;
    log.set_config(config.clone());
    let log = Mutex::new(log);
    clean(&log, now()).expect("ratio 1.0 at first: everything is dirty");
    {
        let mut l = log.lock();
        for i in 0..30 {
            append(
                &mut l,
                &[kv("key-3", &format!("m{i}-{}", "w".repeat(100)))],
                Compression::None,
                now(),
            );
        }
        assert!(l.cleanable_ratio(now()).expect("ratio").is_none());
        config.compaction.max_compaction_lag_ms = 10_000;
        l.set_config(config);
        assert!(l.cleanable_ratio(now()).expect("ratio").is_none(), "not overdue yet");
        assert!(l.cleanable_ratio(now() + 20_000).expect("ratio").is_some(), "overdue");
    }
    clean(&log, now() + 20_000).expect("overdue log cleaned");
}

#[test]
fn keyless_records_are_refused_on_compacted_logs_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), compact_config(), true).expect("open");
    for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let b = keyed_batch(&[kv("a", "1"), (None, Some("no key".into()))], compression, 1, None);
        // A payload of two batches: record errors count records from the payload's start.
        let payload = [b.clone(), b].concat();
        let err = log.append(&payload, LeaderEpoch(0), 1).expect_err("keyless refused");
        let Error::Batch(crate::BatchError::RejectedRecords { errors, total }) = err else {
            panic!("{err:?}");
        };
        assert_eq!(total, 1, "the first failing batch refuses the payload");
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].batch_index, 1);
        assert_eq!(errors[0].kind, crate::RecordErrorKind::MissingKey);
        let mut second_bad = keyed_batch(&[kv("a", "1"), kv("b", "2")], compression, 1, None);
        second_bad.extend(keyed_batch(
            &[kv("c", "3"), (None, Some("no key".into()))],
            compression,
            1,
            None,
        ));
        let err = log.append(&second_bad, LeaderEpoch(0), 1).expect_err("keyless refused");
        let Error::Batch(crate::BatchError::RejectedRecords { errors, .. }) = err else {
            panic!("{err:?}");
        };
        assert_eq!(errors[0].batch_index, 3, "index 1 of the second batch, after 2 records");
    }
    assert_eq!(log.log_end_offset().0, 0, "nothing appended");
    log.append(
        &keyed_batch(&[kv("a", "1")], Compression::Lz4, 1, None),
        LeaderEpoch(0),
        1,
    )
    .expect("keyed accepted");
    let dir2 = tempfile::tempdir().expect("tempdir");
    let mut plain = Log::open(dir2.path(), crate::log::LogConfig::default(), true).expect("open");
    let b = keyed_batch(&[(None, Some("no key".into()))], Compression::None, 1, None);
    plain
        .append(&b, LeaderEpoch(0), 1)
        .expect("delete policy accepts keyless");
}

#[test]
fn compact_only_logs_skip_time_retention_and_compact_delete_applies_it() {
    for (delete, expect_deleted) in [(false, false), (true, true)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = compact_config();
        config.retention_ms = Some(1000);
        config.cleanup_policy.delete = delete;
        let mut log = Log::open(dir.path(), config, true).expect("open");
        fill_rounds(&mut log, Compression::None, 10);
        let out = log.apply_retention(now() + 10_000).expect("retention");
        assert_eq!(out.segments_deleted > 0, expect_deleted, "delete={delete}");
    }
}

#[test]
fn cleaning_only_touches_committed_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), compact_config(), true).expect("open");
    fill_rounds(&mut log, Compression::None, 10);
    log.set_high_watermark(Offset(0));
    assert!(
        log.cleanable_ratio(now()).expect("ratio").is_none(),
        "nothing below the high watermark"
    );
}

#[test]
fn a_changed_log_aborts_the_swap_and_leaves_no_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), compact_config(), true).expect("open");
    let expected = fill_rounds(&mut log, Compression::None, 10);
    let plan = log.plan_cleaning(now(), true).expect("plan").expect("cleanable");
    // The first segment goes away (DeleteRecords) between planning and the swap.
    let second = plan.sources[1].base;
    log.delete_records_before(Offset(second)).expect("delete records");
    let err = log.swap_in_cleaned(&plan.sources[..1]).expect_err("aborted");
    assert!(matches!(err, Error::CleaningAborted(_)), "{err:?}");
    let (reads, _) = read_records(&log);
    assert_eq!(latest(&reads), expected);
}

/// Runs a pass that "crashes" at `step` (after `skip` earlier occurrences), drops the log without
/// closing it, reopens it as after a crash and checks every key's latest value.
fn crash_and_recover(step: SwapStep, skip: u32) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), compact_config(), true).expect("open");
    let expected = fill_rounds(&mut log, Compression::Snappy, 20);
    let leo = log.log_end_offset();
    let log = Mutex::new(log);
    CRASH_AT.with(|c| c.set(Some((step, skip))));
    let result = clean_log(&log, now(), &CleanerConfig::default(), &throttler());
    let crashed = CRASH_AT.with(|c| c.get()).is_none();
    CRASH_AT.with(|c| c.set(None));
    assert!(crashed, "{step:?}/{skip}: crash point never reached");
    assert!(result.is_err(), "{step:?}/{skip}: pass should have stopped");
    drop(log);
    let mut log = Log::open(dir.path(), compact_config(), false).expect("recovers");
    assert_eq!(log.log_end_offset(), leo, "{step:?}/{skip}");
    log.set_high_watermark(leo);
    log.flush().expect("flush");
    let (reads, _) = read_records(&log);
    assert_eq!(latest(&reads), expected, "{step:?}/{skip}: latest values");
    assert!(reads.windows(2).all(|w| w[0].offset < w[1].offset));
    for suffix in [CLEANED_SUFFIX, SWAP_SUFFIX, ".deleted"] {
        assert!(
            files_with_suffix(dir.path(), suffix).is_empty(),
            "{step:?}/{skip}: leftover {suffix}"
        );
    }
    // Every segment has its indexes, and a later pass completes the job.
    assert_eq!(
        files_with_suffix(dir.path(), LOG_SUFFIX).len(),
        files_with_suffix(dir.path(), INDEX_SUFFIX).len()
    );
    let log = Mutex::new(log);
    clean(&log, now()).expect("cleanable after recovery");
    let log = log.into_inner();
    assert_eq!(
        latest(&read_records(&log).0),
        expected,
        "{step:?}/{skip}: after re-cleaning"
    );
}

#[test]
fn a_crash_at_every_swap_step_recovers_every_latest_value() {
    for (step, occurrences) in [
        (SwapStep::RenamedToSwap, 3),
        (SwapStep::SwapDurable, 1),
        (SwapStep::OriginalDeleted, 2),
        (SwapStep::RenamedToFinal, 3),
    ] {
        for skip in 0..occurrences {
            crash_and_recover(step, skip);
        }
    }
}

#[test]
fn a_crash_while_writing_cleaned_files_leaves_the_originals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), compact_config(), true).expect("open");
    let expected = fill_rounds(&mut log, Compression::None, 10);
    let leo = log.log_end_offset();
    let before = files_with_suffix(dir.path(), LOG_SUFFIX);
    // A half-written cleaned segment, as a crash during pass 2 leaves it.
    let base = log.segment_base_offsets()[0].0;
    fs::write(
        dir.path().join(segment::file_name(base, LOG_SUFFIX) + CLEANED_SUFFIX),
        b"partial",
    )
    .expect("write");
    fs::write(
        dir.path().join(segment::file_name(base, INDEX_SUFFIX) + CLEANED_SUFFIX),
        b"",
    )
    .expect("write");
    drop(log);
    let mut log = Log::open(dir.path(), compact_config(), false).expect("recovers");
    log.set_high_watermark(leo);
    assert_eq!(files_with_suffix(dir.path(), LOG_SUFFIX), before);
    assert!(files_with_suffix(dir.path(), CLEANED_SUFFIX).is_empty());
    assert_eq!(latest(&read_records(&log).0), expected);
}

#[test]
fn a_corrupt_cleaner_checkpoint_means_a_full_pass() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), compact_config(), true).expect("open");
    let expected = fill_rounds(&mut log, Compression::None, 10);
    let log = Mutex::new(log);
    clean(&log, now()).expect("cleanable");
    assert!(log.lock().cleanable_ratio(now()).expect("ratio").is_none());
    drop(log);
    fs::write(dir.path().join(CHECKPOINT_FILE), "0\nnot a number\n").expect("write");
    let mut log = Log::open(dir.path(), compact_config(), true).expect("reopen");
    log.set_high_watermark(log.log_end_offset());
    assert_eq!(log.cleanable_ratio(now()).expect("ratio"), Some(1.0));
    let log = Mutex::new(log);
    clean(&log, now()).expect("full pass");
    assert_eq!(latest(&read_records(&log.into_inner()).0), expected);
}

#[test]
fn stopping_mid_pass_leaves_no_cleaned_files_and_no_lost_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), compact_config(), true).expect("open");
    let expected = fill_rounds(&mut log, Compression::Gzip, 40);
    let log = Mutex::new(log);
    // Throttled so the pass takes a while; stopped from another thread part-way through.
    let stop = Arc::new(AtomicBool::new(false));
    let throttler = Throttler::new(Some(8 << 10), Arc::clone(&stop)); // ~20 KiB of I/O: >2 s
    let stopper = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            stop.store(true, std::sync::atomic::Ordering::Release);
        })
    };
    let result = clean_log(&log, now(), &CleanerConfig::default(), &throttler);
    stopper.join().expect("stopper");
    assert!(matches!(result, Err(Error::CleaningAborted(_))), "{result:?}");
    assert!(files_with_suffix(dir.path(), CLEANED_SUFFIX).is_empty());
    assert!(files_with_suffix(dir.path(), SWAP_SUFFIX).is_empty());
    let log = log.into_inner();
    assert_eq!(latest(&read_records(&log).0), expected);
}

#[test]
fn the_throttler_holds_the_byte_rate() {
    let t = Throttler::new(Some(1 << 20), Arc::new(AtomicBool::new(false)));
    let start = std::time::Instant::now();
    for _ in 0..6 {
        t.acquire(128 << 10).expect("acquire");
    }
    // 768 KiB at 1 MiB/s: at least ~0.7 s.
    assert!(start.elapsed() >= Duration::from_millis(700), "{:?}", start.elapsed());
    let stop = Arc::new(AtomicBool::new(true));
    let t = Throttler::new(Some(1), stop);
    assert!(matches!(t.acquire(10), Err(Error::CleaningAborted(_))));
}

#[test]
fn record_parser_reads_keys_tombstones_and_offset_deltas() {
    let b = keyed_batch(
        &[kv("a", "1"), tombstone("b"), (None, Some("v".into()))],
        Compression::None,
        5,
        None,
    );
    let h = BatchHeader::parse(&b).expect("header");
    let data = decoded_records(&h, &b, 1 << 20).expect("records");
    let views = parse_records(&data).expect("parse");
    assert_eq!(views.len(), 3);
    assert_eq!(views.iter().map(|v| v.offset_delta).collect::<Vec<_>>(), vec![0, 1, 2]);
    assert_eq!(views[0].key.map(|(s, e)| &data[s..e]), Some(&b"a"[..]));
    assert!(!views[0].tombstone && views[1].tombstone && views[2].key.is_none());
    assert!(parse_records(&data[..data.len() - 1]).is_err());
}

/// Cleaner throughput (MiB/s of segment data cleaned), for BENCHMARKS.md:
/// `cargo test --release -p fjord-storage cleaner_throughput -- --ignored --nocapture`.
/// 64 MiB of segments (8 MiB each), 100k keys, 100-record batches of ~120-byte records whose
/// values are hex digits (lz4 compresses them about 2x); uncompressed and lz4; five runs each,
/// the median printed (MiB/s of segment bytes and records/s). Unthrottled, includes the fsyncs.
#[test]
#[ignore = "benchmark: run with --release --ignored"]
fn cleaner_throughput() {
    const TOTAL: u64 = 64 << 20;
    const KEYS: u64 = 100_000;
    for compression in [Compression::None, Compression::Lz4] {
        let mut rates = Vec::new();
        for run in 0..5u64 {
            let dir = tempfile::tempdir().expect("tempdir");
            let config = LogConfig {
                segment_bytes: 8 << 20,
                index_interval_bytes: 4096,
                ..compact_config()
            };
            let mut log = Log::open(dir.path(), config, true).expect("open");
            let mut n = run * 7919;
            let ts = now();
            while log.size_bytes() < TOTAL {
                let recs: Vec<Kv> = (0..100)
                    .map(|_| {
                        n += 1;
                        let k = format!("key-{:08}", (n * 2_654_435_761) % KEYS);
                        let h = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                        let v = format!(
                            "{h:016x}{:016x}{:016x}{:016x}{:016x}",
                            h ^ 1,
                            h.rotate_left(13),
                            !h,
                            h >> 7
                        );
                        (Some(k), Some(v))
                    })
                    .collect();
                let b = keyed_batch(&recs, compression, ts, None);
                log.append(&b, LeaderEpoch(0), ts).expect("append");
            }
            let leo = log.log_end_offset();
            log.set_high_watermark(leo);
            log.flush().expect("flush");
            let log = Mutex::new(log);
            let start = std::time::Instant::now();
            let stats = clean(&log, now()).expect("cleanable");
            let secs = start.elapsed().as_secs_f64();
            let rate = stats.bytes_before as f64 / (1 << 20) as f64 / secs;
            let records_per_s = leo.0 as f64 / secs;
            println!(
                "{compression:?} run {run}: cleaned {:.1} MiB ({} records) -> {:.1} MiB in {secs:.2} s = {rate:.1} MiB/s, {:.2} M records/s",
                stats.bytes_before as f64 / (1 << 20) as f64,
                leo.0,
                stats.bytes_after as f64 / (1 << 20) as f64,
                records_per_s / 1e6
            );
            rates.push((rate, records_per_s));
        }
        rates.sort_by(|a, b| a.0.total_cmp(&b.0));
        let runs: Vec<String> = rates.iter().map(|r| format!("{:.1}", r.0)).collect();
        println!(
            "{compression:?}: median {:.1} MiB/s, {:.2} M records/s (runs MiB/s: {})",
            rates[2].0,
            rates[2].1 / 1e6,
            runs.join(", ")
        );
    }
}

/// A batch of producer `pid` (epoch 0) marked transactional, or its abort marker.
fn txn_batch(records: &[Kv], pid: i64, seq0: i32, ts: i64, control: bool) -> Vec<u8> {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (k, v))| Record {
            transactional: true,
            control,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: pid,
            producer_epoch: 0,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: if control { -1 } else { seq0 + i as i32 },
            timestamp: ts,
            key: k.as_ref().map(|k| Bytes::from(k.clone())),
            value: v.as_ref().map(|v| Bytes::from(v.clone())),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encode");
    buf.to_vec()
}

#[test]
fn records_of_transactions_never_make_the_cleaner_drop_earlier_values() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), compact_config(), true).expect("open");
    let ts = now();
    append(&mut log, &[kv("k", "committed")], Compression::None, ts);
    // A transaction rewrites the key and is aborted: the earlier value is still the latest one
    // a read_committed reader sees, so compaction must keep it.
    log.append(&txn_batch(&[kv("k", "aborted")], 7, 0, ts, false), LeaderEpoch(0), ts)
        .expect("transactional batch");
    let abort = (
        Some(String::from_utf8(vec![0, 0, 0, 0]).expect("utf8")),
        Some("\0\0\0\0\0\0".to_string()),
    );
    log.append_from(
        crate::AppendOrigin::Coordinator,
        &txn_batch(&[abort], 7, 0, ts, true),
        LeaderEpoch(0),
        ts,
    )
    .expect("abort marker");
    assert_eq!(log.aborted_transactions(Offset(0), Offset(100)).len(), 1);
    fill_rounds(&mut log, Compression::None, 10);
    let leo = log.log_end_offset();
    log.set_high_watermark(leo);
    let log = Mutex::new(log);
    clean(&log, now()).expect("cleanable");
    let log = log.into_inner();
    let (reads, _) = read_records(&log);
    let k: Vec<&Read> = reads.iter().filter(|r| r.key.as_deref() == Some("k")).collect();
    assert_eq!(k.first().and_then(|r| r.value.as_deref()), Some("committed"), "{k:?}");
}
