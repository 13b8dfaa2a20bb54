//! The consumer group protocol of KIP-848 (ConsumerGroupHeartbeat): the broker owns the
//! assignment. A change of membership, subscription or topic metadata bumps the group epoch; the
//! server-side assignor (uniform or range) computes a target assignment for that epoch; each
//! member is reconciled towards its target incrementally: partitions it must give up are revoked
//! first (its epoch stays until it confirms), and a partition is handed to its new owner only
//! once no other member still owns it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fjord_protocol::kafka_protocol::error::ResponseError;

use super::classic::{ClassicMemberState, JoinResponse, SyncResponse};
use super::records::{
    ClassicMemberMetadata, ConsumerAssignmentValue, ConsumerGroupValue, ConsumerMemberValue, RecordKey,
    TopicIdPartitions,
};
use super::{GroupConfig, OffsetsRecord};

/// A topic partition by name.
pub type TopicPartition = (String, i32);

/// Topics as the assignor sees them: name → partition count.
pub type TopicCounts = BTreeMap<String, i32>;

/// The server-side assignors a client may name.
pub const ASSIGNORS: [&str; 2] = ["uniform", "range"];

/// A ConsumerGroupHeartbeat request, decoded (topic ids already resolved to names).
#[derive(Debug, Clone, Default)]
pub struct HeartbeatParams {
    pub member_id: String,
    pub member_epoch: i32,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub rebalance_timeout: Option<Duration>,
    pub subscribed_topics: Option<Vec<String>>,
    pub subscribed_regex: Option<String>,
    pub server_assignor: Option<String>,
    pub owned: Option<BTreeSet<TopicPartition>>,
    pub client_id: String,
    pub client_host: String,
}

/// What a ConsumerGroupHeartbeat is answered with.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HeartbeatResponse {
    pub error: Option<(ResponseError, String)>,
    pub member_id: String,
    pub member_epoch: i32,
    /// `None` = unchanged since the last response.
    pub assignment: Option<BTreeSet<TopicPartition>>,
}

impl HeartbeatResponse {
    fn error(error: ResponseError, message: impl Into<String>, member_id: &str) -> HeartbeatResponse {
        HeartbeatResponse {
            error: Some((error, message.into())),
            member_id: member_id.to_string(),
            member_epoch: -1,
            assignment: None,
        }
    }
}

/// One member, as ConsumerGroupDescribe reports it.
#[derive(Debug, Clone)]
pub struct MemberView {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub rack_id: Option<String>,
    pub member_epoch: i32,
    pub client_id: String,
    pub client_host: String,
    pub subscribed_topics: Vec<String>,
    pub subscribed_regex: Option<String>,
    pub assignment: BTreeSet<TopicPartition>,
    pub target: BTreeSet<TopicPartition>,
    /// Speaks the classic protocol (JoinGroup/SyncGroup/Heartbeat) in this consumer group.
    pub classic: bool,
}

/// What a member that speaks the classic protocol in a consumer group has on top of a
/// consumer-protocol member (Kafka's "classic members in a consumer group").
#[derive(Debug, Clone)]
struct ClassicMember {
    session_timeout: Duration,
    /// (protocol name, subscription metadata) from its last JoinGroup.
    protocols: Vec<(String, Bytes)>,
    /// Told to rejoin: it must send JoinGroup by then (Kafka's join timeout).
    join_deadline: Option<Instant>,
    /// After its JoinGroup it must send SyncGroup by then (Kafka's sync timeout).
    sync_deadline: Option<Instant>,
}

impl ClassicMember {
    fn metadata(&self) -> Option<ClassicMemberMetadata> {
        Some(ClassicMemberMetadata {
            session_timeout_ms: self.session_timeout.as_millis().min(i32::MAX as u128) as i32,
            protocols: self.protocols.clone(),
        })
    }
}

/// A classic member's JoinGroup to a consumer group, decoded.
#[derive(Debug, Clone)]
pub struct ClassicJoin {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    pub version: i16,
}

#[derive(Debug)]
struct Member {
    member_id: String,
    instance_id: Option<String>,
    rack_id: Option<String>,
    client_id: String,
    client_host: String,
    epoch: i32,
    previous_epoch: i32,
    subscribed: Vec<String>,
    regex: Option<String>,
    rebalance_timeout: Duration,
    /// Partitions the member owns and may consume.
    assigned: BTreeSet<TopicPartition>,
    /// Partitions it has been told to give up and has not confirmed yet.
    revoking: BTreeSet<TopicPartition>,
    revoke_deadline: Option<Instant>,
    session_deadline: Instant,
    /// The assignment last sent, to answer `None` when nothing changed.
    last_sent: Option<BTreeSet<TopicPartition>>,
    /// Left with epoch -2 (static member, may come back under the same instance id).
    left_static: bool,
    /// The server assignor this member asked for, if any.
    server_assignor: Option<String>,
    /// Set while the member speaks the classic protocol.
    classic: Option<ClassicMember>,
}

/// The epoch of a static member that left and may come back (Kafka's
/// `LEAVE_GROUP_STATIC_MEMBER_EPOCH`).
const LEFT_STATIC_EPOCH: i32 = -2;

/// Kafka's `MemberState` values as stored in a member's assignment record.
const STATE_STABLE: i8 = 0;
const STATE_UNREVOKED_PARTITIONS: i8 = 1;
const STATE_UNRELEASED_PARTITIONS: i8 = 2;

/// A member's epochs and partitions as stored, by topic name (ids are resolved when encoding).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredAssignment {
    pub member_epoch: i32,
    pub previous_member_epoch: i32,
    pub state: i8,
    pub assigned: BTreeSet<TopicPartition>,
    pub revoking: BTreeSet<TopicPartition>,
}

/// A member as restored from `__consumer_offsets`.
#[derive(Debug, Clone)]
pub struct StoredMember {
    pub member_id: String,
    pub metadata: ConsumerMemberValue,
    pub assignment: StoredAssignment,
}

/// What `__consumer_offsets` holds for a group, so that only changes are written.
#[derive(Debug, Default)]
struct Persisted {
    epoch: Option<i32>,
    members: BTreeMap<String, (ConsumerMemberValue, StoredAssignment)>,
}

/// A KIP-848 consumer group.
#[derive(Debug, Default)]
pub struct ConsumerGroup {
    pub group_epoch: i32,
    pub assignment_epoch: i32,
    pub assignor: String,
    members: BTreeMap<String, Member>,
    target: HashMap<String, BTreeSet<TopicPartition>>,
    /// Partition counts of subscribed topics when the target was computed.
    topics_seen: TopicCounts,
    persisted: Persisted,
    /// A consumer-protocol member left or was removed since the last downgrade check.
    consumer_member_left: bool,
}

impl ConsumerGroup {
    pub fn new() -> ConsumerGroup {
        ConsumerGroup {
            assignor: ASSIGNORS[0].to_string(),
            ..ConsumerGroup::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.members.values().all(|m| m.left_static)
    }

    /// Every topic some member subscribes to by name.
    pub fn subscribed_topics(&self) -> BTreeSet<String> {
        self.members
            .values()
            .flat_map(|m| m.subscribed.iter().cloned())
            .collect()
    }

    /// Whether some member subscribes to `topic`, by name or by regular expression.
    pub fn is_subscribed(&self, topic: &str) -> bool {
        self.members.values().any(|m| {
            m.subscribed.iter().any(|t| t == topic)
                || m.regex
                    .as_deref()
                    .and_then(compile)
                    .is_some_and(|re| re.is_match(topic))
        })
    }

    /// Regular expressions members subscribe with.
    pub fn subscribed_regexes(&self) -> Vec<String> {
        self.members.values().filter_map(|m| m.regex.clone()).collect()
    }

    /// Kafka's consumer group state names.
    pub fn state_name(&self) -> &'static str {
        if self.is_empty() {
            "Empty"
        } else if self.group_epoch > self.assignment_epoch {
            "Assigning"
        } else if self
            .members
            .values()
            .any(|m| m.epoch != self.assignment_epoch || !m.revoking.is_empty() || m.assigned != self.target_of(m))
        {
            "Reconciling"
        } else {
            "Stable"
        }
    }

    fn target_of(&self, m: &Member) -> BTreeSet<TopicPartition> {
        self.target.get(&m.member_id).cloned().unwrap_or_default()
    }

    pub fn describe_members(&self) -> Vec<MemberView> {
        self.members
            .values()
            .filter(|m| !m.left_static)
            .map(|m| MemberView {
                member_id: m.member_id.clone(),
                instance_id: m.instance_id.clone(),
                rack_id: m.rack_id.clone(),
                member_epoch: m.epoch,
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                subscribed_topics: m.subscribed.clone(),
                subscribed_regex: m.regex.clone(),
                assignment: m.assigned.clone(),
                target: self.target_of(m),
                classic: m.classic.is_some(),
            })
            .collect()
    }

