//! The one place admin-API failures become gRPC status codes. Kafka-level refusals from the
//! controller keep their Kafka error code in the `fjord-kafka-error` response metadata.

use fjord_api::KAFKA_ERROR_METADATA_KEY;
use fjord_protocol::kafka_protocol::error::ResponseError;
use tonic::{Code, Status};

use crate::controller::ApiError;

/// Why an admin request failed.
#[derive(Debug)]
pub enum AdminError {
    /// Refused by the controller with a Kafka error code.
    Kafka(ApiError),
    /// An unknown broker (topics come back as `Kafka(UnknownTopicOrPartition)`).
    NotFound(String),
    /// Valid request, but the current state refuses it (e.g. fewer partitions).
    FailedPrecondition(String),
    /// The request itself is malformed.
    InvalidArgument(String),
    /// The broker is shutting down.
    Unavailable(String),
}

impl From<ApiError> for AdminError {
    fn from(error: ApiError) -> Self {
        AdminError::Kafka(error)
    }
}

/// gRPC code for a Kafka error code.
fn code_for(error: &ResponseError) -> Code {
    use ResponseError as E;
    match error {
        E::TopicAlreadyExists => Code::AlreadyExists,
        E::UnknownTopicOrPartition | E::UnknownTopicId => Code::NotFound,
        E::InvalidTopicException
        | E::InvalidPartitions
        | E::InvalidReplicationFactor
        | E::InvalidConfig
        | E::InvalidRequest
        | E::PolicyViolation => Code::InvalidArgument,
        E::NotController | E::LeaderNotAvailable | E::BrokerNotAvailable => Code::Unavailable,
        _ => Code::Internal,
    }
}

impl From<AdminError> for Status {
    fn from(error: AdminError) -> Status {
        match error {
            AdminError::Kafka(ApiError { code, message }) => {
                let mut status = Status::new(code_for(&code), message);
                if let Ok(value) = format!("{code:?}").parse() {
                    status.metadata_mut().insert(KAFKA_ERROR_METADATA_KEY, value);
                }
                status
            }
            AdminError::NotFound(m) => Status::not_found(m),
            AdminError::FailedPrecondition(m) => Status::failed_precondition(m),
            AdminError::InvalidArgument(m) => Status::invalid_argument(m),
            AdminError::Unavailable(m) => Status::unavailable(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_codes_map_to_grpc_codes_with_the_kafka_code_in_metadata() {
        let status = Status::from(AdminError::Kafka(ApiError::new(
            ResponseError::TopicAlreadyExists,
            "taken",
        )));
        assert_eq!(status.code(), Code::AlreadyExists);
        assert_eq!(status.message(), "taken");
        assert_eq!(
            status
                .metadata()
                .get(KAFKA_ERROR_METADATA_KEY)
                .and_then(|v| v.to_str().ok()),
            Some("TopicAlreadyExists")
        );
        for (kafka, grpc) in [
            (ResponseError::UnknownTopicOrPartition, Code::NotFound),
            (ResponseError::InvalidPartitions, Code::InvalidArgument),
            (ResponseError::InvalidConfig, Code::InvalidArgument),
            (ResponseError::KafkaStorageError, Code::Internal),
        ] {
            assert_eq!(Status::from(AdminError::Kafka(ApiError::new(kafka, "x"))).code(), grpc);
        }
        assert_eq!(
            Status::from(AdminError::FailedPrecondition("x".into())).code(),
            Code::FailedPrecondition
        );
    }
}
