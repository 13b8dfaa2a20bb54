//! Broker lifecycle (KIP-631): registration, heartbeats, fencing on session expiry, and controlled
//! shutdown (Kafka's ClusterControlManager, BrokerHeartbeatManager and the handleBroker* parts of
//! ReplicationControlManager). Time is passed in; sessions live in a [`HeartbeatTracker`] that only
//! the active controller holds (it is not metadata: a new controller starts a fresh one).

use std::collections::{BTreeSet, HashMap};

use uuid::Uuid;

use crate::control::election::{Leaving, evict, restore};
use crate::control::{ControllerResult, Error};
use crate::image::MetadataImage;
use crate::image::cluster::BrokerRegistration;
use crate::records::{BrokerId, Endpoint, MetadataRecord};

/// When each broker was last heard from, for `broker.session.timeout.ms` (Kafka's
/// BrokerHeartbeatManager). Times are milliseconds of a monotonic clock the caller owns.
#[derive(Debug, Clone)]
pub struct HeartbeatTracker {
    session_timeout_ms: u64,
    contacts: HashMap<BrokerId, Contact>,
}

#[derive(Debug, Clone, Copy)]
struct Contact {
    last_contact_ms: u64,
    metadata_offset: u64,
}

impl HeartbeatTracker {
    pub fn new(session_timeout_ms: u64) -> Self {
        HeartbeatTracker {
            session_timeout_ms,
            contacts: HashMap::new(),
        }
    }

    pub fn session_timeout_ms(&self) -> u64 {
        self.session_timeout_ms
    }

    /// Starts a session from `now_ms` for every registered broker (Kafka does this when a
    /// controller becomes active): a new controller has heard from nobody yet, and must neither
    /// fence live brokers at once nor let a second process take a live broker's node id.
    /// Contacts from an earlier leadership of this node are forgotten: they are stale, and would
    /// fence live brokers at once.
    pub fn activate(&mut self, image: &MetadataImage, now_ms: u64) {
        self.contacts.clear();
        for reg in image.cluster().brokers() {
            self.contacts.insert(
                reg.id,
                Contact {
                    last_contact_ms: now_ms,
                    metadata_offset: 0,
                },
            );
        }
    }

    /// Records a contact from `broker` at `now_ms` that reported `metadata_offset`.
    pub fn touch(&mut self, broker: BrokerId, now_ms: u64, metadata_offset: u64) {
        self.contacts.insert(
            broker,
            Contact {
                last_contact_ms: now_ms,
                metadata_offset,
            },
        );
    }

    /// True when `broker` was heard from within the session timeout before `now_ms`.
    pub fn has_live_session(&self, broker: BrokerId, now_ms: u64) -> bool {
        self.contacts
            .get(&broker)
            .is_some_and(|c| now_ms.saturating_sub(c.last_contact_ms) <= self.session_timeout_ms)
    }

    pub fn last_contact_ms(&self, broker: BrokerId) -> Option<u64> {
        self.contacts.get(&broker).map(|c| c.last_contact_ms)
    }

    /// The metadata offset `broker` last reported.
    pub fn metadata_offset(&self, broker: BrokerId) -> Option<u64> {
        self.contacts.get(&broker).map(|c| c.metadata_offset)
    }

    pub fn remove(&mut self, broker: BrokerId) {
        self.contacts.remove(&broker);
    }
}

/// A BrokerRegistration request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerRegistrationRequest {
    pub broker_id: BrokerId,
    pub incarnation_id: Uuid,
    pub rack: Option<String>,
    pub listeners: Vec<Endpoint>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistrationReply {
    pub broker_epoch: i64,
}

/// A BrokerHeartbeat request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerHeartbeat {
    pub broker_id: BrokerId,
    pub broker_epoch: i64,
    /// The image offset the broker has applied.
    pub current_metadata_offset: u64,
    pub want_fence: bool,
    pub want_shutdown: bool,
}

/// The BrokerHeartbeat response, true once the returned records are committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HeartbeatReply {
    pub is_caught_up: bool,
    pub is_fenced: bool,
    pub should_shut_down: bool,
}

fn registration_change(reg: &BrokerRegistration, fenced: Option<bool>, shutdown: Option<bool>) -> MetadataRecord {
    MetadataRecord::BrokerRegistrationChange {
        broker_id: reg.id,
        broker_epoch: reg.epoch,
        fenced,
        in_controlled_shutdown: shutdown,
    }
}

