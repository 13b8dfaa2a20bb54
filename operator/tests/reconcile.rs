//! Reconcile tests against the fake Kubernetes API (tests/fake) and an in-memory admin API, run
//! to convergence: cluster create/update/scale-out/scale-in with a drain in progress, blocked and
//! done, rack removal, invalid spec, pause; topic create, partition increase, refused decrease,
//! drift correction, delete with both policies, and finalizer removal when the Cluster or its
//! brokers are gone.

mod fake;

use std::sync::Arc;

use fake::FakeKube;
use fake::admin::FakeAdmin;
use fjord_api::v1 as pb;
use fjord_crds::{Cluster, Topic};
use fjord_operator::cluster::reconcile::reconcile as reconcile_cluster;
use fjord_operator::context::Context;
use fjord_operator::metrics::Metrics;
use fjord_operator::topic::{FINALIZER, reconcile as reconcile_topic};
use kube::Api;
use kube::runtime::controller::Action;
use serde_json::{Value, json};

const NS: &str = "streaming";

struct Env {
    kube: FakeKube,
    admin: FakeAdmin,
    ctx: Arc<Context>,
}

fn env() -> Env {
    let kube = FakeKube::default();
    let admin = FakeAdmin::default();
    let ctx = Arc::new(Context::new(
        kube.client(),
        Arc::new(admin.clone()),
        Arc::new(Metrics::default()),
        Some("test".into()),
    ));
    Env { kube, admin, ctx }
}

fn cluster_key(name: &str) -> String {
    format!("/apis/fjord.dev/v1alpha1/namespaces/{NS}/clusters/{name}")
}

fn topic_key(name: &str) -> String {
    format!("/apis/fjord.dev/v1alpha1/namespaces/{NS}/topics/{name}")
}

fn sts_key(name: &str) -> String {
    format!("/apis/apps/v1/namespaces/{NS}/statefulsets/{name}")
}

impl Env {
    fn add_cluster(&self, name: &str, spec: Value) {
        self.kube.put(
            &cluster_key(name),
            json!({"apiVersion": "fjord.dev/v1alpha1", "kind": "Cluster",
                "metadata": {"name": name, "namespace": NS}, "spec": spec}),
        );
    }

    fn add_topic(&self, name: &str, spec: Value) {
        self.kube.put(
            &topic_key(name),
            json!({"apiVersion": "fjord.dev/v1alpha1", "kind": "Topic",
                "metadata": {"name": name, "namespace": NS}, "spec": spec}),
        );
    }

    async fn cluster(&self, name: &str) -> Cluster {
        Api::<Cluster>::namespaced(self.ctx.client.clone(), NS)
            .get(name)
            .await
            .expect("cluster")
    }

    async fn reconcile_cluster(&self, name: &str) -> Action {
        let c = self.cluster(name).await;
        reconcile_cluster(Arc::new(c), self.ctx.clone())
            .await
            .expect("cluster reconcile")
    }

    /// Reconciles (playing the StatefulSet controller in between) until Ready=True at the
    /// current generation; panics if it does not converge.
    async fn converge_cluster(&self, name: &str) -> Cluster {
        for _ in 0..10 {
            self.reconcile_cluster(name).await;
            self.kube.set_ready();
            let c = self.cluster(name).await;
            let status = c.status.clone().unwrap_or_default();
            if condition(&c, "Ready").is_some_and(|c| c.0 == "True")
                && status.observed_generation == c.metadata.generation
            {
                return c;
            }
        }
        panic!("cluster {name} did not converge: {:?}", self.cluster(name).await.status);
    }

    async fn topic(&self, name: &str) -> Option<Topic> {
        Api::<Topic>::namespaced(self.ctx.client.clone(), NS)
            .get_opt(name)
            .await
            .expect("get topic")
    }

    async fn reconcile_topic(&self, name: &str) -> Result<Action, fjord_operator::Error> {
        let t = self.topic(name).await.expect("topic exists");
        reconcile_topic(Arc::new(t), self.ctx.clone()).await
    }

    fn sts(&self, name: &str) -> Value {
        self.kube
            .get(&sts_key(name))
            .unwrap_or_else(|| panic!("statefulset {name} missing"))
    }

    fn replicas(&self, name: &str) -> i64 {
        self.sts(name)["spec"]["replicas"].as_i64().expect("replicas")
    }
}

