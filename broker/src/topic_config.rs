//! The catalog of Kafka topic configs: names, types, validation, broker-level defaults and their
//! broker synonyms. CreateTopics, AlterConfigs and DescribeConfigs all read this one table, and
//! `log_config` turns a topic's effective configs into the storage crate's typed `LogConfig`.

use std::collections::BTreeMap;

use fjord_storage::{CleanupPolicy, CompactionConfig, LogConfig, TimestampType};

use crate::config::TopicDefaults;

/// How a config value is typed and checked.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Long {
        min: i64,
    },
    Int {
        min: i64,
    },
    Bool,
    Double {
        min: f64,
        max: f64,
    },
    OneOf(&'static [&'static str]),
    /// Comma-separated subset of the given values.
    ListOf(&'static [&'static str]),
    /// Free-form (stored and described, not interpreted).
    Text,
}

/// One topic config key.
#[derive(Debug, Clone, Copy)]
pub struct ConfigDef {
    pub name: &'static str,
    /// The broker-level setting that provides the default (Kafka's synonym).
    pub broker_synonym: Option<&'static str>,
    pub kind: Kind,
    /// Default when neither the topic nor the broker sets it.
    pub default: &'static str,
    /// Kafka's ConfigType code for DescribeConfigs v3+ (1 boolean, 2 string, 3 int, 4 short, 5 long, 6 double, 7 list).
    pub type_code: i8,
    pub doc: &'static str,
}

const fn def(
    name: &'static str,
    broker_synonym: Option<&'static str>,
    kind: Kind,
    default: &'static str,
    type_code: i8,
    doc: &'static str,
) -> ConfigDef {
    ConfigDef {
        name,
        broker_synonym,
        kind,
        default,
        type_code,
        doc,
    }
}

const COMPRESSION: &[&str] = &["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"];

