//! Metadata records and the id newtypes they use. A record is a fact about the cluster; the image
//! is what you get by applying them in order.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

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
        leader: BrokerId,
        leader_epoch: i32,
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
}
