//! Pure builders: one function per Kubernetes object a Cluster renders. No I/O; the reconcile
//! applies what these return (server-side apply), config first.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec, StatefulSetUpdateStrategy,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EnvVar, EnvVarSource,
    GRPCAction, HTTPGetAction, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    ObjectFieldSelector, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodAffinityTerm, PodAntiAffinity,
    PodSecurityContext, PodSpec, PodTemplateSpec, Probe, SeccompProfile, SecretKeySelector, SecurityContext, Service,
    ServiceAccount, ServicePort, ServiceSpec, Volume, VolumeMount, VolumeResourceRequirements, WeightedPodAffinityTerm,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use sha2::{Digest, Sha256};

use super::plan::RackPlan;
use super::validate::ValidCluster;

/// Pod template annotation holding the hash of the rendered config: it changes (and rolls the
/// pods) only when the config really changes.
pub const CONFIG_HASH_ANNOTATION: &str = "fjord.dev/config-hash";
/// StatefulSet annotation with the broker id of ordinal 0 (kept across reconciles).
pub const BROKER_ID_BASE_ANNOTATION: &str = "fjord.dev/broker-id-base";
/// Label carrying the rack of a StatefulSet and its pods.
pub const RACK_LABEL: &str = "fjord.dev/rack";
pub const NAME_LABEL: &str = "app.kubernetes.io/name";
pub const INSTANCE_LABEL: &str = "app.kubernetes.io/instance";
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// User and group the broker runs as (not root; any image runs as it, the data volume is
/// group-owned through fsGroup).
pub const BROKER_UID: i64 = 65532;
/// Field manager for server-side apply.
pub const FIELD_MANAGER: &str = "fjord-operator";

/// Where the broker keeps its data and reads its config inside the pod.
pub const DATA_MOUNT: &str = "/var/lib/fjord";
pub const CONFIG_MOUNT: &str = "/etc/fjord";
const BROKER_TOML: &str = "broker.toml";

/// Labels every broker pod of a cluster carries (also the scale subresource's selector). The
/// Cluster's own labels are deliberately not copied (GitOps tools would claim the children).
pub fn selector_labels(cluster: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (NAME_LABEL.to_string(), "fjord".to_string()),
        (INSTANCE_LABEL.to_string(), cluster.to_string()),
        (COMPONENT_LABEL.to_string(), "broker".to_string()),
    ])
}

/// The selector as a string, for `.status.labelSelector`.
pub fn selector_string(cluster: &str) -> String {
    selector_labels(cluster)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn labels(cluster: &str) -> BTreeMap<String, String> {
    let mut l = selector_labels(cluster);
    l.insert(MANAGED_BY_LABEL.to_string(), "fjord-operator".to_string());
    l
}

fn rack_labels(cluster: &str, rack: &str) -> BTreeMap<String, String> {
    let mut l = selector_labels(cluster);
    l.insert(RACK_LABEL.to_string(), rack_label_value(rack));
    l
}

/// Label value for a rack (`none` for a cluster without racks).
pub fn rack_label_value(rack: &str) -> String {
    if rack.is_empty() {
        "none".to_string()
    } else {
        rack.to_string()
    }
}

fn meta(name: String, v: &ValidCluster, owner: &OwnerReference) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(v.namespace.clone()),
        labels: Some(labels(&v.name)),
        owner_references: Some(vec![owner.clone()]),
        ..ObjectMeta::default()
    }
}

/// Sets a dotted key in a TOML table the way the broker's `--set` does: the value is read as
/// TOML and falls back to a plain string.
fn set_key(table: &mut toml::Table, key: &str, raw: &str) {
    let value = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let mut parts: Vec<&str> = key.split('.').collect();
    let Some(last) = parts.pop() else { return };
    let mut current = table;
    for part in parts {
        let entry = current
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        current = entry.as_table_mut().expect("just made a table");
    }
    current.insert(last.to_string(), value);
}

