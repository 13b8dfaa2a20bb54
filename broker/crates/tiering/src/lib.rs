//! Fjord tiered storage: closed segments in S3-compatible object storage (or `file://`,
//! `memory://`), a conditional-PUT manifest per partition, and ranged reads through an on-disk
//! chunk cache. The only crate that depends on `object_store` (architecture invariant 3).
//!
//! Main entry points:
//! - [`RemoteStore::open`] picks the store from a URL; [`RemoteStore::upload_segment`] writes one
//!   closed segment as one object ([`format`]); [`RemoteStore::load_manifest`] and
//!   [`RemoteStore::commit_manifest`] read and conditionally replace a partition's [`Manifest`];
//!   [`RemoteStore::collect_orphans`] and [`RemoteStore::delete_segments`] clean up.
//! - [`RemoteReader`] serves Fetch and ListOffsets below the local log start.
//! - [`retention::plan`] decides which remote segments total retention removes.
//!
//! The broker owns scheduling (which segment to upload when, retries, concurrency) and the rule
//! that a local segment is deleted only after the manifest naming it is written.

mod error;
pub mod format;
mod limit;
mod manifest;
mod reader;
pub mod retention;
mod store;
mod upload;

pub use error::{Error, Result};
pub use limit::RateLimiter;
pub use manifest::{MANIFEST_VERSION, Manifest, SegmentMeta, VersionedManifest};
pub use reader::{ReadStats, RemoteReader, TimestampHit};
pub use store::{RemoteStore, StoreConfig, TopicPartition};
pub use upload::SegmentSource;

#[cfg(test)]
mod tests;
