//! Log compaction (Kafka's log cleaner) for logs with `cleanup.policy=compact`: rewrites closed
//! segments keeping the latest record per key. A child module of `log` (declared there), so it
//! works on `Log`'s fields directly; `log.rs` only calls two hooks: swap recovery on open and
//! `CleanupPolicy` in retention (keyless records are refused on append by
//! `records::validate_records`). Records are decompressed through `records` (capped at
//! `LogConfig::max_decompressed_read_bytes`): a batch over the cap fails the pass as corrupt.
//!
//! One pass over a log (`clean_log`):
//! 1. Under the log lock, plan: the cleanable range is every closed segment below the active
//!    segment, the high watermark and `min.compaction.lag.ms`; segments from
//!    the first dirty offset (persisted in `cleaner-offset-checkpoint`) on are dirty. The pass runs
//!    if dirty bytes / cleanable bytes >= `min.cleanable.dirty.ratio`, or the first dirty batch is
//!    older than `max.compaction.lag.ms`, or retained tombstones have expired.
//! 2. Without the lock: build the key -> latest offset map from the dirty segments (bounded by the
//!    dedupe buffer size; the range ends early when it is full) and the last batch of every
//!    producer id.
//! 3. For each group of consecutive segments (together at most `segment.bytes`): write the
//!    retained batches to `<base>.log.cleaned` with rebuilt `.index.cleaned`/`.timeindex.cleaned`,
//!    fsync, then swap under the lock: rename `.cleaned` -> `.swap`, fsync the directory, rename
//!    the originals away (`.deleted`), rename `.swap` -> final names (log last), fsync.
//!    [`recover_interrupted_swaps`] (run first on open) completes a swap whose `.log.swap` exists
//!    and deletes `.cleaned` leftovers, so a crash at any point leaves either the originals or
//!    the cleaned segment.
//!
//! Batch rules: a record is kept if it is the latest for its key (or its key is not in the map:
//! no newer record in the dirty range); tombstones (null value) are dropped once the segment that
//! holds them was last modified more than `delete.retention.ms` ago; keyless records are dropped.
//! A batch whose records all survive is copied verbatim; otherwise the retained records are
//! re-encoded with the batch's own codec under the original header (base offset, last offset
//! delta, producer id/epoch/base sequence, timestamps, leader epoch), so offsets keep their gaps.
//! A batch left empty is kept as an empty batch if it is the last batch of its producer id (the
//! idempotent producer state needs it, as in Kafka). Control and transactional batches are copied
//! verbatim, and their records never enter the key map (the cleaner does not know which
//! transactions were aborted, so a transactional record must not make it drop an earlier value;
//! removing aborted data and markers as Kafka does is not implemented).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, UNIX_EPOCH};

use bytes::BytesMut;
use parking_lot::Mutex;
use tracing::{debug, info, warn};

use super::Log;
use crate::batch::{ATTRIBUTES_POS, BATCH_HEADER_LEN, BatchHeader, CRC_POS, LOG_OVERHEAD};
use crate::checkpoint;
use crate::error::{Error, Result};
use crate::files::{FileCache, FileHandle};
use crate::records::{RecordIter, decompress_bounded};
use crate::segment::{self, INDEX_SUFFIX, LOG_SUFFIX, Segment, TIME_INDEX_SUFFIX};
use crate::types::Offset;

/// Suffix of a cleaned segment's files while they are being written.
pub(crate) const CLEANED_SUFFIX: &str = ".cleaned";
/// Suffix of a cleaned segment's files once they are complete and durable.
pub(crate) const SWAP_SUFFIX: &str = ".swap";
/// Per-partition cleaner state: first dirty offset and the tombstone deadline.
const CHECKPOINT_FILE: &str = "cleaner-offset-checkpoint";
/// Bytes read per `pread` when reading batches.
const READ_CHUNK: usize = 1 << 20;
/// Bytes read per `pread` when only batch headers are needed.
const HEADER_CHUNK: usize = 64 << 10;
/// Output buffered before each write.
const WRITE_CHUNK: usize = 1 << 20;
/// Estimated memory of one offset map entry besides the key bytes.
const MAP_ENTRY_OVERHEAD: usize = 48;
const COMPRESSION_MASK: i16 = 0x07;

/// Which of Kafka's cleanup policies apply (`cleanup.policy`, a list of `delete` and `compact`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CleanupPolicy {
    /// Time and size retention delete old segments.
    pub delete: bool,
    /// The log cleaner keeps the latest record per key.
    pub compact: bool,
}

impl Default for CleanupPolicy {
    fn default() -> Self {
        CleanupPolicy {
            delete: true,
            compact: false,
        }
    }
}

impl CleanupPolicy {
    /// Parses Kafka's comma-separated list (`compact,delete`); unknown words are ignored.
    pub fn parse(value: &str) -> CleanupPolicy {
        let words: Vec<&str> = value.split(',').map(str::trim).collect();
        CleanupPolicy {
            delete: words.contains(&"delete"),
            compact: words.contains(&"compact"),
        }
    }
}

