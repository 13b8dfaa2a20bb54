//! Kubernetes scenarios: install the chart, run a Cluster and a Topic, produce/consume, scale,
//! pause, delete with no finalizer hang. They run only when `KUBECONFIG` points at a cluster
//! (kind/k3d in a pipeline that has one) and print "skipped: KUBECONFIG not set" otherwise.
//!
//! Images: `FJORD_E2E_OPERATOR_IMAGE` and `FJORD_E2E_BROKER_IMAGE` (repository:tag, loaded into the
//! cluster beforehand, e.g. `kind load docker-image`); the chart's defaults otherwise.
//! Needs `kubectl` on PATH; helm comes from scripts/helm.sh.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const NS: &str = "fjord-e2e";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn kube_available() -> bool {
    match std::env::var("KUBECONFIG") {
        Ok(path) if !path.is_empty() => true,
        _ => {
            // Straight to stderr, not eprintln!: libtest captures the print macros, and this line
            // must show in a normal `cargo test` run.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "skipped: KUBECONFIG not set (the Kubernetes scenarios need a cluster)"
            );
            false
        }
    }
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn kubectl(args: &[&str]) -> String {
    String::from_utf8_lossy(&run(Command::new("kubectl").args(["-n", NS]).args(args)).stdout).into_owned()
}

fn kubectl_apply(yaml: &str) {
    use std::io::Write;
    let mut child = Command::new("kubectl")
        .args(["-n", NS, "apply", "--server-side", "--force-conflicts", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("spawn kubectl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(yaml.as_bytes())
        .expect("write manifest");
    assert!(
        child.wait().expect("kubectl apply").success(),
        "kubectl apply failed for:\n{yaml}"
    );
}

fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_secs(2));
    }
}

fn jsonpath(kind_name: &str, path: &str) -> String {
    kubectl(&["get", kind_name, "-o", &format!("jsonpath={path}")])
}

fn image_parts(var: &str) -> Option<(String, String)> {
    let image = std::env::var(var).ok()?;
    let (repo, tag) = image.rsplit_once(':')?;
    Some((repo.to_string(), tag.to_string()))
}

