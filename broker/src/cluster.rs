//! Cluster mode: where metadata is committed (the local metadata log of the embedded one-node
//! broker, or the Raft quorum), the broker-to-controller RPC that carries broker registration,
//! heartbeats and admin operations from any broker to the active controller (Kafka forwards them
//! too), and the active controller's session timer that fences silent brokers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use fjord_api::cluster::v1::controller_client::ControllerClient;
use fjord_api::cluster::v1::controller_server::Controller;
use fjord_api::cluster::v1::{ControllerCall, ControllerReply};
use fjord_metadata::control::{self, BrokerHeartbeat, BrokerRegistrationRequest, HeartbeatTracker};
use fjord_metadata::{BrokerId, Endpoint, MetadataImage, MetadataRecord, MetadataStore};
use fjord_protocol::kafka_protocol::error::ResponseError;
use fjord_quorum::Quorum;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use crate::broker::Broker;
use crate::controller::{ApiError, ConfigChange, NewTopic};

/// How long a forwarded controller call may take (commit on the controller included).
const CONTROLLER_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Where metadata is committed.
#[derive(Debug)]
pub enum MetadataBackend {
    /// The embedded single node: a local, fsynced metadata log.
    Local(MetadataStore),
    /// Cluster mode: the replicated metadata log (`fjord-quorum`).
    Raft(Quorum),
}

impl MetadataBackend {
    /// The newest image applied on this broker.
    pub fn image(&self) -> Arc<MetadataImage> {
        match self {
            MetadataBackend::Local(store) => store.image(),
            MetadataBackend::Raft(quorum) => quorum.image(),
        }
    }

    pub fn set_reserve(&self, bytes: u64) {
        if let MetadataBackend::Local(store) = self {
            store.set_reserve(bytes);
        }
    }

    pub fn ensure_reserve(&self) {
        if let MetadataBackend::Local(store) = self {
            store.ensure_reserve();
        }
    }

    /// The embedded node's local log is rewritten as its image once it holds more than
    /// `max_batches` batches (the quorum snapshots and purges its own log).
    pub fn compact_if_over(&self, max_batches: u64) {
        if let MetadataBackend::Local(store) = self {
            store.compact_if_over(max_batches);
        }
    }

    /// The quorum, in cluster mode.
    pub fn quorum(&self) -> Option<&Quorum> {
        match self {
            MetadataBackend::Local(_) => None,
            MetadataBackend::Raft(quorum) => Some(quorum),
        }
    }

    /// Whether this broker is the active controller (always, on the embedded single node).
    pub fn is_controller(&self) -> bool {
        self.quorum().is_none_or(Quorum::is_leader)
    }

    /// The active controller's node id and controller-listener address, if known.
    pub fn controller(&self) -> Option<(i32, Option<String>)> {
        match self {
            MetadataBackend::Local(_) => None,
            MetadataBackend::Raft(quorum) => quorum.leader().map(|(id, addr)| (id as i32, Some(addr))),
        }
    }

    /// An atomic check-then-write (see `MetadataStore::commit_with`). Blocking: call from a
    /// blocking thread. In cluster mode only the active controller may call it.
    pub fn commit_with<T>(
        &self,
        build: impl FnOnce(&MetadataImage) -> Result<(Vec<MetadataRecord>, T), fjord_metadata::Error>,
    ) -> Result<(Arc<MetadataImage>, T), fjord_metadata::Error> {
        match self {
            MetadataBackend::Local(store) => store.commit_with(build),
            MetadataBackend::Raft(quorum) => {
                let handle = tokio::runtime::Handle::current();
                handle
                    .block_on(quorum.write_with(|image| build(image).map_err(QuorumWriteError::Metadata)))
                    .map_err(|e| match e {
                        QuorumWriteError::Metadata(e) => e,
                        QuorumWriteError::Quorum(e) => fjord_metadata::Error::Invalid(format!("metadata quorum: {e}")),
                    })
            }
        }
    }
}

/// A write through the quorum fails in the closure (a refusal) or in the quorum.
#[derive(Debug)]
enum QuorumWriteError {
    Metadata(fjord_metadata::Error),
    Quorum(fjord_quorum::Error),
}