/// (status, reason, message) of a condition.
fn condition<K: kube::Resource + serde::Serialize>(obj: &K, type_: &str) -> Option<(String, String, String)> {
    let v = serde_json::to_value(obj).expect("json");
    v["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .map(|c| {
            (
                c["status"].as_str().unwrap_or("").to_string(),
                c["reason"].as_str().unwrap_or("").to_string(),
                c["message"].as_str().unwrap_or("").to_string(),
            )
        })
}

fn three_zones(brokers: i32) -> Value {
    json!({"brokers": brokers, "image": "fjord:test",
        "racks": [{"name": "zone-a"}, {"name": "zone-b"}, {"name": "zone-c"}]})
}

#[tokio::test]
async fn cluster_create_renders_everything_in_order_and_becomes_ready() {
    let e = env();
    e.add_cluster("demo", three_zones(6));
    e.reconcile_cluster("demo").await;
    for key in [
        format!("/api/v1/namespaces/{NS}/serviceaccounts/demo-broker"),
        format!("/api/v1/namespaces/{NS}/configmaps/demo-config"),
        format!("/api/v1/namespaces/{NS}/services/demo"),
        format!("/api/v1/namespaces/{NS}/services/demo-brokers"),
        format!("/apis/policy/v1/namespaces/{NS}/poddisruptionbudgets/demo-brokers"),
    ] {
        assert!(e.kube.get(&key).is_some(), "{key} missing");
    }
    for rack in ["zone-a", "zone-b", "zone-c"] {
        assert_eq!(e.replicas(&format!("demo-{rack}")), 2);
    }
    // Config before the StatefulSets that mount it.
    let requests = e.kube.requests();
    let position = |needle: &str| {
        requests
            .iter()
            .position(|r| r.starts_with("PATCH") && r.contains(needle))
    };
    let config = position("/configmaps/demo-config").expect("configmap applied");
    let first_sts = position("/statefulsets/").expect("statefulset applied");
    assert!(config < first_sts, "{requests:?}");
    // Not ready yet: pods are starting.
    let c = e.cluster("demo").await;
    assert_eq!(condition(&c, "Ready").map(|c| c.1), Some("BrokersNotReady".into()));
    assert_eq!(condition(&c, "Progressing").map(|c| c.0), Some("True".into()));
    let c = e.converge_cluster("demo").await;
    let status = c.status.expect("status");
    assert_eq!((status.brokers, status.ready_brokers), (6, 6));
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(
        status.label_selector.as_deref(),
        Some("app.kubernetes.io/component=broker,app.kubernetes.io/instance=demo,app.kubernetes.io/name=fjord")
    );
    let ids: Vec<Vec<i32>> = status.racks.iter().map(|r| r.broker_ids.clone()).collect();
    assert_eq!(ids, vec![vec![0, 1], vec![1000, 1001], vec![2000, 2001]]);
    assert_eq!(
        condition(&c_ref(&e, "demo").await, "Degraded").map(|c| c.0),
        Some("False".into())
    );
    let reasons = e.kube.event_reasons();
    assert!(
        reasons.contains(&"Created".to_string()) && reasons.contains(&"Ready".to_string()),
        "{reasons:?}"
    );
}

async fn c_ref(e: &Env, name: &str) -> Cluster {
    e.cluster(name).await
}

#[tokio::test]
async fn config_change_rolls_pods_through_the_hash_and_scaling_does_not() {
    let e = env();
    e.add_cluster("demo", three_zones(3));
    e.converge_cluster("demo").await;
    let hash =
        |e: &Env| e.sts("demo-zone-a")["spec"]["template"]["metadata"]["annotations"]["fjord.dev/config-hash"].clone();
    let before = hash(&e);
    e.kube.edit_spec(&cluster_key("demo"), json!({"brokers": 6}));
    e.converge_cluster("demo").await;
    assert_eq!(hash(&e), before, "scaling does not change the config hash");
    e.kube
        .edit_spec(&cluster_key("demo"), json!({"config": {"topics.num_partitions": "6"}}));
    e.reconcile_cluster("demo").await;
    assert_ne!(hash(&e), before);
    let cm = e
        .kube
        .get(&format!("/api/v1/namespaces/{NS}/configmaps/demo-config"))
        .expect("cm");
    assert!(
        cm["data"]["broker.toml"]
            .as_str()
            .expect("toml")
            .contains("num_partitions = 6")
    );
    assert!(e.kube.event_reasons().contains(&"ConfigChanged".to_string()));
}

