//! Tests of idempotent-producer state: duplicates, gaps, fencing, wraparound, snapshots,
//! recovery, retention and truncation, through the partition log's public API.

use std::fs;
use std::path::Path;

use super::*;
use crate::batch::test_util::batch;
use crate::batch::{BATCH_HEADER_LEN, CRC_POS, compute_crc};
use crate::log::{AppendInfo, Log, LogConfig};
use crate::types::{LeaderEpoch, Offset};

const PID: i64 = 1000;

/// A fixed "now" for the test run: batch timestamps are relative to it, so producers are not
/// expired by producer.id.expiration.ms (which compares batch timestamps with the clock).
fn t0() -> i64 {
    static T0: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *T0.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_millis() as i64
    })
}

/// One batch of `n` records from producer `pid`/`epoch` starting at sequence `seq`, with
/// timestamp `t0() + ts`.
fn idem(pid: i64, epoch: i16, seq: i32, n: usize, ts: i64) -> Vec<u8> {
    let mut b = batch(n, 16, t0() + ts);
    let mut h = BatchHeader::parse(&b).expect("header");
    h.producer_id = pid;
    h.producer_epoch = epoch;
    h.base_sequence = seq;
    b[..BATCH_HEADER_LEN].copy_from_slice(&h.encode());
    let crc = compute_crc(&b);
    b[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
    b
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 600,
        segment_ms: None,
        retention_ms: None,
        retention_bytes: None,
        index_interval_bytes: 128,
        ..LogConfig::default()
    }
}

fn append(log: &mut Log, bytes: &[u8]) -> crate::Result<AppendInfo> {
    let now = 1_000;
    let info = log.append(bytes, LeaderEpoch(0), now)?;
    let leo = log.log_end_offset();
    log.set_high_watermark(leo);
    Ok(info)
}

fn ok(log: &mut Log, bytes: &[u8]) -> AppendInfo {
    append(log, bytes).expect("append")
}

fn entry(log: &Log, pid: i64) -> ProducerStateEntry {
    log.producer_state(ProducerId(pid)).expect("producer known").clone()
}

fn snapshot_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(SNAPSHOT_SUFFIX))
        .collect();
    v.sort();
    v
}

/// Segment files are deleted on a background thread; a reopen in the same process must not race it.
fn wait_for_background_deletes(dir: &Path) {
    for _ in 0..500 {
        let pending = fs::read_dir(dir)
            .expect("read dir")
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().ends_with(".deleted"));
        if !pending {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("background deletion did not finish");
}

#[test]
fn duplicate_batch_is_not_written_again_and_gets_its_original_offsets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), LogConfig::default(), false).expect("open");
    ok(&mut log, &batch(3, 8, 1)); // a non-idempotent batch first: offsets 0..=2
    let first = ok(&mut log, &idem(PID, 0, 0, 5, 10));
    assert_eq!((first.base_offset, first.last_offset), (Offset(3), Offset(7)));
    let size = log.size_bytes();

    let again = ok(&mut log, &idem(PID, 0, 0, 5, 10));
    assert_eq!(again.base_offset, Offset(3));
    assert_eq!(again.last_offset, Offset(7));
    assert_eq!((again.duplicates, again.record_count, again.bytes), (1, 0, 0));
    assert_eq!(log.log_end_offset(), Offset(8));
    assert_eq!(log.size_bytes(), size, "nothing was written");
    ok(&mut log, &idem(PID, 0, 5, 2, 11));
    assert_eq!(log.log_end_offset(), Offset(10));
}

