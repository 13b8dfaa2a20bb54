//! Operator metrics for Prometheus: reconciles and failures (by reason) per kind, and reconcile
//! duration.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub kind: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub kind: String,
    pub reason: String,
}

/// The operator's metrics and their registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    reconciles: Family<KindLabels, Counter>,
    failures: Family<FailureLabels, Counter>,
    duration: Family<KindLabels, Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let reconciles = Family::<KindLabels, Counter>::default();
        let failures = Family::<FailureLabels, Counter>::default();
        let duration = Family::<KindLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 14))
        });
        registry.register(
            "fjord_operator_reconciles",
            "Reconciles run, by resource kind",
            reconciles.clone(),
        );
        registry.register(
            "fjord_operator_reconcile_failures",
            "Reconciles that failed, by resource kind and reason",
            failures.clone(),
        );
        registry.register(
            "fjord_operator_reconcile_duration_seconds",
            "Reconcile duration, by resource kind",
            duration.clone(),
        );
        Metrics {
            registry,
            reconciles,
            failures,
            duration,
        }
    }
}

impl Metrics {
    pub fn reconciled(&self, kind: &str, took: Duration) {
        let labels = KindLabels { kind: kind.to_string() };
        self.reconciles.get_or_create(&labels).inc();
        self.duration.get_or_create(&labels).observe(took.as_secs_f64());
    }

    pub fn failed(&self, kind: &str, reason: &str) {
        self.failures
            .get_or_create(&FailureLabels {
                kind: kind.to_string(),
                reason: reason.to_string(),
            })
            .inc();
    }

    /// Reconciles counted so far for `kind` (for tests).
    pub fn reconcile_count(&self, kind: &str) -> u64 {
        self.reconciles
            .get_or_create(&KindLabels { kind: kind.to_string() })
            .get()
    }

    /// OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(%error, "encoding metrics failed");
        }
        out
    }
}
