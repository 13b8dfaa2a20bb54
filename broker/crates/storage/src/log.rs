//! One partition's log: segments on disk, append, read planning, timestamp lookups, retention,
//! DeleteRecords, truncation, group-commit flushing, checkpoints and crash recovery.
//!
//! Directory layout (Kafka's names): `<20-digit base offset>.log`, `.index`, `.timeindex`,
//! `leader-epoch-checkpoint`, plus the per-partition checkpoints `log-start-offset`,
//! `recovery-point` and `high-watermark`, and producer-state snapshots `<offset>.snapshot`
//! (see `producer_state`).

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{self, ErrorKind, IoSlice, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use parking_lot::Mutex;
use tracing::{debug, info, warn};

use crate::batch::{self, BATCH_HEADER_LEN, BatchError, BatchHeader};
use crate::checkpoint;
use crate::epoch::LeaderEpochCache;
use crate::error::{Error, Result};
use crate::files::{FileCache, FileHandle};
use crate::producer_state::{
    self, AbortedTxn, BatchOutcome, ControlType, ProducerId, ProducerStateEntry, ProducerStateManager,
};
use crate::records::{self, AppendOrigin, RecordChecks};
use crate::segment::{self, INDEX_SUFFIX, IndexLimits, LOG_SUFFIX, Segment, TIME_INDEX_SUFFIX};
use crate::types::{LeaderEpoch, Offset};

#[path = "cleaner.rs"]
pub(crate) mod cleaner;
use cleaner::{CleanerState, CleanupPolicy, CompactionConfig};

const LOG_START_OFFSET_FILE: &str = "log-start-offset";
const RECOVERY_POINT_FILE: &str = "recovery-point";
const HIGH_WATERMARK_FILE: &str = "high-watermark";
/// Cap on the append-time marks kept for `oldest_unflushed_append_ms`.
const MAX_APPEND_MARKS: usize = 1024;
/// Leftovers of interrupted operations, deleted on open.
const STALE_SUFFIXES: [&str; 4] = [checkpoint::TMP_SUFFIX, ".deleted", ".cleaned", ".swap"];

/// How record timestamps are set (Kafka `message.timestamp.type`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TimestampType {
    /// Keep the producer's timestamps.
    #[default]
    CreateTime,
    /// Stamp the broker's append time into each batch (maxTimestamp + attribute bit).
    LogAppendTime,
}

