//! AlterPartition (Kafka's `ReplicationControlManager.alterPartition`): a partition leader asks
//! the controller to change its ISR, with its leader epoch and the partition epoch it built the
//! change on as an optimistic lock; stale requests are refused, new members must be live replicas.

use super::{ControllerResult, Error};
use crate::image::MetadataImage;
use crate::records::{BrokerId, MetadataRecord, PartitionId};

/// One partition's ISR change, as the leader sends it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AlterPartitionRequest {
    pub broker_id: BrokerId,
    pub topic: String,
    pub partition: i32,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub new_isr: Vec<BrokerId>,
}

/// Validates the change against `image`; on success the record to commit and the partition
/// epoch it will have (an unchanged ISR commits nothing and answers the current epoch).
pub fn alter_partition(image: &MetadataImage, request: &AlterPartitionRequest) -> Result<ControllerResult<i32>, Error> {
    let topic = image
        .topic(&request.topic)
        .ok_or_else(|| Error::UnknownTopicOrPartition(format!("unknown topic {}", request.topic)))?;
    let partition = topic.partitions.get(request.partition as usize).ok_or_else(|| {
        Error::UnknownTopicOrPartition(format!("unknown partition {}-{}", request.topic, request.partition))
    })?;
    let name = || request.topic.clone();
    if partition.leader != request.broker_id {
        return Err(Error::NotLeader {
            broker_id: request.broker_id,
            topic: name(),
            partition: request.partition,
        });
    }
    if request.leader_epoch != partition.leader_epoch {
        return Err(Error::FencedLeaderEpoch {
            topic: name(),
            partition: request.partition,
            request_epoch: request.leader_epoch,
            current_epoch: partition.leader_epoch,
        });
    }
    if request.partition_epoch != partition.partition_epoch {
        return Err(Error::InvalidUpdateVersion {
            topic: name(),
            partition: request.partition,
            request_epoch: request.partition_epoch,
            current_epoch: partition.partition_epoch,
        });
    }
    let mut isr = Vec::with_capacity(request.new_isr.len());
    for id in &request.new_isr {
        if isr.contains(id) {
            continue;
        }
        let live = image.cluster().is_unfenced(*id);
        let joining = !partition.isr.contains(id);
        // A member already in the ISR may stay even if fenced meanwhile (the controller's own
        // fencing removes it); a new member must be a live replica.
        if !partition.replicas.contains(id) || (joining && !live) {
            return Err(Error::IneligibleReplica {
                topic: name(),
                partition: request.partition,
                broker_id: *id,
            });
        }
        isr.push(*id);
    }
    if !isr.contains(&request.broker_id) {
        return Err(Error::IneligibleReplica {
            topic: name(),
            partition: request.partition,
            broker_id: request.broker_id,
        });
    }
    // Keep assignment order, as Kafka's ISR does not promise one but tools read it that way.
    isr.sort_by_key(|id| partition.replicas.iter().position(|r| r == id));
    if isr == partition.isr {
        return Ok(ControllerResult::new(Vec::new(), partition.partition_epoch));
    }
    Ok(ControllerResult::new(
        vec![MetadataRecord::PartitionChange {
            topic_id: topic.id,
            partition: PartitionId(request.partition),
            leader: None,
            isr: Some(isr),
            replicas: None,
        }],
        partition.partition_epoch + 1,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{apply, plain_cluster, set_fenced, state, with_topic};

    fn request(image: &MetadataImage, broker: i32, isr: &[i32]) -> AlterPartitionRequest {
        let p = &image.topic("t").expect("t").partitions[0];
        AlterPartitionRequest {
            broker_id: BrokerId(broker),
            topic: "t".into(),
            partition: 0,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            new_isr: isr.iter().map(|i| BrokerId(*i)).collect(),
        }
    }

    #[test]
    fn the_leader_shrinks_and_expands_the_isr_with_the_partition_epoch_as_a_lock() {
        let (image, _) = with_topic(&plain_cluster(3), "t", &[&[1, 2, 3]]);
        let shrink = request(&image, 1, &[1, 3]);
        let result = alter_partition(&image, &shrink).expect("shrinks");
        let after = apply(&image, &result.records);
        let (leader, isr, leader_epoch, partition_epoch) = state(&after, "t", 0);
        assert_eq!((leader, isr), (1, vec![1, 3]));
        assert_eq!(result.response, partition_epoch);
        assert_eq!(leader_epoch, image.topic("t").expect("t").partitions[0].leader_epoch);
        // The same request again is stale now.
        assert!(matches!(
            alter_partition(&after, &shrink),
            Err(Error::InvalidUpdateVersion { .. })
        ));
        let expand = alter_partition(&after, &request(&after, 1, &[3, 2, 1])).expect("expands");
        assert_eq!(state(&apply(&after, &expand.records), "t", 0).1, vec![1, 2, 3]);
    }

    #[test]
    fn refusals_name_kafkas_reasons() {
        let (image, _) = with_topic(&plain_cluster(3), "t", &[&[1, 2, 3]]);
        assert!(matches!(
            alter_partition(&image, &request(&image, 2, &[2])),
            Err(Error::NotLeader { .. })
        ));
        let mut stale = request(&image, 1, &[1]);
        stale.leader_epoch -= 1;
        assert!(matches!(
            alter_partition(&image, &stale),
            Err(Error::FencedLeaderEpoch { .. })
        ));
        assert!(matches!(
            alter_partition(&image, &request(&image, 1, &[1, 4])),
            Err(Error::IneligibleReplica { .. })
        ));
        assert!(matches!(
            alter_partition(&image, &request(&image, 1, &[2, 3])),
            Err(Error::IneligibleReplica { .. })
        ));
        let shrunk = apply(
            &image,
            &alter_partition(&image, &request(&image, 1, &[1])).expect("ok").records,
        );
        let fenced = set_fenced(&shrunk, 2, true);
        assert!(matches!(
            alter_partition(&fenced, &request(&fenced, 1, &[1, 2])),
            Err(Error::IneligibleReplica { .. })
        ));
        assert!(
            alter_partition(&image, &request(&image, 1, &[1, 2, 3]))
                .expect("no change")
                .records
                .is_empty()
        );
    }
}
