//! Prometheus metrics of the broker (`fjord_<subsystem>_<what>_<unit>`), served on /metrics.
//! Per-API handles are created once so the request path never allocates label sets.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fjord_metadata::MetadataImage;
use fjord_protocol::SUPPORTED_APIS;
use fjord_protocol::kafka_protocol::messages::ApiKey;
use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::group::GroupCoordinator;
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabel {
    group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupPartitionLabel {
    group: String,
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
    /// Produce batches recognised as retries of batches already in the log (idempotence).
    pub duplicate_batches: Counter,
    fsync: Histogram,
    fsync_partitions: Counter,
    retention_segments: Counter,
    retention_bytes: Counter,
    partitions: Gauge,
    /// Segment and index files open in the file cache, and its capacity.
    open_files: Gauge,
    max_open_files: Gauge,
    log_end_offset_sum: Gauge,
    log_end_offset: Family<PartitionLabel, Gauge>,
    group_lag: Family<GroupLabel, Gauge>,
    group_partition_lag: Family<GroupPartitionLabel, Gauge>,
    per_partition: bool,
    /// Tiered-storage series.
    pub tiering: crate::tiering::TieringMetrics,
    /// Listener limits: request memory, in-flight requests, connection limits, read timeouts.
    pub network: NetworkMetrics,
    scrape: Mutex<()>,
    cleaner: CleanerMetrics,
    /// ISR replication and follower fetching.
    pub replication: ReplicationMetrics,
}

/// ISR replication and KIP-392 follower fetching (`fjord_replication_*`). The gauges are
/// aggregates over partitions, refreshed at scrape, so their series do not grow with partitions.
#[derive(Debug, Default)]
pub struct ReplicationMetrics {
    /// ISR shrinks and expansions this broker committed as partition leader.
    pub isr_shrinks: Counter,
    pub isr_expands: Counter,
    /// Record bytes the replica fetchers copied from leaders.
    pub fetcher_bytes: Counter,
    /// Consumer fetches answered with a preferred read replica instead of records (as leader).
    pub preferred_replica_redirects: Counter,
    /// Records and bytes served to consumers by this broker as a follower (KIP-392).
    pub follower_fetch_records: Counter,
    pub follower_fetch_bytes: Counter,
    under_replicated: Gauge,
    under_min_isr: Gauge,
    offline: Gauge,
    leader_max_follower_lag: Gauge,
    fetcher_max_lag: Gauge,
}

impl ReplicationMetrics {
    fn register(&self, registry: &mut Registry) {
        let counters = [
            (
                "replication_isr_shrinks",
                "isr shrinks committed as partition leader",
                &self.isr_shrinks,
            ),
            (
                "replication_isr_expands",
                "isr expansions committed as partition leader",
                &self.isr_expands,
            ),
            (
                "replication_fetcher_fetched_bytes",
                "record bytes the replica fetchers copied from leaders",
                &self.fetcher_bytes,
            ),
            (
                "replication_preferred_replica_redirects",
                "consumer partition fetches answered with a preferred read replica (kip-392)",
                &self.preferred_replica_redirects,
            ),
            (
                "replication_follower_fetch_records",
                "records served to consumers as a follower (kip-392)",
                &self.follower_fetch_records,
            ),
            (
                "replication_follower_fetch_bytes",
                "record bytes served to consumers as a follower (kip-392)",
                &self.follower_fetch_bytes,
            ),
        ];
        for (name, help, counter) in counters {
            registry.register(name, help, counter.clone());
        }
        let gauges = [
            (
                "replication_under_replicated_partitions",
                "partitions led here whose isr is smaller than their replica set",
                &self.under_replicated,
            ),
            (
                "replication_under_min_isr_partitions",
                "partitions led here whose isr is below min.insync.replicas",
                &self.under_min_isr,
            ),
            (
                "replication_offline_partitions",
                "partitions without a leader in this broker's metadata image (same on every broker)",
                &self.offline,
            ),
            (
                "replication_leader_max_follower_lag_records",
                "as leader: most records any replica's fetch position is behind the log end offset",
                &self.leader_max_follower_lag,
            ),
            (
                "replication_fetcher_max_lag_records",
                "as follower: most records any followed partition is behind its leader's high watermark",
                &self.fetcher_max_lag,
            ),
        ];
        for (name, help, gauge) in gauges {
            registry.register(name, help, gauge.clone());
        }
    }

    /// Refreshes the gauges from the hosted partitions and the metadata image.
    fn refresh(&self, me: i32, partitions: &[Arc<crate::replication::Partition>], image: &MetadataImage) {
        let (mut under, mut under_min, mut leader_lag, mut fetcher_lag) = (0, 0, 0, 0);
        for p in partitions {
            let set = p.replica_set();
            if set.leader == me {
                let isr = set.isr.len().max(1);
                under += i64::from(isr < set.replicas.len());
                under_min += i64::from(isr < p.min_insync_replicas.load(Ordering::Relaxed) as usize);
                let leo = p.offsets().2.0;
                // A replica that has not fetched in this leader epoch lags at least since its start.
                let lag = set.replicas.iter().filter(|id| **id != me).map(|id| {
                    set.followers
                        .get(id)
                        .map_or(leo - set.epoch_start_offset.min(leo), |f| leo - f.fetch_offset)
                });
                leader_lag = lag.fold(leader_lag, i64::max);
            } else {
                fetcher_lag = fetcher_lag.max(p.fetcher_lag.load(Ordering::Relaxed));
            }
        }
        self.under_replicated.set(under);
        self.under_min_isr.set(under_min);
        self.leader_max_follower_lag.set(leader_lag.max(0));
        self.fetcher_max_lag.set(fetcher_lag.max(0));
        self.offline
            .set(image.partitions().filter(|(_, p)| !p.has_leader()).count() as i64);
    }
}

/// The listener's resource limits (`fjord_network_*`).
#[derive(Debug, Default)]
pub struct NetworkMetrics {
    /// Bytes of the request memory pool (network.queued_max_request_bytes) held by requests.
    pub request_memory_used: Gauge,
    /// Requests whose connection stopped being read until request memory was free.
    pub request_memory_waits: Counter,
    /// Requests read and not yet answered, over all connections.
    pub requests_in_flight: Gauge,
    /// Connections closed at once because their IP had max_connections_per_ip open.
    pub connections_rejected: Counter,
    /// Times the listener stopped accepting because max_connections were open.
    pub connection_limit_waits: Counter,
    /// Connections closed because a request did not arrive whole within request_read_timeout.
    pub request_read_timeouts: Counter,
    /// TLS handshakes that failed or timed out on SSL and SASL_SSL listeners.
    pub tls_handshake_failures: Counter,
    /// SASL authentications refused (wrong credentials, unknown user, bad tokens).
    pub sasl_authentication_failures: Counter,
}

impl NetworkMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "network_request_memory_used_bytes",
            "request bytes held in the broker-wide request memory pool (queued_max_request_bytes)",
            self.request_memory_used.clone(),
        );
        registry.register(
            "network_request_memory_waits",
            "requests that waited, unread, for request memory",
            self.request_memory_waits.clone(),
        );
        registry.register(
            "network_requests_in_flight",
            "requests read and not yet answered, over all connections",
            self.requests_in_flight.clone(),
        );
        registry.register(
            "network_connections_rejected",
            "connections closed at once over max_connections_per_ip",
            self.connections_rejected.clone(),
        );
        registry.register(
            "network_connection_limit_waits",
            "times the listener paused accepting at max_connections",
            self.connection_limit_waits.clone(),
        );
        registry.register(
            "network_request_read_timeouts",
            "connections closed because a request did not arrive whole within request_read_timeout",
            self.request_read_timeouts.clone(),
        );
        registry.register(
            "network_tls_handshake_failures",
            "tls handshakes that failed or timed out",
            self.tls_handshake_failures.clone(),
        );
        registry.register(
            "network_sasl_authentication_failures",
            "sasl authentications refused",
            self.sasl_authentication_failures.clone(),
        );
    }
}

