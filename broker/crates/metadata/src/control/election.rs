//! Leader election and ISR changes when brokers come and go, and preferred-leader election (Kafka's
//! PartitionChangeBuilder and ReplicationControlManager.handleBroker*/electLeaders, without ELR).
//!
//! The rule everywhere: the leader is the first replica in assignment order that is in the ISR
//! and active (registered, unfenced, not in controlled shutdown); if there is none the partition
//! has no leader (-1), unless the topic sets `unclean.leader.election.enable` (or the cluster-wide
//! dynamic default does): then the first active replica outside the ISR leads with an ISR of
//! itself, and whatever only the lost ISR held is gone (Kafka's unclean election; logged as data
//! loss). A leader change bumps the leader epoch, every change the partition epoch (both done
//! when the `PartitionChange` record is applied).

use std::collections::BTreeSet;

use crate::control::{ControllerResult, Error};
use crate::image::{MetadataImage, PartitionImage, TopicImage};
use crate::records::{BrokerId, MetadataRecord, PartitionId, TopicId};

/// Whether leaderships with no other candidate stay with a broker that is leaving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Leaving {
    /// Fenced or gone: a partition it led with no other live ISR member has no leader.
    Fenced,
    /// In controlled shutdown: it keeps the leaderships nobody else can take until it stops.
    ControlledShutdown,
}

/// The first replica of `partition` in assignment order that is in `isr` and `acceptable`.
pub(crate) fn first_acceptable(
    partition: &PartitionImage,
    isr: &[BrokerId],
    acceptable: impl Fn(BrokerId) -> bool,
) -> Option<BrokerId> {
    partition
        .replicas
        .iter()
        .copied()
        .find(|r| isr.contains(r) && acceptable(*r))
}

/// A `PartitionChange` from `partition` to `leader` and `isr`, naming only what changes; `None`
/// when nothing does.
pub(crate) fn change(
    topic_id: TopicId,
    partition: &PartitionImage,
    leader: BrokerId,
    isr: Vec<BrokerId>,
) -> Option<MetadataRecord> {
    let leader = (leader != partition.leader).then_some(leader);
    let isr = (isr != partition.isr).then_some(isr);
    if leader.is_none() && isr.is_none() {
        return None;
    }
    Some(MetadataRecord::PartitionChange {
        topic_id,
        partition: partition.partition,
        leader,
        isr,
        replicas: None,
    })
}

/// The partition changes when the brokers in `leaving` stop serving: each leaves every ISR it is
/// in (unless the ISR would become empty: then the ISR stays as it is, as Kafka keeps the last
/// member without ELR), and each partition one of them led gets the first active replica of the
/// remaining ISR as leader, or none (`Leaving::Fenced`) / the old one (`ControlledShutdown`).
pub(crate) fn evict(image: &MetadataImage, leaving: &BTreeSet<BrokerId>, how: Leaving) -> Vec<MetadataRecord> {
    let acceptable = |b: BrokerId| image.cluster().is_active(b) && !leaving.contains(&b);
    let mut records = Vec::new();
    for (topic, partition) in image.partitions() {
        let led = leaving.contains(&partition.leader);
        if !led && !partition.isr.iter().any(|b| leaving.contains(b)) {
            continue;
        }
        let mut isr: Vec<BrokerId> = partition.isr.iter().copied().filter(|b| !leaving.contains(b)).collect();
        if isr.is_empty() {
            isr = partition.isr.clone();
        }
        let leader = if led {
            match (first_acceptable(partition, &isr, acceptable), how) {
                (Some(next), _) => next,
                (None, Leaving::Fenced) => match unclean_candidate(image, topic, partition, acceptable) {
                    Some(out_of_isr) => {
                        isr = vec![out_of_isr];
                        out_of_isr
                    }
                    None => BrokerId::NO_LEADER,
                },
                (None, Leaving::ControlledShutdown) => {
                    // It keeps leading, so it stays in the ISR it leads.
                    isr = partition.isr.clone();
                    partition.leader
                }
            }
        } else {
            partition.leader
        };
        records.extend(change(topic.id, partition, leader, isr));
    }
    records
}

