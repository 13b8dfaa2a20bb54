//! Idempotent-producer state of one partition (Kafka's `ProducerStateManager`,
//! `ProducerAppendInfo` and `ProducerStateEntry`).
//!
//! For every producer id seen in the log the partition keeps the producer epoch and the metadata
//! of its last five batches (first/last sequence, first/last offset, max timestamp). An append is
//! checked against it under the log lock before anything is written:
//! - a batch whose producer epoch and exact sequence range match a cached batch is a duplicate (a
//!   retry of a batch already in the log): it is not written again and the caller answers with
//!   the original offsets;
//! - a batch with an older epoch is fenced ([`Error::InvalidProducerEpoch`]);
//! - a batch that does not continue the producer's sequence is refused
//!   ([`Error::OutOfOrderSequence`]); a new epoch must start at sequence 0. Sequences wrap from
//!   `i32::MAX` to 0. A producer with no state (new, expired, or whose records were all removed
//!   by retention) may start at any sequence, as in Kafka since KIP-360.
//!
//! The state is snapshotted to `<20-digit offset>.snapshot` files (the state of every batch
//! below that offset) when a segment rolls and at clean shutdown. On open the latest valid
//! snapshot at or below the log end offset is loaded and the batch headers after it are replayed;
//! a snapshot that fails its CRC is deleted and an older one used.
//!
//! Transactions (KIP-98): a transactional batch opens the producer's transaction at its first
//! offset (`current_txn_first_offset`) unless one is open; a commit or abort marker (a control
//! batch from the transaction coordinator) closes it, and an abort is remembered as an
//! [`AbortedTxn`] (producer, first offset, marker offset) until retention passes it. The first
//! offset of the oldest open transaction bounds the last stable offset; read_committed fetches
//! return the aborted transactions of their range. Both are part of the snapshot, so they are
//! rebuilt exactly like the rest of the state on open and truncation (Fjord keeps the aborted
//! list here instead of Kafka's per-segment `.txnindex` files).
//!
//! Snapshot layout (big endian; Fjord's own, it keeps all five batches where Kafka keeps one):
//!
//! ```text
//! version i16 (=2; 1 is read) | crc u32 (CRC-32C of the rest) | producer count i32 |
//!   per producer: producer id i64, epoch i16, last timestamp i64,
//!     (v2) current txn first offset i64 (-1 none), batch count i16,
//!     per batch: first seq i32, last seq i32, first offset i64, last offset i64, timestamp i64
//! (v2) aborted count i32 | per aborted txn: producer id i64, first offset i64, last offset i64,
//!   last stable offset i64
//! ```

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tracing::{info, warn};

use crate::batch::BatchHeader;
use crate::checkpoint;
use crate::error::{Error, Result};
use crate::segment::{self, HeaderReader, Segment};

/// Batches remembered per producer for duplicate detection (Kafka's NUM_BATCHES_TO_RETAIN, and
/// the most in-flight requests an idempotent producer may have).
pub const NUM_BATCHES_TO_RETAIN: usize = 5;
/// Suffix of producer-state snapshot files.
pub(crate) const SNAPSHOT_SUFFIX: &str = ".snapshot";
const SNAPSHOT_VERSION: i16 = 2;
const NO_PRODUCER_EPOCH: i16 = -1;
const PRODUCER_ENTRY_LEN: usize = 8 + 2 + 8 + 2;
const BATCH_ENTRY_LEN: usize = 4 + 4 + 8 + 8 + 8;

/// A transaction aborted in this partition (an entry of Kafka's `.txnindex`): read_committed
/// consumers drop the producer's records from `first_offset` up to the abort marker at
/// `last_offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AbortedTxn {
    /// The producer whose transaction was aborted.
    pub producer_id: i64,
    /// Offset of the transaction's first record in this partition.
    pub first_offset: i64,
    /// Offset of the abort marker.
    pub last_offset: i64,
    /// The last stable offset when the marker was written.
    pub last_stable_offset: i64,
}

/// The result of a transaction marker (the control record's type: 0 = abort, 1 = commit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlType {
    /// ABORT (type 0).
    Abort,
    /// COMMIT (type 1).
    Commit,
}

