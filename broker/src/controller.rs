//! Topic administration as metadata changes: create, delete, add partitions, change configs.
//! Each operation validates against the current image, commits metadata records, then brings
//! the hosted partitions in line with the new image. Blocking: call through `Broker::blocking`.

use std::collections::BTreeMap;

use fjord_metadata::control;
use fjord_metadata::placement::Placer;
use fjord_metadata::{BrokerId, ConfigResource, MetadataRecord, TopicId};
use fjord_protocol::kafka_protocol::error::ResponseError;

use crate::broker::Broker;
use crate::cluster::ControllerRequest;
use crate::topic_config;

/// Kafka's limit on topic name length.
const MAX_TOPIC_NAME_LEN: usize = 249;
/// Upper bound on partitions per topic, so one request cannot exhaust file handles.
pub const MAX_PARTITIONS: i32 = 100_000;

/// An admin request refused with a Kafka error code and a message for the client.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: ResponseError,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ResponseError, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
        }
    }
}

/// A topic to create, with client-facing defaults already resolved to -1 where absent.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct NewTopic {
    pub name: String,
    pub num_partitions: i32,
    pub replication_factor: i16,
    /// Manual replica assignments (CreateTopics `assignments`): partition index and broker ids.
    /// When given, the partition count and replication factor come from them.
    pub explicit_assignments: Option<Vec<(i32, Vec<i32>)>>,
    pub configs: BTreeMap<String, String>,
}

/// What was (or, validate-only, would be) created.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CreatedTopic {
    pub topic_id: TopicId,
    pub num_partitions: i32,
    pub replication_factor: i16,
}

/// How one config entry changes (IncrementalAlterConfigs operations).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum ConfigChange {
    Set(String),
    Delete,
    Append(String),
    Subtract(String),
}

/// Kafka's internal topics (`Topic.INTERNAL_TOPICS`): created and written only by their
/// coordinators; clients may read them but never produce to, trim, delete, grow or re-purpose them.
pub const INTERNAL_TOPICS: [&str; 3] = ["__consumer_offsets", "__transaction_state", "__share_group_state"];
/// The KRaft metadata topic's name: never a topic of any kind here (Kafka refuses it too).
pub const CLUSTER_METADATA_TOPIC: &str = "__cluster_metadata";

/// Whether `name` is one of Kafka's internal topics.
pub fn is_internal_topic(name: &str) -> bool {
    INTERNAL_TOPICS.contains(&name)
}

/// Refuses a client's change to an internal topic (`what` says which change, for the message).
fn refuse_internal(name: &str, code: ResponseError, what: &str) -> Result<(), ApiError> {
    if is_internal_topic(name) {
        return Err(ApiError::new(
            code,
            format!("{what} internal topic {name} is not allowed"),
        ));
    }
    Ok(())
}

/// Kafka's collision rule: `.` and `_` map to the same metric name, so `a.b` and `a_b` cannot
/// both exist.
fn collision_key(name: &str) -> String {
    name.replace('.', "_")
}

