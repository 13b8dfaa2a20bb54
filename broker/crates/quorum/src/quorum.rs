//! [`Quorum`]: one node of the metadata quorum. Starts openraft over the durable log store and
//! the metadata state machine, bootstraps or checks the membership, joins as a learner when it
//! is not a voter, and serves writes (leader only), images and the quorum state.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use fjord_api::raft::v1::JoinRequest;
use fjord_api::raft::v1::raft_server::RaftServer;
use fjord_metadata::{MetadataImage, MetadataRecord};
use openraft::error::{CheckIsLeaderError, ClientWriteError, ForwardToLeader, InitializeError, RaftError};
use openraft::{ServerState, SnapshotPolicy};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;

use crate::log_store::LogStore;
use crate::rpc::{Network, Peers, RaftService, now_millis};
use crate::state_machine::{Published, StateMachine};
use crate::types::{Batch, Node, NodeId, Raft};
use crate::{Error, Result};

/// One node's quorum configuration.
#[derive(Debug, Clone)]
pub struct QuorumConfig {
    /// This node's id (the broker's `node.id`).
    pub node_id: u64,
    /// `host:port` where other nodes reach this node's quorum service (advertised, not bind).
    pub advertised_addr: String,
    /// The voters, by node id: `host:port` of each one's quorum service. 1, 3 or 5 of them; a
    /// node not listed is a learner.
    pub voters: BTreeMap<u64, String>,
    /// Requests from another cluster id are refused.
    pub cluster_id: String,
    /// The quorum directory (the broker uses `<data>/metadata/raft/`).
    pub dir: PathBuf,
    /// A follower that hears no leader for a random time in `[min, max)` starts an election, so
    /// a new leader is usually elected within `max` plus one vote round trip of a leader's loss.
    pub election_timeout_min: Duration,
    pub election_timeout_max: Duration,
    /// The leader's heartbeat to every follower; at most a quarter of `election_timeout_min`.
    pub heartbeat_interval: Duration,
    /// How long a write waits to be committed and applied before [`Error::Timeout`].
    pub write_timeout: Duration,
    /// A snapshot is built every this many applied log entries, and the log behind it purged.
    pub snapshot_every: u64,
    /// Committed as the first batch when this node is the only voter and the log never held a
    /// batch (migration of a pre-quorum single-node metadata log); ignored otherwise.
    pub bootstrap_records: Vec<MetadataRecord>,
}

impl QuorumConfig {
    /// A configuration with Fjord's default timeouts; `voters` as given.
    pub fn new(
        node_id: u64,
        advertised_addr: impl Into<String>,
        voters: BTreeMap<u64, String>,
        cluster_id: impl Into<String>,
        dir: impl Into<PathBuf>,
    ) -> QuorumConfig {
        QuorumConfig {
            node_id,
            advertised_addr: advertised_addr.into(),
            voters,
            cluster_id: cluster_id.into(),
            dir: dir.into(),
            election_timeout_min: Duration::from_millis(1000),
            election_timeout_max: Duration::from_millis(2000),
            heartbeat_interval: Duration::from_millis(200),
            write_timeout: Duration::from_secs(10),
            snapshot_every: 1000,
            bootstrap_records: Vec::new(),
        }
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.voters.is_empty() {
            return bad("the voter list is empty".into());
        }
        if let Some((id, _)) = self.voters.iter().find(|(_, addr)| addr.is_empty()) {
            return bad(format!("voter {id} has no address"));
        }
        if self.cluster_id.is_empty() {
            return bad("the cluster id is empty".into());
        }
        if self.advertised_addr.is_empty() {
            return bad("the advertised address is empty".into());
        }
        if let Some(addr) = self.voters.get(&self.node_id)
            && *addr != self.advertised_addr
        {
            return bad(format!(
                "node {} advertises {} but the voter list names it at {addr}",
                self.node_id, self.advertised_addr
            ));
        }
        if self.election_timeout_min >= self.election_timeout_max {
            return bad("election_timeout_min must be below election_timeout_max".into());
        }
        if self.heartbeat_interval * 4 > self.election_timeout_min {
            return bad("heartbeat_interval must be at most a quarter of election_timeout_min".into());
        }
        if self.election_timeout_min < Duration::from_millis(20) {
            return bad("election_timeout_min must be at least 20ms".into());
        }
        if self.snapshot_every == 0 {
            return bad("snapshot_every must be at least 1".into());
        }
        if self.voters.len().is_multiple_of(2) {
            tracing::warn!(
                voters = self.voters.len(),
                "an even number of voters tolerates no more failures than one fewer"
            );
        }
        Ok(())
    }
}