#[tokio::test]
async fn scale_out_fills_the_least_filled_racks_and_keeps_ids() {
    let e = env();
    e.add_cluster("demo", three_zones(4));
    let c = e.converge_cluster("demo").await;
    let counts: Vec<i32> = c.status.expect("status").racks.iter().map(|r| r.brokers).collect();
    assert_eq!(counts, vec![2, 1, 1]);
    e.kube.edit_spec(&cluster_key("demo"), json!({"brokers": 5}));
    let c = e.converge_cluster("demo").await;
    let racks = c.status.expect("status").racks;
    let counts: Vec<i32> = racks.iter().map(|r| r.brokers).collect();
    assert_eq!(counts, vec![2, 2, 1], "the new broker goes to a least-filled rack");
    assert_eq!(racks[1].broker_ids, vec![1000, 1001]);
    assert!(e.kube.event_reasons().contains(&"ScaledOut".to_string()));
    assert!(e.admin.calls().is_empty(), "scale-out drains nothing");
}

#[tokio::test]
async fn scale_in_drains_first_and_shrinks_only_when_the_drain_is_done() {
    let e = env();
    e.add_cluster("demo", three_zones(6));
    e.converge_cluster("demo").await;
    e.kube.edit_spec(&cluster_key("demo"), json!({"brokers": 4}));
    // Drain in progress: nothing shrinks, status says what it waits for.
    e.reconcile_cluster("demo").await;
    e.kube.set_ready();
    let calls = e.admin.calls();
    assert!(
        calls.contains(&format!("drain http://demo-zone-b-1.demo-brokers.{NS}.svc:9645 1001")),
        "{calls:?}"
    );
    assert!(
        calls.contains(&format!("drain http://demo-zone-c-1.demo-brokers.{NS}.svc:9645 2001")),
        "{calls:?}"
    );
    for rack in ["zone-a", "zone-b", "zone-c"] {
        assert_eq!(
            e.replicas(&format!("demo-{rack}")),
            2,
            "{rack} not shrunk while draining"
        );
    }
    let c = e.cluster("demo").await;
    let drain = c.status.clone().expect("status").drain.expect("drain status");
    assert_eq!(
        (drain.broker_ids, drain.state.as_str()),
        (vec![1001, 2001], "InProgress")
    );
    assert_eq!(condition(&c, "Ready").map(|c| c.1), Some("Draining".into()));
    assert_eq!(
        condition(&c, "Progressing").map(|c| (c.0, c.1)),
        Some(("True".into(), "Draining".into()))
    );
    assert!(e.kube.event_reasons().contains(&"DrainStarted".to_string()));

    // One done, one blocked: still nothing shrinks, and Degraded says why.
    e.admin.set_drain(1001, pb::DrainState::Done);
    e.admin.set_drain(2001, pb::DrainState::Blocked);
    e.reconcile_cluster("demo").await;
    assert_eq!(e.replicas("demo-zone-b"), 2);
    let c = e.cluster("demo").await;
    let degraded = condition(&c, "Degraded").expect("degraded");
    assert_eq!((degraded.0.as_str(), degraded.1.as_str()), ("True", "DrainBlocked"));
    assert!(degraded.2.contains("nowhere to move"), "{degraded:?}");

    // Both done: the StatefulSets shrink and the cluster converges at 4.
    e.admin.set_drain(2001, pb::DrainState::Done);
    let c = e.converge_cluster("demo").await;
    assert_eq!(e.replicas("demo-zone-a"), 2);
    assert_eq!(e.replicas("demo-zone-b"), 1);
    assert_eq!(e.replicas("demo-zone-c"), 1);
    let status = c.status.expect("status");
    assert_eq!(status.brokers, 4);
    assert!(status.drain.is_none());
    let reasons = e.kube.event_reasons();
    for r in ["DrainBlocked", "DrainDone", "ScaledIn"] {
        assert!(reasons.contains(&r.to_string()), "{r} missing from {reasons:?}");
    }
}

#[tokio::test]
async fn removing_a_rack_drains_its_brokers_then_deletes_its_statefulset() {
    let e = env();
    e.add_cluster("demo", three_zones(3));
    e.converge_cluster("demo").await;
    e.kube.edit_spec(
        &cluster_key("demo"),
        json!({"racks": [{"name": "zone-a"}, {"name": "zone-b"}]}),
    );
    e.reconcile_cluster("demo").await;
    assert!(e.kube.get(&sts_key("demo-zone-c")).is_some(), "kept while draining");
    assert!(
        e.admin.calls().iter().any(|c| c.ends_with(" 2000")),
        "{:?}",
        e.admin.calls()
    );
    e.admin.set_drain(2000, pb::DrainState::Done);
    e.converge_cluster("demo").await;
    assert!(
        e.kube.get(&sts_key("demo-zone-c")).is_none(),
        "rack StatefulSet deleted"
    );
    let total = e.replicas("demo-zone-a") + e.replicas("demo-zone-b");
    assert_eq!(total, 3);
    assert!(e.kube.event_reasons().contains(&"RackRemoved".to_string()));
}

