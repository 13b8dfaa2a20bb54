//! The HTTP side door: Prometheus `/metrics` and `/health` (200 while serving, 503 once
//! shutdown has begun, so load balancers and probes stop sending traffic).

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
    let body = broker.blocking(|b| b.metrics.encode(&b.replicas, &b.groups)).await;
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
