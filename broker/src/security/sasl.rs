//! The SASL exchange on a SASL_PLAINTEXT or SASL_SSL connection (Kafka's
//! SaslServerAuthenticator): SaslHandshake picks a mechanism, then SaslAuthenticate carries its
//! tokens. PLAIN checks `authzid\0user\0password` against the configured users; SCRAM runs
//! [`super::scram`] against the credentials in metadata. Any failure ends the exchange and the
//! connection.

use fjord_metadata::security::ScramMechanism;
use subtle::ConstantTimeEq;

use super::Session;
use super::scram::{self, ServerFirst};
use crate::broker::Broker;
use crate::config::SaslConfig;

/// Where a connection's SASL exchange stands.
#[derive(Debug)]
pub enum SaslState {
    /// No SaslHandshake yet.
    Start,
    /// A mechanism was chosen; its first token is next.
    Handshaken(Mechanism),
    /// SCRAM: server-first sent, client-final expected.
    ScramFirst(Box<ServerFirst>),
    /// Authenticated, or failed: no further SASL request is accepted.
    Done,
}

/// A supported SASL mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Scram(ScramMechanism),
}

impl Mechanism {
    pub fn parse(name: &str) -> Option<Mechanism> {
        match name {
            "PLAIN" => Some(Mechanism::Plain),
            other => ScramMechanism::from_name(other).map(Mechanism::Scram),
        }
    }
}

/// Why a SASL request was refused (each maps to a Kafka error code in the handler).
#[derive(Debug, PartialEq, Eq)]
pub enum SaslError {
    /// UNSUPPORTED_SASL_MECHANISM
    UnsupportedMechanism,
    /// ILLEGAL_SASL_STATE
    IllegalState(String),
    /// SASL_AUTHENTICATION_FAILED
    AuthenticationFailed(String),
}

/// SaslHandshake: chooses `mechanism` for this connection.
pub fn handshake(config: &SaslConfig, session: &Session, mechanism: &str) -> Result<(), SaslError> {
    if !session.protocol.sasl() {
        return Err(SaslError::IllegalState(format!(
            "listener {} does not use sasl",
            session.listener
        )));
    }
    let mut state = session.sasl.lock();
    if !matches!(*state, SaslState::Start) {
        return Err(SaslError::IllegalState("unexpected sasl handshake".into()));
    }
    let chosen = Mechanism::parse(mechanism)
        .filter(|_| config.enabled_mechanisms.iter().any(|m| m == mechanism))
        .ok_or(SaslError::UnsupportedMechanism)?;
    *state = SaslState::Handshaken(chosen);
    Ok(())
}

/// SaslAuthenticate: one token of the chosen mechanism. Returns the token to send back; on
/// success of the last step the session's principal is set.
pub fn authenticate(broker: &Broker, session: &Session, token: &[u8]) -> Result<Vec<u8>, SaslError> {
    let mut state = session.sasl.lock();
    match std::mem::replace(&mut *state, SaslState::Done) {
        SaslState::Handshaken(Mechanism::Plain) => {
            let user = check_plain(&broker.config.sasl, token)?;
            session.set_principal(format!("User:{user}"));
            tracing::debug!(peer = %session.peer, user, mechanism = "PLAIN", "sasl authenticated");
            Ok(Vec::new())
        }
        SaslState::Handshaken(Mechanism::Scram(mechanism)) => {
            let (user, nonce, bare, gs2) =
                scram::parse_client_first(token).map_err(|e| SaslError::AuthenticationFailed(e.0))?;
            let Some(credential) = broker.image().scram_credential(&user, mechanism).cloned() else {
                return Err(SaslError::AuthenticationFailed(
                    "Authentication failed: Invalid user credentials".into(),
                ));
            };
            let (first, reply) = ServerFirst::new(mechanism, user, &nonce, bare, gs2, credential);
            *state = SaslState::ScramFirst(Box::new(first));
            Ok(reply)
        }
        SaslState::ScramFirst(first) => {
            let user = first.user.clone();
            let mechanism = first.mechanism;
            let reply = first.finish(token).map_err(|e| SaslError::AuthenticationFailed(e.0))?;
            tracing::debug!(peer = %session.peer, user, mechanism = mechanism.name(), "sasl authenticated");
            session.set_principal(format!("User:{user}"));
            Ok(reply)
        }
        SaslState::Start => Err(SaslError::IllegalState(
            "sasl authenticate before sasl handshake".into(),
        )),
        SaslState::Done => Err(SaslError::IllegalState("sasl authentication already finished".into())),
    }
}

/// PLAIN (RFC 4616): `[authzid] NUL user NUL password`. Returns the user.
fn check_plain(config: &SaslConfig, token: &[u8]) -> Result<String, SaslError> {
    let failed = || SaslError::AuthenticationFailed("Authentication failed: Invalid username or password".into());
    let mut parts = token.split(|b| *b == 0);
    let (Some(authzid), Some(user), Some(password), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::AuthenticationFailed(
            "Invalid SASL/PLAIN response: expected 3 tokens".into(),
        ));
    };
    let user = std::str::from_utf8(user).map_err(|_| failed())?;
    if user.is_empty() {
        return Err(failed());
    }
    if !authzid.is_empty() && authzid != user.as_bytes() {
        return Err(SaslError::AuthenticationFailed(
            "Authentication failed: Client requested an authorization id that is different from username".into(),
        ));
    }
    let expected = plain_password(config, user).ok_or_else(failed)?;
    if bool::from(expected.as_bytes().ct_eq(password)) {
        Ok(user.to_string())
    } else {
        Err(failed())
    }
}

/// The configured PLAIN password of `user`: `sasl.plain_users`, then `sasl.plain_users_file`
/// (read on each login, so edits apply to the next one).
fn plain_password(config: &SaslConfig, user: &str) -> Option<String> {
    if let Some(password) = config.plain_users.get(user) {
        return Some(password.clone());
    }
    let path = config.plain_users_file.as_ref()?;
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "cannot read sasl.plain_users_file");
            return None;
        }
    };
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .find(|(u, _)| *u == user)
        .map(|(_, p)| p.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_tokens() {
        let mut config = SaslConfig::default();
        config.plain_users.insert("alice".into(), "secret".into());
        assert_eq!(check_plain(&config, b"\0alice\0secret"), Ok("alice".into()));
        assert_eq!(check_plain(&config, b"alice\0alice\0secret"), Ok("alice".into()));
        for bad in [
            &b"\0alice\0wrong"[..],
            b"\0bob\0secret",
            b"bob\0alice\0secret",
            b"alice",
            b"\0alice\0secret\0x",
            b"",
        ] {
            assert!(
                matches!(check_plain(&config, bad), Err(SaslError::AuthenticationFailed(_))),
                "{bad:?}"
            );
        }
    }
}