impl From<fjord_quorum::Error> for QuorumWriteError {
    fn from(e: fjord_quorum::Error) -> Self {
        QuorumWriteError::Quorum(e)
    }
}

/// One operation for the active controller, as sent over `fjord.cluster.v1.Controller/Call`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ControllerRequest {
    CreateTopic {
        topic: NewTopic,
        validate_only: bool,
        internal: bool,
    },
    DeleteTopic {
        name: String,
    },
    CreatePartitions {
        name: String,
        count: i32,
        assignments: Option<Vec<Vec<i32>>>,
        validate_only: bool,
    },
    AlterTopicConfigs {
        name: String,
        changes: Vec<(String, ConfigChange)>,
        replace_all: bool,
        validate_only: bool,
    },
    AlterBrokerConfigs {
        broker: Option<i32>,
        changes: Vec<(String, ConfigChange)>,
        replace_all: bool,
        validate_only: bool,
    },
    AlterGroupConfigs {
        group: String,
        changes: Vec<(String, ConfigChange)>,
        validate_only: bool,
    },
    AllocateProducerIds {
        broker: i32,
        size: i64,
    },
    /// ElectLeaders: PREFERRED, or UNCLEAN when `unclean`; `None` = every partition.
    ElectLeaders {
        #[serde(default)]
        unclean: bool,
        partitions: Option<Vec<(String, i32)>>,
    },
    /// The quorum's state for DescribeQuorum (only the leader knows the followers' progress).
    DescribeQuorum,
    /// ISR changes from a partition leader (AlterPartition), one result per request.
    AlterPartitions {
        requests: Vec<control::AlterPartitionRequest>,
    },
    AlterScramCredentials {
        changes: Vec<crate::security::admin::ScramChange>,
    },
    CreateAcls {
        bindings: Vec<fjord_metadata::security::AclBinding>,
    },
    DeleteAcls {
        filters: Vec<fjord_metadata::security::AclFilter>,
    },
    RegisterBroker {
        broker_id: i32,
        incarnation_id: uuid::Uuid,
        rack: Option<String>,
        listeners: Vec<Endpoint>,
    },
    Heartbeat {
        broker_id: i32,
        broker_epoch: i64,
        current_metadata_offset: u64,
        want_shutdown: bool,
    },
}

/// A Kafka error as it travels between brokers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireError {
    pub code: i16,
    pub message: String,
}

impl From<ApiError> for WireError {
    fn from(e: ApiError) -> Self {
        WireError {
            code: e.code.code(),
            message: e.message,
        }
    }
}

impl From<WireError> for ApiError {
    fn from(e: WireError) -> Self {
        let code = ResponseError::try_from_code(e.code).unwrap_or(ResponseError::UnknownServerError);
        ApiError::new(code, e.message)
    }
}

/// What the active controller answered, and the metadata offset the caller must have applied to
/// read the change.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ControllerOutcome {
    pub result: Result<serde_json::Value, WireError>,
    pub offset: u64,
}

/// The active controller's in-memory state: broker sessions (Kafka's BrokerHeartbeatManager).
#[derive(Debug)]
pub struct ControllerState {
    tracker: Mutex<HeartbeatTracker>,
    /// The Raft term in which this node last became the active controller (0 on the embedded
    /// single node); sessions are restarted for every registered broker when it changes.
    active: Mutex<Option<u64>>,
}

impl ControllerState {
    pub fn new(session_timeout: Duration) -> ControllerState {
        ControllerState {
            tracker: Mutex::new(HeartbeatTracker::new(session_timeout.as_millis() as u64)),
            active: Mutex::new(None),
        }
    }
}

fn now_ms() -> u64 {
    crate::clock::now_ms().max(0) as u64
}

fn not_controller(broker: &Broker) -> ApiError {
    let known = broker
        .metadata
        .controller()
        .map_or("no controller is known".to_string(), |(id, _)| {
            format!("the active controller is {id}")
        });
    ApiError::new(
        ResponseError::NotController,
        format!("this broker is not the active controller; {known}"),
    )
}