/// Log cleaner series (`fjord_cleaner_*`).
#[derive(Debug, Default)]
struct CleanerMetrics {
    passes: Counter,
    read_bytes: Counter,
    cleaned_bytes: Counter,
    written_bytes: Counter,
    removed_records: Counter,
    failures: Counter,
    last_dirty_ratio: Gauge<f64, AtomicU64>,
    last_size_ratio: Gauge<f64, AtomicU64>,
    last_run: Gauge<f64, AtomicU64>,
    last_duration: Gauge<f64, AtomicU64>,
}

impl CleanerMetrics {
    fn register(&self, registry: &mut Registry) {
        registry.register("cleaner_passes", "log cleaning passes completed", self.passes.clone());
        registry.register(
            "cleaner_read_bytes",
            "segment bytes read by the log cleaner",
            self.read_bytes.clone(),
        );
        registry.register(
            "cleaner_cleaned_bytes",
            "bytes of segments replaced by cleaned segments",
            self.cleaned_bytes.clone(),
        );
        registry.register(
            "cleaner_written_bytes",
            "bytes of cleaned segments written",
            self.written_bytes.clone(),
        );
        registry.register(
            "cleaner_removed_records",
            "records removed by compaction (superseded, expired tombstones, keyless)",
            self.removed_records.clone(),
        );
        registry.register(
            "cleaner_failures",
            "cleaning passes that failed with an error",
            self.failures.clone(),
        );
        registry.register(
            "cleaner_last_dirty_ratio",
            "dirty ratio of the log cleaned by the last pass",
            self.last_dirty_ratio.clone(),
        );
        registry.register(
            "cleaner_last_size_ratio",
            "bytes written / bytes replaced in the last pass",
            self.last_size_ratio.clone(),
        );
        registry.register(
            "cleaner_last_run_timestamp_seconds",
            "unix time the last cleaning pass ended",
            self.last_run.clone(),
        );
        registry.register(
            "cleaner_last_run_duration_seconds",
            "duration of the last cleaning pass",
            self.last_duration.clone(),
        );
    }
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
        let duplicate_batches = Counter::default();
        registry.register(
            "produce_duplicate_batches",
            "idempotent produce batches not appended again because they were retries",
            duplicate_batches.clone(),
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
        let open_files = Gauge::default();
        registry.register(
            "storage_open_files",
            "segment and index files open now (the file cache; idle files are closed)",
            open_files.clone(),
        );
        let max_open_files = Gauge::default();
        registry.register(
            "storage_max_open_files",
            "most segment and index files kept open (storage.max_open_files)",
            max_open_files.clone(),
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
        let cleaner = CleanerMetrics::default();
        cleaner.register(&mut registry);
        let group_lag = Family::<GroupLabel, Gauge>::default();
        registry.register(
            "consumer_group_lag",
            "records between each committed offset and the high watermark, summed per group",
            group_lag.clone(),
        );
        let group_partition_lag = Family::<GroupPartitionLabel, Gauge>::default();
        if per_partition {
            registry.register(
                "consumer_group_partition_lag",
                "records between a group's committed offset and the partition's high watermark",
                group_partition_lag.clone(),
            );
        }
        let tiering = crate::tiering::TieringMetrics::register(&mut registry);
        let network = NetworkMetrics::default();
        network.register(&mut registry);
        let replication = ReplicationMetrics::default();
        replication.register(&mut registry);
        Arc::new(Metrics {
            replication,
            tiering,
            network,
            registry,
            group_lag,
            group_partition_lag,
            per_api,
            errors,
            bytes_in,
            bytes_out,
            connections,
            records_appended,
            duplicate_batches,
            fsync,
            fsync_partitions,
            retention_segments,
            retention_bytes,
            partitions,
            open_files,
            max_open_files,
            log_end_offset_sum,
            log_end_offset,
            per_partition,
            scrape: Mutex::new(()),
            cleaner,
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

    /// Records one completed log cleaning pass.
    pub fn cleaner_pass(&self, stats: &fjord_storage::CleanStats, elapsed: Duration, now_ms: i64) {
        let c = &self.cleaner;
        c.passes.inc();
        c.read_bytes.inc_by(stats.bytes_read);
        c.cleaned_bytes.inc_by(stats.bytes_before);
        c.written_bytes.inc_by(stats.bytes_after);
        c.removed_records.inc_by(stats.records_removed);
        c.last_dirty_ratio.set(stats.dirty_ratio);
        if stats.bytes_before > 0 {
            c.last_size_ratio
                .set(stats.bytes_after as f64 / stats.bytes_before as f64);
        }
        c.last_run.set(now_ms as f64 / 1000.0);
        c.last_duration.set(elapsed.as_secs_f64());
    }

    /// Counts a cleaning pass that failed.
    pub fn cleaner_failed(&self) {
        self.cleaner.failures.inc();
    }

    /// Prometheus text exposition, with partition gauges refreshed from `replicas` and `image`
    /// (this broker is `me`) and consumer lag from the committed offsets in `groups`.
    pub fn encode(
        &self,
        me: i32,
        replicas: &ReplicaManager,
        groups: &GroupCoordinator,
        image: &MetadataImage,
    ) -> String {
        let _guard = self.scrape.lock();
        let partitions = replicas.all();
        self.replication.refresh(me, &partitions, image);
        self.partitions.set(partitions.len() as i64);
        let files = fjord_storage::FileCache::global();
        self.open_files.set(files.open_files() as i64);
        self.max_open_files.set(files.capacity() as i64);
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
        self.group_lag.clear();
        self.group_partition_lag.clear();
        for (group, topic, partition, committed) in groups.committed_offsets() {
            let Some(p) = replicas.get(&topic, partition) else {
                continue;
            };
            let lag = (p.offsets().1.0 - committed).max(0);
            self.group_lag
                .get_or_create(&GroupLabel { group: group.clone() })
                .inc_by(lag);
            if self.per_partition {
                self.group_partition_lag
                    .get_or_create(&GroupPartitionLabel {
                        group,
                        topic,
                        partition: partition.to_string(),
                    })
                    .set(lag);
            }
        }
        let mut out = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(%error, "cannot encode metrics");
        }
        out
    }
}
