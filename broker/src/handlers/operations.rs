//! Authorized-operation bit sets (KIP-430) for Metadata, DescribeCluster, DescribeGroups and
//! ConsumerGroupDescribe. Without an authorizer every supported operation of a resource type is
//! allowed, which is what Kafka answers when no authorizer is configured.

/// Kafka's "authorized operations were not requested" marker.
pub(super) const NOT_REQUESTED: i32 = i32::MIN;

/// Kafka `AclOperation` codes.
const READ: i32 = 3;
const WRITE: i32 = 4;
const CREATE: i32 = 5;
const DELETE: i32 = 6;
const ALTER: i32 = 7;
const DESCRIBE: i32 = 8;
const CLUSTER_ACTION: i32 = 9;
const DESCRIBE_CONFIGS: i32 = 10;
const ALTER_CONFIGS: i32 = 11;
const IDEMPOTENT_WRITE: i32 = 12;

const fn bits(ops: &[i32]) -> i32 {
    let mut out = 0;
    let mut i = 0;
    while i < ops.len() {
        out |= 1 << ops[i];
        i += 1;
    }
    out
}

/// Topic: READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS.
pub(super) const TOPIC: i32 = bits(&[
    READ,
    WRITE,
    CREATE,
    DELETE,
    ALTER,
    DESCRIBE,
    DESCRIBE_CONFIGS,
    ALTER_CONFIGS,
]);
/// Cluster: CREATE, ALTER, DESCRIBE, CLUSTER_ACTION, DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE.
pub(super) const CLUSTER: i32 = bits(&[
    CREATE,
    ALTER,
    DESCRIBE,
    CLUSTER_ACTION,
    DESCRIBE_CONFIGS,
    ALTER_CONFIGS,
    IDEMPOTENT_WRITE,
]);
/// Group (Kafka 4.x): READ, DELETE, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS.
pub(super) const GROUP: i32 = bits(&[READ, DELETE, DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS]);

/// The set to answer: `all` if the client asked for it, else the not-requested marker.
pub(super) fn answer(requested: bool, all: i32) -> i32 {
    if requested { all } else { NOT_REQUESTED }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_sets_match_kafka() {
        // Values Kafka's AdminClient decodes to the documented operation sets.
        assert_eq!(TOPIC, 0b1101_1111_1000);
        assert_eq!(CLUSTER, 0b1_1111_1010_0000);
        assert_eq!(GROUP, 0b1101_0100_1000);
        assert_eq!(answer(false, TOPIC), i32::MIN);
    }
}
