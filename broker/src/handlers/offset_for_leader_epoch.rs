//! OffsetForLeaderEpoch (key 23): the end offset of a leader epoch, from the partition's
//! leader-epoch cache, with Kafka's current-leader-epoch fencing. Clients (librdkafka, Java) use it
//! to detect log truncation after a leader change; followers will use it in cluster mode.

use std::sync::Arc;

use fjord_protocol::kafka_protocol::error::ResponseError;
use fjord_protocol::kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use fjord_protocol::kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use fjord_storage::LeaderEpoch;

use crate::broker::Broker;

/// Kafka's UNDEFINED_EPOCH and UNDEFINED_EPOCH_OFFSET.
const UNDEFINED: i32 = -1;
const UNDEFINED_OFFSET: i64 = -1;

pub(super) async fn handle(broker: &Arc<Broker>, request: OffsetForLeaderEpochRequest) -> OffsetForLeaderEpochResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let result = EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_leader_epoch(UNDEFINED)
                        .with_end_offset(UNDEFINED_OFFSET);
                    let Some(partition) = broker.replicas.get(&t.topic, p.partition) else {
                        return result.with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    };
                    // Fencing, as Kafka's Partition.lastOffsetForLeaderEpoch: -1 means "no check".
                    let current = partition.leader_epoch().0;
                    if p.current_leader_epoch >= 0 && p.current_leader_epoch < current {
                        return result.with_error_code(ResponseError::FencedLeaderEpoch.code());
                    }
                    if p.current_leader_epoch > current {
                        return result.with_error_code(ResponseError::UnknownLeaderEpoch.code());
                    }
                    let log = partition.log.lock();
                    // Kafka assigns the current epoch's start offset when a replica becomes
                    // leader, so the current epoch always ends at the log end offset, even
                    // before its first batch is in the epoch cache.
                    if p.leader_epoch == current {
                        return result
                            .with_leader_epoch(current)
                            .with_end_offset(log.log_end_offset().0);
                    }
                    match log.end_offset_for_epoch(LeaderEpoch(p.leader_epoch)) {
                        Some((epoch, offset)) => result.with_leader_epoch(epoch.0).with_end_offset(offset.0),
                        None => result,
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(t.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