/// Topic-level compaction settings; `Default` gives Kafka's defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CompactionConfig {
    /// Tombstones are dropped once their segment was last modified this long ago (`delete.retention.ms`).
    pub delete_retention_ms: i64,
    /// Clean when dirty bytes / cleanable bytes reach this (`min.cleanable.dirty.ratio`).
    pub min_cleanable_dirty_ratio: f64,
    /// Records newer than this stay uncompacted (`min.compaction.lag.ms`).
    pub min_compaction_lag_ms: i64,
    /// Clean regardless of the ratio once the oldest dirty batch is this old (`max.compaction.lag.ms`).
    pub max_compaction_lag_ms: i64,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        CompactionConfig {
            delete_retention_ms: 86_400_000,
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
        }
    }
}

/// Broker-level cleaner settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CleanerConfig {
    /// Memory for the key -> offset map of one pass (Kafka `log.cleaner.dedupe.buffer.size`); a
    /// pass ends early (at a segment boundary) when it is full.
    pub dedupe_buffer_bytes: usize,
}

impl Default for CleanerConfig {
    fn default() -> Self {
        CleanerConfig {
            dedupe_buffer_bytes: 128 << 20,
        }
    }
}

/// Caps the cleaner's I/O (bytes read plus written) at a byte rate, so compaction cannot take
/// the disk from produce and fetch. Also carries the stop flag checked while throttling.
#[derive(Debug)]
pub struct Throttler {
    rate: Mutex<Option<u64>>,
    window: Mutex<(Instant, u64)>,
    stop: Arc<AtomicBool>,
}

impl Throttler {
    /// `bytes_per_second: None` = unlimited.
    pub fn new(bytes_per_second: Option<u64>, stop: Arc<AtomicBool>) -> Throttler {
        Throttler {
            rate: Mutex::new(bytes_per_second.filter(|r| *r > 0)),
            window: Mutex::new((Instant::now(), 0)),
            stop,
        }
    }

    /// True once the owner asked the cleaner to stop.
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Accounts `bytes` of I/O and sleeps as long as the rate requires. Fails with
    /// `CleaningAborted` if the stop flag is set.
    pub fn acquire(&self, bytes: u64) -> Result<()> {
        if self.stopped() {
            return Err(aborted("cleaner stopping"));
        }
        let Some(rate) = *self.rate.lock() else {
            return Ok(());
        };
        let wait = {
            let mut w = self.window.lock();
            let elapsed = w.0.elapsed();
            if elapsed > Duration::from_secs(1) && w.1 as f64 / elapsed.as_secs_f64() <= rate as f64 {
                *w = (Instant::now(), 0);
            }
            w.1 += bytes;
            let due = Duration::from_secs_f64(w.1 as f64 / rate as f64);
            due.saturating_sub(w.0.elapsed())
        };
        let deadline = Instant::now() + wait;
        while let Some(left) = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero()) {
            if self.stopped() {
                return Err(aborted("cleaner stopping"));
            }
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
        Ok(())
    }
}

fn aborted(reason: &str) -> Error {
    Error::CleaningAborted(reason.to_string())
}

/// What one cleaning pass did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CleanStats {
    /// Dirty ratio of the log when the pass was planned.
    pub dirty_ratio: f64,
    /// Segments read and replaced.
    pub segments_cleaned: usize,
    /// Segments written in their place.
    pub segments_written: usize,
    /// Segment bytes read (offset map pass plus cleaning pass).
    pub bytes_read: u64,
    /// Size of the replaced segments.
    pub bytes_before: u64,
    /// Size of the segments written.
    pub bytes_after: u64,
    /// Records dropped (superseded, expired tombstones, keyless).
    pub records_removed: u64,
    /// Of those, tombstones.
    pub tombstones_removed: u64,
    /// The first dirty offset after the pass.
    pub first_dirty_offset: Offset,
}

/// The cleaner's per-log state (persisted in `cleaner-offset-checkpoint`, loaded lazily).
#[derive(Debug, Default)]
pub(crate) struct CleanerState {
    loaded: bool,
    /// Offsets below this were cleaned by an earlier pass.
    first_dirty: i64,
    /// Earliest time at which a retained tombstone expires.
    tombstone_deadline_ms: Option<i64>,
}

impl CleanerState {
    fn load(&mut self, dir: &Path) -> Result<()> {
        if self.loaded {
            return Ok(());
        }
        let path = dir.join(CHECKPOINT_FILE);
        let text = match checkpoint::read_optional(&path) {
            Ok(text) => text,
            Err(Error::CorruptCheckpoint { .. }) => Some(String::new()),
            Err(e) => return Err(e),
        };
        if let Some(text) = text {
            let mut lines = text.lines().map(str::trim);
            let parsed = (lines.next() == Some("0"))
                .then(|| {
                    let mut num = || lines.next().and_then(|l| l.parse::<i64>().ok());
                    Some((num()?, num()?))
                })
                .flatten();
            match parsed {
                Some((first_dirty, deadline)) => {
                    self.first_dirty = first_dirty;
                    self.tombstone_deadline_ms = Some(deadline).filter(|d| *d >= 0);
                }
                // Losing the state only costs work: the next pass treats the whole log as dirty.
                None => warn!(path = %path.display(), "ignoring corrupt cleaner checkpoint"),
            }
        }
        self.loaded = true;
        Ok(())
    }