/// The broker's TOML config: listeners on all interfaces, the data dir on the volume, then the
/// spec's overrides. Node id, rack and advertised listener come from environment variables.
pub fn broker_toml(v: &ValidCluster) -> String {
    let mut table = toml::Table::new();
    set_key(&mut table, "network.listen", &format!("\"0.0.0.0:{}\"", v.ports.kafka));
    set_key(&mut table, "http.listen", &format!("\"0.0.0.0:{}\"", v.ports.http));
    set_key(&mut table, "admin.listen", &format!("\"0.0.0.0:{}\"", v.ports.admin));
    set_key(&mut table, "storage.data_dir", &format!("\"{DATA_MOUNT}/data\""));
    // The broker's tiering reads `[tiering]` (credentials from the AWS_* env set from the Secret),
    // so the object store is rendered there; spec.config can still tune the other tiering keys.
    if let Some(store) = &v.object_store {
        let quoted = |s: &str| toml::Value::String(s.to_string()).to_string();
        set_key(&mut table, "tiering.enabled", "true");
        set_key(&mut table, "tiering.url", &quoted(&store.url));
        if let Some(endpoint) = &store.endpoint {
            set_key(&mut table, "tiering.endpoint", &quoted(endpoint));
            if endpoint.starts_with("http://") {
                set_key(&mut table, "tiering.allow_http", "true");
            }
        }
        if let Some(region) = &store.region {
            set_key(&mut table, "tiering.region", &quoted(region));
        }
    }
    for (key, value) in &v.config {
        set_key(&mut table, key, value);
    }
    format!(
        "# Rendered by fjord-operator for cluster {}; edit the Cluster's spec.config instead.\n{}",
        v.name,
        toml::to_string(&table).expect("a toml table always serialises")
    )
}

/// The ConfigMap's data: only what the broker reads, its `broker.toml` (the object store is in
/// its `[tiering]` section).
pub fn config_data(v: &ValidCluster) -> BTreeMap<String, String> {
    BTreeMap::from([(BROKER_TOML.to_string(), broker_toml(v))])
}

/// A stable hash of everything the pods read from config: the ConfigMap data and the object
/// store credentials reference. Only a real change changes it.
pub fn config_hash(v: &ValidCluster) -> String {
    let mut hasher = Sha256::new();
    for (k, val) in config_data(v) {
        hasher.update(k.as_bytes());
        hasher.update([0]);
        hasher.update(val.as_bytes());
        hasher.update([0]);
    }
    if let Some(secret) = v.object_store.as_ref().and_then(|s| s.credentials_secret.as_ref()) {
        hasher.update(secret.name.as_bytes());
    }
    hasher.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
}

pub fn config_map(v: &ValidCluster, owner: &OwnerReference) -> ConfigMap {
    ConfigMap {
        metadata: meta(v.config_map_name(), v, owner),
        data: Some(config_data(v)),
        ..ConfigMap::default()
    }
}

/// The ServiceAccount broker pods run as. Brokers need no Kubernetes API access (their rack
/// comes from an environment variable), so no token is mounted and no role is bound.
pub fn service_account(v: &ValidCluster, owner: &OwnerReference) -> ServiceAccount {
    ServiceAccount {
        metadata: meta(v.service_account_name(), v, owner),
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    }
}

/// Service ports: Kafka and HTTP (metrics, health) always; the admin gRPC API only on the
/// headless Service, never on the client Service that applications are pointed at.
fn ports(v: &ValidCluster, with_admin: bool) -> Vec<ServicePort> {
    let admin = with_admin.then_some(("admin", v.ports.admin));
    [Some(("kafka", v.ports.kafka)), admin, Some(("http", v.ports.http))]
        .into_iter()
        .flatten()
        .map(|(name, port)| ServicePort {
            name: Some(name.to_string()),
            port,
            target_port: Some(IntOrString::String(name.to_string())),
            protocol: Some("TCP".to_string()),
            ..ServicePort::default()
        })
        .collect()
}

