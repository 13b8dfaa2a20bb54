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

/// Installs aws-lc-rs as the process's rustls crypto provider. Every binary that may make a TLS
/// connection (the operator to the API server, the broker to S3) calls this first: rustls picks a
/// provider by itself only when exactly one provider feature is compiled in, and feature
/// unification in a workspace build can turn on more than one (then `kube::Client` panics with
/// "Could not automatically determine the process-level CryptoProvider").
pub fn install_crypto_provider() {
    // Err only if a provider is already installed (a second call): nothing to do.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
