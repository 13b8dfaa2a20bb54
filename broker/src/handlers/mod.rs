//! One file per Kafka API. `handle` dispatches a decoded request to its handler and wraps the
//! response; partition- and topic-level failures are error codes inside responses, never `Err`.

mod add_offsets_to_txn;
mod add_partitions_to_txn;
mod alter_configs;
mod alter_user_scram_credentials;
pub mod api_versions;
mod authz;
mod consumer_group_describe;
mod consumer_group_heartbeat;
mod create_acls;
mod create_partitions;
mod create_topics;
mod delete_acls;
mod delete_groups;
mod delete_records;
mod delete_topics;
mod describe_acls;
mod describe_cluster;
mod describe_configs;
mod describe_groups;
mod describe_log_dirs;
mod describe_producers;
mod describe_quorum;
mod describe_transactions;
mod describe_user_scram_credentials;
mod elect_leaders;
mod end_txn;
mod errors;
mod fetch;
mod find_coordinator;
mod heartbeat;
mod init_producer_id;
mod join_group;
mod leave_group;
mod list_groups;
mod list_offsets;
mod metadata;
mod offset_commit;
mod offset_delete;
mod offset_fetch;
mod offset_for_leader_epoch;
mod operations;
mod produce;
mod sasl_authenticate;
mod sasl_handshake;
mod sync_group;
mod txn_common;
mod txn_offset_commit;
mod write_txn_markers;

use std::sync::Arc;

use fjord_metadata::security::AclOperation;
use fjord_protocol::DecodedRequest;
use fjord_protocol::kafka_protocol::messages::{
    ApiKey, BrokerId, ConsumerGroupHeartbeatResponse, DescribeLogDirsResponse, DescribeQuorumResponse,
    ElectLeadersResponse, HeartbeatResponse, InitProducerIdResponse, JoinGroupResponse, LeaveGroupResponse,
    OffsetDeleteResponse, RequestKind, ResponseKind, SyncGroupResponse, TopicName,
};
use fjord_protocol::kafka_protocol::protocol::StrBytes;

use crate::broker::Broker;
use crate::security::Session;

/// What the connection does with a handled request.
#[derive(Debug)]
pub enum Reply {
    Response {
        api_key: ApiKey,
        version: i16,
        correlation_id: i32,
        body: Box<ResponseKind>,
    },
    /// Sent, then the connection is closed (a failed SASL authentication).
    Final {
        api_key: ApiKey,
        version: i16,
        correlation_id: i32,
        body: Box<ResponseKind>,
    },
    /// No response is sent (Produce with acks=0).
    None,
    /// The request cannot be answered; close the connection.
    Close,
}

