//! The quorum's RPCs over tonic (`fjord.raft.v1.Raft`): the client side openraft uses to reach
//! peers ([`Network`], one lazily connected channel per peer address, reused and reconnected by
//! tonic), and the server side ([`RaftService`]) a broker mounts on its controller listener.
//!
//! Raft payloads are openraft's messages as JSON inside the proto messages. Every request
//! carries the cluster id and the intended receiver's node id; a server refuses a request for
//! another cluster or another node with FAILED_PRECONDITION, so two clusters never merge and a
//! misconfigured address is caught rather than followed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fjord_api::raft::v1::raft_client::RaftClient;
use fjord_api::raft::v1::raft_server::{Raft as RaftRpc, RaftServer};
use fjord_api::raft::v1::{JoinReply, JoinRequest, RaftReply, RaftRequest};
use openraft::error::{
    ClientWriteError, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Response, Status};

use crate::log_store::LogStore;
use crate::types::{C, Node, NodeId, Raft};

/// Largest message either side accepts: a batch creating many partitions is large, and a
/// snapshot chunk is bounded by openraft's `snapshot_max_chunk_size`.
pub(crate) const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// Wall-clock milliseconds (Kafka's timestamps in DescribeQuorum).
pub(crate) fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// What the leader of `term` knows of a peer: the last index it holds that matches the leader's
/// log, when it last answered (Kafka's last fetch) and when it was last caught up.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PeerStats {
    pub(crate) term: u64,
    pub(crate) matched: Option<u64>,
    pub(crate) last_fetch_ms: Option<i64>,
    pub(crate) last_caught_up_ms: Option<i64>,
}

/// What every peer client shares: identity, addresses, channels and per-peer stats.
#[derive(Debug)]
pub(crate) struct Peers {
    pub(crate) cluster_id: String,
    pub(crate) node_id: NodeId,
    /// Configured voter addresses; they win over addresses in the stored membership.
    pub(crate) voters: BTreeMap<NodeId, String>,
    pub(crate) connect_timeout: Duration,
    pub(crate) log: LogStore,
    channels: Mutex<HashMap<String, Channel>>,
    pub(crate) stats: Mutex<BTreeMap<NodeId, PeerStats>>,
}

impl Peers {
    pub(crate) fn new(
        cluster_id: String,
        node_id: NodeId,
        voters: BTreeMap<NodeId, String>,
        connect_timeout: Duration,
        log: LogStore,
    ) -> Peers {
        Peers {
            cluster_id,
            node_id,
            voters,
            connect_timeout,
            log,
            channels: Mutex::new(HashMap::new()),
            stats: Mutex::new(BTreeMap::new()),
        }
    }

    /// The gRPC client for `addr`: one lazily connected channel per address, shared by every
    /// caller (tonic reconnects it after a failure).
    pub(crate) fn client(&self, addr: &str) -> Result<RaftClient<Channel>, Status> {
        let mut channels = self.channels.lock();
        let channel = match channels.get(addr) {
            Some(channel) => channel.clone(),
            None => {
                let endpoint = Endpoint::from_shared(format!("http://{addr}"))
                    .map_err(|e| Status::invalid_argument(format!("bad quorum peer address {addr}: {e}")))?
                    .connect_timeout(self.connect_timeout)
                    .tcp_nodelay(true);
                let channel = endpoint.connect_lazy();
                channels.insert(addr.to_owned(), channel.clone());
                channel
            }
        };
        Ok(RaftClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }

    fn record_success(&self, target: NodeId, term: u64, matched: Option<u64>, end_at_send: Option<u64>) {
        let now = now_millis();
        let mut stats = self.stats.lock();
        let entry = stats.entry(target).or_default();
        if entry.term != term {
            *entry = PeerStats {
                term,
                ..PeerStats::default()
            };
        }
        entry.matched = entry.matched.max(matched);
        entry.last_fetch_ms = Some(now);
        if matched >= end_at_send {
            entry.last_caught_up_ms = Some(now);
        }
    }
}

/// openraft's network factory: a [`PeerClient`] per replication target.
#[derive(Debug, Clone)]
pub(crate) struct Network {
    pub(crate) peers: Arc<Peers>,
}

impl RaftNetworkFactory<C> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> PeerClient {
        let addr = self
            .peers
            .voters
            .get(&target)
            .cloned()
            .unwrap_or_else(|| node.addr.clone());
        PeerClient {
            peers: self.peers.clone(),
            target,
            addr,
            refused: false,
        }
    }
}

