//! CreateTopics (key 19): per-topic validation (name, partitions, replication factor, configs),
//! validate-only, and the created topic's id, counts and configs in the response (v5+).

use std::collections::BTreeMap;
use std::sync::Arc;

use fjord_protocol::kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use fjord_protocol::kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

use super::str_bytes;
use crate::broker::Broker;
use crate::controller::NewTopic;
use crate::topic_config;

pub(super) async fn handle(
    broker: &Arc<Broker>,
    session: Arc<crate::security::Session>,
    request: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    use fjord_metadata::security::{AclOperation, ResourceType};
    broker
        .blocking(move |broker| {
            let mut seen = std::collections::HashSet::new();
            let results = request
                .topics
                .into_iter()
                .map(|t| {
                    let result = CreatableTopicResult::default()
                        .with_name(t.name.clone())
                        .with_num_partitions(-1)
                        .with_replication_factor(-1);
                    if !seen.insert(t.name.to_string()) {
                        return result
                            .with_error_code(
                                fjord_protocol::kafka_protocol::error::ResponseError::InvalidRequest.code(),
                            )
                            .with_error_message(Some(str_bytes("topic listed more than once in the request")));
                    }
                    // CREATE on the cluster or on the topic (Kafka).
                    if !broker.authorize_cluster(&session, AclOperation::Create)
                        && !broker.authorize(&session, AclOperation::Create, ResourceType::Topic, &t.name)
                    {
                        return result.with_error_code(
                            fjord_protocol::kafka_protocol::error::ResponseError::TopicAuthorizationFailed.code(),
                        );
                    }
                    let configs: BTreeMap<String, String> = t
                        .configs
                        .iter()
                        .filter_map(|c| c.value.as_ref().map(|v| (c.name.to_string(), v.to_string())))
                        .collect();
                    let new_topic = NewTopic {
                        name: t.name.to_string(),
                        num_partitions: t.num_partitions,
                        replication_factor: t.replication_factor,
                        explicit_assignments: (!t.assignments.is_empty()).then(|| {
                            t.assignments
                                .iter()
                                .map(|a| (a.partition_index, a.broker_ids.iter().map(|b| b.0).collect()))
                                .collect()
                        }),
                        configs: configs.clone(),
                    };
                    match broker.create_topic(new_topic, request.validate_only) {
                        Ok(created) => {
                            let described = (version >= 5).then(|| {
                                topic_config::describe(&broker.topic_defaults(), &configs)
                                    .into_iter()
                                    .map(|d| {
                                        CreatableTopicConfigs::default()
                                            .with_name(str_bytes(d.def.name))
                                            .with_value(Some(str_bytes(d.value)))
                                            .with_config_source(d.source as i8)
                                    })
                                    .collect()
                            });
                            result
                                .with_topic_id(created.topic_id.0)
                                .with_num_partitions(created.num_partitions)
                                .with_replication_factor(created.replication_factor)
                                .with_configs(described)
                        }
                        Err(e) => result
                            .with_error_code(e.code.code())
                            .with_error_message(Some(str_bytes(e.message))),
                    }
                })
                .collect();
            CreateTopicsResponse::default().with_topics(results)
        })
        .await
}
