//! Pure validation of a Cluster spec into the model the builders render. Problems are all
//! reported at once, as a `Degraded` condition with reason `InvalidSpec`, never as a crash.

use std::collections::BTreeMap;

use fjord_crds::cluster::{DEFAULT_STORAGE_SIZE, ObjectStoreSpec};
use fjord_crds::{Cluster, ClusterSpec};
use k8s_openapi::api::core::v1::ResourceRequirements;

/// Image used when `spec.image` is absent.
pub fn default_image() -> String {
    format!("ghcr.io/fjord-streaming/fjord-broker:{}", env!("CARGO_PKG_VERSION"))
}

/// Broker config keys the operator sets itself; overriding them would break the pods.
pub const OPERATOR_OWNED_KEYS: &[&str] = &[
    "node_id",
    "rack",
    "network.listen",
    "network.advertised_listener",
    "http.listen",
    "admin.listen",
    "storage.data_dir",
    "tiering.enabled",
    "tiering.url",
];

/// Top-level sections of the broker config (`broker/config/broker.example.toml`); a key outside
/// them would make every broker refuse to start.
pub const BROKER_CONFIG_SECTIONS: &[&str] = &[
    "network",
    "http",
    "admin",
    "storage",
    "topics",
    "groups",
    "producers",
    "cleaner",
    "tiering",
];

/// Longest Cluster name: `<name>-brokers`, the headless Service, is a DNS label (63 characters).
pub const MAX_CLUSTER_NAME: usize = 63 - "-brokers".len();

/// Longest StatefulSet name: pod names add `-<ordinal>` and the controller-revision-hash label
/// must stay within 63 characters.
const MAX_STATEFULSET_NAME: usize = 52;

/// Listener ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub kafka: i32,
    pub admin: i32,
    pub http: i32,
}

/// One validated rack: name (empty when the cluster has no racks) and node label value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidRack {
    pub name: String,
    pub node_label_value: Option<String>,
}

/// A Cluster spec that passed validation, with every default resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidCluster {
    pub name: String,
    pub namespace: String,
    pub image: String,
    pub brokers: i32,
    pub racks: Vec<ValidRack>,
    pub rack_label_key: String,
    pub storage_size: String,
    pub storage_class: Option<String>,
    pub ports: Ports,
    /// Broker config overrides (dotted key -> raw value), operator-owned keys excluded.
    pub config: BTreeMap<String, String>,
    pub object_store: Option<ObjectStoreSpec>,
    pub resources: Option<ResourceRequirements>,
}

/// The headless Service of cluster `name`: per-pod DNS names and the admin API.
pub fn headless_service_name(cluster: &str) -> String {
    format!("{cluster}-brokers")
}

impl ValidCluster {
    /// StatefulSet name of a rack.
    pub fn statefulset_name(&self, rack: &str) -> String {
        statefulset_name(&self.name, rack)
    }

    /// Headless Service giving each broker pod a stable DNS name.
    pub fn headless_service_name(&self) -> String {
        headless_service_name(&self.name)
    }

    /// Client Service (Kafka bootstrap and HTTP; not the admin API).
    pub fn client_service_name(&self) -> String {
        self.name.clone()
    }

    pub fn config_map_name(&self) -> String {
        format!("{}-config", self.name)
    }

    pub fn service_account_name(&self) -> String {
        format!("{}-broker", self.name)
    }
}

/// StatefulSet name for a rack of a cluster (`<cluster>-broker` without racks).
pub fn statefulset_name(cluster: &str, rack: &str) -> String {
    if rack.is_empty() {
        format!("{cluster}-broker")
    } else {
        format!("{cluster}-{rack}")
    }
}

