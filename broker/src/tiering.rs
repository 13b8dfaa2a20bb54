//! Tiered storage in the broker: per-partition remote state ([`RemoteLog`]), the upload loop
//! (closed segments wholly below the high watermark and the recovery point, one object each,
//! then a conditional manifest write, retried with backoff, partitions in parallel under a
//! concurrency cap and a bandwidth limit), total retention over the remote part (two phases),
//! orphan collection, local-wipe recovery, and remote reads for Fetch and ListOffsets.
//!
//! Invariant 3: a local segment is deleted only after the manifest naming it is written. The
//! retention loop reads [`RemoteLog::committed_end`], which moves only after a successful
//! manifest commit, and passes it to `Log::apply_local_retention` as the deletion bound.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fjord_storage::{Offset, first_record_at_or_after};
use fjord_tiering::{
    Manifest, RateLimiter, RemoteReader, RemoteStore, SegmentSource, StoreConfig, TopicPartition, VersionedManifest,
    retention,
};
use parking_lot::{Mutex, RwLock};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio::sync::{Semaphore, watch};

use crate::broker::Broker;
use crate::config::{BrokerConfig, TieringConfig};
use crate::replication::Partition;

/// Longest wait between retries of a failing partition.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Upload lag (closed segments not yet remote, all partitions) that is worth a warning...
const LAG_WARN_SEGMENTS: u64 = 64;
/// ... at most this often.
const LAG_WARN_EVERY: Duration = Duration::from_secs(60);
/// Orphaned objects are looked for at least this often per partition.
const GC_INTERVAL: Duration = Duration::from_secs(600);

/// The broker's tiered storage: store, reader, limits.
#[derive(Debug)]
pub struct Tiering {
    pub store: RemoteStore,
    pub reader: Arc<RemoteReader>,
    limiter: RateLimiter,
    permits: Arc<Semaphore>,
    config: TieringConfig,
    last_read: Mutex<[u64; 4]>,
    lag_warned: Mutex<Option<Instant>>,
    /// Tiered partitions seen by the last round (to notice deleted topics).
    known: Mutex<std::collections::HashSet<TopicPartition>>,
}

/// Remote state of one tiered partition.
#[derive(Debug)]
pub struct RemoteLog {
    pub tp: TopicPartition,
    /// The last committed manifest, for readers; None until loaded.
    snapshot: RwLock<Option<Arc<Manifest>>>,
    writer: Arc<tokio::sync::Mutex<Writer>>,
    /// Effective (local.retention.ms, local.retention.bytes).
    pub local_retention: Mutex<(Option<i64>, Option<u64>)>,
}

#[derive(Debug, Default)]
struct Writer {
    current: Option<VersionedManifest>,
    failures: u32,
    retry_at: Option<Instant>,
    last_gc: Option<Instant>,
    /// As follower: when the manifest was last re-read (followers never write it).
    last_follower_refresh: Option<Instant>,
}

/// How often a follower re-reads the manifest its leader writes, so its local retention can
/// trim below what the remote store has committed.
const FOLLOWER_MANIFEST_REFRESH: Duration = Duration::from_secs(10);

/// Per-partition tiering state for the `/tiering` endpoint.
#[derive(Debug, Serialize)]
pub struct PartitionState {
    pub topic: String,
    pub partition: i32,
    pub topic_id: String,
    pub manifest_loaded: bool,
    pub log_start_offset: i64,
    pub local_log_start_offset: i64,
    pub remote_log_start_offset: Option<i64>,
    pub remote_end_offset: Option<i64>,
    pub high_watermark: i64,
    pub remote_segments: usize,
    pub remote_bytes: u64,
    pub local_bytes: u64,
    pub upload_lag_segments: u64,
    pub upload_lag_bytes: u64,
}

impl RemoteLog {
    pub fn new(tp: TopicPartition, local_retention: (Option<i64>, Option<u64>)) -> RemoteLog {
        RemoteLog {
            tp,
            snapshot: RwLock::new(None),
            writer: Arc::new(tokio::sync::Mutex::new(Writer::default())),
            local_retention: Mutex::new(local_retention),
        }
    }

