//! The cluster part of the metadata image: registered brokers with their epoch, incarnation,
//! rack, listeners and fencing state (Kafka's ClusterImage / BrokerRegistration).

use std::collections::BTreeMap;
use std::sync::Arc;

use uuid::Uuid;

use crate::records::{BrokerId, Endpoint};

/// One registered broker as the controller last recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerRegistration {
    pub id: BrokerId,
    pub incarnation_id: Uuid,
    /// The epoch of this registration; requests naming another one are stale.
    pub epoch: i64,
    pub rack: Option<String>,
    pub listeners: Vec<Endpoint>,
    /// A fenced broker leads nothing and is not chosen for new replicas.
    pub fenced: bool,
    /// The broker asked to shut down; its leaderships are being moved away.
    pub in_controlled_shutdown: bool,
    /// The metadata offset (image offset) at which this registration was applied: the broker is
    /// caught up once it reports having applied at least this much (Kafka compares with the
    /// offset of the RegisterBrokerRecord).
    pub registered_at_offset: u64,
}

impl BrokerRegistration {
    /// May lead partitions and receive new replicas: unfenced and not shutting down.
    pub fn is_active(&self) -> bool {
        !self.fenced && !self.in_controlled_shutdown
    }
}

/// The registered brokers, by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterImage {
    pub(crate) brokers: BTreeMap<BrokerId, Arc<BrokerRegistration>>,
}

impl ClusterImage {
    pub fn broker(&self, id: BrokerId) -> Option<&BrokerRegistration> {
        self.brokers.get(&id).map(Arc::as_ref)
    }

    /// Every registered broker (fenced or not), in id order.
    pub fn brokers(&self) -> impl Iterator<Item = &BrokerRegistration> {
        self.brokers.values().map(Arc::as_ref)
    }

    /// Registered brokers that are not fenced (those in controlled shutdown included: they still
    /// serve until they exit), in id order. These are the brokers Metadata lists.
    pub fn unfenced_brokers(&self) -> impl Iterator<Item = &BrokerRegistration> {
        self.brokers().filter(|b| !b.fenced)
    }

    /// Brokers that may lead and receive new replicas: unfenced and not in controlled shutdown.
    pub fn active_brokers(&self) -> impl Iterator<Item = &BrokerRegistration> {
        self.brokers().filter(|b| b.is_active())
    }

    /// True when `id` is registered, unfenced and not in controlled shutdown.
    pub fn is_active(&self, id: BrokerId) -> bool {
        self.broker(id).is_some_and(BrokerRegistration::is_active)
    }

    /// True when `id` is registered and unfenced.
    pub fn is_unfenced(&self, id: BrokerId) -> bool {
        self.broker(id).is_some_and(|b| !b.fenced)
    }

    /// The distinct racks of registered brokers, sorted; brokers without a rack are `None`.
    pub fn racks(&self) -> Vec<Option<&str>> {
        let mut racks: Vec<Option<&str>> = self.brokers().map(|b| b.rack.as_deref()).collect();
        racks.sort_unstable();
        racks.dedup();
        racks
    }

    pub fn len(&self) -> usize {
        self.brokers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.brokers.is_empty()
    }
}
