//! The `Topic` resource: a Kafka topic on a Fjord cluster, created, altered and deleted through
//! the cluster's admin API.

// KubeSchema copies each struct into a private scope to build its schema, which trips
// unreachable_pub on the copies.
#![allow(unreachable_pub)]

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// A Kafka topic on a Fjord cluster.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[kube(
    group = "fjord.dev",
    version = "v1alpha1",
    kind = "Topic",
    namespaced,
    status = "TopicStatus",
    shortname = "fjt",
    category = "fjord",
    derive = "PartialEq",
    doc = "A Kafka topic on a Fjord cluster, managed through the cluster's admin API.",
    printcolumn(name = "Cluster", type_ = "string", json_path = ".spec.clusterRef.name"),
    printcolumn(name = "Partitions", type_ = "integer", json_path = ".spec.partitions"),
    printcolumn(
        name = "Replication Factor",
        type_ = "integer",
        json_path = ".spec.replicationFactor",
        priority = 1
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].reason"#,
        priority = 1
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    // The Kafka topic a Topic manages never changes: adding, changing or removing spec.topicName
    // is refused unless the effective name stays the same (metadata.name is immutable itself).
    validation = Rule::new("(has(self.spec.topicName) ? self.spec.topicName : self.metadata.name) == (has(oldSelf.spec.topicName) ? oldSelf.spec.topicName : oldSelf.metadata.name)")
        .message("topicName cannot be changed: the Kafka topic name (spec.topicName, else metadata.name) is fixed when the Topic is created")
        .field_path(".spec.topicName")
)]
#[x_kube(validation = Rule::new("!has(oldSelf.partitions) || (has(self.partitions) && self.partitions >= oldSelf.partitions)").message("partitions can only be increased"))]
#[serde(rename_all = "camelCase")]
pub struct TopicSpec {
    /// The Cluster (same namespace) that holds the topic. Required and immutable.
    #[x_kube(validation = Rule::new("self == oldSelf").message("clusterRef cannot be changed"))]
    pub cluster_ref: ClusterRef,
    /// Kafka topic name, for names that are not valid Kubernetes names. Absent: metadata.name.
    /// Fixed at creation: it cannot be added, changed or removed later if that would change the
    /// Kafka topic name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 249), regex(pattern = r"^[a-zA-Z0-9._-]+$"))]
    pub topic_name: Option<String>,
    /// Partition count. Only grows: the API server refuses a lower value, and if the live topic
    /// has more partitions than this the topic is `Ready=False` with reason `NotSupported` and
    /// nothing changes. Absent: the broker default at creation, then left alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub partitions: Option<i32>,
    /// Replicas per partition. Set at creation only (a different live value is reported as
    /// `NotSupported`). Absent: the broker default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 16))]
    pub replication_factor: Option<i32>,
    /// Topic configs (Kafka names, e.g. `retention.ms`). A key with a value is enforced: the
    /// operator sets it and reverts drift. A key set to `null` is not managed here (another tool
    /// may own it). Keys absent from the map are left alone. Absent: no configs managed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, Option<String>>,
    /// What deleting this resource does to the Kafka topic: `Delete` deletes it, `Retain` keeps
    /// it. Absent: Delete.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// Stop reconciling this topic: nothing is changed on the cluster, status shows `Ready`
    /// reason `ReconciliationPaused`. Deleting the resource still honours `deletionPolicy`.
    /// Absent: false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
}

/// A reference to a Cluster in the Topic's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterRef {
    /// Cluster name. Required.
    #[schemars(length(min = 1))]
    pub name: String,
}

/// What happens to the Kafka topic when the Topic resource is deleted.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DeletionPolicy {
    /// Delete the Kafka topic and its data.
    #[default]
    Delete,
    /// Keep the Kafka topic; only the resource goes.
    Retain,
}

/// What the operator observed and did.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TopicStatus {
    /// `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// One condition, Ready: True when the Kafka topic matches the spec; otherwise its reason says
    /// why (NotSupported, Rejected, TopicNameChanged, ClusterNotFound, AdminApiUnavailable,
    /// AdminApiError, ReconciliationPaused, InvalidObject).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The Kafka topic name in use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_name: Option<String>,
    /// Kafka topic id; changes only if the topic is recreated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic_id: Option<String>,
    /// Live partition count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<i32>,
    /// Live replication factor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_factor: Option<i32>,
    /// Live configs set on the topic (topic-level overrides), so drift is visible.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub topic_configuration: BTreeMap<String, String>,
}

impl Topic {
    /// The Kafka topic name: `spec.topicName`, else `metadata.name`.
    pub fn kafka_name(&self) -> String {
        self.spec
            .topic_name
            .clone()
            .or_else(|| self.metadata.name.clone())
            .unwrap_or_default()
    }
}