    fn store(&self, dir: &Path) -> Result<()> {
        let deadline = self.tombstone_deadline_ms.unwrap_or(-1);
        checkpoint::write_atomic(
            dir,
            CHECKPOINT_FILE,
            format!("0\n{}\n{deadline}\n", self.first_dirty).as_bytes(),
        )
    }
}

/// One segment of a planned pass, captured under the lock so the pass can read it without it.
#[derive(Debug, Clone)]
struct Source {
    base: i64,
    /// Exclusive upper offset bound (the next segment's base offset).
    upper: i64,
    size: u64,
    /// The segment file, opened on use through the file cache.
    file: FileHandle,
    path: Arc<Path>,
    mtime_ms: i64,
    index_entries: usize,
}

#[derive(Debug)]
struct Plan {
    dir: PathBuf,
    files: Arc<FileCache>,
    limits: segment::IndexLimits,
    max_segment_bytes: u64,
    compaction: CompactionConfig,
    /// Cap on the bytes one batch's records may decompress to.
    decompress_limit: usize,
    sources: Vec<Source>,
    /// Sources from this index on are dirty.
    dirty_from: usize,
    dirty_ratio: f64,
}

fn mtime_ms(path: &Path) -> Result<i64> {
    // By path: no descriptor needed for a segment that may not be open.
    let meta = fs::metadata(path).map_err(Error::io("stat segment", path))?;
    Ok(meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as i64))
}

impl Log {
    /// The dirty ratio if this log should be cleaned now (compaction enabled, a cleanable range,
    /// and the ratio, `max.compaction.lag.ms` or an expired tombstone says so); `None` otherwise.
    /// The broker cleans the log with the highest ratio first.
    pub fn cleanable_ratio(&mut self, now_ms: i64) -> Result<Option<f64>> {
        Ok(self.plan_cleaning(now_ms, false)?.map(|p| p.dirty_ratio))
    }

    /// The pass to run now, if any; `with_sources: false` skips capturing the segments (and
    /// their `stat` calls) when only the ratio is wanted.
    fn plan_cleaning(&mut self, now_ms: i64, with_sources: bool) -> Result<Option<Plan>> {
        if !self.config.cleanup_policy.compact || self.segments.len() < 2 {
            return Ok(None);
        }
        self.cleaner.load(&self.dir)?;
        let compaction = self.config.compaction;
        // Only committed data (below the high watermark) in closed segments. Data above the
        // recovery point is fine: the cleaned copy is fsynced before it replaces the original.
        let limit = self.active().base_offset.min(self.high_watermark);
        let mut k = 0;
        while k + 1 < self.segments.len() && self.upper_bound(k) <= limit {
            let seg = &self.segments[k];
            if compaction.min_compaction_lag_ms > 0
                && seg.largest_timestamp_for_retention() > now_ms.saturating_sub(compaction.min_compaction_lag_ms)
            {
                break;
            }
            k += 1;
        }
        if k == 0 {
            return Ok(None);
        }
        let first_dirty = self.cleaner.first_dirty.max(self.segments[0].base_offset);
        let dirty_from = (0..k).find(|&i| self.upper_bound(i) > first_dirty).unwrap_or(k);
        let clean_bytes: u64 = self.segments[..dirty_from].iter().map(|s| s.size).sum();
        let dirty_bytes: u64 = self.segments[dirty_from..k].iter().map(|s| s.size).sum();
        let total = clean_bytes + dirty_bytes;
        let dirty_ratio = if total == 0 {
            0.0
        } else {
            dirty_bytes as f64 / total as f64
        };
        let overdue = dirty_from < k
            && compaction.max_compaction_lag_ms < i64::MAX
            && self
                .first_batch_timestamp(dirty_from)?
                .is_some_and(|ts| ts >= 0 && now_ms.saturating_sub(ts) > compaction.max_compaction_lag_ms);
        let tombstones_due = self.cleaner.tombstone_deadline_ms.is_some_and(|d| d <= now_ms);
        let by_ratio = dirty_bytes > 0 && dirty_ratio >= compaction.min_cleanable_dirty_ratio;
        if !(by_ratio || overdue || tombstones_due) {
            return Ok(None);
        }
        let mut sources = Vec::with_capacity(k);
        let captured = if with_sources { k } else { 0 };
        for i in 0..captured {
            let seg = &self.segments[i];
            sources.push(Source {
                base: seg.base_offset,
                upper: self.upper_bound(i),
                size: seg.size,
                file: seg.log.clone(),
                path: Arc::clone(&seg.log_path),
                mtime_ms: mtime_ms(&seg.log_path)?,
                index_entries: seg.offset_index.len(),
            });
        }
        Ok(Some(Plan {
            dir: self.dir.clone(),
            files: Arc::clone(&self.files),
            limits: self.config.limits(),
            max_segment_bytes: self.config.max_segment_bytes(),
            compaction,
            decompress_limit: self.config.max_decompressed_read_bytes(),
            sources,
            dirty_from,
            dirty_ratio,
        }))
    }

