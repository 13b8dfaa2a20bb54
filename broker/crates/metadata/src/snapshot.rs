//! A metadata image written back as records: the content of a metadata snapshot. Applying
//! [`MetadataImage::to_records`] to an empty image as one batch gives an image equal to the
//! original (see [`MetadataImage::from_records`]), so a replicated log can drop every entry a
//! snapshot covers.

use crate::Result;
use crate::image::MetadataImage;
use crate::records::{BrokerId, ConfigResource, MetadataRecord};

/// The broker id written in the `ProducerIds` record of a snapshot: the image keeps only where
/// the next block starts, not which broker took the last one.
pub const SNAPSHOT_BROKER_ID: BrokerId = BrokerId(-1);

impl MetadataImage {
    /// Every fact of this image as records, in an order that applies to an empty image: each
    /// topic, its partitions in index order and its configs; then broker, broker-default and
    /// group configs; then the producer id block. The offset is not a record (see
    /// [`MetadataImage::from_records`]).
    pub fn to_records(&self) -> Vec<MetadataRecord> {
        let mut records = Vec::with_capacity(self.topics.len() + self.partition_count());
        // Registered brokers first: their registration offset becomes the snapshot's offset.
        for broker in self.cluster.brokers() {
            records.push(MetadataRecord::RegisterBroker {
                broker_id: broker.id,
                incarnation_id: broker.incarnation_id,
                broker_epoch: broker.epoch,
                rack: broker.rack.clone(),
                listeners: broker.listeners.clone(),
                fenced: broker.fenced,
            });
            if broker.in_controlled_shutdown {
                records.push(MetadataRecord::BrokerRegistrationChange {
                    broker_id: broker.id,
                    broker_epoch: broker.epoch,
                    fenced: None,
                    in_controlled_shutdown: Some(true),
                });
            }
        }
        for topic in self.topics.values() {
            records.push(MetadataRecord::Topic {
                name: topic.name.clone(),
                topic_id: topic.id,
            });
            for p in &topic.partitions {
                records.push(MetadataRecord::Partition {
                    topic_id: topic.id,
                    partition: p.partition,
                    replicas: p.replicas.clone(),
                    isr: p.isr.clone(),
                    leader: p.leader,
                    leader_epoch: p.leader_epoch,
                    partition_epoch: p.partition_epoch,
                });
            }
            records.extend(config_records(
                ConfigResource::Topic(topic.name.clone()),
                &topic.configs,
            ));
        }
        for (broker, configs) in &self.broker_configs {
            records.extend(config_records(ConfigResource::Broker(*broker), configs));
        }
        records.extend(config_records(
            ConfigResource::BrokerDefault,
            &self.broker_default_configs,
        ));
        for (group, configs) in &self.group_configs {
            records.extend(config_records(ConfigResource::Group(group.clone()), configs));
        }
        for ((user, mechanism), credential) in self.scram.iter() {
            records.push(MetadataRecord::ScramCredential {
                user: user.clone(),
                mechanism: *mechanism,
                credential: credential.clone(),
            });
        }
        for binding in self.acls.iter() {
            records.push(MetadataRecord::Acl {
                binding: binding.clone(),
            });
        }
        if self.next_producer_id > 0 {
            records.push(MetadataRecord::ProducerIds {
                broker_id: SNAPSHOT_BROKER_ID,
                next_producer_id: self.next_producer_id,
            });
        }
        records
    }

    /// Rebuilds an image from [`MetadataImage::to_records`] output, at log position `offset`.
    pub fn from_records(records: &[MetadataRecord], offset: u64) -> Result<MetadataImage> {
        MetadataImage::default().apply_at(records, offset)
    }
}

