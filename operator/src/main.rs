//! `fjord-operator`: reconciles Fjord `Cluster` and `Topic` resources. In a cluster it runs as a
//! Deployment (in-cluster config, leader election through a Lease); locally
//! `cargo run -p fjord-operator` uses the current kubeconfig.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use fjord_operator::run::{Settings, run};
use fjord_operator::telemetry;

#[derive(Debug, Parser)]
#[command(
    name = "fjord-operator",
    version,
    about = "Kubernetes operator for Fjord clusters and topics"
)]
struct Args {
    /// Address of /metrics and /health.
    #[arg(long, env = "FJORD_OPERATOR_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Watch only this namespace [default: all namespaces].
    #[arg(long, env = "FJORD_OPERATOR_NAMESPACE")]
    namespace: Option<String>,
    /// Lease used for leader election; empty disables election (one replica only).
    #[arg(long, env = "FJORD_OPERATOR_LEASE", default_value = "fjord-operator")]
    lease: String,
    /// Namespace of the Lease [default: the pod's namespace, else "default"].
    #[arg(long, env = "POD_NAMESPACE")]
    lease_namespace: Option<String>,
    /// Identity in the Lease and in events [default: the pod name or hostname].
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Seconds a Lease holds without renewal; it is renewed every third of that, and leadership
    /// counts as lost (the process exits) when it cannot be renewed for two thirds of it.
    #[arg(long, env = "FJORD_OPERATOR_LEASE_DURATION_SECONDS", default_value_t = 15)]
    lease_duration_seconds: u64,
    /// Seconds between drift checks of a converged Topic.
    #[arg(long, env = "FJORD_OPERATOR_TOPIC_RESYNC_SECONDS", default_value_t = 60)]
    topic_resync_seconds: u64,
    /// Send every admin API call to this URL instead of the in-cluster DNS names, for running
    /// outside the cluster: `kubectl port-forward svc/<cluster> 9645` then
    /// `--admin-endpoint http://127.0.0.1:9645` (single-broker clusters only: drains go there too).
    #[arg(long, env = "FJORD_OPERATOR_ADMIN_ENDPOINT")]
    admin_endpoint: Option<String>,
    /// Export traces over OTLP/gRPC to this endpoint (e.g. http://otel-collector:4317); unset: no export.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    fjord_operator::install_crypto_provider();
    let args = Args::parse();
    let provider = args
        .otlp_endpoint
        .as_deref()
        .map(telemetry::otlp_provider)
        .transpose()?;
    tracing::subscriber::set_global_default(telemetry::subscriber(provider.as_ref()))?;
    let identity = args
        .identity
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("fjord-operator-{}", std::process::id()));
    let lease = (!args.lease.is_empty()).then(|| {
        (
            args.lease.clone(),
            args.lease_namespace.unwrap_or_else(|| "default".into()),
        )
    });
    let client = kube::Client::try_default().await?;
    let result = run(
        client,
        Settings {
            listen: args.listen,
            namespace: args.namespace,
            lease,
            identity,
            topic_resync: Duration::from_secs(args.topic_resync_seconds.max(1)),
            admin_endpoint_override: args.admin_endpoint,
            lease_duration: Duration::from_secs(args.lease_duration_seconds.max(3)),
        },
    )
    .await;
    if let Some(provider) = provider
        && let Err(error) = provider.shutdown()
    {
        eprintln!("fjord-operator: flushing traces failed: {error}");
    }
    result
}
