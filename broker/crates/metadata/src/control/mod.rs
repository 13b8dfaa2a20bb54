//! Pure controller logic (Kafka's control managers): functions of the current image, a request and
//! the time that return the records to commit and the response to give once they are committed.
//! No I/O, no clocks, no async: the active-controller runtime proposes the records through the
//! quorum and answers the request after they are applied.

mod cluster;
mod election;
mod isr;
mod topics;

pub use cluster::{
    BrokerHeartbeat, BrokerRegistrationRequest, HeartbeatReply, HeartbeatTracker, RegistrationReply,
    fence_expired_brokers, heartbeat, register_broker, unregister_broker,
};
pub use election::{
    ElectionResult, ElectionType, elect_leaders, elect_preferred_leaders, elect_unclean_where_allowed,
    rebalance_leaders, unclean_allowed,
};
pub use isr::{AlterPartitionRequest, alter_partition};
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
    /// Kafka: ELIGIBLE_LEADERS_NOT_AVAILABLE. An unclean election found no live replica.
    #[error("failed to elect leader for {topic}-{partition}: no replica is live")]
    EligibleLeadersNotAvailable { topic: String, partition: i32 },
    /// Kafka: NOT_LEADER_OR_FOLLOWER. An AlterPartition from a broker that does not lead.
    #[error("broker {broker_id} is not the leader of {topic}-{partition}")]
    NotLeader {
        broker_id: BrokerId,
        topic: String,
        partition: i32,
    },
    /// Kafka: FENCED_LEADER_EPOCH. An AlterPartition for an older leader epoch.
    #[error("{topic}-{partition}: leader epoch {request_epoch} is stale, the current one is {current_epoch}")]
    FencedLeaderEpoch {
        topic: String,
        partition: i32,
        request_epoch: i32,
        current_epoch: i32,
    },
    /// Kafka: INVALID_UPDATE_VERSION. An AlterPartition built on an older partition epoch.
    #[error("{topic}-{partition}: partition epoch {request_epoch} is stale, the current one is {current_epoch}")]
    InvalidUpdateVersion {
        topic: String,
        partition: i32,
        request_epoch: i32,
        current_epoch: i32,
    },
    /// Kafka: INELIGIBLE_REPLICA. A proposed ISR member that is not a replica or not live.
    #[error("{topic}-{partition}: replica {broker_id} cannot join the isr (not a replica, or fenced)")]
    IneligibleReplica {
        topic: String,
        partition: i32,
        broker_id: BrokerId,
    },
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use uuid::Uuid;

    use super::*;
    use crate::image::MetadataImage;
    use crate::placement::Placer;
    use crate::records::TopicId;
    use crate::testing::endpoint;

    #[derive(Debug, Clone)]
    enum Step {
        /// Broker (index) heartbeats, maybe asking to shut down.
        Beat(usize, bool),
        /// Time passes (ms); expired sessions are fenced.
        Wait(u64),
        /// Broker (index) restarts: a new incarnation registers.
        Restart(usize),
        Preferred,
        CreateTopic(i32, i16),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => (0_usize..4, proptest::bool::weighted(0.1)).prop_map(|(b, s)| Step::Beat(b, s)),
            2 => (1_u64..6_000).prop_map(Step::Wait),
            1 => (0_usize..4).prop_map(Step::Restart),
            1 => Just(Step::Preferred),
            1 => (1_i32..4, 1_i16..4).prop_map(|(p, rf)| Step::CreateTopic(p, rf)),
        ]
    }

    /// What must hold in every image the controller produces.
    fn check(image: &MetadataImage, before: &BTreeMap<(TopicId, i32), (i32, i32)>) -> Result<(), TestCaseError> {
        for (topic, p) in image.partitions() {
            prop_assert!(!p.isr.is_empty(), "{}-{}: empty isr", topic.name, p.partition.0);
            prop_assert!(p.isr.iter().all(|b| p.replicas.contains(b)));
            if p.has_leader() {
                prop_assert!(
                    p.isr.contains(&p.leader),
                    "{}-{}: leader outside the isr",
                    topic.name,
                    p.partition.0
                );
                prop_assert!(
                    image.cluster().is_unfenced(p.leader),
                    "{}-{}: leader {} is fenced or gone",
                    topic.name,
                    p.partition.0,
                    p.leader
                );
            }
            if let Some(&(leader_epoch, partition_epoch)) = before.get(&(topic.id, p.partition.0)) {
                prop_assert!(p.leader_epoch >= leader_epoch && p.partition_epoch >= partition_epoch);
            }
        }
        Ok(())
    }

    /// The embedded one-node cluster across a restart: register, unfence, create a topic, shut
    /// down (leaderships cannot move, so the broker may go at once and is fenced, leaving the
    /// partitions without a leader), restart as a new incarnation, and lead them again.
    #[test]
    fn one_node_cluster_restarts_and_leads_its_partitions_again() {
        let mut tracker = HeartbeatTracker::new(9_000);
        let mut image = MetadataImage::default();
        let start = |image: &MetadataImage, tracker: &mut HeartbeatTracker, now| {
            let request = BrokerRegistrationRequest {
                broker_id: BrokerId(0),
                incarnation_id: Uuid::new_v4(),
                rack: None,
                listeners: vec![endpoint(9092)],
            };
            let result = register_broker(image, tracker, request, now).expect("registers");
            let image = image.apply(&result.records).expect("applies");
            let beat = BrokerHeartbeat {
                broker_id: BrokerId(0),
                broker_epoch: result.response.broker_epoch,
                current_metadata_offset: image.offset,
                want_fence: false,
                want_shutdown: false,
            };
            let result = heartbeat(&image, tracker, beat, now).expect("accepted");
            assert!(!result.response.is_fenced);
            (image.apply(&result.records).expect("applies"), beat)
        };
        let (next, beat) = start(&image, &mut tracker, 0);
        image = next;
        let assignments = assign_replicas(&image, &mut Placer::new(&image), 2, 1, None).expect("places");
        let id = TopicId::random();
        let mut records = vec![MetadataRecord::Topic {
            name: "t".into(),
            topic_id: id,
        }];
        records.extend(new_partition_records(&image, id, 0, &assignments).expect("records"));
        image = image.apply(&records).expect("creates");

        let shutdown = BrokerHeartbeat {
            want_shutdown: true,
            ..beat
        };
        for (now, should_shut_down) in [(1_000, false), (2_000, true)] {
            let result = heartbeat(&image, &mut tracker, shutdown, now).expect("accepted");
            assert_eq!(result.response.should_shut_down, should_shut_down);
            image = image.apply(&result.records).expect("applies");
        }
        assert!(
            image
                .partitions()
                .all(|(_, p)| !p.has_leader() && p.isr == [BrokerId(0)])
        );

        // The broker is fenced, so its restart registers at once (no live session).
        let (next, _) = start(&image, &mut tracker, 2_500);
        image = next;
        assert!(
            image
                .partitions()
                .all(|(_, p)| p.leader == BrokerId(0) && p.leader_epoch == 2)
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(100))]

        /// Random broker lives (heartbeats, silences, restarts, controlled shutdowns, preferred
        /// elections, topic creations): every batch the controller writes applies, and no
        /// partition is ever led by a fenced or unregistered broker or by one outside its ISR.
        #[test]
        fn controller_batches_keep_leaders_live_and_in_the_isr(steps in proptest::collection::vec(step(), 1..60)) {
            const SESSION: u64 = 9_000;
            let mut tracker = HeartbeatTracker::new(SESSION);
            let mut image = MetadataImage::default();
            let mut now = 0_u64;
            let mut epochs: Vec<i64> = Vec::new();
            for b in 0..4 {
                let request = BrokerRegistrationRequest {
                    broker_id: BrokerId(b),
                    incarnation_id: Uuid::new_v4(),
                    rack: Some(["a", "b"][usize::try_from(b).expect("small") % 2].into()),
                    listeners: vec![endpoint(9092)],
                };
                let result = register_broker(&image, &mut tracker, request, now).expect("registers");
                epochs.push(result.response.broker_epoch);
                image = image.apply(&result.records).expect("applies");
            }
            let mut topics = 0;
            for step in steps {
                let before: BTreeMap<(TopicId, i32), (i32, i32)> = image
                    .partitions()
                    .map(|(t, p)| ((t.id, p.partition.0), (p.leader_epoch, p.partition_epoch)))
                    .collect();
                let records = match step {
                    Step::Beat(b, want_shutdown) => {
                        let request = BrokerHeartbeat {
                            broker_id: BrokerId(i32::try_from(b).expect("small")),
                            broker_epoch: epochs[b],
                            current_metadata_offset: image.offset,
                            want_fence: false,
                            want_shutdown,
                        };
                        heartbeat(&image, &mut tracker, request, now).expect("accepted").records
                    }
                    Step::Wait(ms) => {
                        now += ms;
                        fence_expired_brokers(&image, &mut tracker, now).records
                    }
                    Step::Restart(b) => {
                        now += SESSION + 1;
                        let request = BrokerRegistrationRequest {
                            broker_id: BrokerId(i32::try_from(b).expect("small")),
                            incarnation_id: Uuid::new_v4(),
                            rack: None,
                            listeners: vec![endpoint(9093)],
                        };
                        let result = register_broker(&image, &mut tracker, request, now).expect("registers");
                        prop_assert!(result.response.broker_epoch > epochs[b]);
                        epochs[b] = result.response.broker_epoch;
                        result.records
                    }
                    Step::Preferred => elect_preferred_leaders(&image, None).records,
                    Step::CreateTopic(partitions, rf) => {
                        let mut placer = Placer::new(&image);
                        match assign_replicas(&image, &mut placer, partitions, rf, None) {
                            Ok(assignments) => {
                                topics += 1;
                                let id = TopicId::random();
                                let mut records = vec![MetadataRecord::Topic { name: format!("t{topics}"), topic_id: id }];
                                records.extend(new_partition_records(&image, id, 0, &assignments).expect("records"));
                                records
                            }
                            Err(Error::InvalidReplicationFactor(_)) => {
                                prop_assert!(usize::try_from(rf).expect("positive") > image.cluster().active_brokers().count());
                                Vec::new()
                            }
                            Err(e) => return Err(TestCaseError::fail(format!("{e}"))),
                        }
                    }
                };
                image = match image.apply(&records) {
                    Ok(next) => next,
                    Err(e) => return Err(TestCaseError::fail(format!("{e}: {records:?}"))),
                };
                check(&image, &before)?;
            }
        }
    }
}
