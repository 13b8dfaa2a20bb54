//! The metadata store: the one writer of the metadata log and publisher of new images. Readers
//! take the current `Arc<MetadataImage>` and never see a half-applied batch.

use std::path::Path;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::Result;
use crate::image::MetadataImage;
use crate::log::MetadataLog;
use crate::records::MetadataRecord;

/// Local (single-node) metadata store.
#[derive(Debug)]
pub struct MetadataStore {
    log: Mutex<MetadataLog>,
    image: RwLock<Arc<MetadataImage>>,
}

impl MetadataStore {
    /// Opens the log at `path` and replays it into the first image.
    pub fn open(path: &Path) -> Result<MetadataStore> {
        let (log, replay) = MetadataLog::open(path)?;
        let mut image = MetadataImage {
            offset: replay.base_offset,
            ..MetadataImage::default()
        };
        for batch in &replay.batches {
            match image.apply(batch) {
                Ok(next) => image = next,
                // A batch that was durably written but does not apply is a bug, not a crash.
                Err(error) => {
                    tracing::error!(%error, offset = image.offset, "skipping metadata batch that does not apply")
                }
            }
        }
        Ok(MetadataStore {
            log: Mutex::new(log),
            image: RwLock::new(Arc::new(image)),
        })
    }

    /// Keeps `bytes` of disk space allocated beside the metadata log and releases it when an
    /// append finds the disk full (0 = no reserve); makes it now if the disk has room.
    pub fn set_reserve(&self, bytes: u64) {
        self.log.lock().set_reserve(bytes);
    }

    /// Makes the disk reserve again after it was released, once the disk has room.
    pub fn ensure_reserve(&self) {
        self.log.lock().ensure_reserve();
    }

    /// Rewrites the log as the current image (one checkpoint and one batch) once it holds more
    /// than `max_batches` batches, so it stops growing with every change ever made; true if it
    /// did. A failure (a full disk) keeps the old log and is logged, never fatal.
    pub fn compact_if_over(&self, max_batches: u64) -> bool {
        let mut log = self.log.lock();
        if log.batches() <= max_batches.max(1) {
            return false;
        }
        let image = self.image();
        let records = image.to_records();
        let before = log.batches();
        // The image's offset counts the batch of records written after the checkpoint.
        match log.compact(image.offset.saturating_sub(1), &records) {
            Ok(()) => {
                tracing::info!(
                    batches = before,
                    offset = image.offset,
                    records = records.len(),
                    "compacted the metadata log"
                );
                true
            }
            Err(error) => {
                tracing::warn!(%error, "cannot compact the metadata log; keeping it as it is");
                false
            }
        }
    }

    /// The current image.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.image.read().clone()
    }

    /// Validates `records` against the current image, makes them durable, then publishes the new
    /// image. Writers are serialised, so the check and the append see the same image.
    pub fn commit(&self, records: Vec<MetadataRecord>) -> Result<Arc<MetadataImage>> {
        let mut log = self.log.lock();
        let next = Arc::new(self.image().apply(&records)?);
        log.append(&records)?;
        *self.image.write() = next.clone();
        Ok(next)
    }

    /// Like [`MetadataStore::commit`], but the records are computed from the current image while
    /// writers are held off, so a check-then-write (e.g. "create if absent") is atomic.
    pub fn commit_with<T>(
        &self,
        build: impl FnOnce(&MetadataImage) -> std::result::Result<(Vec<MetadataRecord>, T), crate::Error>,
    ) -> Result<(Arc<MetadataImage>, T)> {
        let mut log = self.log.lock();
        let current = self.image();
        let (records, out) = build(&current)?;
        if records.is_empty() {
            return Ok((current, out));
        }
        let next = Arc::new(current.apply(&records)?);
        log.append(&records)?;
        *self.image.write() = next.clone();
        Ok((next, out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::TopicId;

    #[test]
    fn store_restores_image_after_reopen_with_same_topic_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("metadata.log");
        let id = TopicId::random();
        {
            let store = MetadataStore::open(&path).expect("opens");
            store
                .commit(vec![MetadataRecord::Topic {
                    name: "t".into(),
                    topic_id: id,
                }])
                .expect("commits");
            assert!(
                store
                    .commit(vec![MetadataRecord::Topic {
                        name: "t".into(),
                        topic_id: id
                    }])
                    .is_err()
            );
        }
        let store = MetadataStore::open(&path).expect("reopens");
        assert_eq!(store.image().topic("t").expect("restored").id, id);
        assert_eq!(store.image().offset, 1);
    }

    #[test]
    fn a_compacted_log_replays_to_the_same_image_and_offsets_keep_growing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("metadata.log");
        let store = MetadataStore::open(&path).expect("opens");
        for i in 0..50 {
            store
                .commit(vec![MetadataRecord::Topic {
                    name: format!("t{i}"),
                    topic_id: TopicId::random(),
                }])
                .expect("commits");
        }
        store
            .commit(vec![MetadataRecord::Topic {
                name: "gone".into(),
                topic_id: TopicId::random(),
            }])
            .expect("commits");
        let gone = store.image().topic("gone").expect("exists").id;
        store
            .commit(vec![MetadataRecord::RemoveTopic { topic_id: gone }])
            .expect("commits");
        let before = store.image();
        let size_before = std::fs::metadata(&path).expect("stat").len();
        assert!(!store.compact_if_over(100), "under the limit: left alone");
        assert!(store.compact_if_over(10));
        assert!(std::fs::metadata(&path).expect("stat").len() < size_before);
        assert_eq!(store.image(), before);
        let after = store
            .commit(vec![MetadataRecord::Topic {
                name: "late".into(),
                topic_id: TopicId::random(),
            }])
            .expect("commits after the compaction");
        assert_eq!(after.offset, before.offset + 1);
        drop(store);
        let store = MetadataStore::open(&path).expect("reopens");
        assert_eq!(*store.image(), *after, "replay gives the same image at the same offset");
        assert!(store.image().topic("gone").is_none());
        assert!(!store.compact_if_over(10), "two batches: nothing to do");
    }
}
