//! Cluster metadata for Fjord: the records that describe topics, partitions and configs (modelled
//! on KRaft's), the immutable [`MetadataImage`] every other component reads, and the local
//! metadata log that makes them durable on a single node. In cluster mode the same records will be
//! replicated through a Raft quorum; nothing else changes cluster state (architecture invariant 4).

mod image;
mod log;
mod records;
mod store;

pub use image::{MetadataImage, PartitionImage, TopicImage};
pub use log::MetadataLog;
pub use records::{BrokerId, ConfigResource, MetadataRecord, PartitionId, TopicId};
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
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
