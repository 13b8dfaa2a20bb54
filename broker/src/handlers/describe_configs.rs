//! DescribeConfigs (key 32): every topic config with its effective value and source (topic
//! override, static broker default, or built-in default), the broker's own settings, and a
//! consumer group's dynamic configs (GROUP resource, KIP-848).

use fjord_protocol::kafka_protocol::error::ResponseError;
use fjord_protocol::kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use fjord_protocol::kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};

use super::str_bytes;
use crate::broker::Broker;
use crate::config::BrokerConfig;
use crate::topic_config::{self, Source};

pub(super) const RESOURCE_TOPIC: i8 = 2;
pub(super) const RESOURCE_BROKER: i8 = 4;
pub(super) const RESOURCE_GROUP: i8 = 32;

/// Kafka's GROUP_CONFIG config source.
const SOURCE_GROUP: i8 = 8;

/// Kafka ConfigType codes.
const TYPE_BOOLEAN: i8 = 1;
const TYPE_STRING: i8 = 2;
const TYPE_INT: i8 = 3;
const TYPE_LONG: i8 = 5;
const TYPE_LIST: i8 = 7;

pub(super) fn handle(broker: &Broker, request: DescribeConfigsRequest) -> DescribeConfigsResponse {
    let image = broker.image();
    let results = request
        .resources
        .iter()
        .map(|resource| {
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            let wanted = |name: &str| {
                resource
                    .configuration_keys
                    .as_ref()
                    .is_none_or(|keys| keys.iter().any(|k| k.as_str() == name))
            };
            match resource.resource_type {
                RESOURCE_TOPIC => {
                    let Some(topic) = image.topic(resource.resource_name.as_str()) else {
                        return result
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            .with_error_message(Some(str_bytes(format!(
                                "topic {} does not exist",
                                resource.resource_name.as_str()
                            ))));
                    };
                    let defaults = broker.topic_defaults();
                    let broker_defaults = topic_config::broker_defaults_as_topic_configs(&defaults);
                    let configs = topic_config::describe(&defaults, &topic.configs)
                        .into_iter()
                        .filter(|d| wanted(d.def.name))
                        .map(|d| {
                            let mut synonyms = Vec::new();
                            if request.include_synonyms {
                                if d.source == Source::DynamicTopic {
                                    synonyms.push(synonym(d.def.name, &d.value, Source::DynamicTopic as i8));
                                }
                                if let (Some(syn), Some(dynamic)) =
                                    (d.def.broker_synonym, defaults.dynamic.get(d.def.name))
                                {
                                    let source = if dynamic.per_broker {
                                        Source::DynamicBroker
                                    } else {
                                        Source::DynamicDefaultBroker
                                    };
                                    synonyms.push(synonym(syn, &dynamic.value, source as i8));
                                }
                                if let (Some(syn), Some((_, v))) = (
                                    d.def.broker_synonym,
                                    broker_defaults.iter().find(|(n, _)| *n == d.def.name),
                                ) && v != d.def.default
                                {
                                    synonyms.push(synonym(syn, v, Source::StaticBroker as i8));
                                }
                                synonyms.push(synonym(
                                    d.def.broker_synonym.unwrap_or(d.def.name),
                                    d.def.default,
                                    Source::Default as i8,
                                ));
                            }
                            DescribeConfigsResourceResult::default()
                                .with_name(str_bytes(d.def.name))
                                .with_value(Some(str_bytes(d.value)))
                                .with_read_only(false)
                                .with_config_source(d.source as i8)
                                .with_config_type(d.def.type_code)
                                .with_synonyms(synonyms)
                                .with_documentation(request.include_documentation.then(|| str_bytes(d.def.doc)))
                        })
                        .collect();
                    result.with_configs(configs)
                }
                RESOURCE_BROKER => {
                    let name = resource.resource_name.as_str();
                    if name.is_empty() {
                        // The cluster-wide default resource: only what was set dynamically there.
                        let configs = image
                            .broker_default_configs()
                            .iter()
                            .filter(|(n, _)| wanted(n))
                            .filter_map(|(n, v)| {
                                let def = topic_config::for_broker_key(n)?;
                                Some(
                                    DescribeConfigsResourceResult::default()
                                        .with_name(str_bytes(n.clone()))
                                        .with_value(Some(str_bytes(v.clone())))
                                        .with_read_only(false)
                                        .with_config_source(Source::DynamicDefaultBroker as i8)
                                        .with_config_type(def.type_code)
                                        .with_documentation(None),
                                )
                            })
                            .collect();
                        return result.with_configs(configs);
                    }
                    if name != broker.node_id().to_string() {
                        return result
                            .with_error_code(ResponseError::InvalidRequest.code())
                            .with_error_message(Some(str_bytes(format!(
                                "this is broker {}, not {name}",
                                broker.node_id()
                            ))));
                    }
                    let dynamic = broker.topic_defaults().dynamic;
                    let configs = broker_configs(&broker.config)
                        .into_iter()
                        .filter(|(n, ..)| wanted(n))
                        .map(|(n, value, default, config_type)| {
                            let static_source = if value == default {
                                Source::Default
                            } else {
                                Source::StaticBroker
                            };
                            let def = topic_config::for_broker_key(n);
                            let (value, source) = match def.and_then(|d| dynamic.get(d.name)) {
                                Some(d) if d.per_broker => (d.value.clone(), Source::DynamicBroker),
                                Some(d) => (d.value.clone(), Source::DynamicDefaultBroker),
                                None => (value, static_source),
                            };
                            let mut synonyms = Vec::new();
                            if request.include_synonyms {
                                synonyms.push(synonym(n, &value, source as i8));
                                if source != static_source {
                                    synonyms.push(synonym(n, &default, Source::Default as i8));
                                }
                            }
                            DescribeConfigsResourceResult::default()
                                .with_name(str_bytes(n))
                                .with_value(Some(str_bytes(value)))
                                .with_read_only(def.is_none())
                                .with_config_source(source as i8)
                                .with_config_type(config_type)
                                .with_synonyms(synonyms)
                                .with_documentation(None)
                        })
                        .collect();
                    result.with_configs(configs)
                }
                RESOURCE_GROUP => {
                    let group = resource.resource_name.as_str();
                    let overrides = image.group_configs(group);
                    let defaults = &broker.config.groups;
                    let built_in = crate::config::GroupConfig::default();
                    let configs = crate::group::configs::KEYS
                        .into_iter()
                        .filter(|k| wanted(k))
                        .map(|key| {
                            let default = crate::group::configs::broker_default(defaults, key).unwrap_or_default();
                            let (value, source) = match overrides.and_then(|o| o.get(key)) {
                                Some(v) => (v.clone(), SOURCE_GROUP),
                                None if Some(&default)
                                    == crate::group::configs::broker_default(&built_in, key).as_ref() =>
                                {
                                    (default.clone(), Source::Default as i8)
                                }
                                None => (default.clone(), Source::StaticBroker as i8),
                            };
                            let synonyms = if request.include_synonyms {
                                let mut s = Vec::new();
                                if source == SOURCE_GROUP {
                                    s.push(synonym(key, &value, SOURCE_GROUP));
                                }
                                s.push(synonym(key, &default, Source::Default as i8));
                                s
                            } else {
                                Vec::new()
                            };
                            DescribeConfigsResourceResult::default()
                                .with_name(str_bytes(key))
                                .with_value(Some(str_bytes(value)))
                                .with_read_only(false)
                                .with_config_source(source)
                                .with_config_type(TYPE_INT)
                                .with_synonyms(synonyms)
                                .with_documentation(None)
                        })
                        .collect();
                    result.with_configs(configs)
                }
                other => result
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(Some(str_bytes(format!("resource type {other} is not supported")))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

fn synonym(name: &str, value: &str, source: i8) -> DescribeConfigsSynonym {
    DescribeConfigsSynonym::default()
        .with_name(str_bytes(name))
        .with_value(Some(str_bytes(value)))
        .with_source(source)
}

/// The broker's settings under Kafka's names: (name, value, default, type).
fn broker_configs(config: &BrokerConfig) -> Vec<(&'static str, String, String, i8)> {
    let d = BrokerConfig::default();
    // Validated at load; the PLAINTEXT listener alone if not.
    let listeners = config.listeners().unwrap_or_else(|_| {
        let (host, port) = config.advertised_listener();
        vec![crate::config::Listener {
            name: crate::config::DEFAULT_LISTENER.to_string(),
            listen: config.network.listen,
            advertised_host: host,
            advertised_port: port,
            protocol: crate::config::SecurityProtocol::Plaintext,
        }]
    });
    let t = &config.topics;
    let dt = &d.topics;
    let ms = |x: std::time::Duration| x.as_millis().to_string();
    vec![
        ("node.id", config.node_id.to_string(), d.node_id.to_string(), TYPE_INT),
        ("broker.id", config.node_id.to_string(), d.node_id.to_string(), TYPE_INT),
        (
            "broker.rack",
            config.rack.clone().unwrap_or_default(),
            String::new(),
            TYPE_STRING,
        ),
        (
            "listeners",
            listeners
                .iter()
                .map(|l| format!("{}://{}", l.name, l.listen))
                .collect::<Vec<_>>()
                .join(","),
            format!("PLAINTEXT://{}", d.network.listen),
            TYPE_STRING,
        ),
        (
            "advertised.listeners",
            listeners
                .iter()
                .map(|l| format!("{}://{}:{}", l.name, l.advertised_host, l.advertised_port))
                .collect::<Vec<_>>()
                .join(","),
            format!("PLAINTEXT://{}", d.network.listen),
            TYPE_STRING,
        ),
        (
            "listener.security.protocol.map",
            listeners
                .iter()
                .map(|l| format!("{}:{}", l.name, l.protocol.name()))
                .collect::<Vec<_>>()
                .join(","),
            "PLAINTEXT:PLAINTEXT".to_string(),
            TYPE_STRING,
        ),
        (
            "sasl.enabled.mechanisms",
            config.sasl.enabled_mechanisms.join(","),
            d.sasl.enabled_mechanisms.join(","),
            TYPE_LIST,
        ),
        (
            "ssl.client.auth",
            config.tls.client_auth.clone(),
            d.tls.client_auth.clone(),
            TYPE_STRING,
        ),
        (
            "super.users",
            config.authorizer.super_users.join(";"),
            String::new(),
            TYPE_STRING,
        ),
        (
            "allow.everyone.if.no.acl.found",
            config.authorizer.allow_everyone_if_no_acl_found.to_string(),
            d.authorizer.allow_everyone_if_no_acl_found.to_string(),
            TYPE_BOOLEAN,
        ),
        (
            "log.dirs",
            config.storage.data_dir.display().to_string(),
            d.storage.data_dir.display().to_string(),
            TYPE_STRING,
        ),
        (
            "socket.request.max.bytes",
            config.network.max_request_size.as_u64().to_string(),
            d.network.max_request_size.as_u64().to_string(),
            TYPE_INT,
        ),
        (
            "connections.max.idle.ms",
            ms(config.network.idle_timeout),
            ms(d.network.idle_timeout),
            TYPE_LONG,
        ),
        (
            "log.retention.check.interval.ms",
            ms(config.storage.retention_check_interval),
            ms(d.storage.retention_check_interval),
            TYPE_LONG,
        ),
        (
            "log.flush.scheduler.interval.ms",
            ms(config.storage.flush_interval),
            ms(d.storage.flush_interval),
            TYPE_LONG,
        ),
        (
            "auto.create.topics.enable",
            t.auto_create.to_string(),
            dt.auto_create.to_string(),
            TYPE_BOOLEAN,
        ),
        (
            "num.partitions",
            t.num_partitions.to_string(),
            dt.num_partitions.to_string(),
            TYPE_INT,
        ),
        (
            "default.replication.factor",
            t.replication_factor.to_string(),
            dt.replication_factor.to_string(),
            TYPE_INT,
        ),
        (
            "log.segment.bytes",
            t.segment_bytes.to_string(),
            dt.segment_bytes.to_string(),
            TYPE_INT,
        ),
        (
            "log.roll.ms",
            t.segment_ms.to_string(),
            dt.segment_ms.to_string(),
            TYPE_LONG,
        ),
        (
            "log.retention.ms",
            t.retention_ms.to_string(),
            dt.retention_ms.to_string(),
            TYPE_LONG,
        ),
        (
            "log.retention.bytes",
            t.retention_bytes.to_string(),
            dt.retention_bytes.to_string(),
            TYPE_LONG,
        ),
        (
            "message.max.bytes",
            t.max_message_bytes.to_string(),
            dt.max_message_bytes.to_string(),
            TYPE_INT,
        ),
        (
            "log.message.timestamp.type",
            t.message_timestamp_type.clone(),
            dt.message_timestamp_type.clone(),
            TYPE_STRING,
        ),
        (
            "log.cleanup.policy",
            t.cleanup_policy.clone(),
            dt.cleanup_policy.clone(),
            7,
        ),
        (
            "log.flush.interval.messages",
            t.flush_messages.to_string(),
            dt.flush_messages.to_string(),
            TYPE_LONG,
        ),
        (
            "log.flush.interval.ms",
            t.flush_ms.to_string(),
            dt.flush_ms.to_string(),
            TYPE_LONG,
        ),
        (
            "log.index.interval.bytes",
            t.index_interval_bytes.to_string(),
            dt.index_interval_bytes.to_string(),
            TYPE_INT,
        ),
        (
            "log.index.size.max.bytes",
            t.segment_index_bytes.to_string(),
            dt.segment_index_bytes.to_string(),
            TYPE_INT,
        ),
        ("min.insync.replicas", "1".into(), "1".into(), TYPE_INT),
        ("compression.type", "producer".into(), "producer".into(), TYPE_STRING),
    ]
}