impl Broker {
    /// Runs `request` on the active controller: here, or forwarded to it. Answers once the change
    /// is applied on this broker too, so the caller reads its own write.
    pub fn controller_call<T: serde::de::DeserializeOwned>(&self, request: ControllerRequest) -> Result<T, ApiError> {
        let outcome = if self.metadata.is_controller() {
            self.execute_controller_request(request)
        } else {
            self.forward(&request)?
        };
        if outcome.offset > 0 && self.metadata.quorum().is_some() {
            let image_offset = outcome.offset;
            let quorum = self.metadata.quorum().expect("checked").clone();
            let handle = tokio::runtime::Handle::current();
            handle
                .block_on(async {
                    tokio::time::timeout(CONTROLLER_CALL_TIMEOUT, quorum.wait_applied(image_offset)).await
                })
                .map_err(|_| ApiError::new(ResponseError::RequestTimedOut, "metadata change not applied in time"))?
                .map_err(|e| ApiError::new(ResponseError::UnknownServerError, e.to_string()))?;
            self.await_published(self.image())
                .map_err(|e| ApiError::new(ResponseError::KafkaStorageError, e))?;
        }
        let value = outcome.result.map_err(ApiError::from)?;
        serde_json::from_value(value)
            .map_err(|e| ApiError::new(ResponseError::UnknownServerError, format!("bad controller reply: {e}")))
    }