/// Every topic config Kafka 4.x defines. Those marked (honoured) change broker behaviour here;
/// the rest are validated, stored and described so tools round-trip them.
pub const TOPIC_CONFIGS: &[ConfigDef] = &[
    def(
        "cleanup.policy",
        Some("log.cleanup.policy"),
        Kind::ListOf(&["delete", "compact"]),
        "delete",
        7,
        "(honoured) delete: time/size retention; compact: keep the latest record per key",
    ),
    def(
        "compression.type",
        Some("compression.type"),
        Kind::OneOf(COMPRESSION),
        "producer",
        2,
        "batches are stored as the producer compressed them",
    ),
    def(
        "delete.retention.ms",
        Some("log.cleaner.delete.retention.ms"),
        Kind::Long { min: 0 },
        "86400000",
        5,
        "(honoured) tombstone retention on compacted topics",
    ),
    def(
        "file.delete.delay.ms",
        Some("log.segment.delete.delay.ms"),
        Kind::Long { min: 0 },
        "60000",
        5,
        "delay before a deleted segment file is removed",
    ),
    def(
        "flush.messages",
        Some("log.flush.interval.messages"),
        Kind::Long { min: 1 },
        "9223372036854775807",
        5,
        "(honoured) fsync after this many messages",
    ),
    def(
        "flush.ms",
        Some("log.flush.interval.ms"),
        Kind::Long { min: 0 },
        "9223372036854775807",
        5,
        "(honoured) fsync unflushed data older than this",
    ),
    def(
        "follower.replication.throttled.replicas",
        Some("follower.replication.throttled.replicas"),
        Kind::Text,
        "",
        7,
        "throttled follower replicas",
    ),
    def(
        "index.interval.bytes",
        Some("log.index.interval.bytes"),
        Kind::Int { min: 0 },
        "4096",
        3,
        "(honoured) bytes between offset index entries",
    ),
    def(
        "leader.replication.throttled.replicas",
        Some("leader.replication.throttled.replicas"),
        Kind::Text,
        "",
        7,
        "throttled leader replicas",
    ),
    def(
        "local.retention.bytes",
        Some("log.local.retention.bytes"),
        Kind::Long { min: -2 },
        "-2",
        5,
        "local retention for tiered topics",
    ),
    def(
        "local.retention.ms",
        Some("log.local.retention.ms"),
        Kind::Long { min: -2 },
        "-2",
        5,
        "local retention for tiered topics",
    ),
    def(
        "max.compaction.lag.ms",
        Some("log.cleaner.max.compaction.lag.ms"),
        Kind::Long { min: 1 },
        "9223372036854775807",
        5,
        "(honoured) max time a record stays uncompacted",
    ),
    def(
        "max.message.bytes",
        Some("message.max.bytes"),
        Kind::Int { min: 0 },
        "1048588",
        3,
        "(honoured) largest record batch accepted",
    ),
    def(
        "message.timestamp.after.max.ms",
        Some("log.message.timestamp.after.max.ms"),
        Kind::Long { min: 0 },
        "3600000",
        5,
        "(honoured) how far in the future a CreateTime timestamp may be",
    ),
    def(
        "message.timestamp.before.max.ms",
        Some("log.message.timestamp.before.max.ms"),
        Kind::Long { min: 0 },
        "9223372036854775807",
        5,
        "(honoured) how far in the past a CreateTime timestamp may be",
    ),
    def(
        "message.timestamp.type",
        Some("log.message.timestamp.type"),
        Kind::OneOf(&["CreateTime", "LogAppendTime"]),
        "CreateTime",
        2,
        "(honoured) producer or broker timestamps",
    ),
    def(
        "min.cleanable.dirty.ratio",
        Some("log.cleaner.min.cleanable.ratio"),
        Kind::Double { min: 0.0, max: 1.0 },
        "0.5",
        6,
        "(honoured) dirty ratio that triggers compaction",
    ),
    def(
        "min.compaction.lag.ms",
        Some("log.cleaner.min.compaction.lag.ms"),
        Kind::Long { min: 0 },
        "0",
        5,
        "(honoured) min time a record stays uncompacted",
    ),
    def(
        "min.insync.replicas",
        Some("min.insync.replicas"),
        Kind::Int { min: 1 },
        "1",
        3,
        "replicas that must ack acks=all",
    ),
    def(
        "preallocate",
        Some("log.preallocate"),
        Kind::Bool,
        "false",
        1,
        "preallocate segment files",
    ),
    def(
        "remote.storage.enable",
        None,
        Kind::Bool,
        "false",
        1,
        "tier closed segments to object storage",
    ),
    def(
        "retention.bytes",
        Some("log.retention.bytes"),
        Kind::Long { min: -1 },
        "-1",
        5,
        "(honoured) max partition size before old segments are deleted",
    ),
    def(
        "retention.ms",
        Some("log.retention.ms"),
        Kind::Long { min: -1 },
        "604800000",
        5,
        "(honoured) max age of a closed segment",
    ),
    def(
        "segment.bytes",
        Some("log.segment.bytes"),
        Kind::Int { min: 14 },
        "1073741824",
        3,
        "(honoured) segment roll size",
    ),
    def(
        "segment.index.bytes",
        Some("log.index.size.max.bytes"),
        Kind::Int { min: 8 },
        "10485760",
        3,
        "(honoured) max offset index size per segment",
    ),
    def(
        "segment.jitter.ms",
        Some("log.roll.jitter.ms"),
        Kind::Long { min: 0 },
        "0",
        5,
        "random jitter subtracted from segment.ms",
    ),
    def(
        "segment.ms",
        Some("log.roll.ms"),
        Kind::Long { min: 1 },
        "604800000",
        5,
        "(honoured) segment roll age",
    ),
    def(
        "unclean.leader.election.enable",
        Some("unclean.leader.election.enable"),
        Kind::Bool,
        "false",
        1,
        "allow out-of-ISR leaders",
    ),
];

pub fn find(name: &str) -> Option<&'static ConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.name == name)
}

