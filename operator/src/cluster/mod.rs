//! The Cluster controller: validate (pure) → plan racks and broker ids (pure) → build objects
//! (pure) → apply in order → drain before scale-in → status.

pub mod build;
pub mod plan;
pub mod reconcile;
pub mod validate;