#[test]
fn any_of_the_last_five_batches_is_a_duplicate_but_an_older_one_is_out_of_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), LogConfig::default(), false).expect("open");
    for i in 0..6 {
        ok(&mut log, &idem(PID, 0, i * 2, 2, 10));
    }
    assert_eq!(entry(&log, PID).batches.len(), NUM_BATCHES_TO_RETAIN);
    // Batch 1 (seq 2..=3, offsets 2..=3) is the oldest still cached.
    let dup = ok(&mut log, &idem(PID, 0, 2, 2, 10));
    assert_eq!((dup.duplicates, dup.base_offset), (1, Offset(2)));
    // Batch 0 was evicted: a retry of it is a sequence error, as in Kafka.
    let err = append(&mut log, &idem(PID, 0, 0, 2, 10)).expect_err("evicted batch");
    assert!(
        matches!(
            err,
            Error::OutOfOrderSequence {
                first_seq: 0,
                expected: 12,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(log.log_end_offset(), Offset(12));
}

#[test]
fn sequence_gap_is_out_of_order_and_leaves_the_log_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), LogConfig::default(), false).expect("open");
    ok(&mut log, &idem(PID, 0, 0, 5, 10));
    let size = log.size_bytes();
    let err = append(&mut log, &idem(PID, 0, 6, 1, 10)).expect_err("gap");
    assert!(
        matches!(
            err,
            Error::OutOfOrderSequence {
                producer_id: PID,
                epoch: 0,
                first_seq: 6,
                expected: 5
            }
        ),
        "{err}"
    );
    assert_eq!(log.size_bytes(), size);
    assert_eq!(log.log_end_offset(), Offset(5));
    // An overlapping (not identical) range is out of order too.
    assert!(matches!(
        append(&mut log, &idem(PID, 0, 3, 3, 10)),
        Err(Error::OutOfOrderSequence { .. })
    ));
    ok(&mut log, &idem(PID, 0, 5, 1, 10));
}

#[test]
fn stale_epoch_is_fenced_and_a_new_epoch_restarts_at_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), LogConfig::default(), false).expect("open");
    ok(&mut log, &idem(PID, 3, 0, 2, 10));
    let err = append(&mut log, &idem(PID, 2, 2, 1, 10)).expect_err("stale epoch");
    assert!(
        matches!(
            err,
            Error::InvalidProducerEpoch {
                producer_id: PID,
                epoch: 2,
                current: 3
            }
        ),
        "{err}"
    );
    // A bumped epoch must start at sequence 0.
    assert!(matches!(
        append(&mut log, &idem(PID, 4, 2, 1, 10)),
        Err(Error::OutOfOrderSequence { expected: 0, .. })
    ));
    ok(&mut log, &idem(PID, 4, 0, 1, 10));
    let e = entry(&log, PID);
    assert_eq!((e.epoch, e.batches.len(), e.last_seq()), (4, 1, Some(0)));
    // The old epoch is now fenced even for a batch that was a duplicate under it.
    assert!(matches!(
        append(&mut log, &idem(PID, 3, 0, 2, 10)),
        Err(Error::InvalidProducerEpoch { .. })
    ));
}

#[test]
fn unknown_producer_may_start_at_any_sequence_and_sequences_wrap_at_i32_max() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), LogConfig::default(), false).expect("open");
    // KIP-360: a producer without state (e.g. its records were deleted) is accepted at any
    // sequence.
    ok(&mut log, &idem(PID, 0, i32::MAX - 3, 2, 10));
    assert_eq!(entry(&log, PID).last_seq(), Some(i32::MAX - 2));
    // This batch wraps inside: MAX-1, MAX, 0, 1.
    assert_eq!(last_sequence(i32::MAX - 1, 3), 1);
    ok(&mut log, &idem(PID, 0, i32::MAX - 1, 4, 10));
    assert_eq!(entry(&log, PID).last_seq(), Some(1));
    let dup = ok(&mut log, &idem(PID, 0, i32::MAX - 1, 4, 10));
    assert_eq!((dup.duplicates, dup.base_offset), (1, Offset(2)));
    ok(&mut log, &idem(PID, 0, 2, 1, 10));
    // Ending exactly at MAX: the next batch starts at 0.
    let other = PID + 1;
    ok(&mut log, &idem(other, 0, i32::MAX - 1, 2, 10));
    assert!(matches!(
        append(&mut log, &idem(other, 0, 1, 1, 10)),
        Err(Error::OutOfOrderSequence { expected: 0, .. })
    ));
    ok(&mut log, &idem(other, 0, 0, 1, 10));
}

