//! One partition hosted by this broker: its log behind a mutex, leadership state (the replica
//! set as metadata has it, and as leader its followers' fetch positions, from which the high
//! watermark moves), and the fetch waiters to wake when the high watermark moves.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, Weak};

use fjord_metadata::TopicId;
use fjord_storage::batch::BatchHeader;
use fjord_storage::{ControlType, LeaderEpoch, Log, Offset};
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::tiering::RemoteLog;

/// A follower's position as its leader sees it (Kafka's `Replica` state on the leader).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerState {
    /// The offset it last fetched from: everything below is on its disk (it fetches only after
    /// its own flush), so this is its log end offset for the high watermark.
    pub fetch_offset: i64,
    pub last_fetch_ms: i64,
    /// Last time it had caught up with the leader's log end offset (ISR shrink after
    /// `replica.lag.time.max.ms` without catching up).
    pub last_caught_up_ms: i64,
    /// The leader's log end offset when it answered the previous fetch.
    leader_end_at_last_fetch: i64,
}

/// How a wait for the high watermark ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HighWatermarkWait {
    Reached,
    NotLeader,
    TimedOut,
}

/// The partition's replica set as the metadata image has it, plus what only the leader knows.
#[derive(Debug, Clone, Default)]
pub struct ReplicaSet {
    pub leader: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// An ISR the leader asked the controller for that is not committed yet; until it is, the
    /// high watermark counts the union of both (Kafka's maximal ISR).
    pub pending_isr: Option<Vec<i32>>,
    /// As leader: each follower's fetch position.
    pub followers: HashMap<i32, FollowerState>,
    /// When this leadership (leader and epoch) began, for followers that never fetched.
    pub since_ms: i64,
    /// As leader: the log end offset when this leader epoch began (Kafka's leader epoch start
    /// offset). A follower joins the ISR only once it has fetched past it: a new leader's high
    /// watermark can lag what the previous leader acknowledged, so "reached the high watermark"
    /// alone could admit a follower that lacks acknowledged records.
    pub epoch_start_offset: i64,
}

impl ReplicaSet {
    /// The ISR the high watermark must wait for: the committed one plus any pending additions.
    pub fn maximal_isr(&self) -> Vec<i32> {
        let mut isr = self.isr.clone();
        if let Some(pending) = &self.pending_isr {
            for id in pending {
                if !isr.contains(id) {
                    isr.push(*id);
                }
            }
        }
        isr
    }
}

/// A partition hosted by this broker, as leader or follower (single node: leader).
#[derive(Debug)]
pub struct Partition {
    pub topic: String,
    pub topic_id: TopicId,
    pub index: i32,
    pub log: Mutex<Log>,
    leader_epoch: Mutex<LeaderEpoch>,
    /// Flush policy of the topic: fsync after this many messages / this many ms.
    pub flush_messages: Mutex<Option<u64>>,
    pub flush_ms: Mutex<Option<u64>>,
    /// Set while the partition sits in the flusher's dirty list.
    pub(crate) dirty: AtomicBool,
    waiters: Mutex<Vec<Weak<Notify>>>,
    /// Tiered-storage state; Some while the topic has remote.storage.enable=true.
    remote: parking_lot::RwLock<Option<Arc<RemoteLog>>>,
    /// Leadership and followers (see [`ReplicaSet`]).
    replica_set: Mutex<ReplicaSet>,
    /// The topic's `min.insync.replicas`.
    pub min_insync_replicas: AtomicU32,
    /// As follower: records between the leader's high watermark in its last fetch response and
    /// this log's end (Kafka's fetcher lag), for metrics.
    pub fetcher_lag: AtomicI64,
}

impl Partition {
    pub fn new(topic: String, topic_id: TopicId, index: i32, log: Log, leader_epoch: LeaderEpoch) -> Partition {
        Partition {
            topic,
            topic_id,
            index,
            log: Mutex::new(log),
            leader_epoch: Mutex::new(leader_epoch),
            flush_messages: Mutex::new(None),
            flush_ms: Mutex::new(None),
            dirty: AtomicBool::new(false),
            waiters: Mutex::new(Vec::new()),
            remote: parking_lot::RwLock::new(None),
            replica_set: Mutex::new(ReplicaSet::default()),
            min_insync_replicas: AtomicU32::new(1),
            fetcher_lag: AtomicI64::new(0),
        }
    }

