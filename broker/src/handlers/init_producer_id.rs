//! InitProducerId (key 22).
//!
//! Without a transactional id: a fresh producer id with epoch 0 for an idempotent producer. As
//! in Kafka, such a request always gets a new id (also when it names its current id and epoch,
//! KIP-360), from blocks reserved durably in the metadata log.
//!
//! With a transactional id: the transaction coordinator (`crate::txn`) gives a new id a producer
//! id, or bumps the epoch of an existing one, fencing the previous producer and aborting its open
//! transaction; `transaction_timeout_ms` must be within `transactions.max_timeout`
//! (INVALID_TRANSACTION_TIMEOUT). An empty transactional id is INVALID_REQUEST, as in Kafka.

use std::sync::Arc;

use fjord_protocol::kafka_protocol::error::ResponseError;
use fjord_protocol::kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::broker::Broker;
use crate::txn::{self, ProducerIdAndEpoch};

const NO_PRODUCER_ID: i64 = -1;
const NO_PRODUCER_EPOCH: i16 = -1;

pub(super) async fn handle(
    broker: &Arc<Broker>,
    request: InitProducerIdRequest,
    version: i16,
) -> InitProducerIdResponse {
    // v3+: the current id and epoch are both given or both -1.
    let current = match (request.producer_id.0, request.producer_epoch) {
        (NO_PRODUCER_ID, NO_PRODUCER_EPOCH) => None,
        (NO_PRODUCER_ID, _) | (_, NO_PRODUCER_EPOCH) => return error(ResponseError::InvalidRequest, version),
        (producer_id, epoch) => Some(ProducerIdAndEpoch { producer_id, epoch }),
    };
    if let Some(id) = &request.transactional_id {
        if id.is_empty() {
            return error(ResponseError::InvalidRequest, version);
        }
        return match txn::init_producer_id(broker, id, request.transaction_timeout_ms, current).await {
            Ok(p) => InitProducerIdResponse::default()
                .with_producer_id(ProducerId(p.producer_id))
                .with_producer_epoch(p.epoch),
            Err(code) => {
                tracing::debug!(transactional_id = %id.0, ?code, "init producer id refused");
                error(code, version)
            }
        };
    }
    match broker.blocking(|b| b.producer_ids.next_id(b)).await {
        Ok(id) => {
            tracing::debug!(producer_id = id, "initialised idempotent producer");
            InitProducerIdResponse::default()
                .with_producer_id(ProducerId(id))
                .with_producer_epoch(0)
        }
        Err(e) => error(e.code, version),
    }
}

fn error(code: ResponseError, version: i16) -> InitProducerIdResponse {
    InitProducerIdResponse::default()
        .with_error_code(super::txn_common::code(code, version, 4))
        .with_producer_id(ProducerId(NO_PRODUCER_ID))
        .with_producer_epoch(NO_PRODUCER_EPOCH)
}