impl ControlType {
    /// Parses a control record key: version i16 (0), type i16.
    pub fn from_key(key: &[u8]) -> Option<ControlType> {
        if key.len() < 4 {
            return None;
        }
        match i16::from_be_bytes([key[2], key[3]]) {
            0 => Some(ControlType::Abort),
            1 => Some(ControlType::Commit),
            _ => None,
        }
    }
}

/// The marker type of a whole control batch (header and uncompressed records).
pub fn control_type_of(batch: &[u8]) -> Option<ControlType> {
    let body = batch.get(crate::batch::BATCH_HEADER_LEN..)?;
    let record = crate::records::RecordIter::new(body).next()?.ok()?;
    ControlType::from_key(record.key?)
}

/// An idempotent producer's id (assigned by InitProducerId); -1 in a batch means "none".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProducerId(pub i64);

/// One batch a producer appended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchMetadata {
    /// Sequence number of the first record.
    pub first_seq: i32,
    /// Sequence number of the last record (wrapped past `i32::MAX`).
    pub last_seq: i32,
    /// Offset of the first record.
    pub first_offset: i64,
    /// Offset of the last record.
    pub last_offset: i64,
    /// The batch's max timestamp (the append time for LogAppendTime).
    pub timestamp: i64,
}

/// What a partition remembers about one producer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducerStateEntry {
    /// Current producer epoch.
    pub epoch: i16,
    /// The last (up to five) batches of the current epoch, oldest first.
    pub batches: VecDeque<BatchMetadata>,
    /// Timestamp of the last batch (drives producer.id.expiration.ms).
    pub last_timestamp: i64,
    /// First offset of the producer's open transaction in this partition.
    pub current_txn_first_offset: Option<i64>,
}

impl ProducerStateEntry {
    fn empty() -> Self {
        ProducerStateEntry {
            epoch: NO_PRODUCER_EPOCH,
            batches: VecDeque::new(),
            last_timestamp: -1,
            current_txn_first_offset: None,
        }
    }

    /// Sequence of the last record appended in the current epoch.
    pub fn last_seq(&self) -> Option<i32> {
        self.batches.back().map(|b| b.last_seq)
    }

    /// Offset of the last record appended in the current epoch.
    pub fn last_offset(&self) -> Option<i64> {
        self.batches.back().map(|b| b.last_offset)
    }

    fn find_duplicate(&self, epoch: i16, first_seq: i32, last_seq: i32) -> Option<BatchMetadata> {
        if epoch != self.epoch {
            return None;
        }
        self.batches
            .iter()
            .find(|b| b.first_seq == first_seq && b.last_seq == last_seq)
            .copied()
    }

    fn add_batch(&mut self, epoch: i16, batch: BatchMetadata) {
        if epoch != self.epoch {
            self.batches.clear();
            self.epoch = epoch;
        }
        if self.batches.len() == NUM_BATCHES_TO_RETAIN {
            self.batches.pop_front();
        }
        self.batches.push_back(batch);
        self.last_timestamp = batch.timestamp;
    }
}

/// Sequence of the last record of a batch: `base + delta`, wrapping past `i32::MAX` to 0
/// (Kafka's `DefaultRecordBatch.incrementSequence`).
pub fn last_sequence(base_seq: i32, last_offset_delta: i32) -> i32 {
    if base_seq > i32::MAX - last_offset_delta {
        last_offset_delta - (i32::MAX - base_seq) - 1
    } else {
        base_seq + last_offset_delta
    }
}

fn in_sequence(last_seq: i32, next_seq: i32) -> bool {
    i64::from(next_seq) == i64::from(last_seq) + 1 || (next_seq == 0 && last_seq == i32::MAX)
}

fn has_producer(h: &BatchHeader) -> bool {
    h.producer_id >= 0 && !h.is_control()
}

/// Whether a producer is kept at a log start offset: it has a batch at or above it, or an open
/// transaction (whose markers are still to come).
fn keep_at(e: &ProducerStateEntry, log_start: i64) -> bool {
    e.current_txn_first_offset.is_some() || e.last_offset().is_some_and(|o| o >= log_start)
}

