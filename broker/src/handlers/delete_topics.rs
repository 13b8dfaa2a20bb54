//! DeleteTopics (key 20): by name, or by topic id from v6.

use std::sync::Arc;

use fjord_metadata::TopicId;
use fjord_protocol::kafka_protocol::error::ResponseError;
use fjord_protocol::kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use fjord_protocol::kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse};

use super::{str_bytes, topic_name};
use crate::broker::Broker;

pub(super) async fn handle(
    broker: &Arc<Broker>,
    session: Arc<crate::security::Session>,
    request: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    use fjord_metadata::security::{AclOperation, ResourceType};
    broker
        .blocking(move |broker| {
            // v0-5 name topics in topic_names; v6+ in topics (name or id).
            let mut targets: Vec<(Option<String>, uuid::Uuid)> = request
                .topic_names
                .iter()
                .map(|n| (Some(n.to_string()), uuid::Uuid::nil()))
                .collect();
            targets.extend(
                request
                    .topics
                    .iter()
                    .map(|t| (t.name.as_ref().map(|n| n.to_string()), t.topic_id)),
            );
            let responses = targets
                .into_iter()
                .map(|(name, id)| {
                    let name = name.or_else(|| broker.image().topic_by_id(TopicId(id)).map(|t| t.name.clone()));
                    let result = DeletableTopicResult::default()
                        .with_name(name.clone().map(topic_name))
                        .with_topic_id(id);
                    let Some(name) = name else {
                        return result.with_error_code(ResponseError::UnknownTopicId.code());
                    };
                    // DELETE on the topic (DESCRIBE decides whether its existence is revealed).
                    if !broker.authorize(&session, AclOperation::Delete, ResourceType::Topic, &name) {
                        return result.with_error_code(ResponseError::TopicAuthorizationFailed.code());
                    }
                    match broker.delete_topic(&name) {
                        Ok(topic_id) => result.with_topic_id(topic_id.0),
                        Err(e) => result
                            .with_error_code(e.code.code())
                            .with_error_message(Some(str_bytes(e.message))),
                    }
                })
                .collect();
            DeleteTopicsResponse::default().with_responses(responses)
        })
        .await
}
