//! One log segment: the `.log` file holding batches verbatim, its offset and time indexes, and
//! the bookkeeping shared by appends, recovery and lookups. Its files are [`FileHandle`]s,
//! opened on use through the [`FileCache`], so an idle segment holds no file descriptor.

use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use crate::batch::{self, BATCH_HEADER_LEN, BatchHeader};
use crate::error::{Error, Result};
use crate::files::{FileCache, FileHandle, Mode};
use crate::index::{Index, OffsetEntry, TimeEntry};
use crate::types::Offset;

pub(crate) const LOG_SUFFIX: &str = ".log";
pub(crate) const INDEX_SUFFIX: &str = ".index";
pub(crate) const TIME_INDEX_SUFFIX: &str = ".timeindex";

/// Bytes read per `pread` when validating a segment during recovery.
const SCAN_CHUNK: usize = 1 << 20;
/// Bytes read per `pread` when walking batch headers for lookups.
const HEADER_WINDOW: usize = 2048;

/// `00000000000000000042` + suffix.
pub(crate) fn file_name(base_offset: i64, suffix: &str) -> String {
    format!("{base_offset:020}{suffix}")
}

/// Parses a segment file name (`<20 digits><suffix>`) into its base offset.
pub(crate) fn parse_file_name(name: &str, suffix: &str) -> Option<i64> {
    let stem = name.strip_suffix(suffix)?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// Index limits taken from the log config.
#[derive(Clone, Copy, Debug)]
pub(crate) struct IndexLimits {
    pub(crate) interval_bytes: u64,
    pub(crate) max_offset_entries: usize,
    pub(crate) max_time_entries: usize,
}

/// How a validating scan ended.
#[derive(Debug)]
pub(crate) struct ScanEnd {
    /// End of the last valid batch.
    pub(crate) valid_end: u64,
    /// Why the scan stopped before the end of the file, if it did.
    pub(crate) corruption: Option<String>,
    pub(crate) batches: u64,
    pub(crate) bytes: u64,
}

#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) base_offset: i64,
    pub(crate) log_path: Arc<Path>,
    pub(crate) log: FileHandle,
    /// Bytes of complete batches in the file (what reads may see).
    pub(crate) size: u64,
    pub(crate) offset_index: Index<OffsetEntry>,
    pub(crate) time_index: Index<TimeEntry>,
    /// Largest batch max timestamp and the last offset of the first batch that reached it.
    pub(crate) max_timestamp: Option<(i64, i64)>,
    /// Max timestamp of the first batch (segment.ms rolls count from it).
    pub(crate) first_batch_timestamp: Option<i64>,
    /// Creation time (or file mtime for loaded segments), used when there is no timestamp.
    pub(crate) created_ms: i64,
    /// Offset after the last batch; exact for the active segment and segments rolled or
    /// recovered in this process, else the next segment's base offset.
    pub(crate) next_offset: i64,
    bytes_since_last_index_entry: u64,
    last_time_index_ts: Option<i64>,
}

fn open_log(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(Error::io("open segment", path))
}

fn mtime_ms(file: &File, path: &Path) -> Result<i64> {
    let meta = file.metadata().map_err(Error::io("stat segment", path))?;
    Ok(meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as i64))
}

impl Segment {
    /// Creates a new, empty segment (replacing any stale files with the same base offset).
    pub(crate) fn create(files: &Arc<FileCache>, dir: &Path, base_offset: i64, now_ms: i64) -> Result<Segment> {
        Self::create_with_suffix(files, dir, base_offset, now_ms, "")
    }