/// Applies a transaction marker of `h` (a control batch with a producer id) to its producer's
/// entry; returns the aborted transaction to remember, if any.
fn apply_marker(entry: &mut ProducerStateEntry, h: &BatchHeader, control: ControlType, lso: i64) -> Option<AbortedTxn> {
    if h.producer_epoch != entry.epoch {
        entry.batches.clear();
        entry.epoch = h.producer_epoch;
    }
    entry.last_timestamp = entry.last_timestamp.max(h.max_timestamp);
    let first = entry.current_txn_first_offset.take()?;
    (control == ControlType::Abort).then_some(AbortedTxn {
        producer_id: h.producer_id,
        first_offset: first,
        last_offset: h.base_offset,
        last_stable_offset: lso,
    })
}

/// What the producer check decided for one batch of an append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BatchOutcome {
    /// Write the batch with this base offset.
    Write { base_offset: i64 },
    /// A retry of a batch already in the log: skip it; answer with the original.
    Duplicate(BatchMetadata),
}

/// The checked plan for one append: per-batch outcomes and the producer entries to commit once
/// the bytes are written.
#[derive(Debug)]
pub(crate) struct AppendCheck {
    pub(crate) outcomes: Vec<BatchOutcome>,
    /// Offset after the last written batch.
    pub(crate) next_offset: i64,
    updates: HashMap<i64, ProducerStateEntry>,
    aborted: Vec<AbortedTxn>,
}

/// The producer state of one partition and its snapshot files.
#[derive(Debug)]
pub(crate) struct ProducerStateManager {
    dir: PathBuf,
    producers: HashMap<i64, ProducerStateEntry>,
    /// Batches below this offset are reflected in `producers`.
    map_end_offset: i64,
    /// Snapshot files on disk by offset.
    snapshots: BTreeMap<i64, PathBuf>,
    /// Aborted transactions at or above the log start offset, by marker offset.
    aborted: Vec<AbortedTxn>,
}

/// Kafka's snapshot file name: the 20-digit offset plus `.snapshot`.
pub(crate) fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(segment::file_name(offset, SNAPSHOT_SUFFIX))
}

impl ProducerStateManager {
    /// An empty state that knows the snapshot files in `dir` (nothing is loaded yet).
    pub(crate) fn new(dir: &Path) -> Result<Self> {
        let mut snapshots = BTreeMap::new();
        for entry in fs::read_dir(dir).map_err(Error::io("list dir", dir))? {
            let entry = entry.map_err(Error::io("list dir", dir))?;
            if let Some(offset) = entry
                .file_name()
                .to_str()
                .and_then(|n| segment::parse_file_name(n, SNAPSHOT_SUFFIX))
            {
                snapshots.insert(offset, entry.path());
            }
        }
        Ok(ProducerStateManager {
            dir: dir.to_path_buf(),
            producers: HashMap::new(),
            map_end_offset: 0,
            snapshots,
            aborted: Vec::new(),
        })
    }

    /// The producers currently tracked.
    pub(crate) fn producers(&self) -> &HashMap<i64, ProducerStateEntry> {
        &self.producers
    }

    /// First offset of the oldest open transaction (the last stable offset cannot pass it).
    pub(crate) fn first_unstable_offset(&self) -> Option<i64> {
        self.producers.values().filter_map(|e| e.current_txn_first_offset).min()
    }

    /// Aborted transactions overlapping `[from, upto)`: marker at or after `from`, first record
    /// before `upto` (Kafka's `collectAbortedTransactions`).
    pub(crate) fn aborted_between(&self, from: i64, upto: i64) -> Vec<AbortedTxn> {
        let start = self.aborted.partition_point(|a| a.last_offset < from);
        self.aborted[start..]
            .iter()
            .filter(|a| a.first_offset < upto)
            .copied()
            .collect()
    }

    /// Offsets of the snapshot files on disk, ascending.
    pub(crate) fn snapshot_offsets(&self) -> Vec<i64> {
        self.snapshots.keys().copied().collect()
    }

    /// The snapshot file at exactly `offset`, if there is one.
    pub(crate) fn snapshot_file(&self, offset: i64) -> Option<&Path> {
        self.snapshots.get(&offset).map(PathBuf::as_path)
    }

