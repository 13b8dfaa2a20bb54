//! The transaction coordinator (Kafka's `TransactionCoordinator`, KIP-98).
//!
//! Each transactional id has a producer id and epoch, a timeout, a state (Empty, Ongoing,
//! PrepareCommit, PrepareAbort, CompleteCommit, CompleteAbort) and the partitions of its open
//! transaction. Every change is a record in the compacted internal topic `__transaction_state`
//! (Kafka's key and value formats, `records.rs`; partition = Java `hashCode` of the id), made
//! durable before the request is answered; at start the topic is replayed and transactions
//! caught between prepare and complete are completed.
//!
//! Placement: the coordinator of an id is the leader of its `__transaction_state` partition
//! (FindCoordinator key type 1). On one node that is this broker for every id. Markers are
//! written through [`Broker::write_txn_marker`], the WriteTxnMarkers path: in cluster mode that
//! is where a marker for a partition led elsewhere becomes a WriteTxnMarkers request to its
//! leader (partition data is not replicated yet, so it is refused with NOT_LEADER_OR_FOLLOWER).
//!
//! Ending a transaction: PrepareCommit/PrepareAbort is made durable, a marker is appended to
//! every partition of the transaction (for `__consumer_offsets` partitions the group
//! coordinator then applies or drops the transactional offset commits) and fsynced, then the
//! Complete state is written. EndTxn is answered after all of it. While an operation on an id is
//! in flight, others get CONCURRENT_TRANSACTIONS. A transaction open longer than its timeout is
//! aborted with a bumped epoch, which fences its producer (as Kafka does).

pub mod records;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use fjord_protocol::kafka_protocol::error::ResponseError;
use parking_lot::Mutex;
use tokio::sync::watch;

use crate::broker::Broker;
use crate::config::TransactionConfig;
use crate::controller::NewTopic;

/// Kafka's internal topic holding the transaction coordinator's state.
pub const STATE_TOPIC: &str = "__transaction_state";

/// Kafka's transaction states (the values stored in TransactionLogValue).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxnState {
    Empty = 0,
    Ongoing = 1,
    PrepareCommit = 2,
    PrepareAbort = 3,
    CompleteCommit = 4,
    CompleteAbort = 5,
    Dead = 6,
    PrepareEpochFence = 7,
}

impl TxnState {
    pub fn from_i8(v: i8) -> Option<TxnState> {
        Some(match v {
            0 => TxnState::Empty,
            1 => TxnState::Ongoing,
            2 => TxnState::PrepareCommit,
            3 => TxnState::PrepareAbort,
            4 => TxnState::CompleteCommit,
            5 => TxnState::CompleteAbort,
            6 => TxnState::Dead,
            7 => TxnState::PrepareEpochFence,
            _ => return None,
        })
    }

    /// Kafka's state names (DescribeTransactions / ListTransactions).
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }
}

/// One transactional id's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnMetadata {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    /// Partitions of the open transaction (topic, partition).
    pub partitions: BTreeSet<(String, i32)>,
    pub start_ms: i64,
    pub last_update_ms: i64,
    /// An operation is in flight (not stored): others get CONCURRENT_TRANSACTIONS.
    pub pending: bool,
}

/// The transaction coordinator of every transactional id this broker coordinates.
#[derive(Debug)]
pub struct TxnCoordinator {
    pub config: TransactionConfig,
    txns: Mutex<HashMap<String, TxnMetadata>>,
    loaded: AtomicBool,
}

/// Kafka's partition of `__transaction_state` for a transactional id (Java `hashCode`, as for
/// groups).
pub fn partition_for(transactional_id: &str, partitions: i32) -> i32 {
    crate::group::partition_for(transactional_id, partitions)
}

/// Which epoch a producer presents and who asks (a client or the coordinator's timeout).
#[derive(Clone, Copy, Debug)]
pub struct ProducerIdAndEpoch {
    pub producer_id: i64,
    pub epoch: i16,
}

impl TxnCoordinator {
    pub fn new(config: TransactionConfig) -> TxnCoordinator {
        TxnCoordinator {
            config,
            txns: Mutex::new(HashMap::new()),
            loaded: AtomicBool::new(false),
        }
    }