/// The partition changes when `broker` is unfenced: partitions without a leader whose ISR holds
/// it get the first acceptable ISR replica (it, or another that became active meanwhile).
/// With unclean election allowed for it, too: leaderless partitions it is a replica of whose
/// ISR has no acceptable member get it (or another active replica) as leader, alone in the ISR.
pub(crate) fn restore(image: &MetadataImage, broker: BrokerId) -> Vec<MetadataRecord> {
    let acceptable = |b: BrokerId| b == broker || image.cluster().is_active(b);
    image
        .partitions()
        .filter(|(_, p)| !p.has_leader() && p.replicas.contains(&broker))
        .filter_map(|(topic, p)| match first_acceptable(p, &p.isr, acceptable) {
            Some(leader) => change(topic.id, p, leader, p.isr.clone()),
            None => {
                let leader = unclean_candidate(image, topic, p, acceptable)?;
                change(topic.id, p, leader, vec![leader])
            }
        })
        .collect()
}

/// Whether `topic` allows out-of-ISR leaders: its own `unclean.leader.election.enable`, else the
/// cluster-wide dynamic broker default (Kafka's default: false).
pub fn unclean_allowed(image: &MetadataImage, topic: &TopicImage) -> bool {
    const KEY: &str = "unclean.leader.election.enable";
    topic
        .configs
        .get(KEY)
        .or_else(|| image.broker_default_configs().get(KEY))
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// The unclean leader for a partition whose ISR has no acceptable member: the first acceptable
/// replica in assignment order, if the topic allows it. Logged, as the records only the lost ISR
/// held are gone.
fn unclean_candidate(
    image: &MetadataImage,
    topic: &TopicImage,
    partition: &PartitionImage,
    acceptable: impl Fn(BrokerId) -> bool,
) -> Option<BrokerId> {
    if !unclean_allowed(image, topic) {
        return None;
    }
    let leader = partition.replicas.iter().copied().find(|r| acceptable(*r))?;
    tracing::warn!(topic = %topic.name, partition = partition.partition.0, leader = leader.0, isr = ?partition.isr,
        "unclean leader election: a replica outside the isr leads; records only the isr held are lost");
    Some(leader)
}

fn elect_unclean(
    image: &MetadataImage,
    topic: &TopicImage,
    partition: &PartitionImage,
) -> Result<MetadataRecord, Error> {
    let active = |b: BrokerId| image.cluster().is_active(b);
    if partition.has_leader() && active(partition.leader) {
        return Err(Error::ElectionNotNeeded {
            topic: topic.name.clone(),
            partition: partition.partition.0,
        });
    }
    // A clean candidate first, as Kafka's unclean election does.
    if let Some(leader) = first_acceptable(partition, &partition.isr, active) {
        return Ok(change(topic.id, partition, leader, partition.isr.clone()).expect("the leader changes"));
    }
    let Some(leader) = partition.replicas.iter().copied().find(|r| active(*r)) else {
        return Err(Error::EligibleLeadersNotAvailable {
            topic: topic.name.clone(),
            partition: partition.partition.0,
        });
    };
    tracing::warn!(topic = %topic.name, partition = partition.partition.0, leader = leader.0, isr = ?partition.isr,
        "unclean leader election (ElectLeaders UNCLEAN): records only the isr held are lost");
    Ok(change(topic.id, partition, leader, vec![leader]).expect("the leader changes"))
}

/// Kafka's election types (ElectLeaders `election_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElectionType {
    /// 0: the first replica leads where it is active and in the ISR.
    Preferred,
    /// 1: a partition without a live leader gets one, from outside the ISR if need be.
    Unclean,
}

/// The outcome of a preferred-leader election for one partition (ElectLeaders response entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElectionResult {
    pub topic: String,
    pub partition: i32,
    pub result: Result<(), Error>,
}

