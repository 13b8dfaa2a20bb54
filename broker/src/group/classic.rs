//! The classic group protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup) as a state machine:
//! Empty → PreparingRebalance → CompletingRebalance → Stable (→ Dead when deleted), with session
//! and rebalance timeouts, the member-id-required round trip (KIP-394) and static membership
//! (KIP-345). Protocol metadata and assignments are opaque bytes passed through untouched, so
//! every client-side assignor works. Pure logic: no I/O; waiting requests get a oneshot receiver.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fjord_protocol::kafka_protocol::error::ResponseError;
use tokio::sync::oneshot;

use super::GroupConfig;
use super::records::{GroupValue, MemberValue};

/// Kafka's classic group states.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassicState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl ClassicState {
    /// The state's name as DescribeGroups and ListGroups report it.
    pub fn name(self) -> &'static str {
        match self {
            ClassicState::Empty => "Empty",
            ClassicState::PreparingRebalance => "PreparingRebalance",
            ClassicState::CompletingRebalance => "CompletingRebalance",
            ClassicState::Stable => "Stable",
            ClassicState::Dead => "Dead",
        }
    }
}

/// A JoinGroup request, decoded.
#[derive(Debug, Clone)]
pub struct JoinParams {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// JoinGroup version: v4+ gets the member-id-required round trip, v9+ `skip_assignment`.
    pub version: i16,
}

/// One member as the leader sees it in its JoinGroup response.
#[derive(Debug, Clone, PartialEq)]
pub struct JoinMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub metadata: Bytes,
}

/// What a JoinGroup is answered with.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JoinResponse {
    pub error: Option<ResponseError>,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    pub member_id: String,
    pub members: Vec<JoinMember>,
    pub skip_assignment: bool,
}

impl JoinResponse {
    fn error(error: ResponseError, member_id: &str) -> JoinResponse {
        JoinResponse {
            error: Some(error),
            generation: -1,
            member_id: member_id.to_string(),
            ..JoinResponse::default()
        }
    }
}

/// What a SyncGroup is answered with.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncResponse {
    pub error: Option<ResponseError>,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResponse {
    fn error(error: ResponseError) -> SyncResponse {
        SyncResponse {
            error: Some(error),
            ..SyncResponse::default()
        }
    }
}

/// One classic member's state, moved between a classic group and a consumer group when the
/// group changes protocol online.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassicMemberState {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocols: Vec<(String, Bytes)>,
    /// The member's current assignment (ConsumerProtocolAssignment bytes).
    pub assignment: Bytes,
}

/// An answer now, or one to wait for (the rebalance completes it).
#[derive(Debug)]
pub enum Reply<T> {
    Now(T),
    Wait(oneshot::Receiver<T>),
}

#[derive(Debug)]
struct Member {
    member_id: String,
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    awaiting_join: Option<oneshot::Sender<JoinResponse>>,
    awaiting_sync: Option<oneshot::Sender<SyncResponse>>,
    session_deadline: Instant,
}

impl Member {
    fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

/// One classic group's membership state.
#[derive(Debug)]
pub struct ClassicGroup {
    pub state: ClassicState,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// group.instance.id → current member id (KIP-345).
    static_members: HashMap<String, String>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, waiting for the second JoinGroup.
    pending_members: HashMap<String, Instant>,
    /// When the join phase ends even if not every member has rejoined.
    join_deadline: Option<Instant>,
    /// group.initial.rebalance.delay.ms: the first rebalance of an empty group waits this long.
    initial_delay_until: Option<Instant>,
    /// When the leader must have sent its SyncGroup.
    sync_deadline: Option<Instant>,
    /// Set while the leader's assignment for this generation is being written.
    storing_generation: Option<i32>,
    pub state_timestamp_ms: i64,
    /// Set when the stored group metadata no longer matches; the coordinator writes it.
    dirty: bool,
}

impl ClassicGroup {
    pub fn new(now_ms: i64) -> ClassicGroup {
        ClassicGroup {
            state: ClassicState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: BTreeMap::new(),
            static_members: HashMap::new(),
            pending_members: HashMap::new(),
            join_deadline: None,
            initial_delay_until: None,
            sync_deadline: None,
            storing_generation: None,
            state_timestamp_ms: now_ms,
            dirty: false,
        }
    }

    /// Rebuilds a group from its stored metadata: members keep their assignment and get a full
    /// session timeout to heartbeat again.
    pub fn restore(value: GroupValue, now: Instant) -> ClassicGroup {
        let mut group = ClassicGroup::new(value.state_timestamp_ms);
        group.generation = value.generation;
        group.protocol_type = Some(value.protocol_type).filter(|t| !t.is_empty());
        group.protocol = value.protocol;
        group.leader = value.leader;
        for m in value.members {
            if let Some(instance) = &m.group_instance_id {
                group.static_members.insert(instance.clone(), m.member_id.clone());
            }
            let protocols = match &group.protocol {
                Some(p) => vec![(p.clone(), m.subscription)],
                None => Vec::new(),
            };
            let session_timeout = Duration::from_millis(m.session_timeout_ms.max(0) as u64);
            group.members.insert(
                m.member_id.clone(),
                Member {
                    member_id: m.member_id,
                    instance_id: m.group_instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    session_timeout,
                    rebalance_timeout: Duration::from_millis(m.rebalance_timeout_ms.max(0) as u64),
                    protocols,
                    assignment: m.assignment,
                    awaiting_join: None,
                    awaiting_sync: None,
                    session_deadline: now + session_timeout,
                },
            );
        }
        group.state = if group.members.is_empty() {
            ClassicState::Empty
        } else {
            ClassicState::Stable
        };
        group
    }