/// The records that fence `reg` and move its leaderships (Kafka's handleBrokerFenced).
fn fence(image: &MetadataImage, reg: &BrokerRegistration) -> Vec<MetadataRecord> {
    let mut records = vec![registration_change(reg, Some(true), None)];
    records.extend(evict(image, &BTreeSet::from([reg.id]), Leaving::Fenced));
    records
}

/// BrokerRegistration: records the broker, fenced, with a new broker epoch. The epoch is the
/// image offset (every later image has a higher one, so a restart always gets a higher epoch).
/// A registration for a node id whose registration has another incarnation id, is unfenced and
/// has a live session is refused (two processes with one node id; as in Kafka, a fenced broker,
/// e.g. after a controlled shutdown, has no live session, so its restart registers at once,
/// while a crashed one is refused until its session expires and the broker retries). A re-registration replaces the old one
/// and moves the leaderships of the old incarnation, which is fenced by it.
///
/// The runtime must call this on an image that includes its own earlier registrations of the
/// broker (Kafka's controller also replays its uncommitted records first).
pub fn register_broker(
    image: &MetadataImage,
    tracker: &mut HeartbeatTracker,
    request: BrokerRegistrationRequest,
    now_ms: u64,
) -> Result<ControllerResult<RegistrationReply>, Error> {
    let id = request.broker_id;
    let existing = image.cluster().broker(id);
    if let Some(existing) = existing
        && existing.incarnation_id != request.incarnation_id
        && !existing.fenced
        && tracker.has_live_session(id, now_ms)
    {
        return Err(Error::DuplicateBrokerRegistration {
            broker_id: id,
            existing_incarnation: existing.incarnation_id,
            incarnation: request.incarnation_id,
        });
    }
    let offset = i64::try_from(image.offset).unwrap_or(i64::MAX);
    let broker_epoch = existing.map_or(offset, |e| offset.max(e.epoch.saturating_add(1)));
    let mut records = vec![MetadataRecord::RegisterBroker {
        broker_id: id,
        incarnation_id: request.incarnation_id,
        broker_epoch,
        rack: request.rack,
        listeners: request.listeners,
        fenced: true,
    }];
    if existing.is_some() {
        records.extend(evict(image, &BTreeSet::from([id]), Leaving::Fenced));
    }
    tracker.touch(id, now_ms, 0);
    Ok(ControllerResult::new(records, RegistrationReply { broker_epoch }))
}

/// UnregisterBroker: forgets the broker; partitions it led move as when it is fenced. Its
/// replicas stay in the assignments, offline, until reassigned.
pub fn unregister_broker(
    image: &MetadataImage,
    tracker: &mut HeartbeatTracker,
    broker_id: BrokerId,
) -> Result<ControllerResult<()>, Error> {
    let reg = image
        .cluster()
        .broker(broker_id)
        .ok_or(Error::BrokerIdNotRegistered { broker_id })?;
    let mut records = evict(image, &BTreeSet::from([broker_id]), Leaving::Fenced);
    records.push(MetadataRecord::UnregisterBroker {
        broker_id,
        broker_epoch: reg.epoch,
    });
    tracker.remove(broker_id);
    Ok(ControllerResult::new(records, ()))
}

