//! The Fjord broker as a library: the binary in `main.rs` parses flags and calls [`run`]; tests
//! and tools can start a broker in-process the same way.

pub mod admin;
pub mod broker;
pub mod buffers;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod controller;
pub mod group;
pub mod handlers;
pub mod http;
pub mod lifecycle;
pub mod metrics;
pub mod network;
pub mod producer_ids;
pub mod publish;
pub mod replication;
pub mod resources;
pub mod security;
pub mod tiering;
pub mod topic_config;
pub mod txn;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::broker::Broker;
use crate::config::BrokerConfig;

/// An idle broker returns its pooled fetch buffers after one to two of these intervals.
const READ_BUFFER_TRIM_INTERVAL: Duration = Duration::from_secs(10);

/// How often the active controller checks broker sessions.
const CONTROLLER_TICK: Duration = Duration::from_secs(1);
/// How often a partition leader checks whether its ISR should shrink or expand.
const ISR_CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// How long the admin API keeps serving (health NOT_SERVING) after the Kafka listener drained.
const ADMIN_NOT_SERVING_GRACE: Duration = Duration::from_millis(500);

/// Runs a broker until SIGTERM or SIGINT, then shuts down gracefully.
pub async fn run(mut config: BrokerConfig) -> anyhow::Result<()> {
    let nofile = resources::raise_open_file_limit();
    resources::resolve_limits(&mut config, nofile);
    fjord_storage::FileCache::global().set_capacity(config.storage.max_open_files);
    tracing::info!(
        open_file_limit = nofile,
        max_open_files = config.storage.max_open_files,
        max_partitions = config.topics.max_partitions,
        "resource limits"
    );
    let http_listen = config.http.listen;
    // Cluster mode: the quorum member starts first (it replays the metadata snapshot and log),
    // and its controller listener serves Raft at once so the other voters can elect a leader.
    let (quorum, controller_listener) = if config.cluster.is_clustered() {
        let quorum = crate::broker::start_quorum(&config).await?;
        let addr = config.cluster.listen;
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the controller listener on {addr}"))?;
        tracing::info!(%addr, "serving the controller listener");
        (Some(quorum), Some(listener))
    } else {
        (None, None)
    };
    let broker = tokio::task::spawn_blocking({
        let quorum = quorum.clone();
        move || Broker::open(config, quorum)
    })
    .await??;
    let mut listeners = Vec::new();
    for listener in broker.config.listeners().map_err(anyhow::Error::msg)? {
        let addr = listener.listen;
        let socket = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the kafka listener {} on {addr}", listener.name))?;
        listeners.push(network::Bound { listener, socket });
    }
    let tls = if listeners.iter().any(|b| b.listener.protocol.tls()) {
        Some(security::tls::acceptor(&broker.config.tls)?)
    } else {
        None
    };
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    tokio::spawn(broker.publishing.clone().run(shutdown_rx.clone()));
    let mut controller_server = None;
    if let (Some(quorum), Some(listener)) = (quorum.clone(), controller_listener) {
        // Committed images reach the publishers as the quorum applies them.
        let publishing = broker.publishing.clone();
        let mut images = quorum.subscribe();
        tokio::spawn(async move {
            loop {
                publishing.offer(images.borrow_and_update().clone());
                if images.changed().await.is_err() {
                    return;
                }
            }
        });
        let service =
            fjord_api::cluster::v1::controller_server::ControllerServer::new(crate::cluster::ControllerService {
                broker: broker.clone(),
            });
        let raft = quorum.grpc_service();
        let mut stop = shutdown_rx.clone();
        controller_server = Some(tokio::spawn(async move {
            let result = tonic::transport::Server::builder()
                .add_service(raft)
                .add_service(service)
                .serve_with_incoming_shutdown(tonic::transport::server::TcpIncoming::from(listener), async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await;
            if let Err(error) = result {
                tracing::error!(%error, "controller listener failed");
            }
        }));
        tokio::spawn(crate::cluster::run_lifecycle(broker.clone(), shutdown_rx.clone()));
        spawn_periodic(broker.clone(), CONTROLLER_TICK, shutdown_rx.clone(), |b| {
            b.fence_expired_brokers();
            b.elect_unclean_where_allowed();
        });
        let interval = broker.config.cluster.leader_rebalance_interval;
        spawn_periodic(broker.clone(), interval, shutdown_rx.clone(), |b| b.rebalance_leaders());
        spawn_periodic(broker.clone(), ISR_CHECK_INTERVAL, shutdown_rx.clone(), |b| {
            b.maintain_isr()
        });
    }
    // The admin API keeps serving (health NOT_SERVING) until the Kafka listener has drained.
    let (admin_stop_tx, admin_stop_rx) = watch::channel(false);
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
    let admin = match broker.config.admin.listen {
        Some(addr) => {
            let l = TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the admin grpc listener on {addr}"))?;
            tracing::info!(%addr, "serving the admin grpc api");
            Some(tokio::spawn(admin::serve(
                l,
                broker.clone(),
                shutdown_rx.clone(),
                admin_stop_rx,
            )))
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
        |b| {
            b.replicas.checkpoint_all();
            b.metadata.ensure_reserve();
            b.metadata.compact_if_over(b.config.cluster.snapshot_every);
        },
    );
    let cleaner = replication::cleaner::LogCleaner::start(broker.clone()).context("starting the log cleaner")?;
    tokio::spawn(group::run(broker.clone(), shutdown_rx.clone()));
    tokio::spawn(txn::run(broker.clone(), shutdown_rx.clone()));
    if let Some(tiering) = broker.tiering.clone() {
        tiering.load_all(&broker).await;
        tokio::spawn(tiering.run(broker.clone(), shutdown_rx.clone()));
    }
    for bound in &listeners {
        let l = &bound.listener;
        tracing::info!(
            listener = %l.name,
            listen = %l.listen,
            security_protocol = l.protocol.name(),
            advertised = %format!("{}:{}", l.advertised_host, l.advertised_port),
            "serving the kafka protocol"
        );
    }
    let server = tokio::spawn(network::serve(listeners, tls, broker.clone(), shutdown_rx));

    wait_for_signal().await;
    if broker.metadata.quorum().is_some() {
        crate::cluster::controlled_shutdown(&broker, broker.config.network.shutdown_timeout).await;
    }
    tracing::info!("shutdown requested, finishing in-flight requests");
    broker.begin_shutdown();
    let _ = shutdown_tx.send(true);
    let _ = server.await;
    if let Some(cleaner) = cleaner {
        tokio::task::spawn_blocking(move || cleaner.shutdown()).await?;
    }
    // Keep answering NOT_SERVING a moment longer so health watchers and probes see it even
    // when the Kafka listener drained at once.
    tokio::time::sleep(ADMIN_NOT_SERVING_GRACE).await;
    let _ = admin_stop_tx.send(true);
    broker.replicas.flusher.shutdown().await;
    broker
        .blocking(|b| b.replicas.close_all())
        .await
        .context("closing logs")?;
    if let Some(http) = http {
        let _ = http.await;
    }
    if let Some(mut admin) = admin {
        // Graceful, but bounded: an open stream (e.g. a gRPC health Watch) must not hold up exit.
        tokio::select! {
            _ = &mut admin => {}
            _ = tokio::time::sleep(broker.config.network.shutdown_timeout) => {
                tracing::warn!("admin api streams still open at shutdown; closing them");
                admin.abort();
            }
        }
    }
    if let Some(quorum) = &quorum {
        quorum.shutdown().await;
    }
    if let Some(server) = controller_server {
        let _ = server.await;
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
