//! The Fjord gRPC APIs: generated prost messages and tonic client/server for
//! `fjord.admin.v1.Admin` (see `proto/fjord/admin/v1/admin.proto` for the contract and its
//! status codes) and the metadata quorum's internal `fjord.raft.v1.Raft`, plus the encoded
//! descriptor set of the admin API the broker serves through gRPC reflection.

/// `fjord.admin.v1`: messages, `admin_client::AdminClient` and `admin_server::AdminServer`.
pub mod v1 {
    #![allow(unreachable_pub, clippy::all)]
    tonic::include_proto!("fjord.admin.v1");
}

/// `fjord.raft.v1`: the metadata quorum's internal RPCs (`raft_client::RaftClient`,
/// `raft_server::RaftServer`), used only by fjord-quorum.
pub mod raft {
    pub mod v1 {
        #![allow(unreachable_pub, clippy::all)]
        tonic::include_proto!("fjord.raft.v1");
    }
}

/// `fjord.cluster.v1`: broker-to-controller RPC (`controller_client::ControllerClient`,
/// `controller_server::ControllerServer`), internal to the broker.
pub mod cluster {
    pub mod v1 {
        #![allow(unreachable_pub, clippy::all)]
        tonic::include_proto!("fjord.cluster.v1");
    }
}

/// The encoded `FileDescriptorSet` of every admin .proto, for tonic-reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/fjord_admin_descriptor.bin"));

/// The gRPC service name clients and health checks use.
pub const ADMIN_SERVICE_NAME: &str = "fjord.admin.v1.Admin";

/// Response metadata key carrying the Kafka error code name (e.g. `TOPIC_ALREADY_EXISTS`) when a
/// status comes from a Kafka-level refusal.
pub const KAFKA_ERROR_METADATA_KEY: &str = "fjord-kafka-error";
