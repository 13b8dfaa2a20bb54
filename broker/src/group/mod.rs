//! The group coordinator: classic groups (JoinGroup/SyncGroup/Heartbeat/LeaveGroup), KIP-848
//! consumer groups (ConsumerGroupHeartbeat), committed offsets, and their persistence as records
//! in the compacted internal topic `__consumer_offsets` (partition = hash of the group id, as in
//! Kafka). State lives in memory behind one lock; every change is appended to the group's
//! offsets partition and acknowledged only once fsynced. On start-up the topic is replayed
//! before the coordinator answers (COORDINATOR_LOAD_IN_PROGRESS until then).

pub mod classic;
pub mod configs;
pub mod consumer;
pub mod records;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use fjord_protocol::kafka_protocol::error::ResponseError;
use fjord_protocol::kafka_protocol::protocol::Decodable;
use fjord_protocol::kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::broker::Broker;
pub use crate::config::GroupConfig;
use crate::controller::NewTopic;
use classic::ClassicGroup;
use consumer::ConsumerGroup;
use records::{OffsetValue, RecordKey};

/// Kafka's internal topic for group metadata and committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// How often session, join and sync deadlines are checked.
const TICK: Duration = Duration::from_millis(100);

/// Which protocol a group speaks. A group is one or the other, never both.
#[derive(Debug)]
pub enum GroupKind {
    Classic(ClassicGroup),
    Consumer(ConsumerGroup),
}

/// A group and its committed offsets.
#[derive(Debug)]
pub struct Group {
    pub kind: GroupKind,
    pub offsets: BTreeMap<(String, i32), OffsetValue>,
    /// Records to write before the group's own changes: the tombstones of the protocol the
    /// group converted from.
    pub pending: Vec<OffsetsRecord>,
}

impl Group {
    pub fn new_classic(now_ms: i64) -> Group {
        Group::of(GroupKind::Classic(ClassicGroup::new(now_ms)))
    }

    pub fn of(kind: GroupKind) -> Group {
        Group {
            kind,
            offsets: BTreeMap::new(),
            pending: Vec::new(),
        }
    }

    /// Online upgrade of a live classic group to a consumer group when a member joins with
    /// ConsumerGroupHeartbeat (Kafka's `validateOnlineUpgrade` and `convertToConsumerGroup`):
    /// the classic members become members of the consumer group that keep their partitions and
    /// go on with JoinGroup/SyncGroup/Heartbeat; their waiting requests are answered
    /// REBALANCE_IN_PROGRESS; the classic group record is tombstoned. `Err` is the code and
    /// message to answer: Kafka's GROUP_ID_NOT_FOUND when the group cannot be upgraded,
    /// COORDINATOR_LOAD_IN_PROGRESS (retried) while its latest assignment is being stored.
    pub fn upgrade(
        &mut self,
        group_id: &str,
        topics: &consumer::TopicCounts,
        config: &GroupConfig,
        now: Instant,
    ) -> Result<(), (ResponseError, String)> {
        let GroupKind::Classic(classic) = &mut self.kind else {
            return Ok(());
        };
        let cannot = |why: &str| {
            (
                ResponseError::GroupIdNotFound,
                format!("Cannot upgrade classic group {group_id} to consumer group because {why}."),
            )
        };
        if !config.consumer_migration_policy.upgrade() {
            return Err(cannot("online upgrade is disabled"));
        }
        if classic.protocol_type.as_deref() != Some(consumer::CONSUMER_PROTOCOL_TYPE) {
            return Err(cannot("the group does not use the consumer embedded protocol"));
        }
        if classic.num_members() > config.max_size {
            return Err(cannot("the group size exceeds the consumer group maximum size"));
        }
        if classic.storing_generation().is_some() {
            // The leader's new assignment is being written and not yet handed out: the members
            // still own their previous partitions. The member retries its heartbeat.
            return Err((
                ResponseError::CoordinatorLoadInProgress,
                format!("the assignment of classic group {group_id} is being stored"),
            ));
        }
        let converted = ConsumerGroup::from_classic(
            classic.generation,
            classic.protocol.as_deref(),
            classic.export_members(),
            topics,
            now,
        )
        .map_err(|e| cannot(&format!("the embedded consumer protocol is malformed ({e})")))?;
        classic.abort_waiters(ResponseError::RebalanceInProgress);
        self.pending.push((
            RecordKey::Group {
                group: group_id.to_string(),
            },
            None,
        ));
        self.kind = GroupKind::Consumer(converted);
        tracing::info!(group = %group_id, "converted the classic group to a consumer group");
        Ok(())
    }

    /// Online downgrade after a consumer-protocol member left a consumer group: when only
    /// classic members remain and `group.consumer.migration.policy` allows it, the group
    /// becomes a classic group of them that rebalances at once (Kafka's `convertToClassicGroup`);
    /// the consumer group's records are tombstoned. True if it converted.
    pub fn maybe_downgrade(&mut self, group_id: &str, config: &GroupConfig, now: Instant, now_ms: i64) -> bool {
        let GroupKind::Consumer(g) = &mut self.kind else {
            return false;
        };
        let Some(members) = g.take_downgrade(config.consumer_migration_policy.downgrade(), config.max_size) else {
            return false;
        };
        self.pending.extend(g.tombstones(group_id));
        let generation = g.group_epoch;
        self.kind = GroupKind::Classic(ClassicGroup::from_members(generation, members, config, now, now_ms));
        tracing::info!(group = %group_id, "converted the consumer group to a classic group");
        true
    }

    /// No members (an offsets-only group counts as empty).
    pub fn is_empty(&self) -> bool {
        match &self.kind {
            GroupKind::Classic(g) => g.is_empty(),
            GroupKind::Consumer(g) => g.is_empty(),
        }
    }

