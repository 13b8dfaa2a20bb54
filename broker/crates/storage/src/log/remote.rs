//! Narrow hooks for tiered storage (the tiering layer lives in `fjord-tiering` and the broker;
//! this crate still never sees an object store). With tiering, this log's log start offset is
//! the *local* log start offset; the partition's log start offset may be lower (remote data).
//!
//! - [`Log::closed_segments`]: what may be uploaded (base/next offsets, size, max timestamp, file).
//! - [`Log::apply_local_retention`]: `local.retention.*`, never deleting a segment that is not
//!   wholly below the offset the tiering layer says is committed remotely (invariant 3).
//! - [`Log::reset_empty_at`]: a wiped local log resumes at the remote end.
//! - [`first_record_at_or_after`]: record-precise timestamp lookup inside one batch.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use tracing::{info, warn};

use super::{Log, RetentionOutcome};
use crate::error::{Error, Result};
use crate::files::FileHandle;
use crate::types::Offset;

/// A closed (no longer written) segment, as the uploader sees it.
#[derive(Clone, Debug)]
pub struct ClosedSegment {
    /// Base offset.
    pub base_offset: Offset,
    /// Offset after the segment (the next segment's base offset).
    pub next_offset: Offset,
    /// Bytes of complete batches.
    pub size: u64,
    /// Largest batch max timestamp, if known.
    pub max_timestamp: Option<i64>,
    /// The segment file, opened on [`ClosedSegment::open_file`] through the file cache.
    file: FileHandle,
    /// The segment file's path.
    pub path: Arc<Path>,
}

impl ClosedSegment {
    /// Opens the segment file (or takes it from the file cache). The returned file stays
    /// readable even if the segment is deleted afterwards.
    pub fn open_file(&self) -> std::io::Result<Arc<File>> {
        self.file.get_io()
    }
}

impl Log {
    /// Every segment except the active one, oldest first.
    pub fn closed_segments(&self) -> Vec<ClosedSegment> {
        let n = self.segments.len().saturating_sub(1);
        (0..n)
            .map(|i| {
                let s = &self.segments[i];
                ClosedSegment {
                    base_offset: Offset(s.base_offset),
                    next_offset: Offset(self.upper_bound(i)),
                    size: s.size,
                    max_timestamp: s.max_timestamp.map(|(ts, _)| ts),
                    file: s.log.clone(),
                    path: Arc::clone(&s.log_path),
                }
            })
            .collect()
    }

    /// Local retention for a tiered log: like [`Log::apply_retention`] (segment.ms roll, then
    /// oldest closed segments by time, size or log start), with `retention_ms`/`retention_bytes`
    /// the local limits, and never past `deletable_below`: only segments whose every offset is
    /// below it (committed in the remote manifest) may go.
    pub fn apply_local_retention(
        &mut self,
        now_ms: i64,
        retention_ms: Option<i64>,
        retention_bytes: Option<u64>,
        deletable_below: Offset,
    ) -> Result<RetentionOutcome> {
        // Never at or above the high watermark, nor past the remote commit point.
        let below = self.high_watermark.min(deletable_below.0.max(self.log_start_offset));
        self.retain(now_ms, retention_ms, retention_bytes, below)
    }

    /// Local-wipe recovery: if this log ends below `offset` and holds no data of its own, it is
    /// restarted empty at `offset` (the remote end), so new appends continue the remote log.
    /// Returns true if it did. A log that has data below `offset` is left alone (and logged).
    /// `producer_snapshot` (the snapshot file bytes uploaded with the last remote segment, or
    /// empty) becomes the idempotent-producer state at `offset`.
    pub fn reset_empty_at(&mut self, offset: Offset, producer_snapshot: &[u8]) -> Result<bool> {
        if self.log_end_offset() >= offset {
            return Ok(false);
        }
        if self.size_bytes() > 0 {
            warn!(dir = %self.dir.display(), log_end_offset = self.log_end_offset().0, remote_end = offset.0,
                "local log ends below the remote end but is not empty; leaving it");
            return Ok(false);
        }
        self.truncation_generation += 1;
        self.truncate_fully_and_start_at(offset.0)?;
        if !producer_snapshot.is_empty() {
            // Idempotent producers keep their sequence state across the wipe. A snapshot that
            // cannot be read only costs that: producers are then unknown and start afresh.
            match self.producers.adopt_snapshot(offset.0, producer_snapshot) {
                Ok(producers) => {
                    info!(dir = %self.dir.display(), producers, "producer state restored from the remote snapshot")
                }
                Err(error) => {
                    warn!(dir = %self.dir.display(), %error, "remote producer snapshot unreadable; producers start afresh")
                }
            }
        }
        self.checkpoint()?;
        info!(dir = %self.dir.display(), offset = offset.0, "local log restarted at the remote end");
        Ok(true)
    }
}