    /// The stored form of the group (written after each completed rebalance).
    pub fn to_value(&self) -> GroupValue {
        let protocol = self.protocol.clone().unwrap_or_default();
        GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            state_timestamp_ms: self.state_timestamp_ms,
            members: self
                .members
                .values()
                .map(|m| MemberValue {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout.as_millis() as i32,
                    session_timeout_ms: m.session_timeout.as_millis() as i32,
                    subscription: m.metadata_for(&protocol),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    /// True once: the group changed in a way that must be written to `__consumer_offsets`.
    /// The stored form changed since it was last taken.
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.pending_members.is_empty()
    }

    /// Topics the members subscribe to, if the group uses the consumer protocol (for
    /// OffsetDelete's GROUP_SUBSCRIBED_TO_TOPIC); `None` if subscriptions cannot be known.
    pub fn subscribed_topics(&self) -> Option<Vec<String>> {
        if self.protocol_type.as_deref() != Some("consumer") {
            return None;
        }
        let protocol = self.protocol.as_deref()?;
        let mut topics = Vec::new();
        for m in self.members.values() {
            topics.extend(super::consumer_protocol_topics(&m.metadata_for(protocol))?);
        }
        Some(topics)
    }

    /// Members as DescribeGroups reports them: (member id, instance id, client id, client host,
    /// metadata, assignment). Metadata and assignment are only reported when Stable, as Kafka does.
    pub fn describe_members(&self) -> Vec<(String, Option<String>, String, String, Bytes, Bytes)> {
        let stable = self.state == ClassicState::Stable;
        let protocol = self.protocol.clone().unwrap_or_default();
        self.members
            .values()
            .map(|m| {
                let (metadata, assignment) = if stable {
                    (m.metadata_for(&protocol), m.assignment.clone())
                } else {
                    (Bytes::new(), Bytes::new())
                };
                (
                    m.member_id.clone(),
                    m.instance_id.clone(),
                    m.client_id.clone(),
                    m.client_host.clone(),
                    metadata,
                    assignment,
                )
            })
            .collect()
    }

    /// Protocols every member supports.
    fn supported_protocols(&self) -> Vec<String> {
        let mut members = self.members.values();
        let Some(first) = members.next() else {
            return Vec::new();
        };
        let mut names: Vec<String> = first.protocols.iter().map(|(n, _)| n.clone()).collect();
        for m in members {
            names.retain(|n| m.protocols.iter().any(|(p, _)| p == n));
        }
        names
    }

    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)], member_id: Option<&str>) -> bool {
        if protocol_type.is_empty() || protocols.is_empty() {
            return false;
        }
        let others: Vec<&Member> = self
            .members
            .values()
            .filter(|m| Some(m.member_id.as_str()) != member_id)
            .collect();
        if others.is_empty() {
            return true;
        }
        if self.protocol_type.as_deref().is_some_and(|t| t != protocol_type) {
            return false;
        }
        protocols
            .iter()
            .any(|(name, _)| others.iter().all(|m| m.protocols.iter().any(|(p, _)| p == name)))
    }

