//! CreatePartitions (key 37): grow a topic's partition count, optionally with manual replica
//! assignments for the new partitions; shrinking is INVALID_PARTITIONS.

use std::sync::Arc;

use fjord_protocol::kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use fjord_protocol::kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::str_bytes;
use crate::broker::Broker;

pub(super) async fn handle(broker: &Arc<Broker>, request: CreatePartitionsRequest) -> CreatePartitionsResponse {
    broker
        .blocking(move |broker| {
            let results = request
                .topics
                .into_iter()
                .map(|t| {
                    let result = CreatePartitionsTopicResult::default().with_name(t.name.clone());
                    let assignments: Option<Vec<Vec<i32>>> = t
                        .assignments
                        .as_ref()
                        .map(|a| a.iter().map(|a| a.broker_ids.iter().map(|b| b.0).collect()).collect());
                    match broker.create_partitions(&t.name, t.count, assignments.as_deref(), request.validate_only) {
                        Ok(()) => result,
                        Err(e) => result
                            .with_error_code(e.code.code())
                            .with_error_message(Some(str_bytes(e.message))),
                    }
                })
                .collect();
            CreatePartitionsResponse::default().with_results(results)
        })
        .await
}
