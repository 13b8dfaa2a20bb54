//! Prometheus metrics of the broker (`fjord_<subsystem>_<what>_<unit>`), served on /metrics.
//! Per-API handles are created once so the request path never allocates label sets.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use fjord_protocol::SUPPORTED_APIS;
use fjord_protocol::kafka_protocol::messages::ApiKey;
use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::replication::ReplicaManager;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabel {
    api: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabel {
    api: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabel {
    topic: String,
    partition: String,
}

#[derive(Clone, Debug)]
struct ApiHandles {
    requests: Counter,
    latency: Histogram,
}

/// Every metric the broker exports.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    per_api: HashMap<i16, ApiHandles>,
    errors: Family<ErrorLabel, Counter>,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    pub connections: Gauge,
    pub records_appended: Counter,
    fsync: Histogram,
    fsync_partitions: Counter,
    retention_segments: Counter,
    retention_bytes: Counter,
    partitions: Gauge,
    log_end_offset_sum: Gauge,
    log_end_offset: Family<PartitionLabel, Gauge>,
    per_partition: bool,
    /// Tiered-storage series.
    pub tiering: crate::tiering::TieringMetrics,
    scrape: Mutex<()>,
}

impl Metrics {
    pub fn new(per_partition: bool) -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("fjord");
        let requests = Family::<ApiLabel, Counter>::default();
        let latency = Family::<ApiLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_05, 2.0, 18))
        });
        registry.register("network_requests", "kafka requests handled, by api", requests.clone());
        registry.register(
            "network_request_duration_seconds",
            "time from decoded request to encoded response, by api",
            latency.clone(),
        );
        let per_api = SUPPORTED_APIS
            .iter()
            .map(|a| {
                let label = ApiLabel {
                    api: format!("{:?}", a.key),
                };
                (
                    a.key as i16,
                    ApiHandles {
                        requests: requests.get_or_create(&label).clone(),
                        latency: latency.get_or_create(&label).clone(),
                    },
                )
            })
            .collect();
        let errors = Family::<ErrorLabel, Counter>::default();
        registry.register(
            "kafka_errors",
            "error codes returned in responses, by api and code",
            errors.clone(),
        );
        let bytes_in = Counter::default();
        registry.register("network_received_bytes", "request bytes received", bytes_in.clone());
        let bytes_out = Counter::default();
        registry.register("network_sent_bytes", "response bytes sent", bytes_out.clone());
        let connections = Gauge::default();
        registry.register("network_connections", "open client connections", connections.clone());
        let records_appended = Counter::default();
        registry.register(
            "storage_appended_records",
            "records appended to partition logs",
            records_appended.clone(),
        );
        let fsync = Histogram::new(exponential_buckets(0.000_05, 2.0, 16));
        registry.register(
            "storage_fsync_duration_seconds",
            "duration of one group-commit fsync round",
            fsync.clone(),
        );
        let fsync_partitions = Counter::default();
        registry.register(
            "storage_fsync_partitions",
            "partition logs made durable by group-commit rounds",
            fsync_partitions.clone(),
        );
        let retention_segments = Counter::default();
        registry.register(
            "storage_retention_deleted_segments",
            "segments deleted by retention",
            retention_segments.clone(),
        );
        let retention_bytes = Counter::default();
        registry.register(
            "storage_retention_deleted_bytes",
            "bytes deleted by retention",
            retention_bytes.clone(),
        );
        let partitions = Gauge::default();
        registry.register(
            "storage_partitions",
            "partitions hosted by this broker",
            partitions.clone(),
        );
        let log_end_offset_sum = Gauge::<i64>::default();
        registry.register(
            "storage_log_end_offsets",
            "log end offsets summed over all partitions (records ever appended)",
            log_end_offset_sum.clone(),
        );
        let log_end_offset = Family::<PartitionLabel, Gauge>::default();
        if per_partition {
            registry.register(
                "partition_log_end_offset",
                "log end offset per partition",
                log_end_offset.clone(),
            );
        }
        let tiering = crate::tiering::TieringMetrics::register(&mut registry);
        Arc::new(Metrics {
            tiering,
            registry,
            per_api,
            errors,
            bytes_in,
            bytes_out,
            connections,
            records_appended,
            fsync,
            fsync_partitions,
            retention_segments,
            retention_bytes,
            partitions,
            log_end_offset_sum,
            log_end_offset,
            per_partition,
            scrape: Mutex::new(()),
        })
    }

    pub fn observe_request(&self, api: ApiKey, elapsed: Duration) {
        if let Some(h) = self.per_api.get(&(api as i16)) {
            h.requests.inc();
            h.latency.observe(elapsed.as_secs_f64());
        }
    }

    /// Counts one non-zero error code returned for `api`.
    pub fn error_code(&self, api: ApiKey, code: i16) {
        if code != 0 {
            self.errors
                .get_or_create(&ErrorLabel {
                    api: format!("{api:?}"),
                    code: code.to_string(),
                })
                .inc();
        }
    }

    pub fn observe_fsync(&self, elapsed: Duration, partitions: usize) {
        self.fsync.observe(elapsed.as_secs_f64());
        self.fsync_partitions.inc_by(partitions as u64);
    }

    pub fn retention_deleted(&self, segments: u64, bytes: u64) {
        self.retention_segments.inc_by(segments);
        self.retention_bytes.inc_by(bytes);
    }

    /// Prometheus text exposition, with partition gauges refreshed from `replicas`.
    pub fn encode(&self, replicas: &ReplicaManager) -> String {
        let _guard = self.scrape.lock();
        let partitions = replicas.all();
        self.partitions.set(partitions.len() as i64);
        let mut sum = 0i64;
        if self.per_partition {
            self.log_end_offset.clear();
        }
        for p in &partitions {
            let leo = p.offsets().2.0;
            sum += leo;
            if self.per_partition {
                self.log_end_offset
                    .get_or_create(&PartitionLabel {
                        topic: p.topic.clone(),
                        partition: p.index.to_string(),
                    })
                    .set(leo);
            }
        }
        self.log_end_offset_sum.set(sum);
        let mut out = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(%error, "cannot encode metrics");
        }
        out
    }
}
