//! The state machine (openraft's `RaftStateMachine`): applies each committed batch of metadata
//! records to the immutable [`MetadataImage`] and publishes the new image; builds, stores and
//! installs snapshots.
//!
//! A batch that does not apply to the image is logged and skipped; the image is a pure function
//! of the log, so every node skips the same batches. The image's offset is the Raft log index of
//! the last batch applied to it (blank and membership entries take indexes too, so offsets have
//! gaps). The state machine itself is not persisted: the snapshot is (`snapshot.bin`, written
//! atomically and durably), and a restart starts from it and re-applies the log after it.
//!
//! A snapshot is the image written as records ([`MetadataImage::to_records`]) with its offset:
//! the file holds two frames ([`crate::frame`]), the snapshot meta (last log id, membership) and
//! the data, which is also what install-snapshot sends to a lagging or new node.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use fjord_metadata::{MetadataImage, MetadataRecord};
use openraft::storage::RaftStateMachine;
use openraft::{EntryPayload, RaftSnapshotBuilder, StorageIOError};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::frame;
use crate::types::{Applied, Batch, C, Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership};
use crate::{Error, Result};

const SNAPSHOT_FILE: &str = "snapshot.bin";

/// The snapshot data: the image as records, its offset, and how many batches the log had
/// applied (or skipped) up to it.
#[derive(Debug, Serialize, Deserialize)]
struct SnapshotData {
    offset: u64,
    batches: u64,
    records: Vec<MetadataRecord>,
}

/// What the state machine publishes; shared with [`crate::Quorum`].
#[derive(Debug)]
pub(crate) struct Published {
    pub(crate) image: watch::Sender<Arc<MetadataImage>>,
    /// Index of the last applied log entry (any kind), published after its image.
    pub(crate) applied: watch::Sender<Option<u64>>,
    /// Number of batches applied or skipped so far (0: the log never held one).
    pub(crate) batches: AtomicU64,
}

/// The stored snapshot: meta and data bytes (metadata snapshots are small enough for memory).
#[derive(Debug, Clone)]
struct Stored {
    meta: SnapshotMeta,
    data: Arc<Vec<u8>>,
}

/// Where the current snapshot lives; shared by the state machine and its snapshot builders
/// (which run concurrently with apply).
#[derive(Debug)]
struct SnapshotSlot {
    path: PathBuf,
    current: Mutex<Option<Stored>>,
    built: AtomicU64,
}

impl SnapshotSlot {
    /// Makes `stored` the current snapshot, durably, unless a newer one is already stored.
    fn store(&self, stored: Stored) -> std::io::Result<()> {
        let mut current = self.current.lock();
        if current
            .as_ref()
            .is_some_and(|c| c.meta.last_log_id > stored.meta.last_log_id)
        {
            return Ok(());
        }
        let mut bytes = Vec::with_capacity(stored.data.len() + 256);
        frame::encode(
            &serde_json::to_vec(&stored.meta).map_err(std::io::Error::other)?,
            &mut bytes,
        );
        frame::encode(&stored.data, &mut bytes);
        frame::write_atomic(&self.path, &bytes)?;
        *current = Some(stored);
        Ok(())
    }

    fn snapshot(&self) -> Option<Snapshot> {
        self.current.lock().as_ref().map(|s| Snapshot {
            meta: s.meta.clone(),
            snapshot: Box::new(Cursor::new(s.data.as_ref().clone())),
        })
    }
}

/// The metadata state machine.
#[derive(Debug)]
pub(crate) struct StateMachine {
    image: Arc<MetadataImage>,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    batches: u64,
    slot: Arc<SnapshotSlot>,
    published: Arc<Published>,
}

impl StateMachine {
    /// Opens the state machine in `dir`: the stored snapshot if there is one, else empty.
    pub(crate) fn open(dir: &Path) -> Result<(StateMachine, Arc<Published>)> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(SNAPSHOT_FILE);
        let _ = std::fs::remove_file(path.with_extension("tmp"));
        let mut sm = StateMachine {
            image: Arc::new(MetadataImage::default()),
            last_applied: None,
            membership: StoredMembership::default(),
            batches: 0,
            slot: Arc::new(SnapshotSlot {
                path: path.clone(),
                current: Mutex::new(None),
                built: AtomicU64::new(0),
            }),
            published: Arc::new(Published {
                image: watch::Sender::new(Arc::new(MetadataImage::default())),
                applied: watch::Sender::new(None),
                batches: AtomicU64::new(0),
            }),
        };
        match std::fs::read(&path) {
            Ok(bytes) => {
                let corrupt = |detail: String| Error::Corrupt {
                    path: path.clone(),
                    detail,
                };
                let (meta, next) = frame::frame_at(&bytes, 0).ok_or_else(|| corrupt("damaged snapshot meta".into()))?;
                let (data, end) =
                    frame::frame_at(&bytes, next).ok_or_else(|| corrupt("damaged snapshot data".into()))?;
                if end != bytes.len() {
                    return Err(corrupt(format!(
                        "{} unexpected bytes after the snapshot",
                        bytes.len() - end
                    )));
                }
                let meta: SnapshotMeta =
                    serde_json::from_slice(meta).map_err(|e| corrupt(format!("unreadable snapshot meta: {e}")))?;
                sm.restore(&meta, data)
                    .map_err(|e| corrupt(format!("unreadable snapshot data: {e}")))?;
                *sm.slot.current.lock() = Some(Stored {
                    meta,
                    data: Arc::new(data.to_vec()),
                });
                tracing::info!(path = %path.display(), offset = sm.image.offset, topics = sm.image.topic_count(),
                    "restored the metadata image from the quorum snapshot");
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(Error::Io { path, source }),
        }
        let published = sm.published.clone();
        Ok((sm, published))
    }

