//! Partition state on this broker: which partitions it hosts (kept in step with the metadata
//! image), their logs, the group-commit flusher, and the background retention and checkpoint
//! loops. On a single node every partition is led here and the high watermark follows the log
//! end offset; cluster mode will move it with follower fetches instead.

pub mod cleaner;
pub mod fetcher;
pub mod flusher;
pub mod partition;
mod staging;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fjord_metadata::{MetadataImage, TopicId};
use fjord_storage::{LeaderEpoch, Log};
use parking_lot::RwLock;

pub use flusher::Flusher;
pub use partition::{Partition, ScannedRecord, scan_records};

use crate::config::BrokerConfig;
use crate::metrics::Metrics;
use crate::tiering::RemoteLog;
use crate::topic_config;

/// Written at clean shutdown, removed at start: its absence means the logs need recovery.
const CLEAN_SHUTDOWN_MARKER: &str = ".fjord-clean-shutdown";

/// An ISR change a leader asks the controller for (AlterPartition).
#[derive(Debug)]
pub struct IsrProposal {
    pub partition: Arc<Partition>,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub new_isr: Vec<i32>,
}

/// Errors of partition management.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("storage error on {topic}-{partition}: {source}")]
    Storage {
        topic: String,
        partition: i32,
        source: fjord_storage::Error,
    },
    #[error("data dir {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// Why an append as leader failed.
#[derive(Debug, thiserror::Error)]
pub enum LeaderAppendError {
    /// Leadership moved between the caller's check and the append (nothing was written).
    #[error("this broker is not the leader of the partition")]
    NotLeader,
    #[error(transparent)]
    Storage(#[from] fjord_storage::Error),
}

/// What an append as leader did: the storage's answer, the log start offset, and the leader
/// epoch it was written in (an acks=all wait is for that epoch only).
#[derive(Debug)]
pub struct LeaderAppend {
    pub info: fjord_storage::AppendInfo,
    pub log_start: fjord_storage::Offset,
    pub leader_epoch: LeaderEpoch,
}

/// All partitions hosted by this broker.
#[derive(Debug)]
pub struct ReplicaManager {
    data_dir: PathBuf,
    config: BrokerConfig,
    partitions: RwLock<HashMap<(String, i32), Arc<Partition>>>,
    /// Serialises `sync_with_image` and remembers the newest image applied, so concurrent admin
    /// requests can never apply an older image over a newer one (and reopen a deleted topic).
    synced_offset: parking_lot::Mutex<Option<u64>>,
    /// Whether the previous run shut down cleanly (decides recovery for logs opened at start).
    clean_start: bool,
    /// Logs opened for partitions whose metadata is being committed (`staging.rs`).
    staged: parking_lot::Mutex<HashMap<(String, i32), (TopicId, Log)>>,
    pub flusher: Arc<Flusher>,
    /// Copies the partitions this broker follows from their leaders.
    pub fetchers: fetcher::Fetchers,
}

fn partition_dir(data_dir: &Path, topic: &str, partition: i32) -> PathBuf {
    data_dir.join(format!("{topic}-{partition}"))
}

/// A free `<dir>.<owner>-stray` name (suffixed `.N` if an earlier stray of the same owner exists).
fn stray_dir_name(dir: &Path, owner: uuid::Uuid) -> PathBuf {
    let base = format!("{}.{}-stray", dir.display(), owner.simple());
    (0..)
        .map(|n| PathBuf::from(if n == 0 { base.clone() } else { format!("{base}.{n}") }))
        .find(|p| !p.exists())
        .expect("some stray name is free")
}

/// Partitions follow metadata: each published image opens, reconfigures or deletes the logs of
/// the partitions with a replica on this broker.
impl crate::publish::MetadataPublisher for ReplicaManager {
    fn name(&self) -> &'static str {
        "partitions"
    }

    fn publish(&self, image: &Arc<MetadataImage>) -> Result<(), String> {
        self.sync_with_image(image).map_err(|e| e.to_string())
    }
}