    /// False until `__transaction_state` has been replayed.
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// A copy of one id's state.
    pub fn get(&self, transactional_id: &str) -> Option<TxnMetadata> {
        self.txns.lock().get(transactional_id).cloned()
    }

    /// Every id and its state (ListTransactions, DescribeTransactions).
    pub fn all(&self) -> Vec<(String, TxnMetadata)> {
        let txns = self.txns.lock();
        txns.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Checks a producer against an id's current state: the id must exist with this producer
    /// id (INVALID_PRODUCER_ID_MAPPING) and epoch (PRODUCER_FENCED) and no operation in flight.
    fn check_producer(&self, m: Option<&TxnMetadata>, p: ProducerIdAndEpoch) -> Result<(), ResponseError> {
        let Some(m) = m else {
            return Err(ResponseError::InvalidProducerIdMapping);
        };
        if m.producer_id != p.producer_id {
            return Err(ResponseError::InvalidProducerIdMapping);
        }
        if m.producer_epoch != p.epoch {
            return Err(ResponseError::ProducerFenced);
        }
        if m.pending || matches!(m.state, TxnState::PrepareCommit | TxnState::PrepareAbort) {
            return Err(ResponseError::ConcurrentTransactions);
        }
        Ok(())
    }

    /// Whether this broker coordinates `transactional_id`: it leads the id's
    /// `__transaction_state` partition (or the topic does not exist yet and will be made here).
    pub fn coordinates(&self, broker: &Broker, transactional_id: &str) -> bool {
        let image = broker.image();
        let Some(topic) = image.topic(STATE_TOPIC) else {
            return true;
        };
        let index = partition_for(transactional_id, topic.partitions.len() as i32);
        topic
            .partitions
            .get(index as usize)
            .is_some_and(|p| p.leader.0 == broker.node_id())
    }

    /// KIP-890 part 1: a transactional batch may be written only to a partition its producer's
    /// open transaction has added (INVALID_TXN_STATE otherwise; INVALID_PRODUCER_EPOCH for a
    /// stale epoch, as the produce path reports it).
    pub fn verify_partition(
        &self,
        transactional_id: &str,
        p: ProducerIdAndEpoch,
        topic: &str,
        partition: i32,
    ) -> Result<(), ResponseError> {
        let txns = self.txns.lock();
        let Some(m) = txns.get(transactional_id) else {
            return Err(ResponseError::InvalidTxnState);
        };
        if m.producer_id != p.producer_id {
            return Err(ResponseError::InvalidProducerIdMapping);
        }
        if m.producer_epoch > p.epoch {
            return Err(ResponseError::InvalidProducerEpoch);
        }
        if m.producer_epoch != p.epoch
            || m.state != TxnState::Ongoing
            || !m.partitions.contains(&(topic.to_string(), partition))
        {
            return Err(ResponseError::InvalidTxnState);
        }
        Ok(())
    }
}

impl Broker {
    /// Creates `__transaction_state` if it does not exist yet (on first use, as Kafka).
    pub fn ensure_txn_state_topic(&self) -> Result<(), ResponseError> {
        if self.image().topic(STATE_TOPIC).is_some() {
            return Ok(());
        }
        let config = &self.txn.config;
        let topic = NewTopic {
            name: STATE_TOPIC.to_string(),
            num_partitions: config.state_log_partitions,
            replication_factor: -1,
            explicit_assignments: None,
            configs: [
                ("cleanup.policy".to_string(), "compact".to_string()),
                ("segment.bytes".to_string(), config.state_log_segment_bytes.to_string()),
                ("compression.type".to_string(), "uncompressed".to_string()),
            ]
            .into_iter()
            .collect(),
        };
        match self.create_internal_topic(topic) {
            Ok(_) => {
                tracing::info!(partitions = config.state_log_partitions, "created __transaction_state");
                Ok(())
            }
            Err(e) if e.code == ResponseError::TopicAlreadyExists => Ok(()),
            Err(e) => {
                tracing::error!(message = %e.message, "cannot create __transaction_state");
                Err(ResponseError::CoordinatorNotAvailable)
            }
        }
    }

    /// The partition count of `__transaction_state` (the configured count until it exists).
    pub fn txn_state_partitions(&self) -> i32 {
        self.image()
            .topic(STATE_TOPIC)
            .map_or(self.txn.config.state_log_partitions, |t| t.partitions.len() as i32)
    }

