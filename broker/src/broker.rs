//! The broker context every handler gets: configuration, cluster identity, the metadata store and
//! image, hosted partitions and metrics. Built once at start-up by [`Broker::open`].

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use fjord_metadata::{MetadataImage, MetadataStore};
use fjord_quorum::Quorum;

use crate::cluster::{ControllerState, MetadataBackend};

use crate::buffers::BufferPool;
use crate::config::BrokerConfig;
use crate::group::GroupCoordinator;
use crate::metrics::Metrics;
use crate::producer_ids::ProducerIdAllocator;
use crate::publish::{MetadataPublisher, Publishing};
use crate::replication::ReplicaManager;

/// How long a metadata writer waits for its image to be published on this broker.
const METADATA_PUBLISH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Read buffers kept for reuse by fetches (a few fetch responses' worth).
const READ_BUFFER_POOL_BYTES: usize = 256 * 1024 * 1024;

/// Shared state of a running broker.
#[derive(Debug)]
pub struct Broker {
    pub config: BrokerConfig,
    pub cluster_id: String,
    /// Where metadata is committed: the local log, or the quorum in cluster mode.
    pub metadata: MetadataBackend,
    /// The active controller's broker sessions (used while this broker is the controller).
    pub controller_state: ControllerState,
    pub replicas: Arc<ReplicaManager>,
    /// Hands every committed metadata image to the components that follow it.
    pub publishing: Arc<Publishing>,
    pub metrics: Arc<Metrics>,
    /// Consumer groups and committed offsets.
    pub groups: GroupCoordinator,
    /// Transactional ids and their transactions.
    pub txn: crate::txn::TxnCoordinator,
    /// Read buffers reused across fetches.
    pub read_buffers: Arc<BufferPool>,
    /// Producer ids for InitProducerId.
    pub producer_ids: ProducerIdAllocator,
    /// Tiered storage, when `tiering.enabled`.
    pub tiering: Option<Arc<crate::tiering::Tiering>>,
    /// This incarnation's broker epoch (KIP-631), from its registration.
    pub broker_epoch: i64,
    shutting_down: AtomicBool,
}

impl Broker {
    /// Opens the data dir: cluster identity, metadata log, and every partition log it names.
    /// `quorum` is the started metadata quorum in cluster mode (see [`start_quorum`]); without
    /// it the broker is the embedded single node with a local metadata log.
    pub fn open(config: BrokerConfig, quorum: Option<Quorum>) -> anyhow::Result<Arc<Broker>> {
        let data_dir = config.storage.data_dir.clone();
        std::fs::create_dir_all(&data_dir).with_context(|| format!("creating data dir {}", data_dir.display()))?;
        let cluster_id = load_or_create_cluster_id(&data_dir, config.node_id, config.cluster.id.as_deref())?;
        let (metadata, broker_epoch) = match quorum {
            Some(quorum) => (MetadataBackend::Raft(quorum), 0),
            None => {
                let metadata_log = metadata_log_path(&data_dir)?;
                let metadata = MetadataStore::open(&metadata_log).context("opening the metadata log")?;
                metadata.set_reserve(config.storage.metadata_reserve_bytes.as_u64());
                let broker_epoch = crate::lifecycle::register_locally(&metadata, &config)
                    .context("registering the broker in metadata")?;
                metadata.compact_if_over(config.cluster.snapshot_every);
                (MetadataBackend::Local(metadata), broker_epoch)
            }
        };
        let metrics = Metrics::new(config.http.per_partition_metrics);
        let replicas = Arc::new(ReplicaManager::new(&config, metrics.clone()).context("opening the data dir")?);
        let tiering = crate::tiering::Tiering::open(&config).context("opening tiered storage")?;
        let image = metadata.image();
        replicas.sync_with_image(&image).context("opening partition logs")?;
        tracing::info!(%cluster_id, node_id = config.node_id, topics = image.topic_count(),
            partitions = image.partition_count(), "broker state loaded");
        let groups = GroupCoordinator::new(config.groups.clone());
        let txn = crate::txn::TxnCoordinator::new(config.transactions.clone());
        let publishers: Vec<Arc<dyn MetadataPublisher>> = vec![replicas.clone()];
        let publishing = Arc::new(Publishing::new(image, publishers));
        Ok(Arc::new(Broker {
            controller_state: ControllerState::new(config.cluster.broker_session_timeout),
            config,
            cluster_id,
            metadata,
            replicas,
            publishing,
            metrics,
            groups,
            txn,
            read_buffers: BufferPool::new(READ_BUFFER_POOL_BYTES),
            producer_ids: ProducerIdAllocator::default(),
            tiering,
            broker_epoch,
            shutting_down: AtomicBool::new(false),
        }))
    }

    pub fn image(&self) -> Arc<MetadataImage> {
        self.metadata.image()
    }

    /// Hands a just-committed image to the publishers and waits until it (or a later one) has
    /// been published on this broker, so the writer reads its own write.
    pub fn await_published(&self, image: Arc<MetadataImage>) -> Result<(), String> {
        let offset = image.offset;
        self.publishing.offer(image);
        self.publishing
            .wait_published_blocking(offset, METADATA_PUBLISH_TIMEOUT)
    }

    /// The active controller's node id. single-node: this broker is its own controller.
    pub fn controller_id(&self) -> i32 {
        match self.metadata.quorum() {
            None => self.config.node_id,
            Some(_) => self.metadata.controller().map_or(-1, |(id, _)| id),
        }
    }

    pub fn node_id(&self) -> i32 {
        self.config.node_id
    }

    /// Topic defaults in force: the static `[topics]` settings plus the dynamic broker configs of
    /// the current metadata image.
    pub fn topic_defaults(&self) -> crate::config::TopicDefaults {
        crate::topic_config::with_dynamic(
            &self.config.topics,
            &self.image(),
            fjord_metadata::BrokerId(self.config.node_id),
        )
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    /// Runs blocking work (file I/O, metadata commits) off the async workers (invariant 5).
    pub async fn blocking<T: Send + 'static>(self: &Arc<Self>, work: impl FnOnce(&Broker) -> T + Send + 'static) -> T {
        let broker = self.clone();
        tokio::task::spawn_blocking(move || work(&broker))
            .await
            .expect("blocking broker task panicked")
    }
}

/// Where the metadata log lives: `<data dir>/metadata/metadata.log`. The directory name has no
/// `-<partition>` suffix, so no topic partition's directory (`<topic>-<n>`) can ever be it.
/// Data dirs of earlier versions kept the log in `__cluster_metadata-0/`, a name a topic could
/// map to; it is moved here once, durably, before anything reads it.
fn metadata_log_path(data_dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    let dir = data_dir.join(METADATA_DIR);
    let path = dir.join("metadata.log");
    let legacy = data_dir.join("__cluster_metadata-0").join("metadata.log");
    if !path.exists() && legacy.exists() {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::rename(&legacy, &path)
            .with_context(|| format!("moving {} to {}", legacy.display(), path.display()))?;
        for synced in [&dir, &data_dir.to_path_buf()] {
            std::fs::File::open(synced)
                .and_then(|d| d.sync_all())
                .with_context(|| format!("syncing {}", synced.display()))?;
        }
        // The old directory goes only if nothing else is in it (a topic that took the reserved
        // name before it was refused keeps its data).
        if let Some(old_dir) = legacy.parent() {
            let _ = std::fs::remove_dir(old_dir);
        }
        tracing::info!(from = %legacy.display(), to = %path.display(), "moved the metadata log out of the partition namespace");
    } else if legacy.exists() {
        tracing::warn!(legacy = %legacy.display(), current = %path.display(),
            "ignoring a metadata log at the earlier location; the current one is used");
    }
    Ok(path)
}

/// The data dir's directory for broker-owned metadata (never a partition directory name).
const METADATA_DIR: &str = "metadata";

/// Reads `meta.properties` (Kafka's format) or writes a new one with the configured cluster id
/// (cluster mode) or a fresh one. A data dir formatted for another cluster is refused.
fn load_or_create_cluster_id(data_dir: &Path, node_id: i32, configured: Option<&str>) -> anyhow::Result<String> {
    let path = data_dir.join("meta.properties");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let id = text.lines().find_map(|l| l.strip_prefix("cluster.id=")).map(str::trim);
        if let Some(id) = id.filter(|id| !id.is_empty()) {
            if let Some(configured) = configured
                && configured != id
            {
                anyhow::bail!(
                    "data dir {} belongs to cluster {id}, but cluster.id is {configured}; refusing to join another cluster",
                    data_dir.display()
                );
            }
            return Ok(id.to_string());
        }
        anyhow::bail!("{} has no cluster.id", path.display());
    }
    // Kafka cluster ids are 16 random bytes in URL-safe base64 without padding (22 chars).
    let id = configured.map_or_else(|| base64_url(uuid::Uuid::new_v4().as_bytes()), str::to_string);
    let body = format!("version=1\ncluster.id={id}\nnode.id={node_id}\n");
    crate::replication::write_durably(&path, body.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
    Ok(id)
}

fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_metadata_log_is_moved_out_of_the_partition_namespace() {
        let dir = tempfile::tempdir().expect("tempdir");
        let legacy_dir = dir.path().join("__cluster_metadata-0");
        std::fs::create_dir_all(&legacy_dir).expect("mkdir");
        std::fs::write(legacy_dir.join("metadata.log"), b"entries").expect("write");
        let path = metadata_log_path(dir.path()).expect("migrates");
        assert_eq!(path, dir.path().join("metadata").join("metadata.log"));
        assert_eq!(std::fs::read(&path).expect("moved"), b"entries");
        assert!(!legacy_dir.exists(), "the emptied legacy dir is removed");
        // Idempotent: a second open finds the log where it is.
        assert_eq!(metadata_log_path(dir.path()).expect("again"), path);
        // A legacy dir that also holds partition files keeps them.
        std::fs::create_dir_all(&legacy_dir).expect("mkdir");
        std::fs::write(legacy_dir.join("00000000000000000000.log"), b"data").expect("write");
        metadata_log_path(dir.path()).expect("opens");
        assert!(legacy_dir.join("00000000000000000000.log").exists());
    }

    #[test]
    fn cluster_id_is_22_url_safe_chars_and_stable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = load_or_create_cluster_id(dir.path(), 0, None).expect("creates");
        assert_eq!(first.len(), 22);
        assert!(first.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_eq!(load_or_create_cluster_id(dir.path(), 0, None).expect("reads"), first);
    }
}

