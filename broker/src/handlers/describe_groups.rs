//! DescribeGroups (key 15): a classic group's state, protocol and members (with their metadata
//! and assignment once Stable). Unknown groups are reported Dead (v6+: GROUP_ID_NOT_FOUND).

use std::sync::Arc;

use fjord_protocol::kafka_protocol::error::ResponseError;
use fjord_protocol::kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use fjord_protocol::kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};

use super::{operations, str_bytes};
use crate::broker::Broker;
use crate::group::{self, GroupKind};

pub(super) fn handle(broker: &Arc<Broker>, request: DescribeGroupsRequest, version: i16) -> DescribeGroupsResponse {
    let ops = operations::answer(request.include_authorized_operations, operations::GROUP);
    let groups = request
        .groups
        .into_iter()
        .map(|id| {
            let described = DescribedGroup::default()
                .with_group_id(id.clone())
                .with_authorized_operations(ops);
            let fail = |error: ResponseError, message: String| {
                let d = described
                    .clone()
                    .with_error_code(error.code())
                    .with_group_state(str_bytes("Dead"));
                if version >= 6 {
                    d.with_error_message(Some(str_bytes(message)))
                } else {
                    d
                }
            };
            if let Err(error) = group::precheck(broker, &id) {
                return fail(error, format!("{error:?}"));
            }
            broker
                .groups
                .with_groups(|groups| match groups.get(id.as_str()).map(|g| &g.kind) {
                    None if version >= 6 => fail(
                        ResponseError::GroupIdNotFound,
                        format!("group {} not found", id.as_str()),
                    ),
                    None => described.clone().with_group_state(str_bytes("Dead")),
                    Some(GroupKind::Consumer(_)) => fail(
                        ResponseError::GroupIdNotFound,
                        format!("group {} is not a classic group", id.as_str()),
                    ),
                    Some(GroupKind::Classic(g)) => described
                        .clone()
                        .with_group_state(str_bytes(g.state.name()))
                        .with_protocol_type(str_bytes(g.protocol_type.clone().unwrap_or_default()))
                        .with_protocol_data(str_bytes(g.protocol.clone().unwrap_or_default()))
                        .with_members(
                            g.describe_members()
                                .into_iter()
                                .map(|(member, instance, client_id, client_host, metadata, assignment)| {
                                    let m = DescribedGroupMember::default()
                                        .with_member_id(str_bytes(member))
                                        .with_client_id(str_bytes(client_id))
                                        .with_client_host(str_bytes(client_host))
                                        .with_member_metadata(metadata)
                                        .with_member_assignment(assignment);
                                    if version >= 4 {
                                        m.with_group_instance_id(instance.map(str_bytes))
                                    } else {
                                        m
                                    }
                                })
                                .collect(),
                        ),
                })
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}