/// The first record with timestamp >= `ts` and offset >= `from` in one record batch (scanned,
/// decompressing at most `limit` bytes), as (offset, timestamp). LogAppendTime batches answer
/// with their first record at or after `from`.
pub fn first_record_at_or_after(batch: Bytes, ts: i64, from: i64, limit: usize) -> Result<Option<(Offset, i64)>> {
    let header = crate::batch::BatchHeader::parse(&batch)?;
    let found = crate::records::first_record_at_or_after(&header, &batch, ts, from, limit).map_err(|e| {
        Error::CorruptBatch {
            path: "remote".into(),
            offset: Offset(header.base_offset),
            position: 0,
            reason: e.to_string(),
        }
    })?;
    Ok(found.map(|(offset, timestamp)| (Offset(offset), timestamp)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::test_util::batch;
    use crate::log::LogConfig;
    use crate::types::LeaderEpoch;

    fn config() -> LogConfig {
        LogConfig {
            segment_bytes: 4096,
            segment_ms: None,
            retention_ms: None,
            retention_bytes: None,
            index_interval_bytes: 256,
            ..LogConfig::default()
        }
    }

    fn fill(log: &mut Log, count: usize) {
        for i in 0..count {
            let b = batch(5, 200, 1000 + i as i64);
            log.append(&b, LeaderEpoch(0), 1000 + i as i64).expect("append");
        }
        let leo = log.log_end_offset();
        log.set_high_watermark(leo);
    }

    #[test]
    fn closed_segments_list_everything_but_the_active_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = Log::open(dir.path(), config(), true).expect("open");
        fill(&mut log, 40);
        let closed = log.closed_segments();
        assert_eq!(closed.len(), log.segment_count() - 1);
        assert_eq!(closed[0].base_offset, Offset(0));
        for pair in closed.windows(2) {
            assert_eq!(pair[0].next_offset, pair[1].base_offset);
        }
        let last = closed.last().expect("some");
        assert_eq!(last.next_offset, *log.segment_base_offsets().last().expect("active"));
        assert_eq!(
            last.open_file().expect("open").metadata().expect("stat").len(),
            last.size
        );
        assert!(last.max_timestamp.is_some());
    }

    #[test]
    fn local_retention_never_passes_the_remote_commit_point() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = Log::open(dir.path(), config(), true).expect("open");
        fill(&mut log, 40);
        let closed = log.closed_segments();
        assert!(closed.len() >= 4);
        // Nothing committed remotely: retention.bytes=0 deletes nothing.
        let out = log
            .apply_local_retention(2000, None, Some(0), Offset(-1))
            .expect("retention");
        assert_eq!(out.segments_deleted, 0);
        // Commit point inside segment 2: only segments 0 and 1 may go.
        let mid = Offset(closed[2].base_offset.0 + 1);
        let out = log.apply_local_retention(2000, None, Some(0), mid).expect("retention");
        assert_eq!(out.segments_deleted, 2);
        assert_eq!(log.log_start_offset(), closed[2].base_offset);
        assert_eq!(log.high_watermark(), log.log_end_offset());
        assert_eq!(log.config().retention_bytes, None);
        // A commit point at the end of segment 3 lets 2 and 3 go (time retention).
        let out = log
            .apply_local_retention(1_000_000, Some(1), None, closed[3].next_offset)
            .expect("retention");
        assert_eq!(out.segments_deleted, 2);
    }

    #[test]
    fn an_empty_log_restarts_at_the_remote_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = Log::open(dir.path(), config(), true).expect("open");
        assert!(log.reset_empty_at(Offset(500), &[]).expect("reset"));
        assert_eq!(log.log_start_offset(), Offset(500));
        assert_eq!(log.log_end_offset(), Offset(500));
        fill(&mut log, 1);
        assert_eq!(log.segment_base_offsets()[0], Offset(500));
        // A log with data is never reset.
        assert!(!log.reset_empty_at(Offset(10_000), &[]).expect("reset"));
        drop(log);
        let log = Log::open(dir.path(), config(), false).expect("reopen");
        assert_eq!(log.log_start_offset(), Offset(500));
    }

    #[test]
    fn record_lookup_inside_one_batch() {
        let b = Bytes::from(batch(5, 10, 1000));
        let first = first_record_at_or_after(b.clone(), 0, 0, 1 << 20).expect("decode");
        assert_eq!(first.map(|(o, _)| o), Some(Offset(0)));
        assert_eq!(first_record_at_or_after(b, i64::MAX, 0, 1 << 20).expect("decode"), None);
    }
}
