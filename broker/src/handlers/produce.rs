//! Produce (key 0): validate and append each partition's record batches verbatim, then answer
//! per acks: 0 = no response, 1 = after the append, -1 (all) = after the group-commit fsync
//! when `storage.fsync_on_acks_all` is on and once the high watermark covers the batch, i.e.
//! every ISR member has it on disk (on one node the ISR is this broker). acks=all with fewer than
//! `min.insync.replicas` in the ISR gets NOT_ENOUGH_REPLICAS before the append, or
//! NOT_ENOUGH_REPLICAS_AFTER_APPEND if the ISR shrank while waiting. A payload refused for some
//! of its records lists them in `record_errors` (KIP-467, Produce v8+). Transactional batches are
//! written only to partitions their producer's open transaction has added (KIP-890 part 1,
//! checked with the transaction coordinator: INVALID_TXN_STATE otherwise).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use fjord_protocol::kafka_protocol::error::ResponseError;
use fjord_protocol::kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use fjord_protocol::kafka_protocol::messages::{ProduceRequest, ProduceResponse};

use fjord_storage::BatchError;

use super::errors::storage_error_code;
use super::str_bytes;
use crate::broker::Broker;
use crate::controller::is_internal_topic;
use crate::replication::partition::HighWatermarkWait;
use crate::replication::{LeaderAppend, LeaderAppendError, Partition};
use crate::security::Session;
use fjord_metadata::security::{AclOperation, ResourceType};

/// One partition's slot in the response, with the append to do (if the partition exists).
struct Slot {
    topic_index: usize,
    response: PartitionProduceResponse,
    append: Option<(Arc<Partition>, bytes::Bytes)>,
    /// After the append: the partition, the leader epoch it was written in and the offset the
    /// high watermark must reach in that epoch (acks=all).
    replicate: Option<(Arc<Partition>, fjord_storage::LeaderEpoch, i64)>,
}

