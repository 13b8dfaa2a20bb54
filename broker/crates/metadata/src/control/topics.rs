//! Replica assignment and partition records for CreateTopics and CreatePartitions (Kafka's
//! ReplicationControlManager.createTopic / createPartitions, the placement part).

use crate::control::{ControllerResult, Error};
use crate::image::MetadataImage;
use crate::placement::{Placer, validate_assignments};
use crate::records::{BrokerId, MetadataRecord, PartitionId, TopicId};

/// The replica lists of a new topic's partitions: `explicit` ones validated and returned as they
/// are (`partition_count` and `replication_factor` are then ignored, as Kafka requires them to be
/// -1 alongside assignments), else placed by `placer` (see [`crate::placement`]). Pass one
/// `Placer` for all topics of one request so later topics see the replicas of earlier ones.
pub fn assign_replicas(
    image: &MetadataImage,
    placer: &mut Placer,
    partition_count: i32,
    replication_factor: i16,
    explicit: Option<&[Vec<BrokerId>]>,
) -> Result<Vec<Vec<BrokerId>>, Error> {
    match explicit {
        Some(assignments) => {
            validate_assignments(image, assignments, None)?;
            for replicas in assignments {
                placer.account(replicas);
            }
            Ok(assignments.to_vec())
        }
        None => placer.place(partition_count, replication_factor),
    }
}

/// The `Partition` records of new partitions `first_partition..` of `topic_id` with these replica
/// lists: the ISR is the replicas that are active (all of them for placed ones), the leader the
/// first of those, both epochs 0 (Kafka's createTopic). A list with no active replica is refused.
pub fn new_partition_records(
    image: &MetadataImage,
    topic_id: TopicId,
    first_partition: i32,
    assignments: &[Vec<BrokerId>],
) -> Result<Vec<MetadataRecord>, Error> {
    let mut records = Vec::with_capacity(assignments.len());
    for (index, replicas) in (first_partition..).zip(assignments) {
        let isr: Vec<BrokerId> = replicas
            .iter()
            .copied()
            .filter(|b| image.cluster().is_active(*b))
            .collect();
        let Some(&leader) = isr.first() else {
            return Err(Error::InvalidReplicaAssignment(format!(
                "All brokers specified in the manual partition assignment for partition {index} are fenced or in \
                 controlled shutdown."
            )));
        };
        records.push(MetadataRecord::Partition {
            topic_id,
            partition: PartitionId(index),
            replicas: replicas.clone(),
            isr,
            leader,
            leader_epoch: 0,
            partition_epoch: 0,
        });
    }
    Ok(records)
}

