//! Leader epoch cache (epoch -> start offset), persisted in `leader-epoch-checkpoint` with
//! Kafka's text format: version line, entry count, then one "epoch start_offset" line each.

use std::path::Path;

use crate::checkpoint;
use crate::error::{Error, Result};
use crate::types::{LeaderEpoch, Offset};

pub(crate) const FILE_NAME: &str = "leader-epoch-checkpoint";
const VERSION: &str = "0";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EpochEntry {
    pub(crate) epoch: i32,
    pub(crate) start_offset: i64,
}

/// In-memory epoch cache; entries are strictly increasing in both epoch and start offset.
#[derive(Debug, Default)]
pub(crate) struct LeaderEpochCache {
    entries: Vec<EpochEntry>,
    dirty: bool,
}

impl LeaderEpochCache {
    pub(crate) fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(FILE_NAME);
        let Some(text) = checkpoint::read_optional(&path)? else {
            return Ok(Self::default());
        };
        let corrupt = |reason: String| Error::CorruptCheckpoint {
            path: path.clone(),
            reason,
        };
        let mut lines = text.lines();
        if lines.next().map(str::trim) != Some(VERSION) {
            return Err(corrupt("unsupported version".to_string()));
        }
        let count: usize = lines
            .next()
            .and_then(|l| l.trim().parse().ok())
            .ok_or_else(|| corrupt("missing or bad entry count".to_string()))?;
        let mut cache = Self::default();
        for i in 0..count {
            let line = lines
                .next()
                .ok_or_else(|| corrupt(format!("expected {count} entries, found {i}")))?;
            let mut parts = line.split_whitespace();
            let epoch = parts.next().and_then(|p| p.parse::<i32>().ok());
            let start = parts.next().and_then(|p| p.parse::<i64>().ok());
            let (Some(epoch), Some(start_offset)) = (epoch, start) else {
                return Err(corrupt(format!("bad entry line {line:?}")));
            };
            if let Some(last) = cache.entries.last()
                && (last.epoch >= epoch || last.start_offset > start_offset)
            {
                return Err(corrupt(format!("entries out of order at line {line:?}")));
            }
            cache.entries.push(EpochEntry { epoch, start_offset });
        }
        Ok(cache)
    }

    pub(crate) fn is_dirty(&self) -> bool {
        self.dirty
    }

    pub(crate) fn write(&mut self, dir: &Path) -> Result<()> {
        let mut text = format!("{VERSION}\n{}\n", self.entries.len());
        for e in &self.entries {
            text.push_str(&format!("{} {}\n", e.epoch, e.start_offset));
        }
        checkpoint::write_atomic(dir, FILE_NAME, text.as_bytes())?;
        self.dirty = false;
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub(crate) fn latest_epoch(&self) -> Option<LeaderEpoch> {
        self.entries.last().map(|e| LeaderEpoch(e.epoch))
    }

    /// Records that `epoch` starts at `start_offset` (Kafka `LeaderEpochFileCache.assign`):
    /// no-op if it is the latest epoch already with an equal or lower start offset; otherwise
    /// entries conflicting with the new one (epoch or start offset >= the new one's) are
    /// removed first. Negative epochs are ignored.
    pub(crate) fn assign(&mut self, epoch: i32, start_offset: i64) {
        if epoch < 0 {
            return;
        }
        if let Some(last) = self.entries.last()
            && last.epoch == epoch
            && start_offset >= last.start_offset
        {
            return;
        }
        let before = self.entries.len();
        self.entries
            .retain(|e| e.epoch < epoch && e.start_offset < start_offset);
        if self.entries.len() != before {
            tracing::warn!(
                epoch,
                start_offset,
                removed = before - self.entries.len(),
                "leader epoch assignment removed conflicting entries"
            );
        }
        self.entries.push(EpochEntry { epoch, start_offset });
        self.dirty = true;
    }

    /// Assigns only if `epoch` is newer than the latest known one (Kafka's rule for appends and
    /// segment recovery): replaying older batches must never rewrite the cache.
    pub(crate) fn assign_if_newer(&mut self, epoch: i32, start_offset: i64) {
        if self.latest_epoch().is_none_or(|latest| epoch > latest.0) {
            self.assign(epoch, start_offset);
        }
    }

    /// Removes entries whose start offset is >= `end_offset` (log truncated to `end_offset`).
    pub(crate) fn truncate_from_end(&mut self, end_offset: i64) {
        let before = self.entries.len();
        self.entries.retain(|e| e.start_offset < end_offset);
        if self.entries.len() != before {
            self.dirty = true;
        }
    }

    /// Log start moved to `start_offset`: drops entries that start before it, keeping the last
    /// one of those with its start moved to `start_offset`.
    pub(crate) fn truncate_from_start(&mut self, start_offset: i64) {
        let covered = self.entries.partition_point(|e| e.start_offset <= start_offset);
        if covered == 0 {
            return;
        }
        let keep = covered - 1;
        if keep == 0 && self.entries[0].start_offset == start_offset {
            return;
        }
        let mut first = self.entries[keep];
        first.start_offset = start_offset;
        self.entries.drain(..keep);
        self.entries[0] = first;
        self.dirty = true;
    }

    pub(crate) fn clear(&mut self) {
        if !self.entries.is_empty() {
            self.entries.clear();
            self.dirty = true;
        }
    }

    /// Kafka OffsetForLeaderEpoch semantics: for the latest epoch, (epoch, log end offset);
    /// otherwise (largest epoch <= requested, start offset of the first epoch > requested), or
    /// (requested, that start offset) if every known epoch is larger; `None` if the requested
    /// epoch is newer than any known or is negative.
    pub(crate) fn end_offset_for(&self, requested: i32, log_end: i64) -> Option<(LeaderEpoch, Offset)> {
        if requested < 0 {
            return None;
        }
        let last = self.entries.last()?;
        if last.epoch == requested {
            return Some((LeaderEpoch(requested), Offset(log_end)));
        }
        let higher = self.entries.partition_point(|e| e.epoch <= requested);
        let higher_entry = self.entries.get(higher)?;
        let epoch = if higher == 0 {
            requested
        } else {
            self.entries[higher - 1].epoch
        };
        Some((LeaderEpoch(epoch), Offset(higher_entry.start_offset)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> LeaderEpochCache {
        let mut c = LeaderEpochCache::default();
        for &(e, s) in entries {
            c.assign(e, s);
        }
        c
    }

    #[test]
    fn epoch_cache_assign_ignores_same_epoch_later_offset() {
        let c = cache(&[(1, 0), (1, 10), (3, 20)]);
        assert_eq!(
            c.entries(),
            &[
                EpochEntry {
                    epoch: 1,
                    start_offset: 0
                },
                EpochEntry {
                    epoch: 3,
                    start_offset: 20
                }
            ]
        );
    }

    #[test]
    fn epoch_cache_assign_if_newer_ignores_replayed_older_epochs() {
        let mut c = cache(&[(1, 0), (3, 20)]);
        c.assign_if_newer(1, 15);
        c.assign_if_newer(3, 25);
        assert_eq!(
            c.entries(),
            &[
                EpochEntry {
                    epoch: 1,
                    start_offset: 0
                },
                EpochEntry {
                    epoch: 3,
                    start_offset: 20
                }
            ]
        );
        c.assign_if_newer(4, 30);
        assert_eq!(c.latest_epoch(), Some(LeaderEpoch(4)));
    }

    #[test]
    fn epoch_cache_end_offset_follows_kafka_semantics() {
        let c = cache(&[(1, 0), (3, 20), (5, 50)]);
        assert_eq!(c.end_offset_for(5, 80), Some((LeaderEpoch(5), Offset(80))));
        assert_eq!(c.end_offset_for(3, 80), Some((LeaderEpoch(3), Offset(50))));
        assert_eq!(c.end_offset_for(4, 80), Some((LeaderEpoch(3), Offset(50))));
        assert_eq!(c.end_offset_for(2, 80), Some((LeaderEpoch(1), Offset(20))));
        assert_eq!(c.end_offset_for(0, 80), Some((LeaderEpoch(0), Offset(0))));
        assert_eq!(c.end_offset_for(6, 80), None);
        assert_eq!(c.end_offset_for(-1, 80), None);
        assert_eq!(LeaderEpochCache::default().end_offset_for(0, 0), None);
    }

    #[test]
    fn epoch_cache_truncate_from_start_keeps_covering_epoch() {
        let mut c = cache(&[(1, 0), (3, 20), (5, 50)]);
        c.truncate_from_start(30);
        assert_eq!(
            c.entries(),
            &[
                EpochEntry {
                    epoch: 3,
                    start_offset: 30
                },
                EpochEntry {
                    epoch: 5,
                    start_offset: 50
                }
            ]
        );
        c.truncate_from_end(50);
        assert_eq!(c.latest_epoch(), Some(LeaderEpoch(3)));
    }

    #[test]
    fn epoch_cache_file_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = cache(&[(1, 0), (3, 20)]);
        c.write(dir.path()).expect("write");
        let text = std::fs::read_to_string(dir.path().join(FILE_NAME)).expect("read");
        assert_eq!(text, "0\n2\n1 0\n3 20\n");
        let loaded = LeaderEpochCache::load(dir.path()).expect("load");
        assert_eq!(loaded.entries(), c.entries());
    }
}