fn config_records<'a>(
    resource: ConfigResource,
    configs: &'a std::collections::BTreeMap<String, String>,
) -> impl Iterator<Item = MetadataRecord> + 'a {
    configs.iter().map(move |(name, value)| MetadataRecord::Config {
        resource: resource.clone(),
        name: name.clone(),
        value: Some(value.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{PartitionId, TopicId};

    fn config(resource: ConfigResource, name: &str, value: Option<&str>) -> MetadataRecord {
        MetadataRecord::Config {
            resource,
            name: name.into(),
            value: value.map(Into::into),
        }
    }

    /// An image with every kind of fact, built through a history that also removed things.
    fn busy_image() -> MetadataImage {
        let orders = TopicId::random();
        let gone = TopicId::random();
        let partition = |topic_id, p: i32, leader: i32, epoch| MetadataRecord::Partition {
            topic_id,
            partition: PartitionId(p),
            replicas: vec![BrokerId(leader), BrokerId(leader + 1), BrokerId(leader + 2)],
            isr: vec![BrokerId(leader), BrokerId(leader + 1)],
            leader: BrokerId(leader),
            leader_epoch: epoch,
            partition_epoch: epoch,
        };
        let batches = vec![
            vec![
                MetadataRecord::Topic {
                    name: "orders".into(),
                    topic_id: orders,
                },
                partition(orders, 0, 1, 0),
                partition(orders, 1, 2, 0),
                partition(orders, 2, 3, 0),
            ],
            vec![
                MetadataRecord::Topic {
                    name: "gone".into(),
                    topic_id: gone,
                },
                partition(gone, 0, 1, 0),
                config(ConfigResource::Topic("gone".into()), "retention.ms", Some("1")),
            ],
            // A leader change: the partition record is replaced in place.
            vec![partition(orders, 1, 3, 7)],
            vec![
                config(
                    ConfigResource::Topic("orders".into()),
                    "cleanup.policy",
                    Some("compact"),
                ),
                config(ConfigResource::Topic("orders".into()), "retention.ms", Some("1000")),
                config(ConfigResource::Topic("orders".into()), "retention.ms", None),
                config(ConfigResource::Broker(BrokerId(1)), "log.retention.ms", Some("5")),
                config(ConfigResource::Broker(BrokerId(2)), "num.io.threads", Some("4")),
                config(ConfigResource::Broker(BrokerId(2)), "num.io.threads", None),
                config(ConfigResource::BrokerDefault, "log.cleaner.threads", Some("2")),
                config(
                    ConfigResource::Group("g1".into()),
                    "consumer.session.timeout.ms",
                    Some("45000"),
                ),
                config(
                    ConfigResource::Group("g2".into()),
                    "consumer.heartbeat.interval.ms",
                    Some("5000"),
                ),
                config(
                    ConfigResource::Group("g2".into()),
                    "consumer.heartbeat.interval.ms",
                    None,
                ),
            ],
            vec![MetadataRecord::RemoveTopic { topic_id: gone }],
            vec![MetadataRecord::ProducerIds {
                broker_id: BrokerId(2),
                next_producer_id: 2000,
            }],
        ];
        let mut image = MetadataImage::default();
        for batch in &batches {
            image = image.apply(batch).expect("applies");
        }
        image
    }

    #[test]
    fn image_to_records_and_back_is_equal() {
        let image = busy_image();
        assert_eq!(image.topic_count(), 1);
        assert_eq!(image.topic("orders").expect("orders").partitions[1].leader_epoch, 7);
        assert!(image.broker_configs(BrokerId(1)).is_some());
        assert!(
            image.broker_configs(BrokerId(2)).is_none(),
            "emptied resources leave no entry"
        );
        assert!(image.group_configs("g1").is_some());
        assert_eq!(image.next_producer_id(), 2000);

        let records = image.to_records();
        let restored = MetadataImage::from_records(&records, image.offset).expect("applies");
        assert_eq!(restored, image);
        assert_eq!(restored.offset, 6);
        // Every kind of fact is in the records.
        let kinds = |f: fn(&MetadataRecord) -> bool| records.iter().filter(|r| f(r)).count();
        assert_eq!(kinds(|r| matches!(r, MetadataRecord::Topic { .. })), 1);
        assert_eq!(kinds(|r| matches!(r, MetadataRecord::Partition { .. })), 3);
        assert_eq!(kinds(|r| matches!(r, MetadataRecord::ProducerIds { .. })), 1);
        for resource in [
            ConfigResource::Topic("orders".into()),
            ConfigResource::Broker(BrokerId(1)),
            ConfigResource::BrokerDefault,
            ConfigResource::Group("g1".into()),
        ] {
            assert!(
                records
                    .iter()
                    .any(|r| matches!(r, MetadataRecord::Config { resource: res, .. } if *res == resource)),
                "no config record for {resource:?}"
            );
        }
        // Applying the snapshot's records again on top of the image fails (a topic exists): a
        // snapshot is only ever restored into an empty image.
        assert!(image.apply(&records).is_err());
    }

    #[test]
    fn empty_image_round_trips_to_no_records() {
        let image = MetadataImage::default();
        assert!(image.to_records().is_empty());
        assert_eq!(MetadataImage::from_records(&[], 0).expect("applies"), image);
    }

    #[test]
    fn apply_at_sets_the_offset() {
        let image = MetadataImage::default()
            .apply_at(&[config(ConfigResource::BrokerDefault, "a", Some("b"))], 42)
            .expect("applies");
        assert_eq!(image.offset, 42);
        assert_ne!(image, MetadataImage::default());
    }

    #[test]
    fn registered_brokers_survive_a_snapshot() {
        let endpoint = crate::records::Endpoint {
            name: "PLAINTEXT".into(),
            host: "b1".into(),
            port: 9092,
            security_protocol: "PLAINTEXT".into(),
        };
        let register = |id: i32, epoch: i64, fenced: bool| MetadataRecord::RegisterBroker {
            broker_id: BrokerId(id),
            incarnation_id: uuid::Uuid::new_v4(),
            broker_epoch: epoch,
            rack: Some(format!("r{id}")),
            listeners: vec![endpoint.clone()],
            fenced,
        };
        let image = MetadataImage::default()
            .apply(&[register(1, 1, false), register(2, 1, true)])
            .expect("applies");
        let restored = MetadataImage::from_records(&image.to_records(), 9).expect("restores");
        for id in [1, 2] {
            let (a, b) = (
                image.cluster().broker(BrokerId(id)).expect("registered"),
                restored.cluster().broker(BrokerId(id)).expect("restored"),
            );
            assert_eq!(
                (a.incarnation_id, a.epoch, &a.rack, &a.listeners, a.fenced),
                (b.incarnation_id, b.epoch, &b.rack, &b.listeners, b.fenced)
            );
        }
    }
}