    pub fn state_name(&self) -> &'static str {
        match &self.kind {
            GroupKind::Classic(g) => g.state.name(),
            GroupKind::Consumer(g) => g.state_name(),
        }
    }

    /// Which of `candidates` some member subscribes to (by name, or by regex in a KIP-848
    /// group); `None` when a classic group's subscriptions cannot be known (not the consumer
    /// protocol, or unreadable metadata).
    pub fn subscribed_among<'a>(&self, candidates: impl IntoIterator<Item = &'a str>) -> Option<BTreeSet<String>> {
        let candidates = candidates.into_iter();
        Some(match &self.kind {
            GroupKind::Consumer(g) => candidates.filter(|t| g.is_subscribed(t)).map(String::from).collect(),
            GroupKind::Classic(g) => {
                let known: BTreeSet<String> = g.subscribed_topics()?.into_iter().collect();
                candidates.filter(|t| known.contains(*t)).map(String::from).collect()
            }
        })
    }

    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            GroupKind::Classic(_) => "classic",
            GroupKind::Consumer(_) => "consumer",
        }
    }

    pub fn protocol_type(&self) -> String {
        match &self.kind {
            GroupKind::Classic(g) => g.protocol_type.clone().unwrap_or_default(),
            GroupKind::Consumer(_) => "consumer".into(),
        }
    }
}

/// A record to append to `__consumer_offsets` (a `None` value is a tombstone).
pub type OffsetsRecord = (RecordKey, Option<Bytes>);

/// The coordinator of every group (one node: all `__consumer_offsets` partitions are local).
#[derive(Debug)]
pub struct GroupCoordinator {
    pub config: GroupConfig,
    groups: Mutex<HashMap<String, Group>>,
    loaded: AtomicBool,
    /// Held from taking a group's changes until they are appended, so that records reach the
    /// log in the order the changes were made (a later state is never overwritten by an
    /// earlier one).
    append_order: Mutex<()>,
    /// Transactional offset commits (TxnOffsetCommit) by producer id, applied when the
    /// transaction's commit marker reaches their `__consumer_offsets` partition, dropped on abort.
    txn_offsets: Mutex<HashMap<i64, Vec<PendingTxnOffset>>>,
}

/// A transactional offset commit waiting for its transaction's outcome.
#[derive(Debug, Clone)]
pub struct PendingTxnOffset {
    pub group: String,
    /// The group's `__consumer_offsets` partition.
    pub offsets_partition: i32,
    pub topic: String,
    pub partition: i32,
    pub value: OffsetValue,
}

/// Kafka's partition of `__consumer_offsets` for a group: `abs(groupId.hashCode()) % n`, with
/// Java's `String.hashCode` over UTF-16 code units.
pub fn partition_for(group: &str, partitions: i32) -> i32 {
    let hash = group
        .encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)));
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    abs % partitions.max(1)
}

/// Topic names listed in consumer-protocol subscription metadata (ConsumerProtocolSubscription).
pub fn consumer_protocol_topics(metadata: &[u8]) -> Option<Vec<String>> {
    use fjord_protocol::kafka_protocol::messages::ConsumerProtocolSubscription;
    let mut buf = Bytes::copy_from_slice(metadata);
    if buf.len() < 2 {
        return None;
    }
    let version = i16::from_be_bytes([buf[0], buf[1]]);
    let _ = bytes::Buf::get_i16(&mut buf);
    let sub = ConsumerProtocolSubscription::decode(&mut buf, version.clamp(0, 3)).ok()?;
    Some(sub.topics.iter().map(|t| t.to_string()).collect())
}

impl GroupCoordinator {
    pub fn new(config: GroupConfig) -> GroupCoordinator {
        GroupCoordinator {
            config,
            groups: Mutex::new(HashMap::new()),
            loaded: AtomicBool::new(false),
            append_order: Mutex::new(()),
            txn_offsets: Mutex::new(HashMap::new()),
        }
    }

    /// False until `__consumer_offsets` has been replayed.
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Runs `f` on the groups under the coordinator lock.
    pub fn with_groups<T>(&self, f: impl FnOnce(&mut HashMap<String, Group>) -> T) -> T {
        f(&mut self.groups.lock())
    }

    /// Remembers transactional offset commits of `producer_id` until its transaction ends.
    pub fn add_txn_offsets(&self, producer_id: i64, offsets: Vec<PendingTxnOffset>) {
        self.txn_offsets.lock().entry(producer_id).or_default().extend(offsets);
    }

    /// A transaction marker of `producer_id` reached `__consumer_offsets` partition
    /// `offsets_partition`: its offset commits there become committed offsets (commit) or are
    /// dropped (abort).
    pub fn complete_txn(&self, producer_id: i64, offsets_partition: i32, commit: bool) {
        let done: Vec<PendingTxnOffset> = {
            let mut pending = self.txn_offsets.lock();
            let Some(list) = pending.get_mut(&producer_id) else {
                return;
            };
            let (done, rest): (Vec<_>, Vec<_>) = list.drain(..).partition(|o| o.offsets_partition == offsets_partition);
            *list = rest;
            if list.is_empty() {
                pending.remove(&producer_id);
            }
            done
        };
        if !commit || done.is_empty() {
            return;
        }
        let mut groups = self.groups.lock();
        for o in done {
            let group = groups.entry(o.group).or_insert_with(|| Group::new_classic(0));
            group.offsets.insert((o.topic, o.partition), o.value);
        }
    }

    /// Whether `group` has transactional offset commits waiting for their transaction
    /// (OffsetFetch with require_stable answers UNSTABLE_OFFSET_COMMIT meanwhile).
    pub fn has_pending_txn_offset(&self, group: &str, topic: &str, partition: i32) -> bool {
        self.txn_offsets.lock().values().any(|list| {
            list.iter()
                .any(|o| o.group == group && o.topic == topic && o.partition == partition)
        })
    }

    /// (group, topic, partition, committed offset) of every committed offset, for lag metrics.
    pub fn committed_offsets(&self) -> Vec<(String, String, i32, i64)> {
        let groups = self.groups.lock();
        groups
            .iter()
            .flat_map(|(g, group)| {
                group
                    .offsets
                    .iter()
                    .map(move |((t, p), v)| (g.clone(), t.clone(), *p, v.offset))
            })
            .collect()
    }

    /// The `__consumer_offsets` partitions this broker leads: the groups it coordinates.
    pub fn led_partitions(&self, broker: &Broker) -> std::collections::BTreeSet<i32> {
        let me = broker.node_id();
        broker
            .replicas
            .partitions_of(OFFSETS_TOPIC)
            .iter()
            .filter(|p| p.leader_id() == me)
            .map(|p| p.index)
            .collect()
    }