/// Checks one topic config value; the error text is what clients see in the response message.
pub fn validate_value(name: &str, value: &str) -> Result<(), String> {
    let def = find(name).ok_or_else(|| format!("unknown topic config {name}"))?;
    let bad = |why: &str| Err(format!("invalid value {value:?} for {name}: {why}"));
    match def.kind {
        Kind::Long { min } | Kind::Int { min } => {
            let Ok(v) = value.trim().parse::<i64>() else {
                return bad("not an integer");
            };
            if matches!(def.kind, Kind::Int { .. }) && i32::try_from(v).is_err() {
                return bad("out of the int range");
            }
            if v < min {
                return bad(&format!("must be >= {min}"));
            }
        }
        Kind::Bool => {
            if !value.eq_ignore_ascii_case("true") && !value.eq_ignore_ascii_case("false") {
                return bad("expected true or false");
            }
        }
        Kind::Double { min, max } => match value.trim().parse::<f64>() {
            Ok(v) if (min..=max).contains(&v) => {}
            _ => return bad(&format!("expected a number in [{min}, {max}]")),
        },
        Kind::OneOf(allowed) => {
            if !allowed.contains(&value) {
                return bad(&format!("expected one of {}", allowed.join(", ")));
            }
        }
        // An empty list is a valid list (Kafka 4.x: `cleanup.policy=""` is neither delete nor
        // compact, so the log is kept whole); an empty item inside a list is not.
        Kind::ListOf(_) if value.trim().is_empty() => {}
        Kind::ListOf(allowed) => {
            if value.split(',').map(str::trim).any(|v| !allowed.contains(&v)) {
                return bad(&format!("expected a list of {}", allowed.join(", ")));
            }
        }
        Kind::Text => {}
    }
    Ok(())
}

/// The broker-level defaults in topic-config form (what a topic gets when it sets nothing).
pub fn broker_defaults_as_topic_configs(d: &TopicDefaults) -> Vec<(&'static str, String)> {
    vec![
        ("cleanup.policy", d.cleanup_policy.clone()),
        ("flush.messages", d.flush_messages.to_string()),
        ("flush.ms", d.flush_ms.to_string()),
        ("index.interval.bytes", d.index_interval_bytes.to_string()),
        ("max.message.bytes", d.max_message_bytes.to_string()),
        ("message.timestamp.type", d.message_timestamp_type.clone()),
        ("retention.bytes", d.retention_bytes.to_string()),
        ("retention.ms", d.retention_ms.to_string()),
        ("segment.bytes", d.segment_bytes.to_string()),
        ("segment.index.bytes", d.segment_index_bytes.to_string()),
        ("segment.ms", d.segment_ms.to_string()),
    ]
}

/// Where a described value comes from (Kafka's ConfigSource codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    DynamicTopic = 1,
    DynamicBroker = 2,
    DynamicDefaultBroker = 3,
    StaticBroker = 4,
    Default = 5,
}

/// The topic config a broker-level key provides the default for (`log.retention.ms` ->
/// `retention.ms`): exactly the broker settings that can be changed dynamically, as Kafka's
/// DynamicLogConfig allows for the topic configs' broker synonyms.
pub fn for_broker_key(broker_key: &str) -> Option<&'static ConfigDef> {
    TOPIC_CONFIGS.iter().find(|d| d.broker_synonym == Some(broker_key))
}

/// The topic defaults in force: the static ones plus the dynamic broker configs of `image`
/// (this broker's over the cluster default's).
pub fn with_dynamic(
    defaults: &TopicDefaults,
    image: &fjord_metadata::MetadataImage,
    node: fjord_metadata::BrokerId,
) -> TopicDefaults {
    let mut out = defaults.clone();
    out.dynamic.clear();
    let levels = [
        (Some(image.broker_default_configs()), false),
        (image.broker_configs(node), true),
    ];
    for (configs, per_broker) in levels {
        for (key, value) in configs.into_iter().flatten() {
            if let Some(def) = for_broker_key(key) {
                out.dynamic.insert(
                    def.name.to_string(),
                    crate::config::DynamicValue {
                        value: value.clone(),
                        per_broker,
                    },
                );
            }
        }
    }
    out
}

/// One described config entry.
#[derive(Debug, Clone)]
pub struct Described {
    pub def: &'static ConfigDef,
    pub value: String,
    pub source: Source,
}

