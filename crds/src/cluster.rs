//! The `Cluster` resource: a Fjord broker fleet. The operator renders one StatefulSet per rack,
//! pinned to the rack's nodes by node affinity and told its rack by an environment variable.

// KubeSchema copies each struct into a private scope to build its schema, which trips
// unreachable_pub on the copies.
#![allow(unreachable_pub)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Node label that pins a rack when `rackLabelKey` is absent.
pub const DEFAULT_RACK_LABEL_KEY: &str = "topology.kubernetes.io/zone";
/// Broker count when `brokers` is absent.
pub const DEFAULT_BROKERS: i32 = 3;
/// Volume size when `storage.size` is absent.
pub const DEFAULT_STORAGE_SIZE: &str = "10Gi";

/// A Fjord cluster: how many brokers, in which racks, with what storage, object store and config.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[kube(
    group = "fjord.dev",
    version = "v1alpha1",
    kind = "Cluster",
    namespaced,
    status = "ClusterStatus",
    shortname = "fjc",
    category = "fjord",
    derive = "PartialEq",
    doc = "A Fjord cluster: brokers spread over racks, one StatefulSet per rack.",
    scale(
        spec_replicas_path = ".spec.brokers",
        status_replicas_path = ".status.brokers",
        label_selector_path = ".status.labelSelector"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].status"#
    ),
    printcolumn(name = "Brokers", type_ = "integer", json_path = ".spec.brokers"),
    printcolumn(name = "Ready Brokers", type_ = "integer", json_path = ".status.readyBrokers"),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="Ready")].reason"#,
        priority = 1
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    // The name names the cluster's Services (`<name>`, `<name>-brokers`): a DNS-1035 label.
    validation = Rule::new("self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$') && size(self.metadata.name) <= 55")
        .message("the Cluster name names its Services, so it must be a DNS-1035 label of at most 55 characters: lowercase letters, digits and '-', starting with a letter and ending with a letter or digit")
        .field_path(".metadata.name")
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterSpec {
    /// Broker container image. Absent: the image matching the operator's version
    /// (`ghcr.io/fjord-streaming/fjord-broker:<operator version>`, built by scripts/images.sh).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Number of brokers, spread evenly over `racks` (the least-filled rack gets the next one).
    /// Absent: 3. Driven by `kubectl scale` and autoscalers through the scale subresource;
    /// lowering it drains the brokers that go before their pods are removed.
    #[serde(default = "default_brokers")]
    #[schemars(range(min = 0, max = 1000))]
    pub brokers: i32,
    /// Racks (usually zones) to spread brokers over; each gets its own StatefulSet pinned to nodes
    /// whose `rackLabelKey` label has the rack's value. Absent or empty: one StatefulSet with no
    /// node affinity, and brokers report no rack.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    #[x_kube(validation = Rule::new("size(self) <= 16").message("at most 16 racks"))]
    pub racks: Vec<RackSpec>,
    /// Node label whose value selects a rack's nodes. Absent: `topology.kubernetes.io/zone`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rack_label_key: Option<String>,
    /// Persistent volume for each broker's data. Absent: 10Gi from the default storage class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageSpec>,
    /// Object store for tiered storage. Absent: brokers keep all data on local volumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_store: Option<ObjectStoreSpec>,
    /// Broker config overrides as dotted keys of the broker's TOML config (e.g.
    /// `storage.flush_interval: 2s`, `topics.num_partitions: "6"`); each value is read as TOML
    /// and falls back to a string. Keys the operator owns (node_id, rack, listen addresses,
    /// data dir) are refused in status. Absent: broker defaults.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub config: BTreeMap<String, String>,
    /// CPU and memory for each broker container. Absent: no requests or limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Ports the brokers listen on. Absent: Kafka 9092, admin gRPC 9645, HTTP metrics 9644.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listeners: Option<ListenersSpec>,
    /// Stop reconciling this cluster: nothing is applied or deleted, status shows
    /// `Ready` reason `ReconciliationPaused`. Absent: false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
}

fn default_brokers() -> i32 {
    DEFAULT_BROKERS
}

