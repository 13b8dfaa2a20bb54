//! Kafka's per-API authorization around the handlers that do not check it themselves (Produce,
//! Fetch, Metadata, CreateTopics, DeleteTopics, FindCoordinator and the ACL and SCRAM APIs do):
//! requests are narrowed to what the principal may touch before they run, and read-only
//! responses are filtered after, with Kafka's error codes. Every gate is a no-op while
//! `authorizer.enabled` is off.

use fjord_metadata::security::{AclOperation, ResourceType};
use fjord_protocol::kafka_protocol::error::ResponseError;
use fjord_protocol::kafka_protocol::messages::*;

use super::errors::authorization_error;
use crate::broker::Broker;
use crate::security::Session;

fn allowed(broker: &Broker, session: &Session, op: AclOperation, rt: ResourceType, name: &str) -> bool {
    broker.authorize(session, op, rt, name)
}

/// The error of a group API whose group the principal may not `op`.
pub(super) fn group_denied(broker: &Broker, session: &Session, op: AclOperation, group: &str) -> Option<i16> {
    (!allowed(broker, session, op, ResourceType::Group, group)).then(|| authorization_error(ResourceType::Group).code())
}

/// OffsetCommit: READ on the group (else every partition GROUP_AUTHORIZATION_FAILED) and on
/// each topic (else its partitions TOPIC_AUTHORIZATION_FAILED). Returns the narrowed request and
/// the refused topics' responses to add.
pub(super) fn offset_commit(
    broker: &Broker,
    session: &Session,
    mut request: OffsetCommitRequest,
) -> Result<
    (
        OffsetCommitRequest,
        Vec<offset_commit_response::OffsetCommitResponseTopic>,
    ),
    OffsetCommitResponse,
> {
    use offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
    let refuse = |t: &offset_commit_request::OffsetCommitRequestTopic, code: ResponseError| {
        OffsetCommitResponseTopic::default()
            .with_name(t.name.clone())
            .with_topic_id(t.topic_id)
            .with_partitions(
                t.partitions
                    .iter()
                    .map(|p| {
                        OffsetCommitResponsePartition::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(code.code())
                    })
                    .collect(),
            )
    };
    if !allowed(
        broker,
        session,
        AclOperation::Read,
        ResourceType::Group,
        &request.group_id,
    ) {
        let topics = request
            .topics
            .iter()
            .map(|t| refuse(t, ResponseError::GroupAuthorizationFailed))
            .collect();
        return Err(OffsetCommitResponse::default().with_topics(topics));
    }
    let (ok, denied): (Vec<_>, Vec<_>) = std::mem::take(&mut request.topics)
        .into_iter()
        .partition(|t| allowed(broker, session, AclOperation::Read, ResourceType::Topic, &t.name));
    request.topics = ok;
    Ok((
        request,
        denied
            .iter()
            .map(|t| refuse(t, ResponseError::TopicAuthorizationFailed))
            .collect(),
    ))
}

/// OffsetFetch: DESCRIBE on each group (else its error is GROUP_AUTHORIZATION_FAILED) and on each
/// topic (listed topics get TOPIC_AUTHORIZATION_FAILED, unlisted ones are left out).
pub(super) fn offset_fetch(
    broker: &Broker,
    session: &Session,
    request: &OffsetFetchRequest,
    response: &mut OffsetFetchResponse,
) {
    let describable = |name: &str| allowed(broker, session, AclOperation::Describe, ResourceType::Topic, name);
    let denied = ResponseError::TopicAuthorizationFailed.code();
    if let Some(code) = group_denied(broker, session, AclOperation::Describe, &request.group_id)
        && request.groups.is_empty()
    {
        response.error_code = code;
        response.topics.clear();
    }
    let listed_v7 = request.topics.is_some();
    response.topics.retain_mut(|t| {
        if describable(&t.name) {
            return true;
        }
        t.partitions.iter_mut().for_each(|p| {
            p.error_code = denied;
            p.committed_offset = -1;
        });
        listed_v7
    });
    for group in response.groups.iter_mut() {
        if let Some(code) = group_denied(broker, session, AclOperation::Describe, &group.group_id) {
            group.error_code = code;
            group.topics.clear();
            continue;
        }
        let listed = request
            .groups
            .iter()
            .find(|g| g.group_id == group.group_id)
            .is_some_and(|g| g.topics.is_some());
        group.topics.retain_mut(|t| {
            if describable(&t.name) {
                return true;
            }
            t.partitions.iter_mut().for_each(|p| {
                p.error_code = denied;
                p.committed_offset = -1;
            });
            listed
        });
    }
}

