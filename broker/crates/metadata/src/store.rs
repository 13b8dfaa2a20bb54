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
        let (log, batches) = MetadataLog::open(path)?;
        let mut image = MetadataImage::default();
        for batch in &batches {
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
}