    /// Like [`Segment::create`], with `suffix` appended to every file name (the log cleaner
    /// writes `<base>.log.cleaned` and its indexes this way).
    pub(crate) fn create_with_suffix(
        files: &Arc<FileCache>,
        dir: &Path,
        base_offset: i64,
        now_ms: i64,
        suffix: &str,
    ) -> Result<Segment> {
        let log_path = dir.join(file_name(base_offset, LOG_SUFFIX) + suffix);
        let log = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .truncate(false)
            .open(&log_path)
            .map_err(Error::io("create segment", &log_path))?;
        log.set_len(0).map_err(Error::io("truncate segment", &log_path))?;
        let offset_index = Index::create(files, dir.join(file_name(base_offset, INDEX_SUFFIX) + suffix))?;
        let time_index = Index::create(files, dir.join(file_name(base_offset, TIME_INDEX_SUFFIX) + suffix))?;
        let log_path: Arc<Path> = log_path.into();
        Ok(Segment {
            base_offset,
            log: FileHandle::with_open(files, Arc::clone(&log_path), Mode::Log, log),
            log_path,
            size: 0,
            offset_index,
            time_index,
            max_timestamp: None,
            first_batch_timestamp: None,
            created_ms: now_ms,
            next_offset: base_offset,
            bytes_since_last_index_entry: 0,
            last_time_index_ts: None,
        })
    }

    /// Opens the files of an existing segment without reading the log. Indexes that are missing
    /// or have a bad size come back as `None` in the second and third tuple fields' places: the
    /// caller rebuilds them. `load` reads the indexes into memory (active segment).
    pub(crate) fn open(files: &Arc<FileCache>, dir: &Path, base_offset: i64, load: bool) -> Result<(Segment, bool)> {
        let log_path = dir.join(file_name(base_offset, LOG_SUFFIX));
        let log = open_log(&log_path)?;
        let file_len = log.metadata().map_err(Error::io("stat segment", &log_path))?.len();
        let created_ms = mtime_ms(&log, &log_path)?;
        let log_path: Arc<Path> = log_path.into();
        let log = FileHandle::with_open(files, Arc::clone(&log_path), Mode::Log, log);
        let oi_path = dir.join(file_name(base_offset, INDEX_SUFFIX));
        let ti_path = dir.join(file_name(base_offset, TIME_INDEX_SUFFIX));
        let offset_index = Index::<OffsetEntry>::open(files, oi_path.clone(), load)?;
        let time_index = Index::<TimeEntry>::open(files, ti_path.clone(), load)?;
        let indexes_ok = offset_index.is_some() && time_index.is_some();
        let offset_index = match offset_index {
            Some(i) => i,
            None => Index::create(files, oi_path)?,
        };
        let time_index = match time_index {
            Some(i) => i,
            None => Index::create(files, ti_path)?,
        };
        let mut seg = Segment {
            base_offset,
            log_path,
            log,
            size: file_len,
            offset_index,
            time_index,
            max_timestamp: None,
            first_batch_timestamp: None,
            created_ms,
            next_offset: base_offset,
            bytes_since_last_index_entry: 0,
            last_time_index_ts: None,
        };
        if indexes_ok && let Some(last) = seg.time_index.last()? {
            seg.max_timestamp = Some((last.timestamp, base_offset + i64::from(last.rel_offset)));
            seg.last_time_index_ts = Some(last.timestamp);
        }
        Ok((seg, indexes_ok))
    }

    /// Cheap consistency check of a closed segment's indexes against the log file and the next
    /// segment's base offset (Kafka's sanity check: sizes and last entries).
    pub(crate) fn closed_indexes_look_sane(&self, upper_bound: i64) -> Result<bool> {
        let max_rel = upper_bound - self.base_offset;
        if let Some(last) = self.offset_index.last()?
            && (u64::from(last.position) >= self.size || i64::from(last.rel_offset) >= max_rel)
        {
            return Ok(false);
        }
        match self.time_index.last()? {
            Some(last) => Ok(i64::from(last.rel_offset) < max_rel),
            // A closed non-empty segment always ends with a time index entry.
            None => Ok(self.size == 0),
        }
    }