    /// The committed manifest, if loaded.
    pub fn manifest(&self) -> Option<Arc<Manifest>> {
        self.snapshot.read().clone()
    }

    /// Local segments wholly below this offset are committed remotely and may be deleted.
    pub fn committed_end(&self) -> Offset {
        Offset(self.manifest().and_then(|m| m.end_offset()).unwrap_or(-1))
    }

    fn publish(&self, manifest: &Manifest) {
        *self.snapshot.write() = Some(Arc::new(manifest.clone()));
    }
}

/// The largest batch timestamp of remote segments that are readable (at or above the remote log
/// start) and below `local_start` (above it the local log answers).
pub fn remote_max_timestamp(remote: &RemoteLog, local_start: i64) -> Option<i64> {
    let manifest = remote.manifest()?;
    manifest
        .segments
        .iter()
        .filter(|s| s.next_offset > manifest.log_start_offset && s.base_offset < local_start)
        .map(|s| s.max_timestamp)
        .max()
}

/// The partition's log start offset: the remote start if remote data lies below the local start.
pub fn log_start_offset(partition: &Partition, local_start: Offset) -> Offset {
    match partition
        .remote()
        .and_then(|r| r.manifest())
        .and_then(|m| m.start_offset())
    {
        Some(remote) if remote < local_start.0 => Offset(remote),
        _ => local_start,
    }
}

/// Prometheus series of tiered storage (registered whether or not tiering is on).
#[derive(Debug, Clone, Default)]
pub struct TieringMetrics {
    uploaded_bytes: Counter,
    uploaded_segments: Counter,
    upload_errors: Counter,
    lag_bytes: Gauge,
    lag_segments: Gauge,
    remote_bytes: Gauge,
    remote_deleted_segments: Counter,
    orphans_deleted: Counter,
    read_bytes: Counter,
    cache_hits: Counter,
    cache_misses: Counter,
    cache_bytes: Gauge,
    read_errors: Counter,
    read_duration: Option<Histogram>,
}

impl TieringMetrics {
    pub fn register(registry: &mut Registry) -> TieringMetrics {
        let m = TieringMetrics {
            read_duration: Some(Histogram::new(exponential_buckets(0.000_1, 2.0, 18))),
            ..TieringMetrics::default()
        };
        registry.register(
            "tiering_uploaded_bytes",
            "segment bytes uploaded to the object store",
            m.uploaded_bytes.clone(),
        );
        registry.register(
            "tiering_uploaded_segments",
            "segments uploaded and committed",
            m.uploaded_segments.clone(),
        );
        registry.register(
            "tiering_upload_errors",
            "failed upload, manifest or retention rounds",
            m.upload_errors.clone(),
        );
        registry.register(
            "tiering_upload_lag_bytes",
            "bytes of closed local segments not yet remote",
            m.lag_bytes.clone(),
        );
        registry.register(
            "tiering_upload_lag_segments",
            "closed local segments not yet remote",
            m.lag_segments.clone(),
        );
        registry.register(
            "tiering_remote_bytes",
            "record bytes committed in remote manifests",
            m.remote_bytes.clone(),
        );
        registry.register(
            "tiering_remote_deleted_segments",
            "remote segments deleted by retention",
            m.remote_deleted_segments.clone(),
        );
        registry.register(
            "tiering_orphans_deleted",
            "uncommitted objects garbage-collected",
            m.orphans_deleted.clone(),
        );
        registry.register(
            "tiering_remote_read_bytes",
            "bytes fetched from the object store",
            m.read_bytes.clone(),
        );
        registry.register(
            "tiering_cache_hits",
            "remote read chunks served from the cache",
            m.cache_hits.clone(),
        );
        registry.register(
            "tiering_cache_misses",
            "remote read chunks fetched from the store",
            m.cache_misses.clone(),
        );
        registry.register(
            "tiering_cache_size_bytes",
            "bytes in the remote read cache",
            m.cache_bytes.clone(),
        );
        registry.register(
            "tiering_remote_read_errors",
            "failed remote reads",
            m.read_errors.clone(),
        );
        if let Some(h) = &m.read_duration {
            registry.register(
                "tiering_remote_read_duration_seconds",
                "time to serve one partition's remote read",
                h.clone(),
            );
        }
        m
    }

