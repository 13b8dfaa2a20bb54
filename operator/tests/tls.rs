//! The operator against an API server over HTTPS, built the way a release is: this test binary
//! and the `fjord-operator` binary it starts have two rustls crypto providers compiled in (ring
//! from this crate's dev-dependencies, aws-lc-rs from kube), as a workspace build had when it
//! made `Client::try_default` panic with "Could not automatically determine the process-level
//! CryptoProvider". The fake API server (tests/fake) is served with a committed test certificate.

mod fake;

use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fake::FakeKube;
use fake::tls::kubeconfig;
use k8s_openapi::api::core::v1::ConfigMap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
}

async fn http_status(addr: SocketAddr, path: &str) -> Option<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut out = String::new();
    stream.read_to_string(&mut out).await.ok()?;
    out.lines().next().map(String::from)
}

#[tokio::test]
async fn a_kube_client_connects_over_tls_with_two_providers_compiled_in() {
    fjord_operator::install_crypto_provider();
    let kube = FakeKube::default();
    kube.put(
        "/api/v1/namespaces/default/configmaps/probe",
        serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "probe", "namespace": "default"}, "data": {"k": "v"}}),
    );
    let url = kube.serve_tls().await;
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::from_yaml(&kubeconfig(&url)).expect("kubeconfig"),
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .expect("config");
    let client = kube::Client::try_from(config).expect("client");
    let cm = kube::Api::<ConfigMap>::namespaced(client, "default")
        .get("probe")
        .await
        .expect("GET over https");
    assert_eq!(cm.data.expect("data")["k"], "v");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_binary_starts_against_an_https_api_server() {
    let kube = FakeKube::default();
    let url = kube.serve_tls().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("kubeconfig");
    std::fs::write(&config, kubeconfig(&url)).expect("write kubeconfig");
    let stderr = dir.path().join("stderr");
    let listen = free_addr();
    let mut child = Command::new(env!("CARGO_BIN_EXE_fjord-operator"))
        .env("KUBECONFIG", &config)
        .env("RUST_LOG", "info")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .args(["--listen", &listen.to_string()])
        .args([
            "--lease",
            "fjord-operator",
            "--lease-namespace",
            "ops",
            "--identity",
            "tls-test",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).expect("stderr file"))
        .spawn()
        .expect("spawn fjord-operator");
    let lease = "/apis/coordination.k8s.io/v1/namespaces/ops/leases/fjord-operator";
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!(
                "fjord-operator exited ({status}): {}",
                std::fs::read_to_string(&stderr).unwrap_or_default()
            );
        }
        let leads = kube
            .get(lease)
            .is_some_and(|l| l["spec"]["holderIdentity"] == "tls-test");
        let watching = kube
            .requests()
            .iter()
            .any(|r| r.starts_with("WATCH /apis/fjord.dev/v1alpha1/clusters"));
        if leads && watching {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the operator did not take the lease and watch Clusters over https within 60s: {:?}\n{}",
            kube.requests(),
            std::fs::read_to_string(&stderr).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let health = http_status(listen, "/health").await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(health.as_deref(), Some("HTTP/1.1 200 OK"));
}