    /// Sends `request` to the active controller's controller listener.
    fn forward(&self, request: &ControllerRequest) -> Result<ControllerOutcome, ApiError> {
        let Some((id, Some(address))) = self.metadata.controller() else {
            return Err(not_controller(self));
        };
        let body =
            serde_json::to_vec(request).map_err(|e| ApiError::new(ResponseError::UnknownServerError, e.to_string()))?;
        let call = ControllerCall {
            cluster_id: self.cluster_id.clone(),
            from_node_id: self.node_id(),
            request: body,
        };
        let channel = self.controller_channel(&address)?;
        let timeout = self.forward_timeout(request);
        let quorum = self.metadata.quorum().cloned();
        let handle = tokio::runtime::Handle::current();
        let reply = handle.block_on(async move {
            let mut client = ControllerClient::new(channel);
            // A controller that was paused or cut off keeps the call until it times out; once
            // this broker learns of another leader the call is abandoned (NOT_CONTROLLER, and the
            // caller retries against the new one), so heartbeats reach a new controller well
            // within a broker session.
            let changed = async {
                match &quorum {
                    Some(q) => q.wait_leader_change(Some(id as u64)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                reply = tokio::time::timeout(timeout, client.call(call)) => Some(reply),
                () = changed => None,
            }
        });
        let reply = match reply {
            None => {
                return Err(ApiError::new(
                    ResponseError::NotController,
                    format!("the active controller changed from {id} while the call was in flight"),
                ));
            }
            Some(reply) => reply,
        };
        let reply = match reply {
            Err(_) => {
                return Err(ApiError::new(
                    ResponseError::RequestTimedOut,
                    format!("controller {id} did not answer in time"),
                ));
            }
            Ok(Err(status)) if status.code() == tonic::Code::FailedPrecondition => {
                return Err(ApiError::new(
                    ResponseError::NotController,
                    status.message().to_string(),
                ));
            }
            Ok(Err(status)) => {
                return Err(ApiError::new(
                    ResponseError::CoordinatorNotAvailable,
                    format!("controller {id} at {address}: {}", status.message()),
                ));
            }
            Ok(Ok(reply)) => reply.into_inner(),
        };
        serde_json::from_slice(&reply.reply)
            .map_err(|e| ApiError::new(ResponseError::UnknownServerError, format!("bad controller reply: {e}")))
    }

    /// How long a forwarded call may wait for the controller: a heartbeat or registration no
    /// longer than a third of a broker session, so a lost one is retried (to a new controller
    /// if there is one) before the session expires; admin operations longer.
    fn forward_timeout(&self, request: &ControllerRequest) -> Duration {
        match request {
            ControllerRequest::Heartbeat { .. } | ControllerRequest::RegisterBroker { .. } => {
                (self.config.cluster.broker_session_timeout / 3).max(Duration::from_millis(500))
            }
            _ => CONTROLLER_CALL_TIMEOUT,
        }
    }

    fn controller_channel(&self, address: &str) -> Result<tonic::transport::Channel, ApiError> {
        static CHANNELS: std::sync::LazyLock<Mutex<HashMap<String, tonic::transport::Channel>>> =
            std::sync::LazyLock::new(|| Mutex::new(HashMap::new()));
        let mut channels = CHANNELS.lock();
        if let Some(channel) = channels.get(address) {
            return Ok(channel.clone());
        }
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
            .map_err(|e| {
                ApiError::new(
                    ResponseError::UnknownServerError,
                    format!("controller address {address}: {e}"),
                )
            })?
            .connect_timeout(Duration::from_secs(3));
        let channel = endpoint.connect_lazy();
        channels.insert(address.to_string(), channel.clone());
        Ok(channel)
    }

    /// Runs a controller operation on this broker, which must be the active controller.
    pub fn execute_controller_request(&self, request: ControllerRequest) -> ControllerOutcome {
        if !self.metadata.is_controller() {
            return ControllerOutcome {
                result: Err(not_controller(self).into()),
                offset: 0,
            };
        }
        fn json<T: Serialize>(r: Result<T, ApiError>) -> Result<serde_json::Value, WireError> {
            r.map_err(WireError::from).and_then(|v| {
                serde_json::to_value(v).map_err(|e| WireError {
                    code: -1,
                    message: e.to_string(),
                })
            })
        }
        let result = match request {
            ControllerRequest::CreateTopic {
                topic,
                validate_only,
                internal,
            } => json(if internal {
                self.create_internal_topic_local(topic)
            } else {
                self.create_topic_local(topic, validate_only)
            }),
            ControllerRequest::DeleteTopic { name } => json(self.delete_topic_local(&name)),
            ControllerRequest::CreatePartitions {
                name,
                count,
                assignments,
                validate_only,
            } => json(self.create_partitions_local(&name, count, assignments.as_deref(), validate_only)),
            ControllerRequest::AlterTopicConfigs {
                name,
                changes,
                replace_all,
                validate_only,
            } => json(self.alter_topic_configs_local(&name, changes, replace_all, validate_only)),
            ControllerRequest::AlterBrokerConfigs {
                broker,
                changes,
                replace_all,
                validate_only,
            } => json(self.alter_broker_configs_local(broker.map(BrokerId), changes, replace_all, validate_only)),
            ControllerRequest::AlterGroupConfigs {
                group,
                changes,
                validate_only,
            } => json(self.alter_group_configs_local(&group, changes, validate_only)),
            ControllerRequest::AllocateProducerIds { broker, size } => {
                json(self.allocate_producer_id_block_local(BrokerId(broker), size))
            }
            ControllerRequest::ElectLeaders { unclean, partitions } => {
                let kind = if unclean {
                    control::ElectionType::Unclean
                } else {
                    control::ElectionType::Preferred
                };
                json(self.elect_leaders_local(kind, partitions.as_deref()))
            }
            ControllerRequest::DescribeQuorum => json(self.describe_quorum_local()),
            ControllerRequest::AlterPartitions { requests } => json(self.alter_partitions_local(&requests)),
            ControllerRequest::AlterScramCredentials { changes } => json(self.alter_scram_credentials_local(changes)),
            ControllerRequest::CreateAcls { bindings } => json(self.create_acls_local(bindings)),
            ControllerRequest::DeleteAcls { filters } => json(self.delete_acls_local(filters)),
            ControllerRequest::RegisterBroker {
                broker_id,
                incarnation_id,
                rack,
                listeners,
            } => json(self.register_broker_local(BrokerRegistrationRequest {
                broker_id: BrokerId(broker_id),
                incarnation_id,
                rack,
                listeners,
            })),
            ControllerRequest::Heartbeat {
                broker_id,
                broker_epoch,
                current_metadata_offset,
                want_shutdown,
            } => json(self.heartbeat_local(BrokerHeartbeat {
                broker_id: BrokerId(broker_id),
                broker_epoch,
                current_metadata_offset,
                want_fence: false,
                want_shutdown,
            })),
        };
        ControllerOutcome {
            result,
            offset: self.image().offset,
        }
    }

    /// Restarts broker sessions when this node has just become the active controller.
    fn activate_controller(&self) {
        let term = match self.metadata.quorum() {
            None => Some(0),
            Some(quorum) => quorum.leader_term(),
        };
        let Some(term) = term else { return };
        let mut active = self.controller_state.active.lock();
        if *active != Some(term) {
            *active = Some(term);
            self.controller_state.tracker.lock().activate(&self.image(), now_ms());
            tracing::info!(node_id = self.node_id(), term, "became the active controller");
        }
    }

    fn register_broker_local(&self, request: BrokerRegistrationRequest) -> Result<i64, ApiError> {
        self.activate_controller();
        let broker_id = request.broker_id;
        let (_, reply) = self
            .metadata
            .commit_with(|image| {
                let mut tracker = self.controller_state.tracker.lock();
                match control::register_broker(image, &mut tracker, request, now_ms()) {
                    Ok(result) => Ok((result.records, Ok(result.response))),
                    Err(e) => Ok((Vec::new(), Err(ApiError::from(e)))),
                }
            })
            .map_err(crate::controller::metadata_failure)?;
        let reply = reply?;
        tracing::info!(
            broker = broker_id.0,
            broker_epoch = reply.broker_epoch,
            "registered broker"
        );
        Ok(reply.broker_epoch)
    }

    fn heartbeat_local(&self, request: BrokerHeartbeat) -> Result<control::HeartbeatReply, ApiError> {
        self.activate_controller();
        let (_, reply) = self
            .metadata
            .commit_with(|image| {
                let mut tracker = self.controller_state.tracker.lock();
                match control::heartbeat(image, &mut tracker, request, now_ms()) {
                    Ok(result) => Ok((result.records, Ok(result.response))),
                    Err(e) => Ok((Vec::new(), Err(ApiError::from(e)))),
                }
            })
            .map_err(crate::controller::metadata_failure)?;
        reply
    }

    /// On the active controller: fences brokers whose session expired and moves their
    /// leaderships (run every second).
    pub fn fence_expired_brokers(&self) {
        if !self.metadata.is_controller() {
            *self.controller_state.active.lock() = None;
            return;
        }
        self.activate_controller();
        let result = self.metadata.commit_with(|image| {
            let mut tracker = self.controller_state.tracker.lock();
            let result = control::fence_expired_brokers(image, &mut tracker, now_ms());
            Ok((result.records, result.response))
        });
        match result {
            Ok((_, fenced)) if !fenced.is_empty() => {
                tracing::warn!(brokers = ?fenced.iter().map(|b| b.0).collect::<Vec<_>>(), "fenced brokers whose session expired")
            }
            Ok(_) => {}
            Err(error) => tracing::debug!(%error, "fencing expired brokers failed"),
        }
    }
}

impl Broker {
    /// On the controller: AlterPartition for each request, committed as one batch; per request
    /// the new partition epoch or Kafka's refusal.
    fn alter_partitions_local(
        &self,
        requests: &[control::AlterPartitionRequest],
    ) -> Result<Vec<Result<i32, WireError>>, ApiError> {
        let (_, results) = self
            .metadata
            .commit_with(|image| {
                let mut records = Vec::new();
                let mut results = Vec::with_capacity(requests.len());
                let mut working = image.clone();
                for request in requests {
                    match control::alter_partition(&working, request) {
                        Ok(result) => {
                            if !result.records.is_empty() {
                                working = working.apply(&result.records)?;
                                records.extend(result.records);
                            }
                            results.push(Ok(result.response));
                        }
                        Err(error) => results.push(Err(WireError::from(ApiError::from(error)))),
                    }
                }
                Ok((records, results))
            })
            .map_err(crate::controller::metadata_failure)?;
        Ok(results)
    }

    /// As partition leader, every `ISR_CHECK_INTERVAL`: asks the controller to shrink or expand
    /// the ISR of the partitions that need it (cluster mode only).
    pub fn maintain_isr(&self) {
        if self.metadata.quorum().is_none() || self.is_shutting_down() {
            return;
        }
        let lag = self.config.cluster.replica_lag_time_max.as_millis() as i64;
        let proposals = self.replicas.isr_proposals(crate::clock::now_ms(), lag);
        if proposals.is_empty() {
            return;
        }
        let me = BrokerId(self.node_id());
        let proposals: Vec<_> = proposals
            .into_iter()
            .filter(|p| p.partition.begin_isr_change(&p.new_isr))
            .collect();
        if proposals.is_empty() {
            return;
        }
        let requests = proposals
            .iter()
            .map(|p| control::AlterPartitionRequest {
                broker_id: me,
                topic: p.partition.topic.clone(),
                partition: p.partition.index,
                leader_epoch: p.leader_epoch,
                partition_epoch: p.partition_epoch,
                new_isr: p.new_isr.iter().map(|id| BrokerId(*id)).collect(),
            })
            .collect();
        // The ISR each change starts from, for the shrink and expand counters.
        let before: Vec<Vec<i32>> = proposals.iter().map(|p| p.partition.replica_set().isr).collect();
        let results =
            self.controller_call::<Vec<Result<i32, WireError>>>(ControllerRequest::AlterPartitions { requests });
        match results {
            Ok(results) => {
                for ((proposal, result), before) in proposals.iter().zip(results).zip(&before) {
                    let p = &proposal.partition;
                    match result {
                        Ok(epoch) => {
                            let m = &self.metrics.replication;
                            if before.iter().any(|id| !proposal.new_isr.contains(id)) {
                                m.isr_shrinks.inc();
                            }
                            if proposal.new_isr.iter().any(|id| !before.contains(id)) {
                                m.isr_expands.inc();
                            }
                            tracing::info!(topic = %p.topic, partition = p.index, isr = ?proposal.new_isr,
                                partition_epoch = epoch, "isr changed")
                        }
                        Err(error) => {
                            p.clear_pending_isr();
                            tracing::info!(topic = %p.topic, partition = p.index, code = error.code,
                                message = %error.message, "isr change refused");
                        }
                    }
                }
            }
            Err(error) => {
                for p in &proposals {
                    p.partition.clear_pending_isr();
                }
                tracing::debug!(message = %error.message, "alter partition failed");
            }
        }
    }
}

/// One replica of the metadata quorum as DescribeQuorum reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QuorumReplica {
    pub id: i32,
    pub log_end_offset: i64,
    pub last_fetch_timestamp: i64,
    pub last_caught_up_timestamp: i64,
}

/// The metadata quorum as DescribeQuorum (key 55) reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct QuorumDescription {
    pub leader_id: i32,
    pub leader_epoch: i32,
    pub high_watermark: i64,
    pub voters: Vec<QuorumReplica>,
    pub observers: Vec<QuorumReplica>,
}

