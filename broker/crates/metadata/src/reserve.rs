//! A reserve of disk space beside the metadata log: a preallocated file that is deleted when a
//! metadata append finds the disk full, so that append (a DeleteTopics, which then frees space,
//! or any other small metadata change) still commits. It is made again once the disk has room.
//!
//! Why a reserve file rather than refusing produce below a free-space threshold (Redpanda's
//! `storage_min_free_bytes`): the file holds real, allocated blocks, so it works whatever filled
//! the disk (another process, a log file, a cache), has no check-then-write race, and costs
//! nothing on the produce path.

use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::path::{Path, PathBuf};

/// Bytes written per call when the file system cannot preallocate.
const ZERO_CHUNK: usize = 64 * 1024;

/// The reserve file and its size.
#[derive(Debug)]
pub(crate) struct Reserve {
    path: PathBuf,
    bytes: u64,
}

/// True if `error` says the file system is out of space (or quota).
pub(crate) fn is_no_space(error: &io::Error) -> bool {
    matches!(error.kind(), ErrorKind::StorageFull | ErrorKind::QuotaExceeded)
}

impl Reserve {
    pub(crate) fn new(path: PathBuf, bytes: u64) -> Reserve {
        Reserve { path, bytes }
    }

    fn dir(&self) -> &Path {
        self.path.parent().unwrap_or_else(|| Path::new("."))
    }

    /// Makes sure the reserve exists (true) when the disk has at least twice its size free;
    /// otherwise leaves it missing (false), so making it never fills the disk itself.
    pub(crate) fn ensure(&self) -> io::Result<bool> {
        if self.bytes == 0 {
            match fs::remove_file(&self.path) {
                Err(e) if e.kind() != ErrorKind::NotFound => return Err(e),
                _ => return Ok(false),
            }
        }
        match fs::metadata(&self.path) {
            Ok(meta) if meta.len() >= self.bytes => return Ok(true),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let stat = rustix::fs::statvfs(self.dir())?;
        let free = stat.f_bavail.saturating_mul(stat.f_frsize);
        if free < self.bytes.saturating_mul(2) {
            return Ok(false);
        }
        let tmp = self.path.with_extension("reserve.tmp");
        let made = self.write(&tmp).and_then(|()| fs::rename(&tmp, &self.path));
        if let Err(error) = made {
            let _ = fs::remove_file(&tmp);
            return Err(error);
        }
        File::open(self.dir())?.sync_all()?;
        Ok(true)
    }

    fn write(&self, tmp: &Path) -> io::Result<()> {
        let mut file = OpenOptions::new().write(true).create(true).truncate(true).open(tmp)?;
        let allocated = rustix::fs::fallocate(&file, rustix::fs::FallocateFlags::empty(), 0, self.bytes);
        if allocated.is_err() {
            // No preallocation on this file system: zeros take the blocks as well.
            let zeros = vec![0u8; ZERO_CHUNK];
            let mut left = self.bytes;
            while left > 0 {
                let n = left.min(ZERO_CHUNK as u64) as usize;
                file.write_all(&zeros[..n])?;
                left -= n as u64;
            }
        }
        file.sync_all()
    }

    /// Deletes the reserve (true if there was one) and commits the directory, so the freed
    /// blocks can be allocated at once (ext4 reuses freed blocks only after a journal commit).
    pub(crate) fn release(&self) -> io::Result<bool> {
        match fs::remove_file(&self.path) {
            Ok(()) => {
                File::open(self.dir())?.sync_all()?;
                Ok(true)
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_is_made_once_and_released() {
        let dir = tempfile::tempdir().expect("tempdir");
        let reserve = Reserve::new(dir.path().join("metadata.reserve"), 256 * 1024);
        assert!(reserve.ensure().expect("ensure"));
        let meta = fs::metadata(dir.path().join("metadata.reserve")).expect("exists");
        assert_eq!(meta.len(), 256 * 1024);
        assert!(reserve.ensure().expect("still there"));
        assert!(reserve.release().expect("release"));
        assert!(!reserve.release().expect("already gone"));
        assert!(!dir.path().join("metadata.reserve").exists());
        // Size 0 means no reserve: an old one is removed.
        assert!(reserve.ensure().expect("again"));
        assert!(
            !Reserve::new(dir.path().join("metadata.reserve"), 0)
                .ensure()
                .expect("off")
        );
        assert!(!dir.path().join("metadata.reserve").exists());
    }
}