    /// Appends one id's state record to its `__transaction_state` partition (blocking; durable
    /// after the next flush).
    fn append_txn_record(&self, transactional_id: &str, value: Option<Bytes>) -> Result<(), ResponseError> {
        self.ensure_txn_state_topic()?;
        let index = partition_for(transactional_id, self.txn_state_partitions());
        let hosted = self.replicas.get(STATE_TOPIC, index).or_else(|| {
            let _ = self.await_published(self.image());
            self.replicas.get(STATE_TOPIC, index)
        });
        let Some(partition) = hosted else {
            tracing::error!(partition = index, "__transaction_state partition is not hosted");
            return Err(ResponseError::CoordinatorNotAvailable);
        };
        let now = crate::clock::now_ms();
        let batch = records::encode_batch(&[(records::encode_key(transactional_id), value)], now).map_err(|error| {
            tracing::error!(%error, "cannot encode __transaction_state batch");
            ResponseError::UnknownServerError
        })?;
        self.replicas
            .append_as_leader(&partition, fjord_storage::AppendOrigin::Coordinator, &batch, now)
            .map(|_| ())
            .map_err(|error| match error {
                crate::replication::LeaderAppendError::NotLeader => ResponseError::NotCoordinator,
                crate::replication::LeaderAppendError::Storage(error) => {
                    tracing::error!(transactional_id, %error, "appending to __transaction_state failed");
                    ResponseError::KafkaStorageError
                }
            })
    }