#[tokio::test]
async fn invalid_spec_is_reported_not_crashed_and_fixing_it_converges() {
    let e = env();
    e.add_cluster("demo", json!({"brokers": 3, "config": {"node_id": "7"}}));
    let action = e.reconcile_cluster("demo").await;
    assert_eq!(action, Action::await_change());
    assert!(
        e.kube
            .keys(&format!("/apis/apps/v1/namespaces/{NS}/statefulsets"))
            .is_empty()
    );
    let c = e.cluster("demo").await;
    let degraded = condition(&c, "Degraded").expect("degraded");
    assert_eq!((degraded.0.as_str(), degraded.1.as_str()), ("True", "InvalidSpec"));
    assert!(degraded.2.contains("node_id"), "{degraded:?}");
    assert!(e.kube.event_reasons().contains(&"InvalidSpec".to_string()));
    e.kube
        .edit_spec(&cluster_key("demo"), json!({"config": {"node_id": null}}));
    e.converge_cluster("demo").await;
}

#[tokio::test]
async fn a_cluster_name_that_cannot_name_a_service_is_reported_as_invalid() {
    let e = env();
    e.add_cluster("9lives", json!({"brokers": 1}));
    let action = e.reconcile_cluster("9lives").await;
    assert_eq!(action, Action::await_change());
    assert!(e.kube.keys(&format!("/api/v1/namespaces/{NS}/services")).is_empty());
    let c = e.cluster("9lives").await;
    let ready = condition(&c, "Ready").expect("status written");
    assert_eq!((ready.0.as_str(), ready.1.as_str()), ("False", "InvalidSpec"));
    assert!(ready.2.contains("cannot name its Services"), "{ready:?}");
    assert_eq!(condition(&c, "Degraded").map(|c| c.0), Some("True".into()));
    assert!(e.kube.event_reasons().contains(&"InvalidSpec".to_string()));
}

#[tokio::test]
async fn paused_cluster_applies_nothing() {
    let e = env();
    e.add_cluster("demo", json!({"brokers": 3, "paused": true}));
    e.reconcile_cluster("demo").await;
    assert!(
        e.kube
            .keys(&format!("/apis/apps/v1/namespaces/{NS}/statefulsets"))
            .is_empty()
    );
    assert!(e.kube.keys(&format!("/api/v1/namespaces/{NS}/configmaps")).is_empty());
    let c = e.cluster("demo").await;
    assert_eq!(condition(&c, "Ready").map(|c| c.1), Some("ReconciliationPaused".into()));
    e.kube.edit_spec(&cluster_key("demo"), json!({"paused": false}));
    e.converge_cluster("demo").await;
}

// -- topics ---------------------------------------------------------------------------------

fn endpoint() -> String {
    format!("http://demo-brokers.{NS}.svc:9645")
}

async fn topic_env() -> Env {
    let e = env();
    e.add_cluster("demo", json!({"brokers": 1}));
    e.converge_cluster("demo").await;
    e
}

