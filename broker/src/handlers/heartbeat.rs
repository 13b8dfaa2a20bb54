//! Heartbeat (key 12): keeps a classic member's session alive and tells it when to rejoin (also
//! for classic members of a KIP-848 consumer group).

use std::sync::Arc;
use std::time::Instant;

use fjord_protocol::kafka_protocol::error::ResponseError;
use fjord_protocol::kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use crate::broker::Broker;
use crate::group::{self, GroupKind};

pub(super) fn handle(broker: &Arc<Broker>, request: HeartbeatRequest) -> HeartbeatResponse {
    let group_id = request.group_id.to_string();
    let member_id = request.member_id.to_string();
    let instance_id = request.group_instance_id.map(|s| s.to_string());
    let error = group::precheck(broker, &group_id).err().or_else(|| {
        broker
            .groups
            .with_groups(|groups| match groups.get_mut(&group_id).map(|g| &mut g.kind) {
                None => Some(ResponseError::UnknownMemberId),
                Some(GroupKind::Consumer(g)) => g.classic_heartbeat(
                    &member_id,
                    instance_id.as_deref(),
                    request.generation_id,
                    Instant::now(),
                ),
                Some(GroupKind::Classic(g)) => g.heartbeat(
                    &member_id,
                    instance_id.as_deref(),
                    request.generation_id,
                    Instant::now(),
                ),
            })
    });
    HeartbeatResponse::default().with_error_code(error.map_or(0, |e| e.code()))
}
