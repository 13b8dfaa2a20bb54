//! DescribeProducers (key 61, KIP-664): the active idempotent producers of each requested
//! partition (id, epoch, last sequence, last timestamp), as `kafka-transactions.sh
//! describe-producers` and the admin clients show them. No transactions yet, so no producer has
//! an open transaction (coordinator epoch and transaction start offset are -1).

use std::sync::Arc;

use fjord_protocol::kafka_protocol::error::ResponseError;
use fjord_protocol::kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use fjord_protocol::kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};

use crate::broker::Broker;

pub(super) fn handle(broker: &Arc<Broker>, request: DescribeProducersRequest) -> DescribeProducersResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partition_indexes
                .iter()
                .map(|&index| {
                    let result = PartitionResponse::default()
                        .with_partition_index(index)
                        .with_error_message(None);
                    let Some(partition) = broker.replicas.get(&t.name, index) else {
                        return result.with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    };
                    let log = partition.log.lock();
                    let mut active: Vec<ProducerState> = log
                        .producers()
                        .map(|(id, entry)| {
                            ProducerState::default()
                                .with_producer_id(ProducerId(id.0))
                                .with_producer_epoch(i32::from(entry.epoch))
                                .with_last_sequence(entry.last_seq().unwrap_or(-1))
                                .with_last_timestamp(entry.last_timestamp)
                                .with_coordinator_epoch(-1)
                                .with_current_txn_start_offset(-1)
                        })
                        .collect();
                    active.sort_by_key(|p| p.producer_id.0);
                    result.with_active_producers(active)
                })
                .collect();
            TopicResponse::default().with_name(t.name).with_partitions(partitions)
        })
        .collect();
    DescribeProducersResponse::default().with_topics(topics)
}
