//! What the transactional APIs share: the coordinator precheck and Kafka's downgrade of
//! PRODUCER_FENCED to INVALID_PRODUCER_EPOCH for clients that predate it (KIP-588).

use fjord_protocol::kafka_protocol::error::ResponseError;

use crate::broker::Broker;

/// A transactional id must be non-empty, coordinated here (NOT_COORDINATOR: the client looks
/// the coordinator up again) and the coordinator loaded.
pub(super) fn precheck(broker: &Broker, transactional_id: &str) -> Result<(), ResponseError> {
    if transactional_id.is_empty() {
        return Err(ResponseError::InvalidRequest);
    }
    if !broker.txn.is_loaded() {
        return Err(ResponseError::CoordinatorLoadInProgress);
    }
    if !broker.txn.coordinates(broker, transactional_id) {
        return Err(ResponseError::NotCoordinator);
    }
    Ok(())
}

/// PRODUCER_FENCED as a request of `version` reports it: requests older than
/// `first_fenced_version` get INVALID_PRODUCER_EPOCH, as Kafka answers them.
pub(super) fn code(error: ResponseError, version: i16, first_fenced_version: i16) -> i16 {
    match error {
        ResponseError::ProducerFenced if version < first_fenced_version => ResponseError::InvalidProducerEpoch.code(),
        e => e.code(),
    }
}
