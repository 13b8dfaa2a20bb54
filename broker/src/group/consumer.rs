//! The consumer group protocol of KIP-848 (ConsumerGroupHeartbeat): the broker owns the
//! assignment. A change of membership, subscription or topic metadata bumps the group epoch; the
//! server-side assignor (uniform or range) computes a target assignment for that epoch; each
//! member is reconciled towards its target incrementally: partitions it must give up are revoked
//! first (its epoch stays until it confirms), and a partition is handed to its new owner only
//! once no other member still owns it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use fjord_protocol::kafka_protocol::error::ResponseError;

use super::records::{ConsumerAssignmentValue, ConsumerGroupValue, ConsumerMemberValue, RecordKey, TopicIdPartitions};
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
            self.members.remove(member_id);
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
        if self.members.remove(member_id).is_some() {
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
                if now >= m.session_deadline {
                    Some((m.member_id.clone(), "session expired"))
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
                    session_deadline: now + config.consumer_session_timeout,
                    last_sent: None,
                    left_static: a.member_epoch == LEFT_STATIC_EPOCH,
                    server_assignor: meta.server_assignor.clone(),
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
mod tests {
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

    #[test]
    fn regex_subscription_matches_whole_names() {
        let matches = |pattern: &str, topic: &str| compile(pattern).is_some_and(|re| re.is_match(topic));
        assert!(matches("orders-.*", "orders-eu"));
        assert!(!matches("orders", "orders-eu"));
        assert!(!matches("(", "x"));
    }
}