    fn select_protocol(&self) -> Option<String> {
        let candidates = self.supported_protocols();
        let mut votes: Vec<(String, usize)> = candidates.iter().map(|c| (c.clone(), 0)).collect();
        for m in self.members.values() {
            if let Some((name, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(n))
                && let Some(v) = votes.iter_mut().find(|(c, _)| c == name)
            {
                v.1 += 1;
            }
        }
        // The first candidate with the most votes (max_by_key keeps the last maximum).
        votes.iter().rev().max_by_key(|(_, v)| *v).map(|(c, _)| c.clone())
    }

    fn set_state(&mut self, state: ClassicState, now_ms: i64) {
        if state != ClassicState::CompletingRebalance {
            // A rebalance (or the end of the group) abandons an assignment still being stored.
            self.storing_generation = None;
        }
        self.state = state;
        self.state_timestamp_ms = now_ms;
    }

    /// JoinGroup.
    pub fn join(&mut self, p: JoinParams, config: &GroupConfig, now: Instant, now_ms: i64) -> Reply<JoinResponse> {
        if self.state == ClassicState::Dead {
            return Reply::Now(JoinResponse::error(
                ResponseError::CoordinatorNotAvailable,
                &p.member_id,
            ));
        }
        let known = (!p.member_id.is_empty()).then_some(p.member_id.as_str());
        if !self.supports(&p.protocol_type, &p.protocols, known) {
            return Reply::Now(JoinResponse::error(
                ResponseError::InconsistentGroupProtocol,
                &p.member_id,
            ));
        }
        if p.member_id.is_empty() {
            self.join_unknown_member(p, config, now, now_ms)
        } else {
            self.join_known_member(p, config, now, now_ms)
        }
    }

    fn join_unknown_member(
        &mut self,
        p: JoinParams,
        config: &GroupConfig,
        now: Instant,
        now_ms: i64,
    ) -> Reply<JoinResponse> {
        let new_id = format!("{}-{}", p.client_id, uuid::Uuid::new_v4());
        if let Some(instance) = &p.instance_id
            && let Some(old_id) = self.static_members.get(instance).cloned()
        {
            return self.replace_static_member(&old_id, new_id, p, config, now, now_ms);
        }
        if self.members.len() + self.pending_members.len() >= config.max_size {
            return Reply::Now(JoinResponse::error(ResponseError::GroupMaxSizeReached, ""));
        }
        if p.instance_id.is_none() && p.version >= 4 {
            // KIP-394: hand out the id; the member joins for real with a second JoinGroup.
            self.pending_members.insert(new_id.clone(), now + p.session_timeout);
            return Reply::Now(JoinResponse::error(ResponseError::MemberIdRequired, &new_id));
        }
        self.add_member(new_id, p, config, now, now_ms)
    }

    fn join_known_member(
        &mut self,
        p: JoinParams,
        config: &GroupConfig,
        now: Instant,
        now_ms: i64,
    ) -> Reply<JoinResponse> {
        if self.pending_members.remove(&p.member_id).is_some() {
            let id = p.member_id.clone();
            return self.add_member(id, p, config, now, now_ms);
        }
        if let Err(error) = self.check_member(&p.member_id, p.instance_id.as_deref()) {
            return Reply::Now(JoinResponse::error(error, &p.member_id));
        }
        let member_id = p.member_id.clone();
        let changed = {
            let member = self.members.get_mut(&member_id).expect("checked above");
            let changed = member.protocols != p.protocols;
            member.protocols = p.protocols;
            member.session_timeout = p.session_timeout;
            member.rebalance_timeout = p.rebalance_timeout;
            member.client_id = p.client_id;
            member.client_host = p.client_host;
            member.session_deadline = now + member.session_timeout;
            changed
        };
        match self.state {
            ClassicState::PreparingRebalance => {
                let rx = self.await_join(&member_id);
                self.try_complete_join(config, now, now_ms);
                Reply::Wait(rx)
            }
            ClassicState::CompletingRebalance if !changed => {
                Reply::Now(self.current_join_response(&member_id, false, false))
            }
            ClassicState::Stable if !changed && self.leader.as_deref() != Some(member_id.as_str()) => {
                Reply::Now(self.current_join_response(&member_id, false, false))
            }
            ClassicState::CompletingRebalance | ClassicState::Stable => {
                let rx = self.await_join(&member_id);
                self.prepare_rebalance(config, now, now_ms);
                self.try_complete_join(config, now, now_ms);
                Reply::Wait(rx)
            }
            ClassicState::Empty | ClassicState::Dead => {
                Reply::Now(JoinResponse::error(ResponseError::UnknownMemberId, &member_id))
            }
        }
    }

    fn add_member(
        &mut self,
        member_id: String,
        p: JoinParams,
        config: &GroupConfig,
        now: Instant,
        now_ms: i64,
    ) -> Reply<JoinResponse> {
        if self.members.is_empty() {
            self.protocol_type = Some(p.protocol_type.clone());
        }
        if let Some(instance) = &p.instance_id {
            self.static_members.insert(instance.clone(), member_id.clone());
        }
        self.members.insert(
            member_id.clone(),
            Member {
                member_id: member_id.clone(),
                instance_id: p.instance_id,
                client_id: p.client_id,
                client_host: p.client_host,
                session_timeout: p.session_timeout,
                rebalance_timeout: p.rebalance_timeout,
                protocols: p.protocols,
                assignment: Bytes::new(),
                awaiting_join: None,
                awaiting_sync: None,
                session_deadline: now + p.session_timeout,
            },
        );
        let rx = self.await_join(&member_id);
        if self.state != ClassicState::PreparingRebalance {
            self.prepare_rebalance(config, now, now_ms);
        }
        self.try_complete_join(config, now, now_ms);
        Reply::Wait(rx)
    }

    /// KIP-345: a known group.instance.id rejoins with an empty member id. The old member id is
    /// fenced; a Stable group with unchanged metadata hands back the current generation without
    /// a rebalance.
    fn replace_static_member(
        &mut self,
        old_id: &str,
        new_id: String,
        p: JoinParams,
        config: &GroupConfig,
        now: Instant,
        now_ms: i64,
    ) -> Reply<JoinResponse> {
        let Some(mut member) = self.members.remove(old_id) else {
            self.static_members.remove(p.instance_id.as_deref().unwrap_or_default());
            return self.add_member(new_id, p, config, now, now_ms);
        };
        if let Some(tx) = member.awaiting_join.take() {
            let _ = tx.send(JoinResponse::error(ResponseError::FencedInstanceId, old_id));
        }
        if let Some(tx) = member.awaiting_sync.take() {
            let _ = tx.send(SyncResponse::error(ResponseError::FencedInstanceId));
        }
        let protocol = self.protocol.clone().unwrap_or_default();
        let old_metadata = member.metadata_for(&protocol);
        member.member_id = new_id.clone();
        member.protocols = p.protocols;
        member.session_timeout = p.session_timeout;
        member.rebalance_timeout = p.rebalance_timeout;
        member.client_id = p.client_id;
        member.client_host = p.client_host;
        member.session_deadline = now + p.session_timeout;
        let unchanged = member.metadata_for(&protocol) == old_metadata;
        self.members.insert(new_id.clone(), member);
        self.static_members
            .insert(p.instance_id.clone().unwrap_or_default(), new_id.clone());
        if self.leader.as_deref() == Some(old_id) {
            self.leader = Some(new_id.clone());
        }
        match self.state {
            ClassicState::Stable if unchanged => {
                self.dirty = true;
                let is_leader = self.leader.as_deref() == Some(new_id.as_str());
                // v9+ (KIP-814): the leader learns the members but must not reassign.
                let skip = is_leader && p.version >= 9;
                Reply::Now(self.current_join_response(&new_id, skip, skip))
            }
            ClassicState::PreparingRebalance => {
                let rx = self.await_join(&new_id);
                self.try_complete_join(config, now, now_ms);
                Reply::Wait(rx)
            }
            _ => {
                let rx = self.await_join(&new_id);
                self.prepare_rebalance(config, now, now_ms);
                self.try_complete_join(config, now, now_ms);
                Reply::Wait(rx)
            }
        }
    }

    fn await_join(&mut self, member_id: &str) -> oneshot::Receiver<JoinResponse> {
        let (tx, rx) = oneshot::channel();
        if let Some(m) = self.members.get_mut(member_id) {
            if let Some(old) = m.awaiting_join.replace(tx) {
                // A second JoinGroup from the same member supersedes the first.
                let _ = old.send(JoinResponse::error(ResponseError::RebalanceInProgress, member_id));
            }
        }
        rx
    }

    /// The current generation as a JoinGroup answer; `with_members` lists every member's metadata
    /// (for the leader), `skip_assignment` tells a v9+ leader not to reassign (KIP-814).
    fn current_join_response(&self, member_id: &str, with_members: bool, skip_assignment: bool) -> JoinResponse {
        let protocol = self.protocol.clone().unwrap_or_default();
        JoinResponse {
            error: None,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members: if with_members {
                self.members
                    .values()
                    .map(|m| JoinMember {
                        member_id: m.member_id.clone(),
                        instance_id: m.instance_id.clone(),
                        metadata: m.metadata_for(&protocol),
                    })
                    .collect()
            } else {
                Vec::new()
            },
            skip_assignment,
        }
    }

    /// Checks that `member_id` is a member and, for static members, that the instance id maps
    /// to it (a stale member id of a replaced static member is fenced).
    fn check_member(&self, member_id: &str, instance_id: Option<&str>) -> Result<(), ResponseError> {
        if let Some(instance) = instance_id {
            match self.static_members.get(instance) {
                Some(current) if current != member_id => return Err(ResponseError::FencedInstanceId),
                Some(_) => {}
                None if self.members.contains_key(member_id) => return Err(ResponseError::FencedInstanceId),
                None => return Err(ResponseError::UnknownMemberId),
            }
        }
        if self.members.contains_key(member_id) {
            Ok(())
        } else {
            Err(ResponseError::UnknownMemberId)
        }
    }

    fn max_rebalance_timeout(&self) -> Duration {
        self.members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or(Duration::ZERO)
    }

    fn prepare_rebalance(&mut self, config: &GroupConfig, now: Instant, now_ms: i64) {
        for m in self.members.values_mut() {
            if let Some(tx) = m.awaiting_sync.take() {
                let _ = tx.send(SyncResponse::error(ResponseError::RebalanceInProgress));
            }
        }
        let was_empty = self.state == ClassicState::Empty;
        self.set_state(ClassicState::PreparingRebalance, now_ms);
        self.sync_deadline = None;
        let timeout = self.max_rebalance_timeout();
        self.join_deadline = Some(now + timeout);
        self.initial_delay_until = (was_empty && !config.initial_rebalance_delay.is_zero())
            .then(|| now + config.initial_rebalance_delay.min(timeout));
    }

    fn try_complete_join(&mut self, config: &GroupConfig, now: Instant, now_ms: i64) {
        if self.state != ClassicState::PreparingRebalance {
            return;
        }
        if let Some(until) = self.initial_delay_until {
            if now < until {
                return;
            }
            self.initial_delay_until = None;
        }
        let all_joined = self.pending_members.is_empty() && self.members.values().all(|m| m.awaiting_join.is_some());
        let expired = self.join_deadline.is_some_and(|d| now >= d);
        if all_joined || expired {
            self.complete_join(config, now, now_ms);
        }
    }

    fn complete_join(&mut self, _config: &GroupConfig, now: Instant, now_ms: i64) {
        // Members that did not rejoin in time are out.
        let missing: Vec<String> = self
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for id in missing {
            tracing::info!(member = %id, "member did not rejoin within the rebalance timeout, removing it");
            self.drop_member(&id, ResponseError::UnknownMemberId);
        }
        self.pending_members.clear();
        self.join_deadline = None;
        self.generation += 1;
        if self.members.is_empty() {
            self.protocol = None;
            self.leader = None;
            self.set_state(ClassicState::Empty, now_ms);
            self.dirty = true;
            return;
        }
        self.protocol = self.select_protocol();
        if !self.leader.as_ref().is_some_and(|l| self.members.contains_key(l)) {
            self.leader = self.members.keys().next().cloned();
        }
        self.set_state(ClassicState::CompletingRebalance, now_ms);
        self.sync_deadline = Some(now + self.max_rebalance_timeout());
        let leader = self.leader.clone().unwrap_or_default();
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let response = self.current_join_response(&id, id == leader, false);
            let member = self.members.get_mut(&id).expect("listed above");
            member.session_deadline = now + member.session_timeout;
            if let Some(tx) = member.awaiting_join.take() {
                let _ = tx.send(response);
            }
        }
    }