impl Broker {
    /// ElectLeaders (PREFERRED, or UNCLEAN when `unclean`) for the given partitions or all; per
    /// partition the Kafka error, if any.
    pub fn elect_leaders(
        &self,
        unclean: bool,
        partitions: Option<Vec<(String, i32)>>,
    ) -> Result<Vec<(String, i32, Option<WireError>)>, ApiError> {
        self.controller_call(ControllerRequest::ElectLeaders { unclean, partitions })
    }

    fn elect_leaders_local(
        &self,
        kind: control::ElectionType,
        partitions: Option<&[(String, i32)]>,
    ) -> Result<Vec<(String, i32, Option<WireError>)>, ApiError> {
        let (_, results) = self
            .metadata
            .commit_with(|image| {
                let result = control::elect_leaders(image, kind, partitions);
                Ok((result.records, result.response))
            })
            .map_err(crate::controller::metadata_failure)?;
        Ok(results
            .into_iter()
            .map(|r| {
                (
                    r.topic,
                    r.partition,
                    r.result.err().map(|e| WireError::from(ApiError::from(e))),
                )
            })
            .collect())
    }

    /// On the active controller, every `cluster.leader_rebalance_interval`: moves leadership back
    /// to each partition's preferred replica where it is live and in the ISR
    /// (`auto.leader.rebalance.enable`).
    pub fn rebalance_leaders(&self) {
        if !self.config.cluster.auto_leader_rebalance || !self.metadata.is_controller() {
            return;
        }
        let result = self.metadata.commit_with(|image| {
            let result = control::rebalance_leaders(image, 1000);
            Ok((result.records, result.response))
        });
        match result {
            Ok((_, moved)) if !moved.is_empty() => {
                tracing::info!(partitions = moved.len(), "moved leaderships back to preferred replicas")
            }
            Ok(_) => {}
            Err(error) => tracing::debug!(%error, "preferred leader rebalance failed"),
        }
    }