    /// Follows leadership of `__consumer_offsets` (Kafka's onElection/onResignation): groups of
    /// a partition this broker no longer leads are dropped from memory, and those of a partition
    /// it now leads are replayed from its log (blocking). `led` is what it led before; returns
    /// what it leads now.
    pub fn follow_leadership(
        &self,
        broker: &Broker,
        led: &std::collections::BTreeSet<i32>,
    ) -> std::collections::BTreeSet<i32> {
        let now = self.led_partitions(broker);
        if now == *led {
            return now;
        }
        let n = self.config.offsets_topic_partitions;
        let lost: Vec<i32> = led.difference(&now).copied().collect();
        if !lost.is_empty() {
            self.groups.lock().retain(|id, _| !lost.contains(&partition_for(id, n)));
            tracing::info!(partitions = ?lost, "no longer coordinating the groups of these __consumer_offsets partitions");
        }
        let gained: std::collections::BTreeSet<i32> = now.difference(led).copied().collect();
        if !gained.is_empty() {
            self.load_partitions(broker, &gained);
        }
        now
    }

    /// Replays `__consumer_offsets` into memory (blocking; called once at start-up): the
    /// partitions this broker leads (every one, on a single node).
    pub fn load(&self, broker: &Broker) {
        let led = self.led_partitions(broker);
        self.load_partitions(broker, &led);
        self.loaded.store(true, Ordering::Release);
    }

    /// Replays the given `__consumer_offsets` partitions, replacing what memory holds for the
    /// groups that map to them.
    fn load_partitions(&self, broker: &Broker, indexes: &std::collections::BTreeSet<i32>) {
        let started = Instant::now();
        let mut groups: HashMap<String, Group> = HashMap::new();
        let mut stored_groups: HashMap<String, Option<records::GroupValue>> = HashMap::new();
        let mut stored_consumer: HashMap<String, StoredConsumerGroup> = HashMap::new();
        // Which protocol wrote a group's state last (a group may have changed protocol).
        let mut last_writer: HashMap<String, &'static str> = HashMap::new();
        let mut records = 0usize;
        for partition in broker
            .replicas
            .partitions_of(OFFSETS_TOPIC)
            .into_iter()
            .filter(|p| indexes.contains(&p.index))
        {
            let result = read_partition(&partition, |key, value| {
                records += 1;
                match (key, value) {
                    (
                        RecordKey::Offset {
                            group,
                            topic,
                            partition,
                        },
                        value,
                    ) => {
                        let entry = groups.entry(group).or_insert_with(|| Group::new_classic(0));
                        match value.map(|v| OffsetValue::decode(&v)) {
                            Some(Ok(v)) => {
                                entry.offsets.insert((topic, partition), v);
                            }
                            Some(Err(error)) => tracing::warn!(%error, "skipping unreadable offset record"),
                            None => {
                                entry.offsets.remove(&(topic, partition));
                            }
                        }
                    }
                    (RecordKey::Group { group }, value) => {
                        let decoded = value.and_then(|v| match records::GroupValue::decode(&v) {
                            Ok(v) => Some(v),
                            Err(error) => {
                                tracing::warn!(%error, "skipping unreadable group record");
                                None
                            }
                        });
                        if decoded.is_some() {
                            last_writer.insert(group.clone(), "classic");
                        }
                        stored_groups.insert(group, decoded);
                    }
                    (key, value) => {
                        let group = key.group().to_string();
                        if value.is_some() {
                            last_writer.insert(group.clone(), "consumer");
                        }
                        let entry = stored_consumer.entry(group).or_default();
                        if let Err(error) = entry.apply(key, value) {
                            tracing::warn!(%error, "skipping unreadable consumer group record");
                        }
                    }
                }
            });
            match result {
                Ok(open) => {
                    // Transactional offset commits whose transaction has no marker yet.
                    for (producer_id, records) in open {
                        let pending = records
                            .into_iter()
                            .filter_map(|(key, value)| match (key, value.map(|v| OffsetValue::decode(&v))) {
                                (
                                    RecordKey::Offset {
                                        group,
                                        topic,
                                        partition: p,
                                    },
                                    Some(Ok(value)),
                                ) => Some(PendingTxnOffset {
                                    group,
                                    offsets_partition: partition.index,
                                    topic,
                                    partition: p,
                                    value,
                                }),
                                _ => None,
                            })
                            .collect();
                        self.add_txn_offsets(producer_id, pending);
                    }
                }
                Err(error) => {
                    tracing::error!(partition = partition.index, %error, "reading __consumer_offsets failed");
                }
            }
        }
        let now = Instant::now();
        let image = broker.image();
        let topics = topic_counts(broker);
        for (id, stored) in stored_consumer {
            if last_writer.get(&id) != Some(&"consumer") {
                continue;
            }
            let Some(epoch) = stored.epoch else { continue };
            let members = stored.members(|topic_id| {
                image
                    .topic_by_id(fjord_metadata::TopicId(topic_id))
                    .map(|t| t.name.clone())
            });
            let group = groups.entry(id.clone()).or_insert_with(|| Group::new_classic(0));
            group.kind = GroupKind::Consumer(ConsumerGroup::restore(epoch, members, &topics, &self.config, now));
            stored_groups.remove(&id);
        }
        for (id, value) in stored_groups {
            match value {
                Some(value) if last_writer.get(&id) == Some(&"classic") => {
                    let group = groups.entry(id).or_insert_with(|| Group::new_classic(0));
                    group.kind = GroupKind::Classic(ClassicGroup::restore(value, now));
                }
                Some(_) => {}
                None => {
                    if groups.get(&id).is_some_and(|g| g.offsets.is_empty()) {
                        groups.remove(&id);
                    }
                }
            }
        }
        groups.retain(|_, g| !(g.offsets.is_empty() && g.is_empty()));
        tracing::info!(
            groups = groups.len(),
            records,
            partitions = indexes.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "group coordinator loaded __consumer_offsets"
        );
        let n = self.config.offsets_topic_partitions;
        let mut current = self.groups.lock();
        current.retain(|id, _| !indexes.contains(&partition_for(id, n)));
        current.extend(groups);
    }