    /// Checks an OffsetCommit's (or OffsetFetch's) member id and epoch.
    pub fn validate_member_epoch(
        &self,
        member_id: &str,
        epoch: i32,
        stale_error: ResponseError,
    ) -> Result<(), ResponseError> {
        if member_id.is_empty() && epoch < 0 {
            return Ok(());
        }
        let Some(m) = self.members.get(member_id).filter(|m| !m.left_static) else {
            return Err(ResponseError::UnknownMemberId);
        };
        if epoch != m.epoch {
            return Err(stale_error);
        }
        Ok(())
    }

    /// ConsumerGroupHeartbeat. `topics` gives the partition count of every existing topic.
    pub fn heartbeat(
        &mut self,
        p: HeartbeatParams,
        topics: &TopicCounts,
        config: &GroupConfig,
        version: i16,
        now: Instant,
    ) -> HeartbeatResponse {
        if p.member_epoch == -1 || p.member_epoch == -2 {
            return self.leave(&p.member_id, p.member_epoch);
        }
        if let Some(assignor) = &p.server_assignor {
            if !ASSIGNORS.contains(&assignor.as_str()) {
                return HeartbeatResponse::error(
                    ResponseError::UnsupportedAssignor,
                    format!("server assignor {assignor:?} is not supported; use one of {ASSIGNORS:?}"),
                    &p.member_id,
                );
            }
            self.assignor = assignor.clone();
        }
        if let Some(m) = self.members.get_mut(&p.member_id)
            && p.server_assignor.is_some()
        {
            m.server_assignor = p.server_assignor.clone();
        }
        let member_id = if p.member_epoch == 0 {
            match self.join(&p, version, config, now) {
                Ok(id) => id,
                Err(response) => return response,
            }
        } else {
            let Some(m) = self.members.get_mut(&p.member_id).filter(|m| !m.left_static) else {
                return HeartbeatResponse::error(ResponseError::UnknownMemberId, "unknown member id", &p.member_id);
            };
            if m.classic.is_some() {
                return HeartbeatResponse::error(
                    ResponseError::UnknownMemberId,
                    format!("member {} uses the classic protocol", p.member_id),
                    &p.member_id,
                );
            }
            let lost_response = p.member_epoch == m.previous_epoch
                && p.owned
                    .as_ref()
                    .is_some_and(|o| o.is_subset(&m.assigned.union(&m.revoking).cloned().collect()));
            if p.member_epoch != m.epoch && !lost_response {
                return HeartbeatResponse::error(
                    ResponseError::FencedMemberEpoch,
                    format!("member epoch {} is not the current epoch {}", p.member_epoch, m.epoch),
                    &p.member_id,
                );
            }
            p.member_id.clone()
        };
        let m = self.members.get_mut(&member_id).expect("joined or checked");
        m.session_deadline = now + config.consumer_session_timeout;
        if let Some(t) = p.rebalance_timeout {
            m.rebalance_timeout = t;
        }
        if p.rack_id.is_some() {
            m.rack_id = p.rack_id.clone();
        }
        let mut bump = p.member_epoch == 0;
        if let Some(topics) = &p.subscribed_topics {
            let mut sorted = topics.clone();
            sorted.sort();
            sorted.dedup();
            if sorted != m.subscribed {
                m.subscribed = sorted;
                bump = true;
            }
        }
        if p.subscribed_regex.is_some() && p.subscribed_regex != m.regex {
            m.regex = p.subscribed_regex.clone().filter(|r| !r.is_empty());
            bump = true;
        }
        // Topics created, deleted or grown since the last target also need a new one.
        let relevant = self.relevant_topics(topics);
        if relevant != self.topics_seen {
            bump = true;
        }
        if bump {
            self.group_epoch += 1;
        }
        if self.group_epoch > self.assignment_epoch {
            self.compute_target(&relevant);
        }
        self.reconcile(&member_id, p.owned.as_ref(), now);
        let m = self.members.get_mut(&member_id).expect("present");
        let assignment = m.assigned.clone();
        let send = p.member_epoch == 0 || m.last_sent.as_ref() != Some(&assignment);
        if send {
            m.last_sent = Some(assignment.clone());
        }
        HeartbeatResponse {
            error: None,
            member_id,
            member_epoch: m.epoch,
            assignment: send.then_some(assignment),
        }
    }

    fn join(
        &mut self,
        p: &HeartbeatParams,
        version: i16,
        config: &GroupConfig,
        now: Instant,
    ) -> Result<String, HeartbeatResponse> {
        let member_id = if p.member_id.is_empty() {
            if version >= 1 {
                return Err(HeartbeatResponse::error(
                    ResponseError::InvalidRequest,
                    "member id must be set by the client from version 1",
                    "",
                ));
            }
            uuid::Uuid::new_v4().to_string()
        } else {
            p.member_id.clone()
        };
        if p.subscribed_topics.is_none() && p.subscribed_regex.is_none() {
            return Err(HeartbeatResponse::error(
                ResponseError::InvalidRequest,
                "a joining member must send its subscription",
                &member_id,
            ));
        }
        let mut carried = BTreeSet::new();
        if let Some(instance) = &p.instance_id {
            let holder = self
                .members
                .values()
                .find(|m| m.instance_id.as_deref() == Some(instance.as_str()) && m.member_id != member_id)
                .map(|m| (m.member_id.clone(), m.left_static));
            match holder {
                Some((_, false)) => {
                    return Err(HeartbeatResponse::error(
                        ResponseError::UnreleasedInstanceId,
                        format!("instance id {instance} is still used by another member"),
                        &member_id,
                    ));
                }
                Some((old, true)) => {
                    // A static member came back: it takes over the old member's partitions.
                    if let Some(old) = self.members.remove(&old) {
                        carried = old.assigned;
                        if let Some(t) = self.target.remove(&old.member_id) {
                            self.target.insert(member_id.clone(), t);
                        }
                    }
                }
                None => {}
            }
        }
        let rebalance_timeout = p.rebalance_timeout.unwrap_or(Duration::from_secs(300));
        // A known member rejoining with epoch 0 lost its state: it starts from nothing.
        self.members.insert(
            member_id.clone(),
            Member {
                member_id: member_id.clone(),
                instance_id: p.instance_id.clone(),
                rack_id: p.rack_id.clone(),
                client_id: p.client_id.clone(),
                client_host: p.client_host.clone(),
                epoch: 0,
                previous_epoch: -1,
                subscribed: Vec::new(),
                regex: None,
                rebalance_timeout,
                assigned: carried,
                revoking: BTreeSet::new(),
                revoke_deadline: None,
                session_deadline: now + config.consumer_session_timeout,
                last_sent: None,
                left_static: false,
                server_assignor: p.server_assignor.clone(),
                classic: None,
            },
        );
        tracing::info!(member = %member_id, "consumer group member joined");
        Ok(member_id)
    }

    fn leave(&mut self, member_id: &str, epoch: i32) -> HeartbeatResponse {
        let Some(m) = self.members.get_mut(member_id) else {
            return HeartbeatResponse::error(ResponseError::UnknownMemberId, "unknown member id", member_id);
        };
        if epoch == -2 && m.instance_id.is_some() {
            // Static leave: the instance may come back and take its partitions over; until
            // then nobody else gets them (Kafka keeps them for the session timeout).
            m.left_static = true;
            m.epoch = LEFT_STATIC_EPOCH;
        } else {
            if let Some(m) = self.members.remove(member_id) {
                self.consumer_member_left |= m.classic.is_none();
            }
            self.target.remove(member_id);
            self.group_epoch += 1;
        }
        tracing::info!(member = %member_id, epoch, "consumer group member left");
        HeartbeatResponse {
            error: None,
            member_id: member_id.to_string(),
            member_epoch: epoch,
            assignment: None,
        }
    }

    /// Removes a member whose session expired or who did not revoke in time.
    fn fence(&mut self, member_id: &str, why: &str) {
        if let Some(m) = self.members.remove(member_id) {
            self.consumer_member_left |= m.classic.is_none();
            tracing::info!(member = %member_id, why, "consumer group member removed");
            self.target.remove(member_id);
            self.group_epoch += 1;
        }
    }