    /// Cheap check of an in-memory (active) index: monotonic and inside the file.
    pub(crate) fn active_indexes_look_sane(&self) -> Result<bool> {
        let offsets = self.offset_index.all()?;
        let ok_offsets = offsets
            .windows(2)
            .all(|w| w[0].rel_offset < w[1].rel_offset && w[0].position < w[1].position)
            && offsets.last().is_none_or(|e| u64::from(e.position) < self.size);
        let times = self.time_index.all()?;
        let ok_times = times
            .windows(2)
            .all(|w| w[0].timestamp < w[1].timestamp && w[0].rel_offset <= w[1].rel_offset);
        Ok(ok_offsets && ok_times)
    }

    /// Largest timestamp for retention: the max batch timestamp, or the creation/mtime if the
    /// segment has no timestamps (like Kafka's `largestTimestamp`).
    pub(crate) fn largest_timestamp_for_retention(&self) -> i64 {
        match self.max_timestamp {
            Some((ts, _)) if ts >= 0 => ts,
            _ => self.created_ms,
        }
    }

    fn maybe_append_time_entry(&mut self, limits: &IndexLimits, skip_full_check: bool) {
        let Some((ts, offset)) = self.max_timestamp else {
            return;
        };
        if self.last_time_index_ts.is_some_and(|last| ts <= last) {
            return;
        }
        if !skip_full_check && self.time_index.len() >= limits.max_time_entries {
            return;
        }
        self.time_index.push(TimeEntry {
            timestamp: ts,
            rel_offset: (offset - self.base_offset) as u32,
        });
        self.last_time_index_ts = Some(ts);
    }

    /// Updates timestamps and the sparse indexes for a batch written at `position`.
    pub(crate) fn track_batch(&mut self, position: u64, header: &BatchHeader, limits: &IndexLimits) {
        let max_ts = header.max_timestamp;
        if self.max_timestamp.is_none_or(|(ts, _)| max_ts > ts) {
            self.max_timestamp = Some((max_ts, header.last_offset()));
        }
        if self.first_batch_timestamp.is_none() {
            self.first_batch_timestamp = Some(max_ts);
        }
        if self.bytes_since_last_index_entry > limits.interval_bytes {
            if self.offset_index.len() < limits.max_offset_entries {
                self.offset_index.push(OffsetEntry {
                    rel_offset: (header.base_offset - self.base_offset) as u32,
                    position: position as u32,
                });
            }
            self.maybe_append_time_entry(limits, false);
            self.bytes_since_last_index_entry = 0;
        }
        self.bytes_since_last_index_entry += header.total_len() as u64;
        self.next_offset = header.next_offset();
    }

    /// True if either index reached its configured capacity (Kafka rolls then).
    pub(crate) fn indexes_full(&self, limits: &IndexLimits) -> bool {
        self.offset_index.len() >= limits.max_offset_entries || self.time_index.len() >= limits.max_time_entries
    }

    /// Called when the segment stops being the active one: final time index entry with the
    /// segment's max timestamp, pending entries written, indexes switched to file mode.
    pub(crate) fn close_for_writes(&mut self, limits: &IndexLimits) -> Result<()> {
        self.maybe_append_time_entry(limits, true);
        self.offset_index.freeze()?;
        self.time_index.freeze()
    }

    /// Makes a closed segment active again (after a truncation).
    pub(crate) fn reopen_for_writes(&mut self) -> Result<()> {
        self.offset_index.thaw()?;
        self.time_index.thaw()
    }

    /// Writes pending index entries (no fsync).
    pub(crate) fn flush_indexes(&mut self) -> Result<()> {
        self.offset_index.flush_pending()?;
        self.time_index.flush_pending()
    }