fn elect_preferred(
    image: &MetadataImage,
    topic: &TopicImage,
    partition: &PartitionImage,
) -> Result<MetadataRecord, Error> {
    let preferred = partition.preferred_leader().unwrap_or(BrokerId::NO_LEADER);
    if partition.leader == preferred {
        return Err(Error::ElectionNotNeeded {
            topic: topic.name.clone(),
            partition: partition.partition.0,
        });
    }
    if !image.cluster().is_active(preferred) || !partition.isr.contains(&preferred) {
        return Err(Error::PreferredLeaderNotAvailable {
            topic: topic.name.clone(),
            partition: partition.partition.0,
            preferred,
        });
    }
    Ok(change(topic.id, partition, preferred, partition.isr.clone()).expect("the leader changes"))
}

/// Kafka's ElectLeaders with the PREFERRED type: makes the first replica the leader of each named
/// partition (`None`: every partition) where it is active, in the ISR and not already leader.
/// Named partitions get a result each (UNKNOWN_TOPIC_OR_PARTITION, ELECTION_NOT_NEEDED,
/// PREFERRED_LEADER_NOT_AVAILABLE or success); for `None`, as in Kafka, only partitions that
/// needed an election are listed.
pub fn elect_preferred_leaders(
    image: &MetadataImage,
    partitions: Option<&[(String, i32)]>,
) -> ControllerResult<Vec<ElectionResult>> {
    elect_leaders(image, ElectionType::Preferred, partitions)
}

/// Kafka's ElectLeaders: PREFERRED as [`elect_preferred_leaders`]; UNCLEAN gives each named
/// partition (`None`: every partition) without a live leader a leader, an ISR member if one is
/// active, else the first active replica with an ISR of itself (ELECTION_NOT_NEEDED where a live
/// leader exists, ELIGIBLE_LEADERS_NOT_AVAILABLE where no replica is live).
pub fn elect_leaders(
    image: &MetadataImage,
    kind: ElectionType,
    partitions: Option<&[(String, i32)]>,
) -> ControllerResult<Vec<ElectionResult>> {
    let elect = |topic: &TopicImage, partition: &PartitionImage| match kind {
        ElectionType::Preferred => elect_preferred(image, topic, partition),
        ElectionType::Unclean => elect_unclean(image, topic, partition),
    };
    let mut records = Vec::new();
    let mut results = Vec::new();
    let mut push = |topic: &str, partition: i32, outcome: Result<MetadataRecord, Error>| {
        let result = outcome.map(|record| records.push(record));
        results.push(ElectionResult {
            topic: topic.to_string(),
            partition,
            result,
        });
    };
    match partitions {
        Some(named) => {
            for (name, index) in named {
                let found = image.topic(name).and_then(|t| {
                    let p = usize::try_from(*index).ok().and_then(|i| t.partitions.get(i))?;
                    Some((t, p))
                });
                let outcome = match found {
                    Some((topic, partition)) => elect(topic, partition),
                    None => Err(Error::UnknownTopicOrPartition(format!(
                        "This server does not host this topic-partition: {name}-{index}"
                    ))),
                };
                push(name, *index, outcome);
            }
        }
        None => {
            for (topic, partition) in image.partitions() {
                match elect(topic, partition) {
                    Err(Error::ElectionNotNeeded { .. }) => {}
                    outcome => push(&topic.name, partition.partition.0, outcome),
                }
            }
        }
    }
    ControllerResult::new(records, results)
}

/// Partitions without a leader whose topic allows unclean election get one (run periodically by
/// the active controller, as Kafka's controller does when the config is turned on later). The
/// response is the partitions elected.
pub fn elect_unclean_where_allowed(image: &MetadataImage) -> ControllerResult<Vec<(TopicId, PartitionId)>> {
    let mut records = Vec::new();
    let mut elected = Vec::new();
    for (topic, partition) in image.partitions() {
        if partition.has_leader() || !unclean_allowed(image, topic) {
            continue;
        }
        if let Ok(record) = elect_unclean(image, topic, partition) {
            records.push(record);
            elected.push((topic.id, partition.partition));
        }
    }
    ControllerResult::new(records, elected)
}