    /// Expires sessions and revocations whose time is up; true if a member was removed.
    pub fn tick(&mut self, now: Instant) -> bool {
        let expired: Vec<(String, &'static str)> = self
            .members
            .values()
            .filter_map(|m| {
                let classic_deadline = |d: Option<Instant>| d.is_some_and(|d| now >= d);
                if now >= m.session_deadline {
                    Some((m.member_id.clone(), "session expired"))
                } else if m.classic.as_ref().is_some_and(|c| classic_deadline(c.join_deadline)) {
                    Some((
                        m.member_id.clone(),
                        "classic member did not rejoin within the rebalance timeout",
                    ))
                } else if m.classic.as_ref().is_some_and(|c| classic_deadline(c.sync_deadline)) {
                    Some((
                        m.member_id.clone(),
                        "classic member did not sync within the rebalance timeout",
                    ))
                } else if m.revoke_deadline.is_some_and(|d| now >= d) && !m.revoking.is_empty() {
                    Some((
                        m.member_id.clone(),
                        "partitions not revoked within the rebalance timeout",
                    ))
                } else {
                    None
                }
            })
            .collect();
        let removed = !expired.is_empty();
        for (id, why) in expired {
            self.fence(&id, why);
        }
        removed
    }

    /// Whether a JoinGroup's protocols can join: the consumer protocol type, and a protocol
    /// name every other classic member also supports (Kafka's `supportsClassicProtocols`).
    fn supports_classic(&self, member_id: &str, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if protocol_type != CONSUMER_PROTOCOL_TYPE || protocols.is_empty() {
            return false;
        }
        protocols.iter().any(|(name, _)| {
            self.members
                .values()
                .filter(|m| m.member_id != member_id)
                .filter_map(|m| m.classic.as_ref())
                .all(|c| c.protocols.iter().any(|(n, _)| n == name))
        })
    }

    /// The member a classic request names (by instance id when it has one), checked as
    /// Kafka's `validateConsumerGroupMember` and `throwIfMemberDoesNotUseClassicProtocol`.
    fn classic_member(&self, member_id: &str, instance_id: Option<&str>) -> Result<&Member, ResponseError> {
        let m = match instance_id {
            None => self.members.get(member_id),
            Some(instance) => {
                let holder = self
                    .members
                    .values()
                    .find(|m| m.instance_id.as_deref() == Some(instance) && !m.left_static);
                match holder {
                    None => return Err(ResponseError::UnknownMemberId),
                    Some(h) if h.member_id != member_id => return Err(ResponseError::FencedInstanceId),
                    Some(h) => Some(h),
                }
            }
        };
        match m {
            Some(m) if m.classic.is_some() && !m.left_static => Ok(m),
            _ => Err(ResponseError::UnknownMemberId),
        }
    }

    /// Whether some partition of the member's target is still owned (or being revoked) by
    /// another member (Kafka's `waitingOnUnreleasedPartition`).
    fn waiting_on_unreleased(&self, m: &Member) -> bool {
        let target = self.target_of(m);
        let missing: Vec<&TopicPartition> = target.difference(&m.assigned).collect();
        !missing.is_empty()
            && self.members.values().filter(|o| o.member_id != m.member_id).any(|o| {
                missing
                    .iter()
                    .any(|p| o.assigned.contains(*p) || o.revoking.contains(*p))
            })
    }

    /// JoinGroup from a classic member of this consumer group (Kafka's
    /// `classicGroupJoinToConsumerGroup`): the member's subscription and owned partitions come
    /// from its consumer-protocol metadata; it is reconciled like any member and answered at
    /// once, as a follower, with its member epoch as the generation. Its SyncGroup then gets its
    /// assignment from the group's.
    pub fn classic_join(
        &mut self,
        p: ClassicJoin,
        topics: &TopicCounts,
        config: &GroupConfig,
        now: Instant,
    ) -> JoinResponse {
        let fail = |error: ResponseError, member_id: &str| JoinResponse {
            error: Some(error),
            generation: -1,
            member_id: member_id.to_string(),
            ..JoinResponse::default()
        };
        let unknown = p.member_id.is_empty();
        let mut member_id = if unknown {
            uuid::Uuid::new_v4().to_string()
        } else {
            p.member_id.clone()
        };
        if !self.supports_classic(&member_id, &p.protocol_type, &p.protocols) {
            return fail(ResponseError::InconsistentGroupProtocol, &p.member_id);
        }
        let live = self.members.values().filter(|m| !m.left_static).count();
        if !self.members.contains_key(&member_id) && live >= config.max_size {
            return fail(ResponseError::GroupMaxSizeReached, &p.member_id);
        }
        if unknown && p.instance_id.is_none() && p.version >= 4 {
            // KIP-394: hand out the id; the member joins for real with a second JoinGroup.
            return fail(ResponseError::MemberIdRequired, &member_id);
        }
        let Some(subscription) = decode_subscription(&p.protocols[0].1) else {
            return fail(ResponseError::InconsistentGroupProtocol, &p.member_id);
        };
        let mut carried = None;
        if let Some(instance) = &p.instance_id {
            let holder = self
                .members
                .values()
                .find(|m| m.instance_id.as_deref() == Some(instance.as_str()))
                .map(|m| m.member_id.clone());
            match holder {
                Some(h) if h != member_id && !unknown => {
                    return fail(ResponseError::FencedInstanceId, &p.member_id);
                }
                Some(h) if h != member_id => {
                    // A static member came back with a new id: it replaces the old one.
                    if let Some(old) = self.members.remove(&h) {
                        carried = Some((old.epoch, old.previous_epoch, old.assigned, old.revoking));
                        if let Some(t) = self.target.remove(&h) {
                            self.target.insert(member_id.clone(), t);
                        }
                    }
                }
                Some(h) => member_id = h,
                None => {}
            }
        }
        let classic = ClassicMember {
            session_timeout: p.session_timeout,
            protocols: p.protocols.clone(),
            join_deadline: None,
            sync_deadline: Some(now + p.rebalance_timeout),
        };
        let mut bump = false;
        match self.members.get_mut(&member_id) {
            Some(m) => {
                if m.subscribed != subscription.topics {
                    m.subscribed = subscription.topics.clone();
                    bump = true;
                }
                m.client_id = p.client_id.clone();
                m.client_host = p.client_host.clone();
                m.rebalance_timeout = p.rebalance_timeout;
                m.instance_id = p.instance_id.clone();
                if subscription.rack.is_some() {
                    m.rack_id = subscription.rack.clone();
                }
                m.left_static = false;
                m.classic = Some(classic);
            }
            None => {
                let (epoch, previous_epoch, assigned, revoking) =
                    carried.unwrap_or((0, -1, BTreeSet::new(), BTreeSet::new()));
                self.members.insert(
                    member_id.clone(),
                    Member {
                        member_id: member_id.clone(),
                        instance_id: p.instance_id.clone(),
                        rack_id: subscription.rack.clone(),
                        client_id: p.client_id.clone(),
                        client_host: p.client_host.clone(),
                        epoch,
                        previous_epoch,
                        subscribed: subscription.topics.clone(),
                        regex: None,
                        rebalance_timeout: p.rebalance_timeout,
                        revoke_deadline: (!revoking.is_empty()).then(|| now + p.rebalance_timeout),
                        assigned,
                        revoking,
                        session_deadline: now,
                        last_sent: None,
                        left_static: false,
                        server_assignor: None,
                        classic: Some(classic),
                    },
                );
                bump = true;
                tracing::info!(member = %member_id, "classic member joined the consumer group");
            }
        }
        let relevant = self.relevant_topics(topics);
        if bump || relevant != self.topics_seen {
            self.group_epoch += 1;
        }
        if self.group_epoch > self.assignment_epoch {
            self.compute_target(&relevant);
        }
        self.reconcile(&member_id, Some(&subscription.owned), now);
        let m = self.members.get_mut(&member_id).expect("present");
        m.session_deadline = now + p.session_timeout;
        JoinResponse {
            error: None,
            generation: m.epoch,
            protocol_type: Some(CONSUMER_PROTOCOL_TYPE.to_string()),
            protocol_name: Some(p.protocols[0].0.clone()),
            leader: String::new(),
            member_id,
            members: Vec::new(),
            skip_assignment: false,
        }
    }

    /// SyncGroup from a classic member (Kafka's `classicGroupSyncToConsumerGroup`): its current
    /// assignment, encoded in the consumer protocol, or REBALANCE_IN_PROGRESS if the group
    /// moved on since its JoinGroup.
    pub fn classic_sync(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        now: Instant,
    ) -> SyncResponse {
        let fail = |error: ResponseError| SyncResponse {
            error: Some(error),
            ..SyncResponse::default()
        };
        let (epoch, revoking, protocols) = match self.classic_member(member_id, instance_id) {
            Ok(m) => (
                m.epoch,
                !m.revoking.is_empty(),
                m.classic.as_ref().map(|c| c.protocols.clone()).unwrap_or_default(),
            ),
            Err(e) => return fail(e),
        };
        if generation != epoch {
            return fail(ResponseError::IllegalGeneration);
        }
        let first = protocols.first().map(|(n, _)| n.as_str());
        if protocol_type.is_some_and(|t| t != CONSUMER_PROTOCOL_TYPE) || protocol_name.is_some_and(|n| Some(n) != first)
        {
            return fail(ResponseError::InconsistentGroupProtocol);
        }
        let group_epoch = self.group_epoch;
        let m = self.members.get_mut(member_id).expect("checked");
        let classic = m.classic.as_mut().expect("checked");
        if group_epoch > epoch && !revoking {
            classic.join_deadline.get_or_insert(now + m.rebalance_timeout);
            return fail(ResponseError::RebalanceInProgress);
        }
        classic.sync_deadline = None;
        m.session_deadline = now + classic.session_timeout;
        let version = protocols.first().map_or(0, |(_, meta)| metadata_version(meta));
        m.last_sent = Some(m.assigned.clone());
        SyncResponse {
            error: None,
            protocol_type: Some(CONSUMER_PROTOCOL_TYPE.to_string()),
            protocol_name: first.map(String::from),
            assignment: encode_assignment(&m.assigned, version),
        }
    }

    /// Heartbeat from a classic member (Kafka's `classicGroupHeartbeatToConsumerGroup`):
    /// REBALANCE_IN_PROGRESS when it must rejoin: the group epoch moved past its own, it has
    /// partitions to revoke, or partitions it waits for have been released.
    pub fn classic_heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: Instant,
    ) -> Option<ResponseError> {
        let rejoin = match self.classic_member(member_id, instance_id) {
            Err(e) => return Some(e),
            Ok(m) if m.epoch != generation => return Some(ResponseError::IllegalGeneration),
            Ok(m) => {
                m.epoch < self.group_epoch
                    || !m.revoking.is_empty()
                    || (m.assigned != self.target_of(m) && !self.waiting_on_unreleased(m))
            }
        };
        let m = self.members.get_mut(member_id).expect("checked");
        let classic = m.classic.as_mut().expect("checked");
        m.session_deadline = now + classic.session_timeout;
        if rejoin {
            classic.join_deadline.get_or_insert(now + m.rebalance_timeout);
            return Some(ResponseError::RebalanceInProgress);
        }
        None
    }

