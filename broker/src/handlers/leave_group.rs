//! LeaveGroup (key 13): members leave a classic group at once instead of waiting for their
//! session to expire. v3+ removes a batch of members (by member id or group.instance.id). In a
//! KIP-848 consumer group only its classic members can leave this way.

use std::sync::Arc;
use std::time::Instant;

use fjord_protocol::kafka_protocol::error::ResponseError;
use fjord_protocol::kafka_protocol::messages::leave_group_response::MemberResponse;
use fjord_protocol::kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use super::str_bytes;
use crate::broker::Broker;
use crate::group::{self, GroupKind};

pub(super) async fn handle(broker: &Arc<Broker>, request: LeaveGroupRequest, version: i16) -> LeaveGroupResponse {
    let group_id = request.group_id.to_string();
    let identities: Vec<(String, Option<String>)> = if version >= 3 {
        request
            .members
            .iter()
            .map(|m| {
                (
                    m.member_id.to_string(),
                    m.group_instance_id.as_ref().map(|s| s.to_string()),
                )
            })
            .collect()
    } else {
        vec![(request.member_id.to_string(), None)]
    };
    if let Err(error) = group::precheck(broker, &group_id) {
        return LeaveGroupResponse::default().with_error_code(error.code());
    }
    let config = &broker.groups.config;
    let results: Result<Vec<Option<ResponseError>>, ResponseError> =
        broker
            .groups
            .with_groups(|groups| match groups.get_mut(&group_id).map(|g| &mut g.kind) {
                None => Err(ResponseError::UnknownMemberId),
                Some(GroupKind::Consumer(g)) => Ok(identities
                    .iter()
                    .map(|(member, instance)| g.classic_leave(member, instance.as_deref()))
                    .collect()),
                Some(GroupKind::Classic(g)) => {
                    let (now, now_ms) = (Instant::now(), crate::clock::now_ms());
                    Ok(identities
                        .iter()
                        .map(|(member, instance)| g.leave(member, instance.as_deref(), config, now, now_ms))
                        .collect())
                }
            });
    group::persist_if_dirty(broker, &group_id).await;
    match results {
        Err(error) => LeaveGroupResponse::default().with_error_code(error.code()),
        Ok(errors) if version >= 3 => LeaveGroupResponse::default().with_members(
            identities
                .into_iter()
                .zip(errors)
                .map(|((member, instance), error)| {
                    MemberResponse::default()
                        .with_member_id(str_bytes(member))
                        .with_group_instance_id(instance.map(str_bytes))
                        .with_error_code(error.map_or(0, |e| e.code()))
                })
                .collect(),
        ),
        Ok(errors) => {
            LeaveGroupResponse::default().with_error_code(errors.into_iter().flatten().next().map_or(0, |e| e.code()))
        }
    }
}