pub(super) async fn handle(
    broker: &Arc<Broker>,
    session: &Session,
    request: ProduceRequest,
    mut turn: super::Turn,
) -> Option<ProduceResponse> {
    let acks = request.acks;
    // Kafka's authorization: WRITE on the transactional id (if any) and on each topic.
    let transactional_ok = request
        .transactional_id
        .as_ref()
        .is_none_or(|id| broker.authorize(session, AclOperation::Write, ResourceType::TransactionalId, id));
    let writable =
        |name: &str| transactional_ok && broker.authorize(session, AclOperation::Write, ResourceType::Topic, name);
    let mut topics: Vec<TopicProduceResponse> = Vec::with_capacity(request.topic_data.len());
    let mut slots: Vec<Slot> = Vec::new();
    if !matches!(acks, -1..=1) {
        for t in &request.topic_data {
            let partitions = t
                .partition_data
                .iter()
                .map(|p| error_response(p.index, ResponseError::InvalidRequiredAcks, "acks must be -1, 0 or 1"))
                .collect();
            topics.push(
                TopicProduceResponse::default()
                    .with_name(t.name.clone())
                    .with_partition_responses(partitions),
            );
        }
        return (acks != 0).then(|| ProduceResponse::default().with_responses(topics));
    }
    // Auto-create unknown topics (Kafka does this on produce as well as on metadata).
    if broker.config.topics.auto_create {
        let image = broker.image();
        let missing: Vec<String> = request
            .topic_data
            .iter()
            .map(|t| t.name.to_string())
            .filter(|n| image.topic(n).is_none())
            .filter(|n| {
                writable(n)
                    && (broker.authorize_cluster(session, AclOperation::Create)
                        || broker.authorize(session, AclOperation::Create, ResourceType::Topic, n))
            })
            .collect();
        if !missing.is_empty() {
            broker.blocking(move |b| b.auto_create_topics(&missing)).await;
        }
    }
    let transactional_id = request.transactional_id.as_ref().map(|t| t.to_string());
    for (topic_index, t) in request.topic_data.into_iter().enumerate() {
        topics.push(
            TopicProduceResponse::default()
                .with_name(t.name.clone())
                .with_topic_id(t.topic_id),
        );
        let allowed = writable(&t.name);
        for p in t.partition_data {
            let (response, append) = match (broker.replicas.get(&t.name, p.index), p.records) {
                _ if !allowed => (
                    error_response(
                        p.index,
                        if transactional_ok {
                            ResponseError::TopicAuthorizationFailed
                        } else {
                            ResponseError::TransactionalIdAuthorizationFailed
                        },
                        "",
                    ),
                    None,
                ),
                // Only the coordinators write internal topics (Kafka's ReplicaManager check).
                (Some(_), _) if is_internal_topic(&t.name) => (
                    error_response(
                        p.index,
                        ResponseError::InvalidTopicException,
                        &format!("cannot append to internal topic {}", t.name.as_str()),
                    ),
                    None,
                ),
                (Some(_), _) if !super::leads(broker, t.name.as_str(), p.index) => (
                    error_response(
                        p.index,
                        ResponseError::NotLeaderOrFollower,
                        "this broker is not the leader of the partition",
                    ),
                    None,
                ),
                (None, _) => (
                    error_response(
                        p.index,
                        ResponseError::UnknownTopicOrPartition,
                        "unknown topic or partition",
                    ),
                    None,
                ),
                (Some(_), None) => (
                    error_response(p.index, ResponseError::CorruptMessage, "records are missing"),
                    None,
                ),
                (Some(partition), Some(records)) => {
                    match verify_transaction(broker, transactional_id.as_deref(), &t.name, p.index, &records) {
                        Ok(()) => (
                            PartitionProduceResponse::default().with_index(p.index),
                            Some((partition, records)),
                        ),
                        Err(code) => (
                            error_response(p.index, code, "the partition is not in the producer's transaction"),
                            None,
                        ),
                    }
                }
            };
            slots.push(Slot {
                topic_index,
                response,
                append,
                replicate: None,
            });
        }
    }
    let slots = broker
        .blocking(move |b| {
            let now = crate::clock::now_ms();
            slots
                .into_iter()
                .map(|slot| append(b, slot, acks, now))
                .collect::<Vec<_>>()
        })
        .await;
    // The append is the ordered part; the fsync wait below overlaps with later requests.
    turn.end();
    let wrote = slots.iter().any(|s| s.response.error_code == 0);
    if acks == -1 && wrote && broker.config.storage.fsync_on_acks_all {
        broker.replicas.flusher.wait_durable().await;
    }
    let mut slots = slots;
    if acks == -1 {
        let deadline = Instant::now() + Duration::from_millis(request.timeout_ms.max(0) as u64);
        let me = broker.node_id();
        for slot in &mut slots {
            if let Some((partition, epoch, end)) = slot.replicate.take()
                && let Some((code, message)) = wait_replicated(&partition, me, epoch, end, deadline).await
            {
                let index = slot.response.index;
                slot.response = error_response(index, code, message);
            }
        }
    }
    if acks == 0 {
        return None;
    }
    for slot in slots {
        topics[slot.topic_index].partition_responses.push(slot.response);
    }
    Some(ProduceResponse::default().with_responses(topics))
}

/// acks=all on a partition with followers in its ISR: waits until the high watermark reaches
/// `end` (every ISR member has the batch); the error to answer instead, if any.
async fn wait_replicated(
    partition: &Arc<Partition>,
    me: i32,
    epoch: fjord_storage::LeaderEpoch,
    end: i64,
    deadline: Instant,
) -> Option<(ResponseError, &'static str)> {
    match partition.wait_for_high_watermark(me, epoch, end, deadline).await {
        HighWatermarkWait::NotLeader => Some((
            ResponseError::NotLeaderOrFollower,
            "leadership moved before the ISR had the batch",
        )),
        HighWatermarkWait::TimedOut => Some((
            ResponseError::RequestTimedOut,
            "the in-sync replicas did not confirm the batch in time",
        )),
        HighWatermarkWait::Reached => {
            let min_insync = partition.min_insync_replicas.load(Ordering::Relaxed) as usize;
            (partition.isr_size() < min_insync).then_some((
                ResponseError::NotEnoughReplicasAfterAppend,
                "the batch was written but the ISR shrank below min.insync.replicas",
            ))
        }
    }
}