impl ReplicaManager {
    /// Appends record batches from `origin` (a producer, or the broker's group coordinator) to a
    /// partition this broker leads: validates and writes them,
    /// moves the high watermark to the log end (single node: the ISR is this broker), wakes
    /// fetch waiters and queues the partition for the group-commit flush. Leadership is checked
    /// under the log lock (leadership changes take it too), so a broker that just became a
    /// follower never writes into the new leader's epoch.
    pub fn append_as_leader(
        &self,
        partition: &Arc<Partition>,
        origin: fjord_storage::AppendOrigin,
        records: &[u8],
        now_ms: i64,
    ) -> Result<LeaderAppend, LeaderAppendError> {
        let me = self.config.node_id;
        let result = {
            let mut log = partition.log.lock();
            let Some((epoch, alone)) = partition.leadership(me) else {
                return Err(LeaderAppendError::NotLeader);
            };
            log.append_from(origin, records, epoch, now_ms)
                .map(|info| {
                    if alone {
                        // The ISR is this broker: everything appended is committed.
                        let leo = log.log_end_offset();
                        log.set_high_watermark(leo);
                    }
                    LeaderAppend {
                        info,
                        log_start: log.log_start_offset(),
                        leader_epoch: epoch,
                    }
                })
                .map_err(LeaderAppendError::from)
        };
        if result.is_ok() {
            partition.wake_waiters();
            self.flusher.mark_dirty(partition);
        }
        result
    }

    /// The ISR changes this broker wants as leader (Kafka's maybeShrinkIsr and maybeExpandIsr):
    /// a member that has not caught up with the log end for `lag_max_ms` leaves; a replica whose
    /// fetch position reached the high watermark and the start of this leader epoch joins. Partitions with a change in flight are
    /// skipped.
    pub fn isr_proposals(&self, now_ms: i64, lag_max_ms: i64) -> Vec<IsrProposal> {
        let me = self.config.node_id;
        let mut proposals = Vec::new();
        for partition in self.all() {
            let set = partition.replica_set();
            if set.leader != me || set.replicas.len() < 2 || set.pending_isr.is_some() {
                continue;
            }
            let hw = partition.offsets().1.0;
            let lagging = |id: &i32| match set.followers.get(id) {
                Some(f) => now_ms - f.last_caught_up_ms > lag_max_ms,
                None => now_ms - set.since_ms > lag_max_ms,
            };
            let mut new_isr: Vec<i32> = set.isr.iter().copied().filter(|id| *id == me || !lagging(id)).collect();
            for id in &set.replicas {
                let caught_up =
                    |f: &partition::FollowerState| f.fetch_offset >= hw && f.fetch_offset >= set.epoch_start_offset;
                if !new_isr.contains(id) && set.followers.get(id).is_some_and(caught_up) && !lagging(id) {
                    new_isr.push(*id);
                }
            }
            if !new_isr.contains(&me) {
                new_isr.push(me);
            }
            let mut current = set.isr.clone();
            current.sort_unstable();
            let mut proposed = new_isr.clone();
            proposed.sort_unstable();
            if current != proposed {
                proposals.push(IsrProposal {
                    partition,
                    leader_epoch: set.leader_epoch,
                    partition_epoch: set.partition_epoch,
                    new_isr,
                });
            }
        }
        proposals
    }

