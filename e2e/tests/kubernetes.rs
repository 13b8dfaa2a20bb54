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
    // The namespace enforces the `restricted` Pod Security level, so the client pod complies too.
    let overrides = format!(
        r#"{{"spec":{{"securityContext":{{"runAsNonRoot":true,"runAsUser":65532,"seccompProfile":{{"type":"RuntimeDefault"}}}},"containers":[{{"name":"{name}","image":"edenhill/kcat:1.7.1","command":["sh","-c",{script:?}],"stdin":true,"securityContext":{{"allowPrivilegeEscalation":false,"capabilities":{{"drop":["ALL"]}}}}}}]}}}}"#
    );
    kubectl(&[
        "run",
        name,
        "--rm",
        "-i",
        "--restart=Never",
        "--image=edenhill/kcat:1.7.1",
        &format!("--overrides={overrides}"),
        "--command",
        "--",
        "sh",
        "-c",
        &script,
    ])
}

/// `kubectl apply` that must be refused; returns kubectl's stderr.
fn kubectl_apply_refused(yaml: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("kubectl")
        .args(["-n", NS, "apply", "--server-side", "--force-conflicts", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn kubectl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(yaml.as_bytes())
        .expect("write manifest");
    let out = child.wait_with_output().expect("kubectl apply");
    assert!(!out.status.success(), "kubectl apply was accepted:\n{yaml}");
    String::from_utf8_lossy(&out.stderr).into_owned()
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
    // Broker pods comply with the `restricted` Pod Security level (issue 18): enforce it.
    run(Command::new("kubectl").args([
        "label",
        "namespace",
        NS,
        "pod-security.kubernetes.io/enforce=restricted",
        "--overwrite",
    ]));

    // A Cluster whose name cannot name its Services is refused by the API server (CEL).
    let refused = kubectl_apply_refused(&cluster_yaml(1, false).replace("name: e2e", "name: 9lives"));
    assert!(refused.contains("names its Services"), "{refused}");

    // A one-broker Cluster becomes Ready. (The operator reaching the API server over HTTPS at
    // all is the regression test of its rustls provider, issue 18 defect 1.)
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
    // Adding spec.topicName would move the Topic to another Kafka topic: refused.
    let refused =
        kubectl_apply_refused(&TOPIC.replace("  partitions: 3\n", "  partitions: 3\n  topicName: e2e-renamed\n"));
    assert!(refused.contains("topicName cannot be changed"), "{refused}");
    kcat("e2e-produce", "-t e2e-events -P -p 0", Some("one\\ntwo\\nthree\\n"));
    let consumed = kcat("e2e-consume", "-t e2e-events -C -p 0 -o beginning -c 3 -e", None);
    assert_eq!(
        consumed.lines().filter(|l| ["one", "two", "three"].contains(l)).count(),
        3,
        "{consumed}"
    );

    // The admin API answers through a port-forward (health of the broker's gRPC service).
    let mut pf = Command::new("kubectl")
        .args(["-n", NS, "port-forward", "svc/e2e-brokers", "19645:9645"])
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

    // Scale out and back in before the drain could finish: the Cluster converges (the drain
    // of the stayed broker is cancelled) and has no drain left in status.
    kubectl(&["scale", "cluster/e2e", "--replicas=2"]);
    kubectl(&["scale", "cluster/e2e", "--replicas=1"]);
    kubectl(&["scale", "cluster/e2e", "--replicas=2"]);
    wait_for(
        "2 ready brokers after a reverted scale-in",
        Duration::from_secs(300),
        || {
            jsonpath("cluster/e2e", "{.status.readyBrokers}") == "2"
                && jsonpath("cluster/e2e", "{.status.drain}").is_empty()
        },
    );
    kubectl(&["scale", "cluster/e2e", "--replicas=1"]);
    wait_for("scale-in to 1 broker", Duration::from_secs(300), || {
        jsonpath("cluster/e2e", "{.status.brokers}") == "1"
    });

    // Leader election: an operator that loses its Lease exits (its container restarts) and an
    // operator leads again.
    let mut elect = Command::new(&helm);
    elect.args(["upgrade", "fjord-e2e"]).arg(&chart).args([
        "-n",
        NS,
        "--reuse-values",
        "--wait",
        "--set",
        "leaderElection.enabled=true",
    ]);
    run(&mut elect);
    let holder = || {
        kubectl(&[
            "get",
            "lease",
            "fjord-operator",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ])
    };
    wait_for("an operator to hold the lease", Duration::from_secs(120), || {
        holder().starts_with("fjord-e2e")
    });
    let leader = holder();
    let restarts = |pod: &str| {
        kubectl(&[
            "get",
            "pod",
            pod,
            "-o",
            "jsonpath={.status.containerStatuses[0].restartCount}",
        ])
    };
    let before = restarts(&leader);
    let now = String::from_utf8_lossy(&run(Command::new("date").args(["-u", "+%Y-%m-%dT%H:%M:%S.000000Z"])).stdout)
        .trim()
        .to_string();
    kubectl(&[
        "patch",
        "lease",
        "fjord-operator",
        "--type=merge",
        "-p",
        &format!(r#"{{"spec":{{"holderIdentity":"intruder","renewTime":"{now}","leaseDurationSeconds":15}}}}"#),
    ]);
    wait_for("the deposed operator to restart", Duration::from_secs(120), || {
        restarts(&leader) != before
    });
    wait_for("an operator to lead again", Duration::from_secs(120), || {
        holder().starts_with("fjord-e2e")
    });

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
