//! Cluster metadata for Fjord: the records that describe topics, partitions, configs and brokers
//! (modelled on KRaft's), the immutable [`MetadataImage`] every other component reads, the local
//! metadata log that makes them durable on a single node, rack-aware replica [`placement`], and
//! the pure controller logic ([`control`]) that turns requests into records. In cluster mode the same records will be
//! replicated through a Raft quorum; nothing else changes cluster state (architecture invariant 4).

pub mod control;
mod image;
mod log;
pub mod placement;
mod records;
mod reserve;
pub mod security;
mod snapshot;
mod store;
#[cfg(test)]
mod testing;

pub use image::cluster::{BrokerRegistration, ClusterImage};
pub use image::{BrokerLoad, MetadataImage, PartitionImage, TopicImage};
pub use log::MetadataLog;
pub use records::{BrokerId, ConfigResource, Endpoint, MetadataRecord, PartitionId, TopicId};
pub use snapshot::SNAPSHOT_BROKER_ID;
pub use store::MetadataStore;

/// Errors of the metadata crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("metadata log i/o at {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("metadata record encoding: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("metadata record rejected: {0}")]
    Invalid(String),
    /// The controller refused a request (each variant names its Kafka error code).
    #[error(transparent)]
    Control(#[from] control::Error),
    /// A damaged entry with intact entries after it: not a torn tail, so truncating would drop
    /// committed metadata. The broker refuses to start rather than guess.
    #[error(
        "metadata log {path} is corrupt at byte {corrupt_at} but holds valid entries after it (next at byte {next_valid}); \
         refusing to truncate committed metadata: restore the file from a backup, or move it aside to start with empty \
         metadata (partition data is then kept aside, never deleted)"
    )]
    Corrupt {
        path: std::path::PathBuf,
        corrupt_at: u64,
        next_valid: u64,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
