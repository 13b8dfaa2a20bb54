//! The per-partition remote manifest: which segment objects are committed, the remote log start
//! offset, and objects being deleted. Stored as JSON next to the segments and replaced with a
//! conditional PUT (If-None-Match on first write, If-Match on the ETag after), so two writers can
//! never silently overwrite each other; a writer with an older leader epoch is fenced.

use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::store::{RemoteStore, TopicPartition};

/// Manifest format version.
pub const MANIFEST_VERSION: u32 = 1;

/// One committed segment object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentMeta {
    /// Object name under the partition's `segments/` folder.
    pub name: String,
    /// Base offset of the first batch.
    pub base_offset: i64,
    /// Last offset of the last batch (inclusive).
    pub last_offset: i64,
    /// Offset after this segment (the next segment's base offset); may exceed last_offset + 1.
    pub next_offset: i64,
    /// Bytes of record data.
    pub data_bytes: u64,
    /// Bytes of the whole object.
    pub object_bytes: u64,
    /// Largest batch timestamp.
    pub max_timestamp: i64,
    /// Leader epochs (epoch, start offset) covering the segment.
    pub epochs: Vec<(i32, i64)>,
    /// CRC-32C of the record data.
    pub data_crc32c: u32,
}

/// A partition's manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version.
    pub version: u32,
    /// Topic id.
    pub topic_id: uuid::Uuid,
    /// Partition index.
    pub partition: i32,
    /// Leader epoch of the last writer (fencing).
    pub leader_epoch: i32,
    /// First offset readable from remote storage (advanced by remote retention).
    pub log_start_offset: i64,
    /// Committed segments, ascending and contiguous.
    pub segments: Vec<SegmentMeta>,
    /// Segments past the remote log start whose objects are being deleted (phase two).
    pub deleting: Vec<SegmentMeta>,
}

impl Manifest {
    /// An empty manifest.
    pub fn empty(tp: TopicPartition) -> Manifest {
        Manifest {
            version: MANIFEST_VERSION,
            topic_id: tp.topic_id,
            partition: tp.partition,
            leader_epoch: -1,
            log_start_offset: 0,
            segments: Vec::new(),
            deleting: Vec::new(),
        }
    }

    /// Offset after the last committed segment, or None if nothing is committed.
    pub fn end_offset(&self) -> Option<i64> {
        self.segments.last().map(|s| s.next_offset)
    }

    /// Remote start offset if any segment is committed.
    pub fn start_offset(&self) -> Option<i64> {
        self.segments.first().map(|s| s.base_offset.max(self.log_start_offset))
    }

    /// Bytes of committed record data.
    pub fn data_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.data_bytes).sum()
    }

    /// The committed segment holding `offset` (at or above the remote log start).
    pub fn segment_for(&self, offset: i64) -> Option<&SegmentMeta> {
        if offset < self.log_start_offset {
            return None;
        }
        let i = self.segments.partition_point(|s| s.next_offset <= offset);
        self.segments.get(i).filter(|s| s.base_offset <= offset || i == 0)
    }

    /// The first committed segment at or after `from` whose max timestamp reaches `ts`.
    pub fn segment_for_timestamp(&self, ts: i64, from: i64) -> Option<&SegmentMeta> {
        self.segments
            .iter()
            .filter(|s| s.next_offset > from.max(self.log_start_offset))
            .find(|s| s.max_timestamp >= ts)
    }
}

/// A manifest as loaded, with the version token for the next conditional write.
#[derive(Clone, Debug)]
pub struct VersionedManifest {
    /// The manifest.
    pub manifest: Manifest,
    /// None = the manifest does not exist yet (next write is create-only).
    pub version: Option<UpdateVersion>,
}

impl RemoteStore {
    /// Loads a partition's manifest; a missing one is empty.
    pub async fn load_manifest(&self, tp: TopicPartition) -> Result<VersionedManifest> {
        let path = self.manifest_path(&tp);
        match self.inner().get(&path).await {
            Ok(got) => {
                let version = UpdateVersion {
                    e_tag: got.meta.e_tag.clone(),
                    version: got.meta.version.clone(),
                };
                let bytes = got.bytes().await.map_err(Error::store("get", &path))?;
                let manifest: Manifest = serde_json::from_slice(&bytes)
                    .map_err(|e| Error::corrupt(&path, format!("manifest does not parse: {e}")))?;
                if manifest.topic_id != tp.topic_id || manifest.partition != tp.partition {
                    return Err(Error::corrupt(&path, "manifest names another partition"));
                }
                Ok(VersionedManifest {
                    manifest,
                    version: Some(version),
                })
            }
            Err(object_store::Error::NotFound { .. }) => Ok(VersionedManifest {
                manifest: Manifest::empty(tp),
                version: None,
            }),
            Err(e) => Err(Error::store("get", &path)(e)),
        }
    }

    /// Writes `next` in place of `current` with a conditional PUT. On success `current` becomes
    /// `next`. A lost race returns [`Error::ManifestConflict`] (reload and retry); a manifest
    /// owned by a newer leader epoch returns [`Error::Fenced`].
    pub async fn commit_manifest(&self, current: &mut VersionedManifest, next: Manifest) -> Result<()> {
        let tp = TopicPartition {
            topic_id: next.topic_id,
            partition: next.partition,
        };
        let path = self.manifest_path(&tp);
        if current.manifest.leader_epoch > next.leader_epoch {
            return Err(Error::Fenced {
                key: path.to_string(),
                owner: current.manifest.leader_epoch,
                ours: next.leader_epoch,
            });
        }
        let body = serde_json::to_vec_pretty(&next).expect("a manifest always serialises");
        let mode = match (&current.version, self.conditional()) {
            (_, false) => PutMode::Overwrite,
            (None, true) => PutMode::Create,
            (Some(v), true) => PutMode::Update(v.clone()),
        };
        let opts = PutOptions {
            mode,
            ..PutOptions::default()
        };
        match self.inner().put_opts(&path, PutPayload::from(body), opts).await {
            Ok(result) => {
                current.version = Some(UpdateVersion {
                    e_tag: result.e_tag,
                    version: result.version,
                });
                current.manifest = next;
                Ok(())
            }
            Err(object_store::Error::Precondition { .. } | object_store::Error::AlreadyExists { .. }) => {
                Err(Error::ManifestConflict { key: path.to_string() })
            }
            Err(e) => Err(Error::store("put", &path)(e)),
        }
    }
}