    /// On the active controller, every controller tick: partitions without a leader whose topic
    /// allows unclean election get one (the config may have been turned on after they went
    /// offline, as Kafka's controller also handles).
    pub fn elect_unclean_where_allowed(&self) {
        if !self.metadata.is_controller() {
            return;
        }
        let image = self.image();
        let needed = image
            .partitions()
            .any(|(t, p)| !p.has_leader() && control::unclean_allowed(&image, t));
        if !needed {
            return;
        }
        match self.metadata.commit_with(|image| {
            let result = control::elect_unclean_where_allowed(image);
            Ok((result.records, result.response))
        }) {
            Ok((_, elected)) if !elected.is_empty() => {
                tracing::warn!(
                    partitions = elected.len(),
                    "unclean leader elections: data only the lost isr held is gone"
                )
            }
            Ok(_) => {}
            Err(error) => tracing::debug!(%error, "unclean leader election failed"),
        }
    }

    /// The quorum's state (DescribeQuorum), from the active controller.
    pub fn describe_quorum(&self) -> Result<QuorumDescription, ApiError> {
        self.controller_call(ControllerRequest::DescribeQuorum)
    }

    fn describe_quorum_local(&self) -> Result<QuorumDescription, ApiError> {
        let Some(quorum) = self.metadata.quorum() else {
            // The embedded single node: a quorum of itself.
            let me = QuorumReplica {
                id: self.node_id(),
                log_end_offset: self.image().offset as i64 + 1,
                last_fetch_timestamp: crate::clock::now_ms(),
                last_caught_up_timestamp: crate::clock::now_ms(),
            };
            return Ok(QuorumDescription {
                leader_id: self.node_id(),
                leader_epoch: 1,
                high_watermark: me.log_end_offset,
                voters: vec![me],
                observers: Vec::new(),
            });
        };
        let handle = tokio::runtime::Handle::current();
        let state = handle
            .block_on(quorum.state())
            .map_err(|e| ApiError::new(ResponseError::UnknownServerError, e.to_string()))?;
        let replica = |r: &fjord_quorum::ReplicaState| QuorumReplica {
            id: r.replica_id as i32,
            log_end_offset: r.log_end_offset,
            last_fetch_timestamp: r.last_fetch_timestamp,
            last_caught_up_timestamp: r.last_caught_up_timestamp,
        };
        Ok(QuorumDescription {
            leader_id: state.leader_id.map_or(-1, |id| id as i32),
            leader_epoch: i32::try_from(state.leader_epoch).unwrap_or(i32::MAX),
            high_watermark: state.high_watermark,
            voters: state.voters.iter().map(replica).collect(),
            observers: state.observers.iter().map(replica).collect(),
        })
    }
}

