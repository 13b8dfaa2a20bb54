//! OffsetDelete (key 47): removes committed offsets of some partitions. Refused per partition
//! (GROUP_SUBSCRIBED_TO_TOPIC) while a live member subscribes to the topic.

use std::collections::BTreeSet;
use std::sync::Arc;

use fjord_protocol::kafka_protocol::error::ResponseError;
use fjord_protocol::kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use fjord_protocol::kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};

use crate::broker::Broker;
use crate::group::records::RecordKey;
use crate::group::{self, OffsetsRecord};

pub(super) async fn handle(broker: &Arc<Broker>, request: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let group_id = request.group_id.to_string();
    if let Err(error) = group::precheck(broker, &group_id) {
        return OffsetDeleteResponse::default().with_error_code(error.code());
    }
    let image = broker.image();
    let outcome: Result<_, ResponseError> = broker.groups.with_groups(|groups| {
        let group = groups.get_mut(&group_id).ok_or(ResponseError::GroupIdNotFound)?;
        let subscribed: BTreeSet<String> = if group.is_empty() {
            BTreeSet::new()
        } else {
            let names = request.topics.iter().map(|t| t.name.as_str());
            group.subscribed_among(names).ok_or(ResponseError::NonEmptyGroup)?
        };
        let mut records: Vec<OffsetsRecord> = Vec::new();
        let mut topics = Vec::new();
        for t in &request.topics {
            let name = t.name.to_string();
            let exists = image.topic(&name);
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let index = p.partition_index;
                    let code = if !exists.is_some_and(|t| index >= 0 && (index as usize) < t.partitions.len()) {
                        ResponseError::UnknownTopicOrPartition.code()
                    } else if subscribed.contains(&name) {
                        ResponseError::GroupSubscribedToTopic.code()
                    } else {
                        if group.offsets.remove(&(name.clone(), index)).is_some() {
                            let key = RecordKey::Offset {
                                group: group_id.clone(),
                                topic: name.clone(),
                                partition: index,
                            };
                            records.push((key, None));
                        }
                        0
                    };
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(index)
                        .with_error_code(code)
                })
                .collect();
            topics.push(
                OffsetDeleteResponseTopic::default()
                    .with_name(t.name.clone())
                    .with_partitions(partitions),
            );
        }
        Ok((records, topics))
    });
    match outcome {
        Err(error) => OffsetDeleteResponse::default().with_error_code(error.code()),
        Ok((records, topics)) => match group::write_records(broker, &group_id, records).await {
            Ok(()) => OffsetDeleteResponse::default().with_topics(topics),
            Err(error) => OffsetDeleteResponse::default().with_error_code(error.code()),
        },
    }
}