    /// Checks an append's batches in order against the producer state (plus the batches before
    /// them in the same append). `base_offset` is the log end offset; `log_append_time` the
    /// time stamped into LogAppendTime batches. Nothing changes until [`Self::commit`].
    /// `controls` gives, per batch, the marker type of a control batch. Transactional batches
    /// from the broker's own coordinator (`coordinator`: transactional offset commits) open the
    /// producer's transaction without sequence checks.
    pub(crate) fn check_append<'a>(
        &self,
        headers: impl Iterator<Item = (&'a BatchHeader, Option<ControlType>)>,
        base_offset: i64,
        log_append_time: Option<i64>,
        coordinator: bool,
    ) -> Result<AppendCheck> {
        let mut updates: HashMap<i64, ProducerStateEntry> = HashMap::new();
        let mut aborted = Vec::new();
        let mut outcomes = Vec::new();
        let mut next = base_offset;
        for (h, control) in headers {
            let pid = h.producer_id;
            let current = |updates: &mut HashMap<i64, ProducerStateEntry>| -> ProducerStateEntry {
                updates.remove(&pid).unwrap_or_else(|| {
                    self.producers
                        .get(&pid)
                        .cloned()
                        .unwrap_or_else(ProducerStateEntry::empty)
                })
            };
            if h.is_control() && pid >= 0 {
                let Some(control) = control else {
                    return Err(Error::InvalidControlBatch { producer_id: pid });
                };
                let mut entry = current(&mut updates);
                if h.producer_epoch < entry.epoch {
                    return Err(Error::InvalidProducerEpoch {
                        producer_id: pid,
                        epoch: h.producer_epoch,
                        current: entry.epoch,
                    });
                }
                let mut marker = *h;
                marker.base_offset = next;
                aborted.extend(apply_marker(&mut entry, &marker, control, next));
                updates.insert(pid, entry);
                outcomes.push(BatchOutcome::Write { base_offset: next });
                next += i64::from(h.last_offset_delta) + 1;
                continue;
            }
            if coordinator && h.is_transactional() && pid >= 0 {
                let mut entry = current(&mut updates);
                if h.producer_epoch < entry.epoch {
                    return Err(Error::InvalidProducerEpoch {
                        producer_id: pid,
                        epoch: h.producer_epoch,
                        current: entry.epoch,
                    });
                }
                if h.producer_epoch != entry.epoch {
                    entry.batches.clear();
                    entry.epoch = h.producer_epoch;
                }
                entry.current_txn_first_offset.get_or_insert(next);
                entry.last_timestamp = log_append_time.unwrap_or(h.max_timestamp);
                updates.insert(pid, entry);
                outcomes.push(BatchOutcome::Write { base_offset: next });
                next += i64::from(h.last_offset_delta) + 1;
                continue;
            }
            if !has_producer(h) {
                outcomes.push(BatchOutcome::Write { base_offset: next });
                next += i64::from(h.last_offset_delta) + 1;
                continue;
            }
            if h.base_sequence < 0 {
                return Err(Error::InvalidSequence {
                    producer_id: pid,
                    base_sequence: h.base_sequence,
                });
            }
            let entry = updates.entry(pid).or_insert_with(|| {
                self.producers
                    .get(&pid)
                    .cloned()
                    .unwrap_or_else(ProducerStateEntry::empty)
            });
            let epoch = h.producer_epoch;
            let first_seq = h.base_sequence;
            let last_seq = last_sequence(first_seq, h.last_offset_delta);
            if let Some(dup) = entry.find_duplicate(epoch, first_seq, last_seq) {
                outcomes.push(BatchOutcome::Duplicate(dup));
                continue;
            }
            if epoch < entry.epoch {
                return Err(Error::InvalidProducerEpoch {
                    producer_id: pid,
                    epoch,
                    current: entry.epoch,
                });
            }
            if epoch != entry.epoch {
                // A bumped epoch restarts the sequence at 0 (unless the producer was unknown).
                if first_seq != 0 && entry.epoch != NO_PRODUCER_EPOCH {
                    return Err(Error::OutOfOrderSequence {
                        producer_id: pid,
                        epoch,
                        first_seq,
                        expected: 0,
                    });
                }
            } else if let Some(last) = entry.last_seq()
                && !in_sequence(last, first_seq)
            {
                return Err(Error::OutOfOrderSequence {
                    producer_id: pid,
                    epoch,
                    first_seq,
                    expected: last_sequence(last, 1),
                });
            }
            let first_offset = next;
            let last_offset = next + i64::from(h.last_offset_delta);
            entry.add_batch(
                epoch,
                BatchMetadata {
                    first_seq,
                    last_seq,
                    first_offset,
                    last_offset,
                    timestamp: log_append_time.unwrap_or(h.max_timestamp),
                },
            );
            if h.is_transactional() {
                entry.current_txn_first_offset.get_or_insert(first_offset);
            }
            outcomes.push(BatchOutcome::Write {
                base_offset: first_offset,
            });
            next = last_offset + 1;
        }
        Ok(AppendCheck {
            outcomes,
            next_offset: next,
            updates,
            aborted,
        })
    }