    /// A copy of the replica set.
    pub fn replica_set(&self) -> ReplicaSet {
        self.replica_set.lock().clone()
    }

    /// The leader's broker id (-1: none), without copying the replica set.
    pub fn leader_id(&self) -> i32 {
        self.replica_set.lock().leader
    }

    /// How many replicas the partition has.
    pub fn replica_count(&self) -> usize {
        self.replica_set.lock().replicas.len()
    }

    /// Whether `broker` is one of the partition's replicas.
    pub fn has_replica(&self, broker: i32) -> bool {
        self.replica_set.lock().replicas.contains(&broker)
    }

    /// Takes the replica set and leader epoch of a new metadata image. A new leader epoch
    /// forgets the followers' positions (they are re-learnt from their next fetches) and any
    /// pending ISR change; a new partition epoch settles the pending ISR change. Returns the
    /// previous leader.
    pub fn set_replica_set(
        &self,
        me: i32,
        leader: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        replicas: Vec<i32>,
        isr: Vec<i32>,
    ) -> i32 {
        // Under the log lock: a follower append checks leadership under it too, so no batch from
        // a former leader lands after this broker took over (see `Partition::still_follows`).
        let mut log = self.log.lock();
        let mut set = self.replica_set.lock();
        if leader == me && (set.leader != me || set.leader_epoch != leader_epoch) {
            log.begin_leader_epoch(LeaderEpoch(leader_epoch));
            set.epoch_start_offset = log.log_end_offset().0;
        }
        let previous = set.leader;
        let leadership_changed = set.leader_epoch != leader_epoch || set.leader != leader;
        if leadership_changed {
            set.followers.clear();
            set.pending_isr = None;
            set.since_ms = crate::clock::now_ms();
        }
        if set.partition_epoch != partition_epoch {
            set.pending_isr = None;
        }
        set.leader = leader;
        set.leader_epoch = leader_epoch;
        set.partition_epoch = partition_epoch;
        set.replicas = replicas;
        set.isr = isr;
        *self.leader_epoch.lock() = LeaderEpoch(leader_epoch);
        drop(set);
        drop(log);
        if leadership_changed {
            // Waits for the high watermark of the former epoch end now (as not leader).
            self.wake_waiters();
        }
        previous
    }

    /// Whether this broker still follows `leader` in `leader_epoch` (checked, with the log lock
    /// held, before a fetched batch is appended: a response to a fetch sent before a leadership
    /// change must not be applied after it).
    pub fn still_follows(&self, leader: i32, leader_epoch: i32) -> bool {
        let set = self.replica_set.lock();
        set.leader == leader && set.leader_epoch == leader_epoch
    }

    /// Notes an ISR change about to be sent to the controller (see [`ReplicaSet::pending_isr`]),
    /// if every joining member still qualifies: under the log lock, so no append raises the high
    /// watermark past a joining follower between the check and the high watermark counting it
    /// (Kafka holds its leader-ISR lock for the same reason). False: nothing noted, do not send.
    pub fn begin_isr_change(&self, new_isr: &[i32]) -> bool {
        let log = self.log.lock();
        let mut set = self.replica_set.lock();
        let hw = log.high_watermark().0;
        let qualifies = new_isr.iter().filter(|id| !set.isr.contains(id)).all(|id| {
            set.followers
                .get(id)
                .is_some_and(|f| f.fetch_offset >= hw && f.fetch_offset >= set.epoch_start_offset)
        });
        if qualifies {
            set.pending_isr = Some(new_isr.to_vec());
        }
        qualifies
    }

    /// Forgets an ISR change the controller refused or never answered.
    pub fn clear_pending_isr(&self) {
        self.replica_set.lock().pending_isr = None;
    }

