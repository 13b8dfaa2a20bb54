//! The one place where internal errors become Kafka error codes, and where returned codes are
//! counted for /metrics.

use fjord_protocol::kafka_protocol::error::ResponseError;
use fjord_protocol::kafka_protocol::messages::{ApiKey, ResponseKind};
use fjord_storage::{BatchError, Error as StorageError, RecordErrorKind};

use crate::metrics::Metrics;

/// Kafka error code for a storage failure on the produce or fetch path.
pub(super) fn storage_error_code(error: &StorageError) -> ResponseError {
    match error {
        StorageError::Batch(batch) => batch_error_code(batch),
        StorageError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        StorageError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
        StorageError::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
        StorageError::InvalidSequence { .. } => ResponseError::InvalidRecord,
        StorageError::InvalidControlBatch { .. } => ResponseError::InvalidRecord,
        // A stored batch that cannot be read (Kafka's CorruptRecordException).
        StorageError::CorruptBatch { .. } => ResponseError::CorruptMessage,
        _ => ResponseError::KafkaStorageError,
    }
}

/// Kafka error code for an invalid record batch.
pub(super) fn batch_error_code(error: &BatchError) -> ResponseError {
    match error {
        BatchError::TooLarge { .. } | BatchError::DecompressedTooLarge { .. } => ResponseError::MessageTooLarge,
        BatchError::InvalidRecordCount { .. }
        | BatchError::InvalidRecords(_)
        | BatchError::ControlBatch
        | BatchError::Empty => ResponseError::InvalidRecord,
        // Kafka's LogValidator.processRecordErrors: any bad timestamp makes it INVALID_TIMESTAMP.
        BatchError::RejectedRecords { errors, .. } => {
            if errors.iter().any(|e| e.kind == RecordErrorKind::InvalidTimestamp) {
                ResponseError::InvalidTimestamp
            } else {
                ResponseError::InvalidRecord
            }
        }
        _ => ResponseError::CorruptMessage,
    }
}

/// Counts every non-zero partition/topic error code in a Produce or Fetch response.
pub(super) fn count_errors(metrics: &Metrics, api: ApiKey, body: &ResponseKind) {
    match body {
        ResponseKind::Produce(r) => {
            for p in r.responses.iter().flat_map(|t| &t.partition_responses) {
                metrics.error_code(api, p.error_code);
            }
        }
        ResponseKind::Fetch(r) => {
            metrics.error_code(api, r.error_code);
            for p in r.responses.iter().flat_map(|t| &t.partitions) {
                metrics.error_code(api, p.error_code);
            }
        }
        _ => {}
    }
}

/// Kafka sends a null `error_message` with a success (`ApiError.NONE` has no message); the codec's
/// defaults are empty strings, which clients print as an empty error. Applied to every response
/// before it is encoded.
pub(super) fn null_success_messages(body: &mut ResponseKind) {
    fn clear(code: i16, message: &mut Option<fjord_protocol::kafka_protocol::protocol::StrBytes>) {
        if code == 0 && message.as_deref().is_some_and(str::is_empty) {
            *message = None;
        }
    }
    match body {
        ResponseKind::CreateTopics(r) => r
            .topics
            .iter_mut()
            .for_each(|t| clear(t.error_code, &mut t.error_message)),
        ResponseKind::AlterConfigs(r) => r
            .responses
            .iter_mut()
            .for_each(|t| clear(t.error_code, &mut t.error_message)),
        ResponseKind::IncrementalAlterConfigs(r) => r
            .responses
            .iter_mut()
            .for_each(|t| clear(t.error_code, &mut t.error_message)),
        ResponseKind::DescribeConfigs(r) => r
            .results
            .iter_mut()
            .for_each(|t| clear(t.error_code, &mut t.error_message)),
        ResponseKind::CreatePartitions(r) => r
            .results
            .iter_mut()
            .for_each(|t| clear(t.error_code, &mut t.error_message)),
        ResponseKind::DeleteTopics(r) => r
            .responses
            .iter_mut()
            .for_each(|t| clear(t.error_code, &mut t.error_message)),
        _ => {}
    }
}

/// Kafka error code for a refused SASL step.
pub(super) fn sasl_error_code(error: &crate::security::sasl::SaslError) -> ResponseError {
    use crate::security::sasl::SaslError;
    match error {
        SaslError::UnsupportedMechanism => ResponseError::UnsupportedSaslMechanism,
        SaslError::IllegalState(_) => ResponseError::IllegalSaslState,
        SaslError::AuthenticationFailed(_) => ResponseError::SaslAuthenticationFailed,
    }
}

/// Kafka error code for an authorization denied on a resource of `resource_type`.
pub(super) fn authorization_error(resource_type: fjord_metadata::security::ResourceType) -> ResponseError {
    use fjord_metadata::security::ResourceType;
    match resource_type {
        ResourceType::Topic => ResponseError::TopicAuthorizationFailed,
        ResourceType::Group => ResponseError::GroupAuthorizationFailed,
        ResourceType::Cluster => ResponseError::ClusterAuthorizationFailed,
        ResourceType::TransactionalId => ResponseError::TransactionalIdAuthorizationFailed,
    }
}
