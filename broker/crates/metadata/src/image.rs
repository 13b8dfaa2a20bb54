//! The immutable metadata image: a snapshot of every topic, partition and config, cheap to clone
//! (topics are shared `Arc`s) and replaced wholesale when records are applied.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::records::{BrokerId, ConfigResource, MetadataRecord, PartitionId, TopicId};
use crate::{Error, Result};

/// One partition's assignment and leadership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionImage {
    pub partition: PartitionId,
    pub replicas: Vec<BrokerId>,
    pub isr: Vec<BrokerId>,
    pub leader: BrokerId,
    pub leader_epoch: i32,
}

/// One topic: id, partitions in index order, and the configs set on it (not defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicImage {
    pub name: String,
    pub id: TopicId,
    pub partitions: Vec<PartitionImage>,
    pub configs: BTreeMap<String, String>,
}

/// Everything the broker knows about the cluster at one point of the metadata log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataImage {
    /// The metadata log position of the last batch applied: the number of batches applied so far
    /// for the local log ([`MetadataImage::apply`]), the Raft log index of the batch for the
    /// replicated log ([`MetadataImage::apply_at`]).
    pub offset: u64,
    pub(crate) topics: BTreeMap<String, Arc<TopicImage>>,
    pub(crate) names_by_id: HashMap<TopicId, String>,
    pub(crate) broker_configs: BTreeMap<BrokerId, BTreeMap<String, String>>,
    pub(crate) broker_default_configs: BTreeMap<String, String>,
    /// Dynamic configs of consumer groups, by group id (only groups with an override).
    pub(crate) group_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// First producer id of the next block to hand out (all ids below were allocated).
    pub(crate) next_producer_id: i64,
}

impl MetadataImage {
    pub fn topic(&self, name: &str) -> Option<&Arc<TopicImage>> {
        self.topics.get(name)
    }

    pub fn topic_by_id(&self, id: TopicId) -> Option<&Arc<TopicImage>> {
        self.names_by_id.get(&id).and_then(|n| self.topics.get(n))
    }

    pub fn topics(&self) -> impl Iterator<Item = &Arc<TopicImage>> {
        self.topics.values()
    }

    pub fn topic_count(&self) -> usize {
        self.topics.len()
    }

    pub fn partition_count(&self) -> usize {
        self.topics.values().map(|t| t.partitions.len()).sum()
    }

    /// One broker's dynamic configs (set through the Kafka API, not the static config file).
    pub fn broker_configs(&self, broker: BrokerId) -> Option<&BTreeMap<String, String>> {
        self.broker_configs.get(&broker)
    }

    /// The cluster-wide default dynamic broker configs.
    pub fn broker_default_configs(&self) -> &BTreeMap<String, String> {
        &self.broker_default_configs
    }

    /// A consumer group's dynamic config overrides (empty if it has none).
    pub fn group_configs(&self, group: &str) -> Option<&BTreeMap<String, String>> {
        self.group_configs.get(group)
    }

    /// First producer id not yet allocated to any broker.
    pub fn next_producer_id(&self) -> i64 {
        self.next_producer_id
    }

    /// Applies one batch of records, producing the next image. The batch is atomic: if any record
    /// does not apply, the image is unchanged and the error says which.
    pub fn apply(&self, records: &[MetadataRecord]) -> Result<MetadataImage> {
        let mut next = self.clone();
        for record in records {
            next.apply_one(record)?;
        }
        next.offset += 1;
        Ok(next)
    }

    /// Like [`MetadataImage::apply`], but the next image's offset is `offset` (the log index of
    /// the batch in a replicated log, where entries that are not batches also take indexes).
    pub fn apply_at(&self, records: &[MetadataRecord], offset: u64) -> Result<MetadataImage> {
        let mut next = self.apply(records)?;
        next.offset = offset;
        Ok(next)
    }

