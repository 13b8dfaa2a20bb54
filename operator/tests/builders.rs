//! Pure builder tests: rack spread and pinning for 1–5 racks × 1–12 brokers, affinity, PDB,
//! Services, rendered broker config, config-hash stability, owner references, validation.

use std::collections::BTreeMap;

use fjord_crds::Cluster;
use fjord_operator::cluster::build::{self, CONFIG_HASH_ANNOTATION, RACK_LABEL};
use fjord_operator::cluster::plan::rack_plans;
use fjord_operator::cluster::validate::{ValidCluster, validate};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{EnvVar, NodeSelectorRequirement};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::Resource;
use serde_json::json;

fn cluster(spec: serde_json::Value) -> Cluster {
    serde_json::from_value(json!({
        "apiVersion": "fjord.dev/v1alpha1", "kind": "Cluster",
        "metadata": {"name": "demo", "namespace": "streaming", "uid": "uid-1", "generation": 1},
        "spec": spec,
    }))
    .expect("cluster")
}

fn owner(c: &Cluster) -> OwnerReference {
    c.controller_owner_ref(&()).expect("owner ref")
}

fn valid(spec: serde_json::Value) -> (Cluster, ValidCluster) {
    let c = cluster(spec);
    let v = validate(&c).expect("valid");
    (c, v)
}

fn env<'a>(sts: &'a StatefulSet, name: &str) -> Option<&'a EnvVar> {
    sts.spec.template.spec.as_ref()?.containers[0]
        .env
        .as_ref()?
        .iter()
        .find(|e| e.name == name)
}

/// The value after `flag` in the broker container's args.
fn arg<'a>(sts: &'a StatefulSet, flag: &str) -> Option<&'a str> {
    let args = sts.spec.template.spec.as_ref()?.containers[0].args.as_ref()?;
    let i = args.iter().position(|a| a == flag)?;
    args.get(i + 1).map(String::as_str)
}

fn node_requirement(sts: &StatefulSet) -> Option<&NodeSelectorRequirement> {
    let affinity = sts.spec.template.spec.as_ref()?.affinity.as_ref()?;
    let selector = affinity
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?;
    selector
        .node_selector_terms
        .first()?
        .match_expressions
        .as_ref()?
        .first()
}

fn render_all(c: &Cluster, v: &ValidCluster) -> Vec<StatefulSet> {
    let hash = build::config_hash(v);
    rack_plans(v, &BTreeMap::new(), &BTreeMap::new())
        .iter()
        .map(|r| build::stateful_set(v, r, r.brokers, &hash, &owner(c)))
        .collect()
}

#[test]
fn racks_get_one_pinned_statefulset_each_with_even_spread() {
    for racks in 1..=5usize {
        for brokers in 1..=12 {
            let names: Vec<String> = (0..racks).map(|i| format!("zone-{i}")).collect();
            let rack_specs: Vec<_> = names
                .iter()
                .map(|n| json!({"name": n, "nodeLabelValue": format!("eu-{n}")}))
                .collect();
            let (c, v) = valid(json!({"brokers": brokers, "racks": rack_specs}));
            let all = render_all(&c, &v);
            assert_eq!(all.len(), racks);
            let replicas: Vec<i32> = all.iter().map(|s| s.spec.replicas.unwrap_or(-1)).collect();
            assert_eq!(replicas.iter().sum::<i32>(), brokers);
            let (min, max) = (replicas.iter().min(), replicas.iter().max());
            assert!(max.zip(min).is_some_and(|(a, b)| a - b <= 1), "{replicas:?}");
            let mut ids = Vec::new();
            for (sts, rack) in all.iter().zip(&names) {
                assert_eq!(sts.metadata.name.as_deref(), Some(format!("demo-{rack}").as_str()));
                assert_eq!(
                    env(sts, "FJORD_RACK").and_then(|e| e.value.as_deref()),
                    Some(rack.as_str())
                );
                let req = node_requirement(sts).expect("node affinity");
                assert_eq!(req.key, "topology.kubernetes.io/zone");
                assert_eq!(req.operator, "In");
                assert_eq!(req.values.as_deref(), Some(&[format!("eu-{rack}")][..]));
                let labels = sts.spec.selector.match_labels.as_ref().expect("selector");
                assert_eq!(labels.get(RACK_LABEL), Some(rack));
                let base: i32 = arg(sts, "--node-id-base")
                    .and_then(|v| v.parse().ok())
                    .expect("id base");
                assert_eq!(
                    sts.metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(build::BROKER_ID_BASE_ANNOTATION)),
                    Some(&base.to_string()),
                    "the broker's id base is the one recorded on the StatefulSet"
                );
                ids.extend((0..sts.spec.replicas.unwrap_or(0)).map(|o| base + o));
            }
            let unique: std::collections::BTreeSet<_> = ids.iter().collect();
            assert_eq!(unique.len(), ids.len(), "broker ids are unique: {ids:?}");
        }
    }
}