/// A request's place in its connection's order. Kafka processes a connection's requests one
/// after another; we keep that for everything that changes state (appends, admin changes) while
/// letting the waiting parts (fsync for acks=all, fetch long-polls) overlap with later requests.
/// A request waits for its predecessor's turn to end before it starts, and ends its own turn
/// when its ordered part is done (or when dropped, so a failure can never stall the connection).
#[derive(Debug, Default)]
pub struct Turn {
    wait: Option<tokio::sync::oneshot::Receiver<()>>,
    release: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Turn {
    /// The next turn on a connection: it starts when `previous` (the last one issued) ends.
    pub fn after(previous: &mut Option<tokio::sync::oneshot::Receiver<()>>) -> Turn {
        let (release, next) = tokio::sync::oneshot::channel();
        let wait = previous.replace(next);
        Turn {
            wait,
            release: Some(release),
        }
    }

    async fn begin(&mut self) {
        if let Some(wait) = self.wait.take() {
            // An error only means the predecessor was dropped, which also ends its turn.
            let _ = wait.await;
        }
    }

    /// Lets the next request on the connection start.
    pub fn end(&mut self) {
        if let Some(release) = self.release.take() {
            let _ = release.send(());
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.end();
    }
}

/// Who sent a request, as group APIs report members (Kafka's client id and "/host").
#[derive(Debug, Clone)]
pub(crate) struct ClientInfo {
    pub client_id: String,
    pub client_host: String,
}

pub async fn handle(broker: &Arc<Broker>, request: DecodedRequest, mut turn: Turn, session: &Arc<Session>) -> Reply {
    turn.begin().await;
    let api_key = request.api_key;
    let version = request.version();
    let correlation_id = request.correlation_id();
    let peer = session.peer;
    // On a SASL listener only ApiVersions and the SASL exchange itself come before
    // authentication; anything else closes the connection, as in Kafka.
    if session.principal().is_none()
        && !matches!(
            api_key,
            ApiKey::ApiVersions | ApiKey::SaslHandshake | ApiKey::SaslAuthenticate
        )
    {
        tracing::info!(%peer, listener = %session.listener, ?api_key, "request before sasl authentication, closing connection");
        broker.metrics.network.sasl_authentication_failures.inc();
        return Reply::Close;
    }
    let client = ClientInfo {
        client_id: request
            .header
            .client_id
            .as_ref()
            .map(|c| c.to_string())
            .unwrap_or_default(),
        client_host: format!("/{}", peer.ip()),
    };
    let body = match request.body {
        // Reads end their turn at once: a long-polling fetch must not hold up later produces.
        RequestKind::Fetch(r) => {
            turn.end();
            ResponseKind::Fetch(fetch::handle(broker, session, r, version).await)
        }
        RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(api_versions::handle()),
        RequestKind::SaslHandshake(r) => ResponseKind::SaslHandshake(sasl_handshake::handle(broker, session, r)),
        RequestKind::SaslAuthenticate(r) => {
            let (response, close) = sasl_authenticate::handle(broker, session, r);
            if close {
                return Reply::Final {
                    api_key,
                    version,
                    correlation_id,
                    body: Box::new(ResponseKind::SaslAuthenticate(response)),
                };
            }
            ResponseKind::SaslAuthenticate(response)
        }
        RequestKind::Metadata(r) => ResponseKind::Metadata(metadata::handle(broker, session, r, version).await),
        RequestKind::Produce(r) => match produce::handle(broker, session, r, turn).await {
            Some(response) => ResponseKind::Produce(response),
            None => return Reply::None,
        },
        RequestKind::ListOffsets(r) => {
            let mut response = list_offsets::handle(broker, r, version).await;
            authz::list_offsets(broker, session, &mut response);
            ResponseKind::ListOffsets(response)
        }
        RequestKind::CreateTopics(r) => {
            ResponseKind::CreateTopics(create_topics::handle(broker, session.clone(), r, version).await)
        }
        RequestKind::DeleteTopics(r) => {
            ResponseKind::DeleteTopics(delete_topics::handle(broker, session.clone(), r).await)
        }
        RequestKind::CreatePartitions(mut r) => {
            let denied = authz::create_partitions(broker, session, &mut r);
            let mut response = create_partitions::handle(broker, r).await;
            response.results.extend(denied);
            ResponseKind::CreatePartitions(response)
        }
        RequestKind::DescribeConfigs(r) => {
            let mut response = describe_configs::handle(broker, r);
            authz::describe_configs(broker, session, &mut response);
            ResponseKind::DescribeConfigs(response)
        }
        RequestKind::AlterConfigs(mut r) => {
            let denied = authz::alter_configs_denied(
                broker,
                session,
                r.resources
                    .iter()
                    .map(|x| (x.resource_type, x.resource_name.to_string())),
            );
            r.resources.retain(|x| {
                !denied
                    .iter()
                    .any(|(t, n, _)| *t == x.resource_type && *n == x.resource_name.as_str())
            });
            let mut response = alter_configs::handle_alter(broker, r).await;
            response.responses.extend(denied.into_iter().map(|(t, n, code)| {
                fjord_protocol::kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse::default(
                )
                .with_resource_type(t)
                .with_resource_name(str_bytes(n))
                .with_error_code(code)
            }));
            ResponseKind::AlterConfigs(response)
        }
        RequestKind::IncrementalAlterConfigs(mut r) => {
            let denied = authz::alter_configs_denied(
                broker,
                session,
                r.resources
                    .iter()
                    .map(|x| (x.resource_type, x.resource_name.to_string())),
            );
            r.resources.retain(|x| {
                !denied
                    .iter()
                    .any(|(t, n, _)| *t == x.resource_type && *n == x.resource_name.as_str())
            });
            let mut response = alter_configs::handle_incremental(broker, r).await;
            response.responses.extend(denied.into_iter().map(|(t, n, code)| {
                fjord_protocol::kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                    .with_resource_type(t)
                    .with_resource_name(str_bytes(n))
                    .with_error_code(code)
            }));
            ResponseKind::IncrementalAlterConfigs(response)
        }
        RequestKind::DeleteRecords(mut r) => {
            let denied = authz::delete_records(broker, session, &mut r);
            let mut response = delete_records::handle(broker, r).await;
            response.topics.extend(denied);
            ResponseKind::DeleteRecords(response)
        }
        RequestKind::DescribeCluster(r) => {
            ResponseKind::DescribeCluster(describe_cluster::handle(broker, &session.listener, r))
        }
        // Group APIs end their turn at once: a JoinGroup waits for the whole rebalance.
        RequestKind::FindCoordinator(r) => {
            turn.end();
            ResponseKind::FindCoordinator(find_coordinator::handle(broker, session, r, version).await)
        }
        RequestKind::JoinGroup(r) => {
            turn.end();
            match authz::group_denied(broker, session, AclOperation::Read, &r.group_id) {
                Some(code) => ResponseKind::JoinGroup(
                    JoinGroupResponse::default()
                        .with_error_code(code)
                        .with_generation_id(-1),
                ),
                None => ResponseKind::JoinGroup(join_group::handle(broker, r, version, &client).await),
            }
        }
        RequestKind::SyncGroup(r) => {
            turn.end();
            match authz::group_denied(broker, session, AclOperation::Read, &r.group_id) {
                Some(code) => ResponseKind::SyncGroup(SyncGroupResponse::default().with_error_code(code)),
                None => ResponseKind::SyncGroup(sync_group::handle(broker, r, version).await),
            }
        }
        RequestKind::Heartbeat(r) => match authz::group_denied(broker, session, AclOperation::Read, &r.group_id) {
            Some(code) => ResponseKind::Heartbeat(HeartbeatResponse::default().with_error_code(code)),
            None => ResponseKind::Heartbeat(heartbeat::handle(broker, r)),
        },
        RequestKind::LeaveGroup(r) => match authz::group_denied(broker, session, AclOperation::Read, &r.group_id) {
            Some(code) => ResponseKind::LeaveGroup(LeaveGroupResponse::default().with_error_code(code)),
            None => ResponseKind::LeaveGroup(leave_group::handle(broker, r, version).await),
        },
        RequestKind::OffsetCommit(r) => match authz::offset_commit(broker, session, r) {
            Err(refused) => ResponseKind::OffsetCommit(refused),
            Ok((r, denied)) => {
                let mut response = offset_commit::handle(broker, r, version).await;
                response.topics.extend(denied);
                ResponseKind::OffsetCommit(response)
            }
        },
        RequestKind::OffsetFetch(r) => {
            let gate = (broker.config.authorizer.enabled).then(|| r.clone());
            let mut response = offset_fetch::handle(broker, r, version);
            if let Some(request) = gate {
                authz::offset_fetch(broker, session, &request, &mut response);
            }
            ResponseKind::OffsetFetch(response)
        }
        RequestKind::ListGroups(r) => {
            let mut response = list_groups::handle(broker, r, version);
            authz::list_groups(broker, session, &mut response);
            ResponseKind::ListGroups(response)
        }
        RequestKind::DescribeGroups(r) => {
            let mut response = describe_groups::handle(broker, r, version);
            authz::describe_groups(broker, session, &mut response);
            ResponseKind::DescribeGroups(response)
        }
        RequestKind::DeleteGroups(mut r) => {
            let denied = authz::delete_groups(broker, session, &mut r);
            let mut response = delete_groups::handle(broker, r).await;
            response.results.extend(denied);
            ResponseKind::DeleteGroups(response)
        }
        RequestKind::OffsetDelete(r) => match authz::group_denied(broker, session, AclOperation::Delete, &r.group_id) {
            Some(code) => ResponseKind::OffsetDelete(OffsetDeleteResponse::default().with_error_code(code)),
            None => ResponseKind::OffsetDelete(offset_delete::handle(broker, r).await),
        },
        RequestKind::ConsumerGroupHeartbeat(r) => {
            match authz::group_denied(broker, session, AclOperation::Read, &r.group_id) {
                Some(code) => ResponseKind::ConsumerGroupHeartbeat(
                    ConsumerGroupHeartbeatResponse::default().with_error_code(code),
                ),
                None => ResponseKind::ConsumerGroupHeartbeat(
                    consumer_group_heartbeat::handle(broker, r, version, &client).await,
                ),
            }
        }
        RequestKind::ConsumerGroupDescribe(r) => {
            let mut response = consumer_group_describe::handle(broker, r, version);
            authz::consumer_group_describe(broker, session, &mut response);
            ResponseKind::ConsumerGroupDescribe(response)
        }
        RequestKind::InitProducerId(r) => match authz::init_producer_id(broker, session, &r) {
            Some(code) => ResponseKind::InitProducerId(
                InitProducerIdResponse::default()
                    .with_error_code(code)
                    .with_producer_id((-1).into())
                    .with_producer_epoch(-1),
            ),
            None => ResponseKind::InitProducerId(init_producer_id::handle(broker, r, version).await),
        },
        // Transaction APIs end their turn at once: ending a transaction waits for fsyncs, and
        // their order is the coordinator's (CONCURRENT_TRANSACTIONS), not the connection's.
        RequestKind::AddPartitionsToTxn(r) => {
            turn.end();
            ResponseKind::AddPartitionsToTxn(add_partitions_to_txn::handle(broker, r, version).await)
        }
        RequestKind::AddOffsetsToTxn(r) => {
            turn.end();
            ResponseKind::AddOffsetsToTxn(add_offsets_to_txn::handle(broker, r, version).await)
        }
        RequestKind::EndTxn(r) => {
            turn.end();
            ResponseKind::EndTxn(end_txn::handle(broker, r, version).await)
        }
        RequestKind::TxnOffsetCommit(r) => {
            turn.end();
            ResponseKind::TxnOffsetCommit(txn_offset_commit::handle(broker, r, version).await)
        }
        RequestKind::DescribeTransactions(r) => {
            ResponseKind::DescribeTransactions(describe_transactions::describe(broker, r))
        }
        RequestKind::ListTransactions(r) => ResponseKind::ListTransactions(describe_transactions::list(broker, r)),
        RequestKind::WriteTxnMarkers(r) => ResponseKind::WriteTxnMarkers(write_txn_markers::handle(broker, r).await),
        RequestKind::OffsetForLeaderEpoch(r) => {
            let mut response = offset_for_leader_epoch::handle(broker, r).await;
            authz::offset_for_leader_epoch(broker, session, &mut response);
            ResponseKind::OffsetForLeaderEpoch(response)
        }
        RequestKind::DescribeLogDirs(r) => match authz::cluster_denied(broker, session, AclOperation::Describe) {
            Some(code) => ResponseKind::DescribeLogDirs(DescribeLogDirsResponse::default().with_error_code(code)),
            None => ResponseKind::DescribeLogDirs(describe_log_dirs::handle(broker, r).await),
        },
        RequestKind::DescribeProducers(r) => {
            let mut response = describe_producers::handle(broker, r);
            authz::describe_producers(broker, session, &mut response);
            ResponseKind::DescribeProducers(response)
        }
        RequestKind::ElectLeaders(r) => match authz::cluster_denied(broker, session, AclOperation::Alter) {
            Some(code) => ResponseKind::ElectLeaders(ElectLeadersResponse::default().with_error_code(code)),
            None => ResponseKind::ElectLeaders(elect_leaders::handle(broker, r).await),
        },
        RequestKind::DescribeQuorum(r) => match authz::cluster_denied(broker, session, AclOperation::Describe) {
            Some(code) => ResponseKind::DescribeQuorum(DescribeQuorumResponse::default().with_error_code(code)),
            None => ResponseKind::DescribeQuorum(describe_quorum::handle(broker, r).await),
        },
        RequestKind::CreateAcls(r) => ResponseKind::CreateAcls(create_acls::handle(broker, session, r).await),
        RequestKind::DescribeAcls(r) => ResponseKind::DescribeAcls(describe_acls::handle(broker, session, r)),
        RequestKind::DeleteAcls(r) => ResponseKind::DeleteAcls(delete_acls::handle(broker, session, r).await),
        RequestKind::AlterUserScramCredentials(r) => {
            ResponseKind::AlterUserScramCredentials(alter_user_scram_credentials::handle(broker, session, r).await)
        }
        RequestKind::DescribeUserScramCredentials(r) => {
            ResponseKind::DescribeUserScramCredentials(describe_user_scram_credentials::handle(broker, session, r))
        }
        other => {
            // Unreachable in practice: decode_request refuses APIs outside SUPPORTED_APIS.
            tracing::warn!(?api_key, request = ?std::mem::discriminant(&other), "no handler for api, closing connection");
            return Reply::Close;
        }
    };
    let mut body = body;
    errors::null_success_messages(&mut body);
    errors::count_errors(&broker.metrics, api_key, &body);
    Reply::Response {
        api_key,
        version,
        correlation_id,
        body: Box::new(body),
    }
}

pub(crate) fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

pub(crate) fn topic_name(s: impl Into<String>) -> TopicName {
    TopicName(str_bytes(s))
}

pub(crate) fn broker_id(id: i32) -> BrokerId {
    BrokerId(id)
}

/// A broker as clients see it in Metadata and DescribeCluster.
pub(crate) struct LiveBroker {
    pub id: i32,
    pub host: String,
    pub port: i32,
    pub rack: Option<String>,
}

/// The unfenced registered brokers with their endpoint on `listener`, the listener the client
/// connected on (Kafka lists only unfenced brokers, each at its address on the client's
/// listener); this broker from its config while it is not registered yet.
pub(crate) fn live_brokers(broker: &Broker, image: &fjord_metadata::MetadataImage, listener: &str) -> Vec<LiveBroker> {
    let mut brokers: Vec<LiveBroker> = image
        .cluster()
        .unfenced_brokers()
        .filter_map(|b| {
            let endpoint = b
                .listeners
                .iter()
                .find(|l| l.name == listener)
                .or_else(|| b.listeners.iter().find(|l| l.name == crate::config::DEFAULT_LISTENER))
                .or(b.listeners.first())?;
            Some(LiveBroker {
                id: b.id.0,
                host: endpoint.host.clone(),
                port: i32::from(endpoint.port),
                rack: b.rack.clone(),
            })
        })
        .collect();
    if !brokers.iter().any(|b| b.id == broker.node_id())
        && !image.cluster().brokers().any(|b| b.id.0 == broker.node_id())
    {
        let (host, port) = broker.config.advertised_for(listener);
        brokers.push(LiveBroker {
            id: broker.node_id(),
            host,
            port,
            rack: broker.config.rack.clone(),
        });
    }
    brokers
}

/// Whether this broker leads `topic`-`index` in the current image (replicas that do not lead
/// answer NOT_LEADER_OR_FOLLOWER; followers replicate once ISR replication lands).
pub(crate) fn leads(broker: &Broker, topic: &str, index: i32) -> bool {
    broker
        .image()
        .topic(topic)
        .and_then(|t| t.partitions.get(index as usize).map(|p| p.leader.0 == broker.node_id()))
        .unwrap_or(false)
}