    /// Advances every group's timers; returns the groups whose stored state may have changed.
    fn tick(&self, now: Instant, now_ms: i64) -> Vec<String> {
        let mut groups = self.groups.lock();
        let mut changed = Vec::new();
        for (id, group) in groups.iter_mut() {
            let maybe_changed = match &mut group.kind {
                GroupKind::Classic(g) => {
                    g.tick(&self.config, now, now_ms);
                    g.is_dirty()
                }
                GroupKind::Consumer(g) => g.tick(now),
            };
            let converted = group.maybe_downgrade(id, &self.config, now, now_ms);
            if maybe_changed || converted {
                changed.push(id.clone());
            }
        }
        changed
    }

    /// The records for what changed in a group since they were last taken: a classic group's
    /// metadata if a request or timer changed it; a KIP-848 group's epoch, members and
    /// assignments that changed.
    fn take_changes(&self, broker: &Broker, group_id: &str) -> Vec<OffsetsRecord> {
        let image = broker.image();
        let mut groups = self.groups.lock();
        let Some(group) = groups.get_mut(group_id) else {
            return Vec::new();
        };
        let mut records = std::mem::take(&mut group.pending);
        match &mut group.kind {
            GroupKind::Classic(g) => {
                if g.take_dirty() {
                    records.push((
                        RecordKey::Group {
                            group: group_id.to_string(),
                        },
                        Some(g.to_value().encode()),
                    ));
                }
            }
            GroupKind::Consumer(g) => records.extend(g.take_records(group_id, |t| topic_id(&image, t))),
        }
        records
    }

    /// Offsets older than `offsets.retention`, as tombstones: every offset of an empty group
    /// (counted from when the group became empty, or from the commit), and, as in Kafka
    /// (KIP-496), offsets of a non-empty consumer group for topics it no longer subscribes to
    /// (counted from the commit). Groups left with nothing are removed.
    fn expire_offsets(&self, now_ms: i64) -> Vec<(String, Vec<OffsetsRecord>)> {
        let retention_ms = self.config.offsets_retention.as_millis() as i64;
        let mut groups = self.groups.lock();
        let mut out = Vec::new();
        let mut remove = Vec::new();
        for (id, group) in groups.iter_mut() {
            let empty = group.is_empty();
            let expired: Vec<(String, i32)> = if empty {
                let empty_since = match &group.kind {
                    GroupKind::Classic(g) => g.state_timestamp_ms,
                    GroupKind::Consumer(_) => 0,
                };
                group
                    .offsets
                    .iter()
                    .filter(|(_, v)| v.commit_timestamp_ms.max(empty_since) + retention_ms <= now_ms)
                    .map(|(k, _)| k.clone())
                    .collect()
            } else {
                let topics = group.offsets.keys().map(|(t, _)| t.as_str());
                // Subscriptions unknown (not the consumer protocol): keep everything.
                let Some(subscribed) = group.subscribed_among(topics) else {
                    continue;
                };
                group
                    .offsets
                    .iter()
                    .filter(|((topic, _), v)| {
                        !subscribed.contains(topic) && v.commit_timestamp_ms + retention_ms <= now_ms
                    })
                    .map(|(k, _)| k.clone())
                    .collect()
            };
            let mut tombstones = Vec::new();
            for (topic, partition) in expired {
                group.offsets.remove(&(topic.clone(), partition));
                tombstones.push((
                    RecordKey::Offset {
                        group: id.clone(),
                        topic,
                        partition,
                    },
                    None,
                ));
            }
            if empty && group.offsets.is_empty() {
                match &group.kind {
                    GroupKind::Classic(_) => tombstones.push((RecordKey::Group { group: id.clone() }, None)),
                    GroupKind::Consumer(g) => tombstones.extend(g.tombstones(id)),
                }
                remove.push(id.clone());
            }
            if !tombstones.is_empty() {
                out.push((id.clone(), tombstones));
            }
        }
        for id in remove {
            groups.remove(&id);
        }
        out
    }
}

/// A topic's id in the current image.
fn topic_id(image: &fjord_metadata::MetadataImage, topic: &str) -> Option<uuid::Uuid> {
    image.topic(topic).map(|t| t.id.0)
}

/// A KIP-848 group's records as replayed (latest value per key; tombstones remove).
#[derive(Debug, Default)]
struct StoredConsumerGroup {
    epoch: Option<i32>,
    metadata: BTreeMap<String, records::ConsumerMemberValue>,
    assignments: BTreeMap<String, records::ConsumerAssignmentValue>,
}

impl StoredConsumerGroup {
    fn apply(&mut self, key: RecordKey, value: Option<Bytes>) -> Result<(), records::RecordError> {
        match key {
            RecordKey::ConsumerGroup { .. } => {
                self.epoch = value
                    .map(|v| records::ConsumerGroupValue::decode(&v))
                    .transpose()?
                    .map(|v| v.epoch);
            }
            RecordKey::ConsumerMember { member, .. } => match value {
                Some(v) => {
                    self.metadata.insert(member, records::ConsumerMemberValue::decode(&v)?);
                }
                None => {
                    self.metadata.remove(&member);
                }
            },
            RecordKey::ConsumerAssignment { member, .. } => match value {
                Some(v) => {
                    self.assignments
                        .insert(member, records::ConsumerAssignmentValue::decode(&v)?);
                }
                None => {
                    self.assignments.remove(&member);
                }
            },
            RecordKey::Offset { .. } | RecordKey::Group { .. } => {}
        }
        Ok(())
    }

    /// Members with both their metadata and their assignment stored.
    fn members(mut self, topic_name: impl Fn(uuid::Uuid) -> Option<String>) -> Vec<consumer::StoredMember> {
        self.metadata
            .into_iter()
            .filter_map(|(member_id, metadata)| {
                let a = self.assignments.remove(&member_id)?;
                Some(consumer::StoredMember {
                    member_id,
                    metadata,
                    assignment: consumer::StoredAssignment {
                        member_epoch: a.member_epoch,
                        previous_member_epoch: a.previous_member_epoch,
                        state: a.state,
                        assigned: consumer::by_topic_name(&a.assigned_partitions, &topic_name),
                        revoking: consumer::by_topic_name(&a.partitions_pending_revocation, &topic_name),
                    },
                })
            })
            .collect()
    }
}