    fn first_batch_timestamp(&self, i: usize) -> Result<Option<i64>> {
        let seg = &self.segments[i];
        if let Some(ts) = seg.first_batch_timestamp {
            return Ok(Some(ts));
        }
        if seg.size < BATCH_HEADER_LEN as u64 {
            return Ok(None);
        }
        let bytes = seg.read_exact(0, BATCH_HEADER_LEN)?;
        Ok(BatchHeader::parse(&bytes).ok().map(|h| h.max_timestamp))
    }

    /// Replaces the segments `group` (still exactly as planned, else `CleaningAborted`) by the
    /// complete, fsynced `<base>.*.cleaned` files. Called with the log lock held.
    fn swap_in_cleaned(&mut self, group: &[Source]) -> Result<()> {
        let base = group[0].base;
        let i = self
            .segments
            .iter()
            .position(|s| s.base_offset == base)
            .ok_or_else(|| aborted("segment removed during cleaning"))?;
        if i + group.len() >= self.segments.len() {
            return Err(aborted("log truncated during cleaning"));
        }
        for (seg, src) in self.segments[i..i + group.len()].iter().zip(group) {
            if seg.base_offset != src.base || seg.size != src.size || !seg.log.same(&src.file) {
                return Err(aborted("segment changed during cleaning"));
            }
        }
        let upper = self.upper_bound(i + group.len() - 1);
        let dir = self.dir.clone();
        let names = [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX].map(|s| segment::file_name(base, s));
        let path = |name: &str, suffix: &str| dir.join(format!("{name}{suffix}"));
        let rename = |from: PathBuf, to: PathBuf| fs::rename(&from, &to).map_err(Error::io("rename", &from));
        // Indexes first, the log last: a `.log.swap` means the whole segment is in place.
        for name in [&names[1], &names[2], &names[0]] {
            rename(path(name, CLEANED_SUFFIX), path(name, SWAP_SUFFIX))?;
            crash_point(SwapStep::RenamedToSwap)?;
        }
        checkpoint::sync_dir(&dir)?;
        crash_point(SwapStep::SwapDurable)?;
        for seg in &self.segments[i..i + group.len()] {
            seg.delete_files()?;
            crash_point(SwapStep::OriginalDeleted)?;
        }
        for name in [&names[1], &names[2], &names[0]] {
            rename(path(name, SWAP_SUFFIX), path(name, ""))?;
            crash_point(SwapStep::RenamedToFinal)?;
        }
        checkpoint::sync_dir(&dir)?;
        let (mut cleaned, _) = Segment::open(&self.files, &dir, base, false)?;
        cleaned.next_offset = upper;
        self.segments.splice(i..i + group.len(), std::iter::once(cleaned));
        Ok(())
    }
}

/// Steps of the swap where the crash tests stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SwapStep {
    RenamedToSwap,
    SwapDurable,
    OriginalDeleted,
    RenamedToFinal,
}

#[cfg(test)]
thread_local! {
    /// (step, occurrences to let pass) at which `crash_point` fails, simulating a crash.
    static CRASH_AT: std::cell::Cell<Option<(SwapStep, u32)>> = const { std::cell::Cell::new(None) };
}

#[cfg(test)]
fn crash_point(step: SwapStep) -> Result<()> {
    CRASH_AT.with(|c| match c.get() {
        Some((s, 0)) if s == step => {
            c.set(None);
            Err(aborted("simulated crash"))
        }
        Some((s, n)) if s == step => {
            c.set(Some((s, n - 1)));
            Ok(())
        }
        _ => Ok(()),
    })
}

#[cfg(not(test))]
fn crash_point(_step: SwapStep) -> Result<()> {
    Ok(())
}