#[test]
fn no_racks_means_one_statefulset_without_node_affinity() {
    let (c, v) = valid(json!({}));
    let all = render_all(&c, &v);
    assert_eq!(all.len(), 1);
    let sts = &all[0];
    assert_eq!(sts.metadata.name.as_deref(), Some("demo-broker"));
    assert_eq!(sts.spec.replicas, Some(3));
    assert!(node_requirement(sts).is_none());
    assert!(env(sts, "FJORD_RACK").is_none());
    // Anti-affinity: prefer one broker of the cluster per node.
    let pod = sts.spec.template.spec.as_ref().expect("pod");
    let anti = pod
        .affinity
        .as_ref()
        .and_then(|a| a.pod_anti_affinity.as_ref())
        .and_then(|a| a.preferred_during_scheduling_ignored_during_execution.as_ref())
        .expect("anti-affinity");
    assert_eq!(anti[0].pod_affinity_term.topology_key, "kubernetes.io/hostname");
    assert_eq!(
        anti[0]
            .pod_affinity_term
            .label_selector
            .as_ref()
            .and_then(|s| s.match_labels.as_ref()),
        Some(&build::selector_labels("demo"))
    );
}

#[test]
fn custom_rack_label_key_and_default_node_label_value() {
    let (c, v) = valid(json!({"brokers": 2, "rackLabelKey": "example.com/rack", "racks": [{"name": "r1"}]}));
    let sts = &render_all(&c, &v)[0];
    let req = node_requirement(sts).expect("node affinity");
    assert_eq!(req.key, "example.com/rack");
    assert_eq!(req.values.as_deref(), Some(&["r1".to_string()][..]));
}

#[test]
fn statefulset_pod_details() {
    let (c, v) = valid(json!({"brokers": 1, "image": "fjord:test",
        "storage": {"size": "50Gi", "storageClassName": "fast"},
        "resources": {"requests": {"cpu": "1"}}}));
    let sts = &render_all(&c, &v)[0];
    let pod = sts.spec.template.spec.as_ref().expect("pod");
    let container = &pod.containers[0];
    assert_eq!(container.image.as_deref(), Some("fjord:test"));
    assert_eq!(pod.service_account_name.as_deref(), Some("demo-broker"));
    assert_eq!(pod.automount_service_account_token, Some(false));
    let probe = container
        .readiness_probe
        .as_ref()
        .and_then(|p| p.grpc.as_ref())
        .expect("grpc probe");
    assert_eq!(
        (probe.port, probe.service.as_deref()),
        (9645, Some("fjord.admin.v1.Admin"))
    );
    let adv = env(sts, "FJORD_NETWORK__ADVERTISED_LISTENER").and_then(|e| e.value.as_deref());
    assert_eq!(adv, Some("$(POD_NAME).demo-brokers.$(POD_NAMESPACE).svc:9092"));
    let claim = &sts.spec.volume_claim_templates.as_ref().expect("claims")[0];
    let claim_spec = claim.spec.as_ref().expect("claim spec");
    assert_eq!(claim_spec.storage_class_name.as_deref(), Some("fast"));
    let size = claim_spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .map(|r| r["storage"].0.clone());
    assert_eq!(size.as_deref(), Some("50Gi"));
    let cpu = container
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .map(|r| r["cpu"].0.clone());
    assert_eq!(cpu.as_deref(), Some("1"));
    assert_eq!(sts.spec.service_name.as_deref(), Some("demo-brokers"));
    let annotations = sts
        .spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.as_ref())
        .expect("annotations");
    assert_eq!(annotations.get(CONFIG_HASH_ANNOTATION), Some(&build::config_hash(&v)));
}