    /// LeaveGroup of one classic member identity (Kafka's `classicGroupLeaveToConsumerGroup`);
    /// a member using the consumer protocol cannot be removed this way.
    pub fn classic_leave(&mut self, member_id: &str, instance_id: Option<&str>) -> Option<ResponseError> {
        let id = match instance_id {
            Some(instance) => {
                let holder = self
                    .members
                    .values()
                    .find(|m| m.instance_id.as_deref() == Some(instance) && !m.left_static);
                match holder {
                    None => return Some(ResponseError::UnknownMemberId),
                    Some(h) if !member_id.is_empty() && h.member_id != member_id => {
                        return Some(ResponseError::FencedInstanceId);
                    }
                    Some(h) if !member_id.is_empty() && h.classic.is_none() => {
                        return Some(ResponseError::UnknownMemberId);
                    }
                    Some(h) => h.member_id.clone(),
                }
            }
            None => match self.classic_member(member_id, None) {
                Ok(m) => m.member_id.clone(),
                Err(e) => return Some(e),
            },
        };
        if let Some(m) = self.members.remove(&id) {
            self.consumer_member_left |= m.classic.is_none();
        }
        self.target.remove(&id);
        self.group_epoch += 1;
        tracing::info!(member = %id, "classic member left the consumer group");
        None
    }

    /// A consumer group made from a live classic group (online upgrade, as Kafka's
    /// `ConsumerGroup.fromClassicGroup`): group and assignment epoch = the generation, every
    /// member Stable at that epoch with the partitions of its last assignment as both its
    /// current and target assignment, subscriptions from its consumer-protocol metadata.
    /// Fails if a member's metadata or assignment does not decode.
    pub fn from_classic(
        generation: i32,
        protocol: Option<&str>,
        members: Vec<ClassicMemberState>,
        topics: &TopicCounts,
        now: Instant,
    ) -> Result<ConsumerGroup, String> {
        let mut group = ConsumerGroup::new();
        group.group_epoch = generation;
        group.assignment_epoch = generation;
        for m in members {
            let metadata = protocol
                .and_then(|p| m.protocols.iter().find(|(n, _)| n == p))
                .or(m.protocols.first())
                .map(|(_, meta)| meta.clone())
                .unwrap_or_default();
            let subscription = decode_subscription(&metadata)
                .ok_or_else(|| format!("member {} has no readable consumer subscription", m.member_id))?;
            let assigned = decode_assignment(&m.assignment)
                .ok_or_else(|| format!("member {} has no readable consumer assignment", m.member_id))?;
            group.target.insert(m.member_id.clone(), assigned.clone());
            group.members.insert(
                m.member_id.clone(),
                Member {
                    member_id: m.member_id.clone(),
                    instance_id: m.instance_id,
                    rack_id: subscription.rack,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    epoch: generation,
                    previous_epoch: generation,
                    subscribed: subscription.topics,
                    regex: None,
                    rebalance_timeout: m.rebalance_timeout,
                    assigned,
                    revoking: BTreeSet::new(),
                    revoke_deadline: None,
                    session_deadline: now + m.session_timeout,
                    last_sent: None,
                    left_static: false,
                    server_assignor: None,
                    classic: Some(ClassicMember {
                        session_timeout: m.session_timeout,
                        protocols: m.protocols,
                        join_deadline: None,
                        sync_deadline: None,
                    }),
                },
            );
        }
        group.topics_seen = group.relevant_topics(topics);
        Ok(group)
    }

    /// After a consumer-protocol member left or was removed: when every remaining member speaks
    /// the classic protocol and `allowed` (`group.consumer.migration.policy`), the members to
    /// make a classic group of, each with its current assignment (Kafka's
    /// `validateOnlineDowngradeWithFencedMembers`). `None` leaves the group as it is.
    pub fn take_downgrade(&mut self, allowed: bool, max_size: usize) -> Option<Vec<ClassicMemberState>> {
        if !std::mem::take(&mut self.consumer_member_left) || !allowed {
            return None;
        }
        let live: Vec<&Member> = self.members.values().filter(|m| !m.left_static).collect();
        if live.is_empty() || live.len() > max_size || live.len() != self.members.len() {
            return None;
        }
        if live.iter().any(|m| m.classic.is_none()) {
            return None;
        }
        Some(
            live.iter()
                .map(|m| {
                    let classic = m.classic.as_ref().expect("checked");
                    let version = classic.protocols.first().map_or(0, |(_, meta)| metadata_version(meta));
                    ClassicMemberState {
                        member_id: m.member_id.clone(),
                        instance_id: m.instance_id.clone(),
                        client_id: m.client_id.clone(),
                        client_host: m.client_host.clone(),
                        session_timeout: classic.session_timeout,
                        rebalance_timeout: m.rebalance_timeout,
                        protocols: classic.protocols.clone(),
                        assignment: encode_assignment(&m.assigned, version),
                    }
                })
                .collect(),
        )
    }

    /// Rebuilds a group from its records in `__consumer_offsets`. Target assignments are not
    /// stored: the assignor recomputes them from the restored assignments (which it keeps where
    /// it can); if that moves any partition, the group epoch is bumped so members learn of it.
    pub fn restore(
        epoch: i32,
        stored: Vec<StoredMember>,
        topics: &TopicCounts,
        config: &GroupConfig,
        now: Instant,
    ) -> ConsumerGroup {
        let mut group = ConsumerGroup::new();
        group.group_epoch = epoch;
        group.persisted.epoch = Some(epoch);
        for s in stored {
            let meta = &s.metadata;
            let a = &s.assignment;
            if let Some(assignor) = meta
                .server_assignor
                .as_ref()
                .filter(|a| ASSIGNORS.contains(&a.as_str()))
            {
                group.assignor = assignor.clone();
            }
            let rebalance_timeout = Duration::from_millis(meta.rebalance_timeout_ms.max(0) as u64);
            group.members.insert(
                s.member_id.clone(),
                Member {
                    member_id: s.member_id.clone(),
                    instance_id: meta.instance_id.clone(),
                    rack_id: meta.rack_id.clone(),
                    client_id: meta.client_id.clone(),
                    client_host: meta.client_host.clone(),
                    epoch: a.member_epoch,
                    previous_epoch: a.previous_member_epoch,
                    subscribed: meta.subscribed_topic_names.clone(),
                    regex: meta.subscribed_topic_regex.clone(),
                    rebalance_timeout,
                    assigned: a.assigned.clone(),
                    revoking: a.revoking.clone(),
                    revoke_deadline: (!a.revoking.is_empty()).then(|| now + rebalance_timeout),
                    // Every member gets a full session to reconnect to the restarted broker.
                    session_deadline: now
                        + meta.classic.as_ref().map_or(config.consumer_session_timeout, |c| {
                            Duration::from_millis(c.session_timeout_ms.max(0) as u64)
                        }),
                    last_sent: None,
                    left_static: a.member_epoch == LEFT_STATIC_EPOCH,
                    server_assignor: meta.server_assignor.clone(),
                    classic: meta.classic.as_ref().map(|c| ClassicMember {
                        session_timeout: Duration::from_millis(c.session_timeout_ms.max(0) as u64),
                        protocols: c.protocols.clone(),
                        join_deadline: None,
                        sync_deadline: None,
                    }),
                },
            );
            group.persisted.members.insert(s.member_id, (s.metadata, s.assignment));
        }
        // The current assignments seed the sticky assignor.
        group.target = group
            .members
            .values()
            .map(|m| (m.member_id.clone(), m.assigned.clone()))
            .collect();
        let relevant = group.relevant_topics(topics);
        group.compute_target(&relevant);
        let moved = group
            .members
            .values()
            .filter(|m| !m.left_static)
            .any(|m| m.assigned.union(&m.revoking).cloned().collect::<BTreeSet<_>>() != group.target_of(m));
        if moved {
            group.group_epoch += 1;
            group.assignment_epoch = group.group_epoch;
        }
        group
    }