/// Runs one cleaning pass over `log` if it is cleanable now. Reads and writes segment files
/// without the lock, taking it only to plan, to swap each cleaned group in, and to record the
/// new first dirty offset. `Ok(None)` = nothing to do.
pub fn clean_log(
    log: &Mutex<Log>,
    now_ms: i64,
    config: &CleanerConfig,
    throttler: &Throttler,
) -> Result<Option<CleanStats>> {
    let Some(plan) = log.lock().plan_cleaning(now_ms, true)? else {
        return Ok(None);
    };
    let started = Instant::now();
    let mut stats = CleanStats {
        dirty_ratio: plan.dirty_ratio,
        ..CleanStats::default()
    };
    // Pass 1: latest offset per key over the dirty segments, last batch per producer id.
    let mut map = OffsetMap::default();
    let mut last_batch: HashMap<i64, i64> = HashMap::new();
    let mut end = plan.sources.len();
    for (i, src) in plan.sources.iter().enumerate() {
        let dirty = i >= plan.dirty_from;
        let mut reader = BatchReader::new(src, if dirty { READ_CHUNK } else { HEADER_CHUNK });
        while let Some(h) = reader.next_batch(throttler, !dirty)? {
            if h.producer_id >= 0 {
                last_batch.insert(h.producer_id, h.base_offset);
            }
            // Records of transactions never supersede earlier values: an aborted one must not
            // (the cleaner does not know outcomes), and keeping older values is always safe.
            if dirty && !h.is_control() && !h.is_transactional() {
                let records =
                    decoded_records(&h, reader.batch(), plan.decompress_limit).map_err(|e| src.corrupt(&h, e))?;
                for r in parse_records(&records).map_err(|e| src.corrupt(&h, e))? {
                    if let Some(key) = r.key {
                        map.insert(&records[key.0..key.1], h.base_offset + r.offset_delta);
                    }
                }
            }
        }
        stats.bytes_read += reader.bytes_read;
        if dirty && map.bytes > config.dedupe_buffer_bytes && i + 1 < plan.sources.len() {
            debug!(dir = %plan.dir.display(), entries = map.map.len(), "offset map full, shortening the pass");
            end = i + 1;
            break;
        }
    }
    // Pass 2: rewrite groups of segments.
    let sources = &plan.sources[..end];
    let mut deadline: Option<i64> = None;
    let mut start = 0;
    while start < sources.len() {
        let group = group_end(sources, start, &plan);
        let remove_cleaned = || {
            for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
                let name = segment::file_name(sources[start].base, suffix) + CLEANED_SUFFIX;
                let _ = fs::remove_file(plan.dir.join(name));
            }
        };
        let written = write_cleaned(
            &plan,
            &sources[start..group],
            &map,
            &last_batch,
            now_ms,
            throttler,
            &mut stats,
        )
        .inspect_err(|_| remove_cleaned())?;
        if let Some(d) = written.tombstone_deadline {
            deadline = Some(deadline.map_or(d, |x: i64| x.min(d)));
        }
        log.lock()
            .swap_in_cleaned(&sources[start..group])
            .inspect_err(|_| remove_cleaned())?;
        stats.segments_cleaned += group - start;
        stats.segments_written += 1;
        stats.bytes_before += sources[start..group].iter().map(|s| s.size).sum::<u64>();
        stats.bytes_after += written.size;
        start = group;
    }
    let first_dirty = sources.last().map_or(0, |s| s.upper);
    {
        let mut log = log.lock();
        log.cleaner.first_dirty = first_dirty;
        log.cleaner.tombstone_deadline_ms = deadline;
        log.cleaner.store(&plan.dir)?;
    }
    stats.first_dirty_offset = Offset(first_dirty);
    info!(dir = %plan.dir.display(), dirty_ratio = format!("{:.3}", stats.dirty_ratio),
        segments = stats.segments_cleaned, bytes_before = stats.bytes_before, bytes_after = stats.bytes_after,
        records_removed = stats.records_removed, tombstones_removed = stats.tombstones_removed,
        first_dirty_offset = first_dirty, elapsed_ms = started.elapsed().as_millis() as u64, "cleaned log");
    Ok(Some(stats))
}

/// End (exclusive) of the group of sources starting at `start`: consecutive segments whose sizes
/// add up to at most `segment.bytes`, whose index entries fit one index, and whose offsets fit the
/// index's 32-bit relative offsets.
fn group_end(sources: &[Source], start: usize, plan: &Plan) -> usize {
    let mut size = sources[start].size;
    let mut entries = sources[start].index_entries;
    let mut end = start + 1;
    while end < sources.len() {
        let next = &sources[end];
        if size + next.size > plan.max_segment_bytes
            || entries + next.index_entries > plan.limits.max_offset_entries
            || next.upper - sources[start].base > i64::from(i32::MAX)
        {
            break;
        }
        size += next.size;
        entries += next.index_entries;
        end += 1;
    }
    end
}

struct Written {
    size: u64,
    tombstone_deadline: Option<i64>,
}

/// Writes the retained batches of `group` to `<base>.log.cleaned` (+ indexes), fsynced, with
/// the newest source modification time as its mtime.
fn write_cleaned(
    plan: &Plan,
    group: &[Source],
    map: &OffsetMap,
    last_batch: &HashMap<i64, i64>,
    now_ms: i64,
    throttler: &Throttler,
    stats: &mut CleanStats,
) -> Result<Written> {
    let base = group[0].base;
    let mut out = Segment::create_with_suffix(&plan.files, &plan.dir, base, now_ms, CLEANED_SUFFIX)?;
    let out_log = out.open_log()?;
    let mtime = group.iter().map(|s| s.mtime_ms).max().unwrap_or(now_ms);
    let mut retained_tombstones = false;
    let mut buf: Vec<u8> = Vec::with_capacity(WRITE_CHUNK + (64 << 10));
    let mut pos: u64 = 0;
    let flush = |out: &Segment, buf: &mut Vec<u8>| -> Result<()> {
        throttler.acquire(buf.len() as u64)?;
        let mut file: &File = &out_log;
        file.write_all(buf).map_err(Error::io("write", &out.log_path))?;
        buf.clear();
        Ok(())
    };
    for src in group {
        let tombstones_expired = src.mtime_ms.saturating_add(plan.compaction.delete_retention_ms) < now_ms;
        let mut reader = BatchReader::new(src, READ_CHUNK);
        while let Some(h) = reader.next_batch(throttler, false)? {
            let bytes = reader.batch();
            let keep_empty = h.producer_id >= 0 && last_batch.get(&h.producer_id) == Some(&h.base_offset);
            let filtered = filter_batch(
                &h,
                bytes,
                plan.decompress_limit,
                keep_empty,
                |offset, key, tombstone| {
                    let Some(key) = key else {
                        return Retain::Drop { tombstone: false };
                    };
                    if map.get(key).is_some_and(|latest| latest > offset) {
                        return Retain::Drop { tombstone };
                    }
                    if tombstone && tombstones_expired {
                        return Retain::Drop { tombstone: true };
                    }
                    if tombstone {
                        retained_tombstones = true;
                    }
                    Retain::Keep
                },
            )
            .map_err(|e| src.corrupt(&h, e))?;
            stats.records_removed += filtered.removed;
            stats.tombstones_removed += filtered.tombstones_removed;
            let out_bytes: &[u8] = match &filtered.output {
                Output::Unchanged => bytes,
                Output::Dropped => continue,
                Output::Rewritten(b) => b,
            };
            let header = BatchHeader::parse(out_bytes).map_err(|e| src.corrupt(&h, e.to_string()))?;
            out.track_batch(pos, &header, &plan.limits);
            pos += out_bytes.len() as u64;
            buf.extend_from_slice(out_bytes);
            if buf.len() >= WRITE_CHUNK {
                flush(&out, &mut buf)?;
            }
        }
        stats.bytes_read += reader.bytes_read;
    }
    flush(&out, &mut buf)?;
    out.size = pos;
    out.close_for_writes(&plan.limits)?;
    out_log
        .set_modified(UNIX_EPOCH + Duration::from_millis(mtime.max(0) as u64))
        .map_err(Error::io("set mtime", &out.log_path))?;
    out_log.sync_all().map_err(Error::io("fsync", &out.log_path))?;
    for (file, path) in [
        (out.offset_index.open_file()?, out.offset_index.path()),
        (out.time_index.open_file()?, out.time_index.path()),
    ] {
        file.sync_all().map_err(Error::io("fsync", path))?;
    }
    Ok(Written {
        size: pos,
        tombstone_deadline: retained_tombstones.then(|| mtime.saturating_add(plan.compaction.delete_retention_ms)),
    })
}