    pub fn observe_read(&self, elapsed: Duration) {
        if let Some(h) = &self.read_duration {
            h.observe(elapsed.as_secs_f64());
        }
    }
}

impl Tiering {
    /// Opens the store and the read cache, if tiering is enabled.
    pub fn open(config: &BrokerConfig) -> anyhow::Result<Option<Arc<Tiering>>> {
        let t = &config.tiering;
        if !t.enabled {
            return Ok(None);
        }
        let store = RemoteStore::open(&StoreConfig {
            url: t.url.clone(),
            endpoint: t.endpoint.clone(),
            region: t.region.clone(),
            access_key_id: t.access_key_id.clone(),
            secret_access_key: t.secret_access_key.clone(),
            allow_http: t.allow_http,
            request_timeout: t.request_timeout,
            max_retries: 2,
        })?;
        let cache_dir = t
            .cache_dir
            .clone()
            .unwrap_or_else(|| config.storage.data_dir.join(".remote-cache"));
        let reader = RemoteReader::new(store.clone(), cache_dir, t.cache_max_bytes.as_u64())?;
        tracing::info!(url = %t.url, "tiered storage enabled");
        Ok(Some(Arc::new(Tiering {
            store,
            reader,
            limiter: RateLimiter::new(t.upload_bytes_per_second.as_u64()),
            permits: Arc::new(Semaphore::new(t.upload_concurrency.max(1))),
            config: t.clone(),
            last_read: Mutex::new([0; 4]),
            lag_warned: Mutex::new(None),
            known: Mutex::new(std::collections::HashSet::new()),
        })))
    }

    /// Loads every tiered partition's manifest before the broker serves (`upload_concurrency`
    /// at a time, two request timeouts in all), so a wiped local log resumes at the remote end
    /// before any produce. Partitions not loaded by then are loaded by the upload loop.
    pub async fn load_all(self: &Arc<Self>, broker: &Arc<Broker>) {
        use futures_util::StreamExt;
        let tiered: Vec<_> = broker
            .replicas
            .all()
            .into_iter()
            .filter_map(|p| p.remote().map(|r| (p, r)))
            .collect();
        let loads = futures_util::stream::iter(tiered)
            .map(|(p, remote)| async move {
                let mut w = remote.writer.lock().await;
                if let Err(error) = self.load(broker, &p, &remote, &mut w).await {
                    tracing::warn!(topic = %p.topic, partition = p.index, %error, "cannot load remote manifest yet");
                }
            })
            .buffer_unordered(self.config.upload_concurrency.max(1))
            .collect::<Vec<()>>();
        if tokio::time::timeout(self.config.request_timeout * 2, loads)
            .await
            .is_err()
        {
            tracing::warn!("loading remote manifests timed out; the upload loop keeps trying");
        }
    }