    /// Replaces the state with a snapshot's and publishes it.
    fn restore(&mut self, meta: &SnapshotMeta, data: &[u8]) -> std::result::Result<(), String> {
        let (image, batches) = decode(data)?;
        self.set(meta, image, batches);
        Ok(())
    }

    fn set(&mut self, meta: &SnapshotMeta, image: MetadataImage, batches: u64) {
        self.image = Arc::new(image);
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        self.batches = batches;
        self.publish();
    }

    fn publish(&self) {
        self.published.batches.store(self.batches, Ordering::Release);
        self.published.image.send_replace(self.image.clone());
        self.published.applied.send_replace(self.last_applied.map(|l| l.index));
    }
}

/// The image and batch count a snapshot's data holds.
fn decode(data: &[u8]) -> std::result::Result<(MetadataImage, u64), String> {
    let data: SnapshotData = serde_json::from_slice(data).map_err(|e| e.to_string())?;
    let image = MetadataImage::from_records(&data.records, data.offset).map_err(|e| e.to_string())?;
    Ok((image, data.batches))
}

/// Builds a snapshot of the state machine as it was when the builder was made.
#[derive(Debug)]
pub(crate) struct Builder {
    image: Arc<MetadataImage>,
    last_applied: Option<LogId>,
    membership: StoredMembership,
    batches: u64,
    slot: Arc<SnapshotSlot>,
}

impl RaftSnapshotBuilder<C> for Builder {
    async fn build_snapshot(&mut self) -> std::result::Result<Snapshot, StorageError> {
        let data = SnapshotData {
            offset: self.image.offset,
            batches: self.batches,
            records: self.image.to_records(),
        };
        let n = self.slot.built.fetch_add(1, Ordering::Relaxed) + 1;
        let snapshot_id = match self.last_applied {
            Some(l) => format!("{}-{}-{}-{n}", l.leader_id.term, l.leader_id.node_id, l.index),
            None => format!("empty-{n}"),
        };
        let meta = SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.membership.clone(),
            snapshot_id,
        };
        let signature = meta.signature();
        let bytes = serde_json::to_vec(&data)
            .map_err(|e| StorageIOError::write_snapshot(Some(signature.clone()), &std::io::Error::other(e)))?;
        let stored = Stored {
            meta: meta.clone(),
            data: Arc::new(bytes),
        };
        let slot = self.slot.clone();
        let to_store = stored.clone();
        tokio::task::spawn_blocking(move || slot.store(to_store))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|r| r)
            .map_err(|e| StorageIOError::write_snapshot(Some(signature), &e))?;
        tracing::info!(snapshot = %meta.snapshot_id, offset = data.offset, bytes = stored.data.len(), "built a metadata snapshot");
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(stored.data.as_ref().clone())),
        })
    }
}

impl RaftStateMachine<C> for StateMachine {
    type SnapshotBuilder = Builder;

    async fn applied_state(&mut self) -> std::result::Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> std::result::Result<Vec<Applied>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut replies = Vec::new();
        for entry in entries {
            let index = entry.log_id.index;
            self.last_applied = Some(entry.log_id);
            let mut reply = Applied::default();
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(Batch(records)) => {
                    self.batches += 1;
                    match self.image.apply_at(&records, index) {
                        Ok(next) => self.image = Arc::new(next),
                        // Deterministic on every node: the image is a function of the log.
                        Err(error) => {
                            tracing::error!(%error, index, "skipping metadata batch that does not apply");
                            reply.error = Some(error.to_string());
                        }
                    }
                }
                EntryPayload::Membership(membership) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), membership);
                }
            }
            replies.push(reply);
        }
        self.publish();
        Ok(replies)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        Builder {
            image: self.image.clone(),
            last_applied: self.last_applied,
            membership: self.membership.clone(),
            batches: self.batches,
            slot: self.slot.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> std::result::Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> std::result::Result<(), StorageError> {
        let data = snapshot.into_inner();
        let (image, batches) = decode(&data)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &std::io::Error::other(e)))?;
        // Durable first, then visible.
        let stored = Stored {
            meta: meta.clone(),
            data: Arc::new(data),
        };
        let slot = self.slot.clone();
        tokio::task::spawn_blocking(move || slot.store(stored))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))
            .and_then(|r| r)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        self.set(meta, image, batches);
        tracing::info!(snapshot = %meta.snapshot_id, offset = self.image.offset, "installed a metadata snapshot");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> std::result::Result<Option<Snapshot>, StorageError> {
        Ok(self.slot.snapshot())
    }
}