/// `fjord.cluster.v1.Controller` on the controller listener.
#[derive(Debug, Clone)]
pub struct ControllerService {
    pub broker: Arc<Broker>,
}

#[tonic::async_trait]
impl Controller for ControllerService {
    async fn call(
        &self,
        request: tonic::Request<ControllerCall>,
    ) -> Result<tonic::Response<ControllerReply>, tonic::Status> {
        let call = request.into_inner();
        if call.cluster_id != self.broker.cluster_id {
            tracing::warn!(from = call.from_node_id, theirs = %call.cluster_id, ours = %self.broker.cluster_id,
                "refusing a controller call from another cluster");
            return Err(tonic::Status::failed_precondition(format!(
                "cluster id {} does not match this cluster's {}",
                call.cluster_id, self.broker.cluster_id
            )));
        }
        let request: ControllerRequest = serde_json::from_slice(&call.request)
            .map_err(|e| tonic::Status::invalid_argument(format!("bad controller request: {e}")))?;
        if !self.broker.metadata.is_controller() {
            return Err(tonic::Status::failed_precondition(not_controller(&self.broker).message));
        }
        let outcome = self
            .broker
            .blocking(move |b| b.execute_controller_request(request))
            .await;
        let reply = serde_json::to_vec(&outcome).map_err(|e| tonic::Status::internal(e.to_string()))?;
        Ok(tonic::Response::new(ControllerReply { reply }))
    }
}

