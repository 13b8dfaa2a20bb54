//! The Kafka listener: accepts connections within the connection limits (Kafka's
//! `max.connections`, `max.connections.per.ip` and its overrides) and runs one [`connection`]
//! task per client until shutdown, then waits (bounded) for the connections to finish their
//! in-flight requests. All connections share one request [`memory_pool`]. Each listener has a
//! security protocol: SSL and SASL_SSL connections are TLS-accepted first (within
//! `request_read_timeout`), then run the same connection loop over the TLS stream; plaintext
//! connections use the socket's own halves, as before.

mod connection;
mod memory_pool;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::broker::Broker;
use crate::config::{Listener, NetworkConfig};
use crate::security::Session;
use memory_pool::MemoryPool;

/// One bound Kafka listener.
pub struct Bound {
    pub listener: Listener,
    pub socket: TcpListener,
}

/// Accepts the next client on any of `listeners`.
async fn accept_any(listeners: &[Bound]) -> (usize, std::io::Result<(TcpStream, std::net::SocketAddr)>) {
    std::future::poll_fn(|cx| {
        for (i, bound) in listeners.iter().enumerate() {
            if let std::task::Poll::Ready(result) = bound.socket.poll_accept(cx) {
                return std::task::Poll::Ready((i, result));
            }
        }
        std::task::Poll::Pending
    })
    .await
}

/// Runs one accepted connection: TLS first on SSL and SASL_SSL listeners.
async fn run_connection(
    stream: TcpStream,
    peer: std::net::SocketAddr,
    listener: Listener,
    tls: Option<TlsAcceptor>,
    broker: Arc<Broker>,
    shutdown: watch::Receiver<bool>,
    pool: Arc<MemoryPool>,
) {
    let name: Arc<str> = Arc::from(listener.name.as_str());
    match (listener.protocol.tls(), tls) {
        (true, Some(acceptor)) => {
            let timeout = broker.config.network.request_read_timeout;
            let tls_stream = match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                Ok(Ok(s)) => s,
                Ok(Err(error)) => {
                    broker.metrics.network.tls_handshake_failures.inc();
                    tracing::debug!(%peer, listener = %name, %error, "tls handshake failed, closing connection");
                    return;
                }
                Err(_) => {
                    broker.metrics.network.tls_handshake_failures.inc();
                    tracing::debug!(%peer, listener = %name, "tls handshake not done within network.request_read_timeout, closing connection");
                    return;
                }
            };
            let principal = tls_stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .and_then(crate::security::tls::principal);
            let session = Arc::new(Session::new(name, listener.protocol, peer, principal));
            let (read_half, write_half) = tokio::io::split(tls_stream);
            connection::run(read_half, write_half, session, broker, shutdown, pool).await;
        }
        (true, None) => tracing::error!(listener = %name, "tls listener without a tls acceptor, closing connection"),
        (false, _) => {
            let session = Arc::new(Session::new(name, listener.protocol, peer, None));
            let (read_half, write_half) = stream.into_split();
            connection::run(read_half, write_half, session, broker, shutdown, pool).await;
        }
    }
}

/// Accepts clients on every listener until `shutdown` flips to true, then drains the open
/// connections.
pub async fn serve(
    listeners: Vec<Bound>,
    tls: Option<TlsAcceptor>,
    broker: Arc<Broker>,
    mut shutdown: watch::Receiver<bool>,
) {
    let net = &broker.config.network;
    let pool = MemoryPool::new(
        net.queued_max_request_bytes.as_u64() as usize,
        broker.metrics.network.request_memory_used.clone(),
    );
    let per_ip = Arc::new(PerIpLimits::new(net));
    let max_connections = net.max_connections;
    let mut connections = JoinSet::new();
    let mut paused = false;
    loop {
        // Kafka's max.connections: at the limit stop accepting (clients wait in the listen
        // backlog) rather than accept and close, until a connection ends.
        let at_limit = connections.len() >= max_connections;
        if at_limit && !paused {
            tracing::warn!(
                max_connections,
                "network.max_connections reached, not accepting new connections"
            );
            broker.metrics.network.connection_limit_waits.inc();
        } else if !at_limit && paused {
            tracing::info!(open = connections.len(), "accepting new connections again");
        }
        paused = at_limit;
        tokio::select! {
            (index, accepted) = accept_any(&listeners), if !at_limit => match accepted {
                Ok((stream, peer)) => {
                    let Some(slot) = per_ip.admit(peer.ip()) else {
                        tracing::debug!(%peer, "connection over network.max_connections_per_ip, closing it");
                        broker.metrics.network.connections_rejected.inc();
                        drop(stream);
                        continue;
                    };
                    if let Err(error) = stream.set_nodelay(true) {
                        tracing::debug!(%peer, %error, "cannot set TCP_NODELAY");
                    }
                    let run = run_connection(
                        stream,
                        peer,
                        listeners[index].listener.clone(),
                        tls.clone(),
                        broker.clone(),
                        shutdown.clone(),
                        pool.clone(),
                    );
                    connections.spawn(async move {
                        run.await;
                        drop(slot);
                    });
                }
                Err(error) => {
                    // Usually EMFILE: back off instead of spinning.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    drop(listeners);
    let grace = broker.config.network.shutdown_timeout;
    let drained = tokio::time::timeout(grace, async { while connections.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            open = connections.len(),
            "connections still busy after the shutdown timeout, closing them"
        );
        connections.shutdown().await;
    }
}

/// Open connections per client IP address (Kafka's max.connections.per.ip and overrides).
struct PerIpLimits {
    default: usize,
    overrides: HashMap<IpAddr, usize>,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place in its IP's count; freed when dropped.
struct IpSlot {
    limits: Arc<PerIpLimits>,
    ip: IpAddr,
}

impl PerIpLimits {
    fn new(net: &NetworkConfig) -> PerIpLimits {
        PerIpLimits {
            default: net.max_connections_per_ip,
            // Validated at load: every key is an IP address.
            overrides: net
                .max_connections_per_ip_overrides
                .iter()
                .filter_map(|(ip, limit)| Some((ip.parse().ok()?, *limit)))
                .collect(),
            open: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a new connection from `ip`, or None if that IP is at its limit.
    fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let limit = self.overrides.get(&ip).copied().unwrap_or(self.default);
        let mut open = self.open.lock();
        let count = open.entry(ip).or_insert(0);
        if *count >= limit {
            if *count == 0 {
                open.remove(&ip);
            }
            return None;
        }
        *count += 1;
        Some(IpSlot {
            limits: self.clone(),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self.limits.open.lock();
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_ip_limit_counts_open_connections_and_honours_overrides() {
        let mut net = NetworkConfig {
            max_connections_per_ip: 2,
            ..NetworkConfig::default()
        };
        net.max_connections_per_ip_overrides.insert("10.0.0.7".into(), 0);
        let limits = Arc::new(PerIpLimits::new(&net));
        let a: IpAddr = "127.0.0.1".parse().expect("ip");
        let first = limits.admit(a).expect("first");
        let second = limits.admit(a).expect("second");
        assert!(limits.admit(a).is_none(), "third over the limit");
        drop(first);
        let third = limits.admit(a).expect("a slot was freed");
        assert!(limits.admit("10.0.0.7".parse().expect("ip")).is_none(), "override 0");
        drop((second, third));
        assert!(limits.open.lock().is_empty());
    }
}