impl Source {
    fn corrupt(&self, h: &BatchHeader, reason: impl Into<String>) -> Error {
        Error::CorruptBatch {
            path: self.path.to_path_buf(),
            offset: Offset(h.base_offset),
            position: 0,
            reason: reason.into(),
        }
    }
}

/// Key -> latest offset, with an estimate of its memory.
#[derive(Default)]
struct OffsetMap {
    map: HashMap<Box<[u8]>, i64>,
    bytes: usize,
}

impl OffsetMap {
    fn insert(&mut self, key: &[u8], offset: i64) {
        if let Some(v) = self.map.get_mut(key) {
            *v = offset;
        } else {
            self.bytes += key.len() + MAP_ENTRY_OVERHEAD;
            self.map.insert(key.into(), offset);
        }
    }

    fn get(&self, key: &[u8]) -> Option<i64> {
        self.map.get(key).copied()
    }
}

/// Sequential batch reader over a segment file captured in a plan, buffered in chunks.
struct BatchReader<'a> {
    src: &'a Source,
    file: Option<Arc<File>>,
    chunk: usize,
    buf: Vec<u8>,
    /// File position of `buf[0]`.
    buf_pos: u64,
    pos: u64,
    current: std::ops::Range<usize>,
    bytes_read: u64,
}

impl<'a> BatchReader<'a> {
    fn new(src: &'a Source, chunk: usize) -> Self {
        BatchReader {
            src,
            file: None,
            chunk,
            buf: Vec::new(),
            buf_pos: 0,
            pos: 0,
            current: 0..0,
            bytes_read: 0,
        }
    }

    /// Makes `[at, at + len)` available in `buf`; returns its start index in `buf`.
    fn fill(&mut self, at: u64, len: usize, throttler: &Throttler) -> Result<usize> {
        if at >= self.buf_pos && at + len as u64 <= self.buf_pos + self.buf.len() as u64 {
            return Ok((at - self.buf_pos) as usize);
        }
        let want = (len.max(self.chunk) as u64).min(self.src.size - at) as usize;
        throttler.acquire(want as u64)?;
        self.buf.resize(want, 0);
        if self.file.is_none() {
            self.file = Some(self.src.file.get("open segment")?);
        }
        let file = self.file.as_ref().expect("just opened");
        file.read_exact_at(&mut self.buf, at)
            .map_err(Error::io("read segment", &self.src.path))?;
        self.bytes_read += want as u64;
        self.buf_pos = at;
        Ok(0)
    }

    /// The next batch's header; with `headers_only` the body may not be buffered.
    fn next_batch(&mut self, throttler: &Throttler, headers_only: bool) -> Result<Option<BatchHeader>> {
        if self.pos >= self.src.size {
            return Ok(None);
        }
        let (path, position) = (Arc::clone(&self.src.path), self.pos);
        let corrupt = |reason: String| Error::CorruptBatch {
            path: path.to_path_buf(),
            offset: Offset(-1),
            position,
            reason,
        };
        if self.pos + BATCH_HEADER_LEN as u64 > self.src.size {
            return Err(corrupt("batch header past segment end".to_string()));
        }
        let at = self.fill(self.pos, BATCH_HEADER_LEN, throttler)?;
        let h = BatchHeader::parse(&self.buf[at..]).map_err(|e| corrupt(e.to_string()))?;
        let total = h.total_len();
        if self.pos + total as u64 > self.src.size {
            return Err(corrupt("batch extends past segment end".to_string()));
        }
        if headers_only {
            self.current = 0..0;
        } else {
            let at = self.fill(self.pos, total, throttler)?;
            self.current = at..at + total;
        }
        self.pos += total as u64;
        Ok(Some(h))
    }