    /// True if the leader alone makes up the (maximal) ISR, so the high watermark follows its
    /// log end offset (the single node, replication factor 1, or a shrunk ISR).
    /// Call it with the log lock held when the answer decides the high watermark (lock order:
    /// log, then replica set).
    pub fn leader_alone_in_isr(&self, me: i32) -> bool {
        // On the produce path: no allocation, unlike `maximal_isr`.
        let set = self.replica_set.lock();
        let only_me = |ids: &[i32]| ids.iter().all(|id| *id == me);
        only_me(&set.isr) && set.pending_isr.as_deref().is_none_or(only_me)
    }

    /// As leader (`me`): the leader epoch and whether it is alone in the (maximal) ISR; `None`
    /// if this broker does not lead. Call it with the log lock held (lock order: log, then
    /// replica set).
    pub fn leadership(&self, me: i32) -> Option<(LeaderEpoch, bool)> {
        let set = self.replica_set.lock();
        if set.leader != me {
            return None;
        }
        let only_me = |ids: &[i32]| ids.iter().all(|id| *id == me);
        let alone = only_me(&set.isr) && set.pending_isr.as_deref().is_none_or(only_me);
        Some((LeaderEpoch(set.leader_epoch), alone))
    }

    /// The size of the maximal ISR (at least 1: the leader).
    pub fn isr_size(&self) -> usize {
        self.replica_set.lock().maximal_isr().len().max(1)
    }

    /// As leader: records a follower's fetch at `fetch_offset` and moves the high watermark to
    /// the smallest log end offset of the maximal ISR. Returns the high watermark and whether
    /// it moved (the caller wakes waiters then).
    pub fn record_follower_fetch(&self, me: i32, follower: i32, fetch_offset: i64, now_ms: i64) -> (Offset, bool) {
        let mut log = self.log.lock();
        let leo = log.log_end_offset().0;
        let mut set = self.replica_set.lock();
        let previous = set.followers.get(&follower).copied();
        let caught_up = if fetch_offset >= leo {
            now_ms
        } else {
            match previous {
                Some(p) if fetch_offset >= p.leader_end_at_last_fetch => p.last_fetch_ms,
                Some(p) => p.last_caught_up_ms,
                None => 0,
            }
        };
        set.followers.insert(
            follower,
            FollowerState {
                fetch_offset,
                last_fetch_ms: now_ms,
                last_caught_up_ms: caught_up,
                leader_end_at_last_fetch: leo,
            },
        );
        let hw = Self::isr_high_watermark(&set, me, leo);
        drop(set);
        Self::raise_high_watermark(&mut log, hw)
    }

    /// As leader in `epoch` (the leader epoch the batch was appended in): waits until the high
    /// watermark reaches `end` (every member of the ISR has everything below it), leadership
    /// moves away, or `deadline` passes. Leadership that moves and comes back counts as moved:
    /// the log may have been truncated below `end` and refilled meanwhile, so a high watermark
    /// past `end` in a later epoch says nothing about this batch.
    pub async fn wait_for_high_watermark(
        &self,
        me: i32,
        epoch: LeaderEpoch,
        end: i64,
        deadline: std::time::Instant,
    ) -> HighWatermarkWait {
        loop {
            let waiter = Arc::new(Notify::new());
            self.register_waiter(&waiter);
            let still_leader = {
                let set = self.replica_set.lock();
                set.leader == me && set.leader_epoch == epoch.0
            };
            if !still_leader {
                return HighWatermarkWait::NotLeader;
            }
            if self.offsets().1.0 >= end {
                return HighWatermarkWait::Reached;
            }
            if tokio::time::timeout_at(deadline.into(), waiter.notified())
                .await
                .is_err()
            {
                return if self.offsets().1.0 >= end {
                    HighWatermarkWait::Reached
                } else {
                    HighWatermarkWait::TimedOut
                };
            }
        }
    }