    /// Records for what changed since the last call (or since the group was restored): the group
    /// epoch, and per member its metadata and assignment, or tombstones for members gone.
    pub fn take_records(&mut self, group: &str, topic_id: impl Fn(&str) -> Option<uuid::Uuid>) -> Vec<OffsetsRecord> {
        let mut out = Vec::new();
        if self.persisted.epoch != Some(self.group_epoch) {
            self.persisted.epoch = Some(self.group_epoch);
            let value = ConsumerGroupValue {
                epoch: self.group_epoch,
            };
            out.push((
                RecordKey::ConsumerGroup {
                    group: group.to_string(),
                },
                Some(value.encode()),
            ));
        }
        let gone: Vec<String> = self
            .persisted
            .members
            .keys()
            .filter(|id| !self.members.contains_key(*id))
            .cloned()
            .collect();
        for id in gone {
            self.persisted.members.remove(&id);
            let (meta_key, assignment_key) = member_keys(group, &id);
            out.push((assignment_key, None));
            out.push((meta_key, None));
        }
        for m in self.members.values() {
            let meta = ConsumerMemberValue {
                instance_id: m.instance_id.clone(),
                rack_id: m.rack_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                subscribed_topic_names: m.subscribed.clone(),
                subscribed_topic_regex: m.regex.clone(),
                rebalance_timeout_ms: m.rebalance_timeout.as_millis().min(i32::MAX as u128) as i32,
                server_assignor: m.server_assignor.clone(),
                classic: m.classic.as_ref().and_then(ClassicMember::metadata),
            };
            let state = if !m.revoking.is_empty() {
                STATE_UNREVOKED_PARTITIONS
            } else if !m.left_static && m.assigned != self.target_of(m) {
                STATE_UNRELEASED_PARTITIONS
            } else {
                STATE_STABLE
            };
            let assignment = StoredAssignment {
                member_epoch: m.epoch,
                previous_member_epoch: m.previous_epoch,
                state,
                assigned: m.assigned.clone(),
                revoking: m.revoking.clone(),
            };
            let previous = self.persisted.members.get(&m.member_id);
            let (meta_key, assignment_key) = member_keys(group, &m.member_id);
            if previous.map(|p| &p.0) != Some(&meta) {
                out.push((meta_key, Some(meta.encode())));
            }
            if previous.map(|p| &p.1) != Some(&assignment) {
                let value = ConsumerAssignmentValue {
                    member_epoch: assignment.member_epoch,
                    previous_member_epoch: assignment.previous_member_epoch,
                    state,
                    assigned_partitions: by_topic_id(&assignment.assigned, &topic_id),
                    partitions_pending_revocation: by_topic_id(&assignment.revoking, &topic_id),
                };
                out.push((assignment_key, Some(value.encode())));
            }
            self.persisted.members.insert(m.member_id.clone(), (meta, assignment));
        }
        out
    }

    /// Tombstones for every record stored for this group (when it is deleted or becomes a
    /// classic group).
    pub fn tombstones(&self, group: &str) -> Vec<OffsetsRecord> {
        let mut out = Vec::new();
        for member in self.persisted.members.keys() {
            let (meta_key, assignment_key) = member_keys(group, member);
            out.push((assignment_key, None));
            out.push((meta_key, None));
        }
        if self.persisted.epoch.is_some() {
            out.push((
                RecordKey::ConsumerGroup {
                    group: group.to_string(),
                },
                None,
            ));
        }
        out
    }

    /// The topics (with partition counts) that some member subscribes to, by name or regex.
    fn relevant_topics(&self, all: &TopicCounts) -> TopicCounts {
        let names = self.subscribed_topics();
        let regexes: Vec<regex_lite::Regex> = self.subscribed_regexes().iter().filter_map(|r| compile(r)).collect();
        all.iter()
            .filter(|(t, _)| names.contains(*t) || regexes.iter().any(|re| re.is_match(t)))
            .map(|(t, n)| (t.clone(), *n))
            .collect()
    }

    fn compute_target(&mut self, topics: &TopicCounts) {
        let subscriptions: BTreeMap<String, BTreeSet<String>> = self
            .members
            .values()
            .filter(|m| !m.left_static || m.instance_id.is_some())
            .map(|m| {
                let mut subs: BTreeSet<String> = m
                    .subscribed
                    .iter()
                    .filter(|t| topics.contains_key(*t))
                    .cloned()
                    .collect();
                if let Some(re) = m.regex.as_deref().and_then(compile) {
                    subs.extend(topics.keys().filter(|t| re.is_match(t)).cloned());
                }
                (m.member_id.clone(), subs)
            })
            .collect();
        self.target = match self.assignor.as_str() {
            "range" => assign_range(&subscriptions, topics),
            _ => assign_uniform(&subscriptions, topics, &self.target),
        };
        self.assignment_epoch = self.group_epoch;
        self.topics_seen = topics.clone();
    }

    fn reconcile(&mut self, member_id: &str, owned: Option<&BTreeSet<TopicPartition>>, now: Instant) {
        let target = self.target.get(member_id).cloned().unwrap_or_default();
        let taken: BTreeSet<TopicPartition> = self
            .members
            .values()
            .filter(|o| o.member_id != member_id)
            .flat_map(|o| o.assigned.iter().chain(o.revoking.iter()).cloned())
            .collect();
        let assignment_epoch = self.assignment_epoch;
        let m = self.members.get_mut(member_id).expect("present");
        if !m.revoking.is_empty() {
            let confirmed = owned.is_some_and(|o| o.is_disjoint(&m.revoking));
            if !confirmed {
                return;
            }
            m.revoking.clear();
            m.revoke_deadline = None;
        }
        let to_revoke: BTreeSet<TopicPartition> = m.assigned.difference(&target).cloned().collect();
        if !to_revoke.is_empty() {
            m.assigned.retain(|p| target.contains(p));
            m.revoking = to_revoke;
            m.revoke_deadline = Some(now + m.rebalance_timeout);
            return;
        }
        if m.epoch != assignment_epoch {
            m.previous_epoch = m.epoch;
            m.epoch = assignment_epoch;
        }
        for p in target {
            if !taken.contains(&p) {
                m.assigned.insert(p);
            }
        }
    }
}

/// The protocol type of classic members that use the consumer protocol.
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// A classic member's ConsumerProtocolSubscription, by topic name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Subscription {
    /// Subscribed topics, sorted and deduplicated.
    pub topics: Vec<String>,
    /// Partitions it says it owns (v1+; empty before).
    pub owned: BTreeSet<TopicPartition>,
    pub rack: Option<String>,
}

/// The version of consumer-protocol metadata (its first two bytes), capped to what we speak.
fn metadata_version(metadata: &[u8]) -> i16 {
    match metadata {
        [a, b, ..] => i16::from_be_bytes([*a, *b]).clamp(0, 3),
        _ => 0,
    }
}

/// Decodes a ConsumerProtocolSubscription (version prefix, then the body).
pub fn decode_subscription(metadata: &[u8]) -> Option<Subscription> {
    use fjord_protocol::kafka_protocol::messages::ConsumerProtocolSubscription;
    use fjord_protocol::kafka_protocol::protocol::Decodable;
    if metadata.len() < 2 {
        return None;
    }
    let mut buf = Bytes::copy_from_slice(&metadata[2..]);
    let sub = ConsumerProtocolSubscription::decode(&mut buf, metadata_version(metadata)).ok()?;
    let mut topics: Vec<String> = sub.topics.iter().map(|t| t.to_string()).collect();
    topics.sort();
    topics.dedup();
    Some(Subscription {
        topics,
        owned: sub
            .owned_partitions
            .iter()
            .flat_map(|tp| tp.partitions.iter().map(move |p| (tp.topic.to_string(), *p)))
            .collect(),
        rack: sub.rack_id.map(|r| r.to_string()),
    })
}

