//! DeleteRecords (key 21): advance a partition's log start offset (-1 = to the high watermark);
//! on a tiered partition the remote log start too.

use std::sync::Arc;

use fjord_protocol::kafka_protocol::error::ResponseError;
use fjord_protocol::kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use fjord_protocol::kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use fjord_storage::Offset;

use super::errors::storage_error_code;
use crate::broker::Broker;
use crate::controller::is_internal_topic;

pub(super) async fn handle(broker: &Arc<Broker>, request: DeleteRecordsRequest) -> DeleteRecordsResponse {
    broker
        .blocking(move |broker| {
            let topics = request
                .topics
                .into_iter()
                .map(|t| {
                    let partitions = t
                        .partitions
                        .iter()
                        .map(|p| {
                            let result = DeleteRecordsPartitionResult::default()
                                .with_partition_index(p.partition_index)
                                .with_low_watermark(-1);
                            let Some(partition) = broker.replicas.get(&t.name, p.partition_index) else {
                                return result.with_error_code(ResponseError::UnknownTopicOrPartition.code());
                            };
                            // Kafka: "Cannot delete records of internal topic".
                            if is_internal_topic(&t.name) {
                                return result.with_error_code(ResponseError::InvalidTopicException.code());
                            }
                            let mut log = partition.log.lock();
                            let target = if p.offset == -1 {
                                log.high_watermark()
                            } else {
                                Offset(p.offset)
                            };
                            if target.0 < 0 || target > log.high_watermark() {
                                return result.with_error_code(ResponseError::OffsetOutOfRange.code());
                            }
                            let local = log.delete_records_before(target);
                            drop(log);
                            let low = match local {
                                Ok(low) => low,
                                Err(error) => return result.with_error_code(storage_error_code(&error).code()),
                            };
                            // Tiered: the remote log start moves too (a manifest commit).
                            if let (Some(tiering), Some(remote)) = (broker.tiering.as_ref(), partition.remote()) {
                                let epoch = partition.leader_epoch().0;
                                let remote_done = tokio::runtime::Handle::current()
                                    .block_on(tiering.delete_records(&remote, target.0, epoch));
                                if let Err(error) = remote_done {
                                    tracing::error!(topic = %partition.topic, partition = p.partition_index, %error,
                                        "cannot advance the remote log start");
                                    return result.with_error_code(ResponseError::KafkaStorageError.code());
                                }
                            }
                            result.with_low_watermark(crate::tiering::log_start_offset(&partition, low).0)
                        })
                        .collect();
                    DeleteRecordsTopicResult::default()
                        .with_name(t.name)
                        .with_partitions(partitions)
                })
                .collect();
            DeleteRecordsResponse::default().with_topics(topics)
        })
        .await
}
