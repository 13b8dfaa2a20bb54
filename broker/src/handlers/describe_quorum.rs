//! DescribeQuorum (key 55): the metadata quorum's leader, epoch, high watermark, voters and
//! observers, as Kafka's `kafka-metadata-quorum describe` reads them; answered by the active
//! controller (the embedded single node is a quorum of itself).

use std::sync::Arc;

use fjord_protocol::kafka_protocol::messages::describe_quorum_response::{PartitionData, ReplicaState, TopicData};
use fjord_protocol::kafka_protocol::messages::{DescribeQuorumRequest, DescribeQuorumResponse};

use super::{broker_id, str_bytes, topic_name};
use crate::broker::Broker;
use crate::cluster::QuorumReplica;

pub(super) async fn handle(broker: &Arc<Broker>, _request: DescribeQuorumRequest) -> DescribeQuorumResponse {
    let state = match broker.blocking(|b| b.describe_quorum()).await {
        Ok(state) => state,
        Err(e) => {
            return DescribeQuorumResponse::default()
                .with_error_code(e.code.code())
                .with_error_message(Some(str_bytes(e.message)));
        }
    };
    let replica = |r: &QuorumReplica| {
        ReplicaState::default()
            .with_replica_id(broker_id(r.id))
            .with_log_end_offset(r.log_end_offset)
            .with_last_fetch_timestamp(r.last_fetch_timestamp)
            .with_last_caught_up_timestamp(r.last_caught_up_timestamp)
    };
    let partition = PartitionData::default()
        .with_partition_index(0)
        .with_leader_id(broker_id(state.leader_id))
        .with_leader_epoch(state.leader_epoch)
        .with_high_watermark(state.high_watermark)
        .with_current_voters(state.voters.iter().map(replica).collect())
        .with_observers(state.observers.iter().map(replica).collect());
    DescribeQuorumResponse::default().with_topics(vec![
        TopicData::default()
            .with_topic_name(topic_name(crate::controller::CLUSTER_METADATA_TOPIC))
            .with_partitions(vec![partition]),
    ])
}