    /// Prepares the data dir and notes (and consumes) the clean-shutdown marker.    /// Prepares the data dir and notes (and consumes) the clean-shutdown marker.
    pub fn new(config: &BrokerConfig, metrics: Arc<Metrics>) -> Result<ReplicaManager, Error> {
        let data_dir = config.storage.data_dir.clone();
        let io = |source| Error::Io {
            path: data_dir.clone(),
            source,
        };
        std::fs::create_dir_all(&data_dir).map_err(io)?;
        let marker = data_dir.join(CLEAN_SHUTDOWN_MARKER);
        let clean_start = marker.is_file();
        if clean_start {
            std::fs::remove_file(&marker).map_err(io)?;
        }
        // Partition dirs renamed for deletion before a crash: finish deleting them.
        for entry in std::fs::read_dir(&data_dir).map_err(io)?.flatten() {
            if entry.file_name().to_string_lossy().ends_with("-delete") {
                tracing::info!(dir = %entry.path().display(), "finishing deletion of a deleted partition");
                fjord_storage::delete_in_background(entry.path());
            }
        }
        tracing::info!(data_dir = %data_dir.display(), clean_start, "opening logs");
        let fetched_bytes = metrics.replication.fetcher_bytes.clone();
        let flusher = Flusher::start(config.storage.flush_interval, data_dir.clone(), metrics);
        Ok(ReplicaManager {
            data_dir,
            config: config.clone(),
            partitions: RwLock::new(HashMap::new()),
            synced_offset: parking_lot::Mutex::new(None),
            clean_start,
            staged: parking_lot::Mutex::new(HashMap::new()),
            fetchers: fetcher::Fetchers::new(
                config.node_id,
                flusher.clone(),
                config.storage.fsync_on_acks_all,
                fetched_bytes,
            ),
            flusher,
        })
    }

    pub fn get(&self, topic: &str, partition: i32) -> Option<Arc<Partition>> {
        self.partitions.read().get(&(topic.to_string(), partition)).cloned()
    }

    /// The hosted partitions of one topic, in partition order.
    pub fn partitions_of(&self, topic: &str) -> Vec<Arc<Partition>> {
        let mut found: Vec<Arc<Partition>> = self
            .partitions
            .read()
            .values()
            .filter(|p| p.topic == topic)
            .cloned()
            .collect();
        found.sort_by_key(|p| p.index);
        found
    }

    pub fn all(&self) -> Vec<Arc<Partition>> {
        self.partitions.read().values().cloned().collect()
    }

    /// Brings hosted partitions in line with `image`: opens logs for new partitions, applies
    /// config changes, and deletes the logs of topics that are gone. Blocking file I/O.
    pub fn sync_with_image(&self, image: &MetadataImage) -> Result<(), Error> {
        let mut synced = self.synced_offset.lock();
        if synced.is_some_and(|done| done > image.offset) {
            return Ok(());
        }
        self.apply_image(image)?;
        *synced = Some(image.offset);
        self.update_fetchers(image);
        Ok(())
    }

    /// Points the replica fetchers at the leaders of the partitions this broker follows.
    fn update_fetchers(&self, image: &MetadataImage) {
        let me = self.config.node_id;
        let mut wanted: HashMap<i32, (String, Vec<Arc<Partition>>)> = HashMap::new();
        for partition in self.all() {
            let set = partition.replica_set();
            if set.leader == me || set.leader < 0 {
                continue;
            }
            let Some(address) = image
                .cluster()
                .broker(fjord_metadata::BrokerId(set.leader))
                .filter(|b| !b.fenced)
                .and_then(|b| {
                    // The leader's inter-broker listener (each broker names its own the same way).
                    let inter = &self.config.network.inter_broker_listener_name;
                    let l = b.listeners.iter().find(|l| l.name == *inter).or(b.listeners.first())?;
                    Some(format!("{}:{}", l.host, l.port))
                })
            else {
                continue;
            };
            wanted
                .entry(set.leader)
                .or_insert_with(|| (address, Vec::new()))
                .1
                .push(partition);
        }
        self.fetchers.update(wanted);
    }

