//! The Fjord operator: reconciles `Cluster` resources into broker StatefulSets (one per rack)
//! and `Topic` resources into admin API calls. Everything rendered comes from pure functions of
//! a validated spec (`cluster::validate`, `cluster::plan`, `cluster::build`), so it is tested
//! without an API server; the reconcilers only fetch, apply and report.

pub mod admin;
pub mod cluster;
pub mod conditions;
pub mod context;
pub mod error;
pub mod lease;
pub mod metrics;
pub mod run;
pub mod telemetry;
pub mod topic;

pub use error::{Error, Result};
