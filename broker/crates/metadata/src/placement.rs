//! Rack-aware replica placement for new partitions, and validation of explicit assignments.
//!
//! The goals are Kafka's `StripedReplicaPlacer`'s, in the same priority order, with a
//! deterministic, load-aware choice instead of its random start offsets:
//!
//! 1. Replicas of one partition go to distinct brokers (a constraint), and only to *active*
//!    brokers: registered, unfenced and not in controlled shutdown (also a constraint; Kafka
//!    falls back to fenced brokers for followers, Fjord never does).
//! 2. Replicas of one partition are spread as evenly as possible over racks: with at least RF
//!    racks every replica is in a distinct rack. Brokers without a rack form one rack of their
//!    own, the unnamed rack, as in Kafka (so a cluster without racks has no rack constraint).
//! 3. Replicas and leaders (first replicas) are spread evenly over brokers, counting what each
//!    broker already holds (from the image, plus what this [`Placer`] placed before), so creating
//!    many topics one at a time stays balanced. Per partition, each slot goes to the rack with the
//!    fewest replicas per broker among the racks this partition uses least, and in it to the
//!    broker with the fewest replicas, then the fewest partitions shared with the replicas already
//!    chosen (so replica sets differ), then the fewest leaderships. The member with the fewest
//!    leaderships leads. After all partitions of one call are placed, leaderships move between
//!    replicas of the new partitions along augmenting paths until no broker leads two more than
//!    one it could hand a leadership to. The follower that least often followed the leader comes
//!    second (it takes over first, so a failed broker's leaderships spread). Ties go to the lowest
//!    rack, then the lowest broker id.
//!
//! Guarantees (property tests in this file): on an empty cluster whose racks hold the same number
//! of active brokers, one call gives per-broker replica counts and leader counts within one of each
//! other; topics created one by one keep replica counts within one and leader counts within
//! three (mixed replication factors and one-partition topics pull the two apart). With racks
//! of different sizes rack distinctness wins over balance, as in Kafka.
//!
//! The output depends only on the brokers and their loads: the same image gives the same
//! assignment, which keeps controller failover and tests reproducible.

use std::collections::{BTreeMap, HashMap};

use crate::control::Error;
use crate::image::{BrokerLoad, MetadataImage};
use crate::records::BrokerId;

/// Most partitions one [`Placer::place`] call places (the broker's per-topic cap is the same);
/// more is refused rather than attempted, so bad input cannot exhaust the controller's memory.
pub const MAX_PARTITIONS_PER_PLACEMENT: i32 = 100_000;

/// Brokers up to which placement tracks how many partitions each pair shares (an n × n table);
/// above it that tie-break is skipped.
const PAIR_TRACKING_MAX_BROKERS: usize = 2_048;

/// One broker placement may choose.
#[derive(Debug, Clone)]
struct Candidate {
    id: BrokerId,
    /// Index into `Placer::racks`.
    rack: usize,
}

/// Places replicas for new partitions. Keep one `Placer` for all topics of one request so that
/// each sees the replicas placed for the ones before it.
#[derive(Debug, Clone)]
pub struct Placer {
    /// Active brokers in id order.
    candidates: Vec<Candidate>,
    racks: Vec<Option<String>>,
    registered: usize,
    loads: BTreeMap<BrokerId, BrokerLoad>,
}

impl Placer {
    /// A placer over the image's active brokers, starting from the image's per-broker loads.
    pub fn new(image: &MetadataImage) -> Placer {
        let brokers = image
            .cluster()
            .active_brokers()
            .map(|b| (b.id, b.rack.clone()))
            .collect::<Vec<_>>();
        Placer::with_brokers(brokers, image.cluster().len(), image.broker_loads())
    }