fn cluster_yaml(brokers: u32, paused: bool) -> String {
    let image = std::env::var("FJORD_E2E_BROKER_IMAGE")
        .map(|i| format!("  image: {i}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: fjord.dev/v1alpha1\nkind: Cluster\nmetadata:\n  name: e2e\nspec:\n  brokers: {brokers}\n  paused: {paused}\n  storage: {{size: 1Gi}}\n{image}"
    )
}

const TOPIC: &str = "apiVersion: fjord.dev/v1alpha1\nkind: Topic\nmetadata:\n  name: e2e-events\nspec:\n  clusterRef: {name: e2e}\n  partitions: 3\n  replicationFactor: 1\n  config: {retention.ms: \"3600000\"}\n";

/// Runs kcat inside the cluster (brokers advertise pod DNS names, which a port-forwarded client
/// outside the cluster cannot resolve), against the Cluster's client Service.
fn kcat(name: &str, args: &str, stdin: Option<&str>) -> String {
    let script = match stdin {
        Some(data) => format!("printf '{data}' | kcat -b e2e:9092 {args}"),
        None => format!("kcat -b e2e:9092 {args}"),
    };
    kubectl(&[
        "run",
        name,
        "--rm",
        "-i",
        "--restart=Never",
        "--image=edenhill/kcat:1.7.1",
        "--command",
        "--",
        "sh",
        "-c",
        &script,
    ])
}

#[test]
fn chart_cluster_topic_lifecycle() {
    if !kube_available() {
        return;
    }
    let helm = root().join("scripts/helm.sh");
    let chart = root().join("charts/fjord-operator");
    let mut install = Command::new(&helm);
    install.args(["upgrade", "--install", "fjord-e2e"]).arg(&chart).args([
        "-n",
        NS,
        "--create-namespace",
        "--wait",
        "--timeout",
        "5m",
        "--set",
        "replicaCount=1",
        "--set",
        "leaderElection.enabled=false",
    ]);
    if let Some((repo, tag)) = image_parts("FJORD_E2E_OPERATOR_IMAGE") {
        install.args([
            "--set",
            &format!("image.repository={repo}"),
            "--set",
            &format!("image.tag={tag}"),
        ]);
    }
    run(&mut install);

    // A one-broker Cluster becomes Ready.
    kubectl_apply(&cluster_yaml(1, false));
    run(Command::new("kubectl").args(["-n", NS, "wait", "cluster/e2e", "--for=condition=Ready", "--timeout=5m"]));
    assert_eq!(jsonpath("cluster/e2e", "{.status.readyBrokers}"), "1");

    // A Topic becomes Ready with its partitions, and data goes through the brokers.
    kubectl_apply(TOPIC);
    run(Command::new("kubectl").args([
        "-n",
        NS,
        "wait",
        "topic/e2e-events",
        "--for=condition=Ready",
        "--timeout=2m",
    ]));
    assert_eq!(jsonpath("topic/e2e-events", "{.status.partitions}"), "3");
    kcat("e2e-produce", "-t e2e-events -P -p 0", Some("one\\ntwo\\nthree\\n"));
    let consumed = kcat("e2e-consume", "-t e2e-events -C -p 0 -o beginning -c 3 -e", None);
    assert_eq!(
        consumed.lines().filter(|l| ["one", "two", "three"].contains(l)).count(),
        3,
        "{consumed}"
    );

    // The admin API answers through a port-forward (health of the broker's gRPC service).
    let mut pf = Command::new("kubectl")
        .args(["-n", NS, "port-forward", "svc/e2e", "19645:9645"])
        .spawn()
        .expect("port-forward");
    wait_for("the port-forward", Duration::from_secs(30), || {
        std::net::TcpStream::connect(("127.0.0.1", 19645)).is_ok()
    });
    let _ = pf.kill();
    let _ = pf.wait();

    // Scale out through the scale subresource (what an HPA uses), then back in.
    kubectl(&["scale", "cluster/e2e", "--replicas=2"]);
    wait_for("2 ready brokers", Duration::from_secs(300), || {
        jsonpath("cluster/e2e", "{.status.readyBrokers}") == "2"
    });
    kubectl(&["scale", "cluster/e2e", "--replicas=1"]);
    wait_for(
        "scale-in to 1 broker (drain of the empty broker)",
        Duration::from_secs(300),
        || jsonpath("cluster/e2e", "{.status.brokers}") == "1",
    );

    // Paused: spec changes are not acted on and the reason says so.
    kubectl_apply(&cluster_yaml(2, true));
    wait_for("ReconciliationPaused", Duration::from_secs(60), || {
        jsonpath("cluster/e2e", "{.status.conditions[*].reason}").contains("ReconciliationPaused")
    });
    std::thread::sleep(Duration::from_secs(10));
    assert_eq!(
        jsonpath("cluster/e2e", "{.status.brokers}"),
        "1",
        "a paused Cluster must not scale"
    );
    kubectl_apply(&cluster_yaml(1, false));

    // Delete the Topic (finalizer removed by the operator), then the Cluster: nothing hangs.
    run(Command::new("kubectl").args(["-n", NS, "delete", "topic/e2e-events", "--timeout=2m"]));
    run(Command::new("kubectl").args(["-n", NS, "delete", "cluster/e2e", "--timeout=2m"]));
    wait_for(
        "the Cluster's StatefulSets to be garbage-collected",
        Duration::from_secs(180),
        || {
            kubectl(&[
                "get",
                "statefulsets",
                "-l",
                "app.kubernetes.io/instance=e2e",
                "-o",
                "name",
            ])
            .trim()
            .is_empty()
        },
    );
    run(Command::new(&helm).args(["uninstall", "fjord-e2e", "-n", NS, "--wait"]));
}
