//! SaslHandshake (key 17): chooses the SASL mechanism of a SASL_PLAINTEXT or SASL_SSL
//! connection and lists the enabled ones. v0 and v1 are advertised (librdkafka needs v0 listed
//! to use SASL at all), but tokens are only accepted in SaslAuthenticate: a v0 client that sends
//! raw tokens is closed as a bad request.

use fjord_protocol::kafka_protocol::messages::{SaslHandshakeRequest, SaslHandshakeResponse};

use super::{errors, str_bytes};
use crate::broker::Broker;
use crate::security::{Session, sasl};

pub(super) fn handle(broker: &Broker, session: &Session, request: SaslHandshakeRequest) -> SaslHandshakeResponse {
    let config = &broker.config.sasl;
    let mechanisms = config
        .enabled_mechanisms
        .iter()
        .map(|m| str_bytes(m.as_str()))
        .collect();
    let code = match sasl::handshake(config, session, &request.mechanism) {
        Ok(()) => 0,
        Err(error) => {
            tracing::debug!(peer = %session.peer, mechanism = %request.mechanism.as_str(), ?error, "sasl handshake refused");
            errors::sasl_error_code(&error).code()
        }
    };
    SaslHandshakeResponse::default()
        .with_error_code(code)
        .with_mechanisms(mechanisms)
}
