//! InitProducerId (key 22): a fresh producer id with epoch 0 for an idempotent producer.
//!
//! As in Kafka, a request without a transactional id always gets a new id (also when it names
//! its current id and epoch, KIP-360), from blocks reserved durably in the metadata log. A
//! transactional id is refused with TRANSACTIONAL_ID_AUTHORIZATION_FAILED until transactions
//! exist: clients treat that code as fatal (librdkafka's `rd_kafka_idemp_check_error`, the Java
//! client's InitProducerIdHandler), so `init_transactions` fails at once instead of retrying
//! until a timeout as it would for most other codes, and it says what is true here, that this
//! broker grants no transactional ids. An empty transactional id is INVALID_REQUEST, as in Kafka.

use std::sync::Arc;

use fjord_protocol::kafka_protocol::error::ResponseError;
use fjord_protocol::kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use crate::broker::Broker;

const NO_PRODUCER_ID: i64 = -1;
const NO_PRODUCER_EPOCH: i16 = -1;

pub(super) async fn handle(broker: &Arc<Broker>, request: InitProducerIdRequest) -> InitProducerIdResponse {
    if let Some(txn) = &request.transactional_id {
        if txn.is_empty() {
            return error(ResponseError::InvalidRequest);
        }
        tracing::info!(transactional_id = %txn.0, "refusing a transactional id: transactions are not supported");
        return error(ResponseError::TransactionalIdAuthorizationFailed);
    }
    // v3+: the current id and epoch are both given or both -1.
    match (request.producer_id.0, request.producer_epoch) {
        (NO_PRODUCER_ID, NO_PRODUCER_EPOCH) => {}
        (NO_PRODUCER_ID, _) | (_, NO_PRODUCER_EPOCH) => return error(ResponseError::InvalidRequest),
        _ => {}
    }
    match broker.blocking(|b| b.producer_ids.next_id(b)).await {
        Ok(id) => {
            tracing::debug!(producer_id = id, "initialised idempotent producer");
            InitProducerIdResponse::default()
                .with_producer_id(ProducerId(id))
                .with_producer_epoch(0)
        }
        Err(e) => error(e.code),
    }
}

fn error(code: ResponseError) -> InitProducerIdResponse {
    InitProducerIdResponse::default()
        .with_error_code(code.code())
        .with_producer_id(ProducerId(NO_PRODUCER_ID))
        .with_producer_epoch(NO_PRODUCER_EPOCH)
}
