//! JoinGroup (key 11): the first step of a classic rebalance. Waits until the join phase ends;
//! the leader receives every member's protocol metadata, untouched. A JoinGroup to a KIP-848
//! consumer group with members joins it as a classic member (answered at once, as a follower).

use std::sync::Arc;
use std::time::{Duration, Instant};

use fjord_protocol::kafka_protocol::error::ResponseError;
use fjord_protocol::kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use fjord_protocol::kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};

use super::{ClientInfo, str_bytes};
use crate::broker::Broker;
use crate::group::classic::{ClassicGroup, JoinParams, JoinResponse, Reply};
use crate::group::consumer::ClassicJoin;
use crate::group::{self, Group, GroupKind};

pub(super) async fn handle(
    broker: &Arc<Broker>,
    request: JoinGroupRequest,
    version: i16,
    client: &ClientInfo,
) -> JoinGroupResponse {
    let group_id = request.group_id.to_string();
    let member_id = request.member_id.to_string();
    let result = join(broker, &group_id, request, version, client).await;
    group::persist_if_dirty(broker, &group_id).await;
    let r = result.unwrap_or_else(|error| JoinResponse {
        error: Some(error),
        generation: -1,
        member_id,
        ..JoinResponse::default()
    });
    let mut response = JoinGroupResponse::default()
        .with_error_code(r.error.map_or(0, |e| e.code()))
        .with_generation_id(r.generation)
        .with_leader(str_bytes(r.leader))
        .with_member_id(str_bytes(r.member_id))
        .with_members(
            r.members
                .into_iter()
                .map(|m| {
                    let member = JoinGroupResponseMember::default()
                        .with_member_id(str_bytes(m.member_id))
                        .with_metadata(m.metadata);
                    if version >= 5 {
                        member.with_group_instance_id(m.instance_id.map(str_bytes))
                    } else {
                        member
                    }
                })
                .collect(),
        );
    if version >= 7 {
        response = response
            .with_protocol_type(r.protocol_type.map(str_bytes))
            .with_protocol_name(r.protocol_name.map(str_bytes));
    } else {
        response = response.with_protocol_name(Some(str_bytes(r.protocol_name.unwrap_or_default())));
    }
    if version >= 9 {
        response = response.with_skip_assignment(r.skip_assignment);
    }
    response
}

async fn join(
    broker: &Arc<Broker>,
    group_id: &str,
    request: JoinGroupRequest,
    version: i16,
    client: &ClientInfo,
) -> Result<JoinResponse, ResponseError> {
    group::precheck(broker, group_id)?;
    let config = &broker.groups.config;
    let session_timeout = Duration::from_millis(request.session_timeout_ms.max(0) as u64);
    if session_timeout < config.min_session_timeout || session_timeout > config.max_session_timeout {
        return Err(ResponseError::InvalidSessionTimeout);
    }
    let rebalance_timeout = if version >= 1 {
        Duration::from_millis(request.rebalance_timeout_ms.max(0) as u64)
    } else {
        session_timeout
    };
    let params = JoinParams {
        member_id: request.member_id.to_string(),
        instance_id: request.group_instance_id.map(|s| s.to_string()),
        client_id: client.client_id.clone(),
        client_host: client.client_host.clone(),
        session_timeout,
        rebalance_timeout,
        protocol_type: request.protocol_type.to_string(),
        protocols: request
            .protocols
            .into_iter()
            .map(|p| (p.name.to_string(), p.metadata))
            .collect(),
        version,
    };
    let now_ms = crate::clock::now_ms();
    let topics = group::topic_counts(broker);
    let mut stale_records = Vec::new();
    let reply = broker.groups.with_groups(|groups| {
        if !groups.contains_key(group_id) {
            if !params.member_id.is_empty() {
                return Err(ResponseError::UnknownMemberId);
            }
            groups.insert(group_id.to_string(), Group::new_classic(now_ms));
        }
        let group = groups.get_mut(group_id).expect("present");
        if let GroupKind::Consumer(g) = &mut group.kind {
            if !g.is_empty() {
                // A classic member of a consumer group (KIP-848 online migration).
                let join = ClassicJoin {
                    member_id: params.member_id,
                    instance_id: params.instance_id,
                    client_id: params.client_id,
                    client_host: params.client_host,
                    session_timeout: params.session_timeout,
                    rebalance_timeout: params.rebalance_timeout,
                    protocol_type: params.protocol_type,
                    protocols: params.protocols,
                    version: params.version,
                };
                return Ok(Reply::Now(g.classic_join(join, &topics, config, Instant::now())));
            }
            // An empty consumer group may become a classic group; its offsets stay, its
            // KIP-848 records go.
            stale_records = g.tombstones(group_id);
            group.kind = GroupKind::Classic(ClassicGroup::new(now_ms));
        }
        let GroupKind::Classic(g) = &mut group.kind else {
            unreachable!("converted above")
        };
        Ok(g.join(params, config, Instant::now(), now_ms))
    })?;
    group::write_records(broker, group_id, stale_records).await?;
    match reply {
        Reply::Now(r) => Ok(r),
        // A dropped sender means the group was deleted while the member waited.
        Reply::Wait(rx) => rx.await.map_err(|_| ResponseError::UnknownMemberId),
    }
}