/// CreatePartitions for one topic: grows `topic` to `new_total` partitions, with `explicit`
/// replica lists for the new ones or placed ones of the topic's replication factor. The response
/// is the number of partitions added.
pub fn create_partitions(
    image: &MetadataImage,
    placer: &mut Placer,
    topic: &str,
    new_total: i32,
    explicit: Option<&[Vec<BrokerId>]>,
) -> Result<ControllerResult<i32>, Error> {
    let Some(existing) = image.topic(topic) else {
        return Err(Error::UnknownTopicOrPartition(format!(
            "This server does not host this topic: {topic}"
        )));
    };
    let current = i32::try_from(existing.partitions.len()).unwrap_or(i32::MAX);
    if new_total < current {
        return Err(Error::InvalidPartitions(format!(
            "The topic {topic} currently has {current} partition(s); {new_total} would not be an increase."
        )));
    }
    if new_total == current {
        return Err(Error::InvalidPartitions(format!(
            "Topic already has {current} partition(s)."
        )));
    }
    let added = new_total - current;
    let replication_factor = existing.partitions.first().map_or(1, |p| p.replicas.len());
    let assignments = match explicit {
        Some(assignments) => {
            if assignments.len() != usize::try_from(added).expect("positive") {
                return Err(Error::InvalidReplicaAssignment(format!(
                    "Attempted to add {added} additional partition(s), but only {} assignment(s) were specified.",
                    assignments.len()
                )));
            }
            validate_assignments(image, assignments, Some(replication_factor))?;
            for replicas in assignments {
                placer.account(replicas);
            }
            assignments.to_vec()
        }
        None => placer.place(added, i16::try_from(replication_factor).unwrap_or(i16::MAX))?,
    };
    let records = new_partition_records(image, existing.id, current, &assignments)?;
    Ok(ControllerResult::new(records, added))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{apply, cluster, plain_cluster, set_fenced, state, with_topic};

    fn lists(l: &[&[i32]]) -> Vec<Vec<BrokerId>> {
        l.iter().map(|r| r.iter().copied().map(BrokerId).collect()).collect()
    }

    #[test]
    fn a_placed_topic_gets_leader_first_replica_isr_all_epochs_zero() {
        let image = cluster(&[(1, Some("a")), (2, Some("b")), (3, Some("c"))]);
        let mut placer = Placer::new(&image);
        let assignments = assign_replicas(&image, &mut placer, 3, 3, None).expect("places");
        let id = TopicId::random();
        let mut records = vec![MetadataRecord::Topic {
            name: "t".into(),
            topic_id: id,
        }];
        records.extend(new_partition_records(&image, id, 0, &assignments).expect("records"));
        let image = apply(&image, &records);
        let topic = image.topic("t").expect("t");
        for (p, replicas) in topic.partitions.iter().zip(&assignments) {
            assert_eq!(&p.replicas, replicas);
            assert_eq!(p.isr, p.replicas);
            assert_eq!(p.leader, p.replicas[0]);
            assert_eq!((p.leader_epoch, p.partition_epoch), (0, 0));
        }
        let leaders: std::collections::BTreeSet<BrokerId> = topic.partitions.iter().map(|p| p.leader).collect();
        assert_eq!(leaders.len(), 3);
    }

    #[test]
    fn explicit_assignments_are_honoured_and_fenced_replicas_start_outside_the_isr() {
        let image = set_fenced(&plain_cluster(3), 1, true);
        let mut placer = Placer::new(&image);
        let explicit = lists(&[&[1, 2], &[3, 1]]);
        let assignments = assign_replicas(&image, &mut placer, -1, -1, Some(&explicit)).expect("valid");
        assert_eq!(assignments, explicit);
        let records = new_partition_records(&image, TopicId::random(), 0, &assignments).expect("records");
        let MetadataRecord::Partition { leader, isr, .. } = &records[0] else {
            panic!("{records:?}")
        };
        assert_eq!((*leader, isr.clone()), (BrokerId(2), vec![BrokerId(2)]));
        // Explicit assignments count in the placer's loads.
        assert_eq!(placer.loads()[&BrokerId(1)].replicas, 2);
        assert_eq!(
            new_partition_records(&image, TopicId::random(), 0, &lists(&[&[1]])),
            Err(Error::InvalidReplicaAssignment(
                "All brokers specified in the manual partition assignment for partition 0 are fenced or in controlled \
                 shutdown."
                    .into()
            ))
        );
        assert!(matches!(
            assign_replicas(&image, &mut placer, -1, -1, Some(&lists(&[&[2, 2]]))),
            Err(Error::InvalidReplicaAssignment(_))
        ));
    }

    #[test]
    fn create_partitions_grows_the_topic_with_its_replication_factor() {
        let (image, _) = with_topic(&plain_cluster(3), "t", &[&[1, 2]]);
        let mut placer = Placer::new(&image);
        let result = create_partitions(&image, &mut placer, "t", 3, None).expect("grows");
        assert_eq!(result.response, 2);
        let image = apply(&image, &result.records);
        let topic = image.topic("t").expect("t");
        assert_eq!(topic.partitions.len(), 3);
        assert!(topic.partitions.iter().all(|p| p.replicas.len() == 2));
        assert_eq!(state(&image, "t", 2).2, 0);

        let mut placer = Placer::new(&image);
        let invalid_partitions = |m: &str| Err(Error::InvalidPartitions(m.into()));
        assert_eq!(
            create_partitions(&image, &mut placer, "t", 3, None),
            invalid_partitions("Topic already has 3 partition(s).")
        );
        assert_eq!(
            create_partitions(&image, &mut placer, "t", 2, None),
            invalid_partitions("The topic t currently has 3 partition(s); 2 would not be an increase.")
        );
        assert!(matches!(
            create_partitions(&image, &mut placer, "nope", 2, None),
            Err(Error::UnknownTopicOrPartition(_))
        ));
        assert_eq!(
            create_partitions(&image, &mut placer, "t", 5, Some(&lists(&[&[3, 1]]))),
            Err(Error::InvalidReplicaAssignment(
                "Attempted to add 2 additional partition(s), but only 1 assignment(s) were specified.".into()
            ))
        );
        assert_eq!(
            create_partitions(&image, &mut placer, "t", 4, Some(&lists(&[&[3]]))),
            Err(Error::InvalidReplicaAssignment(
                "The manual partition assignment includes a partition with 1 replica(s), but this is not consistent \
                 with previous partitions, which have 2 replica(s)."
                    .into()
            ))
        );
        let result = create_partitions(&image, &mut placer, "t", 4, Some(&lists(&[&[3, 1]]))).expect("explicit");
        let image = apply(&image, &result.records);
        assert_eq!(
            image.topic("t").expect("t").partitions[3].replicas,
            [BrokerId(3), BrokerId(1)]
        );
        // More replicas than active brokers.
        let (image, _) = with_topic(&plain_cluster(3), "wide", &[&[1, 2, 3]]);
        let image = set_fenced(&image, 3, true);
        assert!(matches!(
            create_partitions(&image, &mut Placer::new(&image), "wide", 2, None),
            Err(Error::InvalidReplicationFactor(_))
        ));
    }
}