/// DescribeGroups: groups the principal may not DESCRIBE get GROUP_AUTHORIZATION_FAILED.
pub(super) fn describe_groups(broker: &Broker, session: &Session, response: &mut DescribeGroupsResponse) {
    for group in response.groups.iter_mut() {
        if let Some(code) = group_denied(broker, session, AclOperation::Describe, &group.group_id) {
            *group = describe_groups_response::DescribedGroup::default()
                .with_group_id(group.group_id.clone())
                .with_error_code(code);
        }
    }
}

/// ConsumerGroupDescribe: as DescribeGroups.
pub(super) fn consumer_group_describe(
    broker: &Broker,
    session: &Session,
    response: &mut ConsumerGroupDescribeResponse,
) {
    for group in response.groups.iter_mut() {
        if let Some(code) = group_denied(broker, session, AclOperation::Describe, &group.group_id) {
            *group = consumer_group_describe_response::DescribedGroup::default()
                .with_group_id(group.group_id.clone())
                .with_error_code(code);
        }
    }
}

/// ListGroups: DESCRIBE on the cluster lists every group; otherwise only the groups the
/// principal may DESCRIBE.
pub(super) fn list_groups(broker: &Broker, session: &Session, response: &mut ListGroupsResponse) {
    if broker.authorize_cluster(session, AclOperation::Describe) {
        return;
    }
    response.groups.retain(|g| {
        allowed(
            broker,
            session,
            AclOperation::Describe,
            ResourceType::Group,
            &g.group_id,
        )
    });
}

/// DeleteGroups: DELETE on each group. Returns the refused groups' results.
pub(super) fn delete_groups(
    broker: &Broker,
    session: &Session,
    request: &mut DeleteGroupsRequest,
) -> Vec<delete_groups_response::DeletableGroupResult> {
    let (ok, denied): (Vec<_>, Vec<_>) = std::mem::take(&mut request.groups_names)
        .into_iter()
        .partition(|g| allowed(broker, session, AclOperation::Delete, ResourceType::Group, g));
    request.groups_names = ok;
    denied
        .into_iter()
        .map(|g| {
            delete_groups_response::DeletableGroupResult::default()
                .with_group_id(g)
                .with_error_code(ResponseError::GroupAuthorizationFailed.code())
        })
        .collect()
}

/// Config resources: the operation and error for a resource type code (2 topic, 4 broker,
/// 32 group); broker configs are guarded on the cluster resource.
fn config_resource(resource_type: i8, name: &str) -> (ResourceType, String) {
    match resource_type {
        2 => (ResourceType::Topic, name.to_string()),
        32 => (ResourceType::Group, name.to_string()),
        _ => (ResourceType::Cluster, crate::security::CLUSTER_RESOURCE.to_string()),
    }
}

/// DescribeConfigs: DESCRIBE_CONFIGS on each resource.
pub(super) fn describe_configs(broker: &Broker, session: &Session, response: &mut DescribeConfigsResponse) {
    for result in response.results.iter_mut() {
        let (rt, name) = config_resource(result.resource_type, &result.resource_name);
        if !allowed(broker, session, AclOperation::DescribeConfigs, rt, &name) {
            result.error_code = authorization_error(rt).code();
            result.error_message = None;
            result.configs.clear();
        }
    }
}

/// AlterConfigs and IncrementalAlterConfigs: ALTER_CONFIGS on each resource. Returns the
/// refused resources as (type, name, code).
pub(super) fn alter_configs_denied(
    broker: &Broker,
    session: &Session,
    resources: impl Iterator<Item = (i8, String)>,
) -> Vec<(i8, String, i16)> {
    resources
        .filter_map(|(t, n)| {
            let (rt, name) = config_resource(t, &n);
            (!allowed(broker, session, AclOperation::AlterConfigs, rt, &name))
                .then(|| (t, n, authorization_error(rt).code()))
        })
        .collect()
}

/// ListOffsets: DESCRIBE on each topic.
pub(super) fn list_offsets(broker: &Broker, session: &Session, response: &mut ListOffsetsResponse) {
    for topic in response.topics.iter_mut() {
        if !allowed(
            broker,
            session,
            AclOperation::Describe,
            ResourceType::Topic,
            &topic.name,
        ) {
            for p in topic.partitions.iter_mut() {
                p.error_code = ResponseError::TopicAuthorizationFailed.code();
                p.offset = -1;
                p.timestamp = -1;
            }
        }
    }
}

