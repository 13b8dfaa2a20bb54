//! The bounded cache of open segment and index files. A segment holds [`FileHandle`]s, not
//! file descriptors: a handle opens its file on use through a process-wide LRU
//! ([`FileCache::global`]) and the least recently used files are closed when more than the
//! cache's capacity are open. So a broker with many partitions and segments keeps a bounded
//! number of descriptors (Kafka keeps every segment open; that exhausted `RLIMIT_NOFILE` with a
//! few thousand partitions). Callers that got an `Arc<File>` (a read plan, a flush) keep that
//! descriptor until they drop it, even if the cache evicted it meanwhile.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use lru::LruCache;
use parking_lot::Mutex;

use crate::error::{Error, Result};

/// Capacity of the global cache until [`FileCache::set_capacity`] is called.
pub const DEFAULT_MAX_OPEN_FILES: usize = 4096;

static GLOBAL: OnceLock<Arc<FileCache>> = OnceLock::new();

/// A process-wide (or, in tests, private) LRU of open files, keyed by handle.
#[derive(Debug)]
pub struct FileCache {
    inner: Mutex<Inner>,
    next_id: AtomicU64,
    opens: AtomicU64,
}

#[derive(Debug)]
struct Inner {
    open: LruCache<u64, Arc<File>>,
    capacity: usize,
}

impl FileCache {
    /// A cache that keeps at most `capacity` files open (at least 1).
    pub fn new(capacity: usize) -> Arc<FileCache> {
        Arc::new(FileCache {
            inner: Mutex::new(Inner {
                open: LruCache::unbounded(),
                capacity: capacity.max(1),
            }),
            next_id: AtomicU64::new(0),
            opens: AtomicU64::new(0),
        })
    }

    /// The cache every [`crate::Log::open`] uses.
    pub fn global() -> Arc<FileCache> {
        Arc::clone(GLOBAL.get_or_init(|| FileCache::new(DEFAULT_MAX_OPEN_FILES)))
    }

    /// Changes the capacity, closing the least recently used files above it.
    pub fn set_capacity(&self, capacity: usize) {
        let evicted = {
            let mut inner = self.inner.lock();
            inner.capacity = capacity.max(1);
            inner.evict()
        };
        drop(evicted);
    }

    /// The most files kept open.
    pub fn capacity(&self) -> usize {
        self.inner.lock().capacity
    }

    /// Files open in the cache now.
    pub fn open_files(&self) -> usize {
        self.inner.lock().open.len()
    }

    /// Files opened (re-opened after eviction included) since the cache was made.
    pub fn opens(&self) -> u64 {
        self.opens.load(Ordering::Relaxed)
    }

    fn insert(&self, id: u64, file: Arc<File>) {
        let evicted = {
            let mut inner = self.inner.lock();
            inner.open.put(id, file);
            inner.evict()
        };
        // Closing files is a syscall each: not under the lock.
        drop(evicted);
    }

    fn lookup(&self, id: u64) -> Option<Arc<File>> {
        self.inner.lock().open.get(&id).cloned()
    }

    fn forget(&self, id: u64) {
        let removed = self.inner.lock().open.pop(&id);
        drop(removed);
    }
}

impl Inner {
    fn evict(&mut self) -> Vec<Arc<File>> {
        let mut evicted = Vec::new();
        while self.open.len() > self.capacity {
            match self.open.pop_lru() {
                Some((_, file)) => evicted.push(file),
                None => break,
            }
        }
        evicted
    }
}

/// How a cached file is (re)opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// A segment's `.log`: read and append.
    Log,
    /// An index file: read and positional write.
    Index,
}

impl Mode {
    fn options(self) -> OpenOptions {
        let mut options = OpenOptions::new();
        match self {
            Mode::Log => options.read(true).append(true),
            Mode::Index => options.read(true).write(true),
        };
        options
    }
}

/// One segment or index file, opened on demand through a [`FileCache`]. Cheap to clone; the
/// cache entry goes when the last clone is dropped.
#[derive(Clone, Debug)]
pub(crate) struct FileHandle(Arc<HandleInner>);

