//! OffsetCommit (key 8): stores committed offsets (with leader epoch and metadata, returned
//! verbatim by OffsetFetch) as records in `__consumer_offsets`, answered once fsynced. Classic
//! groups check member and generation; KIP-848 groups check member epoch; a commit with no member
//! (generation -1) is a simple or admin commit and is accepted while the group has no members.

use std::sync::Arc;

use fjord_protocol::kafka_protocol::error::ResponseError;
use fjord_protocol::kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use fjord_protocol::kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use crate::broker::Broker;
use crate::group::records::{OffsetValue, RecordKey};
use crate::group::{self, Group, GroupKind, OffsetsRecord};

pub(super) async fn handle(broker: &Arc<Broker>, request: OffsetCommitRequest, version: i16) -> OffsetCommitResponse {
    let group_id = request.group_id.to_string();
    let group_error = group::precheck(broker, &group_id)
        .and_then(|()| validate(broker, &group_id, &request, version))
        .err();
    let image = broker.image();
    let now_ms = crate::clock::now_ms();
    let max_metadata = broker.groups.config.offset_metadata_max_bytes;
    // Per partition: its error, or the offset to commit (keyed by topic and partition).
    let mut slots: Vec<(usize, i32, Result<((String, i32), OffsetValue), ResponseError>)> = Vec::new();
    let mut topics: Vec<OffsetCommitResponseTopic> = Vec::new();
    for (ti, t) in request.topics.iter().enumerate() {
        topics.push(OffsetCommitResponseTopic::default().with_name(t.name.clone()));
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
                let value = OffsetValue {
                    offset: p.committed_offset,
                    leader_epoch: if version >= 6 { p.committed_leader_epoch } else { -1 },
                    metadata,
                    commit_timestamp_ms: now_ms,
                };
                Ok(((t.name.to_string(), p.partition_index), value))
            };
            slots.push((ti, p.partition_index, result));
        }
    }
    let commits: Vec<((String, i32), OffsetValue)> =
        slots.iter().filter_map(|(_, _, r)| r.as_ref().ok().cloned()).collect();
    let written = if commits.is_empty() {
        Ok(())
    } else {
        let gid = group_id.clone();
        let appended: Result<_, ResponseError> = broker
            .blocking(move |b| {
                let records: Vec<OffsetsRecord> = commits
                    .iter()
                    .map(|((topic, partition), value)| {
                        let key = RecordKey::Offset {
                            group: gid.clone(),
                            topic: topic.clone(),
                            partition: *partition,
                        };
                        (key, Some(value.encode()))
                    })
                    .collect();
                let appended = b.append_group_records(&gid, &records)?;
                b.groups.with_groups(|groups| {
                    let group = groups.entry(gid.clone()).or_insert_with(|| Group::new_classic(now_ms));
                    group.offsets.extend(commits);
                });
                Ok(appended)
            })
            .await;
        match appended {
            Ok(appended) => {
                broker.replicas.flusher.wait_durable().await;
                crate::group::wait_replicated(broker, appended).await
            }
            Err(e) => Err(e),
        }
    };
    for (ti, partition, result) in slots {
        let code = match (result, &written) {
            (Err(e), _) => e.code(),
            (Ok(_), Err(e)) => e.code(),
            (Ok(_), Ok(())) => 0,
        };
        topics[ti].partitions.push(
            OffsetCommitResponsePartition::default()
                .with_partition_index(partition)
                .with_error_code(code),
        );
    }
    OffsetCommitResponse::default().with_topics(topics)
}

/// Group-level checks: is this member allowed to commit for this generation or epoch?
fn validate(broker: &Broker, group_id: &str, request: &OffsetCommitRequest, version: i16) -> Result<(), ResponseError> {
    let member_id = request.member_id.to_string();
    let instance_id = request.group_instance_id.as_ref().map(|s| s.to_string());
    let generation = request.generation_id_or_member_epoch;
    broker
        .groups
        .with_groups(|groups| match groups.get_mut(group_id).map(|g| &g.kind) {
            None if generation < 0 => {
                groups.insert(group_id.to_string(), Group::new_classic(crate::clock::now_ms()));
                Ok(())
            }
            None if version >= 9 => Err(ResponseError::GroupIdNotFound),
            None => Err(ResponseError::IllegalGeneration),
            Some(GroupKind::Classic(g)) => g.validate_offset_commit(&member_id, instance_id.as_deref(), generation),
            Some(GroupKind::Consumer(g)) => {
                let stale = if version >= 9 {
                    ResponseError::StaleMemberEpoch
                } else {
                    ResponseError::IllegalGeneration
                };
                g.validate_member_epoch(&member_id, generation, stale)
            }
        })
}