/// BrokerHeartbeat. Refuses unknown brokers and stale epochs; otherwise renews the session and:
/// - a fenced broker that has caught up (applied its own registration) and does not ask to stay
///   fenced is unfenced, and leaderless partitions whose ISR holds it get a leader again;
/// - a fenced broker that wants to shut down may do so at once;
/// - an active broker that wants to shut down enters controlled shutdown: it leaves every ISR
///   and its leaderships move to the next live ISR replica (those that cannot move stay);
/// - a broker in controlled shutdown whose committed image shows nothing more to move is told to
///   shut down, and is fenced (its remaining leaderships go leaderless, Kafka's SHUTDOWN_NOW);
/// - an active broker that asks to be fenced is fenced.
pub fn heartbeat(
    image: &MetadataImage,
    tracker: &mut HeartbeatTracker,
    request: BrokerHeartbeat,
    now_ms: u64,
) -> Result<ControllerResult<HeartbeatReply>, Error> {
    let id = request.broker_id;
    let reg = image
        .cluster()
        .broker(id)
        .ok_or(Error::BrokerIdNotRegistered { broker_id: id })?;
    if reg.epoch != request.broker_epoch {
        return Err(Error::StaleBrokerEpoch {
            broker_id: id,
            request_epoch: request.broker_epoch,
            current_epoch: reg.epoch,
        });
    }
    tracker.touch(id, now_ms, request.current_metadata_offset);
    let is_caught_up = request.current_metadata_offset >= reg.registered_at_offset;
    let reply = |is_fenced, should_shut_down| HeartbeatReply {
        is_caught_up,
        is_fenced,
        should_shut_down,
    };
    if reg.fenced {
        if request.want_shutdown {
            return Ok(ControllerResult::new(Vec::new(), reply(true, true)));
        }
        if request.want_fence || !is_caught_up {
            return Ok(ControllerResult::new(Vec::new(), reply(true, false)));
        }
        let mut records = vec![registration_change(reg, Some(false), None)];
        records.extend(restore(image, id));
        return Ok(ControllerResult::new(records, reply(false, false)));
    }
    if reg.in_controlled_shutdown {
        let moves = evict(image, &BTreeSet::from([id]), Leaving::ControlledShutdown);
        if moves.is_empty() {
            return Ok(ControllerResult::new(fence(image, reg), reply(true, true)));
        }
        return Ok(ControllerResult::new(moves, reply(false, false)));
    }
    if request.want_shutdown {
        let mut records = vec![registration_change(reg, None, Some(true))];
        records.extend(evict(image, &BTreeSet::from([id]), Leaving::ControlledShutdown));
        return Ok(ControllerResult::new(records, reply(false, false)));
    }
    if request.want_fence {
        return Ok(ControllerResult::new(fence(image, reg), reply(true, false)));
    }
    Ok(ControllerResult::new(Vec::new(), reply(false, false)))
}

