//! The operator process: leader election, the Cluster and Topic controllers, the HTTP endpoint
//! (`/metrics`, `/health`) and graceful shutdown on SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use fjord_crds::{Cluster, Topic};
use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::core::{DeserializeGuard, error_boundary::InvalidObject};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, Client, ResourceExt};
use tokio::sync::watch;
use tracing::Instrument;

use crate::admin::GrpcAdmin;
use crate::context::Context;
use crate::lease::LeaseLock;
use crate::metrics::Metrics;
use crate::{Error, Result};

/// Settings of one operator process.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Address of `/metrics` and `/health`.
    pub listen: SocketAddr,
    /// Watch only this namespace (None: all namespaces).
    pub namespace: Option<String>,
    /// Lease name and namespace for leader election (None: no election, this process leads).
    pub lease: Option<(String, String)>,
    /// This process's identity in the Lease and in events.
    pub identity: String,
    pub topic_resync: Duration,
    /// Send every admin call to this URL (out-of-cluster development with a port-forward).
    pub admin_endpoint_override: Option<String>,
    /// How long a Lease holds without renewal (renewed every third of it).
    pub lease_duration: Duration,
}

/// Lease duration when none is configured.
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(15);
const ERROR_REQUEUE: Duration = Duration::from_secs(30);
/// After losing leadership, how long running reconciles get to finish before the process exits.
const LOST_LEADERSHIP_GRACE: Duration = Duration::from_secs(10);

/// What `/health` answers: 200 until something makes this process useless (lost leadership),
/// then 503 with the reason, so a liveness probe restarts it even if exiting stalls.
#[derive(Debug, Default)]
pub struct Health {
    problem: std::sync::Mutex<Option<String>>,
}

impl Health {
    /// Marks the process unhealthy.
    pub fn fail(&self, reason: impl Into<String>) {
        *self.problem.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(reason.into());
    }

    /// None while healthy, else why not.
    pub fn problem(&self) -> Option<String> {
        self.problem
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// The Cluster reconcile as the controller runs it: objects that cannot be read are reported.
pub async fn reconcile_cluster(guard: Arc<DeserializeGuard<Cluster>>, ctx: Arc<Context>) -> Result<Action> {
    let start = Instant::now();
    let result = match &guard.0 {
        Ok(obj) => {
            let span = tracing::info_span!("reconcile", kind = "Cluster", name = %obj.name_any(), namespace = obj.namespace().unwrap_or_default());
            crate::cluster::reconcile::reconcile(Arc::new(obj.clone()), ctx.clone())
                .instrument(span)
                .await
        }
        Err(invalid) => report_invalid::<Cluster>(invalid, &ctx).await,
    };
    ctx.metrics.reconciled("Cluster", start.elapsed());
    result
}

/// The Topic reconcile as the controller runs it: objects that cannot be read are reported.
pub async fn reconcile_topic(guard: Arc<DeserializeGuard<Topic>>, ctx: Arc<Context>) -> Result<Action> {
    let start = Instant::now();
    let result = match &guard.0 {
        Ok(obj) => {
            let span = tracing::info_span!("reconcile", kind = "Topic", name = %obj.name_any(), namespace = obj.namespace().unwrap_or_default());
            crate::topic::reconcile(Arc::new(obj.clone()), ctx.clone())
                .instrument(span)
                .await
        }
        Err(invalid) => report_invalid::<Topic>(invalid, &ctx).await,
    };
    ctx.metrics.reconciled("Topic", start.elapsed());
    result
}

/// An object the operator cannot read (e.g. written against another CRD version): reported in
/// its status and as a Warning event, and skipped, so one bad object never stops the others.
async fn report_invalid<K>(invalid: &InvalidObject, ctx: &Context) -> Result<Action>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let name = invalid.metadata.name.clone().unwrap_or_default();
    let namespace = invalid.metadata.namespace.clone().unwrap_or_default();
    tracing::warn!(kind = %K::kind(&()), %name, %namespace, error = %invalid.error, "cannot read object; skipping it");
    let reference = k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some(K::api_version(&()).to_string()),
        kind: Some(K::kind(&()).to_string()),
        name: Some(name.clone()),
        namespace: Some(namespace.clone()),
        uid: invalid.metadata.uid.clone(),
        ..Default::default()
    };
    let event = kube::runtime::events::Event {
        type_: kube::runtime::events::EventType::Warning,
        reason: "InvalidObject".into(),
        note: Some(format!("the operator cannot read this object: {}", invalid.error)),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(error) = ctx.publish(&event, &reference).await {
        tracing::warn!(%error, "publishing an event failed");
    }
    let condition = crate::conditions::condition(
        &[],
        fjord_crds::conditions::READY,
        false,
        "InvalidObject",
        format!("the operator cannot read this object: {}", invalid.error),
        invalid.metadata.generation,
    );
    // Through the guard again: the patched object still cannot be read as K.
    let api: Api<DeserializeGuard<K>> = Api::namespaced(ctx.client.clone(), &namespace);
    let patch = serde_json::json!({"status": {"conditions": [condition]}});
    api.patch_status(
        &name,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&patch),
    )
    .await?;
    Ok(Action::await_change())
}

