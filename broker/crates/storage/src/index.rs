//! Sparse offset index (`.index`: relative offset u32 + position u32) and time index
//! (`.timeindex`: timestamp i64 + relative offset u32), big endian like Kafka's.
//!
//! The active segment keeps its entries in memory (a `Vec`) and appends them to the file on
//! `flush_pending`; closed segments keep only a file handle (opened on use through the
//! [`FileCache`]) and answer lookups by binary search with `pread`, so memory stays
//! proportional to the active segments only.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::files::{FileCache, FileHandle, Mode};

/// A fixed-size index entry.
pub(crate) trait IndexEntry: Copy + std::fmt::Debug {
    const SIZE: usize;
    fn encode(&self, out: &mut [u8]);
    fn decode(buf: &[u8]) -> Self;
}

/// Offset index entry: batch base offset (relative to the segment) -> file position of the batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    pub(crate) rel_offset: u32,
    pub(crate) position: u32,
}

impl IndexEntry for OffsetEntry {
    const SIZE: usize = 8;
    fn encode(&self, out: &mut [u8]) {
        out[..4].copy_from_slice(&self.rel_offset.to_be_bytes());
        out[4..8].copy_from_slice(&self.position.to_be_bytes());
    }
    fn decode(buf: &[u8]) -> Self {
        OffsetEntry {
            rel_offset: u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]),
            position: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
        }
    }
}

/// Time index entry: largest timestamp so far -> last offset (relative) of the batch that
/// first reached it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    pub(crate) timestamp: i64,
    pub(crate) rel_offset: u32,
}

impl IndexEntry for TimeEntry {
    const SIZE: usize = 12;
    fn encode(&self, out: &mut [u8]) {
        out[..8].copy_from_slice(&self.timestamp.to_be_bytes());
        out[8..12].copy_from_slice(&self.rel_offset.to_be_bytes());
    }
    fn decode(buf: &[u8]) -> Self {
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&buf[..8]);
        TimeEntry {
            timestamp: i64::from_be_bytes(ts),
            rel_offset: u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]),
        }
    }
}

/// Where the entries live.
#[derive(Debug)]
enum Entries<E> {
    /// Active segment: all entries in memory, `persisted` of them already in the file.
    Memory { entries: Vec<E>, persisted: usize },
    /// Closed segment: `len` entries in the file, read on demand.
    File { len: usize },
}

/// One index file plus its entries.
pub(crate) struct Index<E: IndexEntry> {
    path: PathBuf,
    file: FileHandle,
    entries: Entries<E>,
}

impl<E: IndexEntry> std::fmt::Debug for Index<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Entries can number in the millions: show the shape only.
        f.debug_struct("Index")
            .field("path", &self.path)
            .field("len", &self.len())
            .field("in_memory", &matches!(self.entries, Entries::Memory { .. }))
            .finish()
    }
}

fn open_rw(path: &Path, truncate: bool) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(truncate)
        .open(path)
        .map_err(Error::io("open index", path))
}

impl<E: IndexEntry> Index<E> {
    /// Creates an empty index file (truncating any stale one), in memory mode.
    pub(crate) fn create(files: &Arc<FileCache>, path: PathBuf) -> Result<Self> {
        let file = open_rw(&path, true)?;
        Ok(Index {
            file: FileHandle::with_open(files, path.as_path().into(), Mode::Index, file),
            path,
            entries: Entries::Memory {
                entries: Vec::new(),
                persisted: 0,
            },
        })
    }

    /// Creates (truncating) the file and writes `entries` to it, in memory mode.
    #[cfg(test)]
    pub(crate) fn create_with(path: PathBuf, entries: Vec<E>) -> Result<Self> {
        let mut index = Self::create(&FileCache::global(), path)?;
        index.entries = Entries::Memory { entries, persisted: 0 };
        index.flush_pending()?;
        Ok(index)
    }