#[test]
fn services_pdb_service_account_and_owner_refs() {
    let (c, v) = valid(json!({"brokers": 3}));
    let o = owner(&c);
    let headless = build::headless_service(&v, &o);
    let hs = headless.spec.as_ref().expect("spec");
    assert_eq!(hs.cluster_ip.as_deref(), Some("None"));
    assert_eq!(hs.publish_not_ready_addresses, Some(true));
    let client = build::client_service(&v, &o);
    assert_eq!(client.metadata.name.as_deref(), Some("demo"));
    let ports: Vec<i32> = client
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .map(|p| p.iter().map(|p| p.port).collect())
        .unwrap_or_default();
    assert_eq!(
        ports,
        vec![9092, 9644],
        "the admin API is not exposed through the client Service"
    );
    let headless_ports: Vec<i32> = hs
        .ports
        .as_ref()
        .map(|p| p.iter().map(|p| p.port).collect())
        .unwrap_or_default();
    assert_eq!(headless_ports, vec![9092, 9645, 9644]);
    let pdb = build::pod_disruption_budget(&v, &o);
    let spec = pdb.spec.as_ref().expect("pdb spec");
    assert_eq!(
        spec.max_unavailable,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1))
    );
    assert_eq!(
        spec.selector.as_ref().and_then(|s| s.match_labels.as_ref()),
        Some(&build::selector_labels("demo"))
    );
    let sa = build::service_account(&v, &o);
    assert_eq!(sa.automount_service_account_token, Some(false));
    let cm = build::config_map(&v, &o);
    for meta in [
        &headless.metadata,
        &client.metadata,
        &pdb.metadata,
        &sa.metadata,
        &cm.metadata,
    ] {
        let refs = meta.owner_references.as_ref().expect("owner refs");
        assert_eq!(refs[0].kind, "Cluster");
        assert_eq!(refs[0].uid, "uid-1");
        assert_eq!(refs[0].controller, Some(true));
        assert_eq!(meta.namespace.as_deref(), Some("streaming"));
        // The Cluster's own labels are not copied (GitOps tools would claim the children).
        let labels = meta.labels.as_ref().expect("labels");
        assert_eq!(labels["app.kubernetes.io/managed-by"], "fjord-operator");
    }
    assert_eq!(
        build::selector_string("demo"),
        "app.kubernetes.io/component=broker,app.kubernetes.io/instance=demo,app.kubernetes.io/name=fjord"
    );
}

#[test]
fn rendered_broker_config_has_listeners_and_typed_overrides() {
    let (_, v) = valid(
        json!({"config": {"topics.num_partitions": "6", "storage.flush_interval": "2s",
        "topics.auto_create": "false"}, "listeners": {"kafka": 19092}}),
    );
    let text = build::broker_toml(&v);
    let parsed: toml::Table = text.parse().expect("valid toml");
    assert_eq!(parsed["network"]["listen"].as_str(), Some("0.0.0.0:19092"));
    assert_eq!(parsed["admin"]["listen"].as_str(), Some("0.0.0.0:9645"));
    assert_eq!(parsed["http"]["listen"].as_str(), Some("0.0.0.0:9644"));
    assert_eq!(parsed["storage"]["data_dir"].as_str(), Some("/var/lib/fjord/data"));
    assert_eq!(parsed["topics"]["num_partitions"].as_integer(), Some(6));
    assert_eq!(parsed["topics"]["auto_create"].as_bool(), Some(false));
    assert_eq!(parsed["storage"]["flush_interval"].as_str(), Some("2s"));
    assert!(parsed.get("node_id").is_none(), "node id comes from the environment");
}