#[derive(Debug)]
struct HandleInner {
    id: u64,
    path: Arc<Path>,
    mode: Mode,
    cache: Arc<FileCache>,
}

impl Drop for HandleInner {
    fn drop(&mut self) {
        self.cache.forget(self.id);
    }
}

impl FileHandle {
    /// A handle for a file just opened (or created) by the caller with `mode`'s access.
    pub(crate) fn with_open(cache: &Arc<FileCache>, path: Arc<Path>, mode: Mode, file: File) -> FileHandle {
        let id = cache.next_id.fetch_add(1, Ordering::Relaxed);
        cache.opens.fetch_add(1, Ordering::Relaxed);
        cache.insert(id, Arc::new(file));
        FileHandle(Arc::new(HandleInner {
            id,
            path,
            mode,
            cache: Arc::clone(cache),
        }))
    }

    pub(crate) fn path(&self) -> &Arc<Path> {
        &self.0.path
    }

    /// True if both handles name the same cache entry (the same opened segment).
    pub(crate) fn same(&self, other: &FileHandle) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// The open file, reopened by path if the cache closed it. `NotFound` if it was deleted.
    pub(crate) fn get_io(&self) -> io::Result<Arc<File>> {
        let inner = &self.0;
        if let Some(file) = inner.cache.lookup(inner.id) {
            return Ok(file);
        }
        let file = Arc::new(inner.mode.options().open(&inner.path)?);
        inner.cache.opens.fetch_add(1, Ordering::Relaxed);
        inner.cache.insert(inner.id, Arc::clone(&file));
        Ok(file)
    }

    /// [`FileHandle::get_io`] with the crate's error (`op` names what needed the file).
    pub(crate) fn get(&self, op: &'static str) -> Result<Arc<File>> {
        self.get_io().map_err(Error::io(op, &self.0.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handle(cache: &Arc<FileCache>, dir: &Path, name: &str) -> FileHandle {
        let path: Arc<Path> = dir.join(name).into();
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .expect("create");
        FileHandle::with_open(cache, path, Mode::Log, file)
    }

    #[test]
    fn file_cache_keeps_at_most_capacity_open_and_reopens_on_use() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = FileCache::new(3);
        let handles: Vec<FileHandle> = (0..10)
            .map(|i| handle(&cache, dir.path(), &format!("{i}.log")))
            .collect();
        assert_eq!(cache.open_files(), 3);
        assert_eq!(cache.opens(), 10);
        // Every file is still usable: the evicted ones are reopened (and others evicted).
        for (i, h) in handles.iter().enumerate() {
            let mut f: &File = &h.get("write").expect("reopen");
            std::io::Write::write_all(&mut f, format!("{i}").as_bytes()).expect("write");
            assert!(cache.open_files() <= 3);
        }
        for (i, h) in handles.iter().enumerate() {
            let text = std::fs::read_to_string(h.path()).expect("read");
            assert_eq!(text, format!("{i}"));
        }
        // Least recently used goes first: touching 9 keeps it open while two new ones come.
        handles[9].get("read").expect("get");
        let opens = cache.opens();
        let _a = handle(&cache, dir.path(), "a.log");
        let _b = handle(&cache, dir.path(), "b.log");
        handles[9].get("read").expect("get");
        assert_eq!(cache.opens(), opens + 2, "the recently used file stayed open");
        // Dropping a handle drops its entry; shrinking the capacity closes the extra files.
        drop(handles);
        assert!(cache.open_files() <= 2);
        cache.set_capacity(1);
        assert_eq!(cache.open_files(), 1);
    }

    #[test]
    fn file_handle_of_a_deleted_file_is_not_found_once_evicted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = FileCache::new(1);
        let h = handle(&cache, dir.path(), "0.log");
        let held = h.get("read").expect("open");
        std::fs::remove_file(h.path()).expect("unlink");
        // Still cached: the same descriptor, readable after the unlink.
        assert!(Arc::ptr_eq(&held, &h.get("read").expect("cached")));
        let _other = handle(&cache, dir.path(), "1.log");
        assert_eq!(h.get_io().expect_err("gone").kind(), io::ErrorKind::NotFound);
    }
}