    fn apply_image(&self, image: &MetadataImage) -> Result<(), Error> {
        let me = fjord_metadata::BrokerId(self.config.node_id);
        let hosted_here = |topic: &fjord_metadata::TopicImage, index: i32| {
            topic
                .partitions
                .get(index as usize)
                .is_some_and(|p| p.replicas.contains(&me))
        };
        // Drop partitions whose topic vanished, was recreated with a new id, or that no longer
        // have a replica on this broker.
        let gone: Vec<Arc<Partition>> = {
            let mut partitions = self.partitions.write();
            let keys: Vec<_> = partitions
                .iter()
                .filter(|(_, p)| {
                    image
                        .topic(&p.topic)
                        .is_none_or(|t| t.id != p.topic_id || !hosted_here(t, p.index))
                })
                .map(|(k, _)| k.clone())
                .collect();
            keys.iter().filter_map(|k| partitions.remove(k)).collect()
        };
        for p in gone {
            self.delete_partition_dir(&p);
        }
        let defaults = topic_config::with_dynamic(
            &self.config.topics,
            image,
            fjord_metadata::BrokerId(self.config.node_id),
        );
        for topic in image.topics() {
            let mut log_config = topic_config::log_config(&defaults, &topic.configs);
            log_config.producer_id_expiration_ms = self.config.producers.id_expiration_ms;
            log_config.max_compression_ratio = self.config.storage.max_compression_ratio as usize;
            let (flush_messages, flush_ms) = topic_config::flush_policy(&defaults, &topic.configs);
            let min_insync = topic_config::effective(&defaults, &topic.configs, "min.insync.replicas")
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(1);
            for p in topic.partitions.iter().filter(|p| p.replicas.contains(&me)) {
                if let Some(existing) = self.get(&topic.name, p.partition.0) {
                    {
                        let mut log = existing.log.lock();
                        if log.config() != &log_config {
                            log.set_config(log_config.clone());
                        }
                    }
                    *existing.flush_messages.lock() = flush_messages;
                    *existing.flush_ms.lock() = flush_ms;
                    existing
                        .min_insync_replicas
                        .store(min_insync, std::sync::atomic::Ordering::Relaxed);
                    self.take_replica_set(&existing, p);
                    self.sync_remote(&existing, topic, &defaults);
                    continue;
                }
                let mut log = match self.take_staged(&topic.name, p.partition.0, topic.id) {
                    Some(mut staged) => {
                        // Staged with the request's configs; the image's (dynamic defaults) win.
                        if staged.config() != &log_config {
                            staged.set_config(log_config.clone());
                        }
                        staged
                    }
                    None => {
                        let dir = partition_dir(&self.data_dir, &topic.name, p.partition.0);
                        self.claim_dir(&dir, topic.id)?;
                        Log::open(&dir, log_config.clone(), self.clean_start).map_err(|source| Error::Storage {
                            topic: topic.name.clone(),
                            partition: p.partition.0,
                            source,
                        })?
                    }
                };
                // Becoming leader with an ISR of one (this broker): everything in the log is
                // committed, as Kafka does for a single-replica leader. The checkpointed high
                // watermark may be stale after a crash. A replicated partition keeps its
                // checkpointed high watermark: the ISR moves it.
                if p.isr.iter().all(|id| *id == me) {
                    let leo = log.log_end_offset();
                    log.set_high_watermark(leo);
                }
                let partition = Arc::new(Partition::new(
                    topic.name.clone(),
                    topic.id,
                    p.partition.0,
                    log,
                    LeaderEpoch(p.leader_epoch),
                ));
                *partition.flush_messages.lock() = flush_messages;
                *partition.flush_ms.lock() = flush_ms;
                partition
                    .min_insync_replicas
                    .store(min_insync, std::sync::atomic::Ordering::Relaxed);
                self.take_replica_set(&partition, p);
                self.sync_remote(&partition, topic, &defaults);
                self.partitions
                    .write()
                    .insert((topic.name.clone(), p.partition.0), partition);
            }
        }
        Ok(())
    }

    /// A partition takes the image's leader, epochs, replicas and ISR. As (new) leader its
    /// high watermark is recomputed for the ISR; as follower its fetcher follows the leader.
    fn take_replica_set(&self, partition: &Arc<Partition>, p: &fjord_metadata::PartitionImage) {
        let me = self.config.node_id;
        let ids = |v: &[fjord_metadata::BrokerId]| v.iter().map(|b| b.0).collect::<Vec<i32>>();
        partition.set_replica_set(
            me,
            p.leader.0,
            p.leader_epoch,
            p.partition_epoch,
            ids(&p.replicas),
            ids(&p.isr),
        );
        if p.leader.0 == me {
            let moved = if partition.leader_alone_in_isr(me) {
                let mut log = partition.log.lock();
                let leo = log.log_end_offset();
                let moved = log.high_watermark() < leo;
                log.set_high_watermark(leo);
                moved
            } else {
                partition.update_high_watermark(me).1
            };
            if moved {
                partition.wake_waiters();
            }
        }
    }

