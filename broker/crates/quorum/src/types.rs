//! The openraft type configuration: a log entry's payload is one batch of metadata records, a
//! node is a broker's quorum endpoint (`host:port`), node ids are broker node ids.

use std::io::Cursor;

use fjord_metadata::MetadataRecord;
use serde::{Deserialize, Serialize};

/// One batch of metadata records: the payload of a normal Raft log entry, applied atomically.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct Batch(pub(crate) Vec<MetadataRecord>);

/// What applying one entry did: `error` says why a batch was skipped (it did not apply to the
/// image; every node skips it alike).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Applied {
    pub(crate) error: Option<String>,
}

openraft::declare_raft_types!(
    /// Fjord's Raft types.
    pub(crate) TypeConfig:
        D = Batch,
        R = Applied,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub(crate) type C = TypeConfig;
pub(crate) type NodeId = u64;
pub(crate) type Node = openraft::BasicNode;
pub(crate) type Entry = openraft::Entry<C>;
pub(crate) type LogId = openraft::LogId<NodeId>;
pub(crate) type Vote = openraft::Vote<NodeId>;
pub(crate) type StorageError = openraft::StorageError<NodeId>;
pub(crate) type StoredMembership = openraft::StoredMembership<NodeId, Node>;
pub(crate) type SnapshotMeta = openraft::SnapshotMeta<NodeId, Node>;
pub(crate) type Snapshot = openraft::Snapshot<C>;
pub(crate) type Raft = openraft::Raft<C>;
