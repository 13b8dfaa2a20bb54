//! The immutable metadata image: a snapshot of every topic, partition, config and registered
//! broker, cheap to clone (topics and brokers are shared `Arc`s) and replaced wholesale when records
//! are applied.

pub(crate) mod cluster;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use crate::records::{BrokerId, ConfigResource, MetadataRecord, PartitionId, TopicId};
use crate::security::{AclBinding, ScramCredential, ScramMechanism};
use crate::{Error, Result};
use cluster::{BrokerRegistration, ClusterImage};

/// One partition's assignment and leadership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionImage {
    pub partition: PartitionId,
    pub replicas: Vec<BrokerId>,
    pub isr: Vec<BrokerId>,
    /// [`BrokerId::NO_LEADER`] when the partition has no leader.
    pub leader: BrokerId,
    pub leader_epoch: i32,
    /// Bumped on every change of the partition (Kafka's partitionEpoch).
    pub partition_epoch: i32,
}

impl PartitionImage {
    pub fn has_leader(&self) -> bool {
        self.leader != BrokerId::NO_LEADER
    }

    /// The preferred leader: the first replica in assignment order.
    pub fn preferred_leader(&self) -> Option<BrokerId> {
        self.replicas.first().copied()
    }
}

/// How many replicas and leaderships one broker holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BrokerLoad {
    pub replicas: u32,
    pub leaders: u32,
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
    pub(crate) cluster: ClusterImage,
    /// SCRAM credentials by user and mechanism.
    pub(crate) scram: Arc<BTreeMap<(String, ScramMechanism), ScramCredential>>,
    /// Every ACL binding.
    pub(crate) acls: Arc<BTreeSet<AclBinding>>,
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

    /// The SCRAM credential of `user` for `mechanism`.
    pub fn scram_credential(&self, user: &str, mechanism: ScramMechanism) -> Option<&ScramCredential> {
        self.scram.get(&(user.to_string(), mechanism))
    }

    /// Every SCRAM credential, by user and mechanism.
    pub fn scram_credentials(&self) -> impl Iterator<Item = (&str, ScramMechanism, &ScramCredential)> {
        self.scram.iter().map(|((u, m), c)| (u.as_str(), *m, c))
    }

    /// Every ACL binding.
    pub fn acls(&self) -> &BTreeSet<AclBinding> {
        &self.acls
    }

    /// The registered brokers.
    pub fn cluster(&self) -> &ClusterImage {
        &self.cluster
    }

    /// Every partition of every topic, topics in name order.
    pub fn partitions(&self) -> impl Iterator<Item = (&TopicImage, &PartitionImage)> {
        self.topics
            .values()
            .flat_map(|t| t.partitions.iter().map(move |p| (t.as_ref(), p)))
    }

    /// The partitions `broker` leads.
    pub fn partitions_led_by(&self, broker: BrokerId) -> impl Iterator<Item = (&TopicImage, &PartitionImage)> {
        self.partitions().filter(move |(_, p)| p.leader == broker)
    }

    /// The partitions with a replica on `broker`.
    pub fn partitions_on(&self, broker: BrokerId) -> impl Iterator<Item = (&TopicImage, &PartitionImage)> {
        self.partitions().filter(move |(_, p)| p.replicas.contains(&broker))
    }

    /// Replica and leader counts per broker: every registered broker (zero when it holds
    /// nothing) and every broker an assignment names.
    pub fn broker_loads(&self) -> BTreeMap<BrokerId, BrokerLoad> {
        let mut loads: BTreeMap<BrokerId, BrokerLoad> =
            self.cluster.brokers().map(|b| (b.id, BrokerLoad::default())).collect();
        for (_, p) in self.partitions() {
            for replica in &p.replicas {
                loads.entry(*replica).or_default().replicas += 1;
            }
            if p.has_leader() {
                loads.entry(p.leader).or_default().leaders += 1;
            }
        }
        loads
    }

    /// The replicas of `partition` on brokers that are fenced or not registered (Kafka's
    /// offline replicas in Metadata), in assignment order.
    pub fn offline_replicas(&self, partition: &PartitionImage) -> Vec<BrokerId> {
        partition
            .replicas
            .iter()
            .copied()
            .filter(|r| !self.cluster.is_unfenced(*r))
            .collect()
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
                partition_epoch,
            } => {
                let topic = self.topic_mut(*topic_id)?;
                let image = PartitionImage {
                    partition: *partition,
                    replicas: replicas.clone(),
                    isr: isr.clone(),
                    leader: *leader,
                    leader_epoch: *leader_epoch,
                    partition_epoch: *partition_epoch,
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
            MetadataRecord::PartitionChange {
                topic_id,
                partition,
                leader,
                isr,
                replicas,
            } => {
                let topic = self.topic_mut(*topic_id)?;
                let name = &topic.name;
                let Some(image) = usize::try_from(partition.0)
                    .ok()
                    .and_then(|i| topic.partitions.get_mut(i))
                else {
                    return Err(Error::Invalid(format!(
                        "change of unknown partition {name}-{}",
                        partition.0
                    )));
                };
                let mut next = image.clone();
                if let Some(replicas) = replicas {
                    next.replicas = replicas.clone();
                }
                if let Some(isr) = isr {
                    next.isr = isr.clone();
                }
                if let Some(leader) = leader {
                    next.leader = *leader;
                    next.leader_epoch += 1;
                }
                next.partition_epoch += 1;
                if next.has_leader() && !next.replicas.contains(&next.leader) {
                    return Err(Error::Invalid(format!(
                        "leader {} of {name}-{} is not a replica",
                        next.leader, partition.0
                    )));
                }
                if let Some(stray) = next.isr.iter().find(|b| !next.replicas.contains(b)) {
                    return Err(Error::Invalid(format!(
                        "isr member {stray} of {name}-{} is not a replica",
                        partition.0
                    )));
                }
                *image = next;
            }
            MetadataRecord::RegisterBroker {
                broker_id,
                incarnation_id,
                broker_epoch,
                rack,
                listeners,
                fenced,
            } => {
                if let Some(existing) = self.cluster.broker(*broker_id)
                    && existing.epoch >= *broker_epoch
                {
                    return Err(Error::Invalid(format!(
                        "registration of broker {broker_id} with epoch {broker_epoch} does not advance past {}",
                        existing.epoch
                    )));
                }
                let registration = BrokerRegistration {
                    id: *broker_id,
                    incarnation_id: *incarnation_id,
                    epoch: *broker_epoch,
                    rack: rack.clone(),
                    listeners: listeners.clone(),
                    fenced: *fenced,
                    in_controlled_shutdown: false,
                    // The offset this batch's image will have once applied.
                    registered_at_offset: self.offset + 1,
                };
                self.cluster.brokers.insert(*broker_id, Arc::new(registration));
            }
            MetadataRecord::UnregisterBroker {
                broker_id,
                broker_epoch,
            } => {
                self.registration_mut(*broker_id, *broker_epoch)?;
                self.cluster.brokers.remove(broker_id);
            }
            MetadataRecord::BrokerRegistrationChange {
                broker_id,
                broker_epoch,
                fenced,
                in_controlled_shutdown,
            } => {
                let registration = self.registration_mut(*broker_id, *broker_epoch)?;
                if let Some(fenced) = fenced {
                    registration.fenced = *fenced;
                }
                if let Some(shutdown) = in_controlled_shutdown {
                    registration.in_controlled_shutdown = *shutdown;
                }
            }
            MetadataRecord::ScramCredential {
                user,
                mechanism,
                credential,
            } => {
                Arc::make_mut(&mut self.scram).insert((user.clone(), *mechanism), credential.clone());
            }
            MetadataRecord::RemoveScramCredential { user, mechanism } => {
                if Arc::make_mut(&mut self.scram)
                    .remove(&(user.clone(), *mechanism))
                    .is_none()
                {
                    return Err(Error::Invalid(format!("no {} credential of {user}", mechanism.name())));
                }
            }
            MetadataRecord::Acl { binding } => {
                Arc::make_mut(&mut self.acls).insert(binding.clone());
            }
            MetadataRecord::RemoveAcl { binding } => {
                if !Arc::make_mut(&mut self.acls).remove(binding) {
                    return Err(Error::Invalid(format!("remove of unknown acl {binding:?}")));
                }
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

    fn registration_mut(&mut self, id: BrokerId, epoch: i64) -> Result<&mut BrokerRegistration> {
        let registration = self
            .cluster
            .brokers
            .get_mut(&id)
            .ok_or_else(|| Error::Invalid(format!("broker {id} is not registered")))?;
        if registration.epoch != epoch {
            return Err(Error::Invalid(format!(
                "broker {id} is registered with epoch {}, not {epoch}",
                registration.epoch
            )));
        }
        Ok(Arc::make_mut(registration))
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
                partition_epoch: 0,
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

    use crate::testing::{cluster, endpoint, state, with_topic};
    use uuid::Uuid;

    fn partition_change(
        topic_id: TopicId,
        leader: Option<i32>,
        isr: Option<&[i32]>,
        replicas: Option<&[i32]>,
    ) -> MetadataRecord {
        let ids = |l: &[i32]| l.iter().copied().map(BrokerId).collect::<Vec<_>>();
        MetadataRecord::PartitionChange {
            topic_id,
            partition: PartitionId(0),
            leader: leader.map(BrokerId),
            isr: isr.map(ids),
            replicas: replicas.map(ids),
        }
    }

    #[test]
    fn partition_change_keeps_absent_fields_and_bumps_epochs() {
        let (image, id) = with_topic(&cluster(&[(1, None), (2, None), (3, None)]), "t", &[&[1, 2, 3]]);
        // ISR only: the leader epoch stays, the partition epoch moves.
        let image = image
            .apply(&[partition_change(id, None, Some(&[1, 2]), None)])
            .expect("applies");
        assert_eq!(state(&image, "t", 0), (1, vec![1, 2], 0, 1));
        // A leader change bumps both.
        let image = image
            .apply(&[partition_change(id, Some(2), None, None)])
            .expect("applies");
        assert_eq!(state(&image, "t", 0), (2, vec![1, 2], 1, 2));
        // No leader (-1) is a leader change too.
        let image = image
            .apply(&[partition_change(id, Some(-1), Some(&[2]), None)])
            .expect("applies");
        assert_eq!(state(&image, "t", 0), (-1, vec![2], 2, 3));
        assert!(!image.topic("t").expect("t").partitions[0].has_leader());
        // Replicas change alone.
        let image = image
            .apply(&[partition_change(id, None, None, Some(&[2, 3, 1]))])
            .expect("applies");
        assert_eq!(
            image.topic("t").expect("t").partitions[0].replicas,
            [BrokerId(2), BrokerId(3), BrokerId(1)]
        );
        assert_eq!(state(&image, "t", 0), (-1, vec![2], 2, 4));
    }

    #[test]
    fn partition_change_refuses_a_leader_or_isr_outside_the_replicas() {
        let (image, id) = with_topic(&cluster(&[(1, None), (2, None), (4, None)]), "t", &[&[1, 2]]);
        assert!(image.apply(&[partition_change(id, Some(4), None, None)]).is_err());
        assert!(image.apply(&[partition_change(id, None, Some(&[1, 4]), None)]).is_err());
        let unknown = MetadataRecord::PartitionChange {
            topic_id: id,
            partition: PartitionId(5),
            leader: None,
            isr: None,
            replicas: None,
        };
        assert!(image.apply(&[unknown]).is_err());
    }

    #[test]
    fn broker_registration_records_apply() {
        let register = |epoch: i64, incarnation| MetadataRecord::RegisterBroker {
            broker_id: BrokerId(7),
            incarnation_id: incarnation,
            broker_epoch: epoch,
            rack: Some("a".into()),
            listeners: vec![endpoint(9092)],
            fenced: true,
        };
        let first = Uuid::new_v4();
        let image = MetadataImage::default().apply(&create_topic("x", 1)).expect("applies");
        let image = image.apply(&[register(5, first)]).expect("registers");
        let b = image.cluster().broker(BrokerId(7)).expect("registered");
        assert_eq!((b.epoch, b.fenced, b.in_controlled_shutdown), (5, true, false));
        assert_eq!(b.registered_at_offset, 2, "applied as the second batch");
        assert_eq!(b.rack.as_deref(), Some("a"));
        assert_eq!(b.listeners, [endpoint(9092)]);
        // A change must name the current epoch.
        let change = |epoch, fenced, shutdown| MetadataRecord::BrokerRegistrationChange {
            broker_id: BrokerId(7),
            broker_epoch: epoch,
            fenced,
            in_controlled_shutdown: shutdown,
        };
        assert!(image.apply(&[change(4, Some(false), None)]).is_err());
        let image = image.apply(&[change(5, Some(false), None)]).expect("unfences");
        assert!(image.cluster().is_active(BrokerId(7)));
        let image = image.apply(&[change(5, None, Some(true))]).expect("shuts down");
        let b = image.cluster().broker(BrokerId(7)).expect("registered");
        assert_eq!((b.fenced, b.in_controlled_shutdown), (false, true));
        assert!(!image.cluster().is_active(BrokerId(7)));
        assert!(image.cluster().is_unfenced(BrokerId(7)));
        // A re-registration must advance the epoch, and replaces the registration.
        assert!(image.apply(&[register(5, Uuid::new_v4())]).is_err());
        let second = Uuid::new_v4();
        let image = image.apply(&[register(9, second)]).expect("re-registers");
        let b = image.cluster().broker(BrokerId(7)).expect("registered");
        assert_eq!(
            (b.epoch, b.incarnation_id, b.fenced, b.in_controlled_shutdown),
            (9, second, true, false)
        );
        // Unregistration names the epoch too.
        let unregister = |epoch| MetadataRecord::UnregisterBroker {
            broker_id: BrokerId(7),
            broker_epoch: epoch,
        };
        assert!(image.apply(&[unregister(5)]).is_err());
        let image = image.apply(&[unregister(9)]).expect("unregisters");
        assert!(image.cluster().is_empty());
        assert!(image.apply(&[change(9, Some(false), None)]).is_err());
    }

    #[test]
    fn cluster_read_helpers() {
        let image = cluster(&[(1, Some("b")), (2, Some("a")), (3, None), (4, Some("a"))]);
        let image = crate::testing::set_fenced(&image, 4, true);
        let (image, _) = with_topic(&image, "t", &[&[1, 2, 3], &[2, 4], &[4, 1], &[9, 1]]);
        let ids = |it: Vec<BrokerId>| it.into_iter().map(|b| b.0).collect::<Vec<_>>();
        assert_eq!(
            ids(image.cluster().unfenced_brokers().map(|b| b.id).collect()),
            [1, 2, 3]
        );
        assert_eq!(image.cluster().racks(), [None, Some("a"), Some("b")]);
        let led: Vec<i32> = image
            .partitions_led_by(BrokerId(2))
            .map(|(_, p)| p.partition.0)
            .collect();
        assert_eq!(led, [1]);
        let on: Vec<i32> = image.partitions_on(BrokerId(1)).map(|(_, p)| p.partition.0).collect();
        assert_eq!(on, [0, 2, 3]);
        let loads = image.broker_loads();
        assert_eq!(
            loads[&BrokerId(1)],
            BrokerLoad {
                replicas: 3,
                leaders: 1
            }
        );
        assert_eq!(
            loads[&BrokerId(4)],
            BrokerLoad {
                replicas: 2,
                leaders: 1
            }
        );
        assert_eq!(
            loads[&BrokerId(3)],
            BrokerLoad {
                replicas: 1,
                leaders: 0
            }
        );
        let t = image.topic("t").expect("t");
        assert_eq!(ids(image.offline_replicas(&t.partitions[0])), Vec::<i32>::new());
        // Fenced (4) and unregistered (9) replicas are offline.
        assert_eq!(ids(image.offline_replicas(&t.partitions[1])), [4]);
        assert_eq!(ids(image.offline_replicas(&t.partitions[3])), [9]);
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