/// One peer, as seen by the replication or election task talking to it.
#[derive(Debug)]
pub(crate) struct PeerClient {
    peers: Arc<Peers>,
    target: NodeId,
    addr: String,
    /// A refusal (other cluster, other node) was logged; log the next one only after a success.
    refused: bool,
}

/// A failed call: the peer could not be reached (openraft backs off), or something else.
enum CallError {
    Unreachable(std::io::Error),
    Network(std::io::Error),
}

impl CallError {
    fn into_rpc<E: std::error::Error>(self) -> RPCError<NodeId, Node, E> {
        match self {
            CallError::Unreachable(e) => RPCError::Unreachable(Unreachable::new(&e)),
            CallError::Network(e) => RPCError::Network(NetworkError::new(&e)),
        }
    }
}

#[derive(Clone, Copy)]
enum Method {
    AppendEntries,
    Vote,
    InstallSnapshot,
}

impl PeerClient {
    async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &mut self,
        method: Method,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, CallError> {
        let payload = serde_json::to_vec(req).map_err(|e| CallError::Network(std::io::Error::other(e)))?;
        let mut client = self
            .peers
            .client(&self.addr)
            .map_err(|s| CallError::Unreachable(std::io::Error::other(s.message().to_owned())))?;
        let mut request = Request::new(RaftRequest {
            cluster_id: self.peers.cluster_id.clone(),
            from_node: self.peers.node_id,
            to_node: self.target,
            payload,
        });
        request.set_timeout(timeout);
        let call = async {
            match method {
                Method::AppendEntries => client.append_entries(request).await,
                Method::Vote => client.vote(request).await,
                Method::InstallSnapshot => client.install_snapshot(request).await,
            }
        };
        let reply = match tokio::time::timeout(timeout, call).await {
            Err(_) => {
                return Err(CallError::Unreachable(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "quorum rpc to node {} at {} timed out after {timeout:?}",
                        self.target, self.addr
                    ),
                )));
            }
            Ok(Err(status)) => {
                if status.code() == tonic::Code::FailedPrecondition && !self.refused {
                    self.refused = true;
                    tracing::error!(target_node = self.target, addr = %self.addr, reason = status.message(),
                        "quorum peer refused this node's rpc");
                }
                let error = std::io::Error::other(format!(
                    "quorum rpc to node {} at {}: {}: {}",
                    self.target,
                    self.addr,
                    status.code(),
                    status.message()
                ));
                return Err(match status.code() {
                    tonic::Code::Internal | tonic::Code::InvalidArgument => CallError::Network(error),
                    _ => CallError::Unreachable(error),
                });
            }
            Ok(Ok(reply)) => reply.into_inner(),
        };
        self.refused = false;
        serde_json::from_slice(&reply.payload).map_err(|e| CallError::Network(std::io::Error::other(e)))
    }
}

