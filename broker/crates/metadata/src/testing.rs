//! Test helpers: images with registered brokers and topics, built only through records.

use uuid::Uuid;

use crate::image::MetadataImage;
use crate::records::{BrokerId, Endpoint, MetadataRecord, PartitionId, TopicId};

pub(crate) fn endpoint(port: u16) -> Endpoint {
    Endpoint {
        name: "PLAINTEXT".into(),
        host: "127.0.0.1".into(),
        port,
        security_protocol: "PLAINTEXT".into(),
    }
}

/// Registers `brokers` (id, rack) with epoch = id + 100, unfenced.
pub(crate) fn cluster(brokers: &[(i32, Option<&str>)]) -> MetadataImage {
    let mut records = Vec::new();
    for &(id, rack) in brokers {
        records.push(MetadataRecord::RegisterBroker {
            broker_id: BrokerId(id),
            incarnation_id: Uuid::new_v4(),
            broker_epoch: i64::from(id) + 100,
            rack: rack.map(str::to_string),
            listeners: vec![endpoint(9092)],
            fenced: false,
        });
    }
    MetadataImage::default().apply(&records).expect("registers")
}

/// Brokers 1..=n without racks.
pub(crate) fn plain_cluster(n: i32) -> MetadataImage {
    cluster(&(1..=n).map(|id| (id, None)).collect::<Vec<_>>())
}

/// Adds topic `name` with these replica lists: leader the first replica, ISR all of them.
pub(crate) fn with_topic(image: &MetadataImage, name: &str, assignments: &[&[i32]]) -> (MetadataImage, TopicId) {
    let topic_id = TopicId::random();
    let mut records = vec![MetadataRecord::Topic {
        name: name.into(),
        topic_id,
    }];
    for (p, replicas) in (0..).zip(assignments) {
        let replicas: Vec<BrokerId> = replicas.iter().copied().map(BrokerId).collect();
        records.push(MetadataRecord::Partition {
            topic_id,
            partition: PartitionId(p),
            isr: replicas.clone(),
            leader: replicas[0],
            replicas,
            leader_epoch: 0,
            partition_epoch: 0,
        });
    }
    (image.apply(&records).expect("creates"), topic_id)
}

/// Applies `records` (one batch), panicking with them on failure.
pub(crate) fn apply(image: &MetadataImage, records: &[MetadataRecord]) -> MetadataImage {
    image.apply(records).unwrap_or_else(|e| panic!("{e}: {records:#?}"))
}

/// Sets `broker` fenced (or not) directly, without any partition changes.
pub(crate) fn set_fenced(image: &MetadataImage, broker: i32, fenced: bool) -> MetadataImage {
    let epoch = image.cluster().broker(BrokerId(broker)).expect("registered").epoch;
    apply(
        image,
        &[MetadataRecord::BrokerRegistrationChange {
            broker_id: BrokerId(broker),
            broker_epoch: epoch,
            fenced: Some(fenced),
            in_controlled_shutdown: None,
        }],
    )
}

/// The (leader, isr, leader epoch, partition epoch) of `topic`-`partition`.
pub(crate) fn state(image: &MetadataImage, topic: &str, partition: usize) -> (i32, Vec<i32>, i32, i32) {
    let p = &image.topic(topic).expect("topic").partitions[partition];
    (
        p.leader.0,
        p.isr.iter().map(|b| b.0).collect(),
        p.leader_epoch,
        p.partition_epoch,
    )
}