#[test]
fn several_batches_in_one_payload_are_each_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), LogConfig::default(), false).expect("open");
    let two = [idem(PID, 0, 0, 2, 10), idem(PID, 0, 2, 3, 10)].concat();
    let info = ok(&mut log, &two);
    assert_eq!(
        (info.base_offset, info.last_offset, info.duplicates),
        (Offset(0), Offset(4), 0)
    );
    // A retried first batch followed by a new one: only the new one is written; the answer
    // carries the original base offset.
    let mixed = [idem(PID, 0, 2, 3, 10), idem(PID, 0, 5, 1, 10)].concat();
    let info = ok(&mut log, &mixed);
    assert_eq!(
        (info.base_offset, info.last_offset, info.duplicates),
        (Offset(2), Offset(5), 1)
    );
    assert_eq!(log.log_end_offset(), Offset(6));
    // A gap in the second batch refuses the whole payload.
    let gap = [idem(PID, 0, 6, 1, 10), idem(PID, 0, 9, 1, 10)].concat();
    assert!(matches!(append(&mut log, &gap), Err(Error::OutOfOrderSequence { .. })));
    assert_eq!(log.log_end_offset(), Offset(6));
}

#[test]
fn negative_sequences_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), LogConfig::default(), false).expect("open");
    assert!(matches!(
        append(&mut log, &idem(PID, 0, -1, 1, 10)),
        Err(Error::InvalidSequence { .. })
    ));
    assert_eq!(log.log_end_offset(), Offset(0));
}

/// A transactional batch of `n` records.
fn txn(pid: i64, epoch: i16, seq: i32, n: usize) -> Vec<u8> {
    let mut b = idem(pid, epoch, seq, n, 10);
    let mut h = BatchHeader::parse(&b).expect("header");
    h.attributes |= 1 << 4;
    b[..BATCH_HEADER_LEN].copy_from_slice(&h.encode());
    let crc = compute_crc(&b);
    b[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
    b
}

/// A commit (or abort) marker of `pid`/`epoch`, as the transaction coordinator writes it.
fn marker(pid: i64, epoch: i16, commit: bool) -> Vec<u8> {
    use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
    let record = Record {
        transactional: true,
        control: true,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: pid,
        producer_epoch: epoch,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: t0(),
        key: Some(bytes::Bytes::from(vec![0, 0, 0, u8::from(commit)])),
        value: Some(bytes::Bytes::from(vec![0, 0, 0, 0, 0, 0])),
        headers: Default::default(),
    };
    let mut buf = bytes::BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        [record].iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encode marker");
    buf.to_vec()
}

fn append_marker(log: &mut Log, bytes: &[u8]) -> crate::Result<AppendInfo> {
    let info = log.append_from(crate::AppendOrigin::Coordinator, bytes, LeaderEpoch(0), 1_000)?;
    let leo = log.log_end_offset();
    log.set_high_watermark(leo);
    Ok(info)
}

#[test]
fn transactions_bound_the_last_stable_offset_and_aborts_are_remembered_across_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), config(), false).expect("open");
    ok(&mut log, &idem(PID, 0, 0, 2, 10)); // 0..2
    ok(&mut log, &txn(PID + 1, 0, 0, 3)); // 2..5, open
    ok(&mut log, &idem(PID, 0, 2, 1, 10)); // 5
    assert_eq!(log.last_stable_offset(), Offset(2));
    append_marker(&mut log, &marker(PID + 1, 0, false)).expect("abort"); // 6
    assert_eq!(log.last_stable_offset(), Offset(7));
    let aborted = log.aborted_transactions(Offset(0), Offset(7));
    assert_eq!(aborted.len(), 1);
    assert_eq!((aborted[0].first_offset, aborted[0].last_offset), (2, 6));
    assert!(log.aborted_transactions(Offset(7), Offset(100)).is_empty());
    ok(&mut log, &txn(PID + 1, 0, 3, 2)); // 7..9, open again
    ok(&mut log, &txn(PID + 2, 0, 0, 1)); // 9, open
    append_marker(&mut log, &marker(PID + 1, 0, true)).expect("commit"); // 10
    assert_eq!(log.last_stable_offset(), Offset(9));
    // A marker from an older epoch is fenced; a client may not write markers.
    assert!(matches!(
        append_marker(&mut log, &marker(PID + 2, 0, true))
            .and_then(|_| append_marker(&mut log, &marker(PID + 2, -1, true))),
        Err(Error::InvalidProducerEpoch { .. })
    ));
    assert!(append(&mut log, &marker(PID, 0, true)).is_err());
    ok(&mut log, &txn(PID + 3, 0, 0, 1)); // 12, open
    let lso = log.last_stable_offset();
    assert_eq!(lso, Offset(12));
    // Unclean reopen (replay from the log) and clean reopen (snapshot) agree.
    drop(log);
    let log = Log::open(dir.path(), config(), false).expect("reopen");
    assert_eq!(log.first_unstable_offset(), Some(lso));
    assert_eq!(log.aborted_transactions(Offset(0), Offset(100)).len(), 1);
    log.close().expect("close");
    let log = Log::open(dir.path(), config(), true).expect("reopen clean");
    assert_eq!(log.first_unstable_offset(), Some(lso));
    assert_eq!(log.aborted_transactions(Offset(0), Offset(100)).len(), 1);
}

