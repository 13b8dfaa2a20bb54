//! EndTxn (key 26): commits or aborts the producer's transaction; answered once the markers
//! are written and the outcome is stored.

use std::sync::Arc;

use fjord_protocol::kafka_protocol::messages::{EndTxnRequest, EndTxnResponse, ProducerId};

use super::txn_common;
use crate::broker::Broker;
use crate::txn::{self, EndReason, ProducerIdAndEpoch};

pub(super) async fn handle(broker: &Arc<Broker>, request: EndTxnRequest, version: i16) -> EndTxnResponse {
    let id = request.transactional_id.to_string();
    let p = ProducerIdAndEpoch {
        producer_id: request.producer_id.0,
        epoch: request.producer_epoch,
    };
    let result = match txn_common::precheck(broker, &id) {
        Ok(()) => txn::end_txn(broker, &id, p, request.committed, EndReason::Client).await,
        Err(e) => Err(e),
    };
    if let Err(code) = result {
        tracing::debug!(transactional_id = %id, ?code, commit = request.committed, "end txn refused");
    }
    EndTxnResponse::default()
        .with_error_code(result.map_or_else(|e| txn_common::code(e, version, 2), |()| 0))
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
}