#[tokio::test]
async fn topic_create_grow_and_refused_decrease() {
    let e = topic_env().await;
    e.add_topic(
        "orders",
        json!({"clusterRef": {"name": "demo"}, "partitions": 12,
        "config": {"retention.ms": "60000", "segment.bytes": null}}),
    );
    e.reconcile_topic("orders").await.expect("reconcile");
    let t = e.topic("orders").await.expect("topic");
    assert!(
        t.metadata
            .finalizers
            .as_ref()
            .is_some_and(|f| f.contains(&FINALIZER.to_string()))
    );
    let live = e.admin.topic("orders").expect("created");
    assert_eq!(live.partitions, 12);
    assert_eq!(live.configs.get("retention.ms").map(String::as_str), Some("60000"));
    assert!(!live.configs.contains_key("segment.bytes"), "null = not managed");
    let status = t.status.clone().expect("status");
    assert_eq!(status.topic_id.as_deref(), Some(live.topic_id.as_str()));
    assert_eq!(status.partitions, Some(12));
    assert_eq!(condition(&t, "Ready").map(|c| c.0), Some("True".into()));
    assert!(e.kube.event_reasons().contains(&"Created".to_string()));

    e.kube.edit_spec(&topic_key("orders"), json!({"partitions": 24}));
    e.reconcile_topic("orders").await.expect("reconcile");
    assert_eq!(e.admin.topic("orders").expect("topic").partitions, 24);
    let t = e.topic("orders").await.expect("topic");
    assert_eq!(t.status.as_ref().and_then(|s| s.partitions), Some(24));
    assert_eq!(
        t.status.as_ref().and_then(|s| s.observed_generation),
        t.metadata.generation
    );

    // Lower: NotSupported, nothing changes on the broker.
    let calls_before = e.admin.calls().len();
    e.kube.edit_spec(
        &topic_key("orders"),
        json!({"partitions": 12, "config": {"retention.ms": "1"}}),
    );
    e.reconcile_topic("orders").await.expect("reconcile");
    let t = e.topic("orders").await.expect("topic");
    let ready = condition(&t, "Ready").expect("ready");
    assert_eq!((ready.0.as_str(), ready.1.as_str()), ("False", "NotSupported"));
    assert!(ready.2.contains("cannot be decreased"), "{ready:?}");
    assert_eq!(e.admin.topic("orders").expect("topic").partitions, 24);
    assert_eq!(e.admin.topic("orders").expect("topic").configs["retention.ms"], "60000");
    assert!(
        e.admin.calls()[calls_before..]
            .iter()
            .all(|c| c.starts_with("describe")),
        "{:?}",
        e.admin.calls()
    );
    assert!(e.kube.event_reasons().contains(&"NotSupported".to_string()));
}

#[tokio::test]
async fn topic_drift_is_corrected_and_unmanaged_keys_are_left_alone() {
    let e = topic_env().await;
    e.add_topic(
        "orders",
        json!({"clusterRef": {"name": "demo"}, "partitions": 3,
        "config": {"retention.ms": "60000", "segment.bytes": null}}),
    );
    e.reconcile_topic("orders").await.expect("reconcile");
    e.admin.tamper("orders", |t| {
        t.configs.insert("retention.ms".into(), "1".into());
        t.configs.insert("segment.bytes".into(), "1048576".into());
    });
    e.reconcile_topic("orders").await.expect("reconcile");
    let live = e.admin.topic("orders").expect("topic");
    assert_eq!(live.configs["retention.ms"], "60000", "drift reverted");
    assert_eq!(live.configs["segment.bytes"], "1048576", "not managed here");
    let t = e.topic("orders").await.expect("topic");
    assert_eq!(
        t.status
            .expect("status")
            .topic_configuration
            .get("segment.bytes")
            .map(String::as_str),
        Some("1048576"),
        "the live config is visible in status"
    );
    assert!(e.kube.event_reasons().contains(&"ConfigUpdated".to_string()));
}

#[tokio::test]
async fn topic_delete_honours_the_deletion_policy() {
    let e = topic_env().await;
    e.add_topic("gone", json!({"clusterRef": {"name": "demo"}, "partitions": 1}));
    e.add_topic(
        "kept",
        json!({"clusterRef": {"name": "demo"}, "partitions": 1, "deletionPolicy": "Retain"}),
    );
    e.reconcile_topic("gone").await.expect("reconcile");
    e.reconcile_topic("kept").await.expect("reconcile");
    for name in ["gone", "kept"] {
        e.kube.delete(&topic_key(name));
        e.reconcile_topic(name).await.expect("reconcile");
        assert!(e.topic(name).await.is_none(), "{name}: finalizer removed, object gone");
    }
    assert!(e.admin.topic("gone").is_none(), "Delete policy deletes the topic");
    assert!(e.admin.topic("kept").is_some(), "Retain policy keeps it");
    assert!(e.admin.calls().contains(&format!("delete {} gone", endpoint())));
}

#[tokio::test]
async fn finalizer_does_not_block_when_the_cluster_or_its_brokers_are_gone() {
    let e = topic_env().await;
    e.add_topic("a", json!({"clusterRef": {"name": "demo"}, "partitions": 1}));
    e.reconcile_topic("a").await.expect("reconcile");
    // Brokers unreachable while the cluster reports ready brokers: retry, keep the finalizer.
    e.admin.set_unreachable(true);
    e.kube.delete(&topic_key("a"));
    let err = e
        .reconcile_topic("a")
        .await
        .expect_err("retry while brokers should be there");
    assert_eq!(err.reason(), "AdminUnreachable");
    assert!(e.topic("a").await.is_some());
    // The cluster is deleted: the finalizer goes without any admin call.
    let calls = e.admin.calls().len();
    e.kube.remove(&cluster_key("demo"));
    e.reconcile_topic("a").await.expect("reconcile");
    assert!(e.topic("a").await.is_none());
    assert_eq!(e.admin.calls().len(), calls);
    assert!(e.kube.event_reasons().contains(&"ClusterGone".to_string()));

    // A cluster with no ready brokers and unreachable admin API: the finalizer goes too.
    e.add_cluster("demo", json!({"brokers": 1}));
    e.add_topic("b", json!({"clusterRef": {"name": "demo"}, "partitions": 1}));
    e.reconcile_topic("b").await.expect("reconcile");
    e.kube.delete(&topic_key("b"));
    e.reconcile_topic("b").await.expect("reconcile");
    assert!(e.topic("b").await.is_none());
    assert!(e.kube.event_reasons().contains(&"BrokersGone".to_string()));
}

