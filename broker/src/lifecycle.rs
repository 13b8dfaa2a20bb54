//! This broker's lifecycle in the cluster metadata (KIP-631): registration with a fresh
//! incarnation id, rack and listeners, then unfencing once caught up. In the embedded single-node
//! mode the broker is its own controller, so it runs the controller's pure logic
//! (`fjord_metadata::control`) against its own metadata store at start-up.

use fjord_metadata::control::{self, BrokerHeartbeat, BrokerRegistrationRequest, HeartbeatTracker};
use fjord_metadata::{BrokerId, Endpoint, MetadataStore};

use crate::config::BrokerConfig;

/// The listeners this broker advertises, as registered in metadata.
pub fn endpoints(config: &BrokerConfig) -> Vec<Endpoint> {
    // Validated at load; the default listener alone if not.
    let listeners = config.listeners().unwrap_or_default();
    if listeners.is_empty() {
        let (host, port) = config.advertised_listener();
        return vec![Endpoint {
            name: crate::config::DEFAULT_LISTENER.to_string(),
            host,
            port: u16::try_from(port).unwrap_or(9092),
            security_protocol: "PLAINTEXT".to_string(),
        }];
    }
    listeners
        .into_iter()
        .map(|l| Endpoint {
            name: l.name,
            host: l.advertised_host,
            port: u16::try_from(l.advertised_port).unwrap_or(9092),
            security_protocol: l.protocol.name().to_string(),
        })
        .collect()
}

/// Registers this broker (a new incarnation, so a new broker epoch) and unfences it, committing
/// both through the local metadata store. Returns the broker epoch.
pub fn register_locally(store: &MetadataStore, config: &BrokerConfig) -> Result<i64, fjord_metadata::Error> {
    let me = BrokerId(config.node_id);
    let now = crate::clock::now_ms().max(0) as u64;
    // A fresh tracker: the controller restarts with the broker, so the previous incarnation has no
    // live session and is replaced at once.
    let mut tracker = HeartbeatTracker::new(config.cluster.broker_session_timeout.as_millis() as u64);
    let request = BrokerRegistrationRequest {
        broker_id: me,
        incarnation_id: uuid::Uuid::new_v4(),
        rack: config.rack.clone(),
        listeners: endpoints(config),
    };
    let (_, reply) = store.commit_with(|image| {
        let result = control::register_broker(image, &mut tracker, request, now)?;
        Ok((result.records, result.response))
    })?;
    let (image, heartbeat) = store.commit_with(|image| {
        let result = control::heartbeat(
            image,
            &mut tracker,
            BrokerHeartbeat {
                broker_id: me,
                broker_epoch: reply.broker_epoch,
                current_metadata_offset: image.offset,
                want_fence: false,
                want_shutdown: false,
            },
            now,
        )?;
        Ok((result.records, result.response))
    })?;
    let unfenced = image.cluster().is_unfenced(me);
    tracing::info!(node_id = config.node_id, broker_epoch = reply.broker_epoch, rack = ?config.rack,
        caught_up = heartbeat.is_caught_up, unfenced, "registered broker");
    if !unfenced {
        return Err(fjord_metadata::Error::Invalid(format!(
            "broker {} is still fenced after registering",
            config.node_id
        )));
    }
    Ok(reply.broker_epoch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restarted_single_node_registers_a_new_epoch_and_is_unfenced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("metadata.log");
        let config = BrokerConfig {
            rack: Some("a".into()),
            ..BrokerConfig::default()
        };
        let first = {
            let store = MetadataStore::open(&path).expect("opens");
            register_locally(&store, &config).expect("registers")
        };
        let store = MetadataStore::open(&path).expect("reopens");
        let second = register_locally(&store, &config).expect("registers again after a restart");
        assert!(second > first, "epoch {second} after {first}");
        let image = store.image();
        let me = image.cluster().broker(BrokerId(0)).expect("registered");
        assert!(!me.fenced);
        assert_eq!(me.rack.as_deref(), Some("a"));
        assert_eq!(me.listeners[0].port, 9092);
    }
}