    /// Writes a commit or abort marker of `producer_id`/`epoch` to one partition (blocking):
    /// the WriteTxnMarkers path. For `__consumer_offsets` the group coordinator then applies
    /// (commit) or drops (abort) the producer's transactional offset commits of that partition.
    pub fn write_txn_marker(
        &self,
        topic: &str,
        index: i32,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
    ) -> Result<(), ResponseError> {
        let Some(partition) = self.replicas.get(topic, index) else {
            return Err(ResponseError::UnknownTopicOrPartition);
        };
        // Cluster mode: a partition led by another broker gets WriteTxnMarkers there (not yet:
        // partition data is not replicated).
        if !self
            .image()
            .topic(topic)
            .and_then(|t| t.partitions.get(index as usize).map(|p| p.leader.0 == self.node_id()))
            .unwrap_or(false)
        {
            return Err(ResponseError::NotLeaderOrFollower);
        }
        let now = crate::clock::now_ms();
        let batch = records::encode_marker(producer_id, epoch, commit, coordinator_epoch, now)
            .map_err(|_| ResponseError::UnknownServerError)?;
        if let Err(error) =
            self.replicas
                .append_as_leader(&partition, fjord_storage::AppendOrigin::Coordinator, &batch, now)
        {
            tracing::warn!(topic, partition = index, producer_id, %error, "writing a transaction marker failed");
            return Err(match error {
                crate::replication::LeaderAppendError::NotLeader => ResponseError::NotLeaderOrFollower,
                crate::replication::LeaderAppendError::Storage(fjord_storage::Error::InvalidProducerEpoch {
                    ..
                }) => ResponseError::InvalidProducerEpoch,
                _ => ResponseError::KafkaStorageError,
            });
        }
        if topic == crate::group::OFFSETS_TOPIC {
            self.groups.complete_txn(producer_id, index, commit);
        }
        Ok(())
    }
}

/// Stores `m` as `transactional_id`'s state and waits until it is durable.
async fn persist(broker: &Arc<Broker>, transactional_id: &str, m: &TxnMetadata) -> Result<(), ResponseError> {
    let id = transactional_id.to_string();
    let value = records::encode_value(m);
    broker.blocking(move |b| b.append_txn_record(&id, Some(value))).await?;
    broker.replicas.flusher.wait_durable().await;
    Ok(())
}

/// Runs `change` on an id's state under the lock; if it returns a new state, marks the id
/// pending, stores the new state and installs it (or restores the old one on failure).
async fn update(
    broker: &Arc<Broker>,
    transactional_id: &str,
    change: impl FnOnce(Option<&TxnMetadata>) -> Result<Option<TxnMetadata>, ResponseError>,
) -> Result<Option<TxnMetadata>, ResponseError> {
    let next = {
        let mut txns = broker.txn.txns.lock();
        let current = txns.get(transactional_id);
        if current.is_some_and(|m| m.pending) {
            return Err(ResponseError::ConcurrentTransactions);
        }
        let Some(next) = change(current)? else {
            return Ok(None);
        };
        match txns.get_mut(transactional_id) {
            Some(m) => m.pending = true,
            None => {
                let mut placeholder = next.clone();
                placeholder.pending = true;
                placeholder.state = TxnState::Dead;
                txns.insert(transactional_id.to_string(), placeholder);
            }
        }
        next
    };
    let result = persist(broker, transactional_id, &next).await;
    let mut txns = broker.txn.txns.lock();
    match result {
        Ok(()) => {
            txns.insert(transactional_id.to_string(), next.clone());
            Ok(Some(next))
        }
        Err(e) => {
            match txns.get_mut(transactional_id) {
                Some(m) if m.state == TxnState::Dead => {
                    txns.remove(transactional_id);
                }
                Some(m) => m.pending = false,
                None => {}
            }
            Err(e)
        }
    }
}

/// InitProducerId with a transactional id: a new producer id (epoch 0) for a new id, else the
/// epoch bumped (fencing the previous producer; its open transaction is aborted first). KIP-360:
/// a producer that names its current id and epoch gets the bump; a wrong pair is fenced.
pub async fn init_producer_id(
    broker: &Arc<Broker>,
    transactional_id: &str,
    timeout_ms: i32,
    current: Option<ProducerIdAndEpoch>,
) -> Result<ProducerIdAndEpoch, ResponseError> {
    if timeout_ms <= 0 || i64::from(timeout_ms) > broker.txn.config.max_timeout.as_millis() as i64 {
        return Err(ResponseError::InvalidTransactionTimeout);
    }
    if !broker.txn.is_loaded() {
        return Err(ResponseError::CoordinatorLoadInProgress);
    }
    if !broker.txn.coordinates(broker, transactional_id) {
        return Err(ResponseError::NotCoordinator);
    }
    broker.blocking(|b| b.ensure_txn_state_topic()).await?;
    for attempt in 0..3 {
        let existing = broker.txn.get(transactional_id);
        if let (Some(m), Some(p), 0) = (&existing, current, attempt) {
            if m.producer_id != p.producer_id {
                return Err(ResponseError::InvalidProducerIdMapping);
            }
            if m.producer_epoch != p.epoch {
                return Err(ResponseError::ProducerFenced);
            }
        }
        let new_id = match &existing {
            None => Some(allocate_id(broker).await?),
            Some(m) if m.producer_epoch >= i16::MAX - 1 => Some(allocate_id(broker).await?),
            Some(m) if m.state == TxnState::Ongoing && !m.pending => {
                // Fence the previous producer and abort its transaction, then bump again.
                let fenced = ProducerIdAndEpoch {
                    producer_id: m.producer_id,
                    epoch: m.producer_epoch,
                };
                end_txn(broker, transactional_id, fenced, false, EndReason::Fence).await?;
                continue;
            }
            Some(_) => None,
        };
        let now = crate::clock::now_ms();
        let result = update(broker, transactional_id, |m| {
            if let Some(m) = m
                && (matches!(
                    m.state,
                    TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::Ongoing
                ))
            {
                return Err(ResponseError::ConcurrentTransactions);
            }
            let (producer_id, producer_epoch) = match (new_id, m) {
                (Some(id), _) => (id, 0),
                (None, Some(m)) => (m.producer_id, m.producer_epoch + 1),
                (None, None) => return Err(ResponseError::ConcurrentTransactions),
            };
            Ok(Some(TxnMetadata {
                producer_id,
                producer_epoch,
                timeout_ms,
                state: TxnState::Empty,
                partitions: BTreeSet::new(),
                start_ms: -1,
                last_update_ms: now,
                pending: false,
            }))
        })
        .await;
        match result {
            Ok(Some(m)) => {
                tracing::info!(
                    transactional_id,
                    producer_id = m.producer_id,
                    epoch = m.producer_epoch,
                    "initialised transactional producer"
                );
                return Ok(ProducerIdAndEpoch {
                    producer_id: m.producer_id,
                    epoch: m.producer_epoch,
                });
            }
            Ok(None) => return Err(ResponseError::UnknownServerError),
            Err(ResponseError::ConcurrentTransactions) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ResponseError::ConcurrentTransactions)
}

async fn allocate_id(broker: &Arc<Broker>) -> Result<i64, ResponseError> {
    broker.blocking(|b| b.producer_ids.next_id(b)).await.map_err(|e| e.code)
}

/// AddPartitionsToTxn / AddOffsetsToTxn: adds partitions to the producer's transaction (which
/// becomes Ongoing), stored before the answer. Already-added partitions need no write.
pub async fn add_partitions(
    broker: &Arc<Broker>,
    transactional_id: &str,
    p: ProducerIdAndEpoch,
    partitions: Vec<(String, i32)>,
) -> Result<(), ResponseError> {
    if !broker.txn.is_loaded() {
        return Err(ResponseError::CoordinatorLoadInProgress);
    }
    let now = crate::clock::now_ms();
    update(broker, transactional_id, |m| {
        broker.txn.check_producer(m, p)?;
        let m = m.expect("checked");
        if matches!(m.state, TxnState::Dead | TxnState::PrepareEpochFence) {
            return Err(ResponseError::InvalidTxnState);
        }
        if m.state == TxnState::Ongoing && partitions.iter().all(|tp| m.partitions.contains(tp)) {
            return Ok(None);
        }
        let mut next = m.clone();
        if m.state != TxnState::Ongoing {
            next.partitions.clear();
            next.start_ms = now;
        }
        next.state = TxnState::Ongoing;
        next.partitions.extend(partitions);
        next.last_update_ms = now;
        next.pending = false;
        Ok(Some(next))
    })
    .await
    .map(|_| ())
}

/// Why a transaction ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// EndTxn from the producer.
    Client,
    /// The transaction outlived its timeout: aborted with a bumped epoch.
    Timeout,
    /// A new producer with the same id: aborted with a bumped epoch.
    Fence,
}

/// EndTxn: commits or aborts the producer's open transaction (see the module docs). A retry of
/// the same outcome after it completed succeeds; the other outcome is INVALID_TXN_STATE.
pub async fn end_txn(
    broker: &Arc<Broker>,
    transactional_id: &str,
    p: ProducerIdAndEpoch,
    commit: bool,
    reason: EndReason,
) -> Result<(), ResponseError> {
    if !broker.txn.is_loaded() {
        return Err(ResponseError::CoordinatorLoadInProgress);
    }
    let now = crate::clock::now_ms();
    let prepared = update(broker, transactional_id, |m| {
        broker.txn.check_producer(m, p)?;
        let m = m.expect("checked");
        match (m.state, commit) {
            (TxnState::Ongoing, _) => {}
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) if reason == EndReason::Client => {
                return Ok(None);
            }
            _ => return Err(ResponseError::InvalidTxnState),
        }
        let mut next = m.clone();
        if reason != EndReason::Client {
            next.producer_epoch += 1;
        }
        next.state = if commit {
            TxnState::PrepareCommit
        } else {
            TxnState::PrepareAbort
        };
        next.last_update_ms = now;
        Ok(Some(next))
    })
    .await?;
    let Some(prepared) = prepared else {
        return Ok(());
    };
    if reason != EndReason::Client {
        tracing::info!(
            transactional_id,
            producer_id = prepared.producer_id,
            epoch = prepared.producer_epoch,
            ?reason,
            "aborting transaction with a bumped epoch"
        );
    }
    complete(broker, transactional_id, prepared).await
}

