//! SyncGroup (key 14): the leader hands in the assignment it computed; every member waits for
//! its own (opaque bytes, passed through), answered only once the group record holding the
//! assignment is fsynced in `__consumer_offsets` (as Kafka's GroupCoordinator). A classic member
//! of a KIP-848 consumer group gets its current assignment from that group.

use std::sync::Arc;
use std::time::Instant;

use fjord_protocol::kafka_protocol::error::ResponseError;
use fjord_protocol::kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};

use super::str_bytes;
use crate::broker::Broker;
use crate::group::classic::{Reply, SyncResponse};
use crate::group::{self, GroupKind};

pub(super) async fn handle(broker: &Arc<Broker>, request: SyncGroupRequest, version: i16) -> SyncGroupResponse {
    let group_id = request.group_id.to_string();
    let result = sync(broker, &group_id, request).await;
    group::persist_if_dirty(broker, &group_id).await;
    let r = result.unwrap_or_else(|error| SyncResponse {
        error: Some(error),
        ..SyncResponse::default()
    });
    let response = SyncGroupResponse::default()
        .with_error_code(r.error.map_or(0, |e| e.code()))
        .with_assignment(r.assignment);
    if version >= 5 {
        response
            .with_protocol_type(r.protocol_type.map(str_bytes))
            .with_protocol_name(r.protocol_name.map(str_bytes))
    } else {
        response
    }
}

async fn sync(broker: &Arc<Broker>, group_id: &str, request: SyncGroupRequest) -> Result<SyncResponse, ResponseError> {
    group::precheck(broker, group_id)?;
    let member_id = request.member_id.to_string();
    let instance_id = request.group_instance_id.map(|s| s.to_string());
    let protocol_type = request.protocol_type.map(|s| s.to_string());
    let protocol_name = request.protocol_name.map(|s| s.to_string());
    let assignments = request
        .assignments
        .into_iter()
        .map(|a| (a.member_id.to_string(), a.assignment))
        .collect();
    let (reply, store) = broker
        .groups
        .with_groups(|groups| match groups.get_mut(group_id).map(|g| &mut g.kind) {
            None => Err(ResponseError::UnknownMemberId),
            Some(GroupKind::Consumer(g)) => Ok((
                Reply::Now(g.classic_sync(
                    &member_id,
                    instance_id.as_deref(),
                    request.generation_id,
                    protocol_type.as_deref(),
                    protocol_name.as_deref(),
                    Instant::now(),
                )),
                None,
            )),
            Some(GroupKind::Classic(g)) => {
                let before = g.storing_generation();
                let reply = g.sync(
                    &member_id,
                    instance_id.as_deref(),
                    request.generation_id,
                    protocol_type.as_deref(),
                    protocol_name.as_deref(),
                    assignments,
                    Instant::now(),
                );
                // This request handed in the assignment: it stores it, then releases everyone.
                let store = g.storing_generation().filter(|_| before.is_none());
                Ok((reply, store))
            }
        })?;
    if let Some(generation) = store {
        let stored = group::persist(broker, group_id).await;
        if let Err(code) = stored {
            tracing::error!(group = %group_id, generation, ?code, "storing the group assignment failed");
        }
        broker.groups.with_groups(|groups| {
            if let Some(GroupKind::Classic(g)) = groups.get_mut(group_id).map(|g| &mut g.kind) {
                g.complete_sync(
                    generation,
                    stored.err().map(coordinator_error),
                    &broker.groups.config,
                    Instant::now(),
                    crate::clock::now_ms(),
                );
            }
        });
    }
    match reply {
        Reply::Now(r) => Ok(r),
        Reply::Wait(rx) => rx.await.map_err(|_| ResponseError::UnknownMemberId),
    }
}

/// Kafka's mapping of a failed group-metadata append to what SyncGroup members are told.
fn coordinator_error(code: ResponseError) -> ResponseError {
    match code {
        ResponseError::UnknownTopicOrPartition
        | ResponseError::NotEnoughReplicas
        | ResponseError::NotEnoughReplicasAfterAppend
        | ResponseError::RequestTimedOut => ResponseError::CoordinatorNotAvailable,
        ResponseError::NotLeaderOrFollower | ResponseError::KafkaStorageError => ResponseError::NotCoordinator,
        _ => ResponseError::UnknownServerError,
    }
}