/// Fences every unfenced broker whose session expired by `now_ms` and moves its leaderships
/// (all in one batch, so two brokers failing together never elect each other). A broker the
/// tracker has not heard from (e.g. right after a controller failover) gets a full session
/// from now. The response is the brokers fenced.
pub fn fence_expired_brokers(
    image: &MetadataImage,
    tracker: &mut HeartbeatTracker,
    now_ms: u64,
) -> ControllerResult<Vec<BrokerId>> {
    let mut expired = BTreeSet::new();
    let mut records = Vec::new();
    for reg in image.cluster().unfenced_brokers() {
        if tracker.last_contact_ms(reg.id).is_none() {
            tracker.touch(reg.id, now_ms, 0);
        } else if !tracker.has_live_session(reg.id, now_ms) {
            expired.insert(reg.id);
            records.push(registration_change(reg, Some(true), None));
        }
    }
    if !expired.is_empty() {
        records.extend(evict(image, &expired, Leaving::Fenced));
    }
    ControllerResult::new(records, expired.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{apply, endpoint, plain_cluster, state, with_topic};

    const SESSION: u64 = 9_000;

    fn request(id: i32, incarnation: Uuid) -> BrokerRegistrationRequest {
        BrokerRegistrationRequest {
            broker_id: BrokerId(id),
            incarnation_id: incarnation,
            rack: Some("r1".into()),
            listeners: vec![endpoint(9092)],
        }
    }

    fn beat(image: &MetadataImage, id: i32) -> BrokerHeartbeat {
        BrokerHeartbeat {
            broker_id: BrokerId(id),
            broker_epoch: image.cluster().broker(BrokerId(id)).expect("registered").epoch,
            current_metadata_offset: image.offset,
            want_fence: false,
            want_shutdown: false,
        }
    }

    /// Runs one heartbeat and applies its records.
    fn run(
        image: &MetadataImage,
        tracker: &mut HeartbeatTracker,
        request: BrokerHeartbeat,
        now: u64,
    ) -> (MetadataImage, HeartbeatReply) {
        let result = heartbeat(image, tracker, request, now).expect("heartbeat accepted");
        (apply(image, &result.records), result.response)
    }

    fn expire(image: &MetadataImage, tracker: &mut HeartbeatTracker, now: u64) -> (MetadataImage, Vec<i32>) {
        let result = fence_expired_brokers(image, tracker, now);
        (
            apply(image, &result.records),
            result.response.iter().map(|b| b.0).collect(),
        )
    }

    #[test]
    fn a_broker_registers_fenced_and_is_unfenced_once_caught_up() {
        let mut tracker = HeartbeatTracker::new(SESSION);
        let image = MetadataImage::default().apply(&[]).expect("applies");
        let result = register_broker(&image, &mut tracker, request(1, Uuid::new_v4()), 0).expect("registers");
        assert_eq!(result.response.broker_epoch, 1, "the image offset");
        let image = apply(&image, &result.records);
        let reg = image.cluster().broker(BrokerId(1)).expect("registered");
        assert!(reg.fenced, "a broker starts fenced");
        assert_eq!(reg.rack.as_deref(), Some("r1"));
        // Behind its own registration: stays fenced.
        let mut behind = beat(&image, 1);
        behind.current_metadata_offset = image.offset - 1;
        let (image, reply) = run(&image, &mut tracker, behind, 100);
        assert_eq!((reply.is_caught_up, reply.is_fenced), (false, true));
        assert!(image.cluster().broker(BrokerId(1)).expect("1").fenced);
        // Wants to stay fenced: stays fenced.
        let mut stay = beat(&image, 1);
        stay.want_fence = true;
        let (image, reply) = run(&image, &mut tracker, stay, 150);
        assert_eq!((reply.is_caught_up, reply.is_fenced), (true, true));
        // Caught up: unfenced.
        let (image, reply) = run(&image, &mut tracker, beat(&image, 1), 200);
        assert_eq!(
            (reply.is_caught_up, reply.is_fenced, reply.should_shut_down),
            (true, false, false)
        );
        assert!(image.cluster().is_active(BrokerId(1)));
        // Later heartbeats change nothing.
        let result = heartbeat(&image, &mut tracker, beat(&image, 1), 300).expect("accepted");
        assert!(result.records.is_empty());
        assert!(!result.response.is_fenced);
    }

    #[test]
    fn unknown_brokers_and_stale_epochs_are_refused() {
        let mut tracker = HeartbeatTracker::new(SESSION);
        let image = plain_cluster(1);
        let mut unknown = beat(&image, 1);
        unknown.broker_id = BrokerId(5);
        assert_eq!(
            heartbeat(&image, &mut tracker, unknown, 0),
            Err(Error::BrokerIdNotRegistered { broker_id: BrokerId(5) })
        );
        let mut stale = beat(&image, 1);
        stale.broker_epoch -= 1;
        assert_eq!(
            heartbeat(&image, &mut tracker, stale, 0),
            Err(Error::StaleBrokerEpoch {
                broker_id: BrokerId(1),
                request_epoch: 100,
                current_epoch: 101
            })
        );
        assert_eq!(
            unregister_broker(&image, &mut tracker, BrokerId(5)),
            Err(Error::BrokerIdNotRegistered { broker_id: BrokerId(5) })
        );
    }

    #[test]
    fn a_second_process_with_a_live_node_id_is_refused_until_the_session_expires() {
        let mut tracker = HeartbeatTracker::new(SESSION);
        let first = Uuid::new_v4();
        let image = MetadataImage::default();
        let result = register_broker(&image, &mut tracker, request(1, first), 0).expect("registers");
        let image = apply(&image, &result.records);
        let (image, _) = run(&image, &mut tracker, beat(&image, 1), 1_000);
        let intruder = Uuid::new_v4();
        assert_eq!(
            register_broker(&image, &mut tracker, request(1, intruder), 5_000),
            Err(Error::DuplicateBrokerRegistration {
                broker_id: BrokerId(1),
                existing_incarnation: first,
                incarnation: intruder
            })
        );
        // The same incarnation may register again (a retry), with a higher epoch.
        let old_epoch = image.cluster().broker(BrokerId(1)).expect("1").epoch;
        let retry = register_broker(&image, &mut tracker.clone(), request(1, first), 5_000).expect("retry accepted");
        assert!(retry.response.broker_epoch > old_epoch);
        // Once the first process's session has expired, a new incarnation (a restart) is accepted.
        let restart =
            register_broker(&image, &mut tracker, request(1, intruder), 1_000 + SESSION + 1).expect("restart");
        assert!(restart.response.broker_epoch > old_epoch);
        let image = apply(&image, &restart.records);
        let reg = image.cluster().broker(BrokerId(1)).expect("1");
        assert_eq!((reg.incarnation_id, reg.fenced), (intruder, true));
    }

    #[test]
    fn a_fenced_broker_has_no_live_session_so_its_restart_registers_at_once() {
        let mut tracker = HeartbeatTracker::new(SESSION);
        let image = crate::testing::set_fenced(&plain_cluster(1), 1, true);
        tracker.touch(BrokerId(1), 1_000, image.offset);
        let result = register_broker(&image, &mut tracker, request(1, Uuid::new_v4()), 1_500);
        assert!(result.is_ok(), "{result:?}");
    }

    #[test]
    fn a_restart_moves_the_old_incarnations_leaderships() {
        let mut tracker = HeartbeatTracker::new(SESSION);
        let (image, _) = with_topic(&plain_cluster(2), "t", &[&[1, 2]]);
        let result = register_broker(&image, &mut tracker, request(1, Uuid::new_v4()), 0).expect("registers");
        let image = apply(&image, &result.records);
        assert_eq!(state(&image, "t", 0), (2, vec![2], 1, 1));
    }

    #[test]
    fn an_expired_session_fences_and_leadership_moves_in_assignment_order() {
        let mut tracker = HeartbeatTracker::new(SESSION);
        let image = plain_cluster(3);
        let (image, _) = with_topic(&image, "t", &[&[1, 3, 2], &[2, 1, 3], &[1]]);
        for id in 1..=3 {
            tracker.touch(BrokerId(id), 0, image.offset);
        }
        // Brokers 2 and 3 keep heartbeating, 1 goes silent.
        let mut now = 0;
        let mut image = image;
        while now + 2_000 < SESSION {
            now += 2_000;
            for id in [2, 3] {
                image = run(&image, &mut tracker, beat(&image, id), now).0;
            }
            let (next, fenced) = expire(&image, &mut tracker, now);
            assert!(fenced.is_empty(), "nobody expired at {now}");
            image = next;
        }
        let (image, fenced) = expire(&image, &mut tracker, SESSION + 1);
        assert_eq!(fenced, [1]);
        assert!(image.cluster().broker(BrokerId(1)).expect("1").fenced);
        // t-0: next in assignment order among the ISR is 3 (not 2); 1 leaves the ISR.
        assert_eq!(state(&image, "t", 0), (3, vec![3, 2], 1, 1));
        // t-1: 2 keeps leading, 1 leaves the ISR; leader epoch unchanged.
        assert_eq!(state(&image, "t", 1), (2, vec![2, 3], 0, 1));
        // t-2: 1 was the only member: no leader, the ISR keeps it.
        assert_eq!(state(&image, "t", 2), (-1, vec![1], 1, 1));
        assert_eq!(
            image.offline_replicas(&image.topic("t").expect("t").partitions[2]),
            [BrokerId(1)]
        );
        // Expiring again changes nothing.
        assert!(
            fence_expired_brokers(&image, &mut tracker, SESSION + 2)
                .records
                .is_empty()
        );

        // Broker 1 comes back: after it catches up it is unfenced and t-2 has a leader again; the
        // partitions it lost stay with their new leaders until a preferred election.
        let (image, reply) = run(&image, &mut tracker, beat(&image, 1), SESSION + 3);
        assert!(!reply.is_fenced);
        assert_eq!(state(&image, "t", 2), (1, vec![1], 2, 2));
        assert_eq!(state(&image, "t", 0), (3, vec![3, 2], 1, 1));
    }

    #[test]
    fn brokers_failing_together_never_elect_each_other() {
        let mut tracker = HeartbeatTracker::new(SESSION);
        let (image, _) = with_topic(&plain_cluster(3), "t", &[&[1, 2, 3], &[1, 2]]);
        tracker.touch(BrokerId(1), 0, 0);
        tracker.touch(BrokerId(2), 0, 0);
        tracker.touch(BrokerId(3), SESSION, 0);
        let (image, fenced) = expire(&image, &mut tracker, SESSION + 1);
        assert_eq!(fenced, [1, 2]);
        assert_eq!(state(&image, "t", 0), (3, vec![3], 1, 1));
        // Both ISR members failed at once: no leader, and the ISR stays as it was.
        assert_eq!(state(&image, "t", 1), (-1, vec![1, 2], 1, 1));
    }

    #[test]
    fn an_activated_controller_treats_registered_brokers_as_live_for_one_session() {
        let image = plain_cluster(2);
        let mut tracker = HeartbeatTracker::new(SESSION);
        tracker.activate(&image, 1_000);
        let first = image.cluster().broker(BrokerId(1)).expect("1").incarnation_id;
        let intruder = Uuid::new_v4();
        assert_eq!(
            register_broker(&image, &mut tracker, request(1, intruder), 2_000),
            Err(Error::DuplicateBrokerRegistration {
                broker_id: BrokerId(1),
                existing_incarnation: first,
                incarnation: intruder
            })
        );
        assert!(expire(&image, &mut tracker, 1_000 + SESSION).1.is_empty());
        assert_eq!(expire(&image, &mut tracker, 1_001 + SESSION).1, [1, 2]);
    }

    #[test]
    fn a_controller_that_becomes_active_again_forgets_the_contacts_of_its_last_leadership() {
        let image = plain_cluster(2);
        let mut tracker = HeartbeatTracker::new(SESSION);
        tracker.activate(&image, 1_000);
        // Another node led for a long time; this one wins leadership back at 100_000.
        tracker.activate(&image, 100_000);
        assert!(expire(&image, &mut tracker, 100_000 + SESSION).1.is_empty());
        assert_eq!(expire(&image, &mut tracker, 100_001 + SESSION).1, [1, 2]);
    }

    #[test]
    fn a_new_controller_gives_unknown_brokers_a_full_session() {
        let mut tracker = HeartbeatTracker::new(SESSION);
        let image = plain_cluster(2);
        assert!(expire(&image, &mut tracker, 50_000).1.is_empty());
        assert!(expire(&image, &mut tracker, 50_000 + SESSION).1.is_empty());
        assert_eq!(expire(&image, &mut tracker, 50_001 + SESSION).1, [1, 2]);
    }

    #[test]
    fn controlled_shutdown_moves_leaderships_then_lets_the_broker_go() {
        let mut tracker = HeartbeatTracker::new(SESSION);
        let (image, _) = with_topic(&plain_cluster(3), "t", &[&[1, 2, 3], &[2, 1], &[1], &[3, 2]]);
        let mut down = beat(&image, 1);
        down.want_shutdown = true;
        let (image, reply) = run(&image, &mut tracker, down, 0);
        assert_eq!((reply.is_fenced, reply.should_shut_down), (false, false));
        let reg = image.cluster().broker(BrokerId(1)).expect("1");
        assert!(reg.in_controlled_shutdown && !reg.fenced);
        assert_eq!(state(&image, "t", 0), (2, vec![2, 3], 1, 1));
        assert_eq!(
            state(&image, "t", 1),
            (2, vec![2], 0, 1),
            "it leaves the ISRs it follows in"
        );
        assert_eq!(
            state(&image, "t", 2),
            (1, vec![1], 0, 0),
            "nobody else can lead: it keeps leading"
        );
        assert_eq!(state(&image, "t", 3), (3, vec![3, 2], 0, 0));
        // New leaders are never chosen among brokers in controlled shutdown.
        let (image2, _) = with_topic(&image, "u", &[&[2, 1]]);
        let two = image2.cluster().broker(BrokerId(2)).expect("2").clone();
        let fenced2 = fence(&image2, &two);
        assert_eq!(state(&apply(&image2, &fenced2), "u", 0).0, -1);
        // The next heartbeat finds nothing more to move: shut down now, fenced.
        let (image, reply) = run(&image, &mut tracker, down, 2_000);
        assert_eq!((reply.is_fenced, reply.should_shut_down), (true, true));
        assert!(image.cluster().broker(BrokerId(1)).expect("1").fenced);
        assert_eq!(state(&image, "t", 2), (-1, vec![1], 1, 1));
        // A fenced broker asking to shut down may go at once.
        let (_, reply) = run(&image, &mut tracker, down, 4_000);
        assert_eq!((reply.is_fenced, reply.should_shut_down), (true, true));
    }

    #[test]
    fn want_fence_fences_an_active_broker() {
        let mut tracker = HeartbeatTracker::new(SESSION);
        let (image, _) = with_topic(&plain_cluster(2), "t", &[&[1, 2]]);
        let mut fence_me = beat(&image, 1);
        fence_me.want_fence = true;
        let (image, reply) = run(&image, &mut tracker, fence_me, 0);
        assert!(reply.is_fenced);
        assert_eq!(state(&image, "t", 0), (2, vec![2], 1, 1));
    }

    #[test]
    fn unregistering_moves_leaderships_and_forgets_the_broker() {
        let mut tracker = HeartbeatTracker::new(SESSION);
        let (image, _) = with_topic(&plain_cluster(2), "t", &[&[1, 2]]);
        let result = unregister_broker(&image, &mut tracker, BrokerId(1)).expect("unregisters");
        let image = apply(&image, &result.records);
        assert!(image.cluster().broker(BrokerId(1)).is_none());
        assert_eq!(state(&image, "t", 0), (2, vec![2], 1, 1));
        assert_eq!(
            image.offline_replicas(&image.topic("t").expect("t").partitions[0]),
            [BrokerId(1)]
        );
    }
}