/// Every topic config with its effective value and source, in catalog order.
pub fn describe(defaults: &TopicDefaults, overrides: &BTreeMap<String, String>) -> Vec<Described> {
    let broker = broker_defaults_as_topic_configs(defaults);
    TOPIC_CONFIGS
        .iter()
        .map(|def| {
            if let Some(v) = overrides.get(def.name) {
                return Described {
                    def,
                    value: v.clone(),
                    source: Source::DynamicTopic,
                };
            }
            if let Some(d) = defaults.dynamic.get(def.name) {
                return Described {
                    def,
                    value: d.value.clone(),
                    source: if d.per_broker {
                        Source::DynamicBroker
                    } else {
                        Source::DynamicDefaultBroker
                    },
                };
            }
            match broker.iter().find(|(n, _)| *n == def.name) {
                Some((_, v)) if v != def.default => Described {
                    def,
                    value: v.clone(),
                    source: Source::StaticBroker,
                },
                _ => Described {
                    def,
                    value: def.default.to_string(),
                    source: Source::Default,
                },
            }
        })
        .collect()
}

/// The effective value of one config for a topic.
pub fn effective(defaults: &TopicDefaults, overrides: &BTreeMap<String, String>, name: &str) -> Option<String> {
    describe(defaults, overrides)
        .into_iter()
        .find(|d| d.def.name == name)
        .map(|d| d.value)
}

/// The storage crate's typed config for a topic's effective configs.
pub fn log_config(defaults: &TopicDefaults, overrides: &BTreeMap<String, String>) -> LogConfig {
    let values: BTreeMap<&str, String> = describe(defaults, overrides)
        .into_iter()
        .map(|d| (d.def.name, d.value))
        .collect();
    let long = |name: &str| values.get(name).and_then(|v| v.parse::<i64>().ok());
    let positive = |v: Option<i64>| v.filter(|v| *v >= 0);
    let base = LogConfig::default();
    LogConfig {
        segment_bytes: positive(long("segment.bytes")).map_or(base.segment_bytes, |v| v as u64),
        segment_ms: positive(long("segment.ms")).map(|v| v as u64),
        retention_ms: positive(long("retention.ms")),
        retention_bytes: positive(long("retention.bytes")).map(|v| v as u64),
        max_message_bytes: positive(long("max.message.bytes")).map_or(base.max_message_bytes, |v| v as usize),
        timestamp_type: if values.get("message.timestamp.type").map(String::as_str) == Some("LogAppendTime") {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        },
        timestamp_before_max_ms: positive(long("message.timestamp.before.max.ms")).unwrap_or(i64::MAX),
        timestamp_after_max_ms: positive(long("message.timestamp.after.max.ms")).unwrap_or(i64::MAX),
        // A broker setting (storage.max_compression_ratio), filled in by the replica manager.
        max_compression_ratio: base.max_compression_ratio,
        index_interval_bytes: positive(long("index.interval.bytes")).map_or(base.index_interval_bytes, |v| v as usize),
        segment_index_bytes: positive(long("segment.index.bytes")).map_or(base.segment_index_bytes, |v| v as usize),
        file_delete_delay_ms: positive(long("file.delete.delay.ms")).map_or(base.file_delete_delay_ms, |v| v as u64),
        // A broker setting (producer.id.expiration.ms), filled in by the replica manager.
        producer_id_expiration_ms: base.producer_id_expiration_ms,
        cleanup_policy: values
            .get("cleanup.policy")
            .map_or(base.cleanup_policy, |v| CleanupPolicy::parse(v)),
        compaction: CompactionConfig {
            delete_retention_ms: positive(long("delete.retention.ms")).unwrap_or(base.compaction.delete_retention_ms),
            min_cleanable_dirty_ratio: values
                .get("min.cleanable.dirty.ratio")
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(base.compaction.min_cleanable_dirty_ratio),
            min_compaction_lag_ms: positive(long("min.compaction.lag.ms"))
                .unwrap_or(base.compaction.min_compaction_lag_ms),
            max_compaction_lag_ms: positive(long("max.compaction.lag.ms"))
                .unwrap_or(base.compaction.max_compaction_lag_ms),
        },
    }
}

