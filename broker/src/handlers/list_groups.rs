//! ListGroups (key 16): every group with its protocol type, state (v4+, filterable) and type
//! (v5+, classic or consumer, filterable).

use std::sync::Arc;

use fjord_protocol::kafka_protocol::error::ResponseError;
use fjord_protocol::kafka_protocol::messages::list_groups_response::ListedGroup;
use fjord_protocol::kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};

use super::str_bytes;
use crate::broker::Broker;

pub(super) fn handle(broker: &Arc<Broker>, request: ListGroupsRequest, version: i16) -> ListGroupsResponse {
    if !broker.groups.is_loaded() {
        return ListGroupsResponse::default().with_error_code(ResponseError::CoordinatorLoadInProgress.code());
    }
    let states: Vec<String> = request.states_filter.iter().map(|s| s.to_lowercase()).collect();
    let types: Vec<String> = request.types_filter.iter().map(|s| s.to_lowercase()).collect();
    let mut groups: Vec<ListedGroup> = broker.groups.with_groups(|groups| {
        groups
            .iter()
            .filter(|(_, g)| states.is_empty() || states.contains(&g.state_name().to_lowercase()))
            .filter(|(_, g)| types.is_empty() || types.contains(&g.type_name().to_string()))
            .map(|(id, g)| {
                let mut listed = ListedGroup::default()
                    .with_group_id(GroupId(str_bytes(id.clone())))
                    .with_protocol_type(str_bytes(g.protocol_type()));
                if version >= 4 {
                    listed = listed.with_group_state(str_bytes(g.state_name()));
                }
                if version >= 5 {
                    listed = listed.with_group_type(str_bytes(g.type_name()));
                }
                listed
            })
            .collect()
    });
    groups.sort_by(|a, b| a.group_id.0.cmp(&b.group_id.0));
    ListGroupsResponse::default().with_groups(groups)
}