fn error_policy<K>(kind: &'static str) -> impl Fn(Arc<K>, &Error, Arc<Context>) -> Action {
    move |_obj, error, ctx| {
        tracing::warn!(kind, %error, "reconcile failed; retrying");
        ctx.metrics.failed(kind, error.reason());
        Action::requeue(ERROR_REQUEUE)
    }
}

fn api<K>(client: &Client, namespace: &Option<String>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Runs the operator until SIGTERM/SIGINT (Ok) or lost leadership (Err: the process exits
/// non-zero and Kubernetes restarts it as a candidate; `/health` answers 503 meanwhile).
pub async fn run(client: Client, settings: Settings) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::default());
    let health = Arc::new(Health::default());
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    // The HTTP endpoint stops on a signal or once the controllers have stopped after a loss.
    let (http_stop_tx, http_stop_rx) = watch::channel(false);
    {
        let http_stop_tx = http_stop_tx.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown requested");
            let _ = shutdown_tx.send(true);
            let _ = http_stop_tx.send(true);
        });
    }
    let listener = tokio::net::TcpListener::bind(settings.listen).await?;
    tracing::info!(addr = %settings.listen, "serving /metrics and /health");
    let http = tokio::spawn(serve_http_with_health(
        listener,
        metrics.clone(),
        health.clone(),
        http_stop_rx,
    ));

    let lease = settings
        .lease
        .as_ref()
        .map(|(name, ns)| LeaseLock::new(client.clone(), ns, name, &settings.identity, settings.lease_duration));
    if let Some(lease) = &lease {
        let mut rx = shutdown_rx.clone();
        loop {
            match lease.try_acquire_or_renew().await {
                Ok(true) => break,
                Ok(false) => tracing::debug!("another operator leads; waiting"),
                Err(error) => tracing::warn!(%error, "leader election failed; retrying"),
            }
            tokio::select! {
                _ = tokio::time::sleep(lease.renew_interval()) => {}
                () = async { let _ = rx.wait_for(|s| *s).await; } => {
                    let _ = http.await;
                    return Ok(());
                }
            }
        }
    }
    // Lost leadership (another candidate holds the Lease, or it could not be renewed within two
    // thirds of its duration, after which another may take it): stop reconciling at once, report
    // it on /health and exit, so Kubernetes restarts the process as a candidate.
    let (lost_tx, lost_rx) = watch::channel(false);
    if let Some((name, ns)) = settings.lease.clone() {
        let lease = LeaseLock::new(client.clone(), &ns, &name, &settings.identity, settings.lease_duration);
        let renew_deadline = settings.lease_duration * 2 / 3;
        let mut rx = shutdown_rx.clone();
        let health = health.clone();
        tokio::spawn(async move {
            let mut renewed = Instant::now();
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(lease.renew_interval()) => {}
                    _ = rx.wait_for(|s| *s) => return,
                }
                let reason = match lease.try_acquire_or_renew().await {
                    Ok(true) => {
                        renewed = Instant::now();
                        continue;
                    }
                    Ok(false) => "lost leadership: another operator holds the lease".to_string(),
                    Err(error) if renewed.elapsed() >= renew_deadline => {
                        format!(
                            "lost leadership: the lease could not be renewed for {:?}: {error}",
                            renewed.elapsed()
                        )
                    }
                    Err(error) => {
                        tracing::warn!(%error, "renewing the lease failed; retrying");
                        continue;
                    }
                };
                tracing::error!(%reason, "stopping");
                health.fail(reason);
                let _ = lost_tx.send(true);
                return;
            }
        });
    }

    let mut ctx = Context::new(
        client.clone(),
        Arc::new(GrpcAdmin::default()),
        metrics.clone(),
        Some(settings.identity.clone()),
    );
    ctx.topic_resync = settings.topic_resync;
    ctx.admin_endpoint_override = settings.admin_endpoint_override.clone();
    let ctx = Arc::new(ctx);
    let stop = |mut shutdown: watch::Receiver<bool>, mut lost: watch::Receiver<bool>| async move {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => {}
            _ = lost.wait_for(|s| *s) => {}
        }
    };
    let owned = watcher::Config::default().labels("app.kubernetes.io/managed-by=fjord-operator");
    let clusters = Controller::new(
        api::<DeserializeGuard<Cluster>>(&client, &settings.namespace),
        watcher::Config::default().any_semantic(),
    )
    .owns(api::<StatefulSet>(&client, &settings.namespace), owned.clone())
    .owns(api::<ConfigMap>(&client, &settings.namespace), owned.clone())
    .owns(api::<Service>(&client, &settings.namespace), owned)
    .graceful_shutdown_on(stop(shutdown_rx.clone(), lost_rx.clone()))
    .run(
        reconcile_cluster,
        error_policy::<DeserializeGuard<Cluster>>("Cluster"),
        ctx.clone(),
    )
    .for_each(|result| async move {
        if let Err(error) = result {
            tracing::debug!(%error, "cluster controller event");
        }
    });
    let topics = Controller::new(
        api::<DeserializeGuard<Topic>>(&client, &settings.namespace),
        watcher::Config::default().any_semantic(),
    )
    .graceful_shutdown_on(stop(shutdown_rx.clone(), lost_rx.clone()))
    .run(reconcile_topic, error_policy::<DeserializeGuard<Topic>>("Topic"), ctx)
    .for_each(|result| async move {
        if let Err(error) = result {
            tracing::debug!(%error, "topic controller event");
        }
    });
    tracing::info!(
        namespace = settings.namespace.as_deref().unwrap_or("(all)"),
        "controllers running"
    );
    let controllers = async {
        tokio::join!(clusters, topics);
    };
    let mut lost_wait = lost_rx.clone();
    tokio::pin!(controllers);
    tokio::select! {
        () = &mut controllers => {}
        () = async {
            let _ = lost_wait.wait_for(|l| *l).await;
            tokio::time::sleep(LOST_LEADERSHIP_GRACE).await;
        } => tracing::warn!("reconciles did not finish after leadership was lost; exiting anyway"),
    }
    let lost = *lost_rx.borrow();
    if !lost
        && let Some(lease) = &lease
        && let Err(error) = lease.release().await
    {
        tracing::warn!(%error, "releasing the lease failed");
    }
    let _ = http_stop_tx.send(true);
    let _ = http.await;
    if lost {
        anyhow::bail!("{}", health.problem().unwrap_or_else(|| "lost leadership".to_string()));
    }
    tracing::info!("shutdown complete");
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// `/metrics` (OpenMetrics) and `/health` (always healthy) until shutdown.
pub async fn serve_http(listener: tokio::net::TcpListener, metrics: Arc<Metrics>, shutdown: watch::Receiver<bool>) {
    serve_http_with_health(listener, metrics, Arc::new(Health::default()), shutdown).await;
}

/// `/metrics` (OpenMetrics) and `/health` (200, or 503 with the reason once `health` failed)
/// until shutdown.
pub async fn serve_http_with_health(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    mut shutdown: watch::Receiver<bool>,
) {
    let health_handler = move || {
        let health = health.clone();
        async move {
            match health.problem() {
                None => (StatusCode::OK, "ok\n".to_string()),
                Some(problem) => (StatusCode::SERVICE_UNAVAILABLE, format!("{problem}\n")),
            }
        }
    };
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/health", get(health_handler))
        .with_state(metrics);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|s| *s).await;
        })
        .await;
    if let Err(error) = result {
        tracing::error!(%error, "http server failed");
    }
}

async fn metrics_handler(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    )
}
