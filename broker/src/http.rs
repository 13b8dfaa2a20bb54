//! The HTTP side door: Prometheus `/metrics`, `/health` (200 while serving, 503 once
//! shutdown has begun, so load balancers and probes stop sending traffic) and `/ready`, the
//! rolling-restart gate: 503 while any partition this broker hosts is under-replicated or
//! offline (restarting it now could cost availability or data), with those partitions as JSON.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::broker::Broker;

pub async fn serve(listener: TcpListener, broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/tiering", get(tiering))
        .with_state(broker);
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        })
        .await;
    if let Err(error) = result {
        tracing::error!(%error, "http server failed");
    }
}

async fn metrics(State(broker): State<Arc<Broker>>) -> impl IntoResponse {
    let body = broker
        .blocking(|b| b.metrics.encode(b.node_id(), &b.replicas, &b.groups, &b.image()))
        .await;
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    )
}

/// Per-partition tiered-storage state as JSON (local and remote log start, remote end, bytes,
/// upload lag); an empty list when no topic is tiered.
async fn tiering(State(broker): State<Arc<Broker>>) -> impl IntoResponse {
    let states = broker
        .blocking(|b| {
            let mut states: Vec<_> = b
                .replicas
                .all()
                .iter()
                .filter_map(|p| crate::tiering::partition_state(p))
                .collect();
            states.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
            states
        })
        .await;
    (
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_string_pretty(&states).unwrap_or_default(),
    )
}

async fn health(State(broker): State<Arc<Broker>>) -> impl IntoResponse {
    if broker.is_shutting_down() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    } else {
        (StatusCode::OK, "ok\n")
    }
}

/// A partition this broker hosts that is not fully replicated, as `/ready` reports it.
#[derive(serde::Serialize)]
struct Unreplicated {
    topic: String,
    partition: i32,
    leader: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
}

/// At most this many partitions are listed in `/ready` (the count is always whole).
const READY_LIST_MAX: usize = 100;

/// 200 when this broker is registered and unfenced and every partition hosted here has a leader
/// and its whole replica set in the ISR; 503 otherwise (and while shutting down), listing them:
/// Kafka's "no under-replicated partitions" check before restarting the next broker.
async fn ready(State(broker): State<Arc<Broker>>) -> impl IntoResponse {
    let (shutting_down, unfenced, count, mut listed) = broker
        .blocking(|b| {
            let unfenced = b.image().cluster().is_unfenced(fjord_metadata::BrokerId(b.node_id()));
            let mut found: Vec<Unreplicated> = b
                .replicas
                .all()
                .iter()
                .filter_map(|p| {
                    let set = p.replica_set();
                    let unhealthy = set.leader < 0 || set.replicas.iter().any(|id| !set.isr.contains(id));
                    unhealthy.then(|| Unreplicated {
                        topic: p.topic.clone(),
                        partition: p.index,
                        leader: set.leader,
                        replicas: set.replicas,
                        isr: set.isr,
                    })
                })
                .collect();
            found.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
            (b.is_shutting_down(), unfenced, found.len(), found)
        })
        .await;
    listed.truncate(READY_LIST_MAX);
    let ready = !shutting_down && unfenced && count == 0;
    let body = serde_json::json!({
        "ready": ready,
        "shutting_down": shutting_down,
        "unfenced": unfenced,
        "under_replicated_count": count,
        "under_replicated": listed,
    });
    (
        if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
}