/// `auto.leader.rebalance.enable`: moves leadership back to the preferred replica of up to
/// `max_elections` partitions where it is active, in the ISR and not leading. The response is
/// the partitions moved.
pub fn rebalance_leaders(image: &MetadataImage, max_elections: usize) -> ControllerResult<Vec<(TopicId, PartitionId)>> {
    let mut records = Vec::new();
    let mut moved = Vec::new();
    for (topic, partition) in image.partitions() {
        if records.len() >= max_elections {
            break;
        }
        if let Ok(record) = elect_preferred(image, topic, partition) {
            records.push(record);
            moved.push((topic.id, partition.partition));
        }
    }
    ControllerResult::new(records, moved)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{apply, plain_cluster, set_fenced, state, with_topic};

    /// Topic t: p0 replicas [1,2] led by 2, p1 led by its preferred 1, p2 [3,1] led by 1.
    fn moved_leaders() -> MetadataImage {
        let (image, id) = with_topic(&plain_cluster(3), "t", &[&[1, 2], &[1, 2], &[3, 1]]);
        let lead = |p: i32, leader: i32| MetadataRecord::PartitionChange {
            topic_id: id,
            partition: PartitionId(p),
            leader: Some(BrokerId(leader)),
            isr: None,
            replicas: None,
        };
        apply(&image, &[lead(0, 2), lead(2, 1)])
    }

    #[test]
    fn preferred_election_answers_per_partition() {
        // Broker 3 is fenced: t-2's preferred leader is not available.
        let image = set_fenced(&moved_leaders(), 3, true);
        let named = [
            ("t".to_string(), 0),
            ("t".to_string(), 1),
            ("t".to_string(), 2),
            ("t".to_string(), 7),
            ("nope".to_string(), 0),
        ];
        let result = elect_preferred_leaders(&image, Some(&named));
        let errors: Vec<Result<(), Error>> = result.response.iter().map(|r| r.result.clone()).collect();
        assert_eq!(
            errors,
            [
                Ok(()),
                Err(Error::ElectionNotNeeded {
                    topic: "t".into(),
                    partition: 1
                }),
                Err(Error::PreferredLeaderNotAvailable {
                    topic: "t".into(),
                    partition: 2,
                    preferred: BrokerId(3)
                }),
                Err(Error::UnknownTopicOrPartition(
                    "This server does not host this topic-partition: t-7".into()
                )),
                Err(Error::UnknownTopicOrPartition(
                    "This server does not host this topic-partition: nope-0".into()
                )),
            ]
        );
        let image = apply(&image, &result.records);
        assert_eq!(state(&image, "t", 0), (1, vec![1, 2], 2, 2));
        assert_eq!(state(&image, "t", 2), (1, vec![3, 1], 1, 1), "unchanged");
    }

    #[test]
    fn preferred_leader_outside_the_isr_is_not_available() {
        let (image, id) = with_topic(&plain_cluster(2), "t", &[&[1, 2]]);
        let image = apply(
            &image,
            &[MetadataRecord::PartitionChange {
                topic_id: id,
                partition: PartitionId(0),
                leader: Some(BrokerId(2)),
                isr: Some(vec![BrokerId(2)]),
                replicas: None,
            }],
        );
        let result = elect_preferred_leaders(&image, Some(&[("t".to_string(), 0)]));
        assert!(result.records.is_empty());
        assert!(matches!(
            result.response[0].result,
            Err(Error::PreferredLeaderNotAvailable { .. })
        ));
    }

    #[test]
    fn electing_all_partitions_lists_only_those_that_needed_it() {
        let image = moved_leaders();
        let result = elect_preferred_leaders(&image, None);
        let listed: Vec<(i32, bool)> = result
            .response
            .iter()
            .map(|r| (r.partition, r.result.is_ok()))
            .collect();
        assert_eq!(listed, [(0, true), (2, true)]);
        let image = apply(&image, &result.records);
        assert_eq!(state(&image, "t", 2).0, 3);
        assert!(elect_preferred_leaders(&image, None).response.is_empty());
    }

    #[test]
    fn rebalance_moves_leadership_back_up_to_the_limit() {
        let image = moved_leaders();
        let one = rebalance_leaders(&image, 1);
        assert_eq!(one.records.len(), 1);
        assert_eq!(one.response.len(), 1);
        let all = rebalance_leaders(&image, 100);
        assert_eq!(all.response.iter().map(|(_, p)| p.0).collect::<Vec<_>>(), [0, 2]);
        let image = apply(&image, &all.records);
        assert!(rebalance_leaders(&image, 100).records.is_empty());
        assert_eq!(state(&image, "t", 0).0, 1);
        assert_eq!(state(&image, "t", 2).0, 3);
    }
}