/// Appends one partition's batches (blocking), fills in its response, wakes fetchers and hands
/// the partition to the flusher.
fn append(broker: &Broker, mut slot: Slot, acks: i16, now_ms: i64) -> Slot {
    let Some((partition, records)) = slot.append.take() else {
        return slot;
    };
    if acks == -1 && partition.replica_count() > 1 {
        let min_insync = partition.min_insync_replicas.load(Ordering::Relaxed) as usize;
        if partition.isr_size() < min_insync {
            slot.response = error_response(
                slot.response.index,
                ResponseError::NotEnoughReplicas,
                "fewer in-sync replicas than min.insync.replicas",
            );
            return slot;
        }
    }
    let result = broker
        .replicas
        .append_as_leader(&partition, fjord_storage::AppendOrigin::Client, &records, now_ms);
    match result {
        Ok(LeaderAppend {
            info,
            log_start,
            leader_epoch,
        }) => {
            // Even when the leader is alone in the ISR now: the ISR may have shrunk since the
            // append, and the wait then answers NOT_ENOUGH_REPLICAS_AFTER_APPEND.
            if acks == -1 && partition.replica_count() > 1 {
                slot.replicate = Some((partition.clone(), leader_epoch, info.last_offset.0 + 1));
            }
            broker.metrics.records_appended.inc_by(info.record_count);
            broker.metrics.duplicate_batches.inc_by(info.duplicates as u64);
            slot.response = slot
                .response
                .with_base_offset(info.base_offset.0)
                .with_log_append_time_ms(info.log_append_time_ms.unwrap_or(-1))
                .with_log_start_offset(log_start.0);
        }
        Err(LeaderAppendError::NotLeader) => {
            let index = slot.response.index;
            slot.response = error_response(
                index,
                ResponseError::NotLeaderOrFollower,
                "leadership moved before the append",
            );
        }
        Err(LeaderAppendError::Storage(error)) => {
            let code = storage_error_code(&error);
            if code == ResponseError::KafkaStorageError {
                tracing::error!(topic = %partition.topic, partition = partition.index, %error, "append failed");
            } else {
                tracing::debug!(topic = %partition.topic, partition = partition.index, %error, "produce refused");
            }
            let index = slot.response.index;
            slot.response = match &error {
                // KIP-467: name the records that failed, with Kafka's message for the batch.
                fjord_storage::Error::Batch(batch @ BatchError::RejectedRecords { errors, .. }) => {
                    let record_errors = errors
                        .iter()
                        .map(|e| {
                            BatchIndexAndErrorMessage::default()
                                .with_batch_index(e.batch_index)
                                .with_batch_index_error_message(Some(str_bytes(&e.message)))
                        })
                        .collect();
                    error_response(index, code, &batch.to_string()).with_record_errors(record_errors)
                }
                _ => error_response(index, code, &error.to_string()),
            };
        }
    }
    slot
}

/// KIP-890 part 1: a transactional payload's partition must be in its producer's open
/// transaction (the first batch speaks for the payload; clients send one per partition).
fn verify_transaction(
    broker: &Broker,
    transactional_id: Option<&str>,
    topic: &str,
    index: i32,
    records: &[u8],
) -> Result<(), ResponseError> {
    let Ok(header) = fjord_storage::batch::BatchHeader::parse(records) else {
        return Ok(()); // the append refuses it with the right code
    };
    if !header.is_transactional() || header.is_control() {
        return Ok(());
    }
    let Some(id) = transactional_id else {
        return Err(ResponseError::InvalidTxnState);
    };
    // Cluster mode: the coordinator may be another broker (Kafka asks it with
    // AddPartitionsToTxn verify_only; not yet), so only ids coordinated here are verified.
    if !broker.txn.coordinates(broker, id) {
        return Ok(());
    }
    let p = crate::txn::ProducerIdAndEpoch {
        producer_id: header.producer_id,
        epoch: header.producer_epoch,
    };
    broker.txn.verify_partition(id, p, topic, index)
}

fn error_response(index: i32, code: ResponseError, message: &str) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(code.code())
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
        .with_error_message(Some(str_bytes(message)))
}