#[test]
fn snapshot_encoding_round_trips_and_detects_corruption() {
    let mut producers = HashMap::new();
    let mut e = ProducerStateEntry::empty();
    for i in 0..7 {
        e.add_batch(
            2,
            BatchMetadata {
                first_seq: i * 10,
                last_seq: i * 10 + 9,
                first_offset: 100 + i64::from(i) * 10,
                last_offset: 109 + i64::from(i) * 10,
                timestamp: 5_000 + i64::from(i),
            },
        );
    }
    producers.insert(7, e);
    producers.insert(-5, ProducerStateEntry::empty());
    let bytes = encode_snapshot(&producers, &[]);
    assert_eq!(decode_snapshot(&bytes).expect("decodes").0, producers);
    for cut in [0, 1, 5, bytes.len() - 1] {
        assert!(decode_snapshot(&bytes[..cut]).is_err(), "truncated at {cut}");
    }
    let mut flipped = bytes.clone();
    *flipped.last_mut().expect("bytes") ^= 1;
    assert!(decode_snapshot(&flipped).expect_err("bit flip").contains("crc"));
}

#[test]
fn clean_close_writes_a_snapshot_that_reopen_loads_without_replaying() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), config(), false).expect("open");
    for i in 0..12 {
        ok(&mut log, &idem(PID, 1, i * 3, 3, 10));
    }
    assert!(log.segment_count() > 2, "small segments roll");
    let bases = log.segment_base_offsets();
    // One snapshot per roll, at the new segment's base offset.
    for base in &bases[1..] {
        assert!(log.producer_snapshot_file(*base).is_some(), "snapshot at {base}");
    }
    let before = entry(&log, PID);
    let leo = log.log_end_offset();
    log.close().expect("close");
    assert!(snapshot_files(dir.path()).contains(&segment::file_name(leo.0, SNAPSHOT_SUFFIX)));

    let mut log = Log::open(dir.path(), config(), true).expect("reopen");
    assert_eq!(
        log.open_stats().producer_batches_replayed,
        0,
        "the snapshot at the log end suffices"
    );
    assert_eq!(entry(&log, PID), before);
    // The retry of the last batch is still recognised.
    let dup = ok(&mut log, &idem(PID, 1, 33, 3, 10));
    assert_eq!((dup.duplicates, dup.base_offset), (1, Offset(33)));
}