/// Reads every record of one `__consumer_offsets` partition, in offset order. Records of
/// transactional batches (TxnOffsetCommit) are visited when their commit marker is read and
/// dropped at an abort marker; those still open at the end are returned by producer id.
fn read_partition(
    partition: &crate::replication::Partition,
    mut visit: impl FnMut(RecordKey, Option<Bytes>),
) -> Result<HashMap<i64, Vec<OffsetsRecord>>, String> {
    use crate::replication::ScannedRecord;
    let mut open: HashMap<i64, Vec<OffsetsRecord>> = HashMap::new();
    crate::replication::scan_records(partition, |item| match item {
        ScannedRecord::Data { header, key, value } => {
            let Some(key) = key else { return };
            match RecordKey::decode(key) {
                Ok(Some(key)) => {
                    let value = value.map(Bytes::copy_from_slice);
                    if header.is_transactional() && header.producer_id >= 0 {
                        open.entry(header.producer_id).or_default().push((key, value));
                    } else {
                        visit(key, value);
                    }
                }
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "skipping unreadable __consumer_offsets key"),
            }
        }
        ScannedRecord::Marker { header, control } => {
            if let Some(records) = open.remove(&header.producer_id)
                && control == fjord_storage::ControlType::Commit
            {
                for (key, value) in records {
                    visit(key, value);
                }
            }
        }
    })?;
    Ok(open)
}

/// Encodes records as one uncompressed record batch.
fn encode_batch(records: &[OffsetsRecord], now_ms: i64) -> Result<Bytes, String> {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, (key, value))| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // No producer id: the batch's base sequence is -1 (the encoder wants offset minus
            // sequence to be the same for every record of one batch).
            sequence: i as i32 - 1,
            timestamp: now_ms,
            key: Some(key.encode()),
            value: value.clone(),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| e.to_string())?;
    Ok(buf.freeze())
}