#[cfg(test)]
mod unclean_tests {
    use super::*;
    use crate::records::ConfigResource;
    use crate::testing::{apply, plain_cluster, set_fenced, state, with_topic};

    /// t-0 on replicas [1, 2] with an ISR of 1 alone (2 fell behind); `unclean` sets the topic's
    /// unclean.leader.election.enable.
    fn lagging_follower(unclean: Option<&str>) -> MetadataImage {
        let (image, id) = with_topic(&plain_cluster(2), "t", &[&[1, 2]]);
        let mut records = vec![MetadataRecord::PartitionChange {
            topic_id: id,
            partition: PartitionId(0),
            leader: None,
            isr: Some(vec![BrokerId(1)]),
            replicas: None,
        }];
        if let Some(value) = unclean {
            records.push(MetadataRecord::Config {
                resource: ConfigResource::Topic("t".into()),
                name: "unclean.leader.election.enable".into(),
                value: Some(value.into()),
            });
        }
        apply(&image, &records)
    }

    fn fence_one(image: &MetadataImage) -> MetadataImage {
        let records = evict(image, &BTreeSet::from([BrokerId(1)]), Leaving::Fenced);
        apply(&set_fenced(image, 1, true), &records)
    }

    #[test]
    fn with_unclean_election_off_the_partition_stays_offline() {
        let image = fence_one(&lagging_follower(None));
        assert_eq!(state(&image, "t", 0).0, -1);
        assert!(elect_unclean_where_allowed(&image).records.is_empty());
        let image = fence_one(&lagging_follower(Some("false")));
        assert_eq!(state(&image, "t", 0).0, -1);
    }

    #[test]
    fn with_unclean_election_on_an_out_of_isr_replica_leads_alone() {
        let image = fence_one(&lagging_follower(Some("true")));
        let (leader, isr, ..) = state(&image, "t", 0);
        assert_eq!((leader, isr), (2, vec![2]));
    }

    #[test]
    fn turning_unclean_election_on_later_elects_and_elect_leaders_unclean_ignores_the_config() {
        let offline = fence_one(&lagging_follower(None));
        // ElectLeaders UNCLEAN works whatever the topic says.
        let result = elect_leaders(&offline, ElectionType::Unclean, Some(&[("t".into(), 0)]));
        assert!(result.response[0].result.is_ok());
        assert_eq!(state(&apply(&offline, &result.records), "t", 0).0, 2);
        // PREFERRED cannot: the preferred replica is fenced.
        let result = elect_leaders(&offline, ElectionType::Preferred, Some(&[("t".into(), 0)]));
        assert!(matches!(
            result.response[0].result,
            Err(Error::PreferredLeaderNotAvailable { .. })
        ));
        // The periodic pass elects once the config turns on.
        let on = apply(
            &offline,
            &[MetadataRecord::Config {
                resource: ConfigResource::Topic("t".into()),
                name: "unclean.leader.election.enable".into(),
                value: Some("true".into()),
            }],
        );
        let result = elect_unclean_where_allowed(&on);
        assert_eq!(result.response.len(), 1);
        assert_eq!(state(&apply(&on, &result.records), "t", 0).0, 2);
        // A partition with a live leader needs no election.
        let led = lagging_follower(None);
        let result = elect_leaders(&led, ElectionType::Unclean, Some(&[("t".into(), 0)]));
        assert!(matches!(
            result.response[0].result,
            Err(Error::ElectionNotNeeded { .. })
        ));
    }
}
