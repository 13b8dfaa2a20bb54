//! Dynamic consumer-group configs (KIP-848 group config resources, Kafka's `GroupConfig`):
//! which keys exist, their broker-level defaults, validation, and the effective group settings
//! the coordinator runs a group with. Overrides live in the metadata image
//! (`ConfigResource::Group`), set through IncrementalAlterConfigs on a GROUP resource.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::GroupConfig;

pub const SESSION_TIMEOUT: &str = "group.consumer.session.timeout.ms";
pub const HEARTBEAT_INTERVAL: &str = "group.consumer.heartbeat.interval.ms";

/// Every group config key, in describe order.
pub const KEYS: [&str; 2] = [SESSION_TIMEOUT, HEARTBEAT_INTERVAL];

/// The broker-level default of a group config key, as Kafka prints it.
pub fn broker_default(config: &GroupConfig, key: &str) -> Option<String> {
    match key {
        SESSION_TIMEOUT => Some(config.consumer_session_timeout.as_millis().to_string()),
        HEARTBEAT_INTERVAL => Some(config.consumer_heartbeat_interval.as_millis().to_string()),
        _ => None,
    }
}

/// Checks a group's complete override set: known keys, positive integers, and a heartbeat
/// interval below the session timeout (taking broker defaults for what is not overridden).
pub fn validate(config: &GroupConfig, overrides: &BTreeMap<String, String>) -> Result<(), String> {
    for (key, value) in overrides {
        if !KEYS.contains(&key.as_str()) {
            return Err(format!("unknown group config {key}"));
        }
        match value.trim().parse::<i32>() {
            Ok(v) if v > 0 => {}
            _ => {
                return Err(format!(
                    "invalid value {value:?} for {key}: expected a positive integer"
                ));
            }
        }
    }
    let effective = effective(config, overrides);
    if effective.consumer_heartbeat_interval >= effective.consumer_session_timeout {
        return Err(format!(
            "{HEARTBEAT_INTERVAL} ({} ms) must be less than {SESSION_TIMEOUT} ({} ms)",
            effective.consumer_heartbeat_interval.as_millis(),
            effective.consumer_session_timeout.as_millis()
        ));
    }
    Ok(())
}

/// The group settings with a group's overrides applied (invalid values are ignored: they were
/// refused when set).
pub fn effective(config: &GroupConfig, overrides: &BTreeMap<String, String>) -> GroupConfig {
    let mut out = config.clone();
    let ms = |key: &str| {
        overrides
            .get(key)
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|v| *v > 0)
            .map(Duration::from_millis)
    };
    if let Some(v) = ms(SESSION_TIMEOUT) {
        out.consumer_session_timeout = v;
    }
    if let Some(v) = ms(HEARTBEAT_INTERVAL) {
        out.consumer_heartbeat_interval = v;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overrides(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn overrides_apply_and_are_validated() {
        let base = GroupConfig::default();
        let o = overrides(&[(SESSION_TIMEOUT, "2000"), (HEARTBEAT_INTERVAL, "500")]);
        assert!(validate(&base, &o).is_ok());
        let e = effective(&base, &o);
        assert_eq!(e.consumer_session_timeout, Duration::from_millis(2000));
        assert_eq!(e.consumer_heartbeat_interval, Duration::from_millis(500));
        // The default heartbeat (5 s) is not below a 2 s session timeout.
        assert!(validate(&base, &overrides(&[(SESSION_TIMEOUT, "2000")])).is_err());
        assert!(validate(&base, &overrides(&[(SESSION_TIMEOUT, "-1")])).is_err());
        assert!(validate(&base, &overrides(&[("group.consumer.nope", "1")])).is_err());
    }
}