/// Decodes a ConsumerProtocolAssignment; empty bytes (no assignment yet) are no partitions.
pub fn decode_assignment(bytes: &[u8]) -> Option<BTreeSet<TopicPartition>> {
    use fjord_protocol::kafka_protocol::messages::ConsumerProtocolAssignment;
    use fjord_protocol::kafka_protocol::protocol::Decodable;
    if bytes.is_empty() {
        return Some(BTreeSet::new());
    }
    if bytes.len() < 2 {
        return None;
    }
    let mut buf = Bytes::copy_from_slice(&bytes[2..]);
    let a = ConsumerProtocolAssignment::decode(&mut buf, metadata_version(bytes)).ok()?;
    Some(
        a.assigned_partitions
            .iter()
            .flat_map(|tp| tp.partitions.iter().map(move |p| (tp.topic.to_string(), *p)))
            .collect(),
    )
}

/// Encodes partitions as a ConsumerProtocolAssignment of `version` (version prefix, then body).
pub fn encode_assignment(partitions: &BTreeSet<TopicPartition>, version: i16) -> Bytes {
    use fjord_protocol::kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as Tp;
    use fjord_protocol::kafka_protocol::messages::{ConsumerProtocolAssignment, TopicName};
    use fjord_protocol::kafka_protocol::protocol::{Encodable, StrBytes};
    let mut topics: Vec<Tp> = Vec::new();
    for (topic, p) in partitions {
        match topics.last_mut() {
            Some(last) if last.topic.as_str() == topic => last.partitions.push(*p),
            _ => topics.push(
                Tp::default()
                    .with_topic(TopicName(StrBytes::from_string(topic.clone())))
                    .with_partitions(vec![*p]),
            ),
        }
    }
    let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(topics);
    let mut buf = bytes::BytesMut::new();
    bytes::BufMut::put_i16(&mut buf, version);
    // Encoding a well-formed assignment of a supported version does not fail.
    let _ = assignment.encode(&mut buf, version);
    buf.freeze()
}

/// The keys of a member's metadata and assignment records.
fn member_keys(group: &str, member: &str) -> (RecordKey, RecordKey) {
    let (group, member) = (group.to_string(), member.to_string());
    (
        RecordKey::ConsumerMember {
            group: group.clone(),
            member: member.clone(),
        },
        RecordKey::ConsumerAssignment { group, member },
    )
}

/// Partitions grouped by topic id; topics without an id (deleted) are left out.
fn by_topic_id(
    partitions: &BTreeSet<TopicPartition>,
    topic_id: &impl Fn(&str) -> Option<uuid::Uuid>,
) -> Vec<TopicIdPartitions> {
    let mut out: Vec<(String, TopicIdPartitions)> = Vec::new();
    for (topic, p) in partitions {
        match out.last_mut() {
            Some((name, (_, ps))) if name == topic => ps.push(*p),
            _ => {
                if let Some(id) = topic_id(topic) {
                    out.push((topic.clone(), (id, vec![*p])));
                }
            }
        }
    }
    out.into_iter().map(|(_, t)| t).collect()
}

/// Topic partitions by name from stored topic ids; unknown ids (deleted topics) are dropped.
pub fn by_topic_name(
    partitions: &[TopicIdPartitions],
    topic_name: &impl Fn(uuid::Uuid) -> Option<String>,
) -> BTreeSet<TopicPartition> {
    partitions
        .iter()
        .filter_map(|(id, ps)| topic_name(*id).map(|name| (name, ps)))
        .flat_map(|(name, ps)| ps.iter().map(move |p| (name.clone(), *p)))
        .collect()
}

/// A subscription regex (RE2/J syntax as clients send it) anchored to match whole topic names;
/// `None` if invalid (it then matches nothing).
fn compile(pattern: &str) -> Option<regex_lite::Regex> {
    regex_lite::Regex::new(&format!("^(?:{pattern})$")).ok()
}

/// Uniform assignor: spreads every subscribed partition evenly over the members subscribed to
/// its topic, keeping a partition where it was while its owner stays within quota (sticky).
fn assign_uniform(
    subscriptions: &BTreeMap<String, BTreeSet<String>>,
    topics: &TopicCounts,
    previous: &HashMap<String, BTreeSet<TopicPartition>>,
) -> HashMap<String, BTreeSet<TopicPartition>> {
    let mut result: HashMap<String, BTreeSet<TopicPartition>> =
        subscriptions.keys().map(|m| (m.clone(), BTreeSet::new())).collect();
    let partitions: Vec<TopicPartition> = topics
        .iter()
        .filter(|(t, _)| subscriptions.values().any(|s| s.contains(*t)))
        .flat_map(|(t, n)| (0..*n).map(move |p| (t.clone(), p)))
        .collect();
    if subscriptions.is_empty() {
        return result;
    }
    let quota = partitions.len().div_ceil(subscriptions.len());
    let mut unassigned = Vec::new();
    for tp in partitions {
        let keeper = previous.iter().find(|(m, owned)| {
            owned.contains(&tp)
                && subscriptions.get(*m).is_some_and(|s| s.contains(&tp.0))
                && result.get(*m).is_some_and(|r| r.len() < quota)
        });
        match keeper {
            Some((m, _)) => {
                result.get_mut(m).expect("member").insert(tp);
            }
            None => unassigned.push(tp),
        }
    }
    for tp in unassigned {
        let best = subscriptions
            .iter()
            .filter(|(_, s)| s.contains(&tp.0))
            .map(|(m, _)| m)
            .min_by_key(|m| (result[*m].len(), (*m).clone()));
        if let Some(m) = best {
            result.get_mut(m).expect("member").insert(tp);
        }
    }
    result
}