#[test]
fn config_hash_changes_only_with_config() {
    let (_, a) = valid(json!({"brokers": 3, "config": {"topics.num_partitions": "6"}}));
    let (_, same) = valid(json!({"brokers": 3, "config": {"topics.num_partitions": "6"}}));
    assert_eq!(build::config_hash(&a), build::config_hash(&same));
    assert_eq!(build::config_hash(&a).len(), 16);
    // Scaling, resources and storage do not roll pods through the hash.
    let (_, scaled) = valid(json!({"brokers": 9, "resources": {"limits": {"memory": "1Gi"}},
        "config": {"topics.num_partitions": "6"}}));
    assert_eq!(build::config_hash(&a), build::config_hash(&scaled));
    let (_, changed) = valid(json!({"brokers": 3, "config": {"topics.num_partitions": "7"}}));
    assert_ne!(build::config_hash(&a), build::config_hash(&changed));
    let (_, store) = valid(json!({"brokers": 3, "config": {"topics.num_partitions": "6"},
        "objectStore": {"url": "s3://b/p", "credentialsSecret": {"name": "s3"}}}));
    assert_ne!(build::config_hash(&a), build::config_hash(&store));
}

#[test]
fn object_store_renders_config_and_secret_env() {
    let (c, v) = valid(
        json!({"brokers": 1, "objectStore": {"url": "s3://bucket/prefix", "region": "eu-west-1",
        "endpoint": "http://minio:9000", "credentialsSecret": {"name": "s3", "accessKeyIdKey": "id"}}}),
    );
    let data = build::config_data(&v);
    // Only the file the broker reads (a second file with settings nobody read made local
    // retention defaults look set while they had no effect).
    assert_eq!(data.keys().collect::<Vec<_>>(), vec!["broker.toml"]);
    // The broker reads its object store from [tiering] of broker.toml.
    let broker: toml::Table = data["broker.toml"].parse().expect("toml");
    assert_eq!(broker["tiering"]["enabled"].as_bool(), Some(true));
    assert_eq!(broker["tiering"]["url"].as_str(), Some("s3://bucket/prefix"));
    assert_eq!(broker["tiering"]["endpoint"].as_str(), Some("http://minio:9000"));
    assert_eq!(broker["tiering"]["allow_http"].as_bool(), Some(true));
    assert_eq!(broker["tiering"]["region"].as_str(), Some("eu-west-1"));
    let sts = &render_all(&c, &v)[0];
    let secret_ref = |name: &str| {
        env(sts, name)
            .and_then(|e| e.value_from.as_ref())
            .and_then(|f| f.secret_key_ref.as_ref())
            .map(|s| (s.name.clone(), s.key.clone()))
    };
    assert_eq!(secret_ref("AWS_ACCESS_KEY_ID"), Some(("s3".into(), "id".into())));
    assert_eq!(
        secret_ref("AWS_SECRET_ACCESS_KEY"),
        Some(("s3".into(), "AWS_SECRET_ACCESS_KEY".into()))
    );
    assert_eq!(
        env(sts, "AWS_REGION").and_then(|e| e.value.as_deref()),
        Some("eu-west-1")
    );
}