    /// Tiered-storage state follows the topic's remote.storage.enable (and the broker switch).
    fn sync_remote(
        &self,
        partition: &Partition,
        topic: &fjord_metadata::TopicImage,
        defaults: &crate::config::TopicDefaults,
    ) {
        let tiered = self.config.tiering.enabled && topic_config::remote_storage_enabled(defaults, &topic.configs);
        if !tiered {
            if partition.remote().is_some() {
                tracing::warn!(topic = %topic.name, partition = partition.index,
                    "tiering disabled for the topic; remote data is no longer served or uploaded");
            }
            partition.set_remote(None);
            return;
        }
        let local = topic_config::local_retention(defaults, &topic.configs);
        match partition.remote() {
            Some(remote) => *remote.local_retention.lock() = local,
            None => partition.set_remote(Some(Arc::new(RemoteLog::new(
                fjord_tiering::TopicPartition {
                    topic_id: topic.id.0,
                    partition: partition.index,
                },
                local,
            )))),
        }
    }

    /// Makes sure `dir` belongs to `topic_id` (Kafka's partition.metadata). A directory that
    /// belongs to another topic id is never reused and never deleted: it is renamed aside to
    /// `<dir>.<its topic id>-stray` (Kafka's stray naming) and reported, so data a damaged or
    /// replaced metadata log no longer names can still be recovered by hand.
    fn claim_dir(&self, dir: &Path, topic_id: TopicId) -> Result<(), Error> {
        let io = |source| Error::Io {
            path: dir.to_path_buf(),
            source,
        };
        let marker = dir.join("partition.metadata");
        let expected = format!("version: 0\ntopic_id: {topic_id}\n");
        match std::fs::read_to_string(&marker) {
            Ok(found) if found == expected => return Ok(()),
            Ok(found) => {
                let owner = found
                    .lines()
                    .find_map(|l| l.strip_prefix("topic_id: "))
                    .and_then(|id| uuid::Uuid::parse_str(id.trim()).ok())
                    .unwrap_or_else(uuid::Uuid::new_v4);
                let stray = stray_dir_name(dir, owner);
                tracing::warn!(dir = %dir.display(), stray = %stray.display(), %topic_id, owner = %owner,
                    "partition dir belongs to another topic id; moved aside as a stray dir (not deleted)");
                std::fs::rename(dir, &stray).map_err(io)?;
                std::fs::File::open(&self.data_dir)
                    .and_then(|d| d.sync_all())
                    .map_err(io)?;
            }
            Err(_) => {}
        }
        std::fs::create_dir_all(dir).map_err(io)?;
        write_durably(&marker, expected.as_bytes()).map_err(io)
    }

    fn delete_partition_dir(&self, p: &Partition) {
        let dir = p.log.lock().dir().to_path_buf();
        // Rename first so a crash mid-delete never leaves a half-deleted log under a live name.
        let doomed = dir.with_extension(format!("{}-delete", p.topic_id.0.simple()));
        // The files go gradually in the background: a big unlink stalls concurrent fsyncs.
        match std::fs::rename(&dir, &doomed) {
            Ok(()) => {
                fjord_storage::delete_in_background(doomed);
                tracing::info!(topic = %p.topic, partition = p.index, "deleted partition log");
            }
            Err(error) => tracing::error!(topic = %p.topic, partition = p.index, %error, "cannot delete partition log"),
        }
    }

