//! AlterConfigs (key 33: the given set replaces the topic's configs) and IncrementalAlterConfigs
//! (key 44: set, delete, append, subtract per key) for topics and for dynamic broker configs (one
//! broker, or the cluster default named ""), and IncrementalAlterConfigs for consumer-group
//! configs (KIP-848).

use std::sync::Arc;

use fjord_protocol::kafka_protocol::error::ResponseError;
use fjord_protocol::kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use fjord_protocol::kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse as IncrementalResult;
use fjord_protocol::kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_GROUP, RESOURCE_TOPIC};
use super::str_bytes;
use crate::broker::Broker;
use crate::controller::{ApiError, ConfigChange};

fn alter(
    broker: &Broker,
    resource_type: i8,
    name: &StrBytes,
    changes: Vec<(String, ConfigChange)>,
    replace_all: bool,
    validate_only: bool,
) -> Result<(), ApiError> {
    match resource_type {
        RESOURCE_TOPIC => broker.alter_topic_configs(name.as_str(), changes, replace_all, validate_only),
        RESOURCE_GROUP if replace_all => Err(ApiError::new(
            ResponseError::InvalidRequest,
            "group configs are altered with IncrementalAlterConfigs",
        )),
        RESOURCE_GROUP => broker.alter_group_configs(name.as_str(), changes, validate_only),
        RESOURCE_BROKER => {
            let broker_id = match name.as_str() {
                "" => None,
                id => match id.parse::<i32>() {
                    Ok(id) if id >= 0 => Some(fjord_metadata::BrokerId(id)),
                    _ => {
                        return Err(ApiError::new(
                            ResponseError::InvalidRequest,
                            format!("{id:?} is not a broker id (use \"\" for the cluster default)"),
                        ));
                    }
                },
            };
            broker.alter_broker_configs(broker_id, changes, replace_all, validate_only)
        }
        other => Err(ApiError::new(
            ResponseError::InvalidRequest,
            format!("resource type {other} is not supported"),
        )),
    }
}

fn codes(result: Result<(), ApiError>) -> (i16, Option<StrBytes>) {
    match result {
        Ok(()) => (0, None),
        Err(e) => (e.code.code(), Some(str_bytes(e.message))),
    }
}

pub(super) async fn handle_alter(broker: &Arc<Broker>, request: AlterConfigsRequest) -> AlterConfigsResponse {
    broker
        .blocking(move |broker| {
            let responses = request
                .resources
                .iter()
                .map(|r| {
                    let changes = r
                        .configs
                        .iter()
                        .map(|c| {
                            let change = c
                                .value
                                .as_ref()
                                .map_or(ConfigChange::Delete, |v| ConfigChange::Set(v.to_string()));
                            (c.name.to_string(), change)
                        })
                        .collect();
                    let (code, message) = codes(alter(
                        broker,
                        r.resource_type,
                        &r.resource_name,
                        changes,
                        true,
                        request.validate_only,
                    ));
                    AlterConfigsResourceResponse::default()
                        .with_resource_type(r.resource_type)
                        .with_resource_name(r.resource_name.clone())
                        .with_error_code(code)
                        .with_error_message(message)
                })
                .collect();
            AlterConfigsResponse::default().with_responses(responses)
        })
        .await
}

pub(super) async fn handle_incremental(
    broker: &Arc<Broker>,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    broker
        .blocking(move |broker| {
            let responses = request
                .resources
                .iter()
                .map(|r| {
                    let changes: Result<Vec<_>, ApiError> = r
                        .configs
                        .iter()
                        .map(|c| {
                            let value = || c.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
                            let change = match c.config_operation {
                                0 => ConfigChange::Set(value()),
                                1 => ConfigChange::Delete,
                                2 => ConfigChange::Append(value()),
                                3 => ConfigChange::Subtract(value()),
                                op => {
                                    return Err(ApiError::new(
                                        ResponseError::InvalidRequest,
                                        format!("unknown config operation {op}"),
                                    ));
                                }
                            };
                            Ok((c.name.to_string(), change))
                        })
                        .collect();
                    let result = changes.and_then(|changes| {
                        alter(
                            broker,
                            r.resource_type,
                            &r.resource_name,
                            changes,
                            false,
                            request.validate_only,
                        )
                    });
                    let (code, message) = codes(result);
                    IncrementalResult::default()
                        .with_resource_type(r.resource_type)
                        .with_resource_name(r.resource_name.clone())
                        .with_error_code(code)
                        .with_error_message(message)
                })
                .collect();
            IncrementalAlterConfigsResponse::default().with_responses(responses)
        })
        .await
}