#[test]
fn recovery_after_a_kill_rebuilds_state_from_the_last_snapshot_and_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut log = Log::open(dir.path(), config(), false).expect("open");
        for i in 0..10 {
            ok(&mut log, &idem(PID, 0, i * 2, 2, 10));
            ok(&mut log, &idem(PID + 1, 5, i, 1, 10));
        }
        log.flush().expect("flush");
        // Dropped without close: no shutdown snapshot, as after kill -9.
    }
    let mut log = Log::open(dir.path(), config(), false).expect("reopen");
    let replayed = log.open_stats().producer_batches_replayed;
    assert!(
        replayed > 0 && replayed < 20,
        "only the batches after the last roll: {replayed}"
    );
    let a = entry(&log, PID);
    assert_eq!((a.epoch, a.last_seq(), a.batches.len()), (0, Some(19), 5));
    let b = entry(&log, PID + 1);
    assert_eq!((b.epoch, b.last_seq()), (5, Some(9)));
    // Every one of the last five batches is still a duplicate after recovery.
    let dup = ok(&mut log, &idem(PID, 0, 12, 2, 10));
    assert_eq!(dup.duplicates, 1);
    assert!(matches!(
        append(&mut log, &idem(PID, 0, 21, 1, 10)),
        Err(Error::OutOfOrderSequence { expected: 20, .. })
    ));

    // A corrupt latest snapshot is deleted and an older one (plus more replay) used instead.
    let offsets = log.producer_snapshot_offsets();
    let latest = *offsets.last().expect("snapshots");
    drop(log);
    let path = snapshot_path(dir.path(), latest.0);
    fs::write(&path, b"\x00\x01garbage").expect("corrupt");
    let log = Log::open(dir.path(), config(), false).expect("reopen");
    assert!(!path.exists(), "corrupt snapshot deleted");
    assert_eq!(entry(&log, PID), a);
    assert_eq!(entry(&log, PID + 1), b);
}

#[test]
fn log_without_any_snapshot_is_rebuilt_from_its_first_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut log = Log::open(dir.path(), config(), false).expect("open");
        for i in 0..8 {
            ok(&mut log, &idem(PID, 0, i, 1, 10));
        }
        log.close().expect("close");
    }
    for f in snapshot_files(dir.path()) {
        fs::remove_file(dir.path().join(f)).expect("rm");
    }
    let log = Log::open(dir.path(), config(), true).expect("reopen");
    assert_eq!(log.open_stats().producer_batches_replayed, 8);
    assert_eq!(entry(&log, PID).last_seq(), Some(7));
}

#[test]
fn retention_drops_producers_below_the_log_start_and_their_snapshots() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), config(), false).expect("open");
    let old = PID + 7;
    ok(&mut log, &idem(old, 0, 0, 3, 10));
    for i in 0..12 {
        ok(&mut log, &idem(PID, 0, i * 3, 3, 10));
    }
    assert!(log.producer_state(ProducerId(old)).is_some());
    let bases = log.segment_base_offsets();
    let cut = bases[2];
    log.delete_records_before(cut).expect("delete records");
    assert_eq!(log.log_start_offset(), cut);
    assert!(log.producer_state(ProducerId(old)).is_none(), "old producer dropped");
    assert!(log.producer_state(ProducerId(PID)).is_some());
    assert!(log.producer_snapshot_offsets().iter().all(|o| *o >= cut));
    // The dropped producer is unknown now, so it may continue at any sequence (KIP-360).
    ok(&mut log, &idem(old, 0, 50, 1, 10));
    // After an unclean restart the state is the same.
    let expected = entry(&log, PID);
    drop(log);
    wait_for_background_deletes(dir.path());
    let log = Log::open(dir.path(), config(), false).expect("reopen");
    assert_eq!(entry(&log, PID), expected);
    assert_eq!(entry(&log, old).last_seq(), Some(50));
}

