//! OffsetFetch (key 9): committed offsets of one group (v1–7) or several (v8+), for the listed
//! partitions or, with a null topic list, for every partition the group has committed. With
//! `require_stable` (v7+), a partition with a transactional offset commit still waiting for its
//! transaction's outcome gets UNSTABLE_OFFSET_COMMIT (the client retries), as in Kafka.

use std::sync::Arc;

use fjord_protocol::kafka_protocol::error::ResponseError;
use fjord_protocol::kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use fjord_protocol::kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};

use super::{str_bytes, topic_name};
use crate::broker::Broker;
use crate::group::{self, GroupKind};

/// One partition's answer: (partition, offset, leader epoch, metadata).
type Committed = (i32, i64, i32, String);

pub(super) fn handle(broker: &Arc<Broker>, request: OffsetFetchRequest, version: i16) -> OffsetFetchResponse {
    let require_stable = version >= 7 && request.require_stable;
    let unstable =
        |group: &str, topic: &str, p: i32| require_stable && broker.groups.has_pending_txn_offset(group, topic, p);
    if version >= 8 {
        let groups = request
            .groups
            .into_iter()
            .map(|g| {
                let wanted = g.topics.map(|ts| {
                    ts.into_iter()
                        .map(|t| (t.name, t.partition_indexes))
                        .collect::<Vec<_>>()
                });
                let member = g.member_id.map(|m| (m.to_string(), g.member_epoch));
                let (error, topics) = fetch(broker, &g.group_id, wanted, member, version);
                OffsetFetchResponseGroup::default()
                    .with_group_id(g.group_id.clone())
                    .with_error_code(error.map_or(0, |e| e.code()))
                    .with_topics(
                        topics
                            .into_iter()
                            .map(|(name, parts)| {
                                let topic = name.to_string();
                                OffsetFetchResponseTopics::default().with_name(name).with_partitions(
                                    parts
                                        .into_iter()
                                        .map(|(p, offset, epoch, metadata)| {
                                            let partition = OffsetFetchResponsePartitions::default()
                                                .with_partition_index(p)
                                                .with_committed_offset(offset)
                                                .with_committed_leader_epoch(epoch)
                                                .with_metadata(Some(str_bytes(metadata)));
                                            if unstable(&g.group_id, &topic, p) {
                                                partition
                                                    .with_committed_offset(-1)
                                                    .with_error_code(ResponseError::UnstableOffsetCommit.code())
                                            } else {
                                                partition
                                            }
                                        })
                                        .collect(),
                                )
                            })
                            .collect(),
                    )
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let wanted = request.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name, t.partition_indexes))
            .collect::<Vec<_>>()
    });
    let (error, topics) = fetch(broker, &request.group_id, wanted, None, version);
    let topics = topics
        .into_iter()
        .map(|(name, parts)| {
            let topic = name.to_string();
            OffsetFetchResponseTopic::default().with_name(name).with_partitions(
                parts
                    .into_iter()
                    .map(|(p, offset, epoch, metadata)| {
                        let unstable = unstable(&request.group_id, &topic, p);
                        let partition = OffsetFetchResponsePartition::default()
                            .with_partition_index(p)
                            .with_committed_offset(if unstable { -1 } else { offset })
                            .with_metadata(Some(str_bytes(metadata)))
                            .with_error_code(if unstable {
                                ResponseError::UnstableOffsetCommit.code()
                            } else if version < 2 {
                                error.map_or(0, |e| e.code())
                            } else {
                                0
                            });
                        if version >= 5 {
                            partition.with_committed_leader_epoch(epoch)
                        } else {
                            partition
                        }
                    })
                    .collect(),
            )
        })
        .collect();
    let response = OffsetFetchResponse::default().with_topics(topics);
    if version >= 2 {
        response.with_error_code(error.map_or(0, |e| e.code()))
    } else {
        response
    }
}

/// The committed offsets asked for, grouped by topic; unknown partitions get offset -1.
fn fetch(
    broker: &Broker,
    group_id: &str,
    wanted: Option<Vec<(TopicName, Vec<i32>)>>,
    member: Option<(String, i32)>,
    version: i16,
) -> (Option<ResponseError>, Vec<(TopicName, Vec<Committed>)>) {
    if let Err(error) = group::precheck(broker, group_id) {
        let topics = wanted
            .unwrap_or_default()
            .into_iter()
            .map(|(t, ps)| (t, ps.into_iter().map(|p| (p, -1, -1, String::new())).collect()))
            .collect();
        return (Some(error), topics);
    }
    broker.groups.with_groups(|groups| {
        let group = groups.get(group_id);
        if version >= 9
            && let (Some((member_id, epoch)), Some(GroupKind::Consumer(g))) = (&member, group.map(|g| &g.kind))
            && let Err(error) = g.validate_member_epoch(member_id, *epoch, ResponseError::StaleMemberEpoch)
        {
            return (Some(error), Vec::new());
        }
        let lookup = |topic: &str, p: i32| -> Committed {
            match group.and_then(|g| g.offsets.get(&(topic.to_string(), p))) {
                Some(v) => (p, v.offset, v.leader_epoch, v.metadata.clone()),
                None => (p, -1, -1, String::new()),
            }
        };
        let topics = match wanted {
            Some(wanted) => wanted
                .into_iter()
                .map(|(t, ps)| {
                    let parts = ps.into_iter().map(|p| lookup(&t, p)).collect();
                    (t, parts)
                })
                .collect(),
            None => {
                let mut by_topic: Vec<(TopicName, Vec<Committed>)> = Vec::new();
                for ((t, p), _) in group.map(|g| g.offsets.iter()).into_iter().flatten() {
                    match by_topic.last_mut() {
                        Some((name, parts)) if name.0.as_str() == t => parts.push(lookup(t, *p)),
                        _ => by_topic.push((topic_name(t.clone()), vec![lookup(t, *p)])),
                    }
                }
                by_topic
            }
        };
        (None, topics)
    })
}