/// Headless Service: a stable DNS name per broker pod (`<pod>.<service>.<ns>.svc`), published
/// before the pod is ready so brokers can find each other while starting.
pub fn headless_service(v: &ValidCluster, owner: &OwnerReference) -> Service {
    Service {
        metadata: meta(v.headless_service_name(), v, owner),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".to_string()),
            publish_not_ready_addresses: Some(true),
            selector: Some(selector_labels(&v.name)),
            ports: Some(ports(v, true)),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// Client Service: the bootstrap address for Kafka clients (and HTTP metrics/health). The admin
/// API is not on it: the operator reaches brokers through the headless Service.
pub fn client_service(v: &ValidCluster, owner: &OwnerReference) -> Service {
    Service {
        metadata: meta(v.client_service_name(), v, owner),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_string()),
            selector: Some(selector_labels(&v.name)),
            ports: Some(ports(v, false)),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// At most one broker of the cluster voluntarily disrupted at a time (node drains, upgrades).
pub fn pod_disruption_budget(v: &ValidCluster, owner: &OwnerReference) -> PodDisruptionBudget {
    PodDisruptionBudget {
        metadata: meta(format!("{}-brokers", v.name), v, owner),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(&v.name)),
                ..LabelSelector::default()
            }),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    }
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: Some(value.into()),
        ..EnvVar::default()
    }
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_string(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn secret_env(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_string(),
                key: key.to_string(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// The broker container's environment: pod identity (name, namespace, rack), advertised
/// address, object store credentials.
fn broker_env(v: &ValidCluster, rack: &RackPlan) -> Vec<EnvVar> {
    let mut out = vec![
        field_env("POD_NAME", "metadata.name"),
        field_env("POD_NAMESPACE", "metadata.namespace"),
        env(
            "FJORD_NETWORK__ADVERTISED_LISTENER",
            format!(
                "$(POD_NAME).{}.$(POD_NAMESPACE).svc:{}",
                v.headless_service_name(),
                v.ports.kafka
            ),
        ),
    ];
    if !rack.name.is_empty() {
        out.push(env("FJORD_RACK", rack.name.clone()));
    }
    if let Some(store) = &v.object_store {
        if let Some(region) = &store.region {
            out.push(env("AWS_REGION", region.clone()));
        }
        if let Some(endpoint) = &store.endpoint {
            out.push(env("AWS_ENDPOINT_URL", endpoint.clone()));
        }
        if let Some(secret) = &store.credentials_secret {
            out.push(secret_env(
                "AWS_ACCESS_KEY_ID",
                &secret.name,
                secret.access_key_id_key.as_deref().unwrap_or("AWS_ACCESS_KEY_ID"),
            ));
            out.push(secret_env(
                "AWS_SECRET_ACCESS_KEY",
                &secret.name,
                secret
                    .secret_access_key_key
                    .as_deref()
                    .unwrap_or("AWS_SECRET_ACCESS_KEY"),
            ));
        }
    }
    out
}

/// The program the broker container runs: looked up on the image's `PATH`, no shell. The broker
/// image's entrypoint is this binary (`images/broker.Containerfile`), and the e2e suites run the
/// same command.
pub const BROKER_PROGRAM: &str = "fjord-broker";

/// The broker's command line (program and arguments, no shell): the rendered config, and the
/// node id as the rack's id base + the pod ordinal, which the broker reads from its pod name
/// (`$(POD_NAME)` is expanded by the kubelet), so every pod has a stable id.
pub fn broker_command(rack: &RackPlan) -> (Vec<String>, Vec<String>) {
    let args = [
        "--config".to_string(),
        format!("{CONFIG_MOUNT}/{BROKER_TOML}"),
        "--node-id-base".to_string(),
        rack.id_base.to_string(),
        "--pod-name".to_string(),
        "$(POD_NAME)".to_string(),
    ];
    (vec![BROKER_PROGRAM.to_string()], args.to_vec())
}

fn affinity(v: &ValidCluster, rack: &RackPlan) -> Affinity {
    let node_affinity = rack.node_label_value.as_ref().map(|value| NodeAffinity {
        required_during_scheduling_ignored_during_execution: Some(NodeSelector {
            node_selector_terms: vec![NodeSelectorTerm {
                match_expressions: Some(vec![NodeSelectorRequirement {
                    key: v.rack_label_key.clone(),
                    operator: "In".to_string(),
                    values: Some(vec![value.clone()]),
                }]),
                ..NodeSelectorTerm::default()
            }],
        }),
        ..NodeAffinity::default()
    });
    // Prefer one broker of this cluster per node; preferred so a small rack still schedules.
    let anti = PodAntiAffinity {
        preferred_during_scheduling_ignored_during_execution: Some(vec![WeightedPodAffinityTerm {
            weight: 100,
            pod_affinity_term: PodAffinityTerm {
                topology_key: "kubernetes.io/hostname".to_string(),
                label_selector: Some(LabelSelector {
                    match_labels: Some(selector_labels(&v.name)),
                    ..LabelSelector::default()
                }),
                ..PodAffinityTerm::default()
            },
        }]),
        ..PodAntiAffinity::default()
    };
    Affinity {
        node_affinity,
        pod_anti_affinity: Some(anti),
        ..Affinity::default()
    }
}

/// One rack's StatefulSet with `replicas` pods.
pub fn stateful_set(
    v: &ValidCluster,
    rack: &RackPlan,
    replicas: i32,
    config_hash: &str,
    owner: &OwnerReference,
) -> StatefulSet {
    let name = v.statefulset_name(&rack.name);
    let pod_labels = rack_labels(&v.name, &rack.name);
    let mut metadata = meta(name, v, owner);
    metadata
        .labels
        .get_or_insert_with(BTreeMap::new)
        .insert(RACK_LABEL.to_string(), rack_label_value(&rack.name));
    metadata.annotations = Some(BTreeMap::from([(
        BROKER_ID_BASE_ANNOTATION.to_string(),
        rack.id_base.to_string(),
    )]));
    let (command, args) = broker_command(rack);
    let container = Container {
        name: "broker".to_string(),
        image: Some(v.image.clone()),
        command: Some(command),
        args: Some(args),
        env: Some(broker_env(v, rack)),
        ports: Some(
            [
                ("kafka", v.ports.kafka),
                ("admin", v.ports.admin),
                ("http", v.ports.http),
            ]
            .into_iter()
            .map(|(n, p)| ContainerPort {
                name: Some(n.to_string()),
                container_port: p,
                protocol: Some("TCP".to_string()),
                ..ContainerPort::default()
            })
            .collect(),
        ),
        // Ready when the admin API's gRPC health says SERVING; alive while /health answers.
        readiness_probe: Some(Probe {
            grpc: Some(GRPCAction {
                mode: None,
                port: v.ports.admin,
                service: Some(fjord_api::ADMIN_SERVICE_NAME.to_string()),
            }),
            period_seconds: Some(5),
            ..Probe::default()
        }),
        liveness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/health".to_string()),
                port: IntOrString::String("http".to_string()),
                ..HTTPGetAction::default()
            }),
            initial_delay_seconds: Some(10),
            period_seconds: Some(10),
            failure_threshold: Some(6),
            ..Probe::default()
        }),
        resources: v.resources.clone(),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_string()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "data".to_string(),
                mount_path: DATA_MOUNT.to_string(),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "config".to_string(),
                mount_path: CONFIG_MOUNT.to_string(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
        ]),
        ..Container::default()
    };
    let claim = PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some("data".to_string()),
            labels: Some(selector_labels(&v.name)),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_string()]),
            storage_class_name: v.storage_class.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity(v.storage_size.clone()),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    };
    StatefulSet {
        metadata,
        spec: StatefulSetSpec {
            replicas: Some(replicas),
            service_name: Some(v.headless_service_name()),
            pod_management_policy: Some("Parallel".to_string()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("RollingUpdate".to_string()),
                ..StatefulSetUpdateStrategy::default()
            }),
            // Volumes of drained, scaled-away brokers go; deleting the Cluster keeps the data.
            persistent_volume_claim_retention_policy: Some(StatefulSetPersistentVolumeClaimRetentionPolicy {
                when_scaled: Some("Delete".to_string()),
                when_deleted: Some("Retain".to_string()),
            }),
            selector: LabelSelector {
                match_labels: Some(pod_labels.clone()),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(BTreeMap::from([(
                        CONFIG_HASH_ANNOTATION.to_string(),
                        config_hash.to_string(),
                    )])),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(v.service_account_name()),
                    automount_service_account_token: Some(false),
                    affinity: Some(affinity(v, rack)),
                    termination_grace_period_seconds: Some(60),
                    // The Pod Security `restricted` level: non-root, RuntimeDefault seccomp (and
                    // the container's own settings above). fsGroup makes the data volume writable.
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(BROKER_UID),
                        run_as_group: Some(BROKER_UID),
                        fs_group: Some(BROKER_UID),
                        fs_group_change_policy: Some("OnRootMismatch".to_string()),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".to_string(),
                            ..SeccompProfile::default()
                        }),
                        ..PodSecurityContext::default()
                    }),
                    containers: vec![container],
                    volumes: Some(vec![Volume {
                        name: "config".to_string(),
                        config_map: Some(ConfigMapVolumeSource {
                            name: v.config_map_name(),
                            ..ConfigMapVolumeSource::default()
                        }),
                        ..Volume::default()
                    }]),
                    ..PodSpec::default()
                }),
            },
            volume_claim_templates: Some(vec![claim]),
            ..StatefulSetSpec::default()
        },
        ..StatefulSet::default()
    }
}
