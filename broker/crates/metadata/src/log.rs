//! The local metadata log: an append-only file of record batches, each framed as
//! `u32 length | u32 crc32c | json`, fsynced on every append. Replay stops at the first torn or
//! corrupt entry, which is truncated away (it was never acknowledged).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::records::MetadataRecord;
use crate::{Error, Result};

const ENTRY_HEADER_LEN: usize = 8;
/// Bound on one entry so a corrupt length can never make replay allocate gigabytes.
const MAX_ENTRY_BYTES: usize = 64 * 1024 * 1024;

/// Append-only, crash-safe log of metadata record batches.
#[derive(Debug)]
pub struct MetadataLog {
    path: PathBuf,
    file: File,
}

impl MetadataLog {
    /// Opens (or creates) the log at `path` and returns it with every intact batch, in order.
    pub fn open(path: &Path) -> Result<(MetadataLog, Vec<Vec<MetadataRecord>>)> {
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
        while let Some(header) = bytes.get(pos..pos + ENTRY_HEADER_LEN) {
            let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
            let crc = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
            let start = pos + ENTRY_HEADER_LEN;
            let Some(body) = bytes.get(start..start + len).filter(|_| len <= MAX_ENTRY_BYTES) else {
                break;
            };
            if crc32c::crc32c(body) != crc {
                break;
            }
            let Ok(batch) = serde_json::from_slice::<Vec<MetadataRecord>>(body) else {
                break;
            };
            batches.push(batch);
            pos = start + len;
        }
        if pos < bytes.len() {
            tracing::warn!(path = %path.display(), valid_bytes = pos, file_bytes = bytes.len(), "truncating torn metadata log tail");
            file.set_len(pos as u64).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        file.seek(SeekFrom::End(0)).map_err(io)?;
        Ok((
            MetadataLog {
                path: path.to_path_buf(),
                file,
            },
            batches,
        ))
    }

    /// Appends one batch durably (written and fsynced before returning).
    pub fn append(&mut self, batch: &[MetadataRecord]) -> Result<()> {
        let body = serde_json::to_vec(batch)?;
        let mut entry = Vec::with_capacity(ENTRY_HEADER_LEN + body.len());
        entry.extend_from_slice(&(body.len() as u32).to_be_bytes());
        entry.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        entry.extend_from_slice(&body);
        let io = |source| Error::Io {
            path: self.path.clone(),
            source,
        };
        self.file.write_all(&entry).map_err(io)?;
        self.file.sync_data().map_err(io)
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
            let (mut log, batches) = MetadataLog::open(&path).expect("opens");
            assert!(batches.is_empty());
            log.append(&[MetadataRecord::Topic {
                name: "t".into(),
                topic_id: TopicId::random(),
            }])
            .expect("append");
            log.append(&config("1")).expect("append");
        }
        let (_, batches) = MetadataLog::open(&path).expect("reopens");
        assert_eq!(batches.len(), 2);
        assert_eq!(batches[1], config("1"));
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
        let (mut log, batches) = MetadataLog::open(&path).expect("reopens");
        assert_eq!(batches, vec![config("1")]);
        assert!(std::fs::metadata(&path).expect("stat").len() < len);
        // The log stays appendable after truncation, and garbage after the end is dropped too.
        log.append(&config("3")).expect("append");
        drop(log);
        let mut f = OpenOptions::new().append(true).open(&path).expect("open");
        f.write_all(&[0xff, 0xff, 0xff]).expect("write");
        let (_, batches) = MetadataLog::open(&path).expect("reopens");
        assert_eq!(batches, vec![config("1"), config("3")]);
    }
}