    /// The upload loop: every `upload_interval`, each tiered partition not already busy gets a
    /// task (at most `upload_concurrency` run at once).
    pub async fn run(self: Arc<Self>, broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(self.config.upload_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.changed() => return,
            }
            let me = broker.node_id();
            for p in broker.replicas.all() {
                let Some(remote) = p.remote() else { continue };
                let Ok(writer) = Arc::clone(&remote.writer).try_lock_owned() else {
                    continue;
                };
                let (tiering, broker) = (Arc::clone(&self), Arc::clone(&broker));
                // Only the leader uploads and commits manifests (a new leader's first commit
                // carries its higher leader epoch, which fences the old one's).
                let leads = p.leader_id() == me;
                tokio::spawn(async move {
                    let Ok(_permit) = tiering.permits.clone().acquire_owned().await else {
                        return;
                    };
                    if leads {
                        tiering.sync_partition(&broker, &p, &remote, writer).await;
                    } else {
                        tiering.refresh_as_follower(&p, &remote, writer).await;
                    }
                });
            }
            self.delete_removed_topics(&broker);
            self.refresh_metrics(&broker);
        }
    }

    /// Remote data of partitions whose topic was deleted is deleted too (best effort: a topic
    /// deleted while the broker was down keeps its objects).
    fn delete_removed_topics(self: &Arc<Self>, broker: &Arc<Broker>) {
        let current: std::collections::HashSet<TopicPartition> = broker
            .replicas
            .all()
            .iter()
            .filter_map(|p| p.remote())
            .map(|r| r.tp)
            .collect();
        let image = broker.image();
        let gone: Vec<TopicPartition> = {
            let mut known = self.known.lock();
            let gone = known
                .iter()
                .filter(|tp| !current.contains(tp) && image.topic_by_id(fjord_metadata::TopicId(tp.topic_id)).is_none())
                .copied()
                .collect();
            *known = current;
            gone
        };
        for tp in gone {
            let tiering = Arc::clone(self);
            tokio::spawn(async move {
                match tiering.store.delete_partition(tp).await {
                    Ok(n) => tracing::info!(partition = %tp, objects = n, "deleted remote data of a deleted topic"),
                    Err(error) => {
                        tracing::warn!(partition = %tp, %error, "cannot delete remote data of a deleted topic")
                    }
                }
            });
        }
    }

    /// As follower: re-reads the manifest (read only) and publishes it, so local retention
    /// deletes only what the remote store has committed. Forgets any manifest loaded as leader:
    /// on becoming leader again it loads the current one.
    async fn refresh_as_follower(
        &self,
        p: &Arc<Partition>,
        remote: &Arc<RemoteLog>,
        mut w: tokio::sync::OwnedMutexGuard<Writer>,
    ) {
        w.current = None;
        if w.last_follower_refresh
            .is_some_and(|t| t.elapsed() < FOLLOWER_MANIFEST_REFRESH)
        {
            return;
        }
        w.last_follower_refresh = Some(Instant::now());
        match self.store.load_manifest(remote.tp).await {
            Ok(loaded) => remote.publish(&loaded.manifest),
            Err(error) => tracing::debug!(topic = %p.topic, partition = p.index, %error,
                "follower cannot read the remote manifest; local data is kept"),
        }
    }

    async fn sync_partition(
        &self,
        broker: &Arc<Broker>,
        p: &Arc<Partition>,
        remote: &Arc<RemoteLog>,
        mut w: tokio::sync::OwnedMutexGuard<Writer>,
    ) {
        if w.retry_at.is_some_and(|t| Instant::now() < t) {
            return;
        }
        match self.sync_inner(broker, p, remote, &mut w).await {
            Ok(()) => {
                if w.failures > 0 {
                    tracing::info!(topic = %p.topic, partition = p.index, "tiered storage recovered");
                }
                w.failures = 0;
                w.retry_at = None;
            }
            Err(error) => {
                broker.metrics.tiering.upload_errors.inc();
                w.failures = w.failures.saturating_add(1);
                let backoff = Duration::from_millis(500u64.saturating_mul(1 << w.failures.min(8))).min(MAX_BACKOFF);
                w.retry_at = Some(Instant::now() + backoff);
                if matches!(
                    error,
                    fjord_tiering::Error::ManifestConflict { .. } | fjord_tiering::Error::Fenced { .. }
                ) {
                    w.current = None;
                }
                tracing::warn!(topic = %p.topic, partition = p.index, %error, failures = w.failures,
                    retry_in_ms = backoff.as_millis() as u64, "tiered storage round failed; local data is kept");
            }
        }
    }

    async fn load(
        &self,
        broker: &Arc<Broker>,
        p: &Arc<Partition>,
        remote: &RemoteLog,
        w: &mut Writer,
    ) -> fjord_tiering::Result<()> {
        if w.current.is_some() {
            return Ok(());
        }
        let loaded = self.store.load_manifest(remote.tp).await?;
        let orphans = self.store.collect_orphans(&loaded.manifest).await?;
        broker.metrics.tiering.orphans_deleted.inc_by(orphans as u64);
        w.last_gc = Some(Instant::now());
        if let Some(end) = loaded.manifest.end_offset() {
            // A wiped local log also takes the producer state uploaded with the last segment.
            let wiped = {
                let log = p.log.lock();
                log.log_end_offset().0 < end && log.size_bytes() == 0
            };
            let snapshot = match loaded.manifest.segments.last() {
                Some(last) if wiped => self
                    .reader
                    .producer_snapshot(remote.tp, last)
                    .await
                    .unwrap_or_else(|error| {
                        tracing::warn!(topic = %p.topic, partition = p.index, %error,
                        "cannot read the remote producer snapshot; idempotent producers start afresh");
                        bytes::Bytes::new()
                    }),
                _ => bytes::Bytes::new(),
            };
            let p2 = Arc::clone(p);
            let reset = broker
                .blocking(move |_| {
                    let mut log = p2.log.lock();
                    let reset = log.reset_empty_at(Offset(end), &snapshot);
                    if matches!(reset, Ok(true)) {
                        let leo = log.log_end_offset();
                        log.set_high_watermark(leo);
                    }
                    reset
                })
                .await;
            match reset {
                Ok(true) => tracing::warn!(topic = %p.topic, partition = p.index, remote_end = end,
                    "local log was empty; resumed at the remote end (remote data stays readable)"),
                Ok(false) => {}
                Err(error) => tracing::error!(topic = %p.topic, partition = p.index, %error,
                    "cannot restart the local log at the remote end"),
            }
        }
        // Published only now, so nobody sees the manifest before a wiped log was restarted at
        // the remote end (and took its producer state).
        remote.publish(&loaded.manifest);
        tracing::info!(topic = %p.topic, partition = p.index, segments = loaded.manifest.segments.len(),
            remote_end = ?loaded.manifest.end_offset(), orphans, "loaded remote manifest");
        w.current = Some(loaded);
        Ok(())
    }

    async fn sync_inner(
        &self,
        broker: &Arc<Broker>,
        p: &Arc<Partition>,
        remote: &RemoteLog,
        w: &mut Writer,
    ) -> fjord_tiering::Result<()> {
        self.load(broker, p, remote, w).await?;
        let epoch = p.leader_epoch().0;
        // Phase two of an interrupted remote deletion.
        self.finish_deletes(broker, remote, w, epoch).await?;
        if w.last_gc.is_none_or(|t| t.elapsed() > GC_INTERVAL) {
            let current = w.current.as_ref().expect("loaded");
            let orphans = self.store.collect_orphans(&current.manifest).await?;
            broker.metrics.tiering.orphans_deleted.inc_by(orphans as u64);
            w.last_gc = Some(Instant::now());
        }
        loop {
            let end = w
                .current
                .as_ref()
                .expect("loaded")
                .manifest
                .end_offset()
                .unwrap_or(i64::MIN);
            let next = {
                let log = p.log.lock();
                let limit = log.high_watermark().0.min(log.recovery_point().0);
                log.closed_segments()
                    .into_iter()
                    .find(|s| s.base_offset.0 >= end && s.next_offset.0 <= limit && s.size > 0)
                    .map(|s| {
                        let snapshot = log.producer_snapshot_file(s.next_offset);
                        // Opened under the lock: readable even if retention deletes it next.
                        let file = s.open_file();
                        (s, snapshot, file)
                    })
            };
            let Some((seg, snapshot_path, file)) = next else {
                if self.flush_closed_segments(broker, p, end).await {
                    continue;
                }
                break;
            };
            let src = SegmentSource {
                base_offset: seg.base_offset.0,
                next_offset: seg.next_offset.0,
                size: seg.size,
                file: file.map_err(|source| fjord_tiering::Error::Io {
                    op: "open segment",
                    path: seg.path.display().to_string(),
                    source,
                })?,
                path: seg.path.display().to_string(),
                producer_snapshot: read_producer_snapshot(snapshot_path).await,
            };
            let chunk = self.config.chunk_size.as_u64() as u32;
            let meta = self
                .store
                .upload_segment(remote.tp, &src, epoch, chunk, &self.limiter)
                .await
                .inspect_err(|_| w.last_gc = None)?;
            let current = w.current.as_mut().expect("loaded");
            let mut next = current.manifest.clone();
            next.leader_epoch = epoch;
            if next.segments.is_empty() {
                next.log_start_offset = next.log_start_offset.max(meta.base_offset);
            }
            let bytes = meta.data_bytes;
            next.segments.push(meta);
            // A failed commit leaves the object unreferenced: the next GC removes it.
            self.store
                .commit_manifest(current, next)
                .await
                .inspect_err(|_| w.last_gc = None)?;
            remote.publish(&w.current.as_ref().expect("loaded").manifest);
            broker.metrics.tiering.uploaded_bytes.inc_by(bytes);
            broker.metrics.tiering.uploaded_segments.inc();
            tracing::debug!(topic = %p.topic, partition = p.index, base_offset = src.base_offset,
                next_offset = src.next_offset, bytes, "segment uploaded and committed");
        }
        self.apply_remote_retention(broker, p, remote, w, epoch).await
    }

    /// Closed segments below the high watermark but above the recovery point (e.g. after an
    /// unclean restart, with nothing appended since) are not uploaded until they are durable
    /// locally: fsync them now (outside the log lock). True if the recovery point moved.
    async fn flush_closed_segments(&self, broker: &Arc<Broker>, p: &Arc<Partition>, end: i64) -> bool {
        let waiting = {
            let log = p.log.lock();
            let (hw, rp) = (log.high_watermark().0, log.recovery_point().0);
            log.closed_segments()
                .iter()
                .any(|s| s.base_offset.0 >= end && s.next_offset.0 <= hw && s.next_offset.0 > rp)
        };
        if !waiting {
            return false;
        }
        let p2 = Arc::clone(p);
        let flushed = broker
            .blocking(move |_| {
                let ticket = p2.log.lock().flush_ticket();
                match ticket {
                    Some(t) => t.sync().map(|()| {
                        let mut log = p2.log.lock();
                        let before = log.recovery_point();
                        log.mark_flushed(t.up_to());
                        log.recovery_point() > before
                    }),
                    None => Ok(false),
                }
            })
            .await;
        match flushed {
            Ok(moved) => moved,
            Err(error) => {
                tracing::error!(topic = %p.topic, partition = p.index, %error, "flush before upload failed");
                false
            }
        }
    }

    async fn apply_remote_retention(
        &self,
        broker: &Arc<Broker>,
        p: &Arc<Partition>,
        remote: &RemoteLog,
        w: &mut Writer,
        epoch: i32,
    ) -> fjord_tiering::Result<()> {
        let current = w.current.as_mut().expect("loaded");
        let end = current.manifest.end_offset().unwrap_or(i64::MIN);
        let (retention_ms, retention_bytes, local_above) = {
            let log = p.log.lock();
            let below: u64 = log
                .closed_segments()
                .iter()
                .filter(|s| s.next_offset.0 <= end)
                .map(|s| s.size)
                .sum();
            (
                log.config().retention_ms,
                log.config().retention_bytes,
                log.size_bytes() - below,
            )
        };
        let k = retention::plan(
            &current.manifest,
            crate::clock::now_ms(),
            retention_ms,
            retention_bytes,
            local_above,
        );
        if k == 0 {
            return Ok(());
        }
        let mut one = retention::phase_one(&current.manifest, k);
        one.leader_epoch = epoch;
        self.store.commit_manifest(current, one).await?;
        remote.publish(&current.manifest);
        tracing::info!(topic = %p.topic, partition = p.index, segments = k,
            remote_log_start_offset = current.manifest.log_start_offset, "remote retention advanced the log start");
        self.finish_deletes(broker, remote, w, epoch).await
    }

    async fn finish_deletes(
        &self,
        broker: &Arc<Broker>,
        remote: &RemoteLog,
        w: &mut Writer,
        epoch: i32,
    ) -> fjord_tiering::Result<()> {
        let current = w.current.as_mut().expect("loaded");
        if current.manifest.deleting.is_empty() {
            return Ok(());
        }
        let doomed = current.manifest.deleting.clone();
        self.store.delete_segments(remote.tp, &doomed).await?;
        let mut two = current.manifest.clone();
        two.deleting.clear();
        two.leader_epoch = epoch;
        self.store.commit_manifest(current, two).await?;
        remote.publish(&current.manifest);
        for s in &doomed {
            self.reader.forget(&s.name);
        }
        broker
            .metrics
            .tiering
            .remote_deleted_segments
            .inc_by(doomed.len() as u64);
        Ok(())
    }

    /// DeleteRecords on a tiered partition: advances the remote log start to `offset` with a
    /// manifest commit (phase one); segments wholly below move to `deleting` and the upload loop
    /// deletes their objects (phase two).
    pub async fn delete_records(&self, remote: &RemoteLog, offset: i64, epoch: i32) -> fjord_tiering::Result<()> {
        let mut w = remote.writer.lock().await;
        let Some(current) = w.current.as_mut() else {
            return Err(fjord_tiering::Error::Config(
                "remote manifest not loaded yet (object store unreachable?)".to_string(),
            ));
        };
        if offset <= current.manifest.log_start_offset {
            return Ok(());
        }
        let k = current
            .manifest
            .segments
            .iter()
            .take_while(|s| s.next_offset <= offset)
            .count();
        let mut next = retention::phase_one(&current.manifest, k);
        next.log_start_offset = next.log_start_offset.max(offset);
        next.leader_epoch = epoch;
        self.store.commit_manifest(current, next).await?;
        remote.publish(&current.manifest);
        Ok(())
    }

    /// Reads below the local log start: whole batches from the remote segment holding `offset`.
    pub async fn read(
        &self,
        remote: &RemoteLog,
        offset: i64,
        max_bytes: usize,
        min_one_batch: bool,
    ) -> fjord_tiering::Result<Bytes> {
        let Some(manifest) = remote.manifest() else {
            return Ok(Bytes::new());
        };
        let Some(seg) = manifest.segment_for(offset) else {
            return Ok(Bytes::new());
        };
        self.reader.read(remote.tp, seg, offset, max_bytes, min_one_batch).await
    }

    /// ListOffsets by timestamp over remote data below `below` (the local log start);
    /// `limit` caps the bytes one batch may decompress to.
    pub async fn offset_for_timestamp(
        &self,
        remote: &RemoteLog,
        ts: i64,
        below: i64,
        limit: usize,
    ) -> Result<Option<(Offset, i64)>, String> {
        let Some(manifest) = remote.manifest() else {
            return Ok(None);
        };
        let mut from = manifest.log_start_offset;
        while let Some(seg) = manifest.segment_for_timestamp(ts, from) {
            if seg.base_offset >= below {
                return Ok(None);
            }
            match self.reader.find_timestamp(remote.tp, seg, ts, from).await {
                Ok(Some(hit)) => {
                    let last = hit.header.last_offset();
                    match first_record_at_or_after(hit.batch, ts, from, limit) {
                        Ok(Some(found)) if found.0.0 < below => return Ok(Some(found)),
                        Ok(Some(_)) => return Ok(None),
                        Ok(None) => from = last + 1,
                        Err(e) => return Err(e.to_string()),
                    }
                }
                Ok(None) => from = seg.next_offset,
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(None)
    }

    fn refresh_metrics(&self, broker: &Broker) {
        let m = &broker.metrics.tiering;
        let (mut lag_bytes, mut lag_segments, mut remote_bytes) = (0u64, 0u64, 0u64);
        for p in broker.replicas.all() {
            if let Some(state) = partition_state(p.as_ref()) {
                lag_bytes += state.upload_lag_bytes;
                lag_segments += state.upload_lag_segments;
                remote_bytes += state.remote_bytes;
            }
        }
        m.lag_bytes.set(lag_bytes as i64);
        m.lag_segments.set(lag_segments as i64);
        m.remote_bytes.set(remote_bytes as i64);
        let s = &self.reader.stats;
        use std::sync::atomic::Ordering::Relaxed;
        let now = [
            s.remote_bytes.load(Relaxed),
            s.cache_hits.load(Relaxed),
            s.cache_misses.load(Relaxed),
            s.read_errors.load(Relaxed),
        ];
        let mut last = self.last_read.lock();
        m.read_bytes.inc_by(now[0] - last[0]);
        m.cache_hits.inc_by(now[1] - last[1]);
        m.cache_misses.inc_by(now[2] - last[2]);
        m.read_errors.inc_by(now[3] - last[3]);
        *last = now;
        m.cache_bytes.set(s.cache_bytes.load(Relaxed) as i64);
        let mut warned = self.lag_warned.lock();
        if lag_segments > LAG_WARN_SEGMENTS && warned.is_none_or(|t| t.elapsed() > LAG_WARN_EVERY) {
            tracing::warn!(
                lag_segments,
                lag_bytes,
                "closed segments are waiting for upload; local disk grows"
            );
            *warned = Some(Instant::now());
        }
    }
}

/// Tiering state of one partition (None if it is not tiered).
pub fn partition_state(p: &Partition) -> Option<PartitionState> {
    let remote = p.remote()?;
    let manifest = remote.manifest();
    let end = remote.committed_end().0;
    let log = p.log.lock();
    let lag: Vec<u64> = log
        .closed_segments()
        .iter()
        .filter(|s| s.next_offset.0 > end)
        .map(|s| s.size)
        .collect();
    let local_start = log.log_start_offset();
    Some(PartitionState {
        topic: p.topic.clone(),
        partition: p.index,
        topic_id: remote.tp.topic_id.to_string(),
        manifest_loaded: manifest.is_some(),
        log_start_offset: manifest
            .as_ref()
            .and_then(|m| m.start_offset())
            .map_or(local_start.0, |r| r.min(local_start.0)),
        local_log_start_offset: local_start.0,
        remote_log_start_offset: manifest.as_ref().and_then(|m| m.start_offset()),
        remote_end_offset: manifest.as_ref().and_then(|m| m.end_offset()),
        high_watermark: log.high_watermark().0,
        remote_segments: manifest.as_ref().map_or(0, |m| m.segments.len()),
        remote_bytes: manifest.as_ref().map_or(0, |m| m.data_bytes()),
        local_bytes: log.size_bytes(),
        upload_lag_segments: lag.len() as u64,
        upload_lag_bytes: lag.iter().sum(),
    })
}

/// The bytes of a producer-state snapshot file, or empty if there is none (a segment closed
/// before any idempotent producer wrote, or a snapshot removed by retention meanwhile).
async fn read_producer_snapshot(path: Option<std::path::PathBuf>) -> bytes::Bytes {
    let Some(path) = path else {
        return bytes::Bytes::new();
    };
    match tokio::fs::read(&path).await {
        Ok(bytes) => bytes::Bytes::from(bytes),
        Err(error) => {
            tracing::debug!(path = %path.display(), %error, "no producer snapshot to upload with the segment");
            bytes::Bytes::new()
        }
    }
}