    /// Removes a member, failing its waiting requests with `error`. Does not rebalance.
    fn drop_member(&mut self, member_id: &str, error: ResponseError) -> bool {
        let Some(mut m) = self.members.remove(member_id) else {
            return false;
        };
        if let Some(instance) = &m.instance_id
            && self.static_members.get(instance).map(String::as_str) == Some(member_id)
        {
            self.static_members.remove(instance);
        }
        if let Some(tx) = m.awaiting_join.take() {
            let _ = tx.send(JoinResponse::error(error, member_id));
        }
        if let Some(tx) = m.awaiting_sync.take() {
            let _ = tx.send(SyncResponse::error(error));
        }
        if self.leader.as_deref() == Some(member_id) {
            self.leader = None;
        }
        true
    }

    /// Removes a member and rebalances the others.
    fn remove_member(&mut self, member_id: &str, config: &GroupConfig, now: Instant, now_ms: i64) {
        if !self.drop_member(member_id, ResponseError::UnknownMemberId) {
            return;
        }
        match self.state {
            ClassicState::Stable | ClassicState::CompletingRebalance => {
                self.prepare_rebalance(config, now, now_ms);
                self.try_complete_join(config, now, now_ms);
            }
            ClassicState::PreparingRebalance => self.try_complete_join(config, now, now_ms),
            ClassicState::Empty | ClassicState::Dead => {}
        }
    }

