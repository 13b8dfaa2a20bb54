//! The API versions this broker implements. ApiVersions is answered from this table, and a request
//! at a version outside it is never decoded (kafka.md §2 pitfall 3: advertise only what we decode
//! and implement, never `ApiKey::valid_versions()`).

use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, DescribeTransactionsRequest, EndTxnRequest,
    InitProducerIdRequest, ListTransactionsRequest, TxnOffsetCommitRequest, WriteTxnMarkersRequest,
};
use kafka_protocol::messages::{
    AlterConfigsRequest, ApiKey, ApiVersionsRequest, ConsumerGroupDescribeRequest, ConsumerGroupHeartbeatRequest,
    CreatePartitionsRequest, CreateTopicsRequest, DeleteGroupsRequest, DeleteRecordsRequest, DeleteTopicsRequest,
    DescribeClusterRequest, DescribeConfigsRequest, DescribeGroupsRequest, DescribeLogDirsRequest,
    DescribeProducersRequest, DescribeQuorumRequest, ElectLeadersRequest, FetchRequest, FindCoordinatorRequest,
    HeartbeatRequest, IncrementalAlterConfigsRequest, JoinGroupRequest, LeaveGroupRequest, ListGroupsRequest,
    ListOffsetsRequest, MetadataRequest, OffsetCommitRequest, OffsetDeleteRequest, OffsetFetchRequest,
    OffsetForLeaderEpochRequest, ProduceRequest, SaslAuthenticateRequest, SaslHandshakeRequest, SyncGroupRequest,
};
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest,
    DescribeUserScramCredentialsRequest,
};
use kafka_protocol::protocol::Message;

/// One API the broker serves and the inclusive version range it decodes and implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SupportedApi {
    pub key: ApiKey,
    pub min: i16,
    pub max: i16,
}

const fn api(key: ApiKey, min: i16, max: i16, cap: i16) -> SupportedApi {
    SupportedApi {
        key,
        min,
        max: if max < cap { max } else { cap },
    }
}