/// This broker's registration and heartbeats in cluster mode (KIP-631): registers with a fresh
/// incarnation, heartbeats every `broker_heartbeat_interval` with the metadata offset it has
/// applied (the controller unfences it once caught up), registers again if the controller no
/// longer knows its epoch. Stops when `shutdown` flips.
pub async fn run_lifecycle(broker: Arc<Broker>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let incarnation_id = uuid::Uuid::new_v4();
    let interval = broker.config.cluster.broker_heartbeat_interval;
    let mut epoch: Option<i64> = None;
    let mut fenced = true;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let mut answered = false;
        match epoch {
            None => {
                let request = ControllerRequest::RegisterBroker {
                    broker_id: broker.node_id(),
                    incarnation_id,
                    rack: broker.config.rack.clone(),
                    listeners: crate::lifecycle::endpoints(&broker.config),
                };
                match broker.blocking(move |b| b.controller_call::<i64>(request)).await {
                    Ok(e) => epoch = Some(e),
                    Err(error) if error.code == ResponseError::DuplicateBrokerRegistration => tracing::error!(
                        node_id = broker.node_id(), message = %error.message,
                        "registration refused: another live broker uses this node id; this broker will not join until it is gone"
                    ),
                    Err(error) => {
                        tracing::info!(code = ?error.code, message = %error.message, "broker registration not accepted yet; retrying")
                    }
                }
            }
            Some(broker_epoch) => {
                let request = ControllerRequest::Heartbeat {
                    broker_id: broker.node_id(),
                    broker_epoch,
                    current_metadata_offset: broker.publishing.published().offset,
                    want_shutdown: false,
                };
                match broker
                    .blocking(move |b| b.controller_call::<control::HeartbeatReply>(request))
                    .await
                {
                    Ok(reply) => {
                        answered = true;
                        if fenced && !reply.is_fenced {
                            tracing::info!(broker_epoch, "broker unfenced");
                        }
                        fenced = reply.is_fenced;
                    }
                    Err(error)
                        if matches!(
                            error.code,
                            ResponseError::StaleBrokerEpoch | ResponseError::BrokerIdNotRegistered
                        ) =>
                    {
                        tracing::warn!(message = %error.message, "controller does not know this broker's epoch; registering again");
                        epoch = None;
                    }
                    Err(error) => tracing::debug!(code = ?error.code, message = %error.message, "heartbeat failed"),
                }
            }
        }
        // A heartbeat that failed (a controller change, say) is retried soon, not after a
        // whole interval, so the session does not run out meanwhile.
        let wait = if epoch.is_some() && !fenced && answered {
            interval
        } else {
            Duration::from_millis(200)
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Controlled shutdown (KIP-631): heartbeats with `want_shutdown` until the controller has moved
/// every leadership away, or `limit` passes.
pub async fn controlled_shutdown(broker: &Arc<Broker>, limit: Duration) {
    let Some(me) = broker
        .image()
        .cluster()
        .broker(BrokerId(broker.node_id()))
        .map(|b| b.epoch)
    else {
        return;
    };
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        let request = ControllerRequest::Heartbeat {
            broker_id: broker.node_id(),
            broker_epoch: me,
            current_metadata_offset: broker.publishing.published().offset,
            want_shutdown: true,
        };
        match broker
            .blocking(move |b| b.controller_call::<control::HeartbeatReply>(request))
            .await
        {
            Ok(reply) if reply.should_shut_down => {
                tracing::info!("controlled shutdown complete: leaderships moved");
                return;
            }
            Ok(_) => {}
            Err(error) => tracing::info!(message = %error.message, "controlled shutdown heartbeat failed"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tracing::warn!("controlled shutdown did not complete in time; stopping anyway");
}