/// One rack (failure domain).
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RackSpec {
    /// Rack name: the broker's rack id and part of the StatefulSet name, so a DNS label
    /// (lowercase letters, digits, '-'; at most 40 characters). Required.
    #[schemars(length(min = 1, max = 40), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
    /// Value of the node label (`rackLabelKey`) that selects this rack's nodes.
    /// Absent: the rack name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_label_value: Option<String>,
}

/// Broker data volumes.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StorageSpec {
    /// Volume size as a Kubernetes quantity (e.g. `100Gi`). Absent: 10Gi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"))]
    pub size: Option<String>,
    /// StorageClass of the volumes. Absent: the cluster's default StorageClass.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
}

/// Object store settings handed to every broker.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectStoreSpec {
    /// Bucket URL, `s3://bucket/prefix` (or `file:///path` for tests). Required.
    #[schemars(regex(pattern = r"^(s3|file|memory)://.+"))]
    pub url: String,
    /// S3 endpoint for S3-compatible stores. Absent: AWS's endpoint for `region`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Region. Absent: the store's default (`us-east-1` for most S3-compatible stores).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Secret holding the access key pair. Absent: brokers use their ambient identity
    /// (e.g. IRSA / workload identity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<CredentialsSecretRef>,
    // How long uploaded data stays on local disk is a topic config (`local.retention.ms`,
    // `local.retention.bytes`, e.g. in a Topic's spec.config); the broker has no cluster-wide
    // default for it, so the Cluster has no field for it either.
}

/// A Secret in the Cluster's namespace with an S3 access key pair.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsSecretRef {
    /// Secret name. Required.
    pub name: String,
    /// Key of the access key id. Absent: `AWS_ACCESS_KEY_ID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key_id_key: Option<String>,
    /// Key of the secret access key. Absent: `AWS_SECRET_ACCESS_KEY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_access_key_key: Option<String>,
}

/// Listener ports.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ListenersSpec {
    /// Kafka protocol port. Absent: 9092.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub kafka: Option<i32>,
    /// Admin gRPC port (used by the operator). Absent: 9645.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub admin: Option<i32>,
    /// HTTP port for /metrics and /health. Absent: 9644.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub http: Option<i32>,
}

/// What the operator observed and did.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, Progressing and Degraded, each with a reason and message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Brokers that currently exist (StatefulSet replicas summed); the scale subresource's
    /// status replicas.
    #[serde(default)]
    pub brokers: i32,
    /// Brokers whose pods are ready.
    #[serde(default)]
    pub ready_brokers: i32,
    /// Label selector of the broker pods, for the scale subresource (HPA, KEDA, VPA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<String>,
    /// Per-rack broker counts and ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub racks: Vec<RackStatus>,
    /// A scale-in in progress: which brokers are being drained and how far it got.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<DrainStatus>,
    /// Hash of the rendered broker config the pods run with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
}

/// One rack's brokers.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RackStatus {
    pub name: String,
    /// StatefulSet rendering this rack.
    pub stateful_set: String,
    /// Brokers (replicas) in the rack now.
    pub brokers: i32,
    /// Ready brokers in the rack.
    pub ready_brokers: i32,
    /// Broker ids of the rack's pods, by ordinal.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub broker_ids: Vec<i32>,
}

/// Drain progress of brokers that will be removed.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DrainStatus {
    /// Broker ids being drained.
    pub broker_ids: Vec<i32>,
    /// `InProgress`, `Blocked`, `Done`, or `Cancelling` (only drains of brokers that stay are
    /// left to cancel).
    pub state: String,
    /// What the drain is waiting for.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Brokers that stay after all (the scale-in was reverted) whose drain the operator still has
    /// to cancel through their admin API; retried until it succeeds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cancelling: Vec<i32>,
}

impl ClusterSpec {
    /// The node label key racks are pinned by.
    pub fn rack_label_key(&self) -> &str {
        self.rack_label_key.as_deref().unwrap_or(DEFAULT_RACK_LABEL_KEY)
    }
}
