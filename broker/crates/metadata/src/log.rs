//! The local metadata log: an append-only file of record batches, each framed as
//! `u32 length | u32 crc32c | json`, fsynced on every append. Replay stops at the first damaged
//! entry. If nothing valid follows it, it is a torn tail (an append that was never acknowledged)
//! and is truncated away; if a valid entry follows, committed metadata is damaged and opening
//! fails with [`Error::Corrupt`] instead of silently dropping it.
//!
//! A compacted log ([`MetadataLog::compact`]) starts with a checkpoint entry
//! (`{"base_offset":N}`) followed by one batch holding the whole image as records
//! ([`crate::MetadataImage::to_records`]); replay starts the image at offset N, so offsets stay
//! monotonic across compactions. The file is replaced atomically (temporary file, fsync,
//! rename, directory fsync), so a crash leaves either the old or the new log.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::records::MetadataRecord;
use crate::reserve::{self, Reserve};
use crate::{Error, Result};

const ENTRY_HEADER_LEN: usize = 8;
/// Bound on one entry so a corrupt length can never make replay allocate gigabytes.
const MAX_ENTRY_BYTES: usize = 64 * 1024 * 1024;

/// Append-only, crash-safe log of metadata record batches.
#[derive(Debug)]
pub struct MetadataLog {
    path: PathBuf,
    file: File,
    /// Disk space released when an append finds the disk full.
    reserve: Option<Reserve>,
    /// Batches in the file (the compacted image counts as one).
    batches: u64,
}

/// What replaying a log gives: the offset its first batch follows, and its batches in order.
#[derive(Debug, Default)]
pub struct Replay {
    pub base_offset: u64,
    pub batches: Vec<Vec<MetadataRecord>>,
}

/// The first entry of a compacted log.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Checkpoint {
    base_offset: u64,
}

/// Decodes a checkpoint entry at `pos` (only the first entry of a file may be one).
fn checkpoint_at(bytes: &[u8], pos: usize) -> Option<(u64, usize)> {
    let header = bytes.get(pos..pos.checked_add(ENTRY_HEADER_LEN)?)?;
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    if len > 1024 {
        return None;
    }
    let start = pos + ENTRY_HEADER_LEN;
    let body = bytes.get(start..start + len)?;
    if !body.starts_with(b"{\"base_offset\"") || crc32c::crc32c(body) != crc {
        return None;
    }
    let checkpoint = serde_json::from_slice::<Checkpoint>(body).ok()?;
    Some((checkpoint.base_offset, start + len))
}

fn encode_entry(body: &[u8]) -> Vec<u8> {
    let mut entry = Vec::with_capacity(ENTRY_HEADER_LEN + body.len());
    entry.extend_from_slice(&(body.len() as u32).to_be_bytes());
    entry.extend_from_slice(&crc32c::crc32c(body).to_be_bytes());
    entry.extend_from_slice(body);
    entry
}

/// Decodes the entry starting at `pos`: its batch and the position after it, or `None` if no
/// intact entry starts there. Cheap rejections come first (a batch body is a JSON array of
/// objects, so it starts with `[{`), which keeps the scan for a valid entry after a damaged one
/// linear in practice.
fn entry_at(bytes: &[u8], pos: usize) -> Option<(Vec<MetadataRecord>, usize)> {
    let header = bytes.get(pos..pos.checked_add(ENTRY_HEADER_LEN)?)?;
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let crc = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
    if len > MAX_ENTRY_BYTES {
        return None;
    }
    let start = pos + ENTRY_HEADER_LEN;
    let body = bytes.get(start..start + len)?;
    if !body.starts_with(b"[{") && body != b"[]" {
        return None;
    }
    if crc32c::crc32c(body) != crc {
        return None;
    }
    let batch = serde_json::from_slice::<Vec<MetadataRecord>>(body).ok()?;
    Some((batch, start + len))
}