/// Validates the spec; every problem found is returned.
pub fn validate(cluster: &Cluster) -> Result<ValidCluster, Vec<String>> {
    let mut problems = Vec::new();
    let name = cluster.metadata.name.clone().unwrap_or_default();
    let namespace = cluster.metadata.namespace.clone().unwrap_or_default();
    if namespace.is_empty() {
        problems.push("the Cluster has no namespace".to_string());
    }
    // The name is the client Service's name and the prefix of the headless one: both must be
    // DNS-1035 labels, or every Service apply fails.
    if !is_dns_1035_label(&name) || name.len() > MAX_CLUSTER_NAME {
        problems.push(format!(
            "Cluster name {name:?} cannot name its Services: it must be at most {MAX_CLUSTER_NAME} \
             lowercase letters, digits and '-', start with a letter and end with a letter or digit \
             (a DNS-1035 label); create the Cluster under another name"
        ));
    }
    let spec: &ClusterSpec = &cluster.spec;
    if spec.brokers < 0 {
        problems.push(format!("brokers must be >= 0, got {}", spec.brokers));
    }
    let mut racks = Vec::new();
    for r in &spec.racks {
        if racks.iter().any(|v: &ValidRack| v.name == r.name) {
            problems.push(format!("rack {} is listed twice", r.name));
            continue;
        }
        if !is_dns_label(&r.name) {
            problems.push(format!(
                "rack name {:?} must be a DNS label (lowercase letters, digits, '-')",
                r.name
            ));
        }
        racks.push(ValidRack {
            name: r.name.clone(),
            node_label_value: Some(r.node_label_value.clone().unwrap_or_else(|| r.name.clone())),
        });
    }
    if racks.is_empty() {
        racks.push(ValidRack {
            name: String::new(),
            node_label_value: None,
        });
    }
    for r in &racks {
        let sts = statefulset_name(&name, &r.name);
        if sts.len() > MAX_STATEFULSET_NAME {
            problems.push(format!(
                "StatefulSet name {sts} is {} characters, the limit is {MAX_STATEFULSET_NAME}: shorten the cluster or rack name",
                sts.len()
            ));
        }
    }
    let mut config = BTreeMap::new();
    for (key, value) in &spec.config {
        if OPERATOR_OWNED_KEYS.contains(&key.as_str()) {
            problems.push(format!(
                "config key {key} is set by the operator and cannot be overridden"
            ));
            continue;
        }
        match key.split_once('.') {
            Some((section, rest)) if BROKER_CONFIG_SECTIONS.contains(&section) && !rest.is_empty() => {
                config.insert(key.clone(), value.clone());
            }
            _ => problems.push(format!(
                "config key {key} is not a broker config key (expected <section>.<key> with section one of {})",
                BROKER_CONFIG_SECTIONS.join(", ")
            )),
        }
    }
    let listeners = spec.listeners.clone().unwrap_or(fjord_crds::cluster::ListenersSpec {
        kafka: None,
        admin: None,
        http: None,
    });
    let ports = Ports {
        kafka: listeners.kafka.unwrap_or(9092),
        admin: listeners.admin.unwrap_or(9645),
        http: listeners.http.unwrap_or(9644),
    };
    for (what, port) in [("kafka", ports.kafka), ("admin", ports.admin), ("http", ports.http)] {
        if !(1..=65535).contains(&port) {
            problems.push(format!("listeners.{what} port {port} is not between 1 and 65535"));
        }
    }
    if ports.kafka == ports.admin || ports.kafka == ports.http || ports.admin == ports.http {
        problems.push(format!(
            "listener ports must differ (kafka {}, admin {}, http {})",
            ports.kafka, ports.admin, ports.http
        ));
    }
    let storage = spec.storage.clone();
    let storage_size = storage
        .as_ref()
        .and_then(|s| s.size.clone())
        .unwrap_or_else(|| DEFAULT_STORAGE_SIZE.to_string());
    if let Some(store) = &spec.object_store {
        if !(store.url.starts_with("s3://") || store.url.starts_with("file://") || store.url.starts_with("memory://")) {
            problems.push(format!(
                "objectStore.url {} must start with s3://, file:// or memory://",
                store.url
            ));
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(ValidCluster {
        name,
        namespace,
        image: spec.image.clone().unwrap_or_else(default_image),
        brokers: spec.brokers,
        racks,
        rack_label_key: spec.rack_label_key().to_string(),
        storage_size,
        storage_class: storage.and_then(|s| s.storage_class_name),
        ports,
        config,
        object_store: spec.object_store.clone(),
        resources: spec.resources.clone(),
    })
}

/// A DNS-1035 label, what a Service name must be: a DNS label that starts with a letter.
fn is_dns_1035_label(s: &str) -> bool {
    is_dns_label(s) && s.starts_with(|c: char| c.is_ascii_lowercase())
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}