#[tokio::test]
async fn topic_waits_for_its_cluster_and_reports_refusals_and_pause() {
    let e = env();
    e.add_topic(
        "t",
        json!({"clusterRef": {"name": "later"}, "partitions": 2, "config": {"bad.config": "1"}}),
    );
    e.reconcile_topic("t").await.expect("reconcile");
    let t = e.topic("t").await.expect("topic");
    assert_eq!(condition(&t, "Ready").map(|c| c.1), Some("ClusterNotFound".into()));
    e.add_cluster("later", json!({"brokers": 1}));
    e.reconcile_topic("t").await.expect("reconcile");
    let t = e.topic("t").await.expect("topic");
    let ready = condition(&t, "Ready").expect("ready");
    assert_eq!(ready.1, "Rejected");
    assert!(ready.2.contains("bad.config"), "{ready:?}");
    e.admin.set_unreachable(true);
    e.kube
        .edit_spec(&topic_key("t"), json!({"config": {"bad.config": null}}));
    e.reconcile_topic("t").await.expect("reconcile");
    let t = e.topic("t").await.expect("topic");
    assert_eq!(condition(&t, "Ready").map(|c| c.1), Some("AdminApiUnavailable".into()));
    e.admin.set_unreachable(false);
    e.kube.edit_spec(&topic_key("t"), json!({"paused": true}));
    let calls = e.admin.calls().len();
    e.reconcile_topic("t").await.expect("reconcile");
    let t = e.topic("t").await.expect("topic");
    assert_eq!(condition(&t, "Ready").map(|c| c.1), Some("ReconciliationPaused".into()));
    assert_eq!(e.admin.calls().len(), calls, "paused: no admin calls");
    e.kube.edit_spec(&topic_key("t"), json!({"paused": false}));
    e.reconcile_topic("t").await.expect("reconcile");
    let t = e.topic("t").await.expect("topic");
    assert_eq!(condition(&t, "Ready").map(|c| c.0), Some("True".into()));
}

#[tokio::test]
async fn adding_topic_name_to_an_existing_topic_is_refused_and_delete_removes_the_managed_topic() {
    let e = topic_env().await;
    e.add_topic("orders", json!({"clusterRef": {"name": "demo"}, "partitions": 3}));
    e.reconcile_topic("orders").await.expect("reconcile");
    assert!(e.admin.topic("orders").is_some());
    // An API server without the CRD's transition rule lets the edit through.
    e.kube
        .edit_spec(&topic_key("orders"), json!({"topicName": "orders.v2"}));
    e.reconcile_topic("orders").await.expect("reconcile");
    assert!(e.admin.topic("orders.v2").is_none(), "no second Kafka topic");
    let t = e.topic("orders").await.expect("topic");
    let ready = condition(&t, "Ready").expect("ready");
    assert_eq!(
        (ready.0.as_str(), ready.1.as_str()),
        ("False", "TopicNameChanged"),
        "{ready:?}"
    );
    assert!(
        ready.2.contains("orders.v2") && ready.2.contains("manages orders"),
        "{ready:?}"
    );
    assert_eq!(t.status.as_ref().and_then(|s| s.topic_name.as_deref()), Some("orders"));
    assert!(e.kube.event_reasons().contains(&"TopicNameChanged".to_string()));
    // Deleting the Topic deletes the Kafka topic it manages, not the name in the spec.
    e.kube.delete(&topic_key("orders"));
    e.reconcile_topic("orders").await.expect("reconcile");
    assert!(e.topic("orders").await.is_none());
    assert!(e.admin.topic("orders").is_none(), "the managed topic is deleted");
    assert!(e.admin.calls().contains(&format!("delete {} orders", endpoint())));
}

fn broker1() -> String {
    format!("http://demo-broker-1.demo-brokers.{NS}.svc:9645")
}