/// Every API the broker answers. `cap` is the highest version whose semantics are implemented;
/// the lower bound and the codec's ceiling come from the message structs themselves.
pub const SUPPORTED_APIS: &[SupportedApi] = &[
    // v0 is advertised because librdkafka requires it to enable SASL at all, but a client that
    // then sends raw (unframed-header) tokens is closed: every current client uses v1 with
    // SaslAuthenticate.
    api(
        ApiKey::SaslHandshake,
        SaslHandshakeRequest::VERSIONS.min,
        SaslHandshakeRequest::VERSIONS.max,
        1,
    ),
    api(
        ApiKey::CreateAcls,
        CreateAclsRequest::VERSIONS.min,
        CreateAclsRequest::VERSIONS.max,
        3,
    ),
    api(
        ApiKey::DescribeAcls,
        DescribeAclsRequest::VERSIONS.min,
        DescribeAclsRequest::VERSIONS.max,
        3,
    ),
    api(
        ApiKey::DeleteAcls,
        DeleteAclsRequest::VERSIONS.min,
        DeleteAclsRequest::VERSIONS.max,
        3,
    ),
    api(
        ApiKey::AlterUserScramCredentials,
        AlterUserScramCredentialsRequest::VERSIONS.min,
        AlterUserScramCredentialsRequest::VERSIONS.max,
        0,
    ),
    api(
        ApiKey::DescribeUserScramCredentials,
        DescribeUserScramCredentialsRequest::VERSIONS.min,
        DescribeUserScramCredentialsRequest::VERSIONS.max,
        0,
    ),
    api(
        ApiKey::SaslAuthenticate,
        SaslAuthenticateRequest::VERSIONS.min,
        SaslAuthenticateRequest::VERSIONS.max,
        2,
    ), // v2 adds session_lifetime_ms, always 0 here (no KIP-368 re-authentication yet)
    api(
        ApiKey::Produce,
        ProduceRequest::VERSIONS.min,
        ProduceRequest::VERSIONS.max,
        12,
    ), // v13 addresses topics by id
    api(
        ApiKey::InitProducerId,
        InitProducerIdRequest::VERSIONS.min,
        InitProducerIdRequest::VERSIONS.max,
        5,
    ), // v6 (keep_prepared_txn, KIP-939) is not decoded
    api(
        ApiKey::AddPartitionsToTxn,
        AddPartitionsToTxnRequest::VERSIONS.min,
        AddPartitionsToTxnRequest::VERSIONS.max,
        4,
    ), // v4 batches transactions and verifies (KIP-890 part 1); v5 is transaction version 2
    api(
        ApiKey::AddOffsetsToTxn,
        AddOffsetsToTxnRequest::VERSIONS.min,
        AddOffsetsToTxnRequest::VERSIONS.max,
        3,
    ), // v4 is transaction version 2 (KIP-890 part 2)
    api(
        ApiKey::EndTxn,
        EndTxnRequest::VERSIONS.min,
        EndTxnRequest::VERSIONS.max,
        4,
    ), // v5 is transaction version 2 (epoch bump per transaction)
    api(
        ApiKey::WriteTxnMarkers,
        WriteTxnMarkersRequest::VERSIONS.min,
        WriteTxnMarkersRequest::VERSIONS.max,
        1,
    ),
    api(
        ApiKey::DescribeTransactions,
        DescribeTransactionsRequest::VERSIONS.min,
        DescribeTransactionsRequest::VERSIONS.max,
        0,
    ),
    api(
        ApiKey::ListTransactions,
        ListTransactionsRequest::VERSIONS.min,
        ListTransactionsRequest::VERSIONS.max,
        2,
    ),
    api(
        ApiKey::TxnOffsetCommit,
        TxnOffsetCommitRequest::VERSIONS.min,
        TxnOffsetCommitRequest::VERSIONS.max,
        4,
    ), // v5 is transaction version 2
    api(
        ApiKey::Fetch,
        FetchRequest::VERSIONS.min,
        FetchRequest::VERSIONS.max,
        17,
    ), // v17 adds the follower's directory id (KIP-853); v18 (high watermark in ReplicaState) not yet
    api(
        ApiKey::ListOffsets,
        ListOffsetsRequest::VERSIONS.min,
        ListOffsetsRequest::VERSIONS.max,
        10,
    ), // v9 adds -5 (latest tiered offset), v10 the remote-read timeout (KIP-1075)
    api(
        ApiKey::Metadata,
        MetadataRequest::VERSIONS.min,
        MetadataRequest::VERSIONS.max,
        12,
    ),
    api(
        ApiKey::ApiVersions,
        ApiVersionsRequest::VERSIONS.min,
        ApiVersionsRequest::VERSIONS.max,
        4,
    ),
    api(
        ApiKey::CreateTopics,
        CreateTopicsRequest::VERSIONS.min,
        CreateTopicsRequest::VERSIONS.max,
        7,
    ),
    api(
        ApiKey::DeleteTopics,
        DeleteTopicsRequest::VERSIONS.min,
        DeleteTopicsRequest::VERSIONS.max,
        6,
    ),
    api(
        ApiKey::DeleteRecords,
        DeleteRecordsRequest::VERSIONS.min,
        DeleteRecordsRequest::VERSIONS.max,
        2,
    ),
    api(
        ApiKey::DescribeConfigs,
        DescribeConfigsRequest::VERSIONS.min,
        DescribeConfigsRequest::VERSIONS.max,
        4,
    ),
    api(
        ApiKey::AlterConfigs,
        AlterConfigsRequest::VERSIONS.min,
        AlterConfigsRequest::VERSIONS.max,
        2,
    ),
    api(
        ApiKey::CreatePartitions,
        CreatePartitionsRequest::VERSIONS.min,
        CreatePartitionsRequest::VERSIONS.max,
        3,
    ),
    api(
        ApiKey::IncrementalAlterConfigs,
        IncrementalAlterConfigsRequest::VERSIONS.min,
        IncrementalAlterConfigsRequest::VERSIONS.max,
        1,
    ),
    api(
        ApiKey::DescribeCluster,
        DescribeClusterRequest::VERSIONS.min,
        DescribeClusterRequest::VERSIONS.max,
        1,
    ),
    api(
        ApiKey::OffsetForLeaderEpoch,
        OffsetForLeaderEpochRequest::VERSIONS.min,
        OffsetForLeaderEpochRequest::VERSIONS.max,
        4,
    ), // from the leader-epoch cache; replica_id is ignored until cluster mode
    api(
        ApiKey::DescribeLogDirs,
        DescribeLogDirsRequest::VERSIONS.min,
        DescribeLogDirsRequest::VERSIONS.max,
        4,
    ),
    api(
        ApiKey::DescribeProducers,
        DescribeProducersRequest::VERSIONS.min,
        DescribeProducersRequest::VERSIONS.max,
        0,
    ),
    // Cluster mode: preferred-leader election and the metadata quorum's state.
    api(
        ApiKey::ElectLeaders,
        ElectLeadersRequest::VERSIONS.min,
        ElectLeadersRequest::VERSIONS.max,
        2,
    ),
    api(
        ApiKey::DescribeQuorum,
        DescribeQuorumRequest::VERSIONS.min,
        DescribeQuorumRequest::VERSIONS.max,
        1,
    ), // v2 adds directory ids and the nodes' listeners (KIP-853)
    // Group coordinator (classic protocol, committed offsets, KIP-848 consumer groups).
    api(
        ApiKey::FindCoordinator,
        FindCoordinatorRequest::VERSIONS.min,
        FindCoordinatorRequest::VERSIONS.max,
        6,
    ),
    api(
        ApiKey::JoinGroup,
        JoinGroupRequest::VERSIONS.min,
        JoinGroupRequest::VERSIONS.max,
        9,
    ),
    api(
        ApiKey::SyncGroup,
        SyncGroupRequest::VERSIONS.min,
        SyncGroupRequest::VERSIONS.max,
        5,
    ),
    api(
        ApiKey::Heartbeat,
        HeartbeatRequest::VERSIONS.min,
        HeartbeatRequest::VERSIONS.max,
        4,
    ),
    api(
        ApiKey::LeaveGroup,
        LeaveGroupRequest::VERSIONS.min,
        LeaveGroupRequest::VERSIONS.max,
        5,
    ),
    api(
        ApiKey::OffsetCommit,
        OffsetCommitRequest::VERSIONS.min,
        OffsetCommitRequest::VERSIONS.max,
        9,
    ),
    api(
        ApiKey::OffsetFetch,
        OffsetFetchRequest::VERSIONS.min,
        OffsetFetchRequest::VERSIONS.max,
        9,
    ),
    api(
        ApiKey::ListGroups,
        ListGroupsRequest::VERSIONS.min,
        ListGroupsRequest::VERSIONS.max,
        5,
    ),
    api(
        ApiKey::DescribeGroups,
        DescribeGroupsRequest::VERSIONS.min,
        DescribeGroupsRequest::VERSIONS.max,
        6,
    ),
    api(
        ApiKey::DeleteGroups,
        DeleteGroupsRequest::VERSIONS.min,
        DeleteGroupsRequest::VERSIONS.max,
        2,
    ),
    api(
        ApiKey::OffsetDelete,
        OffsetDeleteRequest::VERSIONS.min,
        OffsetDeleteRequest::VERSIONS.max,
        0,
    ),
    api(
        ApiKey::ConsumerGroupHeartbeat,
        ConsumerGroupHeartbeatRequest::VERSIONS.min,
        ConsumerGroupHeartbeatRequest::VERSIONS.max,
        1,
    ),
    api(
        ApiKey::ConsumerGroupDescribe,
        ConsumerGroupDescribeRequest::VERSIONS.min,
        ConsumerGroupDescribeRequest::VERSIONS.max,
        1,
    ),
];

/// The version range the broker implements for `key`, if it serves that API at all.
pub fn supported_range(key: ApiKey) -> Option<SupportedApi> {
    SUPPORTED_APIS.iter().copied().find(|a| a.key == key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supported_apis_never_exceed_the_codec() {
        for a in SUPPORTED_APIS {
            let codec = a.key.valid_versions();
            assert!(a.min <= a.max, "{:?} has an empty range", a.key);
            assert!(
                a.min >= codec.min && a.max <= codec.max,
                "{:?} outside codec range",
                a.key
            );
        }
    }

    #[test]
    fn api_versions_range_is_zero_to_four() {
        let r = supported_range(ApiKey::ApiVersions).expect("api versions is served");
        assert_eq!((r.min, r.max), (0, 4));
    }
}