    /// A placer over `active` brokers (id, rack) with these starting loads; `registered` counts
    /// every registered broker, fenced ones included (only for error messages).
    pub fn with_brokers(
        active: impl IntoIterator<Item = (BrokerId, Option<String>)>,
        registered: usize,
        loads: BTreeMap<BrokerId, BrokerLoad>,
    ) -> Placer {
        let mut active: Vec<(BrokerId, Option<String>)> = active.into_iter().collect();
        active.sort();
        active.dedup_by_key(|(id, _)| *id);
        let mut racks: Vec<Option<String>> = active.iter().map(|(_, r)| r.clone()).collect();
        racks.sort();
        racks.dedup();
        let candidates = active
            .into_iter()
            .map(|(id, rack)| Candidate {
                id,
                rack: racks.binary_search(&rack).expect("every rack is listed"),
            })
            .collect::<Vec<_>>();
        Placer {
            registered: registered.max(candidates.len()),
            candidates,
            racks,
            loads,
        }
    }

    /// The per-broker loads including everything placed or accounted so far.
    pub fn loads(&self) -> &BTreeMap<BrokerId, BrokerLoad> {
        &self.loads
    }

    /// Counts an assignment that was not placed here (an explicit one) in the loads.
    pub fn account(&mut self, replicas: &[BrokerId]) {
        for (i, broker) in replicas.iter().enumerate() {
            let load = self.loads.entry(*broker).or_default();
            load.replicas += 1;
            if i == 0 {
                load.leaders += 1;
            }
        }
    }

    /// Replica lists for `partitions` new partitions of `replication_factor` replicas each; the
    /// first replica of each list is its leader.
    pub fn place(&mut self, partitions: i32, replication_factor: i16) -> Result<Vec<Vec<BrokerId>>, Error> {
        if partitions <= 0 {
            return Err(Error::InvalidPartitions(
                "Number of partitions was set to an invalid non-positive value.".into(),
            ));
        }
        if partitions > MAX_PARTITIONS_PER_PLACEMENT {
            return Err(Error::InvalidPartitions(format!(
                "Number of partitions {partitions} is above the limit of {MAX_PARTITIONS_PER_PLACEMENT}."
            )));
        }
        if replication_factor <= 0 {
            return Err(Error::InvalidReplicationFactor(
                "Replication factor must be larger than 0.".into(),
            ));
        }
        let rf = usize::try_from(replication_factor).expect("positive");
        if rf > self.candidates.len() {
            let why = if self.candidates.len() == self.registered {
                format!("only {} broker(s) are registered", self.registered)
            } else {
                format!(
                    "only {} of the {} registered broker(s) are unfenced",
                    self.candidates.len(),
                    self.registered
                )
            };
            return Err(Error::InvalidReplicationFactor(format!(
                "Unable to replicate the partition {rf} time(s): The target replication factor of {rf} cannot be \
                 reached because {why}."
            )));
        }
        let count = usize::try_from(partitions).expect("positive");
        // Loads per candidate (index into `candidates`), updated as partitions are placed.
        let mut loads: Vec<BrokerLoad> = self
            .candidates
            .iter()
            .map(|c| self.loads.get(&c.id).copied().unwrap_or_default())
            .collect();
        let mut sets: Vec<(usize, Vec<usize>)> = Vec::with_capacity(count);
        // Partitions shared by each pair of candidates in this placement (row-major n × n).
        let n = self.candidates.len();
        let mut together = if n <= PAIR_TRACKING_MAX_BROKERS {
            vec![0_u32; n * n]
        } else {
            Vec::new()
        };
        for _ in 0..count {
            let members = self.replica_set(rf, &loads, &together);
            if !together.is_empty() {
                for &a in &members {
                    for &b in &members {
                        if a != b {
                            together[a * n + b] += 1;
                        }
                    }
                }
            }
            let leader = *members
                .iter()
                .min_by_key(|&&i| (loads[i].leaders, loads[i].replicas, self.candidates[i].id))
                .expect("rf > 0");
            for &i in &members {
                loads[i].replicas += 1;
            }
            loads[leader].leaders += 1;
            sets.push((leader, members));
        }
        balance_leaders(&mut sets, &mut loads);
        for (c, load) in self.candidates.iter().zip(&loads) {
            self.loads.insert(c.id, *load);
        }
        // Order each list: leader first, then the follower that least often followed this leader
        // in this placement (it takes over when the leader fails, so a failed broker's
        // leaderships spread over several brokers), the rest by id.
        let mut followed: HashMap<(usize, usize), u32> = HashMap::new();
        let mut out = Vec::with_capacity(count);
        for (leader, members) in sets {
            let mut followers: Vec<usize> = members.into_iter().filter(|&i| i != leader).collect();
            followers.sort_by_key(|&i| (followed.get(&(leader, i)).copied().unwrap_or(0), self.candidates[i].id));
            if let Some(&second) = followers.first() {
                *followed.entry((leader, second)).or_default() += 1;
            }
            let mut replicas = vec![self.candidates[leader].id];
            replicas.extend(followers.into_iter().map(|i| self.candidates[i].id));
            out.push(replicas);
        }
        Ok(out)
    }