    /// As leader: recomputes the high watermark (after an append or an ISR change).
    pub fn update_high_watermark(&self, me: i32) -> (Offset, bool) {
        let mut log = self.log.lock();
        let leo = log.log_end_offset().0;
        let hw = Self::isr_high_watermark(&self.replica_set.lock(), me, leo);
        Self::raise_high_watermark(&mut log, hw)
    }

    fn isr_high_watermark(set: &ReplicaSet, me: i32, leo: i64) -> i64 {
        set.maximal_isr()
            .iter()
            .filter(|&&id| id != me)
            .map(|id| set.followers.get(id).map_or(i64::MIN, |f| f.fetch_offset.min(leo)))
            .fold(leo, i64::min)
    }

    fn raise_high_watermark(log: &mut Log, hw: i64) -> (Offset, bool) {
        let current = log.high_watermark();
        if hw > current.0 {
            log.set_high_watermark(Offset(hw));
            (Offset(hw), true)
        } else {
            (current, false)
        }
    }

    /// The partition's tiered-storage state, if the topic is tiered.
    pub fn remote(&self) -> Option<Arc<RemoteLog>> {
        self.remote.read().clone()
    }

    pub(crate) fn set_remote(&self, remote: Option<Arc<RemoteLog>>) {
        *self.remote.write() = remote;
    }

    pub fn leader_epoch(&self) -> LeaderEpoch {
        *self.leader_epoch.lock()
    }

    /// (log start offset, high watermark, log end offset) read together.
    pub fn offsets(&self) -> (Offset, Offset, Offset) {
        let log = self.log.lock();
        (log.log_start_offset(), log.high_watermark(), log.log_end_offset())
    }

    /// Registers a fetch waiter; it is woken once, on the next high-watermark move.
    pub fn register_waiter(&self, waiter: &Arc<Notify>) {
        let mut waiters = self.waiters.lock();
        if waiters.len() >= 64 {
            waiters.retain(|w| w.strong_count() > 0);
        }
        waiters.push(Arc::downgrade(waiter));
    }

    /// Wakes every registered fetch waiter.
    pub fn wake_waiters(&self) {
        let waiters = std::mem::take(&mut *self.waiters.lock());
        for waiter in waiters.iter().filter_map(Weak::upgrade) {
            waiter.notify_one();
        }
    }

    /// True if the partition was clean and is now marked dirty (the caller enqueues it once).
    pub(crate) fn mark_dirty(&self) -> bool {
        !self.dirty.swap(true, Ordering::AcqRel)
    }
}

/// One item of [`scan_records`].
pub enum ScannedRecord<'a> {
    /// A data record and the header of its batch.
    Data {
        header: &'a BatchHeader,
        key: Option<&'a [u8]>,
        value: Option<&'a [u8]>,
    },
    /// A transaction marker (a control batch with a producer id).
    Marker {
        header: &'a BatchHeader,
        control: ControlType,
    },
}