impl MetadataLog {
    /// Opens (or creates) the log at `path` and returns it with every intact batch, in order.
    pub fn open(path: &Path) -> Result<(MetadataLog, Replay)> {
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(io)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        let mut batches = Vec::new();
        let mut pos = 0usize;
        let mut base_offset = 0;
        if let Some((base, next)) = checkpoint_at(&bytes, 0) {
            base_offset = base;
            pos = next;
        }
        while let Some((batch, next)) = entry_at(&bytes, pos) {
            batches.push(batch);
            pos = next;
        }
        if pos < bytes.len() {
            if let Some(next_valid) = (pos + 1..bytes.len()).find(|&at| entry_at(&bytes, at).is_some()) {
                return Err(Error::Corrupt {
                    path: path.to_path_buf(),
                    corrupt_at: pos as u64,
                    next_valid: next_valid as u64,
                });
            }
            tracing::warn!(path = %path.display(), valid_bytes = pos, file_bytes = bytes.len(), "truncating torn metadata log tail");
            file.set_len(pos as u64).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        file.seek(SeekFrom::End(0)).map_err(io)?;
        Ok((
            MetadataLog {
                path: path.to_path_buf(),
                file,
                reserve: None,
                batches: batches.len() as u64,
            },
            Replay { base_offset, batches },
        ))
    }

    /// Batches in the file since it was last compacted (the compacted image counts as one).
    pub fn batches(&self) -> u64 {
        self.batches
    }

    /// Replaces the log with a checkpoint at `base_offset` and one batch, `records` (the image as
    /// records, so replay gives the same image at offset `base_offset + 1`). Atomic: on any
    /// failure (a full disk, say) the old log stays as it was and keeps being appended to.
    pub fn compact(&mut self, base_offset: u64, records: &[MetadataRecord]) -> Result<()> {
        let path = self.path.clone();
        let tmp = self.path.with_extension("log.compacting");
        let io = |source| Error::Io {
            path: path.clone(),
            source,
        };
        let checkpoint = serde_json::to_vec(&Checkpoint { base_offset })?;
        let image = serde_json::to_vec(records)?;
        let written = (|| -> std::io::Result<File> {
            let mut out = File::create(&tmp)?;
            out.write_all(&encode_entry(&checkpoint))?;
            out.write_all(&encode_entry(&image))?;
            out.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            if let Some(dir) = self.path.parent() {
                File::open(dir)?.sync_all()?;
            }
            OpenOptions::new().read(true).append(true).open(&self.path)
        })();
        match written {
            Ok(file) => {
                self.file = file;
                self.batches = 1;
                Ok(())
            }
            Err(error) => {
                let _ = std::fs::remove_file(&tmp);
                Err(io(error))
            }
        }
    }

    /// Appends one batch durably (written and fsynced before returning).
    pub fn append(&mut self, batch: &[MetadataRecord]) -> Result<()> {
        let entry = encode_entry(&serde_json::to_vec(batch)?);
        let path = self.path.clone();
        let io = |source| Error::Io { path, source };
        match self.write_entry(&entry) {
            Err(error) if reserve::is_no_space(&error) && self.release_reserve() => {
                self.write_entry(&entry).map_err(io)
            }
            result => result.map_err(io),
        }?;
        self.batches += 1;
        Ok(())
    }

    /// Writes and fsyncs one entry; on failure cuts the file back to where it was, so a partial
    /// entry never sits before later ones (which would read as damaged committed metadata).
    fn write_entry(&mut self, entry: &[u8]) -> std::io::Result<()> {
        let len = self.file.metadata()?.len();
        let written = self.file.write_all(entry).and_then(|()| self.file.sync_data());
        if written.is_err()
            && let Err(error) = self.file.set_len(len)
        {
            tracing::error!(path = %self.path.display(), %error, "cannot cut a failed metadata append");
        }
        written
    }

    /// Sets the disk reserve kept beside the log (`metadata.reserve`, `bytes` large; 0 = none)
    /// and makes it now if the disk has room.
    pub fn set_reserve(&mut self, bytes: u64) {
        self.reserve = Some(Reserve::new(self.path.with_file_name("metadata.reserve"), bytes));
        self.ensure_reserve();
    }

    /// Makes the reserve again if it was released and the disk has room (call periodically).
    pub fn ensure_reserve(&mut self) {
        let Some(reserve) = &self.reserve else {
            return;
        };
        match reserve.ensure() {
            Ok(_) => {}
            Err(error) => tracing::warn!(path = %self.path.display(), %error, "cannot make the metadata disk reserve"),
        }
    }

    /// Releases the reserve after an append found the disk full; true if space was freed.
    fn release_reserve(&mut self) -> bool {
        let Some(reserve) = &self.reserve else {
            return false;
        };
        match reserve.release() {
            Ok(released) => {
                if released {
                    tracing::warn!(path = %self.path.display(),
                        "disk full: released the metadata disk reserve to commit a metadata change");
                }
                released
            }
            Err(error) => {
                tracing::error!(path = %self.path.display(), %error, "cannot release the metadata disk reserve");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{ConfigResource, TopicId};

    fn config(v: &str) -> Vec<MetadataRecord> {
        vec![MetadataRecord::Config {
            resource: ConfigResource::Topic("t".into()),
            name: "k".into(),
            value: Some(v.into()),
        }]
    }

    #[test]
    fn metadata_log_replays_batches_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("meta/metadata.log");
        {
            let (mut log, replay) = MetadataLog::open(&path).expect("opens");
            assert!(replay.batches.is_empty());
            log.append(&[MetadataRecord::Topic {
                name: "t".into(),
                topic_id: TopicId::random(),
            }])
            .expect("append");
            log.append(&config("1")).expect("append");
        }
        let (_, Replay { batches, .. }) = MetadataLog::open(&path).expect("reopens");
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[1], config("1"));
    }

    #[test]
    fn metadata_log_corruption_before_valid_entries_refuses_to_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("metadata.log");
        {
            let (mut log, _) = MetadataLog::open(&path).expect("opens");
            for v in ["1", "2", "3"] {
                log.append(&config(v)).expect("append");
            }
        }
        let original = std::fs::read(&path).expect("read");
        // Flip a few bytes inside the first entry's body: entries 2 and 3 are still intact.
        let mut bytes = original.clone();
        for b in &mut bytes[ENTRY_HEADER_LEN + 5..ENTRY_HEADER_LEN + 8] {
            *b ^= 0x5a;
        }
        std::fs::write(&path, &bytes).expect("write");
        let err = MetadataLog::open(&path).expect_err("must not open a log with damaged committed entries");
        let Error::Corrupt {
            corrupt_at, next_valid, ..
        } = err
        else {
            panic!("expected Error::Corrupt, got {err:?}");
        };
        assert_eq!(corrupt_at, 0);
        assert!(next_valid > 0);
        // Nothing was truncated or rewritten.
        assert_eq!(std::fs::read(&path).expect("read"), bytes);
        // A damaged length field in the middle is caught too.
        let mut bytes = original.clone();
        let second = {
            let len = u32::from_be_bytes(original[0..4].try_into().expect("4 bytes")) as usize;
            ENTRY_HEADER_LEN + len
        };
        bytes[second] ^= 0x7f;
        std::fs::write(&path, &bytes).expect("write");
        assert!(matches!(
            MetadataLog::open(&path),
            Err(Error::Corrupt { corrupt_at, .. }) if corrupt_at == second as u64
        ));
    }

    #[test]
    fn metadata_log_torn_or_corrupt_tail_is_truncated() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("metadata.log");
        {
            let (mut log, _) = MetadataLog::open(&path).expect("opens");
            log.append(&config("1")).expect("append");
            log.append(&config("2")).expect("append");
        }
        let len = std::fs::metadata(&path).expect("stat").len();
        // Flip one byte inside the second entry: its CRC no longer matches.
        let mut bytes = std::fs::read(&path).expect("read");
        let last = bytes.len() - 3;
        bytes[last] ^= 0xff;
        std::fs::write(&path, &bytes).expect("write");
        let (mut log, Replay { batches, .. }) = MetadataLog::open(&path).expect("reopens");
        assert_eq!(batches, vec![config("1")]);
        assert!(std::fs::metadata(&path).expect("stat").len() < len);
        // The log stays appendable after truncation, and garbage after the end is dropped too.
        log.append(&config("3")).expect("append");
        drop(log);
        let mut f = OpenOptions::new().append(true).open(&path).expect("open");
        f.write_all(&[0xff, 0xff, 0xff]).expect("write");
        let (_, Replay { batches, .. }) = MetadataLog::open(&path).expect("reopens");
        assert_eq!(batches, vec![config("1"), config("3")]);
    }
}