#[tokio::test]
async fn scale_in_of_a_broker_the_cluster_does_not_know_finishes() {
    let e = env();
    e.add_cluster("demo", json!({"brokers": 1}));
    e.converge_cluster("demo").await;
    e.kube.edit_spec(&cluster_key("demo"), json!({"brokers": 2}));
    e.converge_cluster("demo").await;
    // Broker 1 never registered: its admin API answers NOT_FOUND ("not in this cluster").
    e.admin.set_unknown(1);
    e.kube.edit_spec(&cluster_key("demo"), json!({"brokers": 1}));
    let c = e.converge_cluster("demo").await;
    assert_eq!(e.replicas("demo-broker"), 1);
    assert!(c.status.expect("status").drain.is_none());
    assert!(e.admin.calls().contains(&format!("drain {} 1", broker1())));
}

#[tokio::test]
async fn an_unreachable_broker_is_drained_only_if_its_pod_never_ran() {
    let e = env();
    e.add_cluster("demo", json!({"brokers": 2}));
    e.converge_cluster("demo").await;
    e.admin.set_unreachable(true);
    let pod_key = format!("/api/v1/namespaces/{NS}/pods/demo-broker-1");
    let claim_key = format!("/api/v1/namespaces/{NS}/persistentvolumeclaims/data-demo-broker-1");
    // The pod ran (and restarted): it may hold data, so the drain waits.
    e.kube.put(
        &pod_key,
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "demo-broker-1", "namespace": NS,
            "creationTimestamp": "2026-01-01T00:00:00Z"},
            "status": {"phase": "Running", "containerStatuses": [{"name": "broker", "image": "x", "imageID": "",
                "ready": false, "restartCount": 1, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}}),
    );
    e.kube.put(
        &claim_key,
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data-demo-broker-1", "namespace": NS, "creationTimestamp": "2026-01-01T00:00:00Z"}}),
    );
    e.kube.edit_spec(&cluster_key("demo"), json!({"brokers": 1}));
    e.reconcile_cluster("demo").await;
    assert_eq!(
        e.replicas("demo-broker"),
        2,
        "not shrunk while the broker may hold data"
    );
    let c = e.cluster("demo").await;
    let drain = c.status.expect("status").drain.expect("drain");
    assert_eq!(drain.state, "InProgress");
    assert!(drain.message.contains("admin api unreachable"), "{drain:?}");
    // The pod is Pending and never started a container, with a volume made for it: nothing to drain.
    e.kube.put(
        &pod_key,
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "demo-broker-1", "namespace": NS,
            "creationTimestamp": "2026-01-01T00:00:01Z"},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                "reason": "Unschedulable"}]}}),
    );
    e.reconcile_cluster("demo").await;
    assert_eq!(
        e.replicas("demo-broker"),
        1,
        "a broker that never ran is drained by definition"
    );
}

#[tokio::test]
async fn a_reverted_scale_in_cancels_the_drain() {
    let e = env();
    e.add_cluster("demo", json!({"brokers": 2}));
    e.converge_cluster("demo").await;
    e.kube.edit_spec(&cluster_key("demo"), json!({"brokers": 1}));
    e.reconcile_cluster("demo").await;
    assert_eq!(e.admin.drain_state(1), Some(pb::DrainState::InProgress));
    // Scaled out again before the drain finished: broker 1 stays, its drain is cancelled; while
    // its admin API cannot be reached the cancellation is kept in status and retried.
    e.admin.set_unreachable(true);
    e.kube.edit_spec(&cluster_key("demo"), json!({"brokers": 2}));
    e.reconcile_cluster("demo").await;
    let drain = e.cluster("demo").await.status.expect("status").drain.expect("drain");
    assert_eq!(
        (drain.state.as_str(), drain.cancelling.clone()),
        ("Cancelling", vec![1]),
        "{drain:?}"
    );
    assert_eq!(e.admin.drain_state(1), Some(pb::DrainState::InProgress));
    e.admin.set_unreachable(false);
    let c = e.converge_cluster("demo").await;
    assert!(c.status.expect("status").drain.is_none());
    assert_eq!(e.admin.drain_state(1), Some(pb::DrainState::NotDraining));
    assert!(e.admin.calls().contains(&format!("cancel {} 1", broker1())));
    assert!(e.kube.event_reasons().contains(&"DrainCancelled".to_string()));
    assert_eq!(e.replicas("demo-broker"), 2);
}

