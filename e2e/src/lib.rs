//! Runs a Fjord `Cluster` without Kubernetes: the operator's own builders render the ConfigMap
//! and StatefulSets, and this crate turns each pod into a local process launch (same command,
//! same environment, same rendered files), with the pod's volumes mapped to local directories.
//!
//! Kubernetes-only parts are replaced explicitly and nowhere else: `fieldRef` env values get the
//! pod's name and namespace, `secretKeyRef` values come from a caller-supplied map (the Secret),
//! the config/data mounts become directories, and the advertised listener (a pod DNS name that
//! only resolves in-cluster) is replaced by a loopback address.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use fjord_crds::Cluster;
use fjord_operator::cluster::build::{self, CONFIG_MOUNT, DATA_MOUNT};
use fjord_operator::cluster::plan::rack_plans;
use fjord_operator::cluster::validate::validate;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::json;

/// One broker pod as a local process.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PodLaunch {
    /// Pod name (`<statefulset>-<ordinal>`), also its `HOSTNAME`.
    pub pod: String,
    /// The container image the pod would run (images/test_images.py runs the launch in it).
    pub image: String,
    /// The container command with Kubernetes `$(VAR)` references expanded and mounts mapped.
    pub command: Vec<String>,
    /// The container environment, resolved.
    pub env: BTreeMap<String, String>,
    /// Files of the config mount: file name -> content (the ConfigMap's data).
    pub config_files: BTreeMap<String, String>,
    /// Directory the config mount maps to.
    pub config_dir: String,
    /// Directory the data volume maps to.
    pub data_dir: String,
}

/// Secrets by name, then key -> value.
pub type Secrets = BTreeMap<String, BTreeMap<String, String>>;

