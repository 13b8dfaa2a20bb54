//! Metadata records and the id newtypes they use. A record is a fact about the cluster; the image
//! is what you get by applying them in order.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::security::{AclBinding, ScramCredential, ScramMechanism};

/// A topic's stable identity (Kafka's topic id): survives restarts, differs after delete+recreate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TopicId(pub Uuid);

impl TopicId {
    pub fn random() -> Self {
        TopicId(Uuid::new_v4())
    }
}

impl std::fmt::Display for TopicId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A broker's node id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BrokerId(pub i32);

impl BrokerId {
    /// The leader of a partition that has none (Kafka's `NO_LEADER`, -1 on the wire).
    pub const NO_LEADER: BrokerId = BrokerId(-1);
}

impl std::fmt::Display for BrokerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// A partition index within a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PartitionId(pub i32);

/// What a config record applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ConfigResource {
    Topic(String),
    /// One broker's dynamic configs (Kafka: BROKER resource named by the broker id).
    Broker(BrokerId),
    /// The cluster-wide default of dynamic broker configs (Kafka: BROKER resource named "").
    BrokerDefault,
    /// A consumer group's dynamic configs (KIP-848 `group.consumer.*`), by group id.
    Group(String),
}

/// One listener a broker serves clients (or other brokers) on, as it advertises it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Endpoint {
    /// The listener name (Kafka's `listeners` name, e.g. `PLAINTEXT`).
    pub name: String,
    pub host: String,
    pub port: u16,
    /// Kafka's security protocol name: `PLAINTEXT`, `SSL`, `SASL_PLAINTEXT`, `SASL_SSL`.
    pub security_protocol: String,
}

