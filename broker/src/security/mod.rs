//! Connection security: the per-connection [`Session`] (listener, peer, authenticated
//! principal, SASL exchange in progress), TLS acceptors from PEM files ([`tls`]), the SASL
//! mechanisms PLAIN and SCRAM-SHA-256/512 ([`sasl`], [`scram`]) and the ACL check handlers call
//! ([`Broker::authorize`]).

pub mod admin;
pub mod sasl;
pub mod scram;
pub mod tls;

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use fjord_metadata::security::{AclOperation, AuthorizerSettings, ResourceType};
use parking_lot::Mutex;

use crate::broker::Broker;
use crate::config::SecurityProtocol;

/// The principal of a connection that did not authenticate (Kafka's `User:ANONYMOUS`).
pub const ANONYMOUS: &str = "User:ANONYMOUS";

/// The name of the one cluster resource ACLs on CLUSTER name (Kafka's `kafka-cluster`).
pub const CLUSTER_RESOURCE: &str = "kafka-cluster";

/// What a connection's requests are answered as: the listener it came in on, the client's
/// address and, once known, its principal.
#[derive(Debug)]
pub struct Session {
    pub listener: Arc<str>,
    pub protocol: SecurityProtocol,
    pub peer: SocketAddr,
    principal: OnceLock<String>,
    /// The SASL exchange in progress on a SASL listener.
    pub(crate) sasl: Mutex<sasl::SaslState>,
}

impl Session {
    /// A session on `listener`. Without SASL the principal is known at once: `tls_principal`
    /// (a client certificate's subject) or `User:ANONYMOUS`.
    pub fn new(
        listener: Arc<str>,
        protocol: SecurityProtocol,
        peer: SocketAddr,
        tls_principal: Option<String>,
    ) -> Session {
        let principal = OnceLock::new();
        if !protocol.sasl() {
            let _ = principal.set(tls_principal.unwrap_or_else(|| ANONYMOUS.to_string()));
        }
        Session {
            listener,
            protocol,
            peer,
            principal,
            sasl: Mutex::new(sasl::SaslState::Start),
        }
    }

    /// The authenticated principal, `None` while SASL authentication has not succeeded.
    pub fn principal(&self) -> Option<&str> {
        self.principal.get().map(String::as_str)
    }

    pub(crate) fn set_principal(&self, principal: String) {
        let _ = self.principal.set(principal);
    }
}

impl Broker {
    /// Whether `session`'s principal may do `operation` on the resource `name` of `resource_type`
    /// (Kafka's authorizer; every request is allowed while `authorizer.enabled` is off).
    pub fn authorize(
        &self,
        session: &Session,
        operation: AclOperation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        let config = &self.config.authorizer;
        if !config.enabled {
            return true;
        }
        let principal = session.principal().unwrap_or(ANONYMOUS);
        let settings = AuthorizerSettings {
            super_users: config.super_users.clone(),
            allow_everyone_if_no_acl_found: config.allow_everyone_if_no_acl_found,
        };
        let image = self.image();
        let allowed = fjord_metadata::security::authorize(
            image.acls(),
            &settings,
            principal,
            &session.peer.ip().to_string(),
            operation,
            resource_type,
            name,
        );
        if !allowed {
            tracing::debug!(
                principal,
                ?operation,
                ?resource_type,
                resource = name,
                "authorization denied"
            );
        }
        allowed
    }

    /// [`Broker::authorize`] on the cluster resource.
    pub fn authorize_cluster(&self, session: &Session, operation: AclOperation) -> bool {
        self.authorize(session, operation, ResourceType::Cluster, CLUSTER_RESOURCE)
    }
}