/// Expands Kubernetes `$(VAR)` references against `env` (unknown references stay as written)
/// and turns `$$` into `$`, as the kubelet does for `command`, `args` and env values.
pub fn expand(text: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
            && let Some(value) = env.get(&inner[..end])
        {
            out.push_str(value);
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Renders every broker pod of `cluster_yaml` (a `Cluster` manifest) with the operator's
/// builders. `root` is the directory under which each pod gets `<pod>/config` and `<pod>/data`;
/// `advertised_host` replaces the pod DNS name in the advertised listener.
pub fn render_pods(
    cluster_yaml: &str,
    namespace: &str,
    secrets: &Secrets,
    root: &str,
    advertised_host: &str,
) -> anyhow::Result<Vec<PodLaunch>> {
    let mut cluster: Cluster = serde_yaml::from_str(cluster_yaml).context("parse the Cluster manifest")?;
    cluster.metadata.namespace.get_or_insert_with(|| namespace.to_string());
    cluster
        .metadata
        .uid
        .get_or_insert_with(|| "00000000-0000-0000-0000-000000000e2e".to_string());
    let valid = validate(&cluster).map_err(|problems| anyhow::anyhow!("invalid Cluster: {}", problems.join("; ")))?;
    let owner: OwnerReference = serde_json::from_value(json!({
        "apiVersion": "fjord.dev/v1alpha1", "kind": "Cluster",
        "name": valid.name, "uid": cluster.metadata.uid, "controller": true,
    }))?;
    let data = build::config_data(&valid);
    let hash = build::config_hash(&valid);
    let ns = cluster.metadata.namespace.clone().unwrap_or_default();
    let mut out = Vec::new();
    for plan in rack_plans(&valid, &BTreeMap::new(), &BTreeMap::new()) {
        let sts = build::stateful_set(&valid, &plan, plan.brokers, &hash, &owner);
        let name = sts.metadata.name.clone().context("statefulset without a name")?;
        let pod_spec = sts.spec.template.spec.context("statefulset without a pod spec")?;
        let container = pod_spec.containers.first().context("pod without containers")?;
        for ordinal in 0..sts.spec.replicas.unwrap_or(1) {
            let pod = format!("{name}-{ordinal}");
            let config_dir = format!("{root}/{pod}/config");
            let data_dir = format!("{root}/{pod}/data");
            let mut env = BTreeMap::from([("HOSTNAME".to_string(), pod.clone())]);
            for var in container.env.iter().flatten() {
                let value = if let Some(v) = &var.value {
                    expand(v, &env)
                } else if let Some(from) = &var.value_from {
                    if let Some(field) = &from.field_ref {
                        match field.field_path.as_str() {
                            "metadata.name" => pod.clone(),
                            "metadata.namespace" => ns.clone(),
                            other => bail!("env {} uses an unsupported fieldRef {other}", var.name),
                        }
                    } else if let Some(s) = &from.secret_key_ref {
                        secrets
                            .get(&s.name)
                            .and_then(|keys| keys.get(&s.key))
                            .cloned()
                            .with_context(|| format!("env {} needs key {} of Secret {}", var.name, s.key, s.name))?
                    } else {
                        bail!("env {} has an unsupported valueFrom", var.name);
                    }
                } else {
                    String::new()
                };
                env.insert(var.name.clone(), value);
            }
            let kafka_port = valid.ports.kafka;
            env.insert(
                "FJORD_NETWORK__ADVERTISED_LISTENER".to_string(),
                format!("{advertised_host}:{kafka_port}"),
            );
            let map_mounts = |s: &str| s.replace(CONFIG_MOUNT, &config_dir).replace(DATA_MOUNT, &data_dir);
            let command = container
                .command
                .iter()
                .flatten()
                .chain(container.args.iter().flatten())
                .map(|part| map_mounts(&expand(part, &env)))
                .collect();
            let config_files = data.iter().map(|(k, v)| (k.clone(), map_mounts(v))).collect();
            out.push(PodLaunch {
                pod,
                image: container.image.clone().unwrap_or_default(),
                command,
                env,
                config_files,
                config_dir,
                data_dir,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expand_follows_kubelet_rules() {
        let env = BTreeMap::from([("A".to_string(), "x".to_string())]);
        assert_eq!(expand("$(A).$(B)-$$((1+2))-$", &env), "x.$(B)-$((1+2))-$");
    }

    #[test]
    fn renders_one_launch_per_pod_with_the_operator_config() {
        let yaml = "apiVersion: fjord.dev/v1alpha1\nkind: Cluster\nmetadata: {name: t}\nspec:\n  brokers: 3\n  racks: [{name: a}, {name: b}]\n  objectStore: {url: 's3://b/p', credentialsSecret: {name: s3}}\n";
        let secrets = Secrets::from([(
            "s3".to_string(),
            BTreeMap::from([
                ("AWS_ACCESS_KEY_ID".to_string(), "id".to_string()),
                ("AWS_SECRET_ACCESS_KEY".to_string(), "secret".to_string()),
            ]),
        )]);
        let pods = render_pods(yaml, "ns", &secrets, "/tmp/x", "127.0.0.1").expect("render");
        assert_eq!(pods.len(), 3);
        assert_eq!(pods[0].env["AWS_SECRET_ACCESS_KEY"], "secret");
        for p in &pods {
            let config = format!("/tmp/x/{}/config/broker.toml", p.pod);
            assert_eq!(p.command[..3], ["fjord-broker", "--config", config.as_str()]);
            // `$(POD_NAME)` is expanded as the kubelet does: the broker derives its id from it.
            assert_eq!(p.command[5..], ["--pod-name", p.pod.as_str()]);
        }
        assert!(pods[0].config_files["broker.toml"].contains("/tmp/x/"));
        assert!(pods[0].config_files["broker.toml"].contains("[tiering]"));
        let missing = render_pods(yaml, "ns", &Secrets::new(), "/tmp/x", "127.0.0.1").unwrap_err();
        assert!(format!("{missing:#}").contains("Secret s3"), "{missing:#}");
    }
}