/// Range assignor: per topic, members subscribed to it (sorted by id) get contiguous ranges of
/// partitions, the first ones one extra when the count does not divide evenly.
fn assign_range(
    subscriptions: &BTreeMap<String, BTreeSet<String>>,
    topics: &TopicCounts,
) -> HashMap<String, BTreeSet<TopicPartition>> {
    let mut result: HashMap<String, BTreeSet<TopicPartition>> =
        subscriptions.keys().map(|m| (m.clone(), BTreeSet::new())).collect();
    for (topic, count) in topics {
        let members: Vec<&String> = subscriptions
            .iter()
            .filter(|(_, s)| s.contains(topic))
            .map(|(m, _)| m)
            .collect();
        if members.is_empty() {
            continue;
        }
        let count = *count as usize;
        let (per, extra) = (count / members.len(), count % members.len());
        let mut next = 0usize;
        for (i, m) in members.iter().enumerate() {
            let n = per + usize::from(i < extra);
            let set = result.get_mut(*m).expect("member");
            for p in next..next + n {
                set.insert((topic.clone(), p as i32));
            }
            next += n;
        }
    }
    result
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn cfg() -> GroupConfig {
        GroupConfig::default()
    }

    fn join(g: &mut ConsumerGroup, id: &str, topics: &TopicCounts, now: Instant) -> HeartbeatResponse {
        g.heartbeat(
            HeartbeatParams {
                member_id: id.into(),
                member_epoch: 0,
                subscribed_topics: Some(vec!["t".into()]),
                rebalance_timeout: Some(Duration::from_secs(30)),
                ..HeartbeatParams::default()
            },
            topics,
            &cfg(),
            1,
            now,
        )
    }

    fn beat(
        g: &mut ConsumerGroup,
        id: &str,
        epoch: i32,
        owned: &BTreeSet<TopicPartition>,
        topics: &TopicCounts,
        now: Instant,
    ) -> HeartbeatResponse {
        g.heartbeat(
            HeartbeatParams {
                member_id: id.into(),
                member_epoch: epoch,
                owned: Some(owned.clone()),
                ..HeartbeatParams::default()
            },
            topics,
            &cfg(),
            1,
            now,
        )
    }

    fn topics(n: i32) -> TopicCounts {
        [("t".to_string(), n)].into_iter().collect()
    }

    #[test]
    fn first_member_gets_everything() {
        let mut g = ConsumerGroup::new();
        let r = join(&mut g, "a", &topics(4), Instant::now());
        assert_eq!(r.error, None);
        assert_eq!(r.member_epoch, 1);
        assert_eq!(r.assignment.expect("sent").len(), 4);
        assert_eq!(g.state_name(), "Stable");
    }

    #[test]
    fn second_member_gets_partitions_only_after_first_revokes() {
        let now = Instant::now();
        let t = topics(4);
        let mut g = ConsumerGroup::new();
        let a = join(&mut g, "a", &t, now);
        let a_owned = a.assignment.expect("sent");
        let b = join(&mut g, "b", &t, now);
        assert_eq!(b.member_epoch, 2);
        assert!(b.assignment.expect("sent").is_empty(), "a still owns everything");
        assert_eq!(g.state_name(), "Reconciling");
        // a is told to keep two partitions (revoking the other two) at its old epoch.
        let a2 = beat(&mut g, "a", 1, &a_owned, &t, now);
        assert_eq!(a2.member_epoch, 1);
        let kept = a2.assignment.expect("changed");
        assert_eq!(kept.len(), 2);
        // a confirms the revocation; it moves to epoch 2.
        let a3 = beat(&mut g, "a", 1, &kept, &t, now);
        assert_eq!(a3.member_epoch, 2);
        // b now receives the freed partitions.
        let b2 = beat(&mut g, "b", 2, &BTreeSet::new(), &t, now);
        let got = b2.assignment.expect("changed");
        assert_eq!(got.len(), 2);
        assert!(got.is_disjoint(&kept));
        assert_eq!(g.state_name(), "Stable");
    }

    #[test]
    fn errors_unknown_member_fenced_epoch_bad_assignor() {
        let now = Instant::now();
        let t = topics(2);
        let mut g = ConsumerGroup::new();
        join(&mut g, "a", &t, now);
        let r = beat(&mut g, "zz", 1, &BTreeSet::new(), &t, now);
        assert_eq!(r.error.map(|e| e.0), Some(ResponseError::UnknownMemberId));
        let r = beat(&mut g, "a", 7, &BTreeSet::new(), &t, now);
        assert_eq!(r.error.map(|e| e.0), Some(ResponseError::FencedMemberEpoch));
        let r = g.heartbeat(
            HeartbeatParams {
                member_id: "c".into(),
                server_assignor: Some("nope".into()),
                subscribed_topics: Some(vec!["t".into()]),
                ..HeartbeatParams::default()
            },
            &t,
            &cfg(),
            1,
            now,
        );
        assert_eq!(r.error.map(|e| e.0), Some(ResponseError::UnsupportedAssignor));
    }

    #[test]
    fn session_expiry_frees_partitions_for_others() {
        let now = Instant::now();
        let t = topics(2);
        let mut g = ConsumerGroup::new();
        let a = join(&mut g, "a", &t, now);
        let a_owned = a.assignment.unwrap();
        join(&mut g, "b", &t, now);
        let kept = beat(&mut g, "a", 1, &a_owned, &t, now).assignment.unwrap();
        beat(&mut g, "a", 1, &kept, &t, now);
        // Only b keeps heartbeating; a's session expires.
        let r = beat(&mut g, "b", 2, &BTreeSet::new(), &t, now + Duration::from_secs(30));
        assert_eq!(r.error, None);
        let later = now + cfg().consumer_session_timeout + Duration::from_secs(1);
        g.tick(later);
        let r = beat(&mut g, "b", 2, &BTreeSet::new(), &t, later);
        assert!(r.member_epoch > 2);
        assert_eq!(r.assignment.expect("changed").len(), 2);
    }

    #[test]
    fn static_leave_keeps_partitions_for_the_session_timeout_only() {
        let now = Instant::now();
        let t = topics(2);
        let mut g = ConsumerGroup::new();
        let static_join = |g: &mut ConsumerGroup, id: &str, at: Instant| {
            g.heartbeat(
                HeartbeatParams {
                    member_id: id.into(),
                    member_epoch: 0,
                    instance_id: Some("i1".into()),
                    subscribed_topics: Some(vec!["t".into()]),
                    ..HeartbeatParams::default()
                },
                &t,
                &cfg(),
                1,
                at,
            )
        };
        let s = static_join(&mut g, "s", now);
        let s_owned = s.assignment.unwrap();
        assert_eq!(s_owned.len(), 2);
        join(&mut g, "b", &t, now);
        let kept = beat(&mut g, "s", 1, &s_owned, &t, now).assignment.unwrap();
        beat(&mut g, "s", 1, &kept, &t, now);
        // The static member leaves with epoch -2: its partition is held for it, not given to b.
        assert_eq!(beat(&mut g, "s", -2, &kept, &t, now).error, None);
        let soon = now + Duration::from_secs(5);
        g.tick(soon);
        let b = beat(&mut g, "b", 2, &BTreeSet::new(), &t, soon);
        assert_eq!(b.assignment.unwrap_or_default().len(), 1);
        // Once the session timeout has passed without it, the partition goes to b.
        let later = now + cfg().consumer_session_timeout + Duration::from_secs(1);
        assert!(g.tick(later), "the departed static member is removed");
        let b = beat(&mut g, "b", b.member_epoch, &BTreeSet::new(), &t, later);
        assert_eq!(b.assignment.expect("changed").len(), 2);
        // The instance coming back later joins as a new member with nothing carried over.
        let back = static_join(&mut g, "s2", later);
        assert_eq!(back.error, None);
    }

    #[test]
    fn range_and_uniform_assignors_cover_every_partition_once() {
        let subs: BTreeMap<String, BTreeSet<String>> = ["a", "b", "c"]
            .iter()
            .map(|m| (m.to_string(), ["t".to_string()].into_iter().collect()))
            .collect();
        let t = topics(7);
        for result in [assign_range(&subs, &t), assign_uniform(&subs, &t, &HashMap::new())] {
            let all: Vec<&TopicPartition> = result.values().flatten().collect();
            assert_eq!(all.len(), 7);
            let unique: BTreeSet<&TopicPartition> = all.iter().copied().collect();
            assert_eq!(unique.len(), 7);
            let sizes: BTreeSet<usize> = result.values().map(BTreeSet::len).collect();
            assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1);
        }
        let range = assign_range(&subs, &t);
        assert_eq!(
            range["a"],
            [0, 1, 2].map(|p| ("t".to_string(), p)).into_iter().collect()
        );
    }

    /// ConsumerProtocolSubscription v1 bytes (version prefix included).
    pub(crate) fn subscription(topics: &[&str], owned: &BTreeSet<TopicPartition>) -> Bytes {
        use fjord_protocol::kafka_protocol::messages::consumer_protocol_subscription::TopicPartition as Tp;
        use fjord_protocol::kafka_protocol::messages::{ConsumerProtocolSubscription, TopicName};
        use fjord_protocol::kafka_protocol::protocol::{Encodable, StrBytes};
        let owned: Vec<Tp> = owned
            .iter()
            .map(|(t, p)| {
                Tp::default()
                    .with_topic(TopicName(StrBytes::from_string(t.clone())))
                    .with_partitions(vec![*p])
            })
            .collect();
        let sub = ConsumerProtocolSubscription::default()
            .with_topics(topics.iter().map(|t| StrBytes::from_string(t.to_string())).collect())
            .with_owned_partitions(owned);
        let mut buf = bytes::BytesMut::new();
        bytes::BufMut::put_i16(&mut buf, 1);
        sub.encode(&mut buf, 1).unwrap();
        buf.freeze()
    }

    fn parts(ps: &[i32]) -> BTreeSet<TopicPartition> {
        ps.iter().map(|p| ("t".to_string(), *p)).collect()
    }

    fn classic_state(id: &str, owned: &[i32]) -> ClassicMemberState {
        ClassicMemberState {
            member_id: id.into(),
            instance_id: None,
            client_id: "kafka-python".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(30),
            protocols: vec![("range".into(), subscription(&["t"], &BTreeSet::new()))],
            assignment: encode_assignment(&parts(owned), 1),
        }
    }

    fn classic_join_params(id: &str, owned: &BTreeSet<TopicPartition>) -> ClassicJoin {
        ClassicJoin {
            member_id: id.into(),
            instance_id: None,
            client_id: "kafka-python".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(30),
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), subscription(&["t"], owned))],
            version: 5,
        }
    }

    /// No partition is owned (assigned or being revoked) by two members at once.
    fn assert_exclusive(g: &ConsumerGroup) {
        let mut seen = BTreeSet::new();
        for m in g.members.values() {
            for p in m.assigned.iter().chain(&m.revoking) {
                assert!(seen.insert(p.clone()), "{p:?} owned twice: {:?}", g.describe_members());
            }
        }
    }

    /// A classic member's rejoin cycle as a client runs it: JoinGroup with what it owns, then
    /// SyncGroup; returns (generation, assignment).
    fn classic_rejoin(
        g: &mut ConsumerGroup,
        id: &str,
        owned: &BTreeSet<TopicPartition>,
        t: &TopicCounts,
        now: Instant,
    ) -> (i32, BTreeSet<TopicPartition>) {
        let j = g.classic_join(classic_join_params(id, owned), t, &cfg(), now);
        assert_eq!(j.error, None);
        assert_eq!((j.leader.as_str(), j.protocol_name.as_deref()), ("", Some("range")));
        let s = g.classic_sync(id, None, j.generation, Some("consumer"), Some("range"), now);
        assert_eq!(s.error, None);
        assert_exclusive(g);
        (
            j.generation,
            decode_assignment(&s.assignment).expect("assignment decodes"),
        )
    }

    #[test]
    fn upgraded_classic_members_keep_their_partitions_and_hand_them_over_by_rejoining() {
        let now = Instant::now();
        let t = topics(6);
        let mut g = ConsumerGroup::from_classic(
            5,
            Some("range"),
            vec![classic_state("a", &[0, 1, 2]), classic_state("b", &[3, 4, 5])],
            &t,
            now,
        )
        .expect("converts");
        assert_eq!((g.group_epoch, g.assignment_epoch, g.state_name()), (5, 5, "Stable"));
        assert!(g.describe_members().iter().all(|m| m.classic && m.member_epoch == 5));
        // Nothing changed yet: the classic members heartbeat normally at their generation.
        assert_eq!(g.classic_heartbeat("a", None, 5, now), None);
        assert_eq!(
            g.classic_heartbeat("a", None, 4, now),
            Some(ResponseError::IllegalGeneration)
        );
        // A consumer-protocol member joins: new epoch, nothing for it while a and b own all.
        let c = join(&mut g, "c", &t, now);
        assert_eq!((c.member_epoch, c.assignment.clone().unwrap().len()), (6, 0));
        assert_eq!(
            g.classic_heartbeat("a", None, 5, now),
            Some(ResponseError::RebalanceInProgress)
        );
        assert_eq!(
            g.classic_heartbeat("b", None, 5, now),
            Some(ResponseError::RebalanceInProgress)
        );
        // a rejoins still owning everything (cooperative): told to keep part, at its old epoch.
        let (gen_a, kept) = classic_rejoin(&mut g, "a", &parts(&[0, 1, 2]), &t, now);
        assert_eq!(gen_a, 5);
        assert_eq!(kept.len(), 2);
        // It must rejoin again once it has revoked; the sync of the new epoch needs that.
        assert_eq!(
            g.classic_heartbeat("a", None, 5, now),
            Some(ResponseError::RebalanceInProgress)
        );
        let (gen_a, a_now) = classic_rejoin(&mut g, "a", &kept, &t, now);
        assert_eq!((gen_a, a_now.clone()), (6, kept.clone()));
        assert_eq!(g.classic_heartbeat("a", None, 6, now), None);
        // b is eager: it revokes everything before rejoining.
        let (_, b_kept) = classic_rejoin(&mut g, "b", &BTreeSet::new(), &t, now);
        let (gen_b, b_now) = classic_rejoin(&mut g, "b", &b_kept, &t, now);
        assert_eq!(gen_b, 6);
        // c now gets what a and b released, and nothing they still own.
        let c2 = beat(&mut g, "c", 6, &BTreeSet::new(), &t, now);
        let c_now = c2.assignment.expect("changed");
        assert_eq!((c_now.len(), a_now.len(), b_now.len()), (2, 2, 2));
        assert_exclusive(&g);
        assert_eq!(g.state_name(), "Stable");
        // Commits of classic members are checked against their member epoch.
        assert_eq!(
            g.validate_member_epoch("a", 5, ResponseError::IllegalGeneration),
            Err(ResponseError::IllegalGeneration)
        );
        assert_eq!(
            g.validate_member_epoch("a", 6, ResponseError::IllegalGeneration),
            Ok(())
        );
    }

    #[test]
    fn classic_requests_to_a_consumer_group_are_checked_as_kafka_does() {
        let now = Instant::now();
        let t = topics(2);
        let mut g = ConsumerGroup::new();
        join(&mut g, "c", &t, now);
        // KIP-394 round trip for an unknown dynamic member.
        let j = g.classic_join(classic_join_params("", &BTreeSet::new()), &t, &cfg(), now);
        assert_eq!(j.error, Some(ResponseError::MemberIdRequired));
        assert!(!j.member_id.is_empty() && !g.members.contains_key(&j.member_id));
        // Another protocol type, or metadata that is not the consumer protocol, is refused.
        let mut other = classic_join_params("x", &BTreeSet::new());
        other.protocol_type = "connect".into();
        assert_eq!(
            g.classic_join(other, &t, &cfg(), now).error,
            Some(ResponseError::InconsistentGroupProtocol)
        );
        let mut garbage = classic_join_params("x", &BTreeSet::new());
        garbage.protocols = vec![("range".into(), Bytes::from_static(b"\x00"))];
        assert_eq!(
            g.classic_join(garbage, &t, &cfg(), now).error,
            Some(ResponseError::InconsistentGroupProtocol)
        );
        // A consumer-protocol member cannot use the classic APIs, nor a classic one the new one.
        assert_eq!(
            g.classic_heartbeat("c", None, 1, now),
            Some(ResponseError::UnknownMemberId)
        );
        assert_eq!(g.classic_leave("c", None), Some(ResponseError::UnknownMemberId));
        let (generation, _) = classic_rejoin(&mut g, &j.member_id, &BTreeSet::new(), &t, now);
        assert_eq!(
            beat(&mut g, &j.member_id, generation, &BTreeSet::new(), &t, now)
                .error
                .map(|e| e.0),
            Some(ResponseError::UnknownMemberId)
        );
        assert_eq!(
            g.classic_sync(&j.member_id, None, generation + 7, None, None, now)
                .error,
            Some(ResponseError::IllegalGeneration)
        );
        assert_eq!(
            g.classic_sync(&j.member_id, None, generation, None, Some("roundrobin"), now)
                .error,
            Some(ResponseError::InconsistentGroupProtocol)
        );
        // A classic member that is told to rejoin and does not is removed after its rebalance
        // timeout.
        let epoch = g.group_epoch;
        join(&mut g, "d", &t, now);
        assert!(g.group_epoch > epoch);
        assert_eq!(
            g.classic_heartbeat(&j.member_id, None, generation, now),
            Some(ResponseError::RebalanceInProgress)
        );
        g.tick(now + Duration::from_secs(9));
        assert!(g.members.contains_key(&j.member_id));
        assert!(g.tick(now + Duration::from_secs(31)));
        assert!(!g.members.contains_key(&j.member_id));
        assert_eq!(g.take_downgrade(true, usize::MAX), None, "no consumer member left");
    }

    #[test]
    fn downgrade_happens_only_when_the_last_consumer_member_leaves_and_policy_allows() {
        let now = Instant::now();
        let t = topics(2);
        let mut g = ConsumerGroup::from_classic(3, Some("range"), vec![classic_state("a", &[0, 1])], &t, now).unwrap();
        join(&mut g, "c1", &t, now);
        join(&mut g, "c2", &t, now);
        // A classic member leaving never downgrades; one consumer member leaving of two neither.
        assert_eq!(beat(&mut g, "c1", -1, &BTreeSet::new(), &t, now).error, None);
        assert_eq!(g.take_downgrade(true, usize::MAX), None);
        // The last one leaving does, unless the policy forbids it or the group is too big.
        assert_eq!(beat(&mut g, "c2", -1, &BTreeSet::new(), &t, now).error, None);
        let before = g.group_epoch;
        assert_eq!(g.take_downgrade(false, usize::MAX), None, "policy disabled");
        let _ = beat(&mut g, "gone", -1, &BTreeSet::new(), &t, now);
        assert_eq!(g.take_downgrade(true, usize::MAX), None, "the flag was consumed");
        join(&mut g, "c3", &t, now);
        beat(&mut g, "c3", -1, &BTreeSet::new(), &t, now);
        assert_eq!(g.take_downgrade(true, 0), None, "over the classic group size");
        join(&mut g, "c4", &t, now);
        beat(&mut g, "c4", -1, &BTreeSet::new(), &t, now);
        let members = g.take_downgrade(true, usize::MAX).expect("downgrades");
        assert!(g.group_epoch > before);
        assert_eq!(members.len(), 1);
        assert_eq!(members[0].member_id, "a");
        assert_eq!(members[0].protocols[0].0, "range");
        // Its assignment is what it owns now, in the consumer protocol.
        assert_eq!(
            decode_assignment(&members[0].assignment),
            Some(g.members["a"].assigned.clone())
        );
        let classic = super::super::classic::ClassicGroup::from_members(g.group_epoch, members, &cfg(), now, 0);
        assert_eq!(classic.generation, g.group_epoch);
        assert_eq!(classic.state.name(), "PreparingRebalance", "the members rejoin at once");
        assert_eq!(classic.protocol.as_deref(), Some("range"));
        assert_eq!(classic.protocol_type.as_deref(), Some("consumer"));
    }

    #[test]
    fn regex_subscription_matches_whole_names() {
        let matches = |pattern: &str, topic: &str| compile(pattern).is_some_and(|re| re.is_match(topic));
        assert!(matches("orders-.*", "orders-eu"));
        assert!(!matches("orders", "orders-eu"));
        assert!(!matches("(", "x"));
    }
}