    /// The `rf` brokers (indexes into `candidates`) of one new partition. One slot at a time:
    /// from the racks this partition uses least, the rack with the fewest replicas per broker, in
    /// it the broker with the fewest replicas (then leaderships, then the lowest id). Keeping the
    /// rack totals even and the counts inside each rack even keeps every broker's count even on a
    /// cluster whose racks have the same number of brokers.
    fn replica_set(&self, rf: usize, loads: &[BrokerLoad], together: &[u32]) -> Vec<usize> {
        let n = self.candidates.len();
        let mut rack_replicas = vec![0_u64; self.racks.len()];
        let mut rack_size = vec![0_u64; self.racks.len()];
        for (c, load) in self.candidates.iter().zip(loads) {
            rack_replicas[c.rack] += u64::from(load.replicas);
            rack_size[c.rack] += 1;
        }
        let mut chosen: Vec<usize> = Vec::with_capacity(rf);
        let mut rack_use = vec![0_u32; self.racks.len()];
        for _ in 0..rf {
            let free = || (0..self.candidates.len()).filter(|i| !chosen.contains(i));
            let least_used_rack = free()
                .map(|i| rack_use[self.candidates[i].rack])
                .min()
                .expect("rf <= candidates");
            let pick = free()
                .filter(|&i| rack_use[self.candidates[i].rack] == least_used_rack)
                .min_by(|&a, &b| {
                    let (ra, rb) = (self.candidates[a].rack, self.candidates[b].rack);
                    // rack_replicas[ra] / rack_size[ra] against the same for rb, exactly.
                    (rack_replicas[ra] * rack_size[rb])
                        .cmp(&(rack_replicas[rb] * rack_size[ra]))
                        .then_with(|| ra.cmp(&rb))
                        .then_with(|| {
                            // Fewest replicas, then fewest partitions shared with this partition's
                            // replicas so far (so that sets differ and a failed broker's
                            // leaderships spread), then fewest leaderships.
                            let shared = |x: usize| -> u32 {
                                chosen
                                    .iter()
                                    .map(|&c| together.get(c * n + x).copied().unwrap_or(0))
                                    .sum()
                            };
                            (loads[a].replicas, shared(a), loads[a].leaders).cmp(&(
                                loads[b].replicas,
                                shared(b),
                                loads[b].leaders,
                            ))
                        })
                        .then_with(|| self.candidates[a].id.cmp(&self.candidates[b].id))
                })
                .expect("a free candidate in the least used rack");
            let rack = self.candidates[pick].rack;
            rack_use[rack] += 1;
            rack_replicas[rack] += 1;
            chosen.push(pick);
        }
        chosen
    }
}