/// One replica in [`QuorumState`] (Kafka's DescribeQuorum ReplicaState). Offsets are Kafka-style
/// exclusive ends: `log_end_offset` is the replica's last matched Raft index + 1. Timestamps are
/// Unix milliseconds; -1 when unknown (always on a node that is not the leader).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaState {
    pub replica_id: u64,
    pub log_end_offset: i64,
    pub last_fetch_timestamp: i64,
    pub last_caught_up_timestamp: i64,
}

/// What Kafka's DescribeQuorum (API 55) reports, as this node sees it. Only the leader knows the
/// followers' progress; elsewhere their fields are -1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumState {
    /// The leader's node id, if one is known.
    pub leader_id: Option<u64>,
    /// The current Raft term (Kafka's leader epoch).
    pub leader_epoch: u64,
    /// The committed Raft index + 1 (exclusive, as Kafka's high watermark); 0 if none.
    pub high_watermark: i64,
    /// The voters, by id.
    pub voters: Vec<ReplicaState>,
    /// The learners (Kafka's observers), by id.
    pub observers: Vec<ReplicaState>,
}

/// One running node of the metadata quorum. Cheap to clone; call [`Quorum::shutdown`] to stop.
#[derive(Clone)]
pub struct Quorum {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Quorum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quorum")
            .field("node_id", &self.inner.config.node_id)
            .field("cluster_id", &self.inner.config.cluster_id)
            .finish_non_exhaustive()
    }
}

struct Inner {
    raft: Raft,
    config: QuorumConfig,
    published: Arc<Published>,
    peers: Arc<Peers>,
    /// Serialises writers on the leader; holds the term whose earlier entries are known applied.
    writer: tokio::sync::Mutex<Option<u64>>,
    shutdown: watch::Sender<bool>,
    tasks: parking_lot::Mutex<Vec<JoinHandle<()>>>,
}

fn raft_error(e: impl std::fmt::Display) -> Error {
    Error::Raft(e.to_string())
}