/// Reads every record of a partition from its log start to its high watermark, in offset order
/// (the coordinators' replay of their internal topics).
pub fn scan_records(partition: &Partition, mut visit: impl FnMut(ScannedRecord<'_>)) -> Result<(), String> {
    let (start, hw, _) = partition.offsets();
    // Stored batches decompress within the same cap as everywhere else.
    let limit = partition.log.lock().config().max_decompressed_read_bytes();
    let mut offset = start;
    while offset < hw {
        let plan = partition
            .log
            .lock()
            .read(offset, hw, 8 << 20, true)
            .map_err(|e| e.to_string())?;
        if plan.is_empty() {
            break;
        }
        let bytes = plan.read_bytes().map_err(|e| e.to_string())?;
        let mut next = offset;
        for batch in fjord_storage::batch::scan_batches(&bytes) {
            let batch = batch.map_err(|e| e.to_string())?;
            let h = batch.header;
            next = Offset(h.next_offset());
            if h.is_control() {
                if h.producer_id >= 0
                    && h.base_offset >= offset.0
                    && let Some(control) = fjord_storage::control_type_of(batch.bytes)
                {
                    visit(ScannedRecord::Marker { header: &h, control });
                }
                continue;
            }
            let body = &batch.bytes[fjord_storage::batch::BATCH_HEADER_LEN..];
            let data = fjord_storage::records::decompress_bounded(h.compression(), body, limit)
                .map_err(|e| format!("batch at offset {}: {e}", h.base_offset))?;
            for record in fjord_storage::records::RecordIter::new(&data) {
                let record = record.map_err(|e| format!("batch at offset {}: {e}", h.base_offset))?;
                if h.base_offset + i64::from(record.meta.offset_delta) < offset.0 {
                    continue;
                }
                visit(ScannedRecord::Data {
                    header: &h,
                    key: record.key,
                    value: record.value,
                });
            }
        }
        if next <= offset {
            break;
        }
        offset = next;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{Bytes, BytesMut};
    use fjord_protocol::kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    /// One uncompressed batch of one plain record.
    fn one_record_batch() -> Bytes {
        let record = Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence: -1,
            timestamp: 0,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(b"v")),
            headers: Default::default(),
        };
        let mut buf = BytesMut::new();
        let options = RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        };
        RecordBatchEncoder::encode(&mut buf, &[record], &options).expect("encodes");
        buf.freeze()
    }

    fn leader_with(records: usize) -> (tempfile::TempDir, Partition) {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Log::open(&dir.path().join("t-0"), fjord_storage::LogConfig::default(), true).expect("opens");
        let partition = Partition::new("t".into(), TopicId::random(), 0, log, LeaderEpoch(0));
        partition.set_replica_set(1, 1, 0, 0, vec![1, 2, 3], vec![1, 2, 3]);
        for _ in 0..records {
            let batch = one_record_batch();
            partition.log.lock().append(&batch, LeaderEpoch(0), 0).expect("appends");
        }
        (dir, partition)
    }

    #[test]
    fn a_follower_behind_the_new_leaders_epoch_start_does_not_join_the_isr() {
        // Leader 1 wrote 10 records in epoch 0 with ISR {1, 3}; then broker 3 failed and 1 led
        // again in epoch 1 with its high watermark still at 4 (a follower's view lags).
        let (_dir, p) = leader_with(10);
        p.set_replica_set(1, 1, 1, 1, vec![1, 2, 3], vec![1, 3]);
        p.log.lock().set_high_watermark(Offset(4));
        assert_eq!(p.replica_set().epoch_start_offset, 10);
        // Broker 2, out of the ISR, fetches at the high watermark: it lacks 4..10, which the
        // ISR may have acknowledged, so it must not join.
        p.record_follower_fetch(1, 2, 4, 1_000);
        assert!(!p.begin_isr_change(&[1, 2, 3]));
        assert!(p.replica_set().pending_isr.is_none());
        // Once it fetched past the epoch start it joins; the high watermark counts it at once.
        p.record_follower_fetch(1, 2, 10, 2_000);
        assert!(p.begin_isr_change(&[1, 2, 3]));
        assert_eq!(p.replica_set().maximal_isr(), vec![1, 3, 2]);
    }

    #[test]
    fn the_high_watermark_is_the_smallest_log_end_of_the_maximal_isr() {
        let (_dir, p) = leader_with(10);
        p.set_replica_set(1, 1, 1, 1, vec![1, 2, 3], vec![1, 2]);
        // Only the ISR counts: broker 3 lagging changes nothing.
        assert_eq!(p.record_follower_fetch(1, 3, 0, 1_000).0, Offset(0));
        assert_eq!(p.record_follower_fetch(1, 2, 7, 1_000), (Offset(7), true));
        // A pending expansion counts its joiner before the controller commits it.
        p.record_follower_fetch(1, 3, 10, 1_000);
        assert!(p.begin_isr_change(&[1, 2, 3]));
        p.record_follower_fetch(1, 3, 8, 1_000);
        assert_eq!(p.record_follower_fetch(1, 2, 10, 1_000), (Offset(8), true));
        // A refused change is forgotten.
        p.clear_pending_isr();
        assert_eq!(p.record_follower_fetch(1, 2, 10, 1_000).0, Offset(10));
    }
}
