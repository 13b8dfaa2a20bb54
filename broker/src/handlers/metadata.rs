//! Metadata (key 3): brokers, cluster id, and topics with their partitions, leaders and epochs.
//! Creates requested topics when both the client and the broker allow auto-creation.

use std::sync::Arc;

use fjord_metadata::TopicImage;
use fjord_metadata::security::{AclOperation, ResourceType};
use fjord_protocol::kafka_protocol::error::ResponseError;
use fjord_protocol::kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use fjord_protocol::kafka_protocol::messages::{MetadataRequest, MetadataResponse};

use super::{broker_id, operations, str_bytes, topic_name};
use crate::broker::Broker;
use crate::controller::validate_topic_name;
use crate::security::Session;

pub(super) async fn handle(
    broker: &Arc<Broker>,
    session: &Session,
    request: MetadataRequest,
    version: i16,
) -> MetadataResponse {
    // Topics the principal may not describe are left out of "all topics" and refused by name
    // (Kafka's filtering); auto-creation needs CREATE on the cluster or the topic.
    let describable = |name: &str| broker.authorize(session, AclOperation::Describe, ResourceType::Topic, name);
    let may_create = |name: &str| {
        broker.authorize_cluster(session, AclOperation::Create)
            || broker.authorize(session, AclOperation::Create, ResourceType::Topic, name)
    };
    let operations = operations::answer(request.include_topic_authorized_operations, operations::TOPIC);
    // v8-10 only; later versions answer it through DescribeCluster.
    let cluster_operations = operations::answer(request.include_cluster_authorized_operations, operations::CLUSTER);
    let mut image = broker.image();
    // v0 has no null array: an empty list means every topic.
    let all_topics = request.topics.is_none() || (version == 0 && request.topics.as_ref().is_some_and(Vec::is_empty));
    let topics = match &request.topics {
        _ if all_topics => image
            .topics()
            .filter(|t| describable(&t.name))
            .map(|t| describe_topic(t, operations))
            .collect(),
        None => Vec::new(),
        Some(requested) => {
            // Auto-create first (one metadata commit per missing topic), then describe.
            // Metadata v0-v3 always allowed auto-creation; v4+ asks for it explicitly.
            let allow = (version < 4 || request.allow_auto_topic_creation) && broker.config.topics.auto_create;
            let missing: Vec<String> = requested
                .iter()
                .filter_map(|t| t.name.as_ref().map(|n| n.to_string()))
                .filter(|n| image.topic(n).is_none() && validate_topic_name(n).is_ok())
                .filter(|n| describable(n) && may_create(n))
                .collect();
            if allow && !missing.is_empty() {
                broker.blocking(move |b| b.auto_create_topics(&missing)).await;
                image = broker.image();
            }
            requested
                .iter()
                .map(|t| {
                    let found = match &t.name {
                        Some(name) => image.topic(name),
                        None => image.topic_by_id(fjord_metadata::TopicId(t.topic_id)),
                    };
                    let name = found.map(|f| f.name.as_str()).or(t.name.as_ref().map(|n| n.as_str()));
                    if let Some(name) = name
                        && !describable(name)
                    {
                        return MetadataResponseTopic::default()
                            .with_name(t.name.clone())
                            .with_topic_id(t.topic_id)
                            .with_error_code(ResponseError::TopicAuthorizationFailed.code());
                    }
                    match (found, &t.name) {
                        (Some(topic), _) => describe_topic(topic, operations),
                        (None, Some(name)) if allow && !may_create(name) && validate_topic_name(name).is_ok() => {
                            MetadataResponseTopic::default()
                                .with_name(Some(name.clone()))
                                .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                        }
                        (None, Some(name)) => {
                            let code = match validate_topic_name(name) {
                                Err(e) => e.code,
                                Ok(()) => ResponseError::UnknownTopicOrPartition,
                            };
                            MetadataResponseTopic::default()
                                .with_name(Some(name.clone()))
                                .with_error_code(code.code())
                        }
                        (None, None) => MetadataResponseTopic::default()
                            .with_topic_id(t.topic_id)
                            .with_error_code(ResponseError::UnknownTopicId.code()),
                    }
                })
                .collect()
        }
    };
    MetadataResponse::default()
        .with_brokers(
            super::live_brokers(broker, &image, &session.listener)
                .into_iter()
                .map(|b| {
                    MetadataResponseBroker::default()
                        .with_node_id(broker_id(b.id))
                        .with_host(str_bytes(b.host))
                        .with_port(b.port)
                        .with_rack(b.rack.map(str_bytes))
                })
                .collect(),
        )
        .with_cluster_id(Some(str_bytes(broker.cluster_id.clone())))
        .with_controller_id(broker_id(broker.controller_id()))
        .with_topics(topics.into_iter().map(|t| with_offline_replicas(t, &image)).collect())
        .with_cluster_authorized_operations(cluster_operations)
}

/// Fills each partition's offline replicas (replicas on fenced or unregistered brokers).
fn with_offline_replicas(
    mut topic: MetadataResponseTopic,
    image: &fjord_metadata::MetadataImage,
) -> MetadataResponseTopic {
    let Some(found) = topic.name.as_ref().and_then(|n| image.topic(n.as_str())) else {
        return topic;
    };
    for (partition, p) in topic.partitions.iter_mut().zip(&found.partitions) {
        partition.offline_replicas = image.offline_replicas(p).iter().map(|b| broker_id(b.0)).collect();
    }
    topic
}

fn describe_topic(topic: &TopicImage, operations: i32) -> MetadataResponseTopic {
    let partitions = topic
        .partitions
        .iter()
        .map(|p| {
            MetadataResponsePartition::default()
                .with_partition_index(p.partition.0)
                .with_leader_id(broker_id(p.leader.0))
                .with_leader_epoch(p.leader_epoch)
                .with_replica_nodes(p.replicas.iter().map(|b| broker_id(b.0)).collect())
                .with_isr_nodes(p.isr.iter().map(|b| broker_id(b.0)).collect())
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(topic.name.clone())))
        .with_topic_id(topic.id.0)
        .with_is_internal(crate::controller::is_internal_topic(&topic.name))
        .with_partitions(partitions)
        .with_topic_authorized_operations(operations)
}