/// Writes the markers of a prepared transaction and stores its Complete state.
async fn complete(broker: &Arc<Broker>, transactional_id: &str, prepared: TxnMetadata) -> Result<(), ResponseError> {
    let commit = prepared.state == TxnState::PrepareCommit;
    let partitions: Vec<(String, i32)> = prepared.partitions.iter().cloned().collect();
    let (pid, epoch) = (prepared.producer_id, prepared.producer_epoch);
    let failed = broker
        .blocking(move |b| {
            let mut failed = 0usize;
            for (topic, index) in &partitions {
                match b.write_txn_marker(topic, *index, pid, epoch, commit, 0) {
                    Ok(()) => {}
                    // A deleted partition needs no marker.
                    Err(ResponseError::UnknownTopicOrPartition) => {}
                    Err(_) => failed += 1,
                }
            }
            failed
        })
        .await;
    broker.replicas.flusher.wait_durable().await;
    if failed > 0 {
        // Kafka retries markers until they are written; they are retried at the next restart
        // (the id stays prepared), and the id is busy meanwhile.
        tracing::error!(
            transactional_id,
            failed,
            "transaction markers not written; the transaction stays prepared"
        );
        return Err(ResponseError::UnknownServerError);
    }
    let mut completed = prepared;
    completed.state = if commit {
        TxnState::CompleteCommit
    } else {
        TxnState::CompleteAbort
    };
    completed.partitions.clear();
    completed.last_update_ms = crate::clock::now_ms();
    completed.pending = false;
    persist(broker, transactional_id, &completed).await?;
    tracing::debug!(transactional_id, commit, "transaction completed");
    broker.txn.txns.lock().insert(transactional_id.to_string(), completed);
    Ok(())
}