/// Checks a topic name with Kafka's rules.
pub fn validate_topic_name(name: &str) -> Result<(), ApiError> {
    let invalid = |why: String| Err(ApiError::new(ResponseError::InvalidTopicException, why));
    if name.is_empty() {
        return invalid("topic name is empty".into());
    }
    if name == "." || name == ".." {
        return invalid(format!("topic name {name:?} is not allowed"));
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return invalid(format!(
            "topic name is {} characters, the limit is {MAX_TOPIC_NAME_LEN}",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return invalid(format!(
            "topic name {name:?} contains {c:?}; allowed are ASCII letters, digits, '.', '_' and '-'"
        ));
    }
    Ok(())
}

fn validate_configs(configs: &BTreeMap<String, String>) -> Result<(), ApiError> {
    for (name, value) in configs {
        topic_config::validate_value(name, value).map_err(|m| ApiError::new(ResponseError::InvalidConfig, m))?;
    }
    Ok(())
}

/// The controller's typed refusals as Kafka errors.
impl From<control::Error> for ApiError {
    fn from(error: control::Error) -> ApiError {
        let code = match &error {
            control::Error::InvalidReplicationFactor(_) => ResponseError::InvalidReplicationFactor,
            control::Error::InvalidPartitions(_) => ResponseError::InvalidPartitions,
            control::Error::InvalidReplicaAssignment(_) => ResponseError::InvalidReplicaAssignment,
            control::Error::UnknownTopicOrPartition(_) => ResponseError::UnknownTopicOrPartition,
            control::Error::BrokerIdNotRegistered { .. } => ResponseError::BrokerIdNotRegistered,
            control::Error::StaleBrokerEpoch { .. } => ResponseError::StaleBrokerEpoch,
            control::Error::DuplicateBrokerRegistration { .. } => ResponseError::DuplicateBrokerRegistration,
            control::Error::ElectionNotNeeded { .. } => ResponseError::ElectionNotNeeded,
            control::Error::PreferredLeaderNotAvailable { .. } => ResponseError::PreferredLeaderNotAvailable,
            control::Error::EligibleLeadersNotAvailable { .. } => ResponseError::EligibleLeadersNotAvailable,
            control::Error::NotLeader { .. } => ResponseError::NotLeaderOrFollower,
            control::Error::FencedLeaderEpoch { .. } => ResponseError::FencedLeaderEpoch,
            control::Error::InvalidUpdateVersion { .. } => ResponseError::InvalidUpdateVersion,
            control::Error::IneligibleReplica { .. } => ResponseError::IneligibleReplica,
            _ => ResponseError::UnknownServerError,
        };
        ApiError::new(code, error.to_string())
    }
}

/// Replica assignments from the client's explicit lists (validated) or rack-aware placement over
/// the registered, unfenced brokers, and the partition records for them.
fn place_partitions(
    image: &fjord_metadata::MetadataImage,
    topic_id: TopicId,
    first: i32,
    count: i32,
    replication_factor: i16,
    explicit: Option<&[Vec<BrokerId>]>,
) -> Result<(Vec<Vec<BrokerId>>, Vec<MetadataRecord>), ApiError> {
    let mut placer = Placer::new(image);
    let assignments = control::assign_replicas(image, &mut placer, count, replication_factor, explicit)?;
    let records = control::new_partition_records(image, topic_id, first, &assignments)?;
    Ok((assignments, records))
}

/// Applies one config change to `next`. `list` gives a list config's current items (its override
/// or effective value); `None` marks a key that is not a list config.
fn apply_config_change(
    next: &mut BTreeMap<String, String>,
    key: &str,
    change: &ConfigChange,
    list: Option<Vec<String>>,
) -> Result<(), ApiError> {
    match (change, list) {
        (ConfigChange::Set(v), _) => {
            next.insert(key.to_string(), v.clone());
        }
        (ConfigChange::Delete, _) => {
            next.remove(key);
        }
        (ConfigChange::Append(_) | ConfigChange::Subtract(_), None) => {
            return Err(ApiError::new(
                ResponseError::InvalidConfig,
                format!("{key} is not a list config"),
            ));
        }
        (ConfigChange::Append(v), Some(mut items)) => {
            for item in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                if !items.iter().any(|x| x == item) {
                    items.push(item.to_string());
                }
            }
            next.insert(key.to_string(), items.join(","));
        }
        (ConfigChange::Subtract(v), Some(items)) => {
            let remove: Vec<&str> = v.split(',').map(str::trim).collect();
            let kept: Vec<String> = items.into_iter().filter(|x| !remove.contains(&x.as_str())).collect();
            next.insert(key.to_string(), kept.join(","));
        }
    }
    Ok(())
}

/// Splits a list config value into its items.
fn list_items(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// The config records that turn `current` into `next` for `resource` (set changed keys, remove
/// vanished ones).
fn config_records(
    resource: &ConfigResource,
    current: &BTreeMap<String, String>,
    next: &BTreeMap<String, String>,
) -> Vec<MetadataRecord> {
    let set = next
        .iter()
        .filter(|(k, v)| current.get(*k) != Some(*v))
        .map(|(k, v)| (k, Some(v.clone())));
    let removed = current.keys().filter(|k| !next.contains_key(*k)).map(|k| (k, None));
    set.chain(removed)
        .map(|(k, value)| MetadataRecord::Config {
            resource: resource.clone(),
            name: k.clone(),
            value,
        })
        .collect()
}

/// What a metadata-commit closure returns to refuse a request without writing records.
type Refusal<T> = Result<(Vec<MetadataRecord>, Result<T, ApiError>), fjord_metadata::Error>;

fn refused<T>(error: ApiError) -> Refusal<T> {
    Ok((Vec::new(), Err(error)))
}

fn unknown_topic(name: &str) -> ApiError {
    ApiError::new(
        ResponseError::UnknownTopicOrPartition,
        format!("topic {name} does not exist"),
    )
}

pub(crate) fn metadata_failure(error: fjord_metadata::Error) -> ApiError {
    tracing::error!(%error, "metadata commit failed");
    ApiError::new(
        crate::resources::metadata_error_code(&error),
        format!("metadata commit failed: {error}"),
    )
}

impl Broker {
    /// Per-key checks plus the cross-key rules (tiered storage) of a topic's config overrides.
    fn validate_topic_configs(&self, configs: &BTreeMap<String, String>) -> Result<(), ApiError> {
        validate_configs(configs)?;
        topic_config::validate_tiering(&self.topic_defaults(), configs, self.config.tiering.enabled)
            .map_err(|m| ApiError::new(ResponseError::InvalidConfig, m))
    }

    /// Whether this broker holds a replica of every one of `assignments` (then the new logs are
    /// staged here before the commit, so a full disk refuses the request instead of leaving
    /// partitions without logs).
    fn hosts_all(&self, assignments: &[Vec<BrokerId>]) -> bool {
        let me = BrokerId(self.node_id());
        assignments.iter().all(|replicas| replicas.contains(&me))
    }

    /// What an internal topic's coordinator relies on: compaction only (a delete policy or any
    /// retention would drop committed offsets and group state) and local storage only (Kafka
    /// refuses tiered storage on internal topics).
    fn validate_internal_topic_configs(&self, name: &str, next: &BTreeMap<String, String>) -> Result<(), ApiError> {
        let defaults = self.topic_defaults();
        let effective = |key: &str| topic_config::effective(&defaults, next, key).unwrap_or_default();
        let policy = effective("cleanup.policy");
        if policy.trim() != "compact" {
            return Err(ApiError::new(
                ResponseError::PolicyViolation,
                format!("cleanup.policy of internal topic {name} must stay compact, not {policy:?}"),
            ));
        }
        if effective("remote.storage.enable") == "true" {
            return Err(ApiError::new(
                ResponseError::PolicyViolation,
                format!("tiered storage cannot be enabled on internal topic {name}"),
            ));
        }
        Ok(())
    }

    /// Creates one topic for a client (or only validates it). Idempotence is the caller's
    /// business: an existing name is TOPIC_ALREADY_EXISTS. Internal and reserved names are
    /// refused with INVALID_REQUEST, as Kafka refuses `__cluster_metadata`.
    pub fn create_topic(&self, topic: NewTopic, validate_only: bool) -> Result<CreatedTopic, ApiError> {
        self.controller_call(ControllerRequest::CreateTopic {
            topic,
            validate_only,
            internal: false,
        })
    }

    pub(crate) fn create_topic_local(&self, topic: NewTopic, validate_only: bool) -> Result<CreatedTopic, ApiError> {
        if topic.name == CLUSTER_METADATA_TOPIC || is_internal_topic(&topic.name) {
            return Err(ApiError::new(
                ResponseError::InvalidRequest,
                format!("creation of internal topic {} is prohibited", topic.name),
            ));
        }
        self.create_topic_unchecked(topic, validate_only)
    }

    /// Creates an internal topic on behalf of its coordinator (e.g. `__consumer_offsets`).
    pub fn create_internal_topic(&self, topic: NewTopic) -> Result<CreatedTopic, ApiError> {
        self.controller_call(ControllerRequest::CreateTopic {
            topic,
            validate_only: false,
            internal: true,
        })
    }

    pub(crate) fn create_internal_topic_local(&self, topic: NewTopic) -> Result<CreatedTopic, ApiError> {
        debug_assert!(
            is_internal_topic(&topic.name),
            "{} is not an internal topic",
            topic.name
        );
        self.create_topic_unchecked(topic, false)
    }

    fn create_topic_unchecked(&self, topic: NewTopic, validate_only: bool) -> Result<CreatedTopic, ApiError> {
        validate_topic_name(&topic.name)?;
        if let Some(assignments) = &topic.explicit_assignments {
            // Kafka: assignments replace both counts; giving either as well is a client error.
            if topic.num_partitions != -1 || topic.replication_factor != -1 {
                return Err(ApiError::new(
                    ResponseError::InvalidRequest,
                    "both num_partitions or replication_factor and replica assignments were set; \
                     both cannot be used at the same time",
                ));
            }
            let mut sorted: Vec<i32> = assignments.iter().map(|(p, _)| *p).collect();
            sorted.sort_unstable();
            if sorted.iter().enumerate().any(|(i, p)| i as i32 != *p) {
                return Err(ApiError::new(
                    ResponseError::InvalidReplicaAssignment,
                    "partitions of a manual assignment must be 0-based and consecutive",
                ));
            }
        }
        // Explicit assignments in partition order, as broker ids.
        let explicit: Option<Vec<Vec<BrokerId>>> = topic.explicit_assignments.as_ref().map(|assignments| {
            let mut sorted = assignments.clone();
            sorted.sort_by_key(|(p, _)| *p);
            sorted
                .into_iter()
                .map(|(_, replicas)| replicas.into_iter().map(BrokerId).collect())
                .collect()
        });
        let num_partitions = match &topic.explicit_assignments {
            Some(assignments) => i32::try_from(assignments.len()).unwrap_or(i32::MAX),
            None if topic.num_partitions == -1 => self.config.topics.num_partitions,
            None => topic.num_partitions,
        };
        if !(1..=MAX_PARTITIONS).contains(&num_partitions) {
            return Err(ApiError::new(
                ResponseError::InvalidPartitions,
                format!("number of partitions must be between 1 and {MAX_PARTITIONS}, got {num_partitions}"),
            ));
        }
        let replication_factor = match &topic.explicit_assignments {
            Some(assignments) => assignments
                .first()
                .map_or(1, |(_, r)| i16::try_from(r.len()).unwrap_or(i16::MAX)),
            None if topic.replication_factor == -1 => self.config.topics.replication_factor,
            None => topic.replication_factor,
        };
        if replication_factor < 1 {
            return Err(ApiError::new(
                ResponseError::InvalidReplicationFactor,
                format!("replication factor must be larger than 0, got {replication_factor}"),
            ));
        }
        self.validate_topic_configs(&topic.configs)?;
        let staged = crate::resources::Staged::default();
        let (image, created) = self
            .metadata
            .commit_with(|image| {
                if image.topic(&topic.name).is_some() {
                    return refused(ApiError::new(
                        ResponseError::TopicAlreadyExists,
                        format!("topic {} already exists", topic.name),
                    ));
                }
                let key = collision_key(&topic.name);
                if let Some(other) = image.topics().find(|t| collision_key(&t.name) == key) {
                    return refused(ApiError::new(
                        ResponseError::InvalidTopicException,
                        format!(
                            "topic {} collides with existing topic {} ('.' and '_' are the same in metric names)",
                            topic.name, other.name
                        ),
                    ));
                }
                if let Err(e) = self.check_partition_limit(image, num_partitions) {
                    return refused(e);
                }
                let topic_id = TopicId::random();
                let (assignments, partition_records) = match place_partitions(
                    image,
                    topic_id,
                    0,
                    num_partitions,
                    replication_factor,
                    explicit.as_deref(),
                ) {
                    Ok(placed) => placed,
                    Err(e) => return refused(e),
                };
                let created = CreatedTopic {
                    topic_id,
                    num_partitions,
                    replication_factor,
                };
                if validate_only {
                    return Ok((Vec::new(), Ok(created)));
                }
                let partitions = 0..num_partitions;
                if self.hosts_all(&assignments)
                    && let Err(e) =
                        self.stage_new_partitions(&staged, &topic.name, topic_id, &topic.configs, partitions)
                {
                    return refused(e);
                }
                let mut records = vec![MetadataRecord::Topic {
                    name: topic.name.clone(),
                    topic_id,
                }];
                records.extend(partition_records);
                records.extend(topic.configs.iter().map(|(k, v)| MetadataRecord::Config {
                    resource: ConfigResource::Topic(topic.name.clone()),
                    name: k.clone(),
                    value: Some(v.clone()),
                }));
                Ok((records, Ok(created)))
            })
            .map_err(|e| self.commit_failed(&staged, &topic.name, e))?;
        let created = created?;
        if !validate_only {
            self.sync_partitions(image)?;
            tracing::info!(topic = %topic.name, topic_id = %created.topic_id, partitions = num_partitions, "created topic");
        }
        Ok(created)
    }

    /// Deletes a topic by name, returning its id. Internal topics are refused.
    pub fn delete_topic(&self, name: &str) -> Result<TopicId, ApiError> {
        self.controller_call(ControllerRequest::DeleteTopic { name: name.to_string() })
    }

    pub(crate) fn delete_topic_local(&self, name: &str) -> Result<TopicId, ApiError> {
        refuse_internal(name, ResponseError::InvalidTopicException, "deleting")?;
        let (image, deleted) = self
            .metadata
            .commit_with(|image| match image.topic(name) {
                None => refused(unknown_topic(name)),
                Some(t) => Ok((vec![MetadataRecord::RemoveTopic { topic_id: t.id }], Ok(t.id))),
            })
            .map_err(metadata_failure)?;
        let id = deleted?;
        self.sync_partitions(image)?;
        tracing::info!(topic = %name, topic_id = %id, "deleted topic");
        Ok(id)
    }

    /// Grows a topic to `count` partitions (partitions never shrink).
    pub fn create_partitions(
        &self,
        name: &str,
        count: i32,
        assignments: Option<&[Vec<i32>]>,
        validate_only: bool,
    ) -> Result<(), ApiError> {
        self.controller_call(ControllerRequest::CreatePartitions {
            name: name.to_string(),
            count,
            assignments: assignments.map(<[Vec<i32>]>::to_vec),
            validate_only,
        })
    }

    pub(crate) fn create_partitions_local(
        &self,
        name: &str,
        count: i32,
        assignments: Option<&[Vec<i32>]>,
        validate_only: bool,
    ) -> Result<(), ApiError> {
        // A coordinator maps keys to partitions by count: growing an internal topic would lose
        // every group's (or transaction's) state.
        refuse_internal(name, ResponseError::InvalidRequest, "adding partitions to")?;
        let explicit: Option<Vec<Vec<BrokerId>>> =
            assignments.map(|a| a.iter().map(|r| r.iter().copied().map(BrokerId).collect()).collect());
        let staged = crate::resources::Staged::default();
        let (image, result) = self
            .metadata
            .commit_with(|image| {
                let Some(t) = image.topic(name) else {
                    return refused(unknown_topic(name));
                };
                let current = t.partitions.len() as i32;
                if count <= current {
                    let message = if count == current {
                        format!("topic {name} already has {current} partitions")
                    } else {
                        format!(
                            "topic {name} has {current} partitions; partitions can only be increased, not to {count}"
                        )
                    };
                    return refused(ApiError::new(ResponseError::InvalidPartitions, message));
                }
                if count > MAX_PARTITIONS {
                    return refused(ApiError::new(
                        ResponseError::InvalidPartitions,
                        format!("at most {MAX_PARTITIONS} partitions"),
                    ));
                }
                if let Some(assignments) = assignments {
                    if assignments.len() as i32 != count - current {
                        return refused(ApiError::new(
                            ResponseError::InvalidReplicaAssignment,
                            format!(
                                "increasing the number of partitions by {} but {} assignments provided",
                                count - current,
                                assignments.len()
                            ),
                        ));
                    }
                }
                if let Err(e) = self.check_partition_limit(image, count - current) {
                    return refused(e);
                }
                // New partitions keep the topic's replication factor (Kafka).
                let replication_factor = t.partitions.first().map_or(1, |p| p.replicas.len() as i16);
                let (placed, records) = match place_partitions(
                    image,
                    t.id,
                    current,
                    count - current,
                    replication_factor,
                    explicit.as_deref(),
                ) {
                    Ok(placed) => placed,
                    Err(e) => return refused(e),
                };
                if validate_only {
                    return Ok((Vec::new(), Ok(())));
                }
                if self.hosts_all(&placed)
                    && let Err(e) = self.stage_new_partitions(&staged, name, t.id, &t.configs, current..count)
                {
                    return refused(e);
                }
                Ok((records, Ok(())))
            })
            .map_err(|e| self.commit_failed(&staged, name, e))?;
        result?;
        if !validate_only {
            self.sync_partitions(image)?;
        }
        Ok(())
    }

    /// Changes a topic's configs. `replace_all` is AlterConfigs (the given set becomes the whole
    /// set); otherwise changes apply one by one (IncrementalAlterConfigs).
    pub fn alter_topic_configs(
        &self,
        name: &str,
        changes: Vec<(String, ConfigChange)>,
        replace_all: bool,
        validate_only: bool,
    ) -> Result<(), ApiError> {
        self.controller_call(ControllerRequest::AlterTopicConfigs {
            name: name.to_string(),
            changes,
            replace_all,
            validate_only,
        })
    }

    pub(crate) fn alter_topic_configs_local(
        &self,
        name: &str,
        changes: Vec<(String, ConfigChange)>,
        replace_all: bool,
        validate_only: bool,
    ) -> Result<(), ApiError> {
        let (image, result) =
            self.metadata
                .commit_with(|image| {
                    let Some(t) = image.topic(name) else {
                        return refused(unknown_topic(name));
                    };
                    let defaults = topic_config::with_dynamic(&self.config.topics, image, BrokerId(self.node_id()));
                    let mut next = if replace_all {
                        BTreeMap::new()
                    } else {
                        t.configs.clone()
                    };
                    for (key, change) in &changes {
                        let Some(def) = topic_config::find(key) else {
                            return refused(ApiError::new(
                                ResponseError::InvalidConfig,
                                format!("unknown topic config {key}"),
                            ));
                        };
                        let list = matches!(def.kind, topic_config::Kind::ListOf(_)).then(|| {
                            list_items(&next.get(key).cloned().unwrap_or_else(|| {
                                topic_config::effective(&defaults, &t.configs, key).unwrap_or_default()
                            }))
                        });
                        if let Err(e) = apply_config_change(&mut next, key, change, list) {
                            return refused(e);
                        }
                    }
                    if let Err(e) = self.validate_topic_configs(&next) {
                        return refused(e);
                    }
                    if is_internal_topic(name)
                        && let Err(e) = self.validate_internal_topic_configs(name, &next)
                    {
                        return refused(e);
                    }
                    if validate_only {
                        return Ok((Vec::new(), Ok(())));
                    }
                    let records = config_records(&ConfigResource::Topic(name.to_string()), &t.configs, &next);
                    Ok((records, Ok(())))
                })
                .map_err(metadata_failure)?;
        result?;
        if !validate_only {
            self.sync_partitions(image)?;
        }
        Ok(())
    }

    /// Changes dynamic broker configs (AlterConfigs / IncrementalAlterConfigs on a BROKER
    /// resource): `broker` is one broker's id, or `None` for the cluster-wide default (Kafka's
    /// resource name ""). Only the topic configs' broker synonyms (`log.retention.ms`,
    /// `log.segment.bytes`, `log.cleanup.policy`, `message.max.bytes`, ...) are dynamic, as in
    /// Kafka; every topic without its own override follows the new value at once.
    pub fn alter_broker_configs(
        &self,
        broker: Option<BrokerId>,
        changes: Vec<(String, ConfigChange)>,
        replace_all: bool,
        validate_only: bool,
    ) -> Result<(), ApiError> {
        self.controller_call(ControllerRequest::AlterBrokerConfigs {
            broker: broker.map(|b| b.0),
            changes,
            replace_all,
            validate_only,
        })
    }

    pub(crate) fn alter_broker_configs_local(
        &self,
        broker: Option<BrokerId>,
        changes: Vec<(String, ConfigChange)>,
        replace_all: bool,
        validate_only: bool,
    ) -> Result<(), ApiError> {
        let (image, result) = self
            .metadata
            .commit_with(|image| {
                let current = match broker {
                    Some(id) => image.broker_configs(id).cloned().unwrap_or_default(),
                    None => image.broker_default_configs().clone(),
                };
                let mut next = if replace_all { BTreeMap::new() } else { current.clone() };
                for (key, change) in &changes {
                    let Some(def) = topic_config::for_broker_key(key) else {
                        return refused(ApiError::new(
                            ResponseError::InvalidConfig,
                            format!("cannot update {key} dynamically: set it in the broker's config file"),
                        ));
                    };
                    let list = matches!(def.kind, topic_config::Kind::ListOf(_))
                        .then(|| next.get(key).map(|v| list_items(v)).unwrap_or_default());
                    if let Err(e) = apply_config_change(&mut next, key, change, list) {
                        return refused(e);
                    }
                }
                for (key, value) in &next {
                    let def = topic_config::for_broker_key(key).expect("checked above");
                    if let Err(m) = topic_config::validate_value(def.name, value) {
                        return refused(ApiError::new(ResponseError::InvalidConfig, m));
                    }
                }
                if validate_only {
                    return Ok((Vec::new(), Ok(())));
                }
                let resource = broker.map_or(ConfigResource::BrokerDefault, ConfigResource::Broker);
                let records = config_records(&resource, &current, &next);
                Ok((records, Ok(())))
            })
            .map_err(metadata_failure)?;
        result?;
        if !validate_only {
            self.sync_partitions(image)?;
        }
        Ok(())
    }

    /// Changes a consumer group's dynamic configs (IncrementalAlterConfigs on a GROUP resource:
    /// set and delete only; the group need not exist yet, as in Kafka).
    pub fn alter_group_configs(
        &self,
        group: &str,
        changes: Vec<(String, ConfigChange)>,
        validate_only: bool,
    ) -> Result<(), ApiError> {
        self.controller_call(ControllerRequest::AlterGroupConfigs {
            group: group.to_string(),
            changes,
            validate_only,
        })
    }

    pub(crate) fn alter_group_configs_local(
        &self,
        group: &str,
        changes: Vec<(String, ConfigChange)>,
        validate_only: bool,
    ) -> Result<(), ApiError> {
        if group.is_empty() {
            return Err(ApiError::new(ResponseError::InvalidRequest, "group id is empty"));
        }
        let defaults = &self.config.groups;
        self.metadata
            .commit_with(|image| {
                let current = image.group_configs(group).cloned().unwrap_or_default();
                let mut next = current.clone();
                for (key, change) in &changes {
                    if let Err(e) = apply_config_change(&mut next, key, change, None) {
                        return refused(e);
                    }
                }
                if let Err(m) = crate::group::configs::validate(defaults, &next) {
                    return refused(ApiError::new(ResponseError::InvalidConfig, m));
                }
                if validate_only {
                    return Ok((Vec::new(), Ok(())));
                }
                let records = config_records(&ConfigResource::Group(group.to_string()), &current, &next);
                Ok((records, Ok(())))
            })
            .map_err(metadata_failure)?
            .1
    }

    /// Creates the given topics with broker defaults if auto-creation is on (Metadata, Produce).
    /// Names that are invalid or already exist are skipped.
    pub fn auto_create_topics(&self, names: &[String]) {
        for name in names {
            if self.image().topic(name).is_some()
                || validate_topic_name(name).is_err()
                || is_internal_topic(name)
                || name == CLUSTER_METADATA_TOPIC
            {
                continue;
            }
            let topic = NewTopic {
                name: name.clone(),
                num_partitions: -1,
                replication_factor: -1,
                ..NewTopic::default()
            };
            match self.create_topic(topic, false) {
                Ok(_)
                | Err(ApiError {
                    code: ResponseError::TopicAlreadyExists,
                    ..
                }) => {}
                Err(error) => tracing::warn!(topic = %name, message = %error.message, "auto-create failed"),
            }
        }
    }

    /// Reserves the next block of `size` producer ids for this broker with a durable metadata
    /// record, so no id is handed out twice, even across restarts (Kafka's ProducerIdsRecord).
    pub fn allocate_producer_id_block(&self, size: i64) -> Result<std::ops::Range<i64>, ApiError> {
        self.controller_call(ControllerRequest::AllocateProducerIds {
            broker: self.node_id(),
            size,
        })
    }

    pub(crate) fn allocate_producer_id_block_local(
        &self,
        broker: BrokerId,
        size: i64,
    ) -> Result<std::ops::Range<i64>, ApiError> {
        let node = broker.0;
        let (_, block) = self
            .metadata
            .commit_with(|image| {
                let start = image.next_producer_id();
                let Some(end) = start.checked_add(size) else {
                    return refused(ApiError::new(
                        ResponseError::UnknownServerError,
                        "producer ids are exhausted",
                    ));
                };
                let record = MetadataRecord::ProducerIds {
                    broker_id: BrokerId(node),
                    next_producer_id: end,
                };
                Ok((vec![record], Ok(start..end)))
            })
            .map_err(metadata_failure)?;
        let block = block?;
        tracing::info!(start = block.start, end = block.end, "allocated producer id block");
        Ok(block)
    }

    /// Waits until the committed `image` is published on this broker (partitions opened,
    /// reconfigured or deleted), so the client reads its own write.
    fn sync_partitions(&self, image: std::sync::Arc<fjord_metadata::MetadataImage>) -> Result<(), ApiError> {
        self.await_published(image).map_err(|error| {
            ApiError::new(
                ResponseError::KafkaStorageError,
                format!("applying metadata failed: {error}"),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_topic_name_follows_kafka_rules() {
        assert!(validate_topic_name("orders.v1_a-b").is_ok());
        for bad in ["", ".", "..", "a/b", "spaces here", "ümlaut"] {
            let err = validate_topic_name(bad).expect_err(bad);
            assert_eq!(err.code, ResponseError::InvalidTopicException);
        }
        assert!(validate_topic_name(&"a".repeat(249)).is_ok());
        assert!(validate_topic_name(&"a".repeat(250)).is_err());
    }
}