/// Starts this broker's member of the metadata quorum (cluster mode): Raft storage under
/// `<data>/metadata/raft/`, voters from `cluster.voters`.
pub async fn start_quorum(config: &BrokerConfig) -> anyhow::Result<Quorum> {
    let data_dir = &config.storage.data_dir;
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating data dir {}", data_dir.display()))?;
    let cluster_id = load_or_create_cluster_id(data_dir, config.node_id, config.cluster.id.as_deref())?;
    let voters = config
        .cluster
        .parsed_voters()
        .map_err(anyhow::Error::msg)?
        .into_iter()
        .map(|v| (v.id as u64, v.address))
        .collect();
    let mut quorum_config = fjord_quorum::QuorumConfig::new(
        config.node_id as u64,
        config.cluster.advertised(),
        voters,
        cluster_id,
        data_dir.join(METADATA_DIR).join("raft"),
    );
    quorum_config.election_timeout_min = config.cluster.election_timeout;
    quorum_config.election_timeout_max = config.cluster.election_timeout * 2;
    quorum_config.heartbeat_interval = config.cluster.raft_heartbeat_interval;
    quorum_config.snapshot_every = config.cluster.snapshot_every;
    Quorum::start(quorum_config)
        .await
        .context("starting the metadata quorum")
}