    /// Applies a checked append after its bytes were written.
    pub(crate) fn commit(&mut self, check: AppendCheck) {
        self.producers.extend(check.updates);
        self.aborted.extend(check.aborted);
        self.map_end_offset = self.map_end_offset.max(check.next_offset);
    }

    /// Applies a batch copied from the partition leader (its sequence was checked there);
    /// `batch` is the whole batch, from which a control batch's marker type is read.
    pub(crate) fn apply_replicated(&mut self, h: &BatchHeader, batch: &[u8]) {
        let control = if h.is_control() { control_type_of(batch) } else { None };
        self.replay(h, control);
    }

    /// Replays one batch already in the log (recovery): no validation, like a follower.
    /// `control` is the marker type of a control batch.
    fn replay(&mut self, h: &BatchHeader, control: Option<ControlType>) {
        if h.is_control() && h.producer_id >= 0 {
            if let Some(control) = control {
                let entry = self
                    .producers
                    .entry(h.producer_id)
                    .or_insert_with(ProducerStateEntry::empty);
                if let Some(a) = apply_marker(entry, h, control, h.base_offset) {
                    self.aborted.push(a);
                }
            }
        } else if h.is_transactional() && h.producer_id >= 0 && h.base_sequence < 0 {
            // A coordinator's transactional batch (no sequence).
            let entry = self
                .producers
                .entry(h.producer_id)
                .or_insert_with(ProducerStateEntry::empty);
            if h.producer_epoch != entry.epoch {
                entry.batches.clear();
                entry.epoch = h.producer_epoch;
            }
            entry.current_txn_first_offset.get_or_insert(h.base_offset);
            entry.last_timestamp = h.max_timestamp;
        } else if has_producer(h) {
            let entry = self
                .producers
                .entry(h.producer_id)
                .or_insert_with(ProducerStateEntry::empty);
            entry.add_batch(
                h.producer_epoch,
                BatchMetadata {
                    first_seq: h.base_sequence,
                    last_seq: last_sequence(h.base_sequence, h.last_offset_delta),
                    first_offset: h.base_offset,
                    last_offset: h.last_offset(),
                    timestamp: h.max_timestamp,
                },
            );
            if h.is_transactional() {
                entry.current_txn_first_offset.get_or_insert(h.base_offset);
            }
        }
        self.map_end_offset = self.map_end_offset.max(h.next_offset());
    }

