//! The crate's error type.

use std::io;
use std::path::{Path, PathBuf};

use crate::batch::BatchError;
use crate::types::Offset;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the storage layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input record batches are invalid; the log was not modified.
    #[error("invalid record batch: {0}")]
    Batch(#[from] BatchError),

    /// A file-system operation failed.
    #[error("i/o error during {op} on {path}: {source}")]
    Io {
        /// What was being done ("open", "write", "fsync", ...).
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// The requested offset is outside the log's valid range.
    #[error("offset {offset} out of range: log start offset {log_start}, upper bound {log_end}")]
    OffsetOutOfRange {
        /// The offset asked for.
        offset: Offset,
        /// The log start offset at the time of the request.
        log_start: Offset,
        /// The upper bound that applied: the log end offset for reads, the high watermark for
        /// `delete_records_before`.
        log_end: Offset,
    },

    /// Replicated batches start below the follower's log end offset: it must truncate first.
    #[error("replicated batch at offset {base_offset} is below the log end offset {log_end_offset}")]
    OffsetOutOfOrder {
        /// The first offset of the replicated batches.
        base_offset: i64,
        /// The follower's log end offset.
        log_end_offset: i64,
    },

    /// A checkpoint file exists but cannot be parsed.
    #[error("corrupt checkpoint file {path}: {reason}")]
    CorruptCheckpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },

    /// A batch already in the log failed to parse or decode (disk corruption after the fact).
    #[error("corrupt record batch in {path} at offset {offset}, position {position}: {reason}")]
    CorruptBatch {
        /// The segment file.
        path: PathBuf,
        /// The (expected) offset of the batch.
        offset: Offset,
        /// The byte position in the segment file.
        position: u64,
        /// What is wrong with it.
        reason: String,
    },

    /// An idempotent producer's batch does not continue its sequence (Kafka
    /// OUT_OF_ORDER_SEQUENCE_NUMBER); the log was not modified.
    #[error("out of order sequence number {first_seq} from producer {producer_id} epoch {epoch}, expected {expected}")]
    OutOfOrderSequence {
        /// The producer id.
        producer_id: i64,
        /// The batch's producer epoch.
        epoch: i16,
        /// The batch's first sequence number.
        first_seq: i32,
        /// The sequence number that would have been in order.
        expected: i32,
    },

    /// A batch carries an older producer epoch than the partition has seen (Kafka
    /// INVALID_PRODUCER_EPOCH): the producer was fenced; the log was not modified.
    #[error("producer {producer_id} epoch {epoch} is older than the current epoch {current}")]
    InvalidProducerEpoch {
        /// The producer id.
        producer_id: i64,
        /// The batch's producer epoch.
        epoch: i16,
        /// The epoch the partition knows.
        current: i16,
    },

    /// A batch with a producer id but a negative base sequence (Kafka INVALID_RECORD).
    #[error("invalid sequence number {base_sequence} in a batch of producer {producer_id}")]
    InvalidSequence {
        /// The producer id.
        producer_id: i64,
        /// The batch's base sequence.
        base_sequence: i32,
    },

    /// A control batch whose record is not a commit or abort marker (Kafka INVALID_RECORD).
    #[error("control batch from producer {producer_id} is not a transaction marker")]
    InvalidControlBatch {
        /// The producer id.
        producer_id: i64,
    },
    /// A log cleaning pass stopped early (the log changed under it, or the cleaner is stopping);
    /// nothing was lost, the segments it had not swapped in stay as they were.
    #[error("log cleaning aborted: {0}")]
    CleaningAborted(String),
}

impl Error {
    /// True if a file system operation failed because the disk (or quota) is full.
    pub fn is_no_space(&self) -> bool {
        matches!(self, Error::Io { source, .. }
            if matches!(source.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded))
    }

    pub(crate) fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
        move |source| Error::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}
