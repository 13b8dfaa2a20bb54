//! The operator runtime pieces without an API server: leader election through a Lease kept by
//! the fake Kubernetes API (two candidates, expiry, release), losing the Lease (health 503, the
//! run ends with an error so the process exits), and the `/metrics` + `/health` endpoint with
//! graceful shutdown.

mod fake;

use std::sync::Arc;
use std::time::Duration;

use fake::FakeKube;
use fjord_operator::lease::LeaseLock;
use fjord_operator::metrics::Metrics;
use fjord_operator::run::serve_http;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn only_one_candidate_holds_the_lease_until_it_expires_or_is_released() {
    let kube = FakeKube::default();
    let lease = Duration::from_secs(1);
    let a = LeaseLock::new(kube.client(), "ops", "fjord-operator", "a", lease);
    let b = LeaseLock::new(kube.client(), "ops", "fjord-operator", "b", lease);
    assert!(a.try_acquire_or_renew().await.expect("a"), "a creates the lease");
    assert!(!b.try_acquire_or_renew().await.expect("b"), "b must wait");
    assert!(a.try_acquire_or_renew().await.expect("renew"), "a renews");
    let stored = kube
        .get("/apis/coordination.k8s.io/v1/namespaces/ops/leases/fjord-operator")
        .expect("lease");
    assert_eq!(stored["spec"]["holderIdentity"], "a");
    // a stops renewing: once the lease duration has passed b takes over and a has lost it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !b.try_acquire_or_renew().await.expect("b") {
        assert!(std::time::Instant::now() < deadline, "b takes the expired lease");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!a.try_acquire_or_renew().await.expect("a"), "a lost it");
    let stored = kube
        .get("/apis/coordination.k8s.io/v1/namespaces/ops/leases/fjord-operator")
        .expect("lease");
    assert_eq!(stored["spec"]["leaseTransitions"], 1);
    // A graceful shutdown releases it: a takes over at once.
    b.release().await.expect("release");
    assert!(a.try_acquire_or_renew().await.expect("a"), "released lease is free");
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    try_http_get(addr, path).await.expect("http get")
}

/// None if the endpoint is closed.
async fn try_http_get(addr: std::net::SocketAddr, path: &str) -> Option<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut out = String::new();
    stream.read_to_string(&mut out).await.ok()?;
    Some(out)
}

#[tokio::test]
async fn metrics_and_health_are_served_until_shutdown() {
    let metrics = Arc::new(Metrics::default());
    metrics.reconciled("Cluster", Duration::from_millis(20));
    metrics.failed("Topic", "AdminUnreachable");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(serve_http(listener, metrics.clone(), rx));
    let health = http_get(addr, "/health").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let body = http_get(addr, "/metrics").await;
    assert!(
        body.contains(r#"fjord_operator_reconciles_total{kind="Cluster"} 1"#),
        "{body}"
    );
    assert!(
        body.contains(r#"fjord_operator_reconcile_failures_total{kind="Topic",reason="AdminUnreachable"} 1"#),
        "{body}"
    );
    assert!(
        body.contains("fjord_operator_reconcile_duration_seconds_bucket"),
        "{body}"
    );
    tx.send(true).expect("shutdown");
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("server stops on shutdown")
        .expect("join");
}

#[tokio::test]
async fn health_answers_503_with_the_reason_once_failed() {
    use fjord_operator::run::{Health, serve_http_with_health};
    let health = Arc::new(Health::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(serve_http_with_health(
        listener,
        Arc::new(Metrics::default()),
        health.clone(),
        rx,
    ));
    assert!(http_get(addr, "/health").await.starts_with("HTTP/1.1 200"));
    health.fail("lost leadership: another operator holds the lease");
    let answer = http_get(addr, "/health").await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("another operator holds the lease"), "{answer}");
    tx.send(true).expect("shutdown");
    server.await.expect("join");
}

#[tokio::test]
async fn an_unreadable_object_is_reported_in_status_and_skipped() {
    use fjord_crds::Cluster;
    use kube::core::DeserializeGuard;
    let kube = FakeKube::default();
    let ctx = Arc::new(fjord_operator::context::Context::new(
        kube.client(),
        Arc::new(fjord_operator::admin::GrpcAdmin::default()),
        Arc::new(Metrics::default()),
        None,
    ));
    let key = "/apis/fjord.dev/v1alpha1/namespaces/ns/clusters/bad";
    // As written against another CRD version: brokers is not a number.
    kube.put(
        key,
        serde_json::json!({"apiVersion": "fjord.dev/v1alpha1", "kind": "Cluster",
            "metadata": {"name": "bad", "namespace": "ns"}, "spec": {"brokers": "three"}}),
    );
    let api: kube::Api<DeserializeGuard<Cluster>> = kube::Api::namespaced(kube.client(), "ns");
    let guard = api.get("bad").await.expect("get");
    assert!(guard.0.is_err(), "the object does not deserialize");
    let action = fjord_operator::run::reconcile_cluster(Arc::new(guard), ctx)
        .await
        .expect("reported, not failed");
    assert_eq!(action, kube::runtime::controller::Action::await_change());
    let stored = kube.get(key).expect("object");
    let condition = &stored["status"]["conditions"][0];
    assert_eq!(condition["reason"], "InvalidObject", "{stored}");
    assert!(
        condition["message"].as_str().unwrap_or("").contains("three"),
        "{stored}"
    );
    assert!(kube.event_reasons().contains(&"InvalidObject".to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_lease_reports_it_on_health_and_ends_the_process() {
    use fjord_operator::run::{Settings, run};
    let kube = FakeKube::default();
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port");
    let settings = Settings {
        listen,
        namespace: None,
        lease: Some(("fjord-operator".into(), "ops".into())),
        identity: "a".into(),
        topic_resync: Duration::from_secs(60),
        admin_endpoint_override: None,
        lease_duration: Duration::from_secs(3),
    };
    let operator = tokio::spawn(run(kube.client(), settings));
    let key = "/apis/coordination.k8s.io/v1/namespaces/ops/leases/fjord-operator";
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while kube.get(key).is_none_or(|l| l["spec"]["holderIdentity"] != "a") {
        assert!(std::time::Instant::now() < deadline, "a takes the lease");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(http_get(listen, "/health").await.starts_with("HTTP/1.1 200"));
    // Another replica holds the Lease now (a's renewals did not get through in time).
    let mut lease = kube.get(key).expect("lease");
    lease["spec"]["holderIdentity"] = serde_json::json!("b");
    lease["spec"]["renewTime"] = serde_json::json!(k8s_openapi::jiff::Timestamp::now().to_string());
    lease["spec"]["leaseDurationSeconds"] = serde_json::json!(60);
    kube.put(key, lease);
    // Within a renew interval (1s here) a stops: its /health turns 503 and its HTTP endpoint
    // closes once the controllers have stopped ...
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let Some(health) = try_http_get(listen, "/health").await else {
            break;
        };
        if health.starts_with("HTTP/1.1 503") {
            assert!(health.contains("lost leadership"), "{health}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "health still says: {health}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // ... and the run ends with an error (the process exits non-zero and is restarted).
    let result = tokio::time::timeout(Duration::from_secs(20), operator)
        .await
        .expect("the operator stops after losing its lease")
        .expect("join");
    let error = result.expect_err("lost leadership is an error exit");
    assert!(
        error
            .to_string()
            .contains("lost leadership: another operator holds the lease"),
        "{error}"
    );
    assert_eq!(
        kube.get(key).expect("lease")["spec"]["holderIdentity"],
        "b",
        "the new holder keeps the lease"
    );
}