impl Broker {
    /// Creates `__consumer_offsets` if it does not exist yet (on first FindCoordinator, as Kafka).
    pub fn ensure_offsets_topic(&self) -> Result<(), crate::controller::ApiError> {
        if self.image().topic(OFFSETS_TOPIC).is_some() {
            return Ok(());
        }
        let config = &self.groups.config;
        // Kafka's offsets.topic.replication.factor is 3; here it is capped at the live brokers
        // (one on the embedded node), so the first group of a small cluster does not fail.
        let live = self.image().cluster().unfenced_brokers().count().max(1);
        let replication_factor = i16::try_from(live.min(3)).unwrap_or(3);
        let topic = NewTopic {
            name: OFFSETS_TOPIC.to_string(),
            num_partitions: config.offsets_topic_partitions,
            replication_factor,
            explicit_assignments: None,
            configs: [
                ("cleanup.policy".to_string(), "compact".to_string()),
                (
                    "segment.bytes".to_string(),
                    config.offsets_topic_segment_bytes.to_string(),
                ),
                ("compression.type".to_string(), "producer".to_string()),
            ]
            .into_iter()
            .collect(),
        };
        match self.create_internal_topic(topic) {
            Ok(_) => {
                tracing::info!(
                    partitions = config.offsets_topic_partitions,
                    "created __consumer_offsets"
                );
                Ok(())
            }
            Err(e) if e.code == ResponseError::TopicAlreadyExists => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Appends records for `group` to its `__consumer_offsets` partition (blocking), which this
    /// broker must lead (else NOT_COORDINATOR: a follower's copy is written only by its fetcher).
    /// Durable once [`crate::replication::Flusher::wait_durable`] returns, and on every in-sync
    /// replica once the returned offset is below the high watermark.
    pub fn append_group_records(
        &self,
        group: &str,
        records: &[OffsetsRecord],
    ) -> Result<Option<(Arc<crate::replication::Partition>, fjord_storage::LeaderEpoch, i64)>, ResponseError> {
        if records.is_empty() {
            return Ok(None);
        }
        self.ensure_offsets_topic().map_err(|e| {
            tracing::error!(message = %e.message, "cannot create __consumer_offsets");
            ResponseError::CoordinatorNotAvailable
        })?;
        let index = partition_for(group, self.groups.config.offsets_topic_partitions);
        // Another thread may have just created the topic and not yet opened its partitions.
        let hosted = self.replicas.get(OFFSETS_TOPIC, index).or_else(|| {
            let _ = self.await_published(self.image());
            self.replicas.get(OFFSETS_TOPIC, index)
        });
        let Some(partition) = hosted else {
            tracing::error!(partition = index, "__consumer_offsets partition is not hosted");
            return Err(ResponseError::CoordinatorNotAvailable);
        };
        if partition.leader_id() != self.node_id() {
            return Err(ResponseError::NotCoordinator);
        }
        let now = crate::clock::now_ms();
        let batch = encode_batch(records, now).map_err(|error| {
            tracing::error!(%error, "cannot encode __consumer_offsets batch");
            ResponseError::UnknownServerError
        })?;
        match self
            .replicas
            .append_as_leader(&partition, fjord_storage::AppendOrigin::Coordinator, &batch, now)
        {
            Ok(appended) => Ok(Some((
                partition,
                appended.leader_epoch,
                appended.info.last_offset.0 + 1,
            ))),
            Err(crate::replication::LeaderAppendError::NotLeader) => Err(ResponseError::NotCoordinator),
            Err(error) => {
                tracing::error!(%group, %error, "appending to __consumer_offsets failed");
                Err(ResponseError::KafkaStorageError)
            }
        }
    }
}

impl Broker {
    /// Appends transactional offset commits of `producer_id`/`epoch` for `group` to its
    /// `__consumer_offsets` partition (blocking) and remembers them until the transaction ends.
    pub fn append_txn_offsets(
        &self,
        group: &str,
        producer_id: i64,
        epoch: i16,
        offsets: Vec<((String, i32), OffsetValue)>,
    ) -> Result<(), ResponseError> {
        self.ensure_offsets_topic()
            .map_err(|_| ResponseError::CoordinatorNotAvailable)?;
        let index = partition_for(group, self.groups.config.offsets_topic_partitions);
        let Some(partition) = self.replicas.get(OFFSETS_TOPIC, index) else {
            return Err(ResponseError::CoordinatorNotAvailable);
        };
        let records: Vec<(Bytes, Option<Bytes>)> = offsets
            .iter()
            .map(|((topic, p), value)| {
                let key = RecordKey::Offset {
                    group: group.to_string(),
                    topic: topic.clone(),
                    partition: *p,
                };
                (key.encode(), Some(value.encode()))
            })
            .collect();
        let now = crate::clock::now_ms();
        let batch = crate::txn::records::encode_transactional(producer_id, epoch, &records, now)
            .map_err(|_| ResponseError::UnknownServerError)?;
        match self
            .replicas
            .append_as_leader(&partition, fjord_storage::AppendOrigin::Coordinator, &batch, now)
        {
            Ok(_) => {}
            Err(crate::replication::LeaderAppendError::NotLeader) => return Err(ResponseError::NotCoordinator),
            Err(crate::replication::LeaderAppendError::Storage(fjord_storage::Error::InvalidProducerEpoch {
                ..
            })) => {
                return Err(ResponseError::ProducerFenced);
            }
            Err(error) => {
                tracing::error!(%group, %error, "appending transactional offsets failed");
                return Err(ResponseError::KafkaStorageError);
            }
        }
        let pending = offsets
            .into_iter()
            .map(|((topic, p), value)| PendingTxnOffset {
                group: group.to_string(),
                offsets_partition: index,
                topic,
                partition: p,
                value,
            })
            .collect();
        self.groups.add_txn_offsets(producer_id, pending);
        Ok(())
    }
}

/// Appends `records` for `group` and waits until they are durable.
pub async fn write_records(
    broker: &Arc<Broker>,
    group: &str,
    records: Vec<OffsetsRecord>,
) -> Result<(), ResponseError> {
    if records.is_empty() {
        return Ok(());
    }
    let group = group.to_string();
    let appended = broker
        .blocking(move |b| b.append_group_records(&group, &records))
        .await?;
    broker.replicas.flusher.wait_durable().await;
    wait_replicated(broker, appended).await
}

/// Waits until the in-sync replicas of `__consumer_offsets` have an appended group batch.
pub async fn wait_replicated(
    broker: &Arc<Broker>,
    appended: Option<(Arc<crate::replication::Partition>, fjord_storage::LeaderEpoch, i64)>,
) -> Result<(), ResponseError> {
    let Some((partition, epoch, end)) = appended else {
        return Ok(());
    };
    let deadline = std::time::Instant::now() + GROUP_REPLICATION_TIMEOUT;
    match partition
        .wait_for_high_watermark(broker.node_id(), epoch, end, deadline)
        .await
    {
        crate::replication::partition::HighWatermarkWait::Reached => Ok(()),
        crate::replication::partition::HighWatermarkWait::NotLeader => Err(ResponseError::NotCoordinator),
        crate::replication::partition::HighWatermarkWait::TimedOut => Err(ResponseError::RequestTimedOut),
    }
}

/// How long a group write waits for the in-sync replicas of its `__consumer_offsets` partition.
const GROUP_REPLICATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Writes what a request or timer changed in a group's state, and waits until it is durable.
pub async fn persist(broker: &Arc<Broker>, group: &str) -> Result<(), ResponseError> {
    let group = group.to_string();
    let appended = broker
        .blocking(move |b| {
            let _order = b.groups.append_order.lock();
            let records = b.groups.take_changes(b, &group);
            if records.is_empty() {
                return Ok(None);
            }
            b.append_group_records(&group, &records)
        })
        .await?;
    if appended.is_some() {
        broker.replicas.flusher.wait_durable().await;
    }
    wait_replicated(broker, appended).await
}

/// [`persist`], logging a failure (for callers whose answer does not depend on it).
pub async fn persist_if_dirty(broker: &Arc<Broker>, group: &str) {
    if let Err(code) = persist(broker, group).await {
        tracing::error!(%group, ?code, "storing group metadata failed");
    }
}

/// Loads the coordinator, then runs its timers (sessions, rebalances, offsets retention) until
/// shutdown.
pub async fn run(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let mut led = broker
        .blocking(|b| {
            b.groups.load(b);
            b.groups.led_partitions(b)
        })
        .await;
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_expiry = Instant::now();
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        let before = led.clone();
        led = broker.blocking(move |b| b.groups.follow_leadership(b, &before)).await;
        let now_ms = crate::clock::now_ms();
        for group in broker.groups.tick(Instant::now(), now_ms) {
            persist_if_dirty(&broker, &group).await;
        }
        if last_expiry.elapsed() >= broker.groups.config.offsets_retention_check_interval {
            last_expiry = Instant::now();
            for (group, tombstones) in broker.groups.expire_offsets(now_ms) {
                tracing::info!(%group, records = tombstones.len(), "expiring offsets of empty group");
                if let Err(code) = write_records(&broker, &group, tombstones).await {
                    tracing::error!(%group, ?code, "writing offset expiry tombstones failed");
                }
            }
        }
    }
}

/// Checks every group request has to pass: a group id, and a loaded coordinator.
pub fn precheck(broker: &Broker, group_id: &str) -> Result<(), ResponseError> {
    if group_id.is_empty() {
        return Err(ResponseError::InvalidGroupId);
    }
    if !broker.groups.is_loaded() {
        return Err(ResponseError::CoordinatorLoadInProgress);
    }
    // The coordinator of a group is the leader of its __consumer_offsets partition.
    let index = partition_for(group_id, broker.groups.config.offsets_topic_partitions);
    let leader = broker
        .image()
        .topic(OFFSETS_TOPIC)
        .and_then(|t| t.partitions.get(index as usize).map(|p| p.leader.0));
    if leader.is_some_and(|leader| leader != broker.node_id()) {
        return Err(ResponseError::NotCoordinator);
    }
    Ok(())
}

/// Topic partition counts of the current image, internal topics excluded (for KIP-848 assignors).
pub fn topic_counts(broker: &Broker) -> consumer::TopicCounts {
    broker
        .image()
        .topics()
        .filter(|t| !t.name.starts_with("__"))
        .map(|t| (t.name.clone(), t.partitions.len() as i32))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_for_matches_java_string_hashcode() {
        // "test-group".hashCode() == 627841412 in Java; 627841412 % 50 == 12.
        assert_eq!(partition_for("test-group", 50), 12);
        // "a".hashCode() == 97.
        assert_eq!(partition_for("a", 50), 47);
        assert_eq!(partition_for("", 50), 0);
    }

    #[test]
    fn offsets_of_empty_groups_expire_after_retention() {
        let config = GroupConfig {
            offsets_retention: Duration::from_secs(60),
            ..GroupConfig::default()
        };
        let coordinator = GroupCoordinator::new(config);
        let value = |ts| OffsetValue {
            offset: 5,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp_ms: ts,
        };
        coordinator.with_groups(|groups| {
            let mut empty = Group::new_classic(0);
            empty.offsets.insert(("t".into(), 0), value(1_000));
            empty.offsets.insert(("t".into(), 1), value(50_000));
            groups.insert("g".into(), empty);
        });
        // At 61 s only the commit from 1 s has expired; the group stays with one offset.
        let out = coordinator.expire_offsets(61_000);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].1.len(), 1);
        assert!(coordinator.with_groups(|g| g["g"].offsets.len() == 1));
        // At 111 s the rest expires and the group is deleted (group tombstone written too).
        let out = coordinator.expire_offsets(111_000);
        assert_eq!(out[0].1.len(), 2);
        assert!(matches!(out[0].1[1], (RecordKey::Group { .. }, None)));
        assert!(coordinator.with_groups(|g| g.is_empty()));
    }

    #[test]
    fn non_empty_groups_expire_only_offsets_of_topics_they_no_longer_subscribe_to() {
        use consumer::{ConsumerGroup, HeartbeatParams, TopicCounts};
        let config = GroupConfig {
            offsets_retention: Duration::from_secs(60),
            ..GroupConfig::default()
        };
        let topics: TopicCounts = [("t".to_string(), 1), ("rx".to_string(), 1)].into_iter().collect();
        let mut g = ConsumerGroup::new();
        for (member, names, regex) in [
            ("a", Some(vec!["t".to_string()]), None),
            ("b", None, Some("r.*".to_string())),
        ] {
            let r = g.heartbeat(
                HeartbeatParams {
                    member_id: member.into(),
                    member_epoch: 0,
                    subscribed_topics: names,
                    subscribed_regex: regex,
                    ..HeartbeatParams::default()
                },
                &topics,
                &config,
                1,
                Instant::now(),
            );
            assert_eq!(r.error, None);
        }
        let coordinator = GroupCoordinator::new(config);
        let value = |ts| OffsetValue {
            offset: 5,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp_ms: ts,
        };
        coordinator.with_groups(|groups| {
            let mut group = Group::of(GroupKind::Consumer(g));
            for topic in ["t", "rx", "old"] {
                group.offsets.insert((topic.into(), 0), value(1_000));
            }
            groups.insert("g".into(), group);
        });
        // Before the retention has passed nothing goes.
        assert!(coordinator.expire_offsets(60_000).is_empty());
        // After it, only the unsubscribed topic's offset; the group and the others stay.
        let out = coordinator.expire_offsets(61_000);
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].1,
            vec![(
                RecordKey::Offset {
                    group: "g".into(),
                    topic: "old".into(),
                    partition: 0
                },
                None
            )]
        );
        let left: Vec<String> = coordinator.with_groups(|g| g["g"].offsets.keys().map(|(t, _)| t.clone()).collect());
        assert_eq!(left, vec!["rx".to_string(), "t".to_string()]);
    }

    /// Replays records the way `load` does (only the KIP-848 ones).
    fn replay(records: &[OffsetsRecord]) -> StoredConsumerGroup {
        let mut stored = StoredConsumerGroup::default();
        for (key, value) in records {
            let key = RecordKey::decode(&key.encode()).unwrap().unwrap();
            stored.apply(key, value.clone()).unwrap();
        }
        stored
    }

    #[test]
    fn consumer_group_survives_a_restart_through_its_records() {
        use consumer::{ConsumerGroup, HeartbeatParams, TopicCounts};
        let config = GroupConfig::default();
        let topics: TopicCounts = [("t".to_string(), 4)].into_iter().collect();
        let id = uuid::Uuid::new_v4();
        let topic_id = |t: &str| (t == "t").then_some(id);
        let topic_name = |u: uuid::Uuid| (u == id).then(|| "t".to_string());
        let now = Instant::now();
        let join = |member: &str| HeartbeatParams {
            member_id: member.into(),
            member_epoch: 0,
            subscribed_topics: Some(vec!["t".into()]),
            rebalance_timeout: Some(Duration::from_secs(30)),
            server_assignor: Some("range".into()),
            ..HeartbeatParams::default()
        };
        let beat = |member: &str, epoch: i32, owned: &std::collections::BTreeSet<(String, i32)>| HeartbeatParams {
            member_id: member.into(),
            member_epoch: epoch,
            owned: Some(owned.clone()),
            ..HeartbeatParams::default()
        };
        let mut g = ConsumerGroup::new();
        let mut log: Vec<OffsetsRecord> = Vec::new();
        let a = g.heartbeat(join("a"), &topics, &config, 1, now);
        log.extend(g.take_records("g", topic_id));
        let b = g.heartbeat(join("b"), &topics, &config, 1, now);
        log.extend(g.take_records("g", topic_id));
        let a_kept = g
            .heartbeat(
                beat("a", a.member_epoch, &a.assignment.unwrap()),
                &topics,
                &config,
                1,
                now,
            )
            .assignment
            .unwrap();
        let a_done = g.heartbeat(beat("a", 1, &a_kept), &topics, &config, 1, now);
        let b_got = g
            .heartbeat(beat("b", b.member_epoch, &Default::default()), &topics, &config, 1, now)
            .assignment
            .unwrap();
        log.extend(g.take_records("g", topic_id));
        assert_eq!(g.state_name(), "Stable");
        // Nothing changed since: nothing more to write.
        let _ = g.heartbeat(beat("b", b.member_epoch, &b_got), &topics, &config, 1, now);
        assert!(g.take_records("g", topic_id).is_empty());

        let stored = replay(&log);
        let epoch = stored.epoch.expect("group epoch stored");
        let restored = ConsumerGroup::restore(epoch, stored.members(topic_name), &topics, &config, Instant::now());
        let mut r = restored;
        assert_eq!(r.group_epoch, g.group_epoch);
        assert_eq!(r.assignor, "range");
        assert_eq!(r.state_name(), "Stable");
        // Both members carry on at their epochs, with the partitions they had.
        let a2 = r.heartbeat(beat("a", a_done.member_epoch, &a_kept), &topics, &config, 1, now);
        assert_eq!((a2.error, a2.member_epoch), (None, a_done.member_epoch));
        assert_eq!(a2.assignment, Some(a_kept.clone()));
        let b2 = r.heartbeat(beat("b", b.member_epoch, &b_got), &topics, &config, 1, now);
        assert_eq!(
            (b2.error, b2.member_epoch, b2.assignment),
            (None, b.member_epoch, Some(b_got))
        );
        // The restored group writes nothing it already has; a leave is written as tombstones.
        assert!(r.take_records("g", topic_id).is_empty());
        let _ = r.heartbeat(beat("b", -1, &Default::default()), &topics, &config, 1, now);
        let records = r.take_records("g", topic_id);
        assert_eq!(records.iter().filter(|(_, v)| v.is_none()).count(), 2);
        log.extend(records);
        let stored = replay(&log);
        assert_eq!(stored.members(topic_name).len(), 1);
        // Deleting the group tombstones every key it wrote.
        log.extend(r.tombstones("g"));
        let stored = replay(&log);
        assert!(stored.epoch.is_none() && stored.members(topic_name).is_empty());
    }

    #[test]
    fn online_upgrade_and_downgrade_are_stored_and_survive_a_restart() {
        use consumer::{HeartbeatParams, TopicCounts, encode_assignment};
        let config = GroupConfig::default();
        let topics: TopicCounts = [("t".to_string(), 2)].into_iter().collect();
        let id = uuid::Uuid::new_v4();
        let topic_id = |t: &str| (t == "t").then_some(id);
        let topic_name = |u: uuid::Uuid| (u == id).then(|| "t".to_string());
        let now = Instant::now();
        let owned: std::collections::BTreeSet<(String, i32)> = [("t".to_string(), 0), ("t".to_string(), 1)].into();
        let stored = records::GroupValue {
            protocol_type: "consumer".into(),
            generation: 4,
            protocol: Some("range".into()),
            leader: Some("a".into()),
            state_timestamp_ms: 0,
            members: vec![records::MemberValue {
                member_id: "a".into(),
                group_instance_id: None,
                client_id: "kafka-python".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 30_000,
                session_timeout_ms: 10_000,
                subscription: consumer::tests::subscription(&["t"], &Default::default()),
                assignment: encode_assignment(&owned, 0),
            }],
        };
        let mut group = Group::of(GroupKind::Classic(ClassicGroup::restore(stored.clone(), now)));
        // The policy decides; a group not using the consumer protocol never upgrades.
        let disabled = GroupConfig {
            consumer_migration_policy: crate::config::MigrationPolicy::Downgrade,
            ..GroupConfig::default()
        };
        let (code, message) = group.upgrade("g", &topics, &disabled, now).unwrap_err();
        assert_eq!(code, ResponseError::GroupIdNotFound);
        assert!(message.contains("online upgrade is disabled"), "{message}");
        let mut connect = Group::of(GroupKind::Classic(ClassicGroup::restore(
            records::GroupValue {
                protocol_type: "connect".into(),
                ..stored.clone()
            },
            now,
        )));
        assert!(connect.upgrade("g", &topics, &config, now).is_err());
        group.upgrade("g", &topics, &config, now).expect("upgrades");
        assert_eq!(group.pending, vec![(RecordKey::Group { group: "g".into() }, None)]);
        let GroupKind::Consumer(g) = &mut group.kind else {
            panic!("not converted")
        };
        assert_eq!(g.group_epoch, 4);
        let mut log: Vec<OffsetsRecord> = std::mem::take(&mut group.pending);
        log.extend(g.take_records("g", topic_id));
        // Restart: the classic member comes back as a classic member with its partitions.
        let replayed = replay(&log);
        let epoch = replayed.epoch.expect("epoch stored");
        let mut restored = ConsumerGroup::restore(epoch, replayed.members(topic_name), &topics, &config, now);
        assert_eq!(restored.classic_heartbeat("a", None, 4, now), None);
        let described = restored.describe_members();
        assert!(described[0].classic && described[0].assignment == owned);
        // A consumer member joins and leaves: the group goes back to classic, stored as such.
        let join = HeartbeatParams {
            member_id: "c".into(),
            member_epoch: 0,
            subscribed_topics: Some(vec!["t".into()]),
            ..HeartbeatParams::default()
        };
        assert_eq!(restored.heartbeat(join, &topics, &config, 1, now).error, None);
        log.extend(restored.take_records("g", topic_id));
        let leave = HeartbeatParams {
            member_id: "c".into(),
            member_epoch: -1,
            ..HeartbeatParams::default()
        };
        assert_eq!(restored.heartbeat(leave, &topics, &config, 1, now).error, None);
        let mut group = Group::of(GroupKind::Consumer(restored));
        assert!(group.maybe_downgrade("g", &config, now, 0));
        let GroupKind::Classic(c) = &mut group.kind else {
            panic!("not converted back")
        };
        assert!(c.take_dirty());
        log.extend(std::mem::take(&mut group.pending));
        log.push((RecordKey::Group { group: "g".into() }, Some(c.to_value().encode())));
        // Every KIP-848 record is tombstoned and the last group record is a classic one.
        let replayed = replay(&log);
        assert!(replayed.epoch.is_none() && replayed.members(topic_name).is_empty());
        let last = log
            .iter()
            .rev()
            .find(|(k, _)| matches!(k, RecordKey::Group { .. }))
            .unwrap();
        let value = records::GroupValue::decode(last.1.as_ref().unwrap()).unwrap();
        assert_eq!((value.protocol_type.as_str(), value.members.len()), ("consumer", 1));
        assert!(value.generation > 4);
    }

    #[test]
    fn batch_encoding_decodes_back() {
        let records = vec![
            (RecordKey::Group { group: "g".into() }, Some(Bytes::from_static(b"v"))),
            (
                RecordKey::Offset {
                    group: "g".into(),
                    topic: "t".into(),
                    partition: 0,
                },
                None,
            ),
        ];
        let mut bytes = encode_batch(&records, 1).expect("encodes");
        let set = fjord_protocol::kafka_protocol::records::RecordBatchDecoder::decode(&mut bytes).expect("decodes");
        assert_eq!(set.records.len(), 2);
        assert_eq!(set.records[1].value, None);
        assert_eq!(
            RecordKey::decode(set.records[0].key.as_ref().unwrap()).unwrap(),
            Some(RecordKey::Group { group: "g".into() })
        );
    }
}