/// CreatePartitions: ALTER on each topic. Returns the refused topics' results.
pub(super) fn create_partitions(
    broker: &Broker,
    session: &Session,
    request: &mut CreatePartitionsRequest,
) -> Vec<create_partitions_response::CreatePartitionsTopicResult> {
    let (ok, denied): (Vec<_>, Vec<_>) = std::mem::take(&mut request.topics)
        .into_iter()
        .partition(|t| allowed(broker, session, AclOperation::Alter, ResourceType::Topic, &t.name));
    request.topics = ok;
    denied
        .into_iter()
        .map(|t| {
            create_partitions_response::CreatePartitionsTopicResult::default()
                .with_name(t.name)
                .with_error_code(ResponseError::TopicAuthorizationFailed.code())
        })
        .collect()
}

/// InitProducerId: WRITE on the transactional id; an idempotent producer needs IDEMPOTENT_WRITE
/// on the cluster or WRITE on some topic (Kafka 3: KIP-679).
pub(super) fn init_producer_id(broker: &Broker, session: &Session, request: &InitProducerIdRequest) -> Option<i16> {
    if let Some(id) = &request.transactional_id {
        return (!allowed(broker, session, AclOperation::Write, ResourceType::TransactionalId, id))
            .then(|| ResponseError::TransactionalIdAuthorizationFailed.code());
    }
    if broker.authorize_cluster(session, AclOperation::IdempotentWrite) {
        return None;
    }
    let image = broker.image();
    let any_write = image
        .acls()
        .iter()
        .filter(|a| a.resource_type == ResourceType::Topic)
        .any(|a| {
            allowed(
                broker,
                session,
                AclOperation::Write,
                ResourceType::Topic,
                &a.resource_name,
            )
        });
    (!any_write).then(|| ResponseError::ClusterAuthorizationFailed.code())
}

/// DeleteRecords: DELETE on each topic. Returns the refused topics' results.
pub(super) fn delete_records(
    broker: &Broker,
    session: &Session,
    request: &mut DeleteRecordsRequest,
) -> Vec<delete_records_response::DeleteRecordsTopicResult> {
    use delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
    let (ok, denied): (Vec<_>, Vec<_>) = std::mem::take(&mut request.topics)
        .into_iter()
        .partition(|t| allowed(broker, session, AclOperation::Delete, ResourceType::Topic, &t.name));
    request.topics = ok;
    denied
        .into_iter()
        .map(|t| {
            DeleteRecordsTopicResult::default().with_name(t.name).with_partitions(
                t.partitions
                    .iter()
                    .map(|p| {
                        DeleteRecordsPartitionResult::default()
                            .with_partition_index(p.partition_index)
                            .with_low_watermark(-1)
                            .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                    })
                    .collect(),
            )
        })
        .collect()
}

/// The error of a cluster-level API the principal may not `op` on the cluster.
pub(super) fn cluster_denied(broker: &Broker, session: &Session, op: AclOperation) -> Option<i16> {
    (!broker.authorize_cluster(session, op)).then(|| ResponseError::ClusterAuthorizationFailed.code())
}

/// DescribeProducers: READ on each topic.
pub(super) fn describe_producers(broker: &Broker, session: &Session, response: &mut DescribeProducersResponse) {
    for topic in response.topics.iter_mut() {
        if !allowed(broker, session, AclOperation::Read, ResourceType::Topic, &topic.name) {
            for p in topic.partitions.iter_mut() {
                p.error_code = ResponseError::TopicAuthorizationFailed.code();
                p.error_message = None;
                p.active_producers.clear();
            }
        }
    }
}

/// OffsetForLeaderEpoch (from a consumer): DESCRIBE on each topic.
pub(super) fn offset_for_leader_epoch(broker: &Broker, session: &Session, response: &mut OffsetForLeaderEpochResponse) {
    for topic in response.topics.iter_mut() {
        if !allowed(
            broker,
            session,
            AclOperation::Describe,
            ResourceType::Topic,
            &topic.topic,
        ) {
            for p in topic.partitions.iter_mut() {
                p.error_code = ResponseError::TopicAuthorizationFailed.code();
                p.leader_epoch = -1;
                p.end_offset = -1;
            }
        }
    }
}