    /// Validates batches from `start` to the end of the file, tracking each valid one. Every
    /// batch must parse, lie inside the file, carry a correct CRC, have a non-negative offset
    /// delta and count, and start at or after the offset the previous one ended at.
    fn scan_and_track(
        &mut self,
        start: u64,
        limits: &IndexLimits,
        mut on_batch: impl FnMut(&BatchHeader),
    ) -> Result<ScanEnd> {
        let log = self.open_log()?;
        let file_len = log.metadata().map_err(Error::io("stat segment", &self.log_path))?.len();
        let path = Arc::clone(&self.log_path);
        let mut end = ScanEnd {
            valid_end: start,
            corruption: None,
            batches: 0,
            bytes: 0,
        };
        let mut buf: Vec<u8> = Vec::new();
        let mut pos = start;
        'outer: while pos < file_len {
            let want = (SCAN_CHUNK as u64).min(file_len - pos) as usize;
            read_into(&log, &path, &mut buf, pos, want)?;
            end.bytes += want as u64;
            let mut local = 0usize;
            loop {
                let rest = &buf[local..];
                let at = pos + local as u64;
                if rest.is_empty() {
                    pos = at;
                    continue 'outer;
                }
                let header = match BatchHeader::parse(rest) {
                    Ok(h) => h,
                    Err(batch::BatchError::Truncated) if at + (rest.len() as u64) < file_len => {
                        pos = at;
                        continue 'outer;
                    }
                    Err(e) => {
                        end.corruption = Some(e.to_string());
                        break 'outer;
                    }
                };
                let total = header.total_len();
                if at + total as u64 > file_len {
                    end.corruption = Some(format!(
                        "truncated batch: {total} bytes needed, {} left in file",
                        file_len - at
                    ));
                    break 'outer;
                }
                if total > rest.len() {
                    if local == 0 {
                        read_into(&log, &path, &mut buf, pos, total)?;
                        end.bytes += total as u64;
                        continue;
                    }
                    pos = at;
                    continue 'outer;
                }
                if let Err(reason) = self.check_batch(&header, &rest[..total], at) {
                    end.corruption = Some(reason);
                    break 'outer;
                }
                self.track_batch(at, &header, limits);
                on_batch(&header);
                end.batches += 1;
                local += total;
                end.valid_end = at + total as u64;
                self.size = end.valid_end;
            }
        }
        Ok(end)
    }

    fn check_batch(&self, header: &BatchHeader, bytes: &[u8], position: u64) -> Result<(), String> {
        batch::verify_crc(header, bytes).map_err(|e| e.to_string())?;
        if header.last_offset_delta < 0 || header.record_count < 0 {
            return Err(format!(
                "invalid last offset delta {} or record count {}",
                header.last_offset_delta, header.record_count
            ));
        }
        if header.base_offset < self.next_offset {
            return Err(format!(
                "base offset {} below expected next offset {}",
                header.base_offset, self.next_offset
            ));
        }
        if header.last_offset() - self.base_offset > i64::from(u32::MAX)
            || position + header.total_len() as u64 > u64::from(u32::MAX)
        {
            return Err("offset or position does not fit the segment index".to_string());
        }
        Ok(())
    }

    fn reset_tracking(&mut self) -> Result<()> {
        self.offset_index.truncate(0)?;
        self.time_index.truncate(0)?;
        self.max_timestamp = None;
        self.first_batch_timestamp = None;
        self.next_offset = self.base_offset;
        self.bytes_since_last_index_entry = 0;
        self.last_time_index_ts = None;
        self.size = 0;
        Ok(())
    }

    /// Rebuilds the indexes by validating the whole segment. On corruption the file is cut at
    /// the last valid batch and the reason returned. The indexes stay in memory mode.
    pub(crate) fn recover(
        &mut self,
        limits: &IndexLimits,
        on_batch: impl FnMut(&BatchHeader),
    ) -> Result<(ScanEnd, u64)> {
        self.offset_index.thaw()?;
        self.time_index.thaw()?;
        self.reset_tracking()?;
        let end = self.scan_and_track(0, limits, on_batch)?;
        let truncated = self.cut_after_scan(&end)?;
        // reset_tracking emptied the files; write everything the scan rebuilt. On a full disk the
        // rebuilt entries stay in memory (the broker must still start) and are written later.
        match self.flush_indexes() {
            Err(error) if error.is_no_space() => {
                tracing::warn!(path = %self.log_path.display(), %error, "disk full: rebuilt index kept in memory");
            }
            result => result?,
        }
        Ok((end, truncated))
    }

    /// Resumes tracking from the last offset index entry (clean load of the active segment, or
    /// after a truncation): only the batches after that entry are read and validated.
    pub(crate) fn resume_from_index(
        &mut self,
        limits: &IndexLimits,
        on_batch: impl FnMut(&BatchHeader),
    ) -> Result<(ScanEnd, u64)> {
        let start = match self.offset_index.last()? {
            Some(e) => {
                self.next_offset = self.base_offset + i64::from(e.rel_offset);
                u64::from(e.position)
            }
            None => {
                self.next_offset = self.base_offset;
                0
            }
        };
        self.max_timestamp = None;
        self.last_time_index_ts = None;
        if let Some(last) = self.time_index.last()? {
            self.max_timestamp = Some((last.timestamp, self.base_offset + i64::from(last.rel_offset)));
            self.last_time_index_ts = Some(last.timestamp);
        }
        self.first_batch_timestamp = None;
        if start > 0 {
            let mut buf = [0u8; BATCH_HEADER_LEN];
            self.open_log()?
                .read_exact_at(&mut buf, 0)
                .map_err(Error::io("read segment", &self.log_path))?;
            if let Ok(h) = BatchHeader::parse(&buf) {
                self.first_batch_timestamp = Some(h.max_timestamp);
            }
        }
        self.bytes_since_last_index_entry = 0;
        self.size = start;
        let end = self.scan_and_track(start, limits, on_batch)?;
        let truncated = self.cut_after_scan(&end)?;
        Ok((end, truncated))
    }

    /// Cuts the file at `end.valid_end` if the scan stopped early; returns the bytes removed.
    fn cut_after_scan(&mut self, end: &ScanEnd) -> Result<u64> {
        let log = self.open_log()?;
        let file_len = log.metadata().map_err(Error::io("stat segment", &self.log_path))?.len();
        self.size = end.valid_end;
        if file_len > end.valid_end {
            log.set_len(end.valid_end)
                .map_err(Error::io("truncate segment", &self.log_path))?;
            return Ok(file_len - end.valid_end);
        }
        Ok(0)
    }

    /// Removes every batch at or after `position` (a batch boundary) and the index entries
    /// pointing there, then re-derives the tail state from the last remaining index entry.
    pub(crate) fn truncate_to_position(&mut self, position: u64, limits: &IndexLimits) -> Result<()> {
        self.reopen_for_writes()?;
        self.open_log()?
            .set_len(position)
            .map_err(Error::io("truncate segment", &self.log_path))?;
        self.size = position;
        let keep = self
            .offset_index
            .partition_point(|e| u64::from(e.position) < position)?;
        self.offset_index.truncate(keep)?;
        // The new end offset is not known yet; drop time entries that point past the last batch
        // that starts before `position` (found by the rescan), conservatively by position.
        let last_kept_offset = self.last_offset_before(position)?;
        let keep_t = match last_kept_offset {
            Some(last) => self
                .time_index
                .partition_point(|e| self.base_offset + i64::from(e.rel_offset) <= last)?,
            None => 0,
        };
        self.time_index.truncate(keep_t)?;
        let (end, _) = self.resume_from_index(limits, |_| {})?;
        if let Some(reason) = end.corruption {
            return Err(Error::CorruptBatch {
                path: self.log_path.to_path_buf(),
                offset: Offset(self.next_offset),
                position: end.valid_end,
                reason,
            });
        }
        Ok(())
    }

    /// Last offset of the batch that ends exactly at `position`, if any batch precedes it.
    fn last_offset_before(&self, position: u64) -> Result<Option<i64>> {
        if position == 0 {
            return Ok(None);
        }
        let start = self
            .offset_index
            .floor(|e| u64::from(e.position) < position)?
            .map_or(0, |e| u64::from(e.position));
        let mut reader = HeaderReader::new(self);
        let mut pos = start;
        let mut last = None;
        while pos < position {
            let Some(h) = reader.header_at(pos)? else {
                break;
            };
            last = Some(h.last_offset());
            pos += h.total_len() as u64;
        }
        Ok(last)
    }

    /// Deletes the segment's files.
    /// Renames the segment's files to `*.deleted` (so they vanish from the log at once and a
    /// crash leaves them for `Log::open` to remove) and queues them for gradual deletion.
    pub(crate) fn delete_files(&self) -> Result<()> {
        for path in [&self.log_path, self.offset_index.path(), self.time_index.path()] {
            let mut doomed = path.as_os_str().to_owned();
            doomed.push(".deleted");
            let doomed = PathBuf::from(doomed);
            match fs::rename(path, &doomed) {
                Ok(()) => crate::deleter::delete_in_background(doomed),
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("delete", path)(e)),
            }
        }
        Ok(())
    }

    /// Position and header of the first batch whose last offset is >= `offset`, searching from
    /// the offset index floor. `None` if no batch of this segment reaches `offset`.
    pub(crate) fn find_batch(&self, offset: i64) -> Result<Option<(u64, BatchHeader)>> {
        let start = self.index_position_for(offset)?;
        let mut reader = HeaderReader::new(self);
        let mut pos = start;
        while let Some(h) = reader.header_at(pos)? {
            if h.last_offset() >= offset {
                return Ok(Some((pos, h)));
            }
            pos += h.total_len() as u64;
        }
        Ok(None)
    }

    /// Position of the batch recorded in the offset index at or below `offset` (0 if none).
    fn index_position_for(&self, offset: i64) -> Result<u64> {
        if offset <= self.base_offset {
            return Ok(0);
        }
        let rel = offset - self.base_offset;
        Ok(self
            .offset_index
            .floor(|e| i64::from(e.rel_offset) <= rel)?
            .map_or(0, |e| u64::from(e.position)))
    }

    /// Position of the first batch at or after `from` whose last offset is >= `max_offset`
    /// (exclusive read bound), or the segment size.
    pub(crate) fn boundary_for_max_offset(&self, from: u64, max_offset: i64) -> Result<u64> {
        let mut pos = self.index_position_for(max_offset)?.max(from);
        let mut reader = HeaderReader::new(self);
        while let Some(h) = reader.header_at(pos)? {
            if h.last_offset() >= max_offset {
                return Ok(pos);
            }
            pos += h.total_len() as u64;
        }
        Ok(self.size)
    }

    /// Largest batch boundary <= `limit`, searching from `from` (a boundary <= limit).
    pub(crate) fn boundary_at_or_below(&self, from: u64, limit: u64) -> Result<u64> {
        if limit >= self.size {
            return Ok(self.size);
        }
        let indexed = self
            .offset_index
            .floor(|e| u64::from(e.position) <= limit)?
            .map_or(0, |e| u64::from(e.position));
        let mut pos = indexed.max(from);
        let mut reader = HeaderReader::new(self);
        while let Some(h) = reader.header_at(pos)? {
            let next = pos + h.total_len() as u64;
            if next > limit {
                break;
            }
            pos = next;
        }
        Ok(pos)
    }

    /// First batch (position, header) with max timestamp >= `ts` and last offset >= `min_offset`.
    pub(crate) fn find_by_timestamp(&self, ts: i64, min_offset: i64) -> Result<Option<(u64, BatchHeader)>> {
        // Every batch up to the one named by the last time entry below `ts` is older than `ts`.
        let from_time = self
            .time_index
            .floor(|e| e.timestamp < ts)?
            .map_or(self.base_offset, |e| self.base_offset + i64::from(e.rel_offset) + 1);
        let start_offset = from_time.max(min_offset);
        let mut pos = self.index_position_for(start_offset)?;
        let mut reader = HeaderReader::new(self);
        while let Some(h) = reader.header_at(pos)? {
            if h.max_timestamp >= ts && h.last_offset() >= min_offset {
                return Ok(Some((pos, h)));
            }
            pos += h.total_len() as u64;
        }
        Ok(None)
    }

    /// Reads `len` bytes at `position` of the segment.
    pub(crate) fn read_exact(&self, position: u64, len: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        self.open_log()?
            .read_exact_at(&mut buf, position)
            .map_err(Error::io("read segment", &self.log_path))?;
        Ok(buf)
    }

    /// The open `.log` file (reopened through the file cache if it was closed).
    pub(crate) fn open_log(&self) -> Result<Arc<File>> {
        self.log.get("open segment")
    }

    pub(crate) fn corrupt(&self, position: u64, offset: i64, reason: String) -> Error {
        Error::CorruptBatch {
            path: self.log_path.to_path_buf(),
            offset: Offset(offset),
            position,
            reason,
        }
    }
}

