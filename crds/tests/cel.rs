//! The CRDs' CEL rules (x-kubernetes-validations) evaluated client-side by kube's CEL validator,
//! the same rules an API server enforces: a Topic's clusterRef and Kafka topic name cannot change
//! and its partitions can only grow; a Cluster's name must be usable as its Services' names.

use fjord_crds::{Cluster, Topic};
use kube::core::cel::{validate_cel, validate_cel_update};
use serde_json::json;

fn topic(spec: serde_json::Value) -> Topic {
    serde_json::from_value(json!({"apiVersion": "fjord.dev/v1alpha1", "kind": "Topic",
        "metadata": {"name": "orders", "namespace": "ns"}, "spec": spec}))
    .expect("topic")
}

fn update(old: serde_json::Value, new: serde_json::Value) -> Result<(), String> {
    validate_cel_update(&topic(new), &topic(old)).map_err(|e| format!("{e:?}"))
}

#[test]
fn partitions_only_grow() {
    let base = json!({"clusterRef": {"name": "demo"}, "partitions": 12});
    assert!(update(base.clone(), json!({"clusterRef": {"name": "demo"}, "partitions": 24})).is_ok());
    assert!(update(base.clone(), json!({"clusterRef": {"name": "demo"}, "partitions": 12})).is_ok());
    let err = update(base.clone(), json!({"clusterRef": {"name": "demo"}, "partitions": 6})).expect_err("decrease");
    assert!(err.contains("partitions can only be increased"), "{err}");
    let err = update(base, json!({"clusterRef": {"name": "demo"}})).expect_err("unset");
    assert!(err.contains("partitions can only be increased"), "{err}");
    // Setting partitions later on a topic created without them is allowed.
    assert!(
        update(
            json!({"clusterRef": {"name": "demo"}}),
            json!({"clusterRef": {"name": "demo"}, "partitions": 3})
        )
        .is_ok()
    );
}

#[test]
fn cluster_ref_and_topic_name_are_immutable() {
    let base = json!({"clusterRef": {"name": "demo"}, "topicName": "Orders.v1"});
    let err = update(
        base.clone(),
        json!({"clusterRef": {"name": "other"}, "topicName": "Orders.v1"}),
    )
    .expect_err("moved");
    assert!(err.contains("clusterRef cannot be changed"), "{err}");
    let err = update(
        base.clone(),
        json!({"clusterRef": {"name": "demo"}, "topicName": "Orders.v2"}),
    )
    .expect_err("renamed");
    assert!(err.contains("topicName cannot be changed"), "{err}");
    assert!(update(base.clone(), base.clone()).is_ok());
    let err = update(base, json!({"clusterRef": {"name": "demo"}})).expect_err("removed");
    assert!(err.contains("topicName cannot be changed"), "{err}");
}

#[test]
fn topic_name_cannot_be_added_to_an_existing_topic() {
    // Absent -> set would move the Topic to another Kafka topic (issue 18, defect 2).
    let err = update(
        json!({"clusterRef": {"name": "demo"}}),
        json!({"clusterRef": {"name": "demo"}, "topicName": "orders.v2"}),
    )
    .expect_err("added");
    assert!(err.contains("topicName cannot be changed"), "{err}");
    // Spelling out the name it already has (metadata.name) changes nothing and is allowed, both ways.
    let implicit = json!({"clusterRef": {"name": "demo"}});
    let explicit = json!({"clusterRef": {"name": "demo"}, "topicName": "orders"});
    assert!(update(implicit.clone(), explicit.clone()).is_ok());
    assert!(update(explicit, implicit).is_ok());
}

#[test]
fn cluster_name_must_be_a_service_name() {
    let cluster = |name: &str| -> Cluster {
        serde_json::from_value(json!({"apiVersion": "fjord.dev/v1alpha1", "kind": "Cluster",
            "metadata": {"name": name, "namespace": "ns"}, "spec": {"brokers": 1}}))
        .expect("cluster")
    };
    for ok in ["demo", "a", "prod-eu-1", &"a".repeat(55)] {
        assert!(validate_cel(&cluster(ok)).is_ok(), "{ok}");
    }
    // Valid object names that are not Service names (issue 18, defect 3).
    for bad in ["9lives", "my.cluster", "ends-", &"a".repeat(56)] {
        let err = format!("{:?}", validate_cel(&cluster(bad)).expect_err(bad));
        assert!(err.contains("names its Services"), "{bad}: {err}");
    }
}
