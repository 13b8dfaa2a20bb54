//! ApiVersions (key 18): the versions this broker implements, straight from
//! `fjord_protocol::SUPPORTED_APIS`, and the v0 fallback for a too-new request (KIP-511).

use fjord_protocol::SUPPORTED_APIS;
use fjord_protocol::kafka_protocol::error::ResponseError;
use fjord_protocol::kafka_protocol::messages::api_versions_response::ApiVersion;
use fjord_protocol::kafka_protocol::messages::{ApiKey, ApiVersionsResponse, ResponseKind};

use super::Reply;

fn api_keys() -> Vec<ApiVersion> {
    SUPPORTED_APIS
        .iter()
        .map(|a| {
            ApiVersion::default()
                .with_api_key(a.key as i16)
                .with_min_version(a.min)
                .with_max_version(a.max)
        })
        .collect()
}

pub fn handle() -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_api_keys(api_keys())
        .with_finalized_features_epoch(-1)
}

/// The answer to an ApiVersions request at a version we do not know: UNSUPPORTED_VERSION,
/// encoded as v0, listing our ranges so the client retries at the highest common version.
pub fn unsupported_version(correlation_id: i32) -> Reply {
    let body = ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(api_keys());
    Reply::Response {
        api_key: ApiKey::ApiVersions,
        version: 0,
        correlation_id,
        body: Box::new(ResponseKind::ApiVersions(body)),
    }
}