/// Moves leaderships of the new partitions between their replicas until no broker leads two or
/// more than another it could hand leadership to along a chain of these partitions (augmenting
/// paths, as in a max-flow): with replica counts within one of each other this reaches leader
/// counts within one. Each move lowers the sum of squared leader counts, so it ends.
fn balance_leaders(sets: &mut [(usize, Vec<usize>)], loads: &mut [BrokerLoad]) {
    let brokers = loads.len();
    let mut led_by: Vec<Vec<usize>> = vec![Vec::new(); brokers];
    for (p, (leader, _)) in sets.iter().enumerate() {
        led_by[*leader].push(p);
    }
    'search: loop {
        let mut order: Vec<usize> = (0..brokers).collect();
        order.sort_by_key(|&b| std::cmp::Reverse(loads[b].leaders));
        for &start in &order {
            // Breadth-first over "b leads partition p, which has replica next", to a broker with
            // at least two leaderships fewer than `start`.
            let mut via: Vec<Option<(usize, usize)>> = vec![None; brokers];
            let mut seen = vec![false; brokers];
            seen[start] = true;
            let mut queue = std::collections::VecDeque::from([start]);
            while let Some(b) = queue.pop_front() {
                for &p in &led_by[b] {
                    for &next in &sets[p].1 {
                        if seen[next] {
                            continue;
                        }
                        seen[next] = true;
                        via[next] = Some((b, p));
                        if loads[next].leaders + 2 <= loads[start].leaders {
                            // Hand each partition on the path on to the next broker.
                            let mut to = next;
                            while let Some((from, p)) = via[to] {
                                sets[p].0 = to;
                                led_by[from].retain(|&x| x != p);
                                led_by[to].push(p);
                                to = from;
                            }
                            loads[start].leaders -= 1;
                            loads[next].leaders += 1;
                            continue 'search;
                        }
                        queue.push_back(next);
                    }
                }
            }
        }
        break;
    }
}

