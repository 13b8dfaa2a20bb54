//! Fjord's metadata quorum: the metadata log (batches of [`MetadataRecord`]s applied to the
//! immutable [`MetadataImage`]) replicated with Raft across 1, 3 or 5 voters, every other broker
//! a learner that follows it. The only crate that depends on openraft; its types stay inside.
//!
//! Start a node with [`Quorum::start`], mount [`Quorum::grpc_service`] on the controller
//! listener (or use [`Quorum::serve`]), write through the leader with [`Quorum::write`] /
//! [`Quorum::write_with`], read with [`Quorum::image`] / [`Quorum::subscribe`]. See the README
//! for timeouts, durability and the snapshot policy.

mod frame;
mod log_store;
mod quorum;
mod rpc;
mod state_machine;
mod types;

pub use quorum::{Quorum, QuorumConfig, QuorumState, ReplicaState};
pub use rpc::RaftService;

use std::path::PathBuf;

pub use fjord_metadata::{MetadataImage, MetadataRecord};

/// Errors of the quorum crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("quorum storage i/o at {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Damaged committed state (not a torn tail): the node refuses to start rather than guess.
    #[error("quorum file {path} is corrupt: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    #[error("invalid quorum config: {0}")]
    Config(String),
    /// The membership stored in this node's quorum directory names other voters than its config.
    #[error(
        "the stored quorum membership has voters {stored:?} but the configured voters are {configured:?}; \
         changing the voter set is not supported: fix the voter list, or remove {dir} to join as a new node"
    )]
    MembershipMismatch {
        stored: Vec<u64>,
        configured: Vec<u64>,
        dir: PathBuf,
    },
    /// Writes go through the leader; `leader` is the one this node knows (node id, address).
    #[error("this node is not the metadata quorum leader (leader: {leader:?})")]
    NotLeader { leader: Option<(u64, String)> },
    /// The records do not apply to the current image (checked before they are proposed).
    #[error("metadata records rejected: {0}")]
    Rejected(#[from] fjord_metadata::Error),
    /// The batch was committed but did not apply (another write changed the image first); it
    /// was skipped on every node.
    #[error("metadata batch at index {index} was committed but skipped: {reason}")]
    Skipped { index: u64, reason: String },
    /// No quorum answered in time; the write may still commit later.
    #[error("metadata write not committed within {0:?} (no quorum?); it may still commit")]
    Timeout(std::time::Duration),
    #[error("the metadata quorum is shut down")]
    Shutdown,
    #[error("raft: {0}")]
    Raft(String),
    #[error("quorum rpc server: {0}")]
    Transport(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
