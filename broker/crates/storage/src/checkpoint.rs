//! Small checkpoint files in the partition directory (log-start-offset, recovery-point,
//! high-watermark): atomic replace (temp file, fsync, rename, fsync dir) and parsing.
//!
//! Format, like Kafka's offset checkpoints: a version line (`0`) then the value on its own line.

use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::path::Path;

use crate::error::{Error, Result};

const VERSION: &str = "0";
/// Suffix of the temporary file written before the rename.
pub(crate) const TMP_SUFFIX: &str = ".tmp";

/// Replaces `dir/name` atomically with `contents`: write `name.tmp`, fsync it, rename over
/// `name`, fsync the directory.
pub(crate) fn write_atomic(dir: &Path, name: &str, contents: &[u8]) -> Result<()> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
    {
        let mut f = File::create(&tmp).map_err(Error::io("create", &tmp))?;
        f.write_all(contents).map_err(Error::io("write", &tmp))?;
        f.sync_all().map_err(Error::io("fsync", &tmp))?;
    }
    fs::rename(&tmp, &path).map_err(Error::io("rename", &path))?;
    sync_dir(dir)
}

/// fsyncs a directory so that file creations, renames and deletions in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    let d = File::open(dir).map_err(Error::io("open dir", dir))?;
    d.sync_all().map_err(Error::io("fsync dir", dir))
}

/// Reads a whole small file; `None` if it does not exist.
pub(crate) fn read_optional(path: &Path) -> Result<Option<String>> {
    match fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| Error::CorruptCheckpoint {
                path: path.to_path_buf(),
                reason: "not utf-8".to_string(),
            }),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read", path)(e)),
    }
}

/// Writes a single-offset checkpoint.
pub(crate) fn write_offset(dir: &Path, name: &str, value: i64) -> Result<()> {
    write_atomic(dir, name, format!("{VERSION}\n{value}\n").as_bytes())
}

/// Reads a single-offset checkpoint; `None` if the file does not exist.
pub(crate) fn read_offset(dir: &Path, name: &str) -> Result<Option<i64>> {
    let path = dir.join(name);
    let Some(text) = read_optional(&path)? else {
        return Ok(None);
    };
    let corrupt = |reason: &str| Error::CorruptCheckpoint {
        path: path.clone(),
        reason: reason.to_string(),
    };
    let mut lines = text.lines();
    if lines.next().map(str::trim) != Some(VERSION) {
        return Err(corrupt("unsupported version"));
    }
    let value = lines
        .next()
        .ok_or_else(|| corrupt("missing value"))?
        .trim()
        .parse::<i64>()
        .map_err(|_| corrupt("value is not an integer"))?;
    Ok(Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_checkpoint_round_trips_and_missing_is_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(read_offset(dir.path(), "x").expect("read"), None);
        write_offset(dir.path(), "x", 12345).expect("write");
        assert_eq!(read_offset(dir.path(), "x").expect("read"), Some(12345));
        write_offset(dir.path(), "x", 7).expect("write");
        assert_eq!(read_offset(dir.path(), "x").expect("read"), Some(7));
        assert!(!dir.path().join("x.tmp").exists());
    }

    #[test]
    fn offset_checkpoint_garbage_is_corrupt() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("x"), "0\nabc\n").expect("write");
        assert!(matches!(
            read_offset(dir.path(), "x"),
            Err(Error::CorruptCheckpoint { .. })
        ));
    }
}
