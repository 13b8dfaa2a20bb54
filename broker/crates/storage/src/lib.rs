//! Fjord partition storage: record-batch validation and the on-disk partition log (segments,
//! offset and time indexes, checkpoints, recovery, retention).
//!
//! The crate is synchronous and uses plain `std` files: the broker calls it from
//! `spawn_blocking` or dedicated threads, under its own `Mutex<Log>` per partition. It knows
//! nothing about Kafka requests, sockets, tokio or object stores.
//!
//! Main entry points:
//! - [`batch::validate_produce_batches`] checks a Produce payload's batch headers without
//!   copying it, [`records::validate_records`] its records (Kafka's LogValidator);
//! - [`records`] is every decompression: streaming, capped, with Kafka's record parser;
//! - [`Log`] is one partition's log: [`Log::open`], [`Log::append`], [`Log::read`], retention,
//!   group-commit flushing, the leader epoch cache and idempotent-producer state
//!   (`producer_state`: duplicate, sequence and epoch checks, snapshots);
//! - [`clean_log`] compacts a log with `cleanup.policy=compact` (the log cleaner);
//! - [`FileCache`] bounds the segment and index files open at once (an LRU of descriptors).

pub mod batch;
mod checkpoint;
mod deleter;
mod epoch;
mod error;
mod files;
mod index;
mod log;
mod producer_state;
pub mod records;
mod segment;
mod types;

pub use batch::{
    BatchError, BatchHeader, MAX_RECORD_ERRORS, RecordError, RecordErrorKind, ValidatedBatch, ValidatedBatches,
};
pub use deleter::{delete_in_background, remove_gradually};
pub use error::{Error, Result};
pub use files::{DEFAULT_MAX_OPEN_FILES, FileCache};
pub use log::cleaner::{CleanStats, CleanerConfig, CleanupPolicy, CompactionConfig, Throttler, clean_log};
pub use log::{
    AppendInfo, ClosedSegment, DEFAULT_MAX_COMPRESSION_RATIO, DEFAULT_MAX_MESSAGE_BYTES, FlushTicket, Log, LogConfig,
    OpenStats, ReadPlan, RetentionOutcome, TimestampType, first_record_at_or_after,
};
pub use producer_state::{
    AbortedTxn, BatchMetadata, ControlType, NUM_BATCHES_TO_RETAIN, ProducerId, ProducerStateEntry, control_type_of,
    last_sequence,
};
pub use records::AppendOrigin;
pub use types::{LeaderEpoch, Offset};
