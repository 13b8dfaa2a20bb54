//! The Fjord broker as a library: the binary in `main.rs` parses flags and calls [`run`]; tests
//! and tools can start a broker in-process the same way.

pub mod broker;
pub mod buffers;
pub mod clock;
pub mod config;
pub mod controller;
pub mod handlers;
pub mod http;
pub mod metrics;
pub mod network;
pub mod replication;
pub mod tiering;
pub mod topic_config;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::broker::Broker;
use crate::config::BrokerConfig;

/// An idle broker returns its pooled fetch buffers after one to two of these intervals.
const READ_BUFFER_TRIM_INTERVAL: Duration = Duration::from_secs(10);

/// Runs a broker until SIGTERM or SIGINT, then shuts down gracefully.
pub async fn run(config: BrokerConfig) -> anyhow::Result<()> {
    let listen = config.network.listen;
    let http_listen = config.http.listen;
    let broker = tokio::task::spawn_blocking(move || Broker::open(config)).await??;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the kafka listener on {listen}"))?;
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let http = match http_listen {
        Some(addr) => {
            let l = TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the http listener on {addr}"))?;
            tracing::info!(%addr, "serving /metrics and /health");
            Some(tokio::spawn(http::serve(l, broker.clone(), shutdown_rx.clone())))
        }
        None => None,
    };
    spawn_periodic(
        broker.clone(),
        broker.config.storage.retention_check_interval,
        shutdown_rx.clone(),
        |b| b.replicas.apply_retention(&b.metrics),
    );
    spawn_periodic(broker.clone(), READ_BUFFER_TRIM_INTERVAL, shutdown_rx.clone(), |b| {
        b.read_buffers.trim_if_idle()
    });
    spawn_periodic(
        broker.clone(),
        broker.config.storage.checkpoint_interval,
        shutdown_rx.clone(),
        |b| b.replicas.checkpoint_all(),
    );
    if let Some(tiering) = broker.tiering.clone() {
        tiering.load_all(&broker).await;
        tokio::spawn(tiering.run(broker.clone(), shutdown_rx.clone()));
    }
    let (host, port) = broker.config.advertised_listener();
    tracing::info!(%listen, advertised = %format!("{host}:{port}"), "serving the kafka protocol");
    let server = tokio::spawn(network::serve(listener, broker.clone(), shutdown_rx));

    wait_for_signal().await;
    tracing::info!("shutdown requested, finishing in-flight requests");
    broker.begin_shutdown();
    let _ = shutdown_tx.send(true);
    let _ = server.await;
    broker.replicas.flusher.shutdown().await;
    broker
        .blocking(|b| b.replicas.close_all())
        .await
        .context("closing logs")?;
    if let Some(http) = http {
        let _ = http.await;
    }
    tracing::info!("shutdown complete");
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing the SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Runs blocking `work` every `interval` until shutdown.
fn spawn_periodic(broker: Arc<Broker>, interval: Duration, mut shutdown: watch::Receiver<bool>, work: fn(&Broker)) {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = ticker.tick() => broker.blocking(work).await,
                _ = shutdown.changed() => return,
            }
        }
    });
}