/// Flush policy of a topic: (flush.messages, flush.ms), None where left to the broker policy.
pub fn flush_policy(defaults: &TopicDefaults, overrides: &BTreeMap<String, String>) -> (Option<u64>, Option<u64>) {
    let get = |name| {
        effective(defaults, overrides, name)
            .and_then(|v| v.parse::<i64>().ok())
            .filter(|v| *v >= 0 && *v < i64::MAX)
            .map(|v| v as u64)
    };
    (get("flush.messages"), get("flush.ms"))
}

/// True if the topic tiers its closed segments (`remote.storage.enable`).
pub fn remote_storage_enabled(defaults: &TopicDefaults, overrides: &BTreeMap<String, String>) -> bool {
    effective(defaults, overrides, "remote.storage.enable").is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// Effective local retention of a tiered topic: (`local.retention.ms`, `local.retention.bytes`),
/// where -2 means "same as `retention.*`" and `None` is unlimited.
pub fn local_retention(defaults: &TopicDefaults, overrides: &BTreeMap<String, String>) -> (Option<i64>, Option<u64>) {
    let get = |name: &str| effective(defaults, overrides, name).and_then(|v| v.trim().parse::<i64>().ok());
    let resolve = |local: Option<i64>, total: Option<i64>| match local {
        Some(-2) | None => total.filter(|v| *v >= 0),
        Some(v) if v >= 0 => Some(v),
        _ => None,
    };
    let ms = resolve(get("local.retention.ms"), get("retention.ms"));
    let bytes = resolve(get("local.retention.bytes"), get("retention.bytes")).map(|v| v as u64);
    (ms, bytes)
}

/// Cross-key rules for tiered storage (Kafka's): `local.retention.*` must not exceed
/// `retention.*` (-2 = the same, -1 = unlimited, allowed only if the total is unlimited), tiering
/// needs the broker switch and a delete-only cleanup policy. The error text is what clients see.
pub fn validate_tiering(
    defaults: &TopicDefaults,
    overrides: &BTreeMap<String, String>,
    broker_tiering_enabled: bool,
) -> Result<(), String> {
    let get = |name: &str| effective(defaults, overrides, name).and_then(|v| v.trim().parse::<i64>().ok());
    for (local_name, total_name) in [
        ("local.retention.ms", "retention.ms"),
        ("local.retention.bytes", "retention.bytes"),
    ] {
        let (Some(local), Some(total)) = (get(local_name), get(total_name)) else {
            continue;
        };
        let ok = match (local, total) {
            (-2, _) => true,
            (_, -1) => true,
            (-1, _) => false,
            (l, t) => l <= t,
        };
        if !ok {
            return Err(format!(
                "{local_name} ({local}) must be -2 or not larger than {total_name} ({total})"
            ));
        }
    }
    if remote_storage_enabled(defaults, overrides) {
        if !broker_tiering_enabled {
            return Err(
                "remote.storage.enable=true needs tiered storage enabled on the broker (tiering.enabled)".to_string(),
            );
        }
        if effective(defaults, overrides, "cleanup.policy").is_some_and(|v| v.contains("compact")) {
            return Err("remote.storage.enable=true is not supported with cleanup.policy=compact".to_string());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_value_accepts_good_and_names_the_problem() {
        assert!(validate_value("retention.ms", "-1").is_ok());
        assert!(validate_value("cleanup.policy", "compact,delete").is_ok());
        assert!(
            validate_value("retention.ms", "-5")
                .expect_err("below min")
                .contains("retention.ms")
        );
        assert!(validate_value("segment.bytes", "10").is_err());
        assert!(validate_value("segment.bytes", "99999999999").is_err());
        assert!(validate_value("message.timestamp.type", "Now").is_err());
        assert!(
            validate_value("no.such.config", "1")
                .expect_err("unknown")
                .contains("unknown")
        );
    }

    #[test]
    fn describe_reports_default_broker_and_topic_sources() {
        let defaults = TopicDefaults {
            retention_bytes: 1000,
            ..TopicDefaults::default()
        };
        let overrides = BTreeMap::from([("segment.ms".to_string(), "5000".to_string())]);
        let described = describe(&defaults, &overrides);
        assert_eq!(described.len(), TOPIC_CONFIGS.len());
        let get = |n: &str| described.iter().find(|d| d.def.name == n).expect("present").clone();
        assert_eq!(
            (get("segment.ms").value.as_str(), get("segment.ms").source),
            ("5000", Source::DynamicTopic)
        );
        assert_eq!(
            (get("retention.bytes").value.as_str(), get("retention.bytes").source),
            ("1000", Source::StaticBroker)
        );
        assert_eq!(
            (get("retention.ms").value.as_str(), get("retention.ms").source),
            ("604800000", Source::Default)
        );
    }

    #[test]
    fn log_config_maps_kafka_names_and_unlimited_values() {
        let overrides = BTreeMap::from([
            ("retention.ms".to_string(), "-1".to_string()),
            ("segment.bytes".to_string(), "16384".to_string()),
            ("message.timestamp.type".to_string(), "LogAppendTime".to_string()),
        ]);
        let config = log_config(&TopicDefaults::default(), &overrides);
        assert_eq!(config.retention_ms, None);
        assert_eq!(config.segment_bytes, 16384);
        assert_eq!(config.timestamp_type, TimestampType::LogAppendTime);
        assert_eq!(config.retention_bytes, None);
        assert_eq!(config.cleanup_policy, CleanupPolicy::default());
    }

    #[test]
    fn log_config_maps_compaction_configs() {
        let overrides = BTreeMap::from([
            ("cleanup.policy".to_string(), "compact,delete".to_string()),
            ("delete.retention.ms".to_string(), "1000".to_string()),
            ("min.cleanable.dirty.ratio".to_string(), "0.01".to_string()),
            ("min.compaction.lag.ms".to_string(), "5".to_string()),
        ]);
        let config = log_config(&TopicDefaults::default(), &overrides);
        assert_eq!(
            config.cleanup_policy,
            CleanupPolicy {
                delete: true,
                compact: true
            }
        );
        assert_eq!(config.compaction.delete_retention_ms, 1000);
        assert_eq!(config.compaction.min_cleanable_dirty_ratio, 0.01);
        assert_eq!(config.compaction.min_compaction_lag_ms, 5);
        assert_eq!(config.compaction.max_compaction_lag_ms, i64::MAX);
        let compact_only = log_config(
            &TopicDefaults::default(),
            &BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]),
        );
        assert!(compact_only.cleanup_policy.compact && !compact_only.cleanup_policy.delete);
    }

    #[test]
    fn tiering_rules_refuse_local_retention_above_total_and_tiering_without_the_switch() {
        let d = TopicDefaults::default();
        let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        assert!(validate_tiering(&d, &map(&[]), false).is_ok());
        let tiered = map(&[("remote.storage.enable", "true"), ("local.retention.bytes", "1000")]);
        assert!(validate_tiering(&d, &tiered, true).is_ok());
        assert!(
            validate_tiering(&d, &tiered, false)
                .expect_err("switch")
                .contains("tiering.enabled")
        );
        let too_big = map(&[("retention.ms", "1000"), ("local.retention.ms", "2000")]);
        assert!(
            validate_tiering(&d, &too_big, true)
                .expect_err("bigger")
                .contains("local.retention.ms")
        );
        let unlimited_local = map(&[("retention.ms", "1000"), ("local.retention.ms", "-1")]);
        assert!(validate_tiering(&d, &unlimited_local, true).is_err());
        let compact = map(&[("remote.storage.enable", "true"), ("cleanup.policy", "compact")]);
        assert!(validate_tiering(&d, &compact, true).is_err());
        // -2 follows retention.*; explicit values stand; -1 is unlimited.
        let same = map(&[("retention.ms", "5000"), ("retention.bytes", "-1")]);
        assert_eq!(local_retention(&d, &same), (Some(5000), None));
        let own = map(&[("local.retention.ms", "10"), ("local.retention.bytes", "64")]);
        assert_eq!(local_retention(&d, &own), (Some(10), Some(64)));
    }
}
