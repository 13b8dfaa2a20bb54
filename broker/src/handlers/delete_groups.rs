//! DeleteGroups (key 42): removes groups that have no members, with all their committed offsets
//! (tombstones in `__consumer_offsets`, so compaction drops them for good).

use std::sync::Arc;

use fjord_protocol::kafka_protocol::error::ResponseError;
use fjord_protocol::kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use fjord_protocol::kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use crate::broker::Broker;
use crate::group::records::RecordKey;
use crate::group::{self, GroupKind, OffsetsRecord};

pub(super) async fn handle(broker: &Arc<Broker>, request: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut results = Vec::new();
    for id in request.groups_names {
        let group_id = id.to_string();
        let error = match delete(broker, &group_id).await {
            Ok(()) => 0,
            Err(e) => e.code(),
        };
        results.push(DeletableGroupResult::default().with_group_id(id).with_error_code(error));
    }
    DeleteGroupsResponse::default().with_results(results)
}

async fn delete(broker: &Arc<Broker>, group_id: &str) -> Result<(), ResponseError> {
    group::precheck(broker, group_id)?;
    let tombstones: Vec<OffsetsRecord> = broker.groups.with_groups(|groups| {
        let group = groups.get_mut(group_id).ok_or(ResponseError::GroupIdNotFound)?;
        if !group.is_empty() {
            return Err(ResponseError::NonEmptyGroup);
        }
        if let GroupKind::Classic(g) = &mut group.kind {
            g.kill(crate::clock::now_ms());
        }
        let group = groups.remove(group_id).expect("present");
        let mut records: Vec<OffsetsRecord> = group
            .offsets
            .into_keys()
            .map(|(topic, partition)| {
                let key = RecordKey::Offset {
                    group: group_id.to_string(),
                    topic,
                    partition,
                };
                (key, None)
            })
            .collect();
        match &group.kind {
            GroupKind::Classic(_) => records.push((
                RecordKey::Group {
                    group: group_id.to_string(),
                },
                None,
            )),
            GroupKind::Consumer(g) => records.extend(g.tombstones(group_id)),
        }
        Ok(records)
    })?;
    tracing::info!(group = %group_id, "deleting group");
    group::write_records(broker, group_id, tombstones).await
}