    /// Loads the latest valid snapshot at or below `log_end` and replays the batch headers after
    /// it. Snapshots above the log end offset or below the log start offset are deleted first,
    /// corrupt ones as they are found; stray snapshots (not at a segment base offset) are
    /// deleted too, except the newest one when it lies in the active segment (clean shutdown).
    /// Producers idle past `expiration_ms` or whose last offset is below `log_start` are dropped.
    /// Also used after a truncation. Returns the number of batches replayed.
    pub(crate) fn load(
        &mut self,
        segments: &[Segment],
        log_start: i64,
        log_end: i64,
        now_ms: i64,
        expiration_ms: i64,
    ) -> Result<u64> {
        self.producers.clear();
        self.aborted.clear();
        let doomed: Vec<i64> = self
            .snapshots
            .keys()
            .copied()
            .filter(|&o| o > log_end || o < log_start)
            .collect();
        self.delete_snapshots(&doomed)?;
        self.remove_stray_snapshots(segments)?;
        self.map_end_offset = log_start;
        while let Some((&offset, path)) = self.snapshots.iter().next_back() {
            match read_snapshot(path) {
                Ok((entries, aborted)) => {
                    info!(dir = %self.dir.display(), offset, producers = entries.len(), "loaded producer snapshot");
                    self.producers = entries
                        .into_iter()
                        .filter(|(_, e)| {
                            e.current_txn_first_offset.is_some()
                                || now_ms.saturating_sub(e.last_timestamp) < expiration_ms
                        })
                        .filter(|(_, e)| keep_at(e, log_start))
                        .collect();
                    self.aborted = aborted.into_iter().filter(|a| a.last_offset >= log_start).collect();
                    self.map_end_offset = offset.max(log_start);
                    break;
                }
                Err(error) => {
                    warn!(dir = %self.dir.display(), offset, %error, "deleting corrupt producer snapshot");
                    self.delete_snapshots(&[offset])?;
                }
            }
        }
        self.replay_from(segments, log_start, log_end)
    }

    /// Replays batch headers from `map_end_offset` to `log_end`.
    fn replay_from(&mut self, segments: &[Segment], log_start: i64, log_end: i64) -> Result<u64> {
        let from = self.map_end_offset;
        let mut batches = 0u64;
        for (i, seg) in segments.iter().enumerate() {
            let upper = segments.get(i + 1).map_or(seg.next_offset, |s| s.base_offset);
            if upper <= from || seg.base_offset >= log_end {
                continue;
            }
            let Some((mut pos, _)) = seg.find_batch(from)? else {
                continue;
            };
            let mut reader = HeaderReader::new(seg);
            while let Some(h) = reader.header_at(pos)? {
                if h.base_offset >= log_end {
                    break;
                }
                if h.last_offset() >= log_start {
                    let control = if h.is_control() && h.producer_id >= 0 {
                        segment::control_type_at(seg, pos, &h)?
                    } else {
                        None
                    };
                    self.replay(&h, control);
                    batches += 1;
                }
                pos += h.total_len() as u64;
            }
        }
        if batches > 0 {
            info!(dir = %self.dir.display(), from, log_end, batches, producers = self.producers.len(),
                "rebuilt producer state from the log");
        }
        self.map_end_offset = log_end;
        Ok(batches)
    }

    /// Keeps snapshots at segment base offsets, plus the newest snapshot if it lies above every
    /// segment base offset (written at clean shutdown); deletes the rest (Kafka's
    /// `removeStraySnapshots`).
    fn remove_stray_snapshots(&mut self, segments: &[Segment]) -> Result<()> {
        let max_base = segments.last().map_or(i64::MIN, |s| s.base_offset);
        let newest = self.snapshots.keys().next_back().copied();
        let stray: Vec<i64> = self
            .snapshots
            .keys()
            .copied()
            .filter(|o| segments.binary_search_by_key(o, |s| s.base_offset).is_err())
            .filter(|&o| !(Some(o) == newest && o > max_base))
            .collect();
        self.delete_snapshots(&stray)
    }

    /// Writes a snapshot of the state at `offset` (which must be the offset up to which batches
    /// are applied) without fsyncing it; returns the file so the caller can make it durable.
    /// Replaces an existing snapshot at the same offset.
    pub(crate) fn write_snapshot(&mut self, offset: i64) -> Result<(Arc<File>, PathBuf)> {
        debug_assert!(offset >= self.map_end_offset, "snapshot below the applied state");
        self.map_end_offset = offset;
        let bytes = encode_snapshot(&self.producers, &self.aborted);
        let path = snapshot_path(&self.dir, offset);
        let tmp = path.with_extension(format!("snapshot{}", checkpoint::TMP_SUFFIX));
        let file = (|| {
            let mut f = File::create(&tmp)?;
            f.write_all(&bytes)?;
            fs::rename(&tmp, &path)?;
            Ok(f)
        })()
        .map_err(Error::io("write producer snapshot", &path))?;
        self.snapshots.insert(offset, path.clone());
        Ok((Arc::new(file), path))
    }

