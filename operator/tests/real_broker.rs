//! The operator's admin client against a real `fjord-broker` process (Kubernetes still faked):
//! a Topic is created, grown, refused a decrease, drift-corrected and deleted on the broker; a
//! Cluster scale-in asks the real broker to drain and reports honestly that one node has
//! nowhere to move its partitions; reverting it cancels the drain on the broker; a scale-in of a
//! broker that never joined finishes. Needs target/debug/fjord-broker (scripts/test.sh and
//! `cargo test --workspace` build it; or set FJORD_BROKER_BIN).

mod fake;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fake::FakeKube;
use fjord_api::v1 as pb;
use fjord_crds::{Cluster, Topic};
use fjord_operator::admin::{AdminApi, GrpcAdmin};
use fjord_operator::context::Context;
use fjord_operator::metrics::Metrics;
use kube::Api;
use serde_json::json;

const NS: &str = "streaming";

fn broker_bin() -> PathBuf {
    if let Ok(p) = std::env::var("FJORD_BROKER_BIN") {
        return PathBuf::from(p);
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var("CARGO_TARGET_DIR").map_or_else(|_| root.join("target"), PathBuf::from);
    let path = target.join("debug").join("fjord-broker");
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build -p fjord-broker --bins` or set FJORD_BROKER_BIN",
        path.display()
    );
    path
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

struct Broker {
    child: Child,
    admin: String,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts a broker on free ports; retries on fresh ports if another process took one first (the
/// broker exits at start-up, or a different broker answers on the admin port).
async fn start_broker(dir: &std::path::Path) -> Broker {
    for _ in 0..5 {
        let (kafka_port, admin_port) = (free_port(), free_port());
        let child = Command::new(broker_bin())
            .args(["--listen", &format!("127.0.0.1:{kafka_port}")])
            .args(["--http-listen", &format!("127.0.0.1:{}", free_port())])
            .args(["--data-dir", dir.to_str().expect("utf8")])
            .args(["--set", &format!("admin.listen=127.0.0.1:{admin_port}")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn fjord-broker");
        let mut broker = Broker {
            child,
            admin: format!("http://127.0.0.1:{admin_port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if broker.child.try_wait().expect("try_wait").is_some() {
                break;
            }
            if let Ok(channel) = tonic::transport::Endpoint::from_shared(broker.admin.clone())
                .expect("uri")
                .connect()
                .await
            {
                let answer = fjord_api::v1::admin_client::AdminClient::new(channel)
                    .describe_cluster(pb::DescribeClusterRequest {})
                    .await;
                if answer.is_ok_and(|c| {
                    c.get_ref()
                        .brokers
                        .iter()
                        .any(|b| b.kafka_address == format!("127.0.0.1:{kafka_port}"))
                }) {
                    return broker;
                }
            }
            assert!(Instant::now() < deadline, "broker admin port did not open");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    panic!("could not start a broker on free ports after 5 attempts");
}

fn ready(v: &serde_json::Value) -> (String, String, String) {
    let c = v["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready").cloned())
        .unwrap_or_default();
    (
        c["status"].as_str().unwrap_or("").into(),
        c["reason"].as_str().unwrap_or("").into(),
        c["message"].as_str().unwrap_or("").into(),
    )
}

#[tokio::test]
async fn topic_and_drain_against_a_real_broker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = start_broker(dir.path()).await;
    let kube = FakeKube::default();
    let grpc = Arc::new(GrpcAdmin::default());
    let mut ctx = Context::new(kube.client(), grpc.clone(), Arc::new(Metrics::default()), None);
    ctx.admin_endpoint_override = Some(broker.admin.clone());
    let ctx = Arc::new(ctx);
    let cluster_key = format!("/apis/fjord.dev/v1alpha1/namespaces/{NS}/clusters/demo");
    let topic_key = format!("/apis/fjord.dev/v1alpha1/namespaces/{NS}/topics/orders");
    kube.put(
        &cluster_key,
        json!({"apiVersion": "fjord.dev/v1alpha1", "kind": "Cluster",
        "metadata": {"name": "demo", "namespace": NS}, "spec": {"brokers": 1}}),
    );
    kube.put(
        &topic_key,
        json!({"apiVersion": "fjord.dev/v1alpha1", "kind": "Topic",
        "metadata": {"name": "orders", "namespace": NS},
        "spec": {"clusterRef": {"name": "demo"}, "partitions": 3, "config": {"retention.ms": "600000"}}}),
    );
    let topics: Api<Topic> = Api::namespaced(ctx.client.clone(), NS);
    let reconcile = || async {
        let t = topics.get("orders").await.expect("topic");
        fjord_operator::topic::reconcile(Arc::new(t), ctx.clone()).await
    };

    reconcile().await.expect("create");
    let live = grpc
        .describe_topic(&broker.admin, "orders")
        .await
        .expect("describe")
        .expect("exists");
    assert_eq!(live.partitions, 3);
    assert_eq!(live.configs.get("retention.ms").map(String::as_str), Some("600000"));
    let stored = kube.get(&topic_key).expect("topic");
    assert_eq!(ready(&stored).0, "True", "{stored}");
    assert_eq!(stored["status"]["topicId"], live.topic_id);

    kube.edit_spec(&topic_key, json!({"partitions": 5}));
    reconcile().await.expect("grow");
    let live = grpc
        .describe_topic(&broker.admin, "orders")
        .await
        .expect("describe")
        .expect("exists");
    assert_eq!(live.partitions, 5);

    // Drift made through the admin API behind the operator's back is reverted.
    grpc.alter_topic(
        &broker.admin,
        pb::AlterTopicRequest {
            name: "orders".into(),
            set_configs: [("retention.ms".to_string(), "1000".to_string())].into(),
            ..Default::default()
        },
    )
    .await
    .expect("tamper");
    reconcile().await.expect("drift");
    let live = grpc
        .describe_topic(&broker.admin, "orders")
        .await
        .expect("describe")
        .expect("exists");
    assert_eq!(live.configs.get("retention.ms").map(String::as_str), Some("600000"));

    kube.edit_spec(&topic_key, json!({"partitions": 2}));
    reconcile().await.expect("decrease refused in status");
    let stored = kube.get(&topic_key).expect("topic");
    assert_eq!(
        (ready(&stored).0.as_str(), ready(&stored).1.as_str()),
        ("False", "NotSupported")
    );
    let live = grpc
        .describe_topic(&broker.admin, "orders")
        .await
        .expect("describe")
        .expect("exists");
    assert_eq!(live.partitions, 5);

    // Scale-in of the one broker: the real broker says it cannot drain (nowhere to move).
    let clusters: Api<Cluster> = Api::namespaced(ctx.client.clone(), NS);
    let c = clusters.get("demo").await.expect("cluster");
    fjord_operator::cluster::reconcile::reconcile(Arc::new(c), ctx.clone())
        .await
        .expect("create");
    kube.set_ready();
    kube.edit_spec(&cluster_key, json!({"brokers": 0}));
    let c = clusters.get("demo").await.expect("cluster");
    fjord_operator::cluster::reconcile::reconcile(Arc::new(c), ctx.clone())
        .await
        .expect("scale-in");
    let stored = kube.get(&cluster_key).expect("cluster");
    assert_eq!(stored["status"]["drain"]["state"], "Blocked", "{stored}");
    assert!(
        stored["status"]["drain"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("nowhere to move"),
        "{stored}"
    );
    let sts = kube
        .get(&format!("/apis/apps/v1/namespaces/{NS}/statefulsets/demo-broker"))
        .expect("sts");
    assert_eq!(sts["spec"]["replicas"], 1, "not shrunk while the drain is blocked");
    let drain_state = || async {
        let channel = tonic::transport::Endpoint::from_shared(broker.admin.clone())
            .expect("uri")
            .connect()
            .await
            .expect("connect");
        fjord_api::v1::admin_client::AdminClient::new(channel)
            .get_drain_status(pb::GetDrainStatusRequest { broker_id: 0 })
            .await
            .expect("drain status")
            .into_inner()
            .state()
    };
    assert_eq!(drain_state().await, pb::DrainState::Blocked);

    // The scale-in is reverted: the operator cancels the drain on the broker.
    let reconcile_cluster = || async {
        let c = clusters.get("demo").await.expect("cluster");
        fjord_operator::cluster::reconcile::reconcile(Arc::new(c), ctx.clone())
            .await
            .expect("reconcile")
    };
    kube.edit_spec(&cluster_key, json!({"brokers": 1}));
    reconcile_cluster().await;
    assert_eq!(drain_state().await, pb::DrainState::NotDraining);
    let stored = kube.get(&cluster_key).expect("cluster");
    assert!(stored["status"]["drain"].is_null(), "{stored}");

    // 1 -> 2 -> 1 while broker 1 never joined: the broker answers NOT_FOUND for it ("not in this
    // cluster"), which is drained by definition, so the scale-in finishes.
    kube.edit_spec(&cluster_key, json!({"brokers": 2}));
    reconcile_cluster().await;
    kube.set_ready();
    kube.edit_spec(&cluster_key, json!({"brokers": 1}));
    reconcile_cluster().await;
    let sts = kube
        .get(&format!("/apis/apps/v1/namespaces/{NS}/statefulsets/demo-broker"))
        .expect("sts");
    assert_eq!(
        sts["spec"]["replicas"],
        1,
        "{}",
        kube.get(&cluster_key).expect("cluster")
    );

    // Delete with policy Delete removes the topic from the broker.
    kube.delete(&topic_key);
    reconcile().await.expect("delete");
    assert!(kube.get(&topic_key).is_none());
    assert!(
        grpc.describe_topic(&broker.admin, "orders")
            .await
            .expect("describe")
            .is_none()
    );
}