    fn apply_one(&mut self, record: &MetadataRecord) -> Result<()> {
        match record {
            MetadataRecord::Topic { name, topic_id } => {
                if self.topics.contains_key(name) {
                    return Err(Error::Invalid(format!("topic {name} already exists")));
                }
                let topic = TopicImage {
                    name: name.clone(),
                    id: *topic_id,
                    partitions: Vec::new(),
                    configs: BTreeMap::new(),
                };
                self.names_by_id.insert(*topic_id, name.clone());
                self.topics.insert(name.clone(), Arc::new(topic));
            }
            MetadataRecord::Partition {
                topic_id,
                partition,
                replicas,
                isr,
                leader,
                leader_epoch,
            } => {
                let topic = self.topic_mut(*topic_id)?;
                let image = PartitionImage {
                    partition: *partition,
                    replicas: replicas.clone(),
                    isr: isr.clone(),
                    leader: *leader,
                    leader_epoch: *leader_epoch,
                };
                let index = usize::try_from(partition.0)
                    .map_err(|_| Error::Invalid(format!("negative partition {}", partition.0)))?;
                match index.cmp(&topic.partitions.len()) {
                    std::cmp::Ordering::Less => topic.partitions[index] = image,
                    std::cmp::Ordering::Equal => topic.partitions.push(image),
                    std::cmp::Ordering::Greater => {
                        return Err(Error::Invalid(format!(
                            "partition {} of {} added out of order",
                            partition.0, topic.name
                        )));
                    }
                }
            }
            MetadataRecord::Config { resource, name, value } => {
                let configs = match resource {
                    ConfigResource::Broker(id) => self.broker_configs.entry(*id).or_default(),
                    ConfigResource::BrokerDefault => &mut self.broker_default_configs,
                    ConfigResource::Group(group) => self.group_configs.entry(group.clone()).or_default(),
                    ConfigResource::Topic(topic) => {
                        let id = self
                            .topics
                            .get(topic)
                            .map(|t| t.id)
                            .ok_or_else(|| Error::Invalid(format!("config for unknown topic {topic}")))?;
                        &mut self.topic_mut(id)?.configs
                    }
                };
                match value {
                    Some(v) => configs.insert(name.clone(), v.clone()),
                    None => configs.remove(name),
                };
                // A resource left without overrides has no entry, so an image rebuilt from its
                // own records (a snapshot) equals it.
                match resource {
                    ConfigResource::Group(group) if self.group_configs.get(group).is_some_and(BTreeMap::is_empty) => {
                        self.group_configs.remove(group);
                    }
                    ConfigResource::Broker(id) if self.broker_configs.get(id).is_some_and(BTreeMap::is_empty) => {
                        self.broker_configs.remove(id);
                    }
                    _ => {}
                }
            }
            MetadataRecord::ProducerIds { next_producer_id, .. } => {
                if *next_producer_id <= self.next_producer_id {
                    return Err(Error::Invalid(format!(
                        "producer id block end {next_producer_id} does not advance past {}",
                        self.next_producer_id
                    )));
                }
                self.next_producer_id = *next_producer_id;
            }
            MetadataRecord::RemoveTopic { topic_id } => {
                let name = self
                    .names_by_id
                    .remove(topic_id)
                    .ok_or_else(|| Error::Invalid(format!("remove of unknown topic id {topic_id}")))?;
                self.topics.remove(&name);
            }
        }
        Ok(())
    }

    fn topic_mut(&mut self, id: TopicId) -> Result<&mut TopicImage> {
        let name = self
            .names_by_id
            .get(&id)
            .ok_or_else(|| Error::Invalid(format!("unknown topic id {id}")))?;
        let topic = self.topics.get_mut(name).expect("names_by_id and topics agree");
        Ok(Arc::make_mut(topic))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn create_topic(name: &str, partitions: i32) -> Vec<MetadataRecord> {
        let topic_id = TopicId::random();
        let mut records = vec![MetadataRecord::Topic {
            name: name.into(),
            topic_id,
        }];
        for p in 0..partitions {
            records.push(MetadataRecord::Partition {
                topic_id,
                partition: PartitionId(p),
                replicas: vec![BrokerId(0)],
                isr: vec![BrokerId(0)],
                leader: BrokerId(0),
                leader_epoch: 0,
            });
        }
        records
    }

    #[test]
    fn apply_create_config_remove_round_trip() {
        let empty = MetadataImage::default();
        let one = empty.apply(&create_topic("orders", 3)).expect("applies");
        let id = one.topic("orders").expect("exists").id;
        assert_eq!(one.topic_by_id(id).expect("by id").partitions.len(), 3);
        assert_eq!(one.partition_count(), 3);
        let configured = one
            .apply(&[MetadataRecord::Config {
                resource: ConfigResource::Topic("orders".into()),
                name: "retention.ms".into(),
                value: Some("1000".into()),
            }])
            .expect("applies");
        assert_eq!(
            configured.topic("orders").expect("exists").configs["retention.ms"],
            "1000"
        );
        // The earlier image is untouched: images are immutable.
        assert!(one.topic("orders").expect("exists").configs.is_empty());
        let removed = configured
            .apply(&[MetadataRecord::RemoveTopic { topic_id: id }])
            .expect("applies");
        assert!(removed.topic("orders").is_none());
        assert!(removed.topic_by_id(id).is_none());
        assert_eq!(removed.offset, 3);
    }

    #[test]
    fn producer_id_blocks_only_move_forward() {
        let block = |next| MetadataRecord::ProducerIds {
            broker_id: BrokerId(0),
            next_producer_id: next,
        };
        let image = MetadataImage::default();
        assert_eq!(image.next_producer_id(), 0);
        let one = image.apply(&[block(1000)]).expect("applies");
        assert_eq!(one.next_producer_id(), 1000);
        assert!(
            one.apply(&[block(1000)]).is_err(),
            "a block must not be handed out twice"
        );
        assert!(one.apply(&[block(500)]).is_err());
        assert_eq!(one.apply(&[block(2000)]).expect("applies").next_producer_id(), 2000);
    }

    #[test]
    fn apply_failing_batch_leaves_image_unchanged() {
        let one = MetadataImage::default().apply(&create_topic("a", 1)).expect("applies");
        let mut bad = create_topic("b", 1);
        bad.extend(create_topic("a", 1)); // duplicate name inside the batch
        assert!(one.apply(&bad).is_err());
        assert!(one.topic("b").is_none());
    }
}