    /// Opens an existing index file. Returns `None` if it is missing or its size is not a
    /// multiple of the entry size (the caller rebuilds it). `load` reads it into memory.
    pub(crate) fn open(files: &Arc<FileCache>, path: PathBuf, load: bool) -> Result<Option<Self>> {
        let file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("open index", &path)(e)),
        };
        let size = file.metadata().map_err(Error::io("stat index", &path))?.len();
        if size % E::SIZE as u64 != 0 {
            return Ok(None);
        }
        let len = (size / E::SIZE as u64) as usize;
        let entries = if load {
            let mut buf = vec![0u8; len * E::SIZE];
            file.read_exact_at(&mut buf, 0)
                .map_err(Error::io("read index", &path))?;
            let entries = buf.chunks_exact(E::SIZE).map(E::decode).collect();
            Entries::Memory {
                entries,
                persisted: len,
            }
        } else {
            Entries::File { len }
        };
        Ok(Some(Index {
            file: FileHandle::with_open(files, path.as_path().into(), Mode::Index, file),
            path,
            entries,
        }))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The index file (opened on use).
    pub(crate) fn file(&self) -> &FileHandle {
        &self.file
    }

    /// The open index file.
    pub(crate) fn open_file(&self) -> Result<Arc<File>> {
        self.file.get("open index")
    }

    pub(crate) fn len(&self) -> usize {
        match &self.entries {
            Entries::Memory { entries, .. } => entries.len(),
            Entries::File { len } => *len,
        }
    }

    pub(crate) fn get(&self, i: usize) -> Result<E> {
        match &self.entries {
            Entries::Memory { entries, .. } => Ok(entries[i]),
            Entries::File { .. } => {
                let mut buf = [0u8; 16];
                let buf = &mut buf[..E::SIZE];
                self.open_file()?
                    .read_exact_at(buf, (i * E::SIZE) as u64)
                    .map_err(Error::io("read index", &self.path))?;
                Ok(E::decode(buf))
            }
        }
    }

    pub(crate) fn last(&self) -> Result<Option<E>> {
        match self.len() {
            0 => Ok(None),
            n => self.get(n - 1).map(Some),
        }
    }

    /// Number of leading entries for which `pred` holds (entries must be partitioned by it).
    pub(crate) fn partition_point(&self, mut pred: impl FnMut(&E) -> bool) -> Result<usize> {
        match &self.entries {
            Entries::Memory { entries, .. } => Ok(entries.partition_point(pred)),
            Entries::File { len } => {
                let (mut lo, mut hi) = (0usize, *len);
                while lo < hi {
                    let mid = lo + (hi - lo) / 2;
                    if pred(&self.get(mid)?) {
                        lo = mid + 1;
                    } else {
                        hi = mid;
                    }
                }
                Ok(lo)
            }
        }
    }

    /// The last entry for which `pred` holds, for a predicate like `entry <= target`.
    pub(crate) fn floor(&self, pred: impl FnMut(&E) -> bool) -> Result<Option<E>> {
        match self.partition_point(pred)? {
            0 => Ok(None),
            n => self.get(n - 1).map(Some),
        }
    }

    /// Appends an entry (memory mode only; the active segment's index).
    pub(crate) fn push(&mut self, e: E) {
        match &mut self.entries {
            Entries::Memory { entries, .. } => entries.push(e),
            Entries::File { .. } => {
                debug_assert!(false, "push on a closed index");
            }
        }
    }

    /// Copies the in-memory entries (memory mode) or reads them all from the file.
    pub(crate) fn all(&self) -> Result<Vec<E>> {
        match &self.entries {
            Entries::Memory { entries, .. } => Ok(entries.clone()),
            Entries::File { len } => (0..*len).map(|i| self.get(i)).collect(),
        }
    }

    /// Writes entries not yet in the file (no fsync).
    pub(crate) fn flush_pending(&mut self) -> Result<()> {
        if let Entries::Memory { entries, persisted } = &mut self.entries
            && *persisted < entries.len()
        {
            let mut buf = vec![0u8; (entries.len() - *persisted) * E::SIZE];
            for (chunk, e) in buf.chunks_exact_mut(E::SIZE).zip(&entries[*persisted..]) {
                e.encode(chunk);
            }
            let file = self.file.get("open index")?;
            if let Err(e) = file.write_all_at(&buf, (*persisted * E::SIZE) as u64) {
                let error = Error::io("write index", &self.path)(e);
                if error.is_no_space() {
                    // A partly written index could pass the sanity check of the next open: leave
                    // an empty file instead (rebuilt then) and write every entry on the next flush.
                    let _ = file.set_len(0);
                    *persisted = 0;
                }
                return Err(error);
            }
            *persisted = entries.len();
        }
        Ok(())
    }

    /// Writes pending entries and switches to file mode (segment closed). On a full disk the
    /// entries stay in memory (lookups stay exact) and the empty file is rebuilt on the next open.
    pub(crate) fn freeze(&mut self) -> Result<()> {
        match self.flush_pending() {
            Err(error) if error.is_no_space() => {
                tracing::warn!(path = %self.path.display(), %error, "disk full: index kept in memory");
                return Ok(());
            }
            result => result?,
        }
        let len = self.len();
        self.entries = Entries::File { len };
        Ok(())
    }

    /// Loads a file-mode index into memory (segment becomes active again).
    pub(crate) fn thaw(&mut self) -> Result<()> {
        if let Entries::File { len } = self.entries {
            let entries = self.all()?;
            self.entries = Entries::Memory {
                entries,
                persisted: len,
            };
        }
        Ok(())
    }

    /// Keeps the first `n` entries, in memory and in the file.
    pub(crate) fn truncate(&mut self, n: usize) -> Result<()> {
        if n >= self.len() {
            return Ok(());
        }
        let persisted_after = match &mut self.entries {
            Entries::Memory { entries, persisted } => {
                entries.truncate(n);
                *persisted = (*persisted).min(n);
                *persisted
            }
            Entries::File { len } => {
                *len = n;
                n
            }
        };
        self.open_file()?
            .set_len((persisted_after * E::SIZE) as u64)
            .map_err(Error::io("truncate index", &self.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_file_mode_lookups_match_memory_mode() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("0.index");
        let entries: Vec<OffsetEntry> = (0..1000u32)
            .map(|i| OffsetEntry {
                rel_offset: i * 10,
                position: i * 100,
            })
            .collect();
        let mut idx = Index::create_with(path.clone(), entries.clone()).expect("create");
        idx.freeze().expect("freeze");
        let reopened = Index::<OffsetEntry>::open(&FileCache::global(), path, false)
            .expect("open")
            .expect("valid");
        assert_eq!(reopened.len(), 1000);
        for target in [0u32, 5, 10, 9995, 9990, 12345] {
            let mem = entries.iter().rev().find(|e| e.rel_offset <= target).copied();
            assert_eq!(reopened.floor(|e| e.rel_offset <= target).expect("floor"), mem);
            assert_eq!(idx.floor(|e| e.rel_offset <= target).expect("floor"), mem);
        }
    }

    #[test]
    fn index_that_cannot_be_written_stays_in_memory_and_leaves_no_partial_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("0.index");
        // Every write to /dev/full fails with ENOSPC, as on a full disk.
        std::os::unix::fs::symlink("/dev/full", &path).expect("symlink");
        let mut idx = Index::<OffsetEntry>::create(&FileCache::global(), path).expect("create");
        for i in 0..100u32 {
            idx.push(OffsetEntry {
                rel_offset: i,
                position: i * 10,
            });
        }
        let error = idx.flush_pending().expect_err("disk full");
        assert!(error.is_no_space(), "{error}");
        idx.freeze().expect("a full disk keeps the index in memory");
        assert_eq!(idx.len(), 100);
        assert_eq!(
            idx.floor(|e| e.rel_offset <= 55).expect("lookup"),
            Some(OffsetEntry {
                rel_offset: 55,
                position: 550
            })
        );
        assert!(matches!(idx.entries, Entries::Memory { persisted: 0, .. }));
    }

    #[test]
    fn index_open_wrong_size_is_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("0.timeindex");
        std::fs::write(&path, [0u8; 13]).expect("write");
        let files = FileCache::global();
        assert!(Index::<TimeEntry>::open(&files, path, true).expect("open").is_none());
        assert!(
            Index::<TimeEntry>::open(&files, dir.path().join("missing"), true)
                .expect("open")
                .is_none()
        );
    }

    #[test]
    fn index_truncate_and_pending_flush_keep_file_in_step() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("0.timeindex");
        let mut idx = Index::<TimeEntry>::create(&FileCache::global(), path.clone()).expect("create");
        for i in 0..10 {
            idx.push(TimeEntry {
                timestamp: i,
                rel_offset: i as u32,
            });
        }
        idx.flush_pending().expect("flush");
        idx.truncate(4).expect("truncate");
        idx.push(TimeEntry {
            timestamp: 100,
            rel_offset: 50,
        });
        idx.flush_pending().expect("flush");
        let loaded = Index::<TimeEntry>::open(&FileCache::global(), path, true)
            .expect("open")
            .expect("valid");
        assert_eq!(loaded.len(), 5);
        assert_eq!(loaded.last().expect("last").map(|e| e.timestamp), Some(100));
    }
}
