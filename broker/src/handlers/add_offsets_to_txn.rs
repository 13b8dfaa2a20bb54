//! AddOffsetsToTxn (key 25): adds the group's `__consumer_offsets` partition to the producer's
//! transaction, so that its TxnOffsetCommit records get the transaction's marker.

use std::sync::Arc;

use fjord_protocol::kafka_protocol::error::ResponseError;
use fjord_protocol::kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};

use super::txn_common;
use crate::broker::Broker;
use crate::txn::{self, ProducerIdAndEpoch};

pub(super) async fn handle(
    broker: &Arc<Broker>,
    request: AddOffsetsToTxnRequest,
    version: i16,
) -> AddOffsetsToTxnResponse {
    let id = request.transactional_id.to_string();
    let result = async {
        txn_common::precheck(broker, &id)?;
        if request.group_id.is_empty() {
            return Err(ResponseError::InvalidGroupId);
        }
        broker
            .blocking(|b| b.ensure_offsets_topic())
            .await
            .map_err(|_| ResponseError::CoordinatorNotAvailable)?;
        let index = crate::group::partition_for(&request.group_id, broker.groups.config.offsets_topic_partitions);
        let p = ProducerIdAndEpoch {
            producer_id: request.producer_id.0,
            epoch: request.producer_epoch,
        };
        txn::add_partitions(broker, &id, p, vec![(crate::group::OFFSETS_TOPIC.to_string(), index)]).await
    }
    .await;
    AddOffsetsToTxnResponse::default().with_error_code(match result {
        Ok(()) => 0,
        Err(e) => txn_common::code(e, version, 2),
    })
}
