//! Uploading one closed segment as one object, garbage-collecting orphans, deleting objects.
//!
//! Crash-safety order (kafka.md §10): the object is PUT under a fresh name first; only then is it
//! named in the manifest. A crash between the two leaves an unreferenced object, which
//! [`RemoteStore::collect_orphans`] removes later; a manifest entry never names a missing object.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::{ObjectStoreExt, PutPayload, WriteMultipart};

use crate::error::{Error, Result};
use crate::format::{FOOTER_LEN, ObjectBuilder};
use crate::limit::RateLimiter;
use crate::manifest::{Manifest, SegmentMeta};
use crate::store::{RemoteStore, TopicPartition};

/// Segment data is read from disk and sent in pieces of this size.
const PIECE_BYTES: usize = 8 * 1024 * 1024;

/// A closed local segment to upload.
#[derive(Clone, Debug)]
pub struct SegmentSource {
    /// Base offset of the segment.
    pub base_offset: i64,
    /// Offset after the segment (next segment's base offset).
    pub next_offset: i64,
    /// Bytes of complete batches in the file.
    pub size: u64,
    /// The open segment file (stays readable even if the segment is deleted meanwhile).
    pub file: Arc<File>,
    /// For messages.
    pub path: String,
    /// The log's producer-state snapshot file at `next_offset` (empty if none), stored in the
    /// object so producer state can be rebuilt from the bucket.
    pub producer_snapshot: Bytes,
}

impl RemoteStore {
    /// Uploads one segment as a new object (fresh name per attempt) and returns its manifest
    /// entry. Not yet committed: the caller adds it to the manifest.
    pub async fn upload_segment(
        &self,
        tp: TopicPartition,
        src: &SegmentSource,
        leader_epoch: i32,
        chunk_bytes: u32,
        limiter: &RateLimiter,
    ) -> Result<SegmentMeta> {
        let name = RemoteStore::new_segment_name(src.base_offset, leader_epoch);
        let path = self.segment_path(&tp, &name);
        let mut builder = ObjectBuilder::new(chunk_bytes);
        let small = src.size <= PIECE_BYTES as u64;
        let mut upload = if small {
            None
        } else {
            let multipart = self
                .inner()
                .put_multipart(&path)
                .await
                .map_err(Error::store("put multipart", &path))?;
            Some(WriteMultipart::new_with_chunk_size(multipart, PIECE_BYTES))
        };
        let mut whole = Vec::new();
        let mut pos = 0u64;
        let result: Result<()> = async {
            while pos < src.size {
                let len = (src.size - pos).min(PIECE_BYTES as u64) as usize;
                let piece = read_piece(&src.file, &src.path, pos, len).await?;
                limiter.acquire(len as u64).await;
                builder
                    .push(&piece)
                    .map_err(|reason| Error::corrupt(&src.path, reason))?;
                match upload.as_mut() {
                    Some(up) => {
                        up.wait_for_capacity(2).await.map_err(Error::store("put part", &path))?;
                        up.put(piece);
                    }
                    None => whole.extend_from_slice(&piece),
                }
                pos += len as u64;
            }
            Ok(())
        }
        .await;
        let finished = result.and_then(|()| {
            builder
                .finish(src.producer_snapshot.clone())
                .map_err(|reason| Error::corrupt(&src.path, reason))
        });
        let (meta, encoded_meta, footer) = match finished {
            Ok(done) => done,
            Err(e) => {
                if let Some(up) = upload {
                    let _ = up.abort().await;
                }
                return Err(e);
            }
        };
        let footer_bytes = footer.encode();
        let object_bytes = footer.data_len + footer.meta_len + FOOTER_LEN as u64;
        match upload {
            Some(mut up) => {
                up.write(&encoded_meta);
                up.write(&footer_bytes);
                up.finish().await.map_err(Error::store("complete multipart", &path))?;
            }
            None => {
                whole.extend_from_slice(&encoded_meta);
                whole.extend_from_slice(&footer_bytes);
                self.inner()
                    .put(&path, PutPayload::from(Bytes::from(whole)))
                    .await
                    .map_err(Error::store("put", &path))?;
            }
        }
        Ok(SegmentMeta {
            name,
            base_offset: footer.base_offset,
            last_offset: footer.last_offset,
            next_offset: src.next_offset.max(footer.last_offset + 1),
            data_bytes: footer.data_len,
            object_bytes,
            max_timestamp: footer.max_timestamp,
            epochs: meta.epochs,
            data_crc32c: footer.data_crc,
        })
    }

    /// Deletes objects under the partition's `segments/` folder that the manifest names neither
    /// as committed nor as being deleted. Only call when no upload for the partition is in
    /// flight. Returns how many objects were deleted.
    pub async fn collect_orphans(&self, manifest: &Manifest) -> Result<usize> {
        let tp = TopicPartition {
            topic_id: manifest.topic_id,
            partition: manifest.partition,
        };
        let prefix = self.segments_prefix(&tp);
        let mut listing = self.inner().list(Some(&prefix));
        let mut orphans = Vec::new();
        while let Some(item) = listing.next().await {
            let meta = item.map_err(Error::store("list", &prefix))?;
            let Some(name) = meta.location.filename() else {
                continue;
            };
            let known = manifest
                .segments
                .iter()
                .chain(&manifest.deleting)
                .any(|s| s.name == name);
            if !known {
                orphans.push(meta.location.clone());
            }
        }
        for path in &orphans {
            tracing::info!(key = %path, "deleting orphaned segment object");
            self.delete_idempotent(path).await?;
        }
        Ok(orphans.len())
    }

    /// Deletes the objects of `segments` (already out of the manifest's committed list).
    pub async fn delete_segments(&self, tp: TopicPartition, segments: &[SegmentMeta]) -> Result<()> {
        for s in segments {
            self.delete_idempotent(&self.segment_path(&tp, &s.name)).await?;
        }
        Ok(())
    }

    /// Deletes everything under the partition's prefix (objects and manifest), for a deleted
    /// topic. Returns how many objects were deleted.
    pub async fn delete_partition(&self, tp: TopicPartition) -> Result<usize> {
        let prefix = self.partition_prefix(&tp);
        let mut listing = self.inner().list(Some(&prefix));
        let mut doomed = Vec::new();
        while let Some(item) = listing.next().await {
            doomed.push(item.map_err(Error::store("list", &prefix))?.location);
        }
        // Segments first, the manifest last: a crash midway leaves a manifest whose missing
        // objects belong to a topic id that no longer exists.
        doomed.sort_by_key(|p| p.as_ref().ends_with("manifest.json"));
        for path in &doomed {
            self.delete_idempotent(path).await?;
        }
        Ok(doomed.len())
    }

    async fn delete_idempotent(&self, path: &object_store::path::Path) -> Result<()> {
        match self.inner().delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(Error::store("delete", path)(e)),
        }
    }
}

async fn read_piece(file: &Arc<File>, path: &str, pos: u64, len: usize) -> Result<Bytes> {
    let file = Arc::clone(file);
    let p = path.to_string();
    tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, pos)
            .map_err(Error::io("read segment", &p))?;
        Ok(Bytes::from(buf))
    })
    .await
    .map_err(|e| Error::io("read segment", path)(std::io::Error::other(e)))?
}