    /// SyncGroup.
    #[allow(clippy::too_many_arguments)]
    pub fn sync(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: Vec<(String, Bytes)>,
        now: Instant,
    ) -> Reply<SyncResponse> {
        let fail = |e| Reply::Now(SyncResponse::error(e));
        match self.state {
            ClassicState::Dead => return fail(ResponseError::CoordinatorNotAvailable),
            ClassicState::Empty => return fail(ResponseError::UnknownMemberId),
            _ => {}
        }
        if let Err(e) = self.check_member(member_id, instance_id) {
            return fail(e);
        }
        if generation != self.generation {
            return fail(ResponseError::IllegalGeneration);
        }
        if protocol_type.is_some_and(|t| Some(t) != self.protocol_type.as_deref())
            || protocol_name.is_some_and(|n| Some(n) != self.protocol.as_deref())
        {
            return fail(ResponseError::InconsistentGroupProtocol);
        }
        if self.state == ClassicState::PreparingRebalance {
            return fail(ResponseError::RebalanceInProgress);
        }
        let ok = |assignment: Bytes, group: &ClassicGroup| SyncResponse {
            error: None,
            protocol_type: group.protocol_type.clone(),
            protocol_name: group.protocol.clone(),
            assignment,
        };
        let member = self.members.get_mut(member_id).expect("checked");
        member.session_deadline = now + member.session_timeout;
        if self.state == ClassicState::Stable {
            let assignment = member.assignment.clone();
            return Reply::Now(ok(assignment, self));
        }
        // CompletingRebalance: every member waits until the leader's assignment is stored.
        let (tx, rx) = oneshot::channel();
        member.awaiting_sync = Some(tx);
        if self.leader.as_deref() == Some(member_id) && self.storing_generation.is_none() {
            let mut assignments: HashMap<String, Bytes> = assignments.into_iter().collect();
            for m in self.members.values_mut() {
                m.assignment = assignments.remove(&m.member_id).unwrap_or_default();
            }
            // As Kafka's GroupCoordinator: the group record is written first and nobody (leader
            // included) learns an assignment before it is durable; see `complete_sync`.
            self.storing_generation = Some(self.generation);
            self.sync_deadline = None;
            self.dirty = true;
        }
        Reply::Wait(rx)
    }

    /// The generation whose assignment the leader handed in and that waits to be stored.
    pub fn storing_generation(&self) -> Option<i32> {
        self.storing_generation
    }

    /// Ends the store of `generation`'s assignment: on success the group becomes Stable and
    /// every waiting member gets its assignment; on failure they all get `error`, the
    /// assignments are dropped and the group rebalances (Kafka's resetAndPropagateAssignmentError).
    pub fn complete_sync(
        &mut self,
        generation: i32,
        error: Option<ResponseError>,
        config: &GroupConfig,
        now: Instant,
        now_ms: i64,
    ) {
        if self.state != ClassicState::CompletingRebalance || self.storing_generation != Some(generation) {
            return;
        }
        self.storing_generation = None;
        if let Some(error) = error {
            for m in self.members.values_mut() {
                m.assignment = Bytes::new();
                if let Some(tx) = m.awaiting_sync.take() {
                    let _ = tx.send(SyncResponse::error(error));
                }
            }
            self.prepare_rebalance(config, now, now_ms);
            return;
        }
        self.set_state(ClassicState::Stable, now_ms);
        let (protocol_type, protocol_name) = (self.protocol_type.clone(), self.protocol.clone());
        for m in self.members.values_mut() {
            if let Some(tx) = m.awaiting_sync.take() {
                let _ = tx.send(SyncResponse {
                    error: None,
                    protocol_type: protocol_type.clone(),
                    protocol_name: protocol_name.clone(),
                    assignment: m.assignment.clone(),
                });
            }
        }
    }