    /// After the log start offset advanced: drops producers whose last batch is below it and
    /// deletes the snapshots below it.
    pub(crate) fn on_log_start_advanced(&mut self, log_start: i64) -> Result<()> {
        self.producers.retain(|_, e| keep_at(e, log_start));
        self.aborted.retain(|a| a.last_offset >= log_start);
        self.map_end_offset = self.map_end_offset.max(log_start);
        let doomed: Vec<i64> = self.snapshots.range(..log_start).map(|(o, _)| *o).collect();
        self.delete_snapshots(&doomed)
    }

    /// Drops producers idle for `expiration_ms` or longer (producer.id.expiration.ms).
    pub(crate) fn remove_expired(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers.retain(|_, e| {
            e.current_txn_first_offset.is_some() || now_ms.saturating_sub(e.last_timestamp) < expiration_ms
        });
        before - self.producers.len()
    }

    /// Adopts a snapshot taken by another copy of this partition (the one uploaded with the last
    /// tiered segment) as the state at `offset`, where the log was just restarted empty, and
    /// writes it as this log's own snapshot there (fsynced). Returns the number of producers.
    pub(crate) fn adopt_snapshot(&mut self, offset: i64, bytes: &[u8]) -> Result<usize> {
        let path = snapshot_path(&self.dir, offset);
        let (entries, aborted) = decode_snapshot(bytes).map_err(|reason| Error::CorruptCheckpoint {
            path: path.clone(),
            reason,
        })?;
        self.producers = entries;
        self.aborted = aborted;
        self.map_end_offset = offset;
        let (file, path) = self.write_snapshot(offset)?;
        file.sync_all().map_err(Error::io("fsync producer snapshot", &path))?;
        Ok(self.producers.len())
    }

    /// The log was emptied and restarts at `offset`: no producers, no snapshots.
    pub(crate) fn truncate_fully_and_start_at(&mut self, offset: i64) -> Result<()> {
        self.producers.clear();
        self.aborted.clear();
        let all: Vec<i64> = self.snapshots.keys().copied().collect();
        self.delete_snapshots(&all)?;
        self.map_end_offset = offset;
        Ok(())
    }

    fn delete_snapshots(&mut self, offsets: &[i64]) -> Result<()> {
        for offset in offsets {
            if let Some(path) = self.snapshots.remove(offset) {
                match fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io("delete producer snapshot", &path)(e)),
                }
            }
        }
        Ok(())
    }
}

fn encode_snapshot(producers: &HashMap<i64, ProducerStateEntry>, aborted: &[AbortedTxn]) -> Vec<u8> {
    let mut ids: Vec<&i64> = producers.keys().collect();
    ids.sort_unstable();
    let mut body = Vec::with_capacity(4 + producers.len() * (PRODUCER_ENTRY_LEN + 2 * BATCH_ENTRY_LEN));
    body.extend_from_slice(&(producers.len() as i32).to_be_bytes());
    for id in ids {
        let e = &producers[id];
        body.extend_from_slice(&id.to_be_bytes());
        body.extend_from_slice(&e.epoch.to_be_bytes());
        body.extend_from_slice(&e.last_timestamp.to_be_bytes());
        body.extend_from_slice(&e.current_txn_first_offset.unwrap_or(-1).to_be_bytes());
        body.extend_from_slice(&(e.batches.len() as i16).to_be_bytes());
        for b in &e.batches {
            body.extend_from_slice(&b.first_seq.to_be_bytes());
            body.extend_from_slice(&b.last_seq.to_be_bytes());
            body.extend_from_slice(&b.first_offset.to_be_bytes());
            body.extend_from_slice(&b.last_offset.to_be_bytes());
            body.extend_from_slice(&b.timestamp.to_be_bytes());
        }
    }
    body.extend_from_slice(&(aborted.len() as i32).to_be_bytes());
    for a in aborted {
        for v in [a.producer_id, a.first_offset, a.last_offset, a.last_stable_offset] {
            body.extend_from_slice(&v.to_be_bytes());
        }
    }
    let mut out = Vec::with_capacity(6 + body.len());
    out.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// A cursor over snapshot bytes that fails instead of panicking on short input.
struct Reader<'a> {
    buf: &'a [u8],
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.buf.split_at_checked(N)?;
        self.buf = rest;
        head.try_into().ok()
    }
    fn i16(&mut self) -> Option<i16> {
        self.take().map(i16::from_be_bytes)
    }
    fn i32(&mut self) -> Option<i32> {
        self.take().map(i32::from_be_bytes)
    }
    fn i64(&mut self) -> Option<i64> {
        self.take().map(i64::from_be_bytes)
    }
}

