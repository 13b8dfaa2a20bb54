//! Fjord partition storage: record-batch validation and the on-disk partition log (segments,
//! offset and time indexes, checkpoints, recovery, retention).
//!
//! The crate is synchronous and uses plain `std` files: the broker calls it from
//! `spawn_blocking` or dedicated threads, under its own `Mutex<Log>` per partition. It knows
//! nothing about Kafka requests, sockets, tokio or object stores.
//!
//! Main entry points:
//! - [`batch::validate_produce_batches`] checks a Produce payload without copying it;
//! - [`Log`] is one partition's log: [`Log::open`], [`Log::append`], [`Log::read`], retention,
//!   group-commit flushing and the leader epoch cache.

pub mod batch;
mod checkpoint;
mod deleter;
mod epoch;
mod error;
mod index;
mod log;
mod segment;
mod types;

pub use batch::{BatchError, BatchHeader, ValidatedBatch, ValidatedBatches};
pub use deleter::{delete_in_background, remove_gradually};
pub use error::{Error, Result};
pub use log::{
    AppendInfo, ClosedSegment, FlushTicket, Log, LogConfig, OpenStats, ReadPlan, RetentionOutcome, TimestampType,
    first_record_at_or_after,
};
pub use types::{LeaderEpoch, Offset};