#[test]
fn idle_producers_expire_when_retention_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = LogConfig {
        producer_id_expiration_ms: 60_000,
        ..config()
    };
    let mut log = Log::open(dir.path(), cfg.clone(), false).expect("open");
    ok(&mut log, &idem(PID, 0, 0, 1, 10_000));
    ok(&mut log, &idem(PID + 1, 0, 0, 1, 100_000));
    log.apply_retention(t0() + 100_000).expect("retention");
    assert_eq!(log.producer_count(), 1, "the producer idle for 90 s expired");
    assert!(log.producer_state(ProducerId(PID + 1)).is_some());
    // An expired producer is unknown: any sequence is accepted again.
    ok(&mut log, &idem(PID, 0, 9, 1, 100_000));
}

#[test]
fn truncate_removes_snapshots_above_and_rebuilds_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(dir.path(), config(), false).expect("open");
    for i in 0..12 {
        ok(&mut log, &idem(PID, 0, i * 3, 3, 10));
    }
    let bases = log.segment_base_offsets();
    let target = bases[1].0 + 3; // one batch into the second segment
    log.truncate_to(Offset(target)).expect("truncate");
    assert_eq!(log.log_end_offset(), Offset(target));
    assert!(log.producer_snapshot_offsets().iter().all(|o| o.0 <= target));
    let e = entry(&log, PID);
    assert_eq!(
        (e.last_seq(), e.last_offset()),
        (Some(target as i32 - 1), Some(target - 1))
    );
    // The producer continues right after the truncation point; the truncated batch is new again.
    let info = ok(&mut log, &idem(PID, 0, target as i32, 3, 10));
    assert_eq!((info.duplicates, info.base_offset), (0, Offset(target)));

    log.truncate_to(Offset(0)).expect("truncate fully");
    assert!(log.producer_state(ProducerId(PID)).is_none());
    assert!(snapshot_files(dir.path()).is_empty());
}

#[test]
fn a_wiped_log_adopts_a_snapshot_from_elsewhere() {
    // The "remote" copy: a producer wrote two batches, then the segment rolled (snapshot at 10).
    let remote = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(remote.path(), config(), true).expect("open");
    ok(&mut log, &idem(PID, 0, 0, 5, 0));
    ok(&mut log, &idem(PID, 0, 5, 5, 1));
    log.snapshot_producer_state().expect("snapshot");
    let end = log.log_end_offset();
    let bytes = fs::read(log.producer_snapshot_file(end).expect("snapshot file")).expect("read");
    drop(log);
    // A wiped local log restarts at the remote end with that state: a retry of the last batch is
    // a duplicate, the next sequence is accepted, a gap is refused.
    let local = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(local.path(), config(), true).expect("open");
    assert!(log.reset_empty_at(end, &bytes).expect("reset"));
    assert_eq!(ok(&mut log, &idem(PID, 0, 5, 5, 1)).duplicates, 1);
    assert!(append(&mut log, &idem(PID, 0, 20, 1, 2)).is_err());
    ok(&mut log, &idem(PID, 0, 10, 1, 2));
    // It survives a reopen (the adopted snapshot is this log's own now).
    drop(log);
    let mut log = Log::open(local.path(), config(), false).expect("reopen");
    assert!(append(&mut log, &idem(PID, 0, 20, 1, 3)).is_err());
    // Unreadable bytes only cost the producer state.
    let other = tempfile::tempdir().expect("tempdir");
    let mut log = Log::open(other.path(), config(), true).expect("open");
    assert!(log.reset_empty_at(end, b"garbage").expect("reset"));
    ok(&mut log, &idem(PID, 0, 42, 1, 2));
}
