//! Pure placement decisions: how many brokers each rack gets, which broker ids its pods have,
//! and which brokers a scale-in removes.

use std::collections::BTreeMap;

/// Broker ids of a rack are `base + ordinal`; bases are multiples of this.
pub const BROKER_ID_STRIDE: i32 = 1000;

/// One rack's share of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RackPlan {
    /// Rack name; empty for a cluster without racks.
    pub name: String,
    /// Node label value pinning the rack (None: no node affinity).
    pub node_label_value: Option<String>,
    /// Brokers the rack should have.
    pub brokers: i32,
    /// Broker id of the rack's pod with ordinal 0.
    pub id_base: i32,
}

impl RackPlan {
    /// Broker ids for ordinals `0..count`.
    pub fn broker_ids(&self, count: i32) -> Vec<i32> {
        (0..count).map(|o| self.id_base + o).collect()
    }
}

/// Spreads `brokers` over `racks` as evenly as possible (counts differ by at most one). The
/// remainder goes to the racks that currently have the most brokers (ties: spec order), so
/// scale-out adds to the least-filled racks and scale-in removes from the fullest, and an
/// unchanged count moves nothing.
pub fn spread(brokers: i32, racks: &[&str], current: &BTreeMap<String, i32>) -> Vec<i32> {
    if racks.is_empty() {
        return Vec::new();
    }
    let k = racks.len() as i32;
    let brokers = brokers.max(0);
    let (base, remainder) = (brokers / k, brokers % k);
    let mut order: Vec<usize> = (0..racks.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(current.get(racks[i]).copied().unwrap_or(0)), i));
    let mut out = vec![base; racks.len()];
    for &i in order.iter().take(remainder as usize) {
        out[i] += 1;
    }
    out
}

/// Assigns each rack its broker-id base: racks that already have one (from their StatefulSet)
/// keep it; new racks get the lowest unused multiple of [`BROKER_ID_STRIDE`], in spec order. Ids
/// therefore survive reordering, adding and removing racks.
pub fn id_bases(racks: &[&str], existing: &BTreeMap<String, i32>) -> Vec<i32> {
    // Every existing base counts as used, including those of racks being removed (still draining).
    let mut used: Vec<i32> = existing.values().copied().collect();
    racks
        .iter()
        .map(|r| {
            if let Some(base) = existing.get(*r) {
                return *base;
            }
            let base = (0..)
                .map(|n| n * BROKER_ID_STRIDE)
                .find(|b| !used.contains(b))
                .expect("an unused base exists");
            used.push(base);
            base
        })
        .collect()
}

/// The rack plans of a validated cluster: brokers per rack (see [`spread`]) and id bases (see
/// [`id_bases`]). `current` is brokers per rack now, `existing_bases` the bases recorded on the
/// StatefulSets that exist.
pub fn rack_plans(
    v: &super::validate::ValidCluster,
    current: &BTreeMap<String, i32>,
    existing_bases: &BTreeMap<String, i32>,
) -> Vec<RackPlan> {
    let names: Vec<&str> = v.racks.iter().map(|r| r.name.as_str()).collect();
    let counts = spread(v.brokers, &names, current);
    let bases = id_bases(&names, existing_bases);
    v.racks
        .iter()
        .zip(counts)
        .zip(bases)
        .map(|((r, brokers), id_base)| RackPlan {
            name: r.name.clone(),
            node_label_value: r.node_label_value.clone(),
            brokers,
            id_base,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("zone-{}", (b'a' + i as u8) as char)).collect()
    }

    #[test]
    fn spread_is_even_for_1_to_5_racks_and_1_to_12_brokers() {
        for racks in 1..=5 {
            let names = names(racks);
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            for brokers in 1..=12 {
                let counts = spread(brokers, &refs, &BTreeMap::new());
                assert_eq!(counts.iter().sum::<i32>(), brokers, "{racks} racks, {brokers} brokers");
                let (min, max) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
                assert!(max - min <= 1, "{racks} racks, {brokers} brokers: {counts:?}");
                // From nothing, the remainder goes to the first racks in spec order.
                assert!(counts.windows(2).all(|w| w[0] >= w[1]), "{counts:?}");
            }
        }
    }

    #[test]
    fn spread_scales_out_into_the_least_filled_rack_and_in_from_the_fullest() {
        let racks = ["a", "b", "c"];
        let current: BTreeMap<String, i32> = [("a".into(), 1), ("b".into(), 2), ("c".into(), 1)].into();
        // 4 -> 5: the extra broker lands in a or c (least filled), not b; b keeps its 2.
        assert_eq!(spread(5, &racks, &current), vec![2, 2, 1]);
        // 4 -> 3: b (the fullest) loses one.
        assert_eq!(spread(3, &racks, &current), vec![1, 1, 1]);
        // Unchanged count: nothing moves.
        assert_eq!(spread(4, &racks, &current), vec![1, 2, 1]);
        assert_eq!(spread(0, &racks, &current), vec![0, 0, 0]);
        assert!(spread(3, &[], &current).is_empty());
    }

    #[test]
    fn id_bases_are_stable_across_reorder_and_new_racks() {
        let first = id_bases(&["a", "b", "c"], &BTreeMap::new());
        assert_eq!(first, vec![0, 1000, 2000]);
        let existing: BTreeMap<String, i32> = [("a".into(), 0), ("b".into(), 1000), ("c".into(), 2000)].into();
        assert_eq!(id_bases(&["c", "a", "b"], &existing), vec![2000, 0, 1000]);
        // b removed, d added: d takes the freed base only if no live rack holds it.
        let without_b: BTreeMap<String, i32> = [("a".into(), 0), ("c".into(), 2000)].into();
        assert_eq!(id_bases(&["a", "c", "d"], &without_b), vec![0, 2000, 1000]);
        let plan = RackPlan {
            name: "c".into(),
            node_label_value: None,
            brokers: 2,
            id_base: 2000,
        };
        assert_eq!(plan.broker_ids(3), vec![2000, 2001, 2002]);
    }
}
