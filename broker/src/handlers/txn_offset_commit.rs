//! TxnOffsetCommit (key 28): a transactional producer commits its input offsets for a group
//! inside its transaction (`send_offsets_to_transaction`). The offsets are written to the
//! group's `__consumer_offsets` partition in a transactional batch of the producer and become
//! committed offsets only when the transaction's commit marker reaches that partition (dropped
//! on abort). v3+ (KIP-447) carry the member and generation, checked as OffsetCommit does.

use std::sync::Arc;

use fjord_protocol::kafka_protocol::error::ResponseError;
use fjord_protocol::kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use fjord_protocol::kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};

use super::txn_common;
use crate::broker::Broker;
use crate::group::records::OffsetValue;
use crate::group::{self, GroupKind};

/// One partition of the request: topic index, partition, and its error or offset to commit.
type Slot = (usize, i32, Result<((String, i32), OffsetValue), ResponseError>);

pub(super) async fn handle(
    broker: &Arc<Broker>,
    request: TxnOffsetCommitRequest,
    version: i16,
) -> TxnOffsetCommitResponse {
    let group_id = request.group_id.to_string();
    let group_error = group::precheck(broker, &group_id)
        .and_then(|()| validate(broker, &group_id, &request))
        .err();
    let image = broker.image();
    let now_ms = crate::clock::now_ms();
    let max_metadata = broker.groups.config.offset_metadata_max_bytes;
    let mut slots: Vec<Slot> = Vec::new();
    let mut topics: Vec<TxnOffsetCommitResponseTopic> = Vec::new();
    for (ti, t) in request.topics.iter().enumerate() {
        topics.push(TxnOffsetCommitResponseTopic::default().with_name(t.name.clone()));
        let topic = image.topic(&t.name);
        for p in &t.partitions {
            let metadata = p.committed_metadata.as_ref().map(|m| m.to_string()).unwrap_or_default();
            let result = if let Some(error) = group_error {
                Err(error)
            } else if !topic
                .is_some_and(|t| p.partition_index >= 0 && (p.partition_index as usize) < t.partitions.len())
            {
                Err(ResponseError::UnknownTopicOrPartition)
            } else if metadata.len() > max_metadata {
                Err(ResponseError::OffsetMetadataTooLarge)
            } else {
                Ok((
                    (t.name.to_string(), p.partition_index),
                    OffsetValue {
                        offset: p.committed_offset,
                        leader_epoch: if version >= 2 { p.committed_leader_epoch } else { -1 },
                        metadata,
                        commit_timestamp_ms: now_ms,
                    },
                ))
            };
            slots.push((ti, p.partition_index, result));
        }
    }
    let commits: Vec<((String, i32), OffsetValue)> =
        slots.iter().filter_map(|(_, _, r)| r.as_ref().ok().cloned()).collect();
    let written = if commits.is_empty() {
        Ok(())
    } else {
        let (gid, pid, epoch) = (group_id.clone(), request.producer_id.0, request.producer_epoch);
        let appended = broker
            .blocking(move |b| b.append_txn_offsets(&gid, pid, epoch, commits))
            .await;
        if appended.is_ok() {
            broker.replicas.flusher.wait_durable().await;
        }
        appended
    };
    for (ti, partition, result) in slots {
        let code = match (result, &written) {
            (Err(e), _) => txn_common::code(e, version, 3),
            (Ok(_), Err(e)) => txn_common::code(*e, version, 3),
            (Ok(_), Ok(())) => 0,
        };
        topics[ti].partitions.push(
            TxnOffsetCommitResponsePartition::default()
                .with_partition_index(partition)
                .with_error_code(code),
        );
    }
    TxnOffsetCommitResponse::default().with_topics(topics)
}

/// KIP-447: a member that names its generation must be a current member of it.
fn validate(broker: &Broker, group_id: &str, request: &TxnOffsetCommitRequest) -> Result<(), ResponseError> {
    let generation = request.generation_id;
    if generation < 0 && request.member_id.is_empty() {
        return Ok(());
    }
    let member_id = request.member_id.to_string();
    let instance_id = request.group_instance_id.as_ref().map(|s| s.to_string());
    broker
        .groups
        .with_groups(|groups| match groups.get(group_id).map(|g| &g.kind) {
            None => Err(ResponseError::IllegalGeneration),
            Some(GroupKind::Classic(g)) => g.validate_offset_commit(&member_id, instance_id.as_deref(), generation),
            Some(GroupKind::Consumer(g)) => {
                g.validate_member_epoch(&member_id, generation, ResponseError::IllegalGeneration)
            }
        })
}
