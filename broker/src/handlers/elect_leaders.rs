//! ElectLeaders (key 43): preferred (KIP-460) and unclean leader election, run by the active
//! controller. Unknown election types get INVALID_REQUEST for each partition.

use std::sync::Arc;

use fjord_protocol::kafka_protocol::error::ResponseError;
use fjord_protocol::kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use fjord_protocol::kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse};

use super::{str_bytes, topic_name};
use crate::broker::Broker;

/// Kafka's election types: 0 = PREFERRED, 1 = UNCLEAN.
const PREFERRED: i8 = 0;
const UNCLEAN: i8 = 1;

pub(super) async fn handle(broker: &Arc<Broker>, request: ElectLeadersRequest) -> ElectLeadersResponse {
    let wanted: Option<Vec<(String, i32)>> = request.topic_partitions.as_ref().map(|topics| {
        topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(move |p| (t.topic.to_string(), *p)))
            .collect()
    });
    let results = if request.election_type != PREFERRED && request.election_type != UNCLEAN {
        let message = format!(
            "election type {} is not supported; only PREFERRED (0) and UNCLEAN (1)",
            request.election_type
        );
        Ok(wanted
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|(t, p)| {
                let error = crate::cluster::WireError {
                    code: ResponseError::InvalidRequest.code(),
                    message: message.clone(),
                };
                (t, p, Some(error))
            })
            .collect())
    } else {
        let unclean = request.election_type == UNCLEAN;
        broker.blocking(move |b| b.elect_leaders(unclean, wanted)).await
    };
    let results = match results {
        Ok(results) => results,
        Err(e) => {
            return ElectLeadersResponse::default().with_error_code(e.code.code());
        }
    };
    let mut by_topic: std::collections::BTreeMap<String, Vec<PartitionResult>> = std::collections::BTreeMap::new();
    for (topic, partition, error) in results {
        let (code, message) = match error {
            Some(e) => (e.code, Some(str_bytes(e.message))),
            None => (0, None),
        };
        by_topic.entry(topic).or_default().push(
            PartitionResult::default()
                .with_partition_id(partition)
                .with_error_code(code)
                .with_error_message(message),
        );
    }
    ElectLeadersResponse::default().with_replica_election_results(
        by_topic
            .into_iter()
            .map(|(topic, partitions)| {
                ReplicaElectionResult::default()
                    .with_topic(topic_name(topic))
                    .with_partition_result(partitions)
            })
            .collect(),
    )
}