impl RaftNetwork<C> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        let end_at_send = self.peers.log.last_index();
        let term = rpc.vote.leader_id().term;
        let sent_up_to = rpc
            .entries
            .last()
            .map(|e| e.log_id.index)
            .or(rpc.prev_log_id.map(|l| l.index));
        let result: Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>> = self
            .call(Method::AppendEntries, &rpc, option.hard_ttl())
            .await
            .map_err(CallError::into_rpc)?;
        match result {
            Ok(response) => {
                match &response {
                    AppendEntriesResponse::Success => {
                        self.peers.record_success(self.target, term, sent_up_to, end_at_send)
                    }
                    AppendEntriesResponse::PartialSuccess(matched) => {
                        self.peers
                            .record_success(self.target, term, matched.map(|m| m.index), end_at_send)
                    }
                    _ => {}
                }
                Ok(response)
            }
            Err(e) => Err(RPCError::RemoteError(RemoteError::new(self.target, e))),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<C>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId, InstallSnapshotError>>> {
        let result: Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>> = self
            .call(Method::InstallSnapshot, &rpc, option.hard_ttl())
            .await
            .map_err(CallError::into_rpc)?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, Node, RaftError<NodeId>>> {
        let result: Result<VoteResponse<NodeId>, RaftError<NodeId>> = self
            .call(Method::Vote, &rpc, option.hard_ttl())
            .await
            .map_err(CallError::into_rpc)?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

/// The server side of `fjord.raft.v1.Raft` for one node; mount it with
/// [`crate::Quorum::grpc_service`].
#[derive(Clone)]
pub struct RaftService {
    inner: Arc<ServiceInner>,
}

impl std::fmt::Debug for RaftService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftService")
            .field("node_id", &self.inner.node_id)
            .field("cluster_id", &self.inner.cluster_id)
            .finish_non_exhaustive()
    }
}

struct ServiceInner {
    raft: Raft,
    cluster_id: String,
    node_id: NodeId,
    voters: BTreeMap<NodeId, String>,
    /// Last time a refusal was logged per (sender, cluster id), to keep the log readable.
    refusals: Mutex<HashMap<(NodeId, String), Instant>>,
}

/// How often one refused sender is logged.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

impl RaftService {
    pub(crate) fn new(
        raft: Raft,
        cluster_id: String,
        node_id: NodeId,
        voters: BTreeMap<NodeId, String>,
    ) -> RaftService {
        RaftService {
            inner: Arc::new(ServiceInner {
                raft,
                cluster_id,
                node_id,
                voters,
                refusals: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The tonic server for this service, with Fjord's message size limits.
    pub(crate) fn into_server(self) -> RaftServer<RaftService> {
        RaftServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    /// Refuses a request from another cluster (or meant for another node).
    fn check(&self, cluster_id: &str, from: NodeId, to: Option<NodeId>) -> Result<(), Status> {
        let inner = &self.inner;
        let refusal = if cluster_id != inner.cluster_id {
            Some(format!(
                "cluster id mismatch: node {from} belongs to cluster {cluster_id:?}, this node ({}) to cluster {:?}",
                inner.node_id, inner.cluster_id
            ))
        } else {
            to.filter(|&to| to != inner.node_id).map(|to| {
                format!(
                    "node id mismatch: node {from} sent a request for node {to} to node {} (wrong address in its voter list?)",
                    inner.node_id
                )
            })
        };
        let Some(message) = refusal else {
            return Ok(());
        };
        let now = Instant::now();
        let mut refusals = inner.refusals.lock();
        let last = refusals
            .entry((from, cluster_id.to_owned()))
            .or_insert(now - REFUSAL_LOG_INTERVAL * 2);
        if now.duration_since(*last) >= REFUSAL_LOG_INTERVAL {
            *last = now;
            tracing::error!(from_node = from, their_cluster_id = cluster_id, our_cluster_id = %inner.cluster_id,
                node_id = inner.node_id, "refusing quorum rpc: {message}");
        }
        Err(Status::failed_precondition(message))
    }

    fn decode<T: DeserializeOwned>(payload: &[u8]) -> Result<T, Status> {
        serde_json::from_slice(payload).map_err(|e| Status::invalid_argument(format!("undecodable raft payload: {e}")))
    }

    fn reply<T, E>(result: Result<T, RaftError<NodeId, E>>) -> Result<Response<RaftReply>, Status>
    where
        T: Serialize,
        E: Serialize + std::error::Error,
    {
        if let Err(RaftError::Fatal(fatal)) = &result {
            return Err(Status::unavailable(format!("raft on this node is stopped: {fatal}")));
        }
        let payload = serde_json::to_vec(&result).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(RaftReply { payload }))
    }

    /// The leader this node knows, with its address.
    fn leader_hint(&self) -> Option<(NodeId, String)> {
        let metrics = self.inner.raft.metrics().borrow().clone();
        let leader = metrics.current_leader?;
        let addr = self.inner.voters.get(&leader).cloned().or_else(|| {
            metrics
                .membership_config
                .membership()
                .get_node(&leader)
                .map(|n| n.addr.clone())
        })?;
        Some((leader, addr))
    }
}

#[tonic::async_trait]
impl RaftRpc for RaftService {
    async fn append_entries(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let req = request.into_inner();
        self.check(&req.cluster_id, req.from_node, Some(req.to_node))?;
        let rpc: AppendEntriesRequest<C> = Self::decode(&req.payload)?;
        Self::reply(self.inner.raft.append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let req = request.into_inner();
        self.check(&req.cluster_id, req.from_node, Some(req.to_node))?;
        let rpc: VoteRequest<NodeId> = Self::decode(&req.payload)?;
        Self::reply(self.inner.raft.vote(rpc).await)
    }

    async fn install_snapshot(&self, request: Request<RaftRequest>) -> Result<Response<RaftReply>, Status> {
        let req = request.into_inner();
        self.check(&req.cluster_id, req.from_node, Some(req.to_node))?;
        let rpc: InstallSnapshotRequest<C> = Self::decode(&req.payload)?;
        Self::reply(self.inner.raft.install_snapshot(rpc).await)
    }

    async fn join(&self, request: Request<JoinRequest>) -> Result<Response<JoinReply>, Status> {
        let req = request.into_inner();
        self.check(&req.cluster_id, req.node_id, None)?;
        let inner = &self.inner;
        if inner.voters.contains_key(&req.node_id) {
            tracing::error!(node_id = req.node_id, addr = %req.addr, "refusing quorum join: the node id belongs to a voter");
            return Err(Status::already_exists(format!(
                "node id {} is a voter of this cluster; a joining node needs an id of its own",
                req.node_id
            )));
        }
        let not_added = |leader: Option<(NodeId, String)>| {
            Ok(Response::new(JoinReply {
                added: false,
                leader_id: leader.as_ref().map(|l| l.0),
                leader_addr: leader.map(|l| l.1).unwrap_or_default(),
            }))
        };
        let metrics = inner.raft.metrics().borrow().clone();
        if metrics.current_leader != Some(inner.node_id) {
            return not_added(self.leader_hint());
        }
        if let Some(node) = metrics.membership_config.membership().get_node(&req.node_id) {
            if node.addr == req.addr {
                return Ok(Response::new(JoinReply {
                    added: true,
                    leader_id: Some(inner.node_id),
                    leader_addr: String::new(),
                }));
            }
            tracing::error!(node_id = req.node_id, addr = %req.addr, known_addr = %node.addr,
                "refusing quorum join: the node id is already a learner at another address");
            return Err(Status::already_exists(format!(
                "node id {} is already a learner at {}; a second node may not take the same id",
                req.node_id, node.addr
            )));
        }
        match inner
            .raft
            .add_learner(req.node_id, Node::new(req.addr.clone()), false)
            .await
        {
            Ok(_) => {
                tracing::info!(node_id = req.node_id, addr = %req.addr, "added a learner to the metadata quorum");
                Ok(Response::new(JoinReply {
                    added: true,
                    leader_id: Some(inner.node_id),
                    leader_addr: String::new(),
                }))
            }
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => not_added(self.leader_hint()),
            Err(e) => Err(Status::unavailable(format!("cannot add learner {}: {e}", req.node_id))),
        }
    }
}