    /// The whole current batch (empty after a headers-only read).
    fn batch(&self) -> &[u8] {
        &self.buf[self.current.clone()]
    }
}

/// A record inside a (decompressed) records section.
#[derive(Clone, Copy, Debug)]
struct RecordView {
    /// Byte range of the whole record, length prefix included.
    start: usize,
    end: usize,
    offset_delta: i64,
    key: Option<(usize, usize)>,
    tombstone: bool,
}

/// Parses the records of a v2 records section with the shared record parser, as positions
/// into `data` (no copy).
fn parse_records(data: &[u8]) -> std::result::Result<Vec<RecordView>, String> {
    let at = |s: &[u8]| s.as_ptr() as usize - data.as_ptr() as usize;
    RecordIter::new(data)
        .map(|r| {
            let r = r.map_err(|e| e.to_string())?;
            Ok(RecordView {
                start: r.position,
                end: r.position + r.raw.len(),
                offset_delta: i64::from(r.meta.offset_delta),
                key: r.key.map(|k| (at(k), at(k) + k.len())),
                tombstone: r.value.is_none(),
            })
        })
        .collect()
}

/// The records section of a batch, decompressed (at most `limit` bytes) if needed.
fn decoded_records<'b>(
    h: &BatchHeader,
    batch: &'b [u8],
    limit: usize,
) -> std::result::Result<std::borrow::Cow<'b, [u8]>, String> {
    let body = &batch[BATCH_HEADER_LEN..];
    if h.compression() == 0 {
        return Ok(std::borrow::Cow::Borrowed(body));
    }
    decompress_bounded(h.compression(), body, limit)
        .map(std::borrow::Cow::Owned)
        .map_err(|e| e.to_string())
}

fn compress(codec: u8, raw: &[u8]) -> std::result::Result<Vec<u8>, String> {
    use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};
    let mut out: Vec<u8> = Vec::with_capacity(raw.len() / 2 + 64);
    let done = match codec {
        0 => {
            out.extend_from_slice(raw);
            Ok(())
        }
        1 => Gzip::compress(&mut out, |b: &mut BytesMut| {
            b.extend_from_slice(raw);
            Ok(())
        }),
        2 => Snappy::compress(&mut out, |b: &mut BytesMut| {
            b.extend_from_slice(raw);
            Ok(())
        }),
        3 => Lz4::compress(&mut out, |b: &mut BytesMut| {
            b.extend_from_slice(raw);
            Ok(())
        }),
        4 => Zstd::compress(&mut out, |b: &mut BytesMut| {
            b.extend_from_slice(raw);
            Ok(())
        }),
        other => return Err(format!("unknown compression codec {other}")),
    };
    done.map(|()| out)
        .map_err(|e| format!("cannot compress records: {e:#}"))
}

/// Builds a batch with `original`'s header fields (offsets, producer fields, timestamps,
/// epoch, attributes) around a new records section.
fn build_batch(original: &BatchHeader, body: &[u8], record_count: i32, codec: u8) -> Vec<u8> {
    let mut h = *original;
    h.batch_length = (BATCH_HEADER_LEN - LOG_OVERHEAD + body.len()) as i32;
    h.record_count = record_count;
    h.attributes = (h.attributes & !COMPRESSION_MASK) | i16::from(codec);
    let mut out = Vec::with_capacity(BATCH_HEADER_LEN + body.len());
    out.extend_from_slice(&h.encode());
    out.extend_from_slice(body);
    let crc = crc32c::crc32c(&out[ATTRIBUTES_POS..]);
    out[CRC_POS..CRC_POS + 4].copy_from_slice(&crc.to_be_bytes());
    out
}

enum Retain {
    Keep,
    Drop { tombstone: bool },
}

enum Output {
    Unchanged,
    Dropped,
    Rewritten(Vec<u8>),
}

struct Filtered {
    output: Output,
    removed: u64,
    tombstones_removed: u64,
}