#[test]
fn validation_reports_every_problem() {
    let c = cluster(json!({"brokers": 3,
        "racks": [{"name": "a"}, {"name": "a"}, {"name": "Bad_Rack"}],
        "config": {"node_id": "4", "network.listen": "0.0.0.0:1", "bogus.key": "1", "nosection": "1"},
        "listeners": {"kafka": 9645}}));
    let problems = validate(&c).expect_err("invalid");
    let text = problems.join("\n");
    for expected in [
        "rack a is listed twice",
        "Bad_Rack",
        "node_id is set by the operator",
        "network.listen is set by the operator",
        "bogus.key is not a broker config key",
        "nosection is not a broker config key",
        "listener ports must differ",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    let mut long = cluster(json!({"racks": [{"name": "a-very-long-rack-name-that-goes-on-and-on-x"}]}));
    long.metadata.name = Some("a-long-cluster-name".into());
    assert!(validate(&long).expect_err("too long").join(" ").contains("limit is 52"));
}

#[test]
fn cluster_names_that_cannot_name_a_service_are_invalid() {
    for bad in ["9lives", "my.cluster", "Demo", &"a".repeat(56)] {
        let mut c = cluster(json!({"brokers": 1}));
        c.metadata.name = Some(bad.to_string());
        let problems = validate(&c).expect_err(bad).join(" ");
        assert!(problems.contains("cannot name its Services"), "{bad}: {problems}");
    }
    let mut c = cluster(json!({"brokers": 1}));
    c.metadata.name = Some("a".repeat(45));
    assert!(validate(&c).is_ok(), "45 characters fit the StatefulSet limit too");
}

#[test]
fn broker_pods_meet_the_restricted_pod_security_level() {
    let (c, v) = valid(json!({"brokers": 1}));
    let sts = &render_all(&c, &v)[0];
    let pod = sts.spec.template.spec.as_ref().expect("pod");
    let psc = pod.security_context.as_ref().expect("pod securityContext");
    assert_eq!(psc.run_as_non_root, Some(true));
    assert!(psc.run_as_user.is_some_and(|u| u != 0), "{psc:?}");
    assert!(psc.fs_group.is_some(), "the data volume must be writable by the broker");
    assert_eq!(
        psc.seccomp_profile.as_ref().map(|p| p.type_.as_str()),
        Some("RuntimeDefault")
    );
    for container in &pod.containers {
        let sc = container.security_context.as_ref().expect("container securityContext");
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(
            sc.capabilities.as_ref().and_then(|c| c.drop.clone()),
            Some(vec!["ALL".to_string()])
        );
        assert!(sc.privileged.is_none_or(|p| !p));
        assert!(sc.capabilities.as_ref().is_some_and(|c| c.add.is_none()));
    }
    // restricted allows only these volume types.
    for volume in pod.volumes.iter().flatten() {
        assert!(
            volume.config_map.is_some() || volume.empty_dir.is_some() || volume.persistent_volume_claim.is_some(),
            "{volume:?}"
        );
    }
    assert!(pod.host_network.is_none() && pod.host_pid.is_none() && pod.host_ipc.is_none());
}

/// The broker starts without a shell: the program is the image's entrypoint binary (on its
/// PATH), the arguments are plain strings, and the only `$(VAR)` reference, the pod name the
/// node id is derived from, names a variable the container defines from the pod's own name.
#[test]
fn broker_command_needs_no_shell() {
    let (c, v) = valid(json!({"brokers": 4, "racks": [{"name": "a"}, {"name": "b"}]}));
    for sts in render_all(&c, &v) {
        let container = &sts.spec.template.spec.as_ref().expect("pod").containers[0];
        assert_eq!(container.command.as_deref(), Some(&["fjord-broker".to_string()][..]));
        let args = container.args.as_ref().expect("args");
        let base = sts.metadata.annotations.as_ref().expect("annotations")[build::BROKER_ID_BASE_ANNOTATION].clone();
        assert_eq!(
            args,
            &[
                "--config",
                "/etc/fjord/broker.toml",
                "--node-id-base",
                base.as_str(),
                "--pod-name",
                "$(POD_NAME)"
            ]
        );
        for part in container.command.iter().flatten().chain(args) {
            assert!(
                !part.contains("sh") && !part.contains(';') && !part.contains("$$"),
                "{part}"
            );
        }
        let pod_name = env(&sts, "POD_NAME")
            .and_then(|e| e.value_from.as_ref())
            .and_then(|f| f.field_ref.as_ref())
            .map(|f| f.field_path.as_str());
        assert_eq!(pod_name, Some("metadata.name"));
        assert!(
            env(&sts, "FJORD_BROKER_ID_BASE").is_none(),
            "no shell reads it any more"
        );
    }
}
