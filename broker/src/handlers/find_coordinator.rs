//! FindCoordinator (key 10): a group is coordinated by the leader of its `__consumer_offsets`
//! partition, a transactional id by the leader of its `__transaction_state` partition (both by
//! the Java hash of the key). Creates either topic on first use, as Kafka does. v4+ batches keys.

use std::sync::Arc;

use fjord_metadata::security::{AclOperation, ResourceType};

use fjord_protocol::kafka_protocol::error::ResponseError;
use fjord_protocol::kafka_protocol::messages::find_coordinator_response::Coordinator;
use fjord_protocol::kafka_protocol::messages::{FindCoordinatorRequest, FindCoordinatorResponse};

use super::{broker_id, str_bytes};
use crate::broker::Broker;

/// Kafka's coordinator key types: 0 = group, 1 = transaction (2 = share, not served).
const KEY_TYPES: [i8; 2] = [0, 1];

pub(super) async fn handle(
    broker: &Arc<Broker>,
    session: &crate::security::Session,
    request: FindCoordinatorRequest,
    version: i16,
) -> FindCoordinatorResponse {
    let internal_topic = if request.key_type == 1 {
        crate::txn::STATE_TOPIC
    } else {
        crate::group::OFFSETS_TOPIC
    };
    let created = if broker.image().topic(internal_topic).is_some() || !KEY_TYPES.contains(&request.key_type) {
        Ok(())
    } else if request.key_type == 1 {
        broker
            .blocking(|b| b.ensure_txn_state_topic())
            .await
            .map_err(|code| crate::controller::ApiError {
                code,
                message: "cannot create __transaction_state".into(),
            })
    } else {
        broker.blocking(|b| b.ensure_offsets_topic()).await
    };
    let keys: Vec<String> = if version >= 4 {
        request.coordinator_keys.iter().map(|k| k.to_string()).collect()
    } else {
        vec![request.key.to_string()]
    };
    let answer = |key: &str| -> (Option<ResponseError>, String) {
        if let Err(e) = &created {
            return (Some(ResponseError::CoordinatorNotAvailable), e.message.clone());
        }
        if !KEY_TYPES.contains(&request.key_type) {
            return (
                Some(ResponseError::InvalidRequest),
                format!("key type {} is not supported", request.key_type),
            );
        }
        if key.is_empty() && request.key_type == 0 {
            return (Some(ResponseError::InvalidGroupId), "group id is empty".into());
        }
        if key.is_empty() && request.key_type == 1 {
            return (Some(ResponseError::InvalidRequest), "transactional id is empty".into());
        }
        let resource = if request.key_type == 0 {
            ResourceType::Group
        } else {
            ResourceType::TransactionalId
        };
        if !broker.authorize(session, AclOperation::Describe, resource, key) {
            return (Some(super::errors::authorization_error(resource)), String::new());
        }
        (None, String::new())
    };
    let image = broker.image();
    let brokers = super::live_brokers(broker, &image, &session.listener);
    // The leader of the key's internal partition, if it is a live broker.
    let coordinator_of = |key: &str| -> Option<(i32, String, i32)> {
        let topic = image.topic(internal_topic)?;
        let index = crate::group::partition_for(key, topic.partitions.len() as i32);
        let leader = topic.partitions.get(index as usize)?.leader.0;
        let b = brokers.iter().find(|b| b.id == leader)?;
        Some((b.id, b.host.clone(), b.port))
    };
    let coordinators: Vec<Coordinator> = keys
        .iter()
        .map(|key| {
            let (mut error, mut message) = answer(key);
            let (node, host, port) = if error.is_none() {
                coordinator_of(key).unwrap_or_else(|| {
                    error = Some(ResponseError::CoordinatorNotAvailable);
                    message = format!("the key's {internal_topic} partition has no live leader");
                    (-1, String::new(), -1)
                })
            } else {
                let (host, port) = broker.config.advertised_for(&session.listener);
                (broker.node_id(), host, port)
            };
            let ok = error.is_none();
            Coordinator::default()
                .with_key(str_bytes(key.clone()))
                .with_node_id(broker_id(if ok { node } else { -1 }))
                .with_host(str_bytes(if ok { host } else { String::new() }))
                .with_port(if ok { port } else { -1 })
                .with_error_code(error.map_or(0, |e| e.code()))
                .with_error_message((!ok).then(|| str_bytes(message)))
        })
        .collect();
    if version >= 4 {
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let c = coordinators.into_iter().next().unwrap_or_default();
    let mut response = FindCoordinatorResponse::default()
        .with_error_code(c.error_code)
        .with_node_id(c.node_id)
        .with_host(c.host)
        .with_port(c.port);
    if version >= 1 {
        response = response.with_error_message(c.error_message);
    }
    response
}