/// One metadata fact, as stored in the metadata log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum MetadataRecord {
    /// A topic exists with this name and id.
    Topic { name: String, topic_id: TopicId },
    /// A partition of a topic and its replica assignment.
    Partition {
        topic_id: TopicId,
        partition: PartitionId,
        replicas: Vec<BrokerId>,
        isr: Vec<BrokerId>,
        /// [`BrokerId::NO_LEADER`] when no replica may lead.
        leader: BrokerId,
        /// Bumped on every leader change (Kafka's leaderEpoch); fences stale leaders and clients.
        leader_epoch: i32,
        /// Bumped on every change of the partition (Kafka's partitionEpoch): the version an
        /// AlterPartition request must name. Absent in logs of earlier releases (0).
        #[serde(default)]
        partition_epoch: i32,
    },
    /// A change to an existing partition (Kafka's PartitionChangeRecord): an absent field is
    /// unchanged. A present `leader` (even the same broker) bumps the leader epoch; every change
    /// bumps the partition epoch.
    PartitionChange {
        topic_id: TopicId,
        partition: PartitionId,
        /// The new leader; `Some(BrokerId::NO_LEADER)` leaves the partition without one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        leader: Option<BrokerId>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        isr: Option<Vec<BrokerId>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replicas: Option<Vec<BrokerId>>,
    },
    /// A broker registered (Kafka's RegisterBrokerRecord). It replaces any earlier registration
    /// of the same node id: a new incarnation (process start) gets a new, higher broker epoch.
    RegisterBroker {
        broker_id: BrokerId,
        /// Random per process start; tells a restart from a duplicate node id.
        incarnation_id: Uuid,
        /// Requests carrying another epoch come from an earlier incarnation (a zombie).
        broker_epoch: i64,
        #[serde(default)]
        rack: Option<String>,
        #[serde(default)]
        listeners: Vec<Endpoint>,
        /// A broker registers fenced: it leads nothing until it has caught up.
        fenced: bool,
    },
    /// The broker's registration is gone (Kafka's UnregisterBrokerRecord).
    UnregisterBroker { broker_id: BrokerId, broker_epoch: i64 },
    /// The broker was fenced or unfenced, or entered controlled shutdown (Kafka's
    /// BrokerRegistrationChangeRecord): an absent field is unchanged.
    BrokerRegistrationChange {
        broker_id: BrokerId,
        broker_epoch: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fenced: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        in_controlled_shutdown: Option<bool>,
    },
    /// Sets (`Some`) or removes (`None`) one config key of a resource.
    Config {
        resource: ConfigResource,
        name: String,
        value: Option<String>,
    },
    /// The topic and all its partitions and configs are gone.
    RemoveTopic { topic_id: TopicId },
    /// A block of producer ids was handed to `broker_id` for InitProducerId; the next block
    /// starts at `next_producer_id` (Kafka's ProducerIdsRecord). Ids below it are never reused.
    ProducerIds { broker_id: BrokerId, next_producer_id: i64 },
    /// A SCRAM credential of `user` for `mechanism` was set (Kafka's UserScramCredentialRecord):
    /// salt, iterations and derived keys only, never the password.
    ScramCredential {
        user: String,
        mechanism: ScramMechanism,
        credential: ScramCredential,
    },
    /// The SCRAM credential of `user` for `mechanism` is gone.
    RemoveScramCredential { user: String, mechanism: ScramMechanism },
    /// An ACL was created (Kafka's AccessControlEntryRecord).
    Acl { binding: AclBinding },
    /// An ACL was deleted (Kafka's RemoveAccessControlEntryRecord).
    RemoveAcl { binding: AclBinding },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every record as an earlier release wrote it into the metadata log. These must keep
    /// decoding (new fields are `#[serde(default)]`), or an upgrade in place loses metadata.
    const EARLIER_RECORDS: &[&str] = &[
        r#"{"type":"Topic","name":"orders","topic_id":"6f1c2a3e-7d1b-4f7e-9a51-1c2d3e4f5a6b"}"#,
        r#"{"type":"Partition","topic_id":"6f1c2a3e-7d1b-4f7e-9a51-1c2d3e4f5a6b","partition":2,"replicas":[0],"isr":[0],"leader":0,"leader_epoch":3}"#,
        r#"{"type":"Config","resource":{"Topic":"orders"},"name":"retention.ms","value":"1000"}"#,
        r#"{"type":"Config","resource":{"Broker":1},"name":"log.retention.ms","value":null}"#,
        r#"{"type":"Config","resource":"BrokerDefault","name":"log.retention.ms","value":"5"}"#,
        r#"{"type":"Config","resource":{"Group":"g"},"name":"consumer.session.timeout.ms","value":"45000"}"#,
        r#"{"type":"RemoveTopic","topic_id":"6f1c2a3e-7d1b-4f7e-9a51-1c2d3e4f5a6b"}"#,
        r#"{"type":"ProducerIds","broker_id":0,"next_producer_id":1000}"#,
    ];

    #[test]
    fn cluster_records_round_trip_and_omit_unchanged_fields() {
        let id = TopicId::random();
        let records = [
            MetadataRecord::RegisterBroker {
                broker_id: BrokerId(3),
                incarnation_id: Uuid::new_v4(),
                broker_epoch: 42,
                rack: Some("eu-1a".into()),
                listeners: vec![Endpoint {
                    name: "PLAINTEXT".into(),
                    host: "b3".into(),
                    port: 9092,
                    security_protocol: "PLAINTEXT".into(),
                }],
                fenced: true,
            },
            MetadataRecord::UnregisterBroker {
                broker_id: BrokerId(3),
                broker_epoch: 42,
            },
            MetadataRecord::BrokerRegistrationChange {
                broker_id: BrokerId(3),
                broker_epoch: 42,
                fenced: Some(false),
                in_controlled_shutdown: None,
            },
            MetadataRecord::PartitionChange {
                topic_id: id,
                partition: PartitionId(1),
                leader: Some(BrokerId::NO_LEADER),
                isr: None,
                replicas: None,
            },
        ];
        for record in &records {
            let json = serde_json::to_string(record).expect("encodes");
            assert_eq!(
                &serde_json::from_str::<MetadataRecord>(&json).expect("decodes"),
                record,
                "{json}"
            );
        }
        let change = serde_json::to_string(&records[3]).expect("encodes");
        assert!(change.contains(r#""leader":-1"#) && !change.contains("isr"), "{change}");
        let minimal = r#"{"type":"RegisterBroker","broker_id":1,"incarnation_id":"6f1c2a3e-7d1b-4f7e-9a51-1c2d3e4f5a6b","broker_epoch":1,"fenced":true}"#;
        assert!(matches!(
            serde_json::from_str::<MetadataRecord>(minimal).expect("decodes"),
            MetadataRecord::RegisterBroker { rack: None, ref listeners, .. } if listeners.is_empty()
        ));
    }

    #[test]
    fn records_of_earlier_releases_still_decode() {
        let id = TopicId("6f1c2a3e-7d1b-4f7e-9a51-1c2d3e4f5a6b".parse().expect("uuid"));
        let decoded: Vec<MetadataRecord> = EARLIER_RECORDS
            .iter()
            .map(|json| serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}")))
            .collect();
        assert_eq!(
            decoded[0],
            MetadataRecord::Topic {
                name: "orders".into(),
                topic_id: id
            }
        );
        assert!(matches!(
            &decoded[1],
            MetadataRecord::Partition { topic_id, partition: PartitionId(2), leader: BrokerId(0), leader_epoch: 3, partition_epoch: 0, .. }
                if *topic_id == id
        ));
        assert!(matches!(
            &decoded[3],
            MetadataRecord::Config {
                resource: ConfigResource::Broker(BrokerId(1)),
                value: None,
                ..
            }
        ));
        assert!(matches!(
            &decoded[4],
            MetadataRecord::Config {
                resource: ConfigResource::BrokerDefault,
                ..
            }
        ));
        assert_eq!(decoded[6], MetadataRecord::RemoveTopic { topic_id: id });
        assert_eq!(
            decoded[7],
            MetadataRecord::ProducerIds {
                broker_id: BrokerId(0),
                next_producer_id: 1000
            }
        );
    }
}