    /// Runs retention on every partition (called from a blocking task).
    pub fn apply_retention(&self, metrics: &Metrics) {
        let now = crate::clock::now_ms();
        for p in self.all() {
            // Tiered: local.retention.*, and never past what the remote manifest holds (invariant 3).
            let outcome = match p.remote() {
                Some(remote) => {
                    let (ms, bytes) = *remote.local_retention.lock();
                    let committed = remote.committed_end();
                    p.log.lock().apply_local_retention(now, ms, bytes, committed)
                }
                None => p.log.lock().apply_retention(now),
            };
            match outcome {
                Ok(o) if o.segments_deleted > 0 => {
                    metrics.retention_deleted(o.segments_deleted as u64, o.bytes_deleted);
                    tracing::info!(topic = %p.topic, partition = p.index, segments = o.segments_deleted,
                        bytes = o.bytes_deleted, log_start_offset = o.log_start_offset.0, "retention deleted segments");
                }
                Ok(_) => {}
                Err(error) => tracing::error!(topic = %p.topic, partition = p.index, %error, "retention failed"),
            }
        }
    }

    /// Checkpoints recovery points and indexes of every partition (called from a blocking task).
    pub fn checkpoint_all(&self) {
        for p in self.all() {
            if let Err(error) = p.log.lock().checkpoint() {
                tracing::error!(topic = %p.topic, partition = p.index, %error, "checkpoint failed");
            }
        }
    }

    /// Flushes and checkpoints every log, then writes the clean-shutdown marker if all succeeded.
    /// Logs stay open (fetches still in flight may read them); the process exits next.
    pub fn close_all(&self) -> Result<(), Error> {
        let mut clean = true;
        for p in self.all() {
            let mut log = p.log.lock();
            let flushed = match log.flush_ticket() {
                Some(ticket) => ticket.sync().map(|()| log.mark_flushed(ticket.up_to())),
                None => Ok(()),
            };
            let flushed = flushed.and_then(|()| log.snapshot_producer_state());
            if let Err(error) = flushed.and_then(|()| log.checkpoint()) {
                tracing::error!(topic = %p.topic, partition = p.index, %error, "closing log failed");
                clean = false;
            }
        }
        if clean {
            let marker = self.data_dir.join(CLEAN_SHUTDOWN_MARKER);
            write_durably(&marker, b"").map_err(|source| Error::Io { path: marker, source })?;
        }
        Ok(())
    }
}

/// Writes a small file via a temp file + fsync + rename + directory fsync.
pub fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use fjord_metadata::{BrokerId, MetadataRecord, PartitionId};

    fn topic_records(name: &str, id: TopicId) -> Vec<MetadataRecord> {
        vec![
            MetadataRecord::Topic {
                name: name.into(),
                topic_id: id,
            },
            MetadataRecord::Partition {
                topic_id: id,
                partition: PartitionId(0),
                replicas: vec![BrokerId(0)],
                isr: vec![BrokerId(0)],
                leader: BrokerId(0),
                leader_epoch: 0,
                partition_epoch: 0,
            },
        ]
    }

    #[test]
    fn sync_with_an_older_image_never_reopens_a_deleted_topic() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = BrokerConfig::default();
        config.storage.data_dir = dir.path().to_path_buf();
        let replicas = ReplicaManager::new(&config, Metrics::new(false)).expect("opens");
        let id = TopicId::random();
        let created = MetadataImage::default()
            .apply(&topic_records("t", id))
            .expect("applies");
        let deleted = created
            .apply(&[MetadataRecord::RemoveTopic { topic_id: id }])
            .expect("applies");
        // The deleting request syncs first; the creating one arrives late with its older image.
        replicas.sync_with_image(&deleted).expect("syncs");
        replicas.sync_with_image(&created).expect("syncs");
        assert!(replicas.get("t", 0).is_none());
        assert!(!dir.path().join("t-0").exists());
        // In order, the topic is opened and then deleted with its directory.
        let replicas = ReplicaManager::new(&config, Metrics::new(false)).expect("opens");
        replicas.sync_with_image(&created).expect("syncs");
        assert!(replicas.get("t", 0).is_some());
        assert!(dir.path().join("t-0").is_dir());
        replicas.sync_with_image(&deleted).expect("syncs");
        assert!(replicas.get("t", 0).is_none());
        assert!(!dir.path().join("t-0").exists());
        // The renamed directory is deleted in the background.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let leftovers = || {
            std::fs::read_dir(dir.path())
                .expect("list")
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with("-delete"))
                .count()
        };
        while leftovers() > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(leftovers(), 0);
    }
}