/// Per-log configuration; `Default` gives Kafka's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct LogConfig {
    /// Roll when the active segment would exceed this size (`segment.bytes`; capped at 2 GiB - 1
    /// because index positions are 32-bit and Kafka's setting is an int).
    pub segment_bytes: u64,
    /// Roll when the active segment's first batch is this old (`segment.ms`); `None` = never.
    pub segment_ms: Option<u64>,
    /// Delete closed segments whose largest timestamp is older (`retention.ms`); `None` = unlimited.
    pub retention_ms: Option<i64>,
    /// Delete oldest closed segments while the log is larger (`retention.bytes`); `None` = unlimited.
    pub retention_bytes: Option<u64>,
    /// Largest batch accepted, including the 12-byte log overhead (`max.message.bytes`).
    pub max_message_bytes: usize,
    /// `message.timestamp.type`.
    pub timestamp_type: TimestampType,
    /// `message.timestamp.before.max.ms`: how far in the past a CreateTime record timestamp may
    /// be.
    pub timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms`: how far in the future a CreateTime record timestamp may
    /// be. `Default` leaves both unbounded; the broker passes the topic's effective values
    /// (Kafka's default here is one hour).
    pub timestamp_after_max_ms: i64,
    /// The broker's `storage.max_compression_ratio`: one batch's records may decompress to at
    /// most `max_message_bytes` times this ([`LogConfig::max_decompressed_bytes`]).
    pub max_compression_ratio: usize,
    /// Bytes between sparse offset index entries (`index.interval.bytes`).
    pub index_interval_bytes: usize,
    /// Maximum index file size per segment; the segment rolls when full (`segment.index.bytes`).
    pub segment_index_bytes: usize,
    /// `file.delete.delay.ms`. Ignored: segments are deleted immediately. Readers holding a
    /// [`ReadPlan`] keep the open file and can still read it after the unlink.
    pub file_delete_delay_ms: u64,
    /// Forget an idempotent producer this long after its last batch (the broker's
    /// `producer.id.expiration.ms`); checked when retention runs.
    pub producer_id_expiration_ms: i64,
    /// `cleanup.policy`: without `delete`, time and size retention are off; with `compact`, the
    /// log cleaner compacts the log and keyless records are refused.
    pub cleanup_policy: CleanupPolicy,
    /// Compaction settings (used with `cleanup_policy.compact`).
    pub compaction: CompactionConfig,
}

const SEVEN_DAYS_MS: u64 = 7 * 24 * 60 * 60 * 1000;
/// Kafka's default `max.message.bytes`.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1_048_588;
/// Default of the broker's `storage.max_compression_ratio`.
pub const DEFAULT_MAX_COMPRESSION_RATIO: usize = 64;

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: Some(SEVEN_DAYS_MS),
            retention_ms: Some(SEVEN_DAYS_MS as i64),
            retention_bytes: None,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            timestamp_type: TimestampType::CreateTime,
            timestamp_before_max_ms: i64::MAX,
            timestamp_after_max_ms: i64::MAX,
            max_compression_ratio: DEFAULT_MAX_COMPRESSION_RATIO,
            index_interval_bytes: 4096,
            segment_index_bytes: 10 * 1024 * 1024,
            file_delete_delay_ms: 60_000,
            producer_id_expiration_ms: 86_400_000,
            cleanup_policy: CleanupPolicy::default(),
            compaction: CompactionConfig::default(),
        }
    }
}

impl LogConfig {
    /// Most bytes the records of one produced batch may decompress to: `max.message.bytes`
    /// times `max_compression_ratio`. More is refused as a decompression bomb.
    pub fn max_decompressed_bytes(&self) -> usize {
        self.max_message_bytes.saturating_mul(self.max_compression_ratio.max(1))
    }

    /// The cap for decompressing stored batches (timestamp lookups, the cleaner, the group
    /// coordinator's load): as for produce, but never below the cap at Kafka's default
    /// `max.message.bytes`, so lowering a topic's `max.message.bytes` leaves older batches
    /// readable.
    pub fn max_decompressed_read_bytes(&self) -> usize {
        self.max_message_bytes
            .max(DEFAULT_MAX_MESSAGE_BYTES)
            .saturating_mul(self.max_compression_ratio.max(1))
    }

    fn limits(&self) -> IndexLimits {
        IndexLimits {
            interval_bytes: self.index_interval_bytes as u64,
            max_offset_entries: (self.segment_index_bytes / 8).max(1),
            max_time_entries: (self.segment_index_bytes / 12).max(1),
        }
    }

    fn max_segment_bytes(&self) -> u64 {
        self.segment_bytes.min(i32::MAX as u64)
    }
}

/// Result of [`Log::append`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset assigned to the first record.
    pub base_offset: Offset,
    /// Offset of the last record.
    pub last_offset: Offset,
    /// The append time stamped into the batches; `Some` only for LogAppendTime.
    pub log_append_time_ms: Option<i64>,
    /// Bytes written.
    pub bytes: usize,
    /// Records appended.
    pub record_count: u64,
    /// Largest timestamp in the append (after LogAppendTime stamping).
    pub max_timestamp: i64,
    /// Last offset of the batch holding `max_timestamp`.
    pub offset_of_max_timestamp: Offset,
    /// Batches skipped as retries of batches already in the log (idempotent producers). When
    /// every batch was a duplicate, the offsets and timestamps are the original ones.
    pub duplicates: usize,
}

/// What [`Log::apply_retention`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetentionOutcome {
    /// Segments deleted.
    pub segments_deleted: usize,
    /// Bytes of segment files deleted.
    pub bytes_deleted: u64,
    /// Log start offset afterwards.
    pub log_start_offset: Offset,
    /// True if the active segment was rolled because segment.ms elapsed.
    pub rolled: bool,
}

/// What [`Log::open`] had to do; lets callers (and tests) see whether the log was rescanned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenStats {
    /// The caller said the previous shutdown was clean.
    pub clean_shutdown: bool,
    /// Segments found (or created) on open.
    pub segments_loaded: usize,
    /// Segments validated batch by batch (unclean recovery).
    pub segments_recovered: usize,
    /// Segments whose indexes were rebuilt (recovery, or missing/corrupt index files).
    pub indexes_rebuilt: usize,
    /// Batches read and validated.
    pub batches_scanned: u64,
    /// Segment bytes read while validating.
    pub bytes_scanned: u64,
    /// Bytes cut from torn or corrupt tails.
    pub bytes_truncated: u64,
    /// Segments deleted because they followed a truncation point.
    pub segments_deleted: usize,
    /// Batch headers replayed to rebuild idempotent-producer state after the latest snapshot.
    pub producer_batches_replayed: u64,
}

/// A planned read of whole batches from one segment. Holds the segment file open, so the I/O
/// can run outside the log lock and even after the segment is deleted.
#[derive(Clone, Debug)]
pub struct ReadPlan {
    source: Option<(Arc<File>, Arc<Path>)>,
    position: u64,
    len: usize,
    first_offset: Option<Offset>,
}

impl ReadPlan {
    fn empty() -> Self {
        ReadPlan {
            source: None,
            position: 0,
            len: 0,
            first_offset: None,
        }
    }

    /// Bytes the plan covers.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if there is nothing to read.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Base offset of the first batch (may be below the requested offset), if any.
    pub fn first_offset(&self) -> Option<Offset> {
        self.first_offset
    }

    /// Byte position in the segment file.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// The segment file, for zero-copy senders; `None` for an empty plan.
    pub fn file(&self) -> Option<&Arc<File>> {
        self.source.as_ref().map(|(f, _)| f)
    }

    /// Reads the planned bytes with `pread`. If the log was truncated concurrently, returns the
    /// bytes that still exist (possibly ending in a partial batch, which consumers skip).
    pub fn read_bytes(&self) -> Result<Bytes> {
        let mut buf = vec![0u8; self.len];
        let done = self.read_into(&mut buf)?;
        buf.truncate(done);
        Ok(Bytes::from(buf))
    }

    /// Like [`ReadPlan::read_bytes`], into the caller's buffer (at least [`ReadPlan::len`] bytes
    /// long), so hot paths can reuse buffers. Returns how many bytes were read.
    pub fn read_into(&self, buf: &mut [u8]) -> Result<usize> {
        let Some((file, path)) = &self.source else {
            return Ok(0);
        };
        let len = self.len.min(buf.len());
        let mut done = 0usize;
        while done < len {
            match file.read_at(&mut buf[done..len], self.position + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io("read segment", path)(e)),
            }
        }
        Ok(done)
    }
}

/// A file or directory written but not yet fsynced. Holds no file descriptor: the file is
/// (re)opened when synced, so thousands of pending syncs cannot exhaust descriptors.
#[derive(Debug)]
struct PendingSync {
    target: SyncTarget,
    path: PathBuf,
    done: AtomicBool,
}

#[derive(Debug)]
enum SyncTarget {
    /// A segment or index file, through the file cache.
    Handle(FileHandle),
    /// A file opened by path (a producer-state snapshot).
    Path,
    /// The log directory.
    Dir,
}

impl PendingSync {
    /// fsyncs the target; a file deleted meanwhile has nothing left to make durable.
    fn sync(&self) -> Result<()> {
        let file = match &self.target {
            SyncTarget::Dir => return checkpoint::sync_dir(&self.path),
            SyncTarget::Handle(h) => h.get_io(),
            SyncTarget::Path => File::open(&self.path).map(Arc::new),
        };
        match file {
            Ok(f) => f.sync_data().map_err(Error::io("fsync", &self.path)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("open for fsync", &self.path)(e)),
        }
    }
}

/// What tickets have made durable; reset when the log is truncated.
#[derive(Debug)]
struct SyncedMark {
    generation: u64,
    up_to: i64,
}

/// Group-commit ticket from [`Log::flush_ticket`]: fsync outside the lock with
/// [`FlushTicket::sync`], then pass [`FlushTicket::up_to`] to [`Log::mark_flushed`].
#[derive(Debug)]
pub struct FlushTicket {
    /// Segment files with unflushed data, opened only when synced.
    files: Vec<FileHandle>,
    pending: Vec<Arc<PendingSync>>,
    up_to: Offset,
    generation: u64,
    mark: Arc<Mutex<SyncedMark>>,
}

impl FlushTicket {
    /// The log end offset when the ticket was taken: everything below is durable after `sync`.
    pub fn up_to(&self) -> Offset {
        self.up_to
    }

    /// fdatasyncs every segment with unflushed data, plus index files and the directory if
    /// segments were created since the last flush.
    pub fn sync(&self) -> Result<()> {
        for handle in &self.files {
            match handle.get_io() {
                Ok(file) => file.sync_data().map_err(Error::io("fsync", handle.path()))?,
                // Deleted (retention, truncation) since the ticket was taken: nothing to keep.
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("open for fsync", handle.path())(e)),
            }
        }
        for p in &self.pending {
            p.sync()?;
            p.done.store(true, Ordering::Release);
        }
        let mut mark = self.mark.lock();
        if mark.generation == self.generation && mark.up_to < self.up_to.0 {
            mark.up_to = self.up_to.0;
        }
        Ok(())
    }
}

/// Checkpoint values last written to disk (to skip rewriting unchanged files).
#[derive(Debug, Default)]
struct Written {
    log_start: Option<i64>,
    recovery_point: Option<i64>,
    high_watermark: Option<i64>,
}

/// One partition's log. Not internally synchronised: the broker wraps it in a `Mutex`.
#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    config: LogConfig,
    /// Sorted by base offset; never empty; the last one is the active segment.
    segments: Vec<Segment>,
    log_start_offset: i64,
    high_watermark: i64,
    recovery_point: i64,
    epochs: LeaderEpochCache,
    /// (log end offset after an append, append time), coalesced per millisecond; entries above
    /// the recovery point are unflushed.
    unflushed_appends: VecDeque<(i64, i64)>,
    pending_sync: Vec<Arc<PendingSync>>,
    synced: Arc<Mutex<SyncedMark>>,
    truncation_generation: u64,
    written: Written,
    open_stats: OpenStats,
    producers: ProducerStateManager,
    /// Log cleaner state (first dirty offset, tombstone deadline).
    cleaner: CleanerState,
    /// Where the segment and index files are opened.
    files: Arc<FileCache>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn write_all_vectored(mut file: &File, mut bufs: &mut [IoSlice<'_>]) -> io::Result<()> {
    while !bufs.is_empty() {
        match file.write_vectored(bufs) {
            Ok(0) => {
                return Err(io::Error::new(ErrorKind::WriteZero, "failed to write whole buffer"));
            }
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn has_stale_suffix(name: &str) -> bool {
    STALE_SUFFIXES.iter().any(|s| name.ends_with(s))
}

impl Log {
    /// Opens or creates the log in `dir`. `clean_shutdown` = the broker's clean-shutdown marker
    /// was present.
    ///
    /// Clean: segments and indexes are loaded from disk; only the active segment's batches after
    /// its last offset index entry are read (to find the log end offset). Unclean: every segment
    /// from the one holding the recovery point is validated batch by batch (length, magic, CRC,
    /// offsets); a torn or corrupt tail is cut, later segments deleted and indexes rebuilt. In
    /// both cases missing or wrong-sized indexes of closed segments are rebuilt.
    pub fn open(dir: &Path, config: LogConfig, clean_shutdown: bool) -> Result<Log> {
        Self::open_with_files(dir, config, clean_shutdown, FileCache::global())
    }

    /// [`Log::open`] with segment and index files opened through `files` instead of the
    /// process-wide [`FileCache::global`].
    pub fn open_with_files(dir: &Path, config: LogConfig, clean_shutdown: bool, files: Arc<FileCache>) -> Result<Log> {
        fs::create_dir_all(dir).map_err(Error::io("create dir", dir))?;
        cleaner::recover_interrupted_swaps(dir)?;
        let limits = config.limits();
        let mut stats = OpenStats {
            clean_shutdown,
            ..OpenStats::default()
        };
        let mut pending: Vec<Arc<PendingSync>> = Vec::new();
        let mut bases = Vec::new();
        let mut index_files = Vec::new();
        for entry in fs::read_dir(dir).map_err(Error::io("list dir", dir))? {
            let entry = entry.map_err(Error::io("list dir", dir))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if has_stale_suffix(&name) {
                warn!(dir = %dir.display(), file = %name, "deleting leftover file");
                match fs::remove_file(entry.path()) {
                    // The background deleter may have got there first.
                    Err(e) if e.kind() != ErrorKind::NotFound => return Err(Error::io("delete", &entry.path())(e)),
                    _ => {}
                }
            } else if let Some(base) = segment::parse_file_name(&name, LOG_SUFFIX) {
                bases.push(base);
            } else if let Some(base) = segment::parse_file_name(&name, INDEX_SUFFIX)
                .or_else(|| segment::parse_file_name(&name, TIME_INDEX_SUFFIX))
            {
                index_files.push((base, entry.path()));
            }
        }
        bases.sort_unstable();
        for (base, path) in index_files {
            if bases.binary_search(&base).is_err() {
                warn!(dir = %dir.display(), file = %path.display(), "deleting index without segment");
                fs::remove_file(&path).map_err(Error::io("delete", &path))?;
            }
        }

        let log_start_ckpt = checkpoint::read_offset(dir, LOG_START_OFFSET_FILE)?;
        let recovery_ckpt = checkpoint::read_offset(dir, RECOVERY_POINT_FILE)?;
        let hw_ckpt = checkpoint::read_offset(dir, HIGH_WATERMARK_FILE)?;
        let mut epochs = LeaderEpochCache::load(dir)?;
        let now = now_ms();

        let mut segments: Vec<Segment> = Vec::with_capacity(bases.len().max(1));
        let recover_from = if clean_shutdown {
            None
        } else {
            let rp = recovery_ckpt.unwrap_or(i64::MIN);
            Some(bases.partition_point(|&b| b <= rp).saturating_sub(1))
        };
        let mut i = 0;
        while i < bases.len() {
            let base = bases[i];
            let is_last = i + 1 == bases.len();
            let must_recover = recover_from.is_some_and(|r| i >= r);
            let (mut seg, indexes_ok) = Segment::open(&files, dir, base, is_last || must_recover)?;
            let mut assign_epoch = |h: &BatchHeader| epochs.assign_if_newer(h.partition_leader_epoch, h.base_offset);
            let outcome = if must_recover {
                stats.segments_recovered += 1;
                stats.indexes_rebuilt += 1;
                Some(seg.recover(&limits, &mut assign_epoch)?)
            } else if is_last {
                if indexes_ok && seg.active_indexes_look_sane()? {
                    Some(seg.resume_from_index(&limits, &mut assign_epoch)?)
                } else {
                    warn!(dir = %dir.display(), base_offset = base, "rebuilding missing or corrupt index of active segment");
                    stats.indexes_rebuilt += 1;
                    Some(seg.recover(&limits, &mut assign_epoch)?)
                }
            } else if indexes_ok && seg.closed_indexes_look_sane(bases[i + 1])? {
                None
            } else {
                warn!(dir = %dir.display(), base_offset = base, "rebuilding missing or corrupt index of closed segment");
                stats.indexes_rebuilt += 1;
                Some(seg.recover(&limits, &mut assign_epoch)?)
            };
            let mut cut_rest = false;
            let rebuilt = outcome.is_some();
            if let Some((end, truncated)) = outcome {
                stats.batches_scanned += end.batches;
                stats.bytes_scanned += end.bytes;
                stats.bytes_truncated += truncated;
                if let Some(reason) = &end.corruption {
                    warn!(dir = %dir.display(), offset = seg.next_offset, position = end.valid_end,
                        truncated_bytes = truncated, reason = %reason,
                        "truncating torn or corrupt log tail");
                    // Past the recovery point everything after a bad batch is suspect; a bad
                    // closed segment found only by an index check keeps its successors (Kafka).
                    cut_rest = must_recover;
                }
            }
            if cut_rest || is_last {
                segments.push(seg);
                for &later in &bases[i + 1..] {
                    warn!(dir = %dir.display(), base_offset = later, "deleting segment after truncation point");
                    let (doomed, _) = Segment::open(&files, dir, later, false)?;
                    doomed.delete_files()?;
                    stats.segments_deleted += 1;
                }
                if i + 1 < bases.len() {
                    pending.push(pending_dir(dir));
                }
                break;
            }
            let upper = bases[i + 1];
            if !rebuilt {
                seg.next_offset = upper;
                segments.push(seg);
            } else {
                seg.close_for_writes(&limits)?;
                pending.push(pending_file(seg.offset_index.file()));
                pending.push(pending_file(seg.time_index.file()));
                if seg.next_offset > upper {
                    warn!(dir = %dir.display(), base_offset = base, next_offset = seg.next_offset,
                        next_segment = upper, "segment overlaps the next one");
                }
                seg.next_offset = upper;
                segments.push(seg);
            }
            i += 1;
        }
        if segments.is_empty() {
            let base = log_start_ckpt.unwrap_or(0).max(0);
            segments.push(Segment::create(&files, dir, base, now)?);
            pending.push(pending_dir(dir));
        }
        stats.segments_loaded = segments.len();

        let mut log = Log {
            dir: dir.to_path_buf(),
            config,
            segments,
            log_start_offset: 0,
            high_watermark: 0,
            recovery_point: 0,
            epochs,
            unflushed_appends: VecDeque::new(),
            pending_sync: Vec::new(),
            synced: Arc::new(Mutex::new(SyncedMark {
                generation: 0,
                up_to: i64::MIN,
            })),
            truncation_generation: 0,
            written: Written {
                log_start: log_start_ckpt,
                recovery_point: recovery_ckpt,
                high_watermark: hw_ckpt,
            },
            open_stats: stats,
            producers: ProducerStateManager::new(dir)?,
            cleaner: CleanerState::default(),
            files,
        };
        let first_base = log.segments[0].base_offset;
        let leo = log.log_end_offset().0;
        let log_start = log_start_ckpt.unwrap_or(first_base).max(first_base);
        if log_start > leo {
            warn!(dir = %dir.display(), log_start_offset = log_start, log_end_offset = leo,
                "log start offset beyond log end offset, starting empty at the log start offset");
            log.truncate_fully_and_start_at(log_start)?;
        } else {
            log.log_start_offset = log_start;
            let rp_default = if clean_shutdown { leo } else { first_base };
            log.recovery_point = recovery_ckpt.unwrap_or(rp_default).min(leo);
            log.high_watermark = hw_ckpt.unwrap_or(log_start).min(leo).max(log_start);
            log.epochs.truncate_from_end(leo);
            log.epochs.truncate_from_start(log_start);
        }
        let expiration = log.config.producer_id_expiration_ms;
        log.open_stats.producer_batches_replayed = log.producers.load(
            &log.segments,
            log.log_start_offset,
            log.log_end_offset().0,
            now,
            expiration,
        )?;
        log.synced.lock().up_to = log.recovery_point;
        // Make rebuilt indexes and created files durable now: open is not a hot path.
        for p in pending.iter().chain(&log.pending_sync) {
            p.sync()?;
        }
        log.pending_sync.clear();
        match log.checkpoint() {
            // A full disk must not stop the broker from starting (read-mostly): the checkpoints
            // are hints, the files hold the older values, and the checkpoint loop retries.
            Err(error) if error.is_no_space() => {
                warn!(dir = %dir.display(), %error, "disk full: checkpoints not written at open");
            }
            result => result?,
        }
        info!(dir = %dir.display(), log_start_offset = log.log_start_offset,
            log_end_offset = log.log_end_offset().0, segments = log.segments.len(),
            clean_shutdown, batches_scanned = log.open_stats.batches_scanned, "opened log");
        Ok(log)
    }

    /// The partition directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Current configuration.
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Replaces the configuration; applies to later appends and retention runs.
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    /// What the last [`Log::open`] did.
    pub fn open_stats(&self) -> &OpenStats {
        &self.open_stats
    }

    /// First offset visible to readers.
    pub fn log_start_offset(&self) -> Offset {
        Offset(self.log_start_offset)
    }

    /// Next offset to be assigned.
    pub fn log_end_offset(&self) -> Offset {
        Offset(self.active().next_offset)
    }

    /// High watermark (set by the caller; never above the log end offset).
    pub fn high_watermark(&self) -> Offset {
        Offset(self.high_watermark)
    }

    /// Sets the high watermark, clamped to [log start offset, log end offset].
    pub fn set_high_watermark(&mut self, hw: Offset) {
        self.high_watermark = hw.0.min(self.log_end_offset().0).max(self.log_start_offset);
    }

    /// A new leader starts `epoch` at its log end offset (Kafka's `assignEpochStartOffset` on
    /// becoming leader), before any append in it: a follower asking where an older epoch ends
    /// must learn it ends here, even if this leader has not appended yet.
    pub fn begin_leader_epoch(&mut self, epoch: LeaderEpoch) {
        let leo = self.log_end_offset().0;
        self.epochs.assign_if_newer(epoch.0, leo);
    }

    /// Everything below this offset is fsynced.
    pub fn recovery_point(&self) -> Offset {
        Offset(self.recovery_point)
    }

    /// Total bytes of segment files.
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum()
    }

    /// Number of segments (including the active one).
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Base offsets of all segments, oldest first.
    pub fn segment_base_offsets(&self) -> Vec<Offset> {
        self.segments.iter().map(|s| Offset(s.base_offset)).collect()
    }

    fn active(&self) -> &Segment {
        self.segments.last().expect("a log always has an active segment")
    }

    fn active_mut(&mut self) -> &mut Segment {
        self.segments.last_mut().expect("a log always has an active segment")
    }

    /// Upper bound (exclusive) of the offsets in segment `i`.
    fn upper_bound(&self, i: usize) -> i64 {
        match self.segments.get(i + 1) {
            Some(next) => next.base_offset,
            None => self.segments[i].next_offset,
        }
    }

    /// Index of the segment that would hold `offset` (the last with base <= offset).
    fn segment_for(&self, offset: i64) -> usize {
        self.segments
            .partition_point(|s| s.base_offset <= offset)
            .saturating_sub(1)
    }

    /// Validates, stamps and appends one partition's produce payload (one or more batches) with
    /// a single vectored write, rolling first if needed. Updates the indexes and the epoch
    /// cache. Does not fsync and does not move the high watermark.
    ///
    /// Invalid input returns `Error::Batch` and leaves the log untouched. The batches come
    /// from a client (every check of Kafka's LogValidator); see [`Log::append_from`].
    pub fn append(&mut self, records: &[u8], leader_epoch: LeaderEpoch, now_ms: i64) -> Result<AppendInfo> {
        self.append_from(AppendOrigin::Client, records, leader_epoch, now_ms)
    }

    /// [`Log::append`] for batches from `origin`: the broker's own batches skip the checks that
    /// only concern clients (control batches, timestamp bounds).
    pub fn append_from(
        &mut self,
        origin: AppendOrigin,
        records: &[u8],
        leader_epoch: LeaderEpoch,
        now_ms: i64,
    ) -> Result<AppendInfo> {
        let validated = batch::validate_produce_batches(records, self.config.max_message_bytes)?;
        let checks = RecordChecks {
            origin,
            max_decompressed_bytes: self.config.max_decompressed_bytes(),
            require_keys: self.config.cleanup_policy.compact,
            create_time: self.config.timestamp_type == TimestampType::CreateTime,
            timestamp_before_max_ms: self.config.timestamp_before_max_ms,
            timestamp_after_max_ms: self.config.timestamp_after_max_ms,
            now_ms,
        };
        // Record errors name records by their index in the payload (Kafka accepts one batch per
        // partition, so for Kafka's clients this is the index in their batch).
        let mut first_index: i32 = 0;
        for b in &validated.batches {
            records::validate_records(&b.header, &records[b.range.clone()], &checks).map_err(|e| match e {
                BatchError::RejectedRecords { mut errors, total } => {
                    for error in &mut errors {
                        error.batch_index = error.batch_index.saturating_add(first_index);
                    }
                    BatchError::RejectedRecords { errors, total }
                }
                other => other,
            })?;
            first_index = first_index.saturating_add(b.header.record_count);
        }
        if records.len() > i32::MAX as usize {
            return Err(BatchError::TooLarge {
                size: records.len(),
                max: i32::MAX as usize,
            }
            .into());
        }
        let log_append_time = match self.config.timestamp_type {
            TimestampType::LogAppendTime => Some(now_ms),
            TimestampType::CreateTime => None,
        };
        let base_offset = self.log_end_offset().0;
        let controls: Vec<Option<ControlType>> = validated
            .batches
            .iter()
            .map(|b| {
                b.header
                    .is_control()
                    .then(|| producer_state::control_type_of(&records[b.range.clone()]))
                    .flatten()
            })
            .collect();
        let check = self.producers.check_append(
            validated.batches.iter().map(|b| &b.header).zip(controls),
            base_offset,
            log_append_time,
            origin == AppendOrigin::Coordinator,
        )?;
        if check.outcomes.iter().any(|o| matches!(o, BatchOutcome::Duplicate(_))) {
            return self.append_skipping_duplicates(origin, records, &validated, &check.outcomes, leader_epoch, now_ms);
        }
        let last_offset = base_offset + validated.record_count as i64 - 1;
        let max_timestamp = log_append_time.unwrap_or(validated.max_timestamp);
        let offset_of_max_timestamp = match log_append_time {
            // Every batch carries the append time; the first batch reaches it first.
            Some(_) => base_offset + i64::from(validated.batches[0].header.last_offset_delta),
            None => base_offset + validated.max_timestamp_offset_delta,
        };
        self.maybe_roll(records.len() as u64, max_timestamp, last_offset, now_ms)?;

        let n = validated.batches.len();
        let mut headers: Vec<[u8; BATCH_HEADER_LEN]> = Vec::with_capacity(n);
        let mut next = base_offset;
        for b in &validated.batches {
            let bytes = &records[b.range.clone()];
            headers.push(batch::stamp_header(
                bytes,
                &bytes[BATCH_HEADER_LEN..],
                next,
                leader_epoch.0,
                log_append_time,
            ));
            next += i64::from(b.header.last_offset_delta) + 1;
        }
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(2 * n);
        for (h, b) in headers.iter().zip(&validated.batches) {
            slices.push(IoSlice::new(h));
            slices.push(IoSlice::new(&records[b.range.start + BATCH_HEADER_LEN..b.range.end]));
        }

        let limits = self.config.limits();
        let seg = self.active_mut();
        let start = seg.size;
        let file = seg.open_log()?;
        if let Err(e) = write_all_vectored(&file, &mut slices) {
            if let Err(undo) = file.set_len(start) {
                warn!(path = %seg.log_path.display(), error = %undo,
                    "could not remove partial write after a failed append");
            }
            return Err(Error::io("write", &seg.log_path)(e));
        }
        let mut pos = start;
        let mut next = base_offset;
        for b in &validated.batches {
            let mut h = b.header;
            h.base_offset = next;
            h.partition_leader_epoch = leader_epoch.0;
            if let Some(ts) = log_append_time {
                h.max_timestamp = ts;
                h.attributes |= 1 << 3;
            }
            seg.track_batch(pos, &h, &limits);
            pos += h.total_len() as u64;
            next = h.next_offset();
        }
        seg.size = pos;
        debug_assert_eq!(seg.next_offset, last_offset + 1);

        self.epochs.assign_if_newer(leader_epoch.0, base_offset);
        self.producers.commit(check);
        let leo = last_offset + 1;
        // One mark per millisecond; past the cap the newest mark absorbs later appends (keeping
        // its older time, so flush.ms errs towards flushing early) and memory stays bounded.
        let full = self.unflushed_appends.len() >= MAX_APPEND_MARKS;
        match self.unflushed_appends.back_mut() {
            Some(back) if back.1 == now_ms || full => back.0 = leo,
            _ => self.unflushed_appends.push_back((leo, now_ms)),
        }
        Ok(AppendInfo {
            base_offset: Offset(base_offset),
            last_offset: Offset(last_offset),
            log_append_time_ms: log_append_time,
            bytes: records.len(),
            record_count: validated.record_count,
            max_timestamp,
            offset_of_max_timestamp: Offset(offset_of_max_timestamp),
            duplicates: 0,
        })
    }

    /// Appends batches copied from the partition leader (a follower's replica fetch) verbatim:
    /// offsets, leader epochs and timestamps as the leader assigned them. The first batch must
    /// start at or after the log end offset (a gap is allowed only where the leader's log has
    /// one: compaction, or a leader whose log starts later); the leader-epoch cache and producer
    /// state follow the batches. Does not fsync and does not move the high watermark.
    pub fn append_as_follower(&mut self, records: &[u8], now_ms: i64) -> Result<AppendInfo> {
        let batches = batch::validate_replicated_batches(records, self.config.max_message_bytes.max(records.len()))?;
        let leo = self.log_end_offset().0;
        let first = batches.first().expect("validated: at least one batch").header;
        if first.base_offset < leo {
            return Err(Error::OffsetOutOfOrder {
                base_offset: first.base_offset,
                log_end_offset: leo,
            });
        }
        if first.base_offset > leo && self.segments.len() == 1 && self.active().size == 0 {
            // An empty log and a leader whose log starts later (retention, DeleteRecords): start
            // where the leader's log starts. A gap after data is kept as it is, as compaction
            // leaves gaps between batches.
            self.truncate_fully_and_start_at(first.base_offset)?;
        }
        let last = batches.last().expect("validated").header;
        let max_timestamp = batches.iter().map(|b| b.header.max_timestamp).max().unwrap_or(-1);
        self.maybe_roll(records.len() as u64, max_timestamp, last.last_offset(), now_ms)?;
        let limits = self.config.limits();
        let seg = self.active_mut();
        let start = seg.size;
        let file = seg.open_log()?;
        if let Err(e) = write_all_vectored(&file, &mut [IoSlice::new(records)]) {
            if let Err(undo) = file.set_len(start) {
                warn!(path = %seg.log_path.display(), error = %undo,
                    "could not remove partial write after a failed follower append");
            }
            return Err(Error::io("write", &seg.log_path)(e));
        }
        let mut pos = start;
        let mut record_count = 0u64;
        for b in &batches {
            seg.track_batch(pos, &b.header, &limits);
            pos += b.header.total_len() as u64;
            record_count += b.header.record_count.max(0) as u64;
        }
        seg.size = pos;
        for b in &batches {
            if b.header.partition_leader_epoch >= 0 {
                self.epochs
                    .assign_if_newer(b.header.partition_leader_epoch, b.header.base_offset);
            }
            self.producers.apply_replicated(&b.header, &records[b.range.clone()]);
        }
        let new_leo = last.next_offset();
        let full = self.unflushed_appends.len() >= MAX_APPEND_MARKS;
        match self.unflushed_appends.back_mut() {
            Some(back) if back.1 == now_ms || full => back.0 = new_leo,
            _ => self.unflushed_appends.push_back((new_leo, now_ms)),
        }
        Ok(AppendInfo {
            base_offset: Offset(first.base_offset),
            last_offset: Offset(last.last_offset()),
            log_append_time_ms: None,
            bytes: records.len(),
            record_count,
            max_timestamp,
            offset_of_max_timestamp: Offset(last.last_offset()),
            duplicates: 0,
        })
    }

    /// Appends the batches of a payload that are not duplicates (usually none) and answers
    /// with the original offsets of the duplicates at either end, as Kafka answers a retried
    /// batch with the offsets it got the first time.
    fn append_skipping_duplicates(
        &mut self,
        origin: AppendOrigin,
        records: &[u8],
        validated: &batch::ValidatedBatches,
        outcomes: &[BatchOutcome],
        leader_epoch: LeaderEpoch,
        now_ms: i64,
    ) -> Result<AppendInfo> {
        let mut kept = Vec::new();
        let mut duplicates = 0;
        for (b, outcome) in validated.batches.iter().zip(outcomes) {
            match outcome {
                BatchOutcome::Write { .. } => kept.extend_from_slice(&records[b.range.clone()]),
                BatchOutcome::Duplicate(_) => duplicates += 1,
            }
        }
        let dup = |o: Option<&BatchOutcome>| match o {
            Some(BatchOutcome::Duplicate(d)) => Some(*d),
            _ => None,
        };
        let log_append_time = self.config.timestamp_type == TimestampType::LogAppendTime;
        let mut info = if kept.is_empty() {
            let first = dup(outcomes.first()).expect("a duplicate");
            let last = dup(outcomes.last()).expect("a duplicate");
            AppendInfo {
                base_offset: Offset(first.first_offset),
                last_offset: Offset(last.last_offset),
                log_append_time_ms: log_append_time.then_some(last.timestamp),
                bytes: 0,
                record_count: 0,
                max_timestamp: last.timestamp,
                offset_of_max_timestamp: Offset(last.last_offset),
                duplicates: 0,
            }
        } else {
            // The kept batches check exactly as before: none of them duplicates another.
            self.append_from(origin, &kept, leader_epoch, now_ms)?
        };
        if let Some(first) = dup(outcomes.first()) {
            info.base_offset = Offset(first.first_offset);
        }
        info.duplicates = duplicates;
        debug!(dir = %self.dir.display(), duplicates, base_offset = info.base_offset.0, "skipped duplicate batches");
        Ok(info)
    }

    fn maybe_roll(&mut self, append_len: u64, incoming_max_ts: i64, last_offset: i64, now_ms: i64) -> Result<()> {
        let limits = self.config.limits();
        let seg = self.active();
        if seg.size == 0 {
            return Ok(());
        }
        let by_size = seg.size + append_len > self.config.max_segment_bytes();
        let by_time = self.config.segment_ms.is_some_and(|ms| {
            // Kafka: time between the segment's first batch and the incoming batch, or since
            // creation when there are no timestamps.
            let waited = match seg.first_batch_timestamp {
                Some(first) if first >= 0 && incoming_max_ts >= 0 => incoming_max_ts - first,
                _ => now_ms - seg.created_ms,
            };
            waited > ms as i64
        });
        let by_index = seg.indexes_full(&limits);
        let by_offset = last_offset - seg.base_offset > i64::from(i32::MAX);
        if by_size || by_time || by_index || by_offset {
            debug!(dir = %self.dir.display(), by_size, by_time, by_index, by_offset, "rolling segment");
            self.roll(now_ms)?;
        }
        Ok(())
    }

    /// Closes the active segment for writes and starts a new one at the log end offset.
    fn roll(&mut self, now_ms: i64) -> Result<()> {
        let limits = self.config.limits();
        let leo = self.log_end_offset().0;
        // Producer state as of the new segment's base offset (Kafka snapshots at every roll);
        // fsynced with the next flush ticket.
        let (snapshot, snapshot_path) = self.producers.write_snapshot(leo)?;
        drop(snapshot);
        self.pending_sync.push(pending_path(&snapshot_path));
        let seg = self.active_mut();
        seg.close_for_writes(&limits)?;
        let pending = [
            pending_file(seg.offset_index.file()),
            pending_file(seg.time_index.file()),
        ];
        let new = match Segment::create(&self.files, &self.dir, leo, now_ms) {
            Ok(s) => s,
            Err(e) => {
                self.active_mut().reopen_for_writes()?;
                return Err(e);
            }
        };
        self.pending_sync.extend(pending);
        self.pending_sync.push(pending_dir(&self.dir));
        self.segments.push(new);
        info!(dir = %self.dir.display(), base_offset = leo, "rolled new segment");
        Ok(())
    }

    /// Plans a read of whole batches starting at the batch containing `offset`, stopping before
    /// the first batch that reaches `max_offset` (exclusive, usually the high watermark) and
    /// within `max_bytes`, except that with `min_one_batch` the first batch is returned even if
    /// larger (KIP-74). A plan covers one segment at most.
    pub fn read(&self, offset: Offset, max_offset: Offset, max_bytes: usize, min_one_batch: bool) -> Result<ReadPlan> {
        let leo = self.log_end_offset().0;
        if offset.0 < self.log_start_offset || offset.0 > leo {
            return Err(Error::OffsetOutOfRange {
                offset,
                log_start: Offset(self.log_start_offset),
                log_end: Offset(leo),
            });
        }
        let max_offset = max_offset.0.min(leo);
        if offset.0 >= max_offset {
            return Ok(ReadPlan::empty());
        }
        for i in self.segment_for(offset.0)..self.segments.len() {
            let seg = &self.segments[i];
            let Some((start, first)) = seg.find_batch(offset.0)? else {
                continue;
            };
            if first.last_offset() >= max_offset {
                return Ok(ReadPlan::empty());
            }
            let end_by_offset = if max_offset >= self.upper_bound(i) {
                seg.size
            } else {
                seg.boundary_for_max_offset(start, max_offset)?
            };
            let limit = start.saturating_add(max_bytes as u64);
            let end_by_bytes = seg.boundary_at_or_below(start, limit)?;
            let mut end = end_by_offset.min(end_by_bytes);
            if end <= start {
                if !min_one_batch {
                    return Ok(ReadPlan::empty());
                }
                end = start + first.total_len() as u64;
            }
            return Ok(ReadPlan {
                source: Some((seg.open_log()?, Arc::clone(&seg.log_path))),
                position: start,
                len: (end - start) as usize,
                first_offset: Some(Offset(first.base_offset)),
            });
        }
        Ok(ReadPlan::empty())
    }

    /// ListOffsets by timestamp: offset and timestamp of the first record with timestamp >= `ts`
    /// at or above the log start offset and below the high watermark. Segments are picked by
    /// their largest timestamp, batches by the time index, and the record by decoding the batch
    /// (decompressing if needed). LogAppendTime batches answer with their first record.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(Offset, i64)>> {
        self.first_record_at_or_after(ts, self.high_watermark)
    }

    /// ListOffsets MAX_TIMESTAMP with record precision (Kafka 3.7+, KAFKA-16310): the offset of
    /// the first record carrying the largest timestamp in the log, and that timestamp. Falls back
    /// to [`Log::max_timestamp`]'s batch granularity if the record cannot be located.
    pub fn max_timestamp_record(&self) -> Result<Option<(Offset, i64)>> {
        let Some((batch_last, ts)) = self.max_timestamp() else {
            return Ok(None);
        };
        let exact = self.first_record_at_or_after(ts, self.log_end_offset().0)?;
        Ok(Some(
            exact.filter(|(_, found)| *found == ts).unwrap_or((batch_last, ts)),
        ))
    }

    /// The first record with timestamp >= `ts` and offset below `upper` (exclusive).
    fn first_record_at_or_after(&self, ts: i64, upper: i64) -> Result<Option<(Offset, i64)>> {
        let hw = upper;
        let log_start = self.log_start_offset;
        for seg in &self.segments[self.segment_for(log_start)..] {
            if seg.max_timestamp.is_none_or(|(max, _)| max < ts) {
                continue;
            }
            let mut from = log_start;
            while let Some((pos, h)) = seg.find_by_timestamp(ts, from)? {
                if h.base_offset.max(log_start) >= hw {
                    return Ok(None);
                }
                if h.is_log_append_time() {
                    let offset = h.base_offset.max(log_start);
                    return Ok(Some((Offset(offset), h.max_timestamp)));
                }
                let bytes = seg.read_exact(pos, h.total_len())?;
                let found = records::first_record_at_or_after(
                    &h,
                    &bytes,
                    ts,
                    log_start,
                    self.config.max_decompressed_read_bytes(),
                )
                .map_err(|e| seg.corrupt(pos, h.base_offset, e.to_string()))?;
                if let Some((offset, timestamp)) = found {
                    if offset >= hw {
                        return Ok(None);
                    }
                    return Ok(Some((Offset(offset), timestamp)));
                }
                from = h.last_offset() + 1;
            }
        }
        Ok(None)
    }

    /// ListOffsets MAX_TIMESTAMP: the largest timestamp in the log and the last offset of the
    /// first batch that carries it. Batch granularity: the offset is the batch's last offset, not
    /// the exact record's. `None` if the log has no batches.
    pub fn max_timestamp(&self) -> Option<(Offset, i64)> {
        let mut best: Option<(i64, i64)> = None;
        for seg in &self.segments {
            if let Some((ts, off)) = seg.max_timestamp
                && best.is_none_or(|(b, _)| ts > b)
            {
                best = Some((ts, off));
            }
        }
        best.map(|(ts, off)| (Offset(off), ts))
    }

    /// DeleteRecords: advances the log start offset to `offset` (which must not exceed the high
    /// watermark), persists it, and deletes segments entirely below it (rolling the active
    /// segment first if everything in it is below). Returns the new log start offset.
    pub fn delete_records_before(&mut self, offset: Offset) -> Result<Offset> {
        if offset.0 > self.high_watermark {
            return Err(Error::OffsetOutOfRange {
                offset,
                log_start: Offset(self.log_start_offset),
                log_end: Offset(self.high_watermark),
            });
        }
        if offset.0 <= self.log_start_offset {
            return Ok(Offset(self.log_start_offset));
        }
        self.advance_log_start(offset.0)?;
        if self.active().size > 0 && self.log_end_offset().0 <= offset.0 {
            self.roll(now_ms())?;
        }
        let mut k = 0;
        while k + 1 < self.segments.len() && self.segments[k + 1].base_offset <= offset.0 {
            k += 1;
        }
        self.delete_oldest(k)?;
        info!(dir = %self.dir.display(), log_start_offset = self.log_start_offset, "deleted records");
        Ok(Offset(self.log_start_offset))
    }

    fn advance_log_start(&mut self, new_start: i64) -> Result<()> {
        if new_start <= self.log_start_offset {
            return Ok(());
        }
        self.log_start_offset = new_start;
        self.high_watermark = self.high_watermark.max(new_start);
        self.epochs.truncate_from_start(new_start);
        self.producers.on_log_start_advanced(new_start)?;
        checkpoint::write_offset(&self.dir, LOG_START_OFFSET_FILE, new_start)?;
        self.written.log_start = Some(new_start);
        Ok(())
    }

    /// Removes the `k` oldest segments (never the active one) and deletes their files.
    fn delete_oldest(&mut self, k: usize) -> Result<(usize, u64)> {
        let k = k.min(self.segments.len() - 1);
        if k == 0 {
            return Ok((0, 0));
        }
        let doomed: Vec<Segment> = self.segments.drain(..k).collect();
        let bytes = doomed.iter().map(|s| s.size).sum();
        for seg in &doomed {
            debug!(dir = %self.dir.display(), base_offset = seg.base_offset, "deleting segment");
            seg.delete_files()?;
        }
        Ok((k, bytes))
    }

    /// Retention: rolls the active segment if it is non-empty and segment.ms has elapsed since
    /// its first batch (so idle partitions age out), then deletes closed segments wholly below
    /// the high watermark, oldest first, while they are older than retention.ms, or the log is
    /// above retention.bytes, or they lie below the log start offset. Advances and persists the
    /// log start offset.
    pub fn apply_retention(&mut self, now_ms: i64) -> Result<RetentionOutcome> {
        let (retention_ms, retention_bytes) = (self.config.retention_ms, self.config.retention_bytes);
        let below = self.high_watermark;
        self.retain(now_ms, retention_ms, retention_bytes, below)
    }

    /// Retention with explicit limits: rolls by segment.ms, then deletes the oldest closed
    /// segments wholly below `below` that are expired by `retention_ms`, over `retention_bytes`
    /// or below the log start offset (time and size only with `cleanup.policy` delete).
    fn retain(
        &mut self,
        now_ms: i64,
        retention_ms: Option<i64>,
        retention_bytes: Option<u64>,
        below: i64,
    ) -> Result<RetentionOutcome> {
        let expired = self
            .producers
            .remove_expired(now_ms, self.config.producer_id_expiration_ms);
        if expired > 0 {
            debug!(dir = %self.dir.display(), expired, "expired idle producer ids");
        }
        let mut rolled = false;
        if let Some(ms) = self.config.segment_ms {
            let seg = self.active();
            let since = match seg.first_batch_timestamp {
                Some(first) if first >= 0 => first,
                _ => seg.created_ms,
            };
            if seg.size > 0 && now_ms - since > ms as i64 {
                self.roll(now_ms)?;
                rolled = true;
            }
        }
        let mut excess = retention_bytes.map(|limit| i128::from(self.size_bytes()) - i128::from(limit));
        let mut k = 0;
        while k + 1 < self.segments.len() {
            let seg = &self.segments[k];
            let upper = self.segments[k + 1].base_offset;
            if upper > below {
                break;
            }
            let by_start = upper <= self.log_start_offset;
            let delete = self.config.cleanup_policy.delete;
            let by_time = delete && retention_ms.is_some_and(|r| now_ms - seg.largest_timestamp_for_retention() > r);
            let by_size = delete && excess.is_some_and(|d| d - i128::from(seg.size) >= 0);
            if !(by_start || by_time || by_size) {
                break;
            }
            if let Some(d) = excess.as_mut() {
                *d -= i128::from(seg.size);
            }
            k += 1;
        }
        let new_start = self.segments[k].base_offset;
        let (segments_deleted, bytes_deleted) = self.delete_oldest(k)?;
        self.advance_log_start(new_start)?;
        if segments_deleted > 0 {
            info!(dir = %self.dir.display(), segments_deleted, bytes_deleted,
                log_start_offset = self.log_start_offset, "retention deleted segments");
        }
        Ok(RetentionOutcome {
            segments_deleted,
            bytes_deleted,
            log_start_offset: Offset(self.log_start_offset),
            rolled,
        })
    }

    /// Group commit: `None` if nothing is unflushed, else a ticket holding every segment with
    /// data at or above the recovery point (and files/dirs created since the last flush).
    pub fn flush_ticket(&self) -> Option<FlushTicket> {
        let leo = self.log_end_offset().0;
        let pending: Vec<Arc<PendingSync>> = self
            .pending_sync
            .iter()
            .filter(|p| !p.done.load(Ordering::Acquire))
            .cloned()
            .collect();
        if leo <= self.recovery_point && pending.is_empty() {
            return None;
        }
        let files = self
            .segments
            .iter()
            .enumerate()
            .filter(|&(i, s)| s.size > 0 && self.upper_bound(i) > self.recovery_point)
            .map(|(_, s)| s.log.clone())
            .collect();
        Some(FlushTicket {
            files,
            pending,
            up_to: Offset(leo),
            generation: self.truncation_generation,
            mark: Arc::clone(&self.synced),
        })
    }

    /// Advances the recovery point to `up_to` after a ticket's `sync()` succeeded. Monotonic;
    /// never beyond what a synced ticket of the current log generation covered (a ticket taken
    /// before a `truncate_to` does not count).
    pub fn mark_flushed(&mut self, up_to: Offset) {
        let synced = self.synced.lock().up_to;
        let target = up_to.0.min(synced).min(self.log_end_offset().0);
        if target > self.recovery_point {
            self.recovery_point = target;
        }
        self.pending_sync.retain(|p| !p.done.load(Ordering::Acquire));
        while self
            .unflushed_appends
            .front()
            .is_some_and(|&(end, _)| end <= self.recovery_point)
        {
            self.unflushed_appends.pop_front();
        }
    }

    /// Takes a ticket, syncs it and marks it flushed, all under `&mut self`.
    pub fn flush(&mut self) -> Result<()> {
        if let Some(ticket) = self.flush_ticket() {
            ticket.sync()?;
            self.mark_flushed(ticket.up_to());
        }
        Ok(())
    }

    /// Messages appended since the recovery point (for flush.messages).
    pub fn unflushed_messages(&self) -> u64 {
        (self.log_end_offset().0 - self.recovery_point).max(0) as u64
    }

    /// Append time of the oldest append not yet covered by the recovery point (for flush.ms).
    pub fn oldest_unflushed_append_ms(&self) -> Option<i64> {
        self.unflushed_appends.front().map(|&(_, ms)| ms)
    }

    /// Writes the active segment's pending index entries and the checkpoints that changed:
    /// leader epochs (first, so every epoch below the recorded recovery point is on disk), log
    /// start offset, recovery point, high watermark.
    pub fn checkpoint(&mut self) -> Result<()> {
        self.active_mut().flush_indexes()?;
        if self.epochs.is_dirty() {
            self.epochs.write(&self.dir)?;
        }
        let dir = self.dir.clone();
        let write = |name: &str, value: i64, last: &mut Option<i64>| -> Result<()> {
            if *last != Some(value) {
                checkpoint::write_offset(&dir, name, value)?;
                *last = Some(value);
            }
            Ok(())
        };
        write(
            LOG_START_OFFSET_FILE,
            self.log_start_offset,
            &mut self.written.log_start,
        )?;
        write(
            RECOVERY_POINT_FILE,
            self.recovery_point,
            &mut self.written.recovery_point,
        )?;
        write(
            HIGH_WATERMARK_FILE,
            self.high_watermark,
            &mut self.written.high_watermark,
        )
    }

    /// fsyncs everything and writes all checkpoints (recovery point = log end offset). Index
    /// files are never preallocated, so there is nothing to trim.
    pub fn close(mut self) -> Result<()> {
        self.active_mut().flush_indexes()?;
        let active = self.active();
        active
            .offset_index
            .open_file()?
            .sync_data()
            .map_err(Error::io("fsync", active.offset_index.path()))?;
        active
            .time_index
            .open_file()?
            .sync_data()
            .map_err(Error::io("fsync", active.time_index.path()))?;
        self.flush()?;
        self.snapshot_producer_state()?;
        self.recovery_point = self.log_end_offset().0;
        self.checkpoint()?;
        checkpoint::sync_dir(&self.dir)?;
        info!(dir = %self.dir.display(), log_end_offset = self.recovery_point, "closed log");
        Ok(())
    }

    /// Drops every record at or above `offset`: the segment holding it is cut at the start of
    /// the batch containing `offset` (so a mid-batch offset truncates to that batch's base),
    /// later segments are deleted, indexes and the epoch cache fixed, and the high watermark,
    /// recovery point and log start offset clamped. Checkpoints are written before returning.
    pub fn truncate_to(&mut self, offset: Offset) -> Result<()> {
        let leo = self.log_end_offset().0;
        if offset.0 >= leo {
            // Nothing to cut from the segments, but an epoch that starts at the log end (a
            // leader that began an epoch and appended nothing in it) must go too: a follower
            // that keeps it fetches with it as its last epoch and is told to diverge forever.
            if offset.0 == leo {
                self.epochs.truncate_from_end(leo);
                if self.epochs.is_dirty() {
                    self.epochs.write(&self.dir)?;
                }
            }
            return Ok(());
        }
        self.truncation_generation += 1;
        if offset.0 < self.segments[0].base_offset {
            self.truncate_fully_and_start_at(offset.0.max(0))?;
        } else {
            let i = self.segment_for(offset.0);
            let later: Vec<Segment> = self.segments.drain(i + 1..).collect();
            for seg in &later {
                seg.delete_files()?;
            }
            let limits = self.config.limits();
            let seg = &mut self.segments[i];
            let position = match seg.find_batch(offset.0)? {
                Some((pos, _)) => pos,
                None => seg.size,
            };
            seg.truncate_to_position(position, &limits)?;
            let new_leo = self.log_end_offset().0;
            self.log_start_offset = self.log_start_offset.min(new_leo);
            self.recovery_point = self.recovery_point.min(new_leo);
            self.high_watermark = self.high_watermark.min(new_leo);
            self.epochs.truncate_from_end(new_leo);
        }
        let new_leo = self.log_end_offset().0;
        for entry in &mut self.unflushed_appends {
            entry.0 = entry.0.min(new_leo);
        }
        let rp = self.recovery_point;
        self.unflushed_appends.retain(|&(end, _)| end > rp);
        let expiration = self.config.producer_id_expiration_ms;
        self.producers
            .load(&self.segments, self.log_start_offset, new_leo, now_ms(), expiration)?;
        {
            let mut mark = self.synced.lock();
            mark.generation = self.truncation_generation;
            mark.up_to = mark.up_to.min(new_leo);
        }
        if self.epochs.is_dirty() {
            self.epochs.write(&self.dir)?;
        }
        self.checkpoint()?;
        info!(dir = %self.dir.display(), offset = offset.0, log_end_offset = new_leo, "truncated log");
        Ok(())
    }

    /// Deletes every segment and starts an empty log at `offset`.
    pub fn truncate_fully_and_start_at(&mut self, offset: i64) -> Result<()> {
        let old: Vec<Segment> = self.segments.drain(..).collect();
        // On failure the old segments stay in memory so the log keeps an active segment.
        let created = old
            .iter()
            .try_for_each(Segment::delete_files)
            .and_then(|()| Segment::create(&self.files, &self.dir, offset, now_ms()));
        match created {
            Ok(seg) => self.segments.push(seg),
            Err(e) => {
                self.segments = old;
                return Err(e);
            }
        }
        self.pending_sync.push(pending_dir(&self.dir));
        self.producers.truncate_fully_and_start_at(offset)?;
        self.log_start_offset = offset;
        self.recovery_point = offset;
        self.high_watermark = offset;
        self.epochs.clear();
        Ok(())
    }

    /// Writes and fsyncs a producer-state snapshot at the log end offset, so the next open
    /// loads it instead of replaying batches (clean shutdown; [`Log::close`] does it too).
    pub fn snapshot_producer_state(&mut self) -> Result<()> {
        let leo = self.log_end_offset().0;
        let (file, path) = self.producers.write_snapshot(leo)?;
        file.sync_data().map_err(Error::io("fsync", &path))?;
        checkpoint::sync_dir(&self.dir)
    }

    /// The producer-state snapshot file at `offset`, if one exists: a closed segment's snapshot
    /// sits at its end offset (the next segment's base offset) and holds the state of every
    /// batch below it (for tiered storage, which uploads it with the segment).
    pub fn producer_snapshot_file(&self, offset: Offset) -> Option<PathBuf> {
        self.producers.snapshot_file(offset.0).map(Path::to_path_buf)
    }

    /// Offsets of the producer-state snapshots on disk, ascending.
    pub fn producer_snapshot_offsets(&self) -> Vec<Offset> {
        self.producers.snapshot_offsets().into_iter().map(Offset).collect()
    }

    /// What the partition knows about an idempotent producer.
    pub fn producer_state(&self, producer_id: ProducerId) -> Option<&ProducerStateEntry> {
        self.producers.producers().get(&producer_id.0)
    }

    /// Every idempotent producer tracked, by producer id (DescribeProducers).
    pub fn producers(&self) -> impl Iterator<Item = (ProducerId, &ProducerStateEntry)> {
        self.producers
            .producers()
            .iter()
            .map(|(id, entry)| (ProducerId(*id), entry))
    }

    /// Number of idempotent producers tracked.
    /// First offset of the oldest open transaction, if any.
    pub fn first_unstable_offset(&self) -> Option<Offset> {
        self.producers.first_unstable_offset().map(Offset)
    }

    /// The last stable offset: the high watermark, or the first offset of the oldest open
    /// transaction if lower (read_committed consumers read up to it).
    pub fn last_stable_offset(&self) -> Offset {
        let hw = self.high_watermark();
        match self.producers.first_unstable_offset() {
            Some(o) if o < hw.0 => Offset(o),
            _ => hw,
        }
    }

    /// Aborted transactions overlapping `[from, upto)` (for read_committed fetches).
    pub fn aborted_transactions(&self, from: Offset, upto: Offset) -> Vec<AbortedTxn> {
        self.producers.aborted_between(from.0, upto.0)
    }

    pub fn producer_count(&self) -> usize {
        self.producers.producers().len()
    }

    /// Latest leader epoch in the epoch cache.
    pub fn latest_epoch(&self) -> Option<LeaderEpoch> {
        self.epochs.latest_epoch()
    }

    /// OffsetForLeaderEpoch: for the latest epoch, (epoch, log end offset); for an older epoch,
    /// (largest known epoch <= requested, start offset of the next larger epoch). `None` if the
    /// epoch is unknown and newer than every known epoch (Kafka's UNDEFINED answer).
    pub fn end_offset_for_epoch(&self, epoch: LeaderEpoch) -> Option<(LeaderEpoch, Offset)> {
        self.epochs.end_offset_for(epoch.0, self.log_end_offset().0)
    }
}

fn pending_file(handle: &FileHandle) -> Arc<PendingSync> {
    Arc::new(PendingSync {
        path: handle.path().to_path_buf(),
        target: SyncTarget::Handle(handle.clone()),
        done: AtomicBool::new(false),
    })
}

fn pending_path(path: &Path) -> Arc<PendingSync> {
    Arc::new(PendingSync {
        target: SyncTarget::Path,
        path: path.to_path_buf(),
        done: AtomicBool::new(false),
    })
}

fn pending_dir(dir: &Path) -> Arc<PendingSync> {
    Arc::new(PendingSync {
        target: SyncTarget::Dir,
        path: dir.to_path_buf(),
        done: AtomicBool::new(false),
    })
}

mod remote;

pub use remote::{ClosedSegment, first_record_at_or_after};

#[cfg(test)]
mod tests;