#[tokio::test]
async fn a_rolling_update_with_every_broker_ready_says_rolling_update() {
    let e = env();
    e.add_cluster("demo", json!({"brokers": 2}));
    e.converge_cluster("demo").await;
    e.kube
        .edit_spec(&cluster_key("demo"), json!({"config": {"topics.num_partitions": "6"}}));
    e.reconcile_cluster("demo").await;
    // The StatefulSet controller has replaced one pod; both are ready.
    let mut sts = e.sts("demo-broker");
    sts["status"] = json!({"replicas": 2, "readyReplicas": 2, "updatedReplicas": 1, "availableReplicas": 2});
    e.kube.put(&sts_key("demo-broker"), sts);
    e.reconcile_cluster("demo").await;
    let c = e.cluster("demo").await;
    let ready = condition(&c, "Ready").expect("ready");
    assert_eq!(
        (ready.0.as_str(), ready.1.as_str()),
        ("False", "RollingUpdate"),
        "{ready:?}"
    );
    assert!(ready.2.contains("1/2 brokers updated"), "{ready:?}");
    assert_eq!(condition(&c, "Progressing").map(|c| c.1), Some("RollingUpdate".into()));
    e.converge_cluster("demo").await;
}

#[tokio::test]
async fn pods_the_statefulset_cannot_create_make_the_cluster_degraded() {
    let e = env();
    e.add_cluster("demo", json!({"brokers": 1}));
    e.reconcile_cluster("demo").await;
    // What the StatefulSet controller reports when admission refuses the pod.
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    e.kube.put(
        &format!("/api/v1/namespaces/{NS}/events/demo-broker.1"),
        json!({"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "demo-broker.1", "namespace": NS},
            "involvedObject": {"kind": "StatefulSet", "name": "demo-broker", "namespace": NS},
            "reason": "FailedCreate", "type": "Warning", "lastTimestamp": now,
            "message": "create Pod demo-broker-0 in StatefulSet demo-broker failed error: pods \"demo-broker-0\" is forbidden: violates PodSecurity \"restricted:latest\""}),
    );
    // An old one of another StatefulSet does not count.
    e.kube.put(
        &format!("/api/v1/namespaces/{NS}/events/other.1"),
        json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "other.1", "namespace": NS},
            "involvedObject": {"kind": "StatefulSet", "name": "other"}, "reason": "FailedCreate",
            "lastTimestamp": now, "message": "not ours"}),
    );
    e.reconcile_cluster("demo").await;
    let c = e.cluster("demo").await;
    let degraded = condition(&c, "Degraded").expect("degraded");
    assert_eq!(
        (degraded.0.as_str(), degraded.1.as_str()),
        ("True", "PodCreationFailed"),
        "{degraded:?}"
    );
    assert!(degraded.2.contains("violates PodSecurity"), "{degraded:?}");
    assert!(!degraded.2.contains("not ours"), "{degraded:?}");
    assert_eq!(condition(&c, "Ready").map(|c| c.1), Some("PodCreationFailed".into()));
    assert!(e.kube.event_reasons().contains(&"PodCreationFailed".to_string()));
    // Once the pods exist, the old event no longer matters.
    let c = e.converge_cluster("demo").await;
    assert_eq!(condition(&c, "Degraded").map(|c| c.0), Some("False".into()));
}

#[tokio::test]
async fn events_with_the_same_reason_keep_their_own_message() {
    let e = env();
    e.add_cluster("demo", three_zones(3));
    e.converge_cluster("demo").await;
    e.kube.edit_spec(&cluster_key("demo"), json!({"brokers": 6}));
    e.converge_cluster("demo").await;
    e.add_topic("orders", json!({"clusterRef": {"name": "demo"}, "partitions": 1}));
    e.reconcile_topic("orders").await.expect("reconcile");
    e.add_topic("events", json!({"clusterRef": {"name": "demo"}, "partitions": 1}));
    e.reconcile_topic("events").await.expect("reconcile");
    let notes = e.kube.event_notes();
    let scaled: Vec<&String> = notes.iter().filter(|(r, _)| r == "ScaledOut").map(|(_, n)| n).collect();
    for rack in ["zone-a", "zone-b", "zone-c"] {
        assert_eq!(
            scaled.iter().filter(|n| n.contains(&format!("rack {rack} "))).count(),
            1,
            "one ScaledOut event names {rack}: {scaled:?}"
        );
    }
    let created: Vec<&String> = notes
        .iter()
        .filter(|(r, n)| r == "Created" && n.starts_with("created topic"))
        .map(|(_, n)| n)
        .collect();
    assert!(created.iter().any(|n| n.contains("topic orders ")), "{created:?}");
    assert!(created.iter().any(|n| n.contains("topic events ")), "{created:?}");
}
