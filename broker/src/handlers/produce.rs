//! Produce (key 0): validate and append each partition's record batches verbatim, then answer
//! per acks: 0 = no response, 1 = after the append, -1 (all) = after the group-commit fsync
//! when `storage.fsync_on_acks_all` is on (on one node the ISR is this broker). A payload refused
//! for some of its records lists them in `record_errors` (KIP-467, Produce v8+).

use std::sync::Arc;

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
use crate::replication::Partition;
use crate::security::Session;
use fjord_metadata::security::{AclOperation, ResourceType};

/// One partition's slot in the response, with the append to do (if the partition exists).
struct Slot {
    topic_index: usize,
    response: PartitionProduceResponse,
    append: Option<(Arc<Partition>, bytes::Bytes)>,
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
                (Some(partition), Some(records)) => (
                    PartitionProduceResponse::default().with_index(p.index),
                    Some((partition, records)),
                ),
            };
            slots.push(Slot {
                topic_index,
                response,
                append,
            });
        }
    }
    let slots = broker
        .blocking(move |b| {
            let now = crate::clock::now_ms();
            slots.into_iter().map(|slot| append(b, slot, now)).collect::<Vec<_>>()
        })
        .await;
    // The append is the ordered part; the fsync wait below overlaps with later requests.
    turn.end();
    let wrote = slots.iter().any(|s| s.response.error_code == 0);
    if acks == -1 && wrote && broker.config.storage.fsync_on_acks_all {
        broker.replicas.flusher.wait_durable().await;
    }
    if acks == 0 {
        return None;
    }
    for slot in slots {
        topics[slot.topic_index].partition_responses.push(slot.response);
    }
    Some(ProduceResponse::default().with_responses(topics))
}

/// Appends one partition's batches (blocking), fills in its response, wakes fetchers and hands
/// the partition to the flusher.
fn append(broker: &Broker, mut slot: Slot, now_ms: i64) -> Slot {
    let Some((partition, records)) = slot.append.take() else {
        return slot;
    };
    let result = broker
        .replicas
        .append_as_leader(&partition, fjord_storage::AppendOrigin::Client, &records, now_ms);
    match result {
        Ok((info, log_start)) => {
            broker.metrics.records_appended.inc_by(info.record_count);
            broker.metrics.duplicate_batches.inc_by(info.duplicates as u64);
            slot.response = slot
                .response
                .with_base_offset(info.base_offset.0)
                .with_log_append_time_ms(info.log_append_time_ms.unwrap_or(-1))
                .with_log_start_offset(log_start.0);
        }
        Err(error) => {
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

fn error_response(index: i32, code: ResponseError, message: &str) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(code.code())
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
        .with_error_message(Some(str_bytes(message)))
}