/// Reads `len` bytes at `pos` into `buf` (resized).
fn read_into(file: &File, path: &Path, buf: &mut Vec<u8>, pos: u64, len: usize) -> Result<()> {
    buf.resize(len, 0);
    file.read_exact_at(buf, pos).map_err(Error::io("read segment", path))
}

/// Walks batch headers of a segment's committed bytes through a small read-ahead window.
pub(crate) struct HeaderReader<'a> {
    seg: &'a Segment,
    file: Option<Arc<File>>,
    window: [u8; HEADER_WINDOW],
    window_pos: u64,
    window_len: usize,
}

impl<'a> HeaderReader<'a> {
    pub(crate) fn new(seg: &'a Segment) -> Self {
        HeaderReader {
            seg,
            file: None,
            window: [0u8; HEADER_WINDOW],
            window_pos: 0,
            window_len: 0,
        }
    }

    /// Header of the batch at `pos`; `None` at (or past) the end of the committed bytes.
    pub(crate) fn header_at(&mut self, pos: u64) -> Result<Option<BatchHeader>> {
        let size = self.seg.size;
        if pos >= size {
            return Ok(None);
        }
        if pos + BATCH_HEADER_LEN as u64 > size {
            return Err(self.seg.corrupt(pos, -1, "batch header past segment end".to_string()));
        }
        let in_window =
            pos >= self.window_pos && pos + BATCH_HEADER_LEN as u64 <= self.window_pos + self.window_len as u64;
        if !in_window {
            let len = (HEADER_WINDOW as u64).min(size - pos) as usize;
            if self.file.is_none() {
                self.file = Some(self.seg.open_log()?);
            }
            let file = self.file.as_ref().expect("just opened");
            file.read_exact_at(&mut self.window[..len], pos)
                .map_err(Error::io("read segment", &self.seg.log_path))?;
            self.window_pos = pos;
            self.window_len = len;
        }
        let at = (pos - self.window_pos) as usize;
        let header = BatchHeader::parse(&self.window[at..at + BATCH_HEADER_LEN])
            .map_err(|e| self.seg.corrupt(pos, -1, e.to_string()))?;
        if pos + header.total_len() as u64 > size {
            return Err(self
                .seg
                .corrupt(pos, header.base_offset, "batch extends past segment end".to_string()));
        }
        Ok(Some(header))
    }
}

/// The marker type of the control batch `header` at `pos` (None if its record is not a marker).
pub(crate) fn control_type_at(
    seg: &Segment,
    pos: u64,
    header: &BatchHeader,
) -> Result<Option<crate::producer_state::ControlType>> {
    let mut buf = vec![0u8; header.total_len()];
    seg.open_log()?
        .read_exact_at(&mut buf, pos)
        .map_err(Error::io("read segment", &seg.log_path))?;
    Ok(crate::producer_state::control_type_of(&buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_name_round_trips_and_rejects_others() {
        assert_eq!(file_name(42, LOG_SUFFIX), "00000000000000000042.log");
        assert_eq!(parse_file_name("00000000000000000042.log", LOG_SUFFIX), Some(42));
        assert_eq!(parse_file_name("42.log", LOG_SUFFIX), None);
        assert_eq!(parse_file_name("0000000000000000004x.log", LOG_SUFFIX), None);
        assert_eq!(parse_file_name("00000000000000000042.index", LOG_SUFFIX), None);
    }
}
