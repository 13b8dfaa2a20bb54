//! SaslAuthenticate (key 36): one token of the connection's SASL exchange. A failure answers
//! with its error (SASL_AUTHENTICATION_FAILED for wrong credentials) and closes the connection,
//! as Kafka does.

use bytes::Bytes;
use fjord_protocol::kafka_protocol::messages::{SaslAuthenticateRequest, SaslAuthenticateResponse};

use super::{errors, str_bytes};
use crate::broker::Broker;
use crate::security::{Session, sasl};

/// The response, and whether the connection must close after it.
pub(super) fn handle(
    broker: &Broker,
    session: &Session,
    request: SaslAuthenticateRequest,
) -> (SaslAuthenticateResponse, bool) {
    match sasl::authenticate(broker, session, &request.auth_bytes) {
        Ok(token) => (
            SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from(token)),
            false,
        ),
        Err(error) => {
            broker.metrics.network.sasl_authentication_failures.inc();
            let message = match &error {
                sasl::SaslError::UnsupportedMechanism => "unsupported sasl mechanism".to_string(),
                sasl::SaslError::IllegalState(m) | sasl::SaslError::AuthenticationFailed(m) => m.clone(),
            };
            tracing::info!(peer = %session.peer, listener = %session.listener, message, "sasl authentication failed, closing connection");
            (
                SaslAuthenticateResponse::default()
                    .with_error_code(errors::sasl_error_code(&error).code())
                    .with_error_message(Some(str_bytes(message))),
                true,
            )
        }
    }
}
