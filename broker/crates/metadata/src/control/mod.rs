//! Pure controller logic (Kafka's control managers): functions of the current image, a request and
//! the time that return the records to commit and the response to give once they are committed.
//! No I/O, no clocks, no async: the active-controller runtime proposes the records through the
//! quorum and answers the request after they are applied.

mod cluster;
mod election;
mod topics;

pub use cluster::{
    BrokerHeartbeat, BrokerRegistrationRequest, HeartbeatReply, HeartbeatTracker, RegistrationReply,
    fence_expired_brokers, heartbeat, register_broker, unregister_broker,
};
pub use election::{ElectionResult, elect_preferred_leaders, rebalance_leaders};
pub use topics::{assign_replicas, create_partitions, new_partition_records};

use crate::records::{BrokerId, MetadataRecord};

/// What a control function decided: the records to commit (atomically, as one batch) and the
/// response to give once they are committed. Empty `records` means nothing to commit.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct ControllerResult<T> {
    pub records: Vec<MetadataRecord>,
    pub response: T,
}

impl<T> ControllerResult<T> {
    pub fn new(records: Vec<MetadataRecord>, response: T) -> Self {
        ControllerResult { records, response }
    }
}

/// Why the controller refused a request. The broker maps each variant to the Kafka error code
/// named in its doc (in `broker/src/handlers/errors.rs`); the message is Kafka's where Kafka has one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Kafka: INVALID_REPLICATION_FACTOR.
    #[error("{0}")]
    InvalidReplicationFactor(String),
    /// Kafka: INVALID_PARTITIONS.
    #[error("{0}")]
    InvalidPartitions(String),
    /// Kafka: INVALID_REPLICA_ASSIGNMENT.
    #[error("{0}")]
    InvalidReplicaAssignment(String),
    /// Kafka: UNKNOWN_TOPIC_OR_PARTITION.
    #[error("{0}")]
    UnknownTopicOrPartition(String),
    /// Kafka: BROKER_ID_NOT_REGISTERED.
    #[error("broker {broker_id} is not registered")]
    BrokerIdNotRegistered { broker_id: BrokerId },
    /// Kafka: STALE_BROKER_EPOCH. The request comes from an earlier incarnation of the broker.
    #[error("broker {broker_id} sent epoch {request_epoch}, but its current epoch is {current_epoch}")]
    StaleBrokerEpoch {
        broker_id: BrokerId,
        request_epoch: i64,
        current_epoch: i64,
    },
    /// Kafka: DUPLICATE_BROKER_REGISTRATION. Another live process holds this node id.
    #[error(
        "another broker is registered with node id {broker_id} (incarnation {existing_incarnation}) and its session is \
         still live; refusing incarnation {incarnation}"
    )]
    DuplicateBrokerRegistration {
        broker_id: BrokerId,
        existing_incarnation: uuid::Uuid,
        incarnation: uuid::Uuid,
    },
    /// Kafka: ELECTION_NOT_NEEDED. The preferred replica already leads.
    #[error("leader election not needed for {topic}-{partition}")]
    ElectionNotNeeded { topic: String, partition: i32 },
    /// Kafka: PREFERRED_LEADER_NOT_AVAILABLE. The preferred replica is not live or not in the ISR.
    #[error(
        "failed to elect leader for {topic}-{partition}: preferred replica {preferred} is not live or not in the isr"
    )]
    PreferredLeaderNotAvailable {
        topic: String,
        partition: i32,
        preferred: BrokerId,
    },
}