/// Checks explicit replica assignments (CreateTopics `assignments`, CreatePartitions
/// `assignments`) the way Kafka's `validateManualPartitionAssignment` does: every list non-empty,
/// no broker twice, every broker registered, and every list as long as `replication_factor` (or,
/// when `None`, as the first list). Returns the replication factor.
pub fn validate_assignments(
    image: &MetadataImage,
    assignments: &[Vec<BrokerId>],
    replication_factor: Option<usize>,
) -> Result<usize, Error> {
    let invalid = |m: String| Err(Error::InvalidReplicaAssignment(m));
    let mut expected = replication_factor;
    for replicas in assignments {
        if replicas.is_empty() {
            return invalid("The manual partition assignment includes an empty replica list.".into());
        }
        let mut sorted = replicas.clone();
        sorted.sort_unstable();
        let mut previous = None;
        for broker in sorted {
            if image.cluster().broker(broker).is_none() {
                return invalid(format!(
                    "The manual partition assignment includes broker {broker}, but no such broker is registered."
                ));
            }
            if previous == Some(broker) {
                return invalid(format!(
                    "The manual partition assignment includes the broker {broker} more than once."
                ));
            }
            previous = Some(broker);
        }
        match expected {
            Some(rf) if rf != replicas.len() => {
                return invalid(format!(
                    "The manual partition assignment includes a partition with {} replica(s), but this is not \
                     consistent with previous partitions, which have {rf} replica(s).",
                    replicas.len()
                ));
            }
            Some(_) => {}
            None => expected = Some(replicas.len()),
        }
    }
    expected.ok_or_else(|| Error::InvalidReplicaAssignment("The manual partition assignment is empty.".into()))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;
    use crate::testing::{cluster, plain_cluster, set_fenced, with_topic};

    fn ids(assignment: &[Vec<BrokerId>]) -> Vec<Vec<i32>> {
        assignment.iter().map(|r| r.iter().map(|b| b.0).collect()).collect()
    }

    /// Replica and leader counts of `assignment` per broker of `brokers` (zero included).
    fn counts(brokers: &[BrokerId], assignment: &[Vec<BrokerId>]) -> (Vec<u32>, Vec<u32>) {
        let mut placer = Placer::with_brokers(
            Vec::new(),
            0,
            brokers.iter().map(|b| (*b, BrokerLoad::default())).collect(),
        );
        for replicas in assignment {
            placer.account(replicas);
        }
        let loads = placer.loads();
        (
            brokers.iter().map(|b| loads[b].replicas).collect(),
            brokers.iter().map(|b| loads[b].leaders).collect(),
        )
    }

    fn spread(values: &[u32]) -> u32 {
        values.iter().max().copied().unwrap_or(0) - values.iter().min().copied().unwrap_or(0)
    }

    #[test]
    fn three_racks_of_two_get_rack_distinct_replicas_and_even_leaders() {
        let image = cluster(&[
            (1, Some("a")),
            (2, Some("a")),
            (3, Some("b")),
            (4, Some("b")),
            (5, Some("c")),
            (6, Some("c")),
        ]);
        let assignment = Placer::new(&image).place(6, 3).expect("places");
        for replicas in &assignment {
            let racks: BTreeSet<i32> = replicas.iter().map(|b| (b.0 + 1) / 2).collect();
            assert_eq!(racks.len(), 3, "{assignment:?}");
        }
        let brokers: Vec<BrokerId> = (1..=6).map(BrokerId).collect();
        assert_eq!(
            counts(&brokers, &assignment),
            (vec![3; 6], vec![1; 6]),
            "{assignment:?}"
        );
    }

    #[test]
    fn a_failed_brokers_leaderships_go_to_several_brokers() {
        let image = plain_cluster(4);
        let assignment = Placer::new(&image).place(12, 3).expect("places");
        for leader in 1..=4 {
            let seconds: BTreeSet<BrokerId> = assignment
                .iter()
                .filter(|r| r[0] == BrokerId(leader))
                .map(|r| r[1])
                .collect();
            assert!(
                seconds.len() >= 2,
                "broker {leader}'s partitions fail over to several brokers: {assignment:?}"
            );
        }
    }

    #[test]
    fn successive_topics_continue_from_the_image_loads() {
        let image = plain_cluster(3);
        let (image, _) = with_topic(&image, "first", &[&[1]]);
        // Broker 1 already leads one partition: the next single-partition topic goes elsewhere.
        assert_eq!(ids(&Placer::new(&image).place(1, 1).expect("places")), [[2]]);
        let (image, _) = with_topic(&image, "second", &[&[2]]);
        assert_eq!(ids(&Placer::new(&image).place(1, 1).expect("places")), [[3]]);
        // One placer over several topics of one request sees its own placements.
        let mut placer = Placer::new(&image);
        let a = placer.place(1, 2).expect("places");
        let b = placer.place(1, 2).expect("places");
        assert_ne!(a[0][0], b[0][0]);
    }

    #[test]
    fn fenced_and_shutting_down_brokers_are_never_chosen() {
        let image = set_fenced(&plain_cluster(4), 2, true);
        let epoch = image.cluster().broker(BrokerId(3)).expect("3").epoch;
        let image = image
            .apply(&[crate::MetadataRecord::BrokerRegistrationChange {
                broker_id: BrokerId(3),
                broker_epoch: epoch,
                fenced: None,
                in_controlled_shutdown: Some(true),
            }])
            .expect("applies");
        let assignment = Placer::new(&image).place(10, 2).expect("places");
        assert!(
            assignment
                .iter()
                .flatten()
                .all(|b| *b == BrokerId(1) || *b == BrokerId(4))
        );
        let error = Placer::new(&image).place(1, 3).expect_err("only two usable");
        assert_eq!(
            error,
            Error::InvalidReplicationFactor(
                "Unable to replicate the partition 3 time(s): The target replication factor of 3 cannot be reached \
                 because only 2 of the 4 registered broker(s) are unfenced."
                    .into()
            )
        );
    }

    #[test]
    fn replication_factor_and_partition_count_are_checked() {
        let image = plain_cluster(2);
        assert_eq!(
            Placer::new(&image).place(1, 3),
            Err(Error::InvalidReplicationFactor(
                "Unable to replicate the partition 3 time(s): The target replication factor of 3 cannot be reached \
                 because only 2 broker(s) are registered."
                    .into()
            ))
        );
        assert!(matches!(
            Placer::new(&image).place(1, 0),
            Err(Error::InvalidReplicationFactor(_))
        ));
        assert!(matches!(
            Placer::new(&image).place(0, 1),
            Err(Error::InvalidPartitions(_))
        ));
        assert!(matches!(
            Placer::new(&image).place(i32::MAX, 1),
            Err(Error::InvalidPartitions(_))
        ));
        assert!(matches!(
            Placer::new(&MetadataImage::default()).place(1, 1),
            Err(Error::InvalidReplicationFactor(_))
        ));
    }

    #[test]
    fn more_replicas_than_racks_spread_evenly_over_racks() {
        let image = cluster(&[
            (1, Some("a")),
            (2, Some("a")),
            (3, Some("a")),
            (4, Some("b")),
            (5, Some("b")),
            (6, Some("b")),
        ]);
        for replicas in Placer::new(&image).place(12, 3).expect("places") {
            let in_a = replicas.iter().filter(|b| b.0 <= 3).count();
            assert!(in_a == 1 || in_a == 2, "{replicas:?}");
        }
    }

    #[test]
    fn explicit_assignments_get_kafkas_messages() {
        let image = plain_cluster(3);
        let check = |lists: &[&[i32]], rf: Option<usize>| {
            let lists: Vec<Vec<BrokerId>> = lists
                .iter()
                .map(|l| l.iter().copied().map(BrokerId).collect())
                .collect();
            validate_assignments(&image, &lists, rf)
        };
        let invalid = |m: &str| Err(Error::InvalidReplicaAssignment(m.into()));
        assert_eq!(check(&[&[1, 2], &[2, 3]], None), Ok(2));
        assert_eq!(check(&[&[1, 2, 3]], Some(3)), Ok(3));
        assert_eq!(
            check(&[&[1, 2], &[]], None),
            invalid("The manual partition assignment includes an empty replica list.")
        );
        assert_eq!(
            check(&[&[2, 1, 2]], None),
            invalid("The manual partition assignment includes the broker 2 more than once.")
        );
        assert_eq!(
            check(&[&[1, 9]], None),
            invalid("The manual partition assignment includes broker 9, but no such broker is registered.")
        );
        assert_eq!(
            check(&[&[1, 2], &[3]], None),
            invalid(
                "The manual partition assignment includes a partition with 1 replica(s), but this is not consistent \
                 with previous partitions, which have 2 replica(s)."
            )
        );
        assert_eq!(
            check(&[&[1, 2]], Some(1)),
            invalid(
                "The manual partition assignment includes a partition with 2 replica(s), but this is not consistent \
                 with previous partitions, which have 1 replica(s)."
            )
        );
        assert!(check(&[], None).is_err());
    }

    /// A cluster of `racks` racks with `per_rack` active brokers each (no rack names when `racks`
    /// is 0), plus `fenced` more brokers in those racks that are fenced. Returns the active ones.
    fn uniform(racks: usize, per_rack: usize, fenced: usize) -> (MetadataImage, Vec<BrokerId>) {
        let names = ["a", "b", "c", "d", "e"];
        let active = racks.max(1) * per_rack;
        let brokers: Vec<(i32, Option<&str>)> = (0..active + fenced)
            .map(|i| {
                let id = i32::try_from(i).expect("small") * 3 + 1;
                (id, (racks > 0).then(|| names[i % racks]))
            })
            .collect();
        let mut image = cluster(&brokers);
        for &(id, _) in &brokers[active..] {
            image = set_fenced(&image, id, true);
        }
        let active = image.cluster().active_brokers().map(|b| b.id).collect();
        (image, active)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// One creation on a uniform cluster: replicas in distinct racks when there are enough,
        /// else spread over racks within one; replica and leader counts within one of each other.
        #[test]
        fn one_creation_is_rack_distinct_and_balanced(
            racks in 0_usize..5,
            per_rack in 1_usize..5,
            partitions in 1_i32..40,
            rf in 1_i16..5,
        ) {
            let (image, active) = uniform(racks, per_rack, 0);
            let rf = rf.min(i16::try_from(active.len()).expect("small"));
            let assignment = Placer::new(&image).place(partitions, rf).expect("places");
            prop_assert_eq!(assignment.len(), usize::try_from(partitions).expect("positive"));
            let rack_of = |b: BrokerId| image.cluster().broker(b).expect("registered").rack.clone();
            for replicas in &assignment {
                prop_assert_eq!(replicas.len(), usize::try_from(rf).expect("positive"));
                let distinct: BTreeSet<BrokerId> = replicas.iter().copied().collect();
                prop_assert_eq!(distinct.len(), replicas.len());
                let mut per_rack_use = std::collections::BTreeMap::<Option<String>, u32>::new();
                for b in replicas {
                    *per_rack_use.entry(rack_of(*b)).or_default() += 1;
                }
                let rack_count = image.cluster().racks().len();
                if rack_count >= replicas.len() {
                    prop_assert_eq!(per_rack_use.len(), replicas.len(), "rack-distinct: {:?}", replicas);
                } else {
                    let uses: Vec<u32> = per_rack_use.values().copied().collect();
                    prop_assert_eq!(per_rack_use.len(), rack_count);
                    prop_assert!(spread(&uses) <= 1, "racks evenly used: {:?}", replicas);
                }
            }
            let (replicas, leaders) = counts(&active, &assignment);
            prop_assert!(spread(&replicas) <= 1, "replica counts {:?}", replicas);
            prop_assert!(spread(&leaders) <= 1, "leader counts {:?}", leaders);
            // Deterministic: the same image gives the same assignment.
            prop_assert_eq!(Placer::new(&image).place(partitions, rf).expect("places"), assignment);
        }

        /// Many topics created one by one (each placed on the image holding the ones before)
        /// stay balanced, and fenced brokers never get a replica.
        #[test]
        fn successive_creations_stay_balanced_and_avoid_fenced(
            racks in 0_usize..4,
            per_rack in 1_usize..4,
            fenced in 0_usize..3,
            topics in proptest::collection::vec((1_i32..7, 1_i16..4), 1..25),
        ) {
            let (mut image, active) = uniform(racks, per_rack, fenced);
            let mut all = Vec::new();
            for (n, (partitions, rf)) in topics.into_iter().enumerate() {
                if usize::try_from(rf).expect("positive") > active.len() {
                    prop_assert!(matches!(
                        Placer::new(&image).place(partitions, rf),
                        Err(Error::InvalidReplicationFactor(_))
                    ));
                    continue;
                }
                let assignment = Placer::new(&image).place(partitions, rf).expect("places");
                prop_assert!(assignment.iter().flatten().all(|b| active.contains(b)), "fenced chosen: {:?}", assignment);
                let lists: Vec<Vec<i32>> = ids(&assignment);
                let refs: Vec<&[i32]> = lists.iter().map(Vec::as_slice).collect();
                image = with_topic(&image, &format!("t{n}"), &refs).0;
                all.extend(assignment);
            }
            let (replicas, leaders) = counts(&active, &all);
            prop_assert!(spread(&replicas) <= 1, "replica counts {:?}", replicas);
            // Leaders cannot always stay within one here: topics of one partition and different
            // replication factors pull replica and leader balance apart (measured: at most 3).
            prop_assert!(spread(&leaders) <= 3, "leader counts {:?}", leaders);
        }
    }
}
