//! WriteTxnMarkers (key 27): the coordinator's request to a partition leader to write commit or
//! abort markers. On one node the coordinator calls the same path (`Broker::write_txn_marker`)
//! directly; this handler serves it to another coordinator (or a tool).

use std::sync::Arc;

use fjord_protocol::kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use fjord_protocol::kafka_protocol::messages::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};

use crate::broker::Broker;

pub(super) async fn handle(broker: &Arc<Broker>, request: WriteTxnMarkersRequest) -> WriteTxnMarkersResponse {
    let results = broker
        .blocking(move |b| {
            request
                .markers
                .iter()
                .map(|m| {
                    let topics = m
                        .topics
                        .iter()
                        .map(|t| {
                            let partitions = t
                                .partition_indexes
                                .iter()
                                .map(|&p| {
                                    let code = match b.write_txn_marker(
                                        &t.name,
                                        p,
                                        m.producer_id.0,
                                        m.producer_epoch,
                                        m.transaction_result,
                                        m.coordinator_epoch,
                                    ) {
                                        Ok(()) => 0,
                                        Err(e) => e.code(),
                                    };
                                    WritableTxnMarkerPartitionResult::default()
                                        .with_partition_index(p)
                                        .with_error_code(code)
                                })
                                .collect();
                            WritableTxnMarkerTopicResult::default()
                                .with_name(t.name.clone())
                                .with_partitions(partitions)
                        })
                        .collect();
                    WritableTxnMarkerResult::default()
                        .with_producer_id(m.producer_id)
                        .with_topics(topics)
                })
                .collect::<Vec<_>>()
        })
        .await;
    broker.replicas.flusher.wait_durable().await;
    WriteTxnMarkersResponse::default().with_markers(results)
}