    /// Heartbeat.
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: Instant,
    ) -> Option<ResponseError> {
        match self.state {
            ClassicState::Dead => return Some(ResponseError::CoordinatorNotAvailable),
            ClassicState::Empty => return Some(ResponseError::UnknownMemberId),
            _ => {}
        }
        if let Err(e) = self.check_member(member_id, instance_id) {
            return Some(e);
        }
        if generation != self.generation {
            return Some(ResponseError::IllegalGeneration);
        }
        let member = self.members.get_mut(member_id).expect("checked");
        member.session_deadline = now + member.session_timeout;
        (self.state == ClassicState::PreparingRebalance).then_some(ResponseError::RebalanceInProgress)
    }

    /// LeaveGroup for one member identity; returns its error, if any.
    pub fn leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        config: &GroupConfig,
        now: Instant,
        now_ms: i64,
    ) -> Option<ResponseError> {
        if self.state == ClassicState::Dead {
            return Some(ResponseError::CoordinatorNotAvailable);
        }
        let target = match instance_id {
            Some(instance) => match self.static_members.get(instance) {
                None => return Some(ResponseError::UnknownMemberId),
                Some(current) if !member_id.is_empty() && current != member_id => {
                    return Some(ResponseError::FencedInstanceId);
                }
                Some(current) => current.clone(),
            },
            None => {
                if self.pending_members.remove(member_id).is_some() {
                    self.try_complete_join(config, now, now_ms);
                    return None;
                }
                if !self.members.contains_key(member_id) {
                    return Some(ResponseError::UnknownMemberId);
                }
                member_id.to_string()
            }
        };
        tracing::info!(member = %target, "member left the group");
        self.remove_member(&target, config, now, now_ms);
        None
    }

    /// Checks an OffsetCommit's member and generation (Kafka's classic rules).
    pub fn validate_offset_commit(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), ResponseError> {
        match self.state {
            ClassicState::Dead => return Err(ResponseError::CoordinatorNotAvailable),
            ClassicState::Empty if generation < 0 => return Ok(()),
            ClassicState::CompletingRebalance => return Err(ResponseError::RebalanceInProgress),
            _ => {}
        }
        self.check_member(member_id, instance_id)?;
        if generation != self.generation {
            return Err(ResponseError::IllegalGeneration);
        }
        Ok(())
    }

    /// Expires sessions and ends join and sync phases whose time is up.
    pub fn tick(&mut self, config: &GroupConfig, now: Instant, now_ms: i64) {
        let expired_pending: Vec<String> = self
            .pending_members
            .iter()
            .filter(|(_, d)| now >= **d)
            .map(|(id, _)| id.clone())
            .collect();
        for id in expired_pending {
            self.pending_members.remove(&id);
        }
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none() && now >= m.session_deadline)
            .map(|m| m.member_id.clone())
            .collect();
        for id in expired {
            tracing::info!(member = %id, "member session expired, removing it");
            self.remove_member(&id, config, now, now_ms);
        }
        if self.state == ClassicState::CompletingRebalance && self.sync_deadline.is_some_and(|d| now >= d) {
            let missing: Vec<String> = self
                .members
                .values()
                .filter(|m| m.awaiting_sync.is_none())
                .map(|m| m.member_id.clone())
                .collect();
            tracing::info!(members = ?missing, "sync phase timed out, removing members that did not sync");
            for id in &missing {
                self.drop_member(id, ResponseError::UnknownMemberId);
            }
            self.prepare_rebalance(config, now, now_ms);
        }
        self.try_complete_join(config, now, now_ms);
    }

    /// The group's members as they are now, for an online upgrade to a consumer group.
    pub fn export_members(&self) -> Vec<ClassicMemberState> {
        self.members
            .values()
            .map(|m| ClassicMemberState {
                member_id: m.member_id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                session_timeout: m.session_timeout,
                rebalance_timeout: m.rebalance_timeout,
                protocols: m.protocols.clone(),
                assignment: m.assignment.clone(),
            })
            .collect()
    }

    /// Number of members (pending ones included).
    pub fn num_members(&self) -> usize {
        self.members.len() + self.pending_members.len()
    }

    /// Answers every waiting JoinGroup and SyncGroup with `error` (the group is converted to a
    /// consumer group: its members rejoin that one).
    pub fn abort_waiters(&mut self, error: ResponseError) {
        for m in self.members.values_mut() {
            if let Some(tx) = m.awaiting_join.take() {
                let _ = tx.send(JoinResponse::error(error, &m.member_id));
            }
            if let Some(tx) = m.awaiting_sync.take() {
                let _ = tx.send(SyncResponse::error(error));
            }
        }
    }

    /// A classic group made from the classic members of a consumer group (online downgrade, as
    /// Kafka's `ClassicGroup.fromConsumerGroup`): Stable at `generation` with each member's
    /// current assignment, the first member as leader, then at once a rebalance so that the
    /// members rejoin and the leader reassigns.
    pub fn from_members(
        generation: i32,
        members: Vec<ClassicMemberState>,
        config: &GroupConfig,
        now: Instant,
        now_ms: i64,
    ) -> ClassicGroup {
        let mut group = ClassicGroup::new(now_ms);
        group.generation = generation;
        group.protocol_type = Some("consumer".to_string());
        for m in members {
            if let Some(instance) = &m.instance_id {
                group.static_members.insert(instance.clone(), m.member_id.clone());
            }
            group.leader.get_or_insert_with(|| m.member_id.clone());
            group.members.insert(
                m.member_id.clone(),
                Member {
                    member_id: m.member_id,
                    instance_id: m.instance_id,
                    client_id: m.client_id,
                    client_host: m.client_host,
                    session_timeout: m.session_timeout,
                    rebalance_timeout: m.rebalance_timeout,
                    protocols: m.protocols,
                    assignment: m.assignment,
                    awaiting_join: None,
                    awaiting_sync: None,
                    session_deadline: now + m.session_timeout,
                },
            );
        }
        group.protocol = group.select_protocol();
        group.set_state(ClassicState::Stable, now_ms);
        group.dirty = true;
        if !group.members.is_empty() {
            group.prepare_rebalance(config, now, now_ms);
        }
        group
    }

    /// Marks the group deleted: waiting members are told the coordinator moved on.
    pub fn kill(&mut self, now_ms: i64) {
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            self.drop_member(&id, ResponseError::CoordinatorNotAvailable);
        }
        self.pending_members.clear();
        self.set_state(ClassicState::Dead, now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> GroupConfig {
        GroupConfig {
            initial_rebalance_delay: Duration::ZERO,
            ..GroupConfig::default()
        }
    }

    fn params(member_id: &str, instance: Option<&str>, protocols: &[(&str, &[u8])]) -> JoinParams {
        JoinParams {
            member_id: member_id.into(),
            instance_id: instance.map(Into::into),
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(30),
            protocol_type: "consumer".into(),
            protocols: protocols
                .iter()
                .map(|(n, m)| (n.to_string(), Bytes::copy_from_slice(m)))
                .collect(),
            version: 9,
        }
    }

    /// SyncGroup as the handler runs it: a leader's assignment is stored at once (successfully).
    #[allow(clippy::too_many_arguments)]
    fn synced(
        g: &mut ClassicGroup,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        protocol_type: Option<&str>,
        protocol_name: Option<&str>,
        assignments: Vec<(String, Bytes)>,
        now: Instant,
        now_ms: i64,
    ) -> Reply<SyncResponse> {
        let before = g.storing_generation();
        let reply = g.sync(
            member_id,
            instance_id,
            generation,
            protocol_type,
            protocol_name,
            assignments,
            now,
        );
        if let Some(generation) = g.storing_generation().filter(|_| before.is_none()) {
            g.complete_sync(generation, None, &config(), now, now_ms);
        }
        reply
    }

    #[test]
    fn nobody_gets_an_assignment_before_it_is_stored() {
        let mut g = ClassicGroup::new(0);
        let now = Instant::now();
        let (a, mut rx) = join_new(&mut g, now);
        waited(&mut rx);
        synced(
            &mut g,
            &a,
            None,
            1,
            None,
            None,
            vec![(a.clone(), Bytes::from("all"))],
            now,
            0,
        );
        let (b, mut rxb) = join_new(&mut g, now);
        let Reply::Wait(mut rxa) = g.join(params(&a, None, &[("range", b"m")]), &config(), now, 0) else {
            panic!()
        };
        let (_, _) = (waited(&mut rxa), waited(&mut rxb));
        let Reply::Wait(mut sb) = g.sync(&b, None, 2, None, None, vec![], now) else {
            panic!()
        };
        let assignments = vec![(a.clone(), Bytes::from("x")), (b.clone(), Bytes::from("y"))];
        let Reply::Wait(mut sa) = g.sync(&a, None, 2, None, None, assignments, now) else {
            panic!()
        };
        assert_eq!(g.storing_generation(), Some(2));
        assert!(
            sa.try_recv().is_err() && sb.try_recv().is_err(),
            "answered before the store"
        );
        assert_eq!(g.state, ClassicState::CompletingRebalance);
        assert!(g.take_dirty(), "the assignment is marked for writing");
        g.complete_sync(2, None, &config(), now, 0);
        assert_eq!(g.state, ClassicState::Stable);
        assert_eq!(waited(&mut sa).assignment, Bytes::from("x"));
        assert_eq!(waited(&mut sb).assignment, Bytes::from("y"));
    }

    #[test]
    fn a_failed_store_fails_every_member_and_rebalances() {
        let mut g = ClassicGroup::new(0);
        let now = Instant::now();
        let (a, mut rx) = join_new(&mut g, now);
        waited(&mut rx);
        let Reply::Wait(mut sa) = g.sync(&a, None, 1, None, None, vec![(a.clone(), Bytes::from("x"))], now) else {
            panic!()
        };
        g.complete_sync(1, Some(ResponseError::NotCoordinator), &config(), now, 0);
        assert_eq!(waited(&mut sa).error, Some(ResponseError::NotCoordinator));
        assert_eq!(g.state, ClassicState::PreparingRebalance);
        assert_eq!(g.storing_generation(), None);
    }

    fn now_response<T: std::fmt::Debug>(reply: Reply<T>) -> T {
        match reply {
            Reply::Now(r) => r,
            Reply::Wait(_) => panic!("expected an immediate answer"),
        }
    }

    fn waited<T>(rx: &mut oneshot::Receiver<T>) -> T {
        rx.try_recv().expect("the rebalance answered")
    }

    /// Joins a dynamic member through the member-id-required round trip.
    fn join_new(g: &mut ClassicGroup, now: Instant) -> (String, oneshot::Receiver<JoinResponse>) {
        let first = now_response(g.join(params("", None, &[("range", b"m")]), &config(), now, 0));
        assert_eq!(first.error, Some(ResponseError::MemberIdRequired));
        let id = first.member_id.clone();
        match g.join(params(&id, None, &[("range", b"m")]), &config(), now, 0) {
            Reply::Wait(rx) => (id, rx),
            Reply::Now(r) => panic!("unexpected {r:?}"),
        }
    }

    #[test]
    fn single_member_join_sync_reaches_stable() {
        let mut g = ClassicGroup::new(0);
        let now = Instant::now();
        let (id, mut rx) = join_new(&mut g, now);
        let joined = waited(&mut rx);
        assert_eq!(joined.error, None);
        assert_eq!(joined.generation, 1);
        assert_eq!(joined.leader, id);
        assert_eq!(joined.members.len(), 1);
        assert_eq!(g.state, ClassicState::CompletingRebalance);
        let Reply::Wait(mut srx) = synced(
            &mut g,
            &id,
            None,
            1,
            None,
            None,
            vec![(id.clone(), Bytes::from("a"))],
            now,
            0,
        ) else {
            panic!("leader sync waits for its own completion")
        };
        assert_eq!(waited(&mut srx).assignment, Bytes::from("a"));
        assert_eq!(g.state, ClassicState::Stable);
        assert!(g.take_dirty());
    }

    #[test]
    fn second_member_triggers_rebalance_and_both_get_assignments() {
        let mut g = ClassicGroup::new(0);
        let now = Instant::now();
        let (a, mut rx) = join_new(&mut g, now);
        waited(&mut rx);
        synced(
            &mut g,
            &a,
            None,
            1,
            None,
            None,
            vec![(a.clone(), Bytes::from("all"))],
            now,
            0,
        );
        let (b, mut rxb) = join_new(&mut g, now);
        assert_eq!(g.state, ClassicState::PreparingRebalance);
        assert_eq!(g.heartbeat(&a, None, 1, now), Some(ResponseError::RebalanceInProgress));
        let Reply::Wait(mut rxa) = g.join(params(&a, None, &[("range", b"m")]), &config(), now, 0) else {
            panic!()
        };
        let (ja, jb) = (waited(&mut rxa), waited(&mut rxb));
        assert_eq!((ja.generation, jb.generation), (2, 2));
        assert_eq!(ja.members.len(), 2, "leader sees both members");
        assert!(jb.members.is_empty());
        let Reply::Wait(mut sb) = synced(&mut g, &b, None, 2, None, None, vec![], now, 0) else {
            panic!()
        };
        assert!(sb.try_recv().is_err(), "follower waits for the leader");
        synced(
            &mut g,
            &a,
            None,
            2,
            Some("consumer"),
            Some("range"),
            vec![(a.clone(), Bytes::from("x")), (b.clone(), Bytes::from("y"))],
            now,
            0,
        );
        assert_eq!(waited(&mut sb).assignment, Bytes::from("y"));
    }

    #[test]
    fn errors_for_bad_member_generation_and_protocol() {
        let mut g = ClassicGroup::new(0);
        let now = Instant::now();
        let (a, mut rx) = join_new(&mut g, now);
        waited(&mut rx);
        assert_eq!(
            g.heartbeat("nobody", None, 1, now),
            Some(ResponseError::UnknownMemberId)
        );
        assert_eq!(g.heartbeat(&a, None, 7, now), Some(ResponseError::IllegalGeneration));
        let r = now_response(synced(&mut g, &a, None, 1, Some("connect"), None, vec![], now, 0));
        assert_eq!(r.error, Some(ResponseError::InconsistentGroupProtocol));
        let mut other = params("", None, &[("roundrobin", b"")]);
        other.version = 3;
        let r = now_response(g.join(other, &config(), now, 0));
        assert_eq!(r.error, Some(ResponseError::InconsistentGroupProtocol));
        let mut wrong_type = params("", None, &[("range", b"")]);
        wrong_type.protocol_type = "connect".into();
        assert_eq!(
            now_response(g.join(wrong_type, &config(), now, 0)).error,
            Some(ResponseError::InconsistentGroupProtocol)
        );
    }

    #[test]
    fn session_expiry_removes_member_and_rebalances_the_rest() {
        let mut g = ClassicGroup::new(0);
        let now = Instant::now();
        let (a, mut rx) = join_new(&mut g, now);
        waited(&mut rx);
        synced(&mut g, &a, None, 1, None, None, vec![], now, 0);
        let (b, mut rxb) = join_new(&mut g, now);
        let Reply::Wait(mut rxa) = g.join(params(&a, None, &[("range", b"m")]), &config(), now, 0) else {
            panic!()
        };
        assert_eq!((waited(&mut rxa).generation, waited(&mut rxb).generation), (2, 2));
        synced(&mut g, &a, None, 2, None, None, vec![], now, 0);
        synced(&mut g, &b, None, 2, None, None, vec![], now, 0);
        assert_eq!(g.state, ClassicState::Stable);
        // Only `a` heartbeats; `b` expires after its 10 s session timeout.
        assert_eq!(g.heartbeat(&a, None, 2, now + Duration::from_secs(9)), None);
        let later = now + Duration::from_secs(11);
        g.tick(&config(), later, 0);
        assert_eq!(g.state, ClassicState::PreparingRebalance);
        assert_eq!(g.heartbeat(&b, None, 2, later), Some(ResponseError::UnknownMemberId));
        assert_eq!(
            g.heartbeat(&a, None, 2, later),
            Some(ResponseError::RebalanceInProgress)
        );
        let Reply::Wait(mut rxa) = g.join(params(&a, None, &[("range", b"m")]), &config(), later, 0) else {
            panic!()
        };
        let j = waited(&mut rxa);
        assert_eq!(j.members.len(), 1);
        assert_eq!(j.generation, 3);
    }

    #[test]
    fn static_member_rejoin_keeps_assignment_without_rebalance() {
        let mut g = ClassicGroup::new(0);
        let now = Instant::now();
        let Reply::Wait(mut rx) = g.join(params("", Some("i1"), &[("range", b"m")]), &config(), now, 0) else {
            panic!()
        };
        let j = waited(&mut rx);
        let old = j.member_id.clone();
        synced(
            &mut g,
            &old,
            Some("i1"),
            1,
            None,
            None,
            vec![(old.clone(), Bytes::from("p0"))],
            now,
            0,
        );
        g.take_dirty();
        // Restarted process: same instance id, empty member id, same metadata.
        let r = now_response(g.join(params("", Some("i1"), &[("range", b"m")]), &config(), now, 0));
        assert_eq!(r.error, None);
        assert_eq!(r.generation, 1, "no rebalance");
        assert_ne!(r.member_id, old);
        assert_eq!(g.state, ClassicState::Stable);
        let s = now_response(synced(&mut g, &r.member_id, Some("i1"), 1, None, None, vec![], now, 0));
        assert_eq!(s.assignment, Bytes::from("p0"));
        // The old member id is fenced.
        assert_eq!(
            g.heartbeat(&old, Some("i1"), 1, now),
            Some(ResponseError::FencedInstanceId)
        );
    }

    #[test]
    fn leave_rebalances_and_last_leave_empties_group() {
        let mut g = ClassicGroup::new(0);
        let now = Instant::now();
        let (a, mut rx) = join_new(&mut g, now);
        waited(&mut rx);
        synced(&mut g, &a, None, 1, None, None, vec![], now, 0);
        assert_eq!(
            g.leave("ghost", None, &config(), now, 0),
            Some(ResponseError::UnknownMemberId)
        );
        assert_eq!(g.leave(&a, None, &config(), now, 0), None);
        assert_eq!(g.state, ClassicState::Empty);
        assert_eq!(g.generation, 2);
        assert!(g.take_dirty());
        assert_eq!(g.validate_offset_commit("", None, -1), Ok(()));
    }

    #[test]
    fn offset_commit_validation_follows_kafka() {
        let mut g = ClassicGroup::new(0);
        let now = Instant::now();
        let (a, mut rx) = join_new(&mut g, now);
        waited(&mut rx);
        assert_eq!(
            g.validate_offset_commit(&a, None, 1),
            Err(ResponseError::RebalanceInProgress)
        );
        synced(&mut g, &a, None, 1, None, None, vec![], now, 0);
        assert_eq!(g.validate_offset_commit(&a, None, 1), Ok(()));
        assert_eq!(
            g.validate_offset_commit(&a, None, 0),
            Err(ResponseError::IllegalGeneration)
        );
        assert_eq!(
            g.validate_offset_commit("x", None, 1),
            Err(ResponseError::UnknownMemberId)
        );
        assert_eq!(
            g.validate_offset_commit("", None, -1),
            Err(ResponseError::UnknownMemberId)
        );
    }

    #[test]
    fn restore_round_trips_stored_value() {
        let mut g = ClassicGroup::new(0);
        let now = Instant::now();
        let (a, mut rx) = join_new(&mut g, now);
        waited(&mut rx);
        synced(
            &mut g,
            &a,
            None,
            1,
            None,
            None,
            vec![(a.clone(), Bytes::from("asg"))],
            now,
            0,
        );
        let value = g.to_value();
        let mut r = ClassicGroup::restore(value.clone(), now);
        assert_eq!(r.state, ClassicState::Stable);
        assert_eq!(r.to_value(), value);
        assert_eq!(r.heartbeat(&a, None, 1, now), None);
        let s = now_response(synced(&mut r, &a, None, 1, None, None, vec![], now, 0));
        assert_eq!(s.assignment, Bytes::from("asg"));
    }
}