/// A snapshot's producers and aborted transactions.
type SnapshotState = (HashMap<i64, ProducerStateEntry>, Vec<AbortedTxn>);

fn read_snapshot(path: &Path) -> Result<SnapshotState> {
    let bytes = fs::read(path).map_err(Error::io("read producer snapshot", path))?;
    decode_snapshot(&bytes).map_err(|reason| Error::CorruptCheckpoint {
        path: path.to_path_buf(),
        reason,
    })
}

fn decode_snapshot(bytes: &[u8]) -> std::result::Result<SnapshotState, String> {
    let short = || "snapshot is truncated".to_string();
    let mut r = Reader { buf: bytes };
    let version = r.i16().ok_or_else(short)?;
    if version != SNAPSHOT_VERSION && version != 1 {
        return Err(format!("unsupported snapshot version {version}"));
    }
    let stored = r.take::<4>().map(u32::from_be_bytes).ok_or_else(short)?;
    let computed = crc32c::crc32c(r.buf);
    if stored != computed {
        return Err(format!(
            "crc mismatch: stored {stored:#010x}, computed {computed:#010x}"
        ));
    }
    let count = r.i32().ok_or_else(short)?;
    if count < 0 || count as usize > r.buf.len() / PRODUCER_ENTRY_LEN {
        return Err(format!("invalid producer count {count}"));
    }
    let mut out = HashMap::with_capacity(count as usize);
    for _ in 0..count {
        let id = r.i64().ok_or_else(short)?;
        let epoch = r.i16().ok_or_else(short)?;
        let last_timestamp = r.i64().ok_or_else(short)?;
        let txn_first = if version >= 2 { r.i64().ok_or_else(short)? } else { -1 };
        let n = r.i16().ok_or_else(short)?;
        if !(0..=NUM_BATCHES_TO_RETAIN as i16).contains(&n) {
            return Err(format!("invalid batch count {n} for producer {id}"));
        }
        let mut batches = VecDeque::with_capacity(n as usize);
        for _ in 0..n {
            batches.push_back(BatchMetadata {
                first_seq: r.i32().ok_or_else(short)?,
                last_seq: r.i32().ok_or_else(short)?,
                first_offset: r.i64().ok_or_else(short)?,
                last_offset: r.i64().ok_or_else(short)?,
                timestamp: r.i64().ok_or_else(short)?,
            });
        }
        out.insert(
            id,
            ProducerStateEntry {
                epoch,
                batches,
                last_timestamp,
                current_txn_first_offset: (txn_first >= 0).then_some(txn_first),
            },
        );
    }
    let mut aborted = Vec::new();
    if version >= 2 {
        let count = r.i32().ok_or_else(short)?;
        if count < 0 || count as usize > r.buf.len() / 32 {
            return Err(format!("invalid aborted transaction count {count}"));
        }
        for _ in 0..count {
            aborted.push(AbortedTxn {
                producer_id: r.i64().ok_or_else(short)?,
                first_offset: r.i64().ok_or_else(short)?,
                last_offset: r.i64().ok_or_else(short)?,
                last_stable_offset: r.i64().ok_or_else(short)?,
            });
        }
    }
    if !r.buf.is_empty() {
        return Err(format!("{} trailing bytes", r.buf.len()));
    }
    Ok((out, aborted))
}

#[cfg(test)]
mod tests;
