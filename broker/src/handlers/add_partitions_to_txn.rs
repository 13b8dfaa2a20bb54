//! AddPartitionsToTxn (key 24): adds partitions to a producer's transaction before it writes to
//! them. v0-v3 carry one transaction; v4 batches transactions and may only verify
//! (`verify_only`, KIP-890: is each partition already in the transaction?). Unknown partitions
//! get UNKNOWN_TOPIC_OR_PARTITION and the others OPERATION_NOT_ATTEMPTED, as in Kafka.

use std::sync::Arc;

use fjord_protocol::kafka_protocol::error::ResponseError;
use fjord_protocol::kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use fjord_protocol::kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use fjord_protocol::kafka_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse};

use super::txn_common;
use crate::broker::Broker;
use crate::txn::{self, ProducerIdAndEpoch};

pub(super) async fn handle(
    broker: &Arc<Broker>,
    request: AddPartitionsToTxnRequest,
    version: i16,
) -> AddPartitionsToTxnResponse {
    if version <= 3 {
        let results = add(
            broker,
            request.v3_and_below_transactional_id.as_str(),
            request.v3_and_below_producer_id.0,
            request.v3_and_below_producer_epoch,
            &request.v3_and_below_topics,
            false,
            version,
        )
        .await;
        return AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results);
    }
    let mut out = Vec::with_capacity(request.transactions.len());
    for t in &request.transactions {
        let results = add(
            broker,
            t.transactional_id.as_str(),
            t.producer_id.0,
            t.producer_epoch,
            &t.topics,
            t.verify_only,
            version,
        )
        .await;
        out.push(
            AddPartitionsToTxnResult::default()
                .with_transactional_id(t.transactional_id.clone())
                .with_topic_results(results),
        );
    }
    AddPartitionsToTxnResponse::default().with_results_by_transaction(out)
}

async fn add(
    broker: &Arc<Broker>,
    transactional_id: &str,
    producer_id: i64,
    epoch: i16,
    topics: &[AddPartitionsToTxnTopic],
    verify_only: bool,
    version: i16,
) -> Vec<AddPartitionsToTxnTopicResult> {
    let image = broker.image();
    let known = |topic: &str, p: i32| {
        image
            .topic(topic)
            .is_some_and(|t| p >= 0 && (p as usize) < t.partitions.len())
    };
    let all: Vec<(String, i32)> = topics
        .iter()
        .flat_map(|t| t.partitions.iter().map(|p| (t.name.to_string(), *p)))
        .collect();
    let p = ProducerIdAndEpoch { producer_id, epoch };
    let any_unknown = all.iter().any(|(t, i)| !known(t, *i));
    // One outcome for every partition, or per partition for verification.
    let per_partition: Vec<i16> = if let Err(e) = txn_common::precheck(broker, transactional_id) {
        vec![e.code(); all.len()]
    } else if any_unknown {
        all.iter()
            .map(|(t, i)| {
                if known(t, *i) {
                    ResponseError::OperationNotAttempted.code()
                } else {
                    ResponseError::UnknownTopicOrPartition.code()
                }
            })
            .collect()
    } else if verify_only {
        all.iter()
            .map(|(t, i)| match broker.txn.verify_partition(transactional_id, p, t, *i) {
                Ok(()) => 0,
                Err(e) => e.code(),
            })
            .collect()
    } else {
        let code = match txn::add_partitions(broker, transactional_id, p, all.clone()).await {
            Ok(()) => 0,
            Err(e) => txn_common::code(e, version, 2),
        };
        vec![code; all.len()]
    };
    let mut codes = per_partition.into_iter();
    topics
        .iter()
        .map(|t| {
            AddPartitionsToTxnTopicResult::default()
                .with_name(t.name.clone())
                .with_results_by_partition(
                    t.partitions
                        .iter()
                        .map(|p| {
                            AddPartitionsToTxnPartitionResult::default()
                                .with_partition_index(*p)
                                .with_partition_error_code(codes.next().unwrap_or(0))
                        })
                        .collect(),
                )
        })
        .collect()
}