/// Replays `__transaction_state` (blocking): the latest state of every id.
fn load(broker: &Broker) -> HashMap<String, TxnMetadata> {
    let mut txns = HashMap::new();
    let mut records = 0usize;
    for partition in broker.replicas.partitions_of(STATE_TOPIC) {
        let result = crate::replication::scan_records(&partition, |item| {
            let crate::replication::ScannedRecord::Data { key, value, .. } = item else {
                return;
            };
            let Some(id) = key.and_then(records::decode_key) else {
                return;
            };
            records += 1;
            match value.map(records::decode_value) {
                Some(Ok(m)) => {
                    txns.insert(id, m);
                }
                Some(Err(error)) => tracing::warn!(%error, "skipping unreadable transaction state record"),
                None => {
                    txns.remove(&id);
                }
            }
        });
        if let Err(error) = result {
            tracing::error!(partition = partition.index, %error, "reading __transaction_state failed");
        }
    }
    tracing::info!(
        transactional_ids = txns.len(),
        records,
        "transaction coordinator loaded __transaction_state"
    );
    txns
}

/// Loads the coordinator (after the group coordinator, whose pending transactional offsets the
/// recovered markers complete), completes prepared transactions, then aborts timed-out ones
/// every `abort_timed_out_interval` until shutdown.
pub async fn run(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    while !broker.groups.is_loaded() {
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_millis(20)) => {}
            _ = shutdown.changed() => return,
        }
    }
    let txns = broker.blocking(load).await;
    let prepared: Vec<(String, TxnMetadata)> = txns
        .iter()
        .filter(|(_, m)| {
            matches!(
                m.state,
                TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence
            )
        })
        .map(|(k, m)| (k.clone(), m.clone()))
        .collect();
    *broker.txn.txns.lock() = txns;
    broker.txn.loaded.store(true, Ordering::Release);
    for (id, mut m) in prepared {
        if m.state == TxnState::PrepareEpochFence {
            m.state = TxnState::PrepareAbort;
        }
        tracing::info!(transactional_id = %id, state = m.state.name(), "completing a prepared transaction");
        broker
            .txn
            .txns
            .lock()
            .entry(id.clone())
            .and_modify(|e| e.pending = true);
        if let Err(code) = complete(&broker, &id, m).await {
            tracing::error!(transactional_id = %id, ?code, "completing a prepared transaction failed");
            broker.txn.txns.lock().entry(id).and_modify(|e| e.pending = false);
        }
    }
    let mut ticker = tokio::time::interval(broker.txn.config.abort_timed_out_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.changed() => return,
        }
        let now = crate::clock::now_ms();
        let expired: Vec<(String, ProducerIdAndEpoch)> = broker
            .txn
            .all()
            .into_iter()
            .filter(|(_, m)| m.state == TxnState::Ongoing && !m.pending && m.start_ms + i64::from(m.timeout_ms) < now)
            .map(|(id, m)| {
                (
                    id,
                    ProducerIdAndEpoch {
                        producer_id: m.producer_id,
                        epoch: m.producer_epoch,
                    },
                )
            })
            .collect();
        for (id, p) in expired {
            tracing::info!(transactional_id = %id, producer_id = p.producer_id, "transaction timed out");
            if let Err(code) = end_txn(&broker, &id, p, false, EndReason::Timeout).await {
                tracing::warn!(transactional_id = %id, ?code, "aborting a timed-out transaction failed");
            }
        }
    }
}