/// Applies `retain(offset, key, is_tombstone)` to every record of one batch.
fn filter_batch(
    h: &BatchHeader,
    bytes: &[u8],
    decompress_limit: usize,
    keep_empty: bool,
    mut retain: impl FnMut(i64, Option<&[u8]>, bool) -> Retain,
) -> std::result::Result<Filtered, String> {
    let unchanged = Filtered {
        output: Output::Unchanged,
        removed: 0,
        tombstones_removed: 0,
    };
    if h.is_control() || h.is_transactional() {
        return Ok(unchanged);
    }
    if h.record_count == 0 {
        // An empty batch kept for its producer id by an earlier pass.
        return Ok(if keep_empty {
            unchanged
        } else {
            Filtered {
                output: Output::Dropped,
                ..unchanged
            }
        });
    }
    let records = decoded_records(h, bytes, decompress_limit)?;
    let views = parse_records(&records)?;
    let mut kept: Vec<RecordView> = Vec::with_capacity(views.len());
    let (mut removed, mut tombstones_removed) = (0u64, 0u64);
    for r in &views {
        let key = r.key.map(|(s, e)| &records[s..e]);
        match retain(h.base_offset + r.offset_delta, key, r.tombstone) {
            Retain::Keep => kept.push(*r),
            Retain::Drop { tombstone } => {
                removed += 1;
                tombstones_removed += u64::from(tombstone);
            }
        }
    }
    if kept.len() == views.len() {
        return Ok(unchanged);
    }
    let output = if kept.is_empty() {
        if keep_empty {
            Output::Rewritten(build_batch(h, &[], 0, 0))
        } else {
            Output::Dropped
        }
    } else {
        let mut raw = Vec::with_capacity(kept.iter().map(|r| r.end - r.start).sum());
        for r in &kept {
            raw.extend_from_slice(&records[r.start..r.end]);
        }
        let codec = h.compression();
        let body = compress(codec, &raw)?;
        Output::Rewritten(build_batch(h, &body, kept.len() as i32, codec))
    };
    Ok(Filtered {
        output,
        removed,
        tombstones_removed,
    })
}

/// Completes or rolls back swaps interrupted by a crash, before `Log::open` lists the segments.
/// `*.cleaned` files are incomplete: deleted (the originals are intact). A `<base>.log.swap` is
/// a complete, durable cleaned segment whose originals may be partly renamed away: every
/// segment with a base offset in `(base, last offset of the swap]` is deleted, the old indexes
/// of `base` too, and the swap files take the final names (missing indexes are rebuilt by open).
pub(crate) fn recover_interrupted_swaps(dir: &Path) -> Result<()> {
    let mut names: Vec<String> = Vec::new();
    for entry in fs::read_dir(dir).map_err(Error::io("list dir", dir))? {
        let entry = entry.map_err(Error::io("list dir", dir))?;
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_owned());
        }
    }
    let mut changed = false;
    for name in names.iter().filter(|n| n.ends_with(CLEANED_SUFFIX)) {
        warn!(dir = %dir.display(), file = %name, "deleting incomplete cleaned segment file");
        remove_if_exists(&dir.join(name))?;
        changed = true;
    }
    let mut swaps: Vec<i64> = names
        .iter()
        .filter_map(|n| n.strip_suffix(SWAP_SUFFIX))
        .filter_map(|n| segment::parse_file_name(n, LOG_SUFFIX))
        .collect();
    swaps.sort_unstable();
    let log_bases: Vec<i64> = names
        .iter()
        .filter_map(|n| segment::parse_file_name(n, LOG_SUFFIX))
        .collect();
    for base in swaps {
        let swap_path = dir.join(segment::file_name(base, LOG_SUFFIX) + SWAP_SUFFIX);
        let last = last_offset_in_file(&swap_path)?.unwrap_or(base);
        for &other in log_bases.iter().filter(|&&b| b > base && b <= last) {
            warn!(dir = %dir.display(), base_offset = other, "deleting segment replaced by an interrupted cleaning swap");
            for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
                remove_if_exists(&dir.join(segment::file_name(other, suffix)))?;
            }
        }
        for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
            let final_path = dir.join(segment::file_name(base, suffix));
            remove_if_exists(&final_path)?;
            let swap = dir.join(segment::file_name(base, suffix) + SWAP_SUFFIX);
            if swap.exists() {
                fs::rename(&swap, &final_path).map_err(Error::io("rename", &swap))?;
            }
        }
        let final_log = dir.join(segment::file_name(base, LOG_SUFFIX));
        fs::rename(&swap_path, &final_log).map_err(Error::io("rename", &swap_path))?;
        info!(dir = %dir.display(), base_offset = base, last_offset = last, "completed an interrupted cleaning swap");
        changed = true;
    }
    // Index swaps without a log swap belong to a swap that never became durable.
    for entry in fs::read_dir(dir).map_err(Error::io("list dir", dir))? {
        let entry = entry.map_err(Error::io("list dir", dir))?;
        if entry.file_name().to_str().is_some_and(|n| n.ends_with(SWAP_SUFFIX)) {
            remove_if_exists(&entry.path())?;
            changed = true;
        }
    }
    if changed {
        checkpoint::sync_dir(dir)?;
    }
    Ok(())
}

fn remove_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("delete", path)(e)),
    }
}

/// Last offset of the last complete batch in a segment file, walking headers only.
fn last_offset_in_file(path: &Path) -> Result<Option<i64>> {
    let file = File::open(path).map_err(Error::io("open segment", path))?;
    let size = file.metadata().map_err(Error::io("stat segment", path))?.len();
    let mut pos = 0u64;
    let mut last = None;
    let mut header = [0u8; BATCH_HEADER_LEN];
    while pos + BATCH_HEADER_LEN as u64 <= size {
        file.read_exact_at(&mut header, pos)
            .map_err(Error::io("read segment", path))?;
        let Ok(h) = BatchHeader::parse(&header) else {
            break;
        };
        if pos + h.total_len() as u64 > size {
            break;
        }
        last = Some(h.last_offset());
        pos += h.total_len() as u64;
    }
    Ok(last)
}

#[cfg(test)]
#[path = "cleaner_tests.rs"]
mod tests;
