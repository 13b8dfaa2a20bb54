//! Checks on the generated CRDs: the committed YAML matches the code, every spec field says what
//! happens when it is absent, and the subresources, printer columns and CEL rules are in place.

use fjord_crds::{Cluster, DeletionPolicy, Topic};
use kube::CustomResourceExt;
use serde_json::Value;

#[test]
fn committed_yaml_matches_the_code() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("generated");
    for crd in fjord_crds::crds() {
        let path = dir.join(fjord_crds::crd_file_name(&crd));
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == fjord_crds::crd_yaml(&crd),
            "{} is out of date: run `cargo run -p fjord-crds --bin crdgen` and commit the result",
            path.display()
        );
    }
}

/// Walks every property under `spec` and collects those whose description does not say what
/// happens when absent (or that the field is required).
fn undocumented(schema: &Value, path: &str, out: &mut Vec<String>) {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    for (name, prop) in props {
        let here = format!("{path}.{name}");
        let description = prop.get("description").and_then(Value::as_str).unwrap_or("");
        // k8s-openapi's own types (resources) carry upstream docs; ours must say "Absent" or "Required".
        let ours = !here.starts_with(".spec.resources.");
        if ours && !(description.contains("Absent") || description.contains("Required")) {
            out.push(here.clone());
        }
        undocumented(prop, &here, out);
        if let Some(items) = prop.get("items") {
            undocumented(items, &format!("{here}[]"), out);
        }
    }
}

#[test]
fn every_spec_field_says_what_absent_means() {
    for crd in fjord_crds::crds() {
        let crd = serde_json::to_value(&crd).expect("json");
        let spec = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"];
        let mut missing = Vec::new();
        undocumented(spec, ".spec", &mut missing);
        assert!(missing.is_empty(), "{}: {missing:?}", crd["metadata"]["name"]);
    }
}

#[test]
fn cluster_has_scale_and_status_subresources_and_columns() {
    let crd = serde_json::to_value(Cluster::crd()).expect("json");
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["name"], "v1alpha1");
    let scale = &version["subresources"]["scale"];
    assert_eq!(scale["specReplicasPath"], ".spec.brokers");
    assert_eq!(scale["statusReplicasPath"], ".status.brokers");
    assert_eq!(scale["labelSelectorPath"], ".status.labelSelector");
    assert!(version["subresources"]["status"].is_object());
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .expect("columns")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    for c in ["Ready", "Brokers", "Age"] {
        assert!(columns.contains(&c), "{columns:?}");
    }
    assert_eq!(crd["spec"]["names"]["shortNames"][0], "fjc");
    assert_eq!(crd["spec"]["group"], "fjord.dev");
}

#[test]
fn topic_has_cel_rules_columns_and_defaults() {
    let crd = serde_json::to_value(Topic::crd()).expect("json");
    let version = &crd["spec"]["versions"][0];
    let spec = &version["schema"]["openAPIV3Schema"]["properties"]["spec"];
    assert_eq!(
        spec["properties"]["clusterRef"]["x-kubernetes-validations"][0]["rule"],
        "self == oldSelf"
    );
    let rules: Vec<&str> = spec["x-kubernetes-validations"]
        .as_array()
        .expect("rules")
        .iter()
        .filter_map(|r| r["rule"].as_str())
        .collect();
    assert!(
        rules
            .iter()
            .any(|r| r.contains("self.partitions >= oldSelf.partitions")),
        "{rules:?}"
    );
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .expect("columns")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    for c in ["Ready", "Partitions", "Age"] {
        assert!(columns.contains(&c), "{columns:?}");
    }
    assert_eq!(crd["spec"]["names"]["shortNames"][0], "fjt");
    // A null config value ("not managed here") is allowed by the schema.
    assert_eq!(spec["properties"]["config"]["additionalProperties"]["nullable"], true);
}

#[test]
fn topic_status_documents_only_the_condition_the_operator_sets() {
    // The Topic reconcile sets Ready only (operator/src/topic.rs); a documented Degraded that
    // never appears would send users waiting for it.
    let crd = serde_json::to_value(Topic::crd()).expect("json");
    let conditions = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["conditions"]
        ["description"];
    let text = conditions.as_str().expect("description");
    assert!(text.contains("Ready"), "{text}");
    for never in ["Degraded", "Progressing"] {
        assert!(!text.contains(never), "{text}");
    }
}

#[test]
fn absent_fields_take_the_documented_defaults() {
    let cluster: Cluster = serde_json::from_value(
        serde_json::json!({"apiVersion": "fjord.dev/v1alpha1", "kind": "Cluster",
            "metadata": {"name": "c"}, "spec": {}}),
    )
    .expect("cluster");
    assert_eq!(cluster.spec.brokers, 3);
    assert_eq!(cluster.spec.rack_label_key(), "topology.kubernetes.io/zone");
    assert!(!cluster.spec.paused);
    let topic: Topic = serde_json::from_value(serde_json::json!({"apiVersion": "fjord.dev/v1alpha1", "kind": "Topic",
        "metadata": {"name": "orders"}, "spec": {"clusterRef": {"name": "c"},
        "config": {"retention.ms": "1000", "segment.bytes": null}}}))
    .expect("topic");
    assert_eq!(topic.spec.deletion_policy, DeletionPolicy::Delete);
    assert_eq!(topic.kafka_name(), "orders");
    assert_eq!(topic.spec.config.get("segment.bytes"), Some(&None));
    assert_eq!(topic.spec.config.get("retention.ms"), Some(&Some("1000".to_string())));
}