impl Quorum {
    /// Opens the quorum directory and starts this node. A voter of a fresh cluster initializes
    /// the membership from `voters` (every voter may; only storage that never held a membership
    /// is initialized); a node that is not a voter asks the voters to add it as a learner until
    /// one does. A stored membership whose voters differ from `voters` is
    /// [`Error::MembershipMismatch`]. With a single voter this returns once it is the leader
    /// (and `bootstrap_records`, if any, are committed); otherwise at once: mount
    /// [`Quorum::grpc_service`] so the peers can reach it.
    pub async fn start(config: QuorumConfig) -> Result<Quorum> {
        config.validate()?;
        let log = LogStore::open(&config.dir)?;
        let (sm, published) = StateMachine::open(&config.dir)?;
        let raft_config = openraft::Config {
            cluster_name: config.cluster_id.clone(),
            // openraft 0.9 lets a follower campaign only after a leader lease (its
            // election_timeout_max) plus a random election timeout since the last heartbeat;
            // halving both makes that wait fall in [min, max) of the configured timeouts.
            election_timeout_min: config.election_timeout_min.as_millis() as u64 / 2,
            election_timeout_max: config.election_timeout_max.as_millis() as u64 / 2,
            heartbeat_interval: config.heartbeat_interval.as_millis() as u64,
            install_snapshot_timeout: config.write_timeout.as_millis() as u64,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_every),
            // Purge everything a snapshot covers: a node that falls behind it gets the snapshot.
            max_in_snapshot_log_to_keep: 0,
            purge_batch_size: 1,
            max_payload_entries: 64,
            ..Default::default()
        }
        .validate()
        .map_err(|e| Error::Config(e.to_string()))?;
        let peers = Arc::new(Peers::new(
            config.cluster_id.clone(),
            config.node_id,
            config.voters.clone(),
            config.heartbeat_interval.max(Duration::from_millis(100)) * 2,
            log.clone(),
        ));
        let network = Network { peers: peers.clone() };
        let raft = Raft::new(config.node_id, Arc::new(raft_config), network, log, sm)
            .await
            .map_err(raft_error)?;
        let quorum = Quorum {
            inner: Arc::new(Inner {
                raft: raft.clone(),
                config: config.clone(),
                published,
                peers,
                writer: tokio::sync::Mutex::new(None),
                shutdown: watch::Sender::new(false),
                tasks: parking_lot::Mutex::new(Vec::new()),
            }),
        };
        if let Err(error) = quorum.bootstrap().await {
            let _ = raft.shutdown().await;
            return Err(error);
        }
        Ok(quorum)
    }

    async fn bootstrap(&self) -> Result<()> {
        let config = &self.inner.config;
        let raft = &self.inner.raft;
        let stored: Vec<NodeId> = raft
            .with_raft_state(|st| st.membership_state.effective().voter_ids().collect())
            .await
            .map_err(raft_error)?;
        let configured: Vec<NodeId> = config.voters.keys().copied().collect();
        let is_voter = config.voters.contains_key(&config.node_id);
        if !stored.is_empty() && stored != configured {
            tracing::error!(?stored, ?configured, dir = %config.dir.display(),
                "the stored quorum membership differs from the configured voters");
            return Err(Error::MembershipMismatch {
                stored,
                configured,
                dir: config.dir.clone(),
            });
        }
        if stored.is_empty() && is_voter {
            let members: BTreeMap<NodeId, Node> = config
                .voters
                .iter()
                .map(|(id, addr)| (*id, Node::new(addr.clone())))
                .collect();
            match raft.initialize(members).await {
                Ok(()) => tracing::info!(voters = ?configured, cluster_id = %config.cluster_id,
                    "initialized a new metadata quorum"),
                Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(e) => return Err(raft_error(e)),
            }
        }
        if !is_voter {
            let quorum = self.clone();
            let task = tokio::spawn(async move { quorum.join_loop().await });
            self.inner.tasks.lock().push(task);
        }
        if configured == [config.node_id] {
            // A quorum of itself: leader within one election timeout, no peers needed.
            let wait = config.election_timeout_max * 10;
            raft.wait(Some(wait))
                .state(ServerState::Leader, "single voter leads")
                .await
                .map_err(|e| Error::Raft(format!("single voter did not become leader: {e}")))?;
            if !config.bootstrap_records.is_empty() {
                let records = config.bootstrap_records.clone();
                let published = self.inner.published.clone();
                let (_, written) = self
                    .write_with(move |_| {
                        if published.batches.load(Ordering::Acquire) == 0 {
                            Ok::<_, Error>((records, true))
                        } else {
                            Ok((Vec::new(), false))
                        }
                    })
                    .await?;
                if written {
                    tracing::info!(
                        records = config.bootstrap_records.len(),
                        "committed the bootstrap metadata records"
                    );
                }
            }
        }
        Ok(())
    }

    /// A learner asks the voters (the leader hint first) to add it, until it is in the membership.
    async fn join_loop(self) {
        let config = &self.inner.config;
        let mut shutdown = self.inner.shutdown.subscribe();
        let mut hint: Option<String> = None;
        let retry = config.heartbeat_interval * 2;
        let timeout = config.election_timeout_max;
        loop {
            let joined = {
                let metrics = self.inner.raft.metrics();
                let m = metrics.borrow();
                m.membership_config.membership().get_node(&config.node_id).is_some()
            };
            if joined {
                tracing::info!(node_id = config.node_id, "joined the metadata quorum as a learner");
                return;
            }
            let targets: Vec<String> = hint.take().into_iter().chain(config.voters.values().cloned()).collect();
            for addr in targets {
                let Ok(mut client) = self.inner.peers.client(&addr) else {
                    continue;
                };
                let mut request = tonic::Request::new(JoinRequest {
                    cluster_id: config.cluster_id.clone(),
                    node_id: config.node_id,
                    addr: config.advertised_addr.clone(),
                });
                request.set_timeout(timeout);
                match tokio::time::timeout(timeout, client.join(request)).await {
                    Ok(Ok(reply)) => {
                        let reply = reply.into_inner();
                        if reply.added {
                            break;
                        }
                        if !reply.leader_addr.is_empty() {
                            hint = Some(reply.leader_addr);
                        }
                    }
                    Ok(Err(status)) => {
                        if matches!(
                            status.code(),
                            tonic::Code::FailedPrecondition | tonic::Code::AlreadyExists
                        ) {
                            tracing::error!(addr = %addr, reason = status.message(), "the metadata quorum refused this node's join");
                        } else {
                            tracing::debug!(addr = %addr, %status, "quorum join attempt failed");
                        }
                    }
                    Err(_) => tracing::debug!(addr = %addr, "quorum join attempt timed out"),
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(retry) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
    }

    /// The tonic service to mount on the controller listener next to the broker's own services.
    pub fn grpc_service(&self) -> RaftServer<RaftService> {
        let config = &self.inner.config;
        RaftService::new(
            self.inner.raft.clone(),
            config.cluster_id.clone(),
            config.node_id,
            config.voters.clone(),
        )
        .into_server()
    }

    /// Serves [`Quorum::grpc_service`] alone on `listener` until `shutdown` completes or the
    /// quorum shuts down (tests and tools; the broker mounts the service on its own server).
    pub async fn serve(&self, listener: TcpListener, shutdown: impl Future<Output = ()> + Send) -> Result<()> {
        let mut stopped = self.inner.shutdown.subscribe();
        tonic::transport::Server::builder()
            .add_service(self.grpc_service())
            .serve_with_incoming_shutdown(TcpIncoming::from(listener), async move {
                tokio::select! {
                    () = shutdown => {}
                    _ = stopped.wait_for(|stop| *stop) => {}
                }
            })
            .await
            .map_err(|e| Error::Transport(e.to_string()))
    }

    /// The current image (everything applied on this node).
    pub fn image(&self) -> Arc<MetadataImage> {
        self.inner.published.image.borrow().clone()
    }

    /// Every new image, as it is applied on this node.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.inner.published.image.subscribe()
    }

    /// The leader this node knows: node id and quorum address.
    pub fn leader(&self) -> Option<(u64, String)> {
        let metrics = self.inner.raft.metrics();
        let m = metrics.borrow();
        let leader = m.current_leader?;
        let addr = self.inner.config.voters.get(&leader).cloned().or_else(|| {
            m.membership_config
                .membership()
                .get_node(&leader)
                .map(|n| n.addr.clone())
        })?;
        Some((leader, addr))
    }

    /// Waits until a leader is known (this node or another), up to `timeout`.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Result<(u64, String)> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut metrics = self.inner.raft.metrics();
        loop {
            if let Some(leader) = self.leader() {
                return Ok(leader);
            }
            match tokio::time::timeout_at(deadline, metrics.changed()).await {
                Err(_) => return Err(Error::Timeout(timeout)),
                Ok(Err(_)) => return Err(Error::Shutdown),
                Ok(Ok(())) => {}
            }
        }
    }

    /// True if this node is the leader (the active controller).
    pub fn is_leader(&self) -> bool {
        let metrics = self.inner.raft.metrics();
        let m = metrics.borrow();
        m.state == ServerState::Leader && m.current_leader == Some(self.inner.config.node_id)
    }

    /// The Raft term this node leads, if it is the leader: a controller that lost leadership and
    /// won it back has a new term, so per-leadership state (broker sessions) is keyed by it.
    pub fn leader_term(&self) -> Option<u64> {
        let metrics = self.inner.raft.metrics();
        let m = metrics.borrow();
        (m.state == ServerState::Leader && m.current_leader == Some(self.inner.config.node_id))
            .then_some(m.current_term)
    }

    /// Resolves once the leader this node knows is no longer `leader` (another node, or none).
    /// A call forwarded to a leader that was paused or cut off is abandoned by racing this.
    pub async fn wait_leader_change(&self, leader: Option<u64>) {
        let mut metrics = self.inner.raft.metrics();
        loop {
            if metrics.borrow().current_leader != leader {
                return;
            }
            if metrics.changed().await.is_err() {
                return;
            }
        }
    }

    /// This node's id.
    pub fn node_id(&self) -> u64 {
        self.inner.config.node_id
    }

    fn not_leader(&self) -> Error {
        Error::NotLeader { leader: self.leader() }
    }

    fn forward_error(&self, f: &ForwardToLeader<NodeId, Node>) -> Error {
        let leader = f.leader_id.and_then(|id| {
            let addr = self
                .inner
                .config
                .voters
                .get(&id)
                .cloned()
                .or_else(|| f.leader_node.as_ref().map(|n| n.addr.clone()))?;
            Some((id, addr))
        });
        Error::NotLeader { leader }
    }

    /// Commits `records` as one batch through the leader; returns the image that includes them,
    /// once committed and applied on this node. See [`Quorum::write_with`].
    pub async fn write(&self, records: Vec<MetadataRecord>) -> Result<Arc<MetadataImage>> {
        self.write_with(|_| Ok::<_, Error>((records, ())))
            .await
            .map(|(image, ())| image)
    }

    /// An atomic check-then-write on the leader: writers are serialised, and `build` runs
    /// against an image that includes every entry committed before it (a new leader first
    /// applies everything up to its own term's first entry). The records it returns are checked
    /// against that image ([`Error::Rejected`]), committed as one batch, and applied; the call
    /// returns the image that includes them, with `build`'s value. No records: nothing is
    /// written and the current image is returned. Not the leader: [`Error::NotLeader`].
    pub async fn write_with<T, E, F>(&self, build: F) -> Result<(Arc<MetadataImage>, T), E>
    where
        F: FnOnce(&MetadataImage) -> Result<(Vec<MetadataRecord>, T), E>,
        E: From<Error>,
    {
        let inner = &self.inner;
        let mut ensured = inner.writer.lock().await;
        if *inner.shutdown.borrow() {
            return Err(Error::Shutdown.into());
        }
        let term = {
            let metrics = inner.raft.metrics();
            let m = metrics.borrow();
            if m.state != ServerState::Leader || m.current_leader != Some(inner.config.node_id) {
                drop(m);
                return Err(self.not_leader().into());
            }
            m.current_term
        };
        let timeout = inner.config.write_timeout;
        if *ensured != Some(term) {
            // Confirms leadership with a quorum and waits until everything committed before
            // this term's first entry is applied here. A quorum that does not answer one
            // heartbeat round (a peer reconnecting) is asked again until the write timeout.
            let deadline = tokio::time::Instant::now() + timeout;
            loop {
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                match tokio::time::timeout(left, inner.raft.ensure_linearizable()).await {
                    Err(_) => return Err(Error::Timeout(timeout).into()),
                    Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)))) => {
                        return Err(self.forward_error(&f).into());
                    }
                    Ok(Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(e)))) => {
                        if tokio::time::Instant::now() + inner.config.heartbeat_interval >= deadline {
                            tracing::warn!(error = %e, "no quorum confirmed this node's leadership");
                            return Err(Error::Timeout(timeout).into());
                        }
                        tokio::time::sleep(inner.config.heartbeat_interval).await;
                    }
                    Ok(Err(RaftError::Fatal(_))) => return Err(Error::Shutdown.into()),
                    Ok(Ok(_)) => {
                        *ensured = Some(term);
                        break;
                    }
                }
            }
        }
        let image = self.image();
        let (records, out) = build(&image)?;
        if records.is_empty() {
            return Ok((image, out));
        }
        image.apply(&records).map_err(Error::Rejected)?;
        let response = match tokio::time::timeout(timeout, inner.raft.client_write(Batch(records))).await {
            Err(_) => {
                // Whether it commits is unknown: the next writer confirms the log again.
                *ensured = None;
                return Err(Error::Timeout(timeout).into());
            }
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                *ensured = None;
                return Err(self.forward_error(&f).into());
            }
            Ok(Err(RaftError::APIError(e))) => return Err(Error::Raft(e.to_string()).into()),
            Ok(Err(RaftError::Fatal(_))) => return Err(Error::Shutdown.into()),
            Ok(Ok(response)) => response,
        };
        let index = response.log_id.index;
        if let Some(reason) = response.data.error {
            return Err(Error::Skipped { index, reason }.into());
        }
        let image = self.image();
        debug_assert!(image.offset >= index, "client_write returns after the entry is applied");
        Ok((image, out))
    }

    /// Waits until the entry at Raft log index `index` is applied on this node, and returns the
    /// image then (its offset may be lower: blank and membership entries take indexes too).
    pub async fn wait_applied(&self, index: u64) -> Result<Arc<MetadataImage>> {
        let mut applied = self.inner.published.applied.subscribe();
        let mut shutdown = self.inner.shutdown.subscribe();
        tokio::select! {
            result = applied.wait_for(|a| a.is_some_and(|a| a >= index)) => {
                result.map_err(|_| Error::Shutdown)?;
            }
            _ = shutdown.wait_for(|stop| *stop) => return Err(Error::Shutdown),
        }
        Ok(self.image())
    }

    /// Index of the last log entry applied on this node (any kind), if any.
    pub fn applied_index(&self) -> Option<u64> {
        *self.inner.published.applied.borrow()
    }

    /// The quorum as this node sees it (Kafka's DescribeQuorum).
    pub async fn state(&self) -> Result<QuorumState> {
        let inner = &self.inner;
        let committed = inner
            .raft
            .with_raft_state(|st| st.committed)
            .await
            .map_err(|_| Error::Shutdown)?;
        let m = inner.raft.metrics().borrow().clone();
        let me = inner.config.node_id;
        let leading = m.state == ServerState::Leader;
        let stats = inner.peers.stats.lock().clone();
        let now = now_millis();
        let replica = |id: NodeId| {
            if !leading {
                return ReplicaState {
                    replica_id: id,
                    log_end_offset: -1,
                    last_fetch_timestamp: -1,
                    last_caught_up_timestamp: -1,
                };
            }
            if id == me {
                return ReplicaState {
                    replica_id: id,
                    log_end_offset: m.last_log_index.map_or(0, |i| i as i64 + 1),
                    last_fetch_timestamp: now,
                    last_caught_up_timestamp: now,
                };
            }
            // Only what this leader's term learnt counts.
            let stat = stats
                .get(&id)
                .copied()
                .filter(|s| s.term == m.current_term)
                .unwrap_or_default();
            ReplicaState {
                replica_id: id,
                log_end_offset: stat.matched.map_or(-1, |i| i as i64 + 1),
                last_fetch_timestamp: stat.last_fetch_ms.unwrap_or(-1),
                last_caught_up_timestamp: stat.last_caught_up_ms.unwrap_or(-1),
            }
        };
        let membership = m.membership_config.membership();
        Ok(QuorumState {
            leader_id: m.current_leader,
            leader_epoch: m.current_term,
            high_watermark: committed.map_or(0, |c| c.index as i64 + 1),
            voters: membership.voter_ids().map(replica).collect(),
            observers: membership.learner_ids().map(replica).collect(),
        })
    }

    /// Stops this node: background tasks, the served RPCs (through [`Quorum::serve`]) and Raft.
    /// Pending writes fail with [`Error::Shutdown`]. Idempotent.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        inner.shutdown.send_replace(true);
        let tasks = std::mem::take(&mut *inner.tasks.lock());
        for task in tasks {
            task.abort();
        }
        if let Err(error) = inner.raft.shutdown().await {
            tracing::warn!(%error, "raft did not stop cleanly");
        }
    }
}
