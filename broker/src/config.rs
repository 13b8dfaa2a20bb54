//! The broker's one typed configuration: built-in defaults, then a TOML file, then `FJORD_*`
//! environment variables, then command-line flags, each layer overriding the one before. The
//! embedded default (no file, no flags) is a single node on 127.0.0.1:9092 with data in `./data`.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;
use clap::Parser;
use serde::{Deserialize, Serialize};

/// Command-line flags. Every flag also reads an environment variable; `--set` reaches any key.
#[derive(Debug, Parser, Default)]
#[command(
    name = "fjord-broker",
    version,
    about = "Fjord: a Kafka-compatible broker on a durable, segmented log"
)]
pub struct Cli {
    /// TOML config file (see broker/config/broker.example.toml for every key).
    #[arg(long, env = "FJORD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Kafka listener address [default: 127.0.0.1:9092].
    #[arg(long, env = "FJORD_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// host:port clients are told to connect to [default: the listen address].
    #[arg(long, env = "FJORD_ADVERTISED_LISTENER")]
    pub advertised_listener: Option<String>,
    /// Directory for partition logs and the metadata log [default: ./data].
    #[arg(long, env = "FJORD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// HTTP address for /metrics and /health [default: 127.0.0.1:9644].
    #[arg(long, env = "FJORD_HTTP_LISTEN")]
    pub http_listen: Option<SocketAddr>,
    /// Create topics on first Metadata or Produce request [default: true].
    #[arg(long, env = "FJORD_AUTO_CREATE_TOPICS")]
    pub auto_create_topics: Option<bool>,
    /// This broker's node id (Kafka node.id) [default: 0].
    #[arg(long, env = "FJORD_NODE_ID")]
    pub node_id: Option<i32>,
    /// Rack or zone of this broker (Kafka broker.rack).
    #[arg(long, env = "FJORD_RACK")]
    pub rack: Option<String>,
    /// Controller quorum voters, `id@host:port,...` (Kafka controller.quorum.voters); unset = a
    /// one-node quorum of this broker.
    #[arg(long, env = "FJORD_CONTROLLER_VOTERS", value_delimiter = ',')]
    pub controller_voters: Option<Vec<String>>,
    /// Controller listener address (Raft and broker-to-controller RPC) [default: 127.0.0.1:9093].
    #[arg(long, env = "FJORD_CONTROLLER_LISTEN")]
    pub controller_listen: Option<SocketAddr>,
    /// Override any config key, e.g. `--set storage.flush_interval=500ms` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Node id of a StatefulSet pod: this base plus the ordinal that ends `--pod-name`
    /// (base 100 and pod `fjord-a-2` give node 102). Overrides `node_id`; the operator sets it,
    /// so a broker image needs no shell to work out its id.
    #[arg(long, env = "FJORD_NODE_ID_BASE", requires = "pod_name")]
    pub node_id_base: Option<i32>,
    /// This broker's pod name, `<statefulset>-<ordinal>` (read with --node-id-base).
    #[arg(long, env = "FJORD_POD_NAME")]
    pub pod_name: Option<String>,
}

/// Errors found while loading or validating the configuration. All problems are reported at once.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("invalid config: {0}")]
    Parse(String),
    #[error("invalid config:\n  {}", .0.join("\n  "))]
    Invalid(Vec<String>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[derive(Default)]
pub struct BrokerConfig {
    /// This broker's node id.
    pub node_id: i32,
    /// Rack (zone) this broker runs in, reported in Metadata and DescribeCluster.
    pub rack: Option<String>,
    pub network: NetworkConfig,
    pub http: HttpConfig,
    pub admin: AdminConfig,
    pub storage: StorageConfig,
    pub topics: TopicDefaults,
    pub cleaner: LogCleanerConfig,
    pub groups: GroupConfig,
    pub producers: ProducerConfig,
    pub transactions: TransactionConfig,
    pub tiering: TieringConfig,
    pub cluster: ClusterConfig,
    pub tls: TlsConfig,
    pub sasl: SaslConfig,
    pub authorizer: AuthorizerConfig,
}

/// The server certificate of the SSL and SASL_SSL listeners (Kafka's `ssl.*`), from PEM files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain (leaf first).
    pub cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// PEM CA certificates that client certificates must chain to (mutual TLS).
    pub ca_file: Option<PathBuf>,
    /// Kafka's `ssl.client.auth`: `none`, `requested` or `required`. With a client certificate
    /// the SSL listener's principal is `User:<subject CN>`.
    pub client_auth: String,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert_file: None,
            key_file: None,
            ca_file: None,
            client_auth: "none".into(),
        }
    }
}

/// SASL on the SASL_PLAINTEXT and SASL_SSL listeners (Kafka's `sasl.enabled.mechanisms`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SaslConfig {
    /// Any of `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`.
    pub enabled_mechanisms: Vec<String>,
    /// PLAIN users, user -> password (for development; SCRAM credentials live in metadata).
    pub plain_users: BTreeMap<String, String>,
    /// A file of more PLAIN users, one `user:password` a line (`#` starts a comment).
    pub plain_users_file: Option<PathBuf>,
}

impl Default for SaslConfig {
    fn default() -> Self {
        SaslConfig {
            enabled_mechanisms: vec!["PLAIN".into(), "SCRAM-SHA-256".into(), "SCRAM-SHA-512".into()],
            plain_users: BTreeMap::new(),
            plain_users_file: None,
        }
    }
}

/// ACL authorization (Kafka's `authorizer.class.name`, `super.users`,
/// `allow.everyone.if.no.acl.found`). Off by default: every principal may do everything.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AuthorizerConfig {
    pub enabled: bool,
    /// Principals that pass every check, e.g. `["User:admin"]`.
    pub super_users: Vec<String>,
    /// Allow a request on a resource no ACL names.
    pub allow_everyone_if_no_acl_found: bool,
}

/// Kafka's security protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn parse(name: &str) -> Option<SecurityProtocol> {
        match name {
            "PLAINTEXT" => Some(SecurityProtocol::Plaintext),
            "SSL" => Some(SecurityProtocol::Ssl),
            "SASL_PLAINTEXT" => Some(SecurityProtocol::SaslPlaintext),
            "SASL_SSL" => Some(SecurityProtocol::SaslSsl),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    pub fn tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    pub fn sasl(self) -> bool {
        matches!(self, SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl)
    }
}

/// One Kafka listener as resolved from `network.listen` and `network.listeners`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub name: String,
    pub listen: SocketAddr,
    pub advertised_host: String,
    pub advertised_port: i32,
    pub protocol: SecurityProtocol,
}

/// The name of the listener on `network.listen`.
pub const DEFAULT_LISTENER: &str = "PLAINTEXT";

/// Splits Kafka's `NAME://host:port,...` list.
fn parse_listener_list(key: &str, raw: &str) -> Result<Vec<(String, String, u16)>, String> {
    let mut out = Vec::new();
    for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (name, addr) = entry
            .split_once("://")
            .ok_or_else(|| format!("{key}: {entry:?} is not NAME://host:port"))?;
        let (host, port) = addr
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.trim_matches(['[', ']']).to_string(), p.parse::<u16>().ok()?)))
            .ok_or_else(|| format!("{key}: {entry:?} is not NAME://host:port"))?;
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(format!("{key}: bad listener name {name:?}"));
        }
        out.push((name.to_string(), host, port));
    }
    Ok(out)
}

/// Cluster membership: the controller quorum and broker lifecycle timings (Kafka's
/// `controller.quorum.*` and `broker.*` settings).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// The cluster id every broker of the cluster shares (Kafka formats storage with it);
    /// required with `voters`. Written to `meta.properties`; a data dir of another cluster is
    /// refused at start.
    pub id: Option<String>,
    /// Controller quorum voters as `id@host:port` of their controller listeners (Kafka
    /// `controller.quorum.voters`): 1, 3 or 5. Empty: this broker alone is the quorum (the
    /// embedded single-node default); every broker not named here is a learner (observer).
    pub voters: Vec<String>,
    /// Address of the controller listener (Raft and broker-to-controller RPC); bound only when
    /// `voters` is set.
    pub listen: SocketAddr,
    /// host:port other brokers use to reach this broker's controller listener; unset = `listen`.
    pub advertised_listener: Option<String>,
    /// A broker that has not heartbeaten for this long is fenced (broker.session.timeout.ms).
    #[serde(with = "humantime_serde")]
    pub broker_session_timeout: Duration,
    /// How often a broker heartbeats to the active controller (broker.heartbeat.interval.ms).
    #[serde(with = "humantime_serde")]
    pub broker_heartbeat_interval: Duration,
    /// A follower that hears nothing from the leader for this long (randomised up to twice it)
    /// starts an election (controller.quorum.election.timeout.ms).
    #[serde(with = "humantime_serde")]
    pub election_timeout: Duration,
    /// How often the quorum leader sends heartbeats to the other nodes. openraft also uses it as
    /// the timeout of every AppendEntries call, which includes the follower's fsync of its Raft
    /// log: 250 ms rides out fsync stalls that 100 ms did not (seen at 10k partitions under disk
    /// contention, where heartbeats timed out and the quorum kept re-electing).
    #[serde(with = "humantime_serde")]
    pub raft_heartbeat_interval: Duration,
    /// A metadata snapshot is taken after this many new log entries, and the log behind it trimmed.
    /// The embedded single node's local metadata log is rewritten as its image (one checkpoint)
    /// once it holds more batches than this, checked at start and every `checkpoint_interval`.
    pub snapshot_every: u64,
    /// The active controller moves leadership back to preferred replicas that are healthy again
    /// (auto.leader.rebalance.enable).
    pub auto_leader_rebalance: bool,
    /// How often it checks (leader.imbalance.check.interval.seconds).
    #[serde(with = "humantime_serde")]
    pub leader_rebalance_interval: Duration,
    /// A follower that has not caught up with its leader's log end for this long leaves the ISR
    /// (replica.lag.time.max.ms).
    #[serde(with = "humantime_serde")]
    pub replica_lag_time_max: Duration,
    /// Which replica a partition leader tells a consumer to fetch from (Kafka's
    /// `replica.selector.class`, KIP-392): `leader` (Kafka's default) or `rack_aware` (an
    /// in-sync replica in the client's `client.rack`, Kafka's RackAwareReplicaSelector).
    /// Followers serve consumer fetches up to their high watermark whatever this says.
    pub replica_selector: ReplicaSelector,
}

/// Kafka's `replica.selector.class` choices (see [`ClusterConfig::replica_selector`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaSelector {
    /// Consumers always fetch from the leader (Kafka's LeaderSelector, its default).
    #[default]
    Leader,
    /// Consumers with a `rack_id` are sent to an in-sync replica in their rack, if one other than
    /// the leader is there (Kafka's RackAwareReplicaSelector).
    RackAware,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            id: None,
            voters: Vec::new(),
            listen: SocketAddr::from(([127, 0, 0, 1], 9093)),
            advertised_listener: None,
            broker_session_timeout: Duration::from_secs(9),
            broker_heartbeat_interval: Duration::from_secs(2),
            election_timeout: Duration::from_secs(1),
            raft_heartbeat_interval: Duration::from_millis(250),
            snapshot_every: 1000,
            auto_leader_rebalance: true,
            leader_rebalance_interval: Duration::from_secs(300),
            replica_lag_time_max: Duration::from_secs(30),
            replica_selector: ReplicaSelector::Leader,
        }
    }
}

/// One controller quorum voter: its node id and controller listener address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Voter {
    pub id: i32,
    pub address: String,
}

impl ClusterConfig {
    /// The parsed voter list (validated by [`BrokerConfig::validate`]).
    pub fn parsed_voters(&self) -> Result<Vec<Voter>, String> {
        let mut voters: Vec<Voter> = Vec::new();
        for raw in &self.voters {
            let (id, address) = raw
                .split_once('@')
                .ok_or_else(|| format!("cluster.voters entry {raw:?} must be id@host:port"))?;
            let id: i32 = id
                .trim()
                .parse()
                .ok()
                .filter(|id| *id >= 0)
                .ok_or_else(|| format!("cluster.voters entry {raw:?} has an invalid node id"))?;
            let address = address.trim();
            match address.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {}
                _ => return Err(format!("cluster.voters entry {raw:?} must be id@host:port")),
            }
            if voters.iter().any(|v| v.id == id) {
                return Err(format!("cluster.voters names node {id} twice"));
            }
            voters.push(Voter {
                id,
                address: address.to_string(),
            });
        }
        Ok(voters)
    }

    /// Whether this broker runs in cluster mode (a configured quorum) rather than as the
    /// embedded one-node quorum of itself.
    pub fn is_clustered(&self) -> bool {
        !self.voters.is_empty()
    }

    /// host:port of this broker's controller listener as other brokers reach it.
    pub fn advertised(&self) -> String {
        self.advertised_listener
            .clone()
            .unwrap_or_else(|| self.listen.to_string())
    }
}

/// Idempotent producers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProducerConfig {
    /// A partition forgets a producer id this long after its last batch
    /// (producer.id.expiration.ms); checked when retention runs.
    pub id_expiration_ms: i64,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            id_expiration_ms: 86_400_000,
        }
    }
}

/// The transaction coordinator (Kafka's `transaction.*` broker settings).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TransactionConfig {
    /// transaction.state.log.num.partitions: partitions of `__transaction_state` (fixed once
    /// created).
    pub state_log_partitions: i32,
    /// transaction.state.log.segment.bytes
    pub state_log_segment_bytes: u64,
    /// transaction.max.timeout.ms: the longest `transaction.timeout.ms` a producer may ask for.
    #[serde(with = "humantime_serde")]
    pub max_timeout: Duration,
    /// transaction.abort.timed.out.transaction.cleanup.interval.ms: how often transactions past
    /// their timeout are looked for and aborted.
    #[serde(with = "humantime_serde")]
    pub abort_timed_out_interval: Duration,
}

impl Default for TransactionConfig {
    fn default() -> Self {
        TransactionConfig {
            state_log_partitions: 50,
            state_log_segment_bytes: 100 * 1024 * 1024,
            max_timeout: Duration::from_secs(900),
            abort_timed_out_interval: Duration::from_secs(10),
        }
    }
}

/// Tiered storage (Kafka `remote.log.storage.system.enable` and friends): closed segments of
/// topics with `remote.storage.enable=true` go to an object store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TieringConfig {
    /// Broker switch for tiered storage.
    pub enabled: bool,
    /// Object store: `s3://bucket/prefix`, `file:///dir` or `memory://` (tests).
    pub url: String,
    /// S3 endpoint of an S3-compatible server; unset = AWS (or `AWS_ENDPOINT`).
    pub endpoint: Option<String>,
    /// S3 region; unset = `AWS_REGION` / `AWS_DEFAULT_REGION`.
    pub region: Option<String>,
    /// Credentials; unset = the standard AWS environment variables.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Allow a plain-http endpoint.
    pub allow_http: bool,
    /// Timeout of one object-store request.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// How often partitions are checked for segments to upload and remote retention.
    #[serde(with = "humantime_serde")]
    pub upload_interval: Duration,
    /// Partitions uploading at the same time.
    pub upload_concurrency: usize,
    /// Upload bandwidth cap over all partitions (0 = unlimited).
    pub upload_bytes_per_second: ByteSize,
    /// Remote reads fetch and checksum objects in chunks of this size.
    pub chunk_size: ByteSize,
    /// Read-cache directory; unset = `<data_dir>/.remote-cache`. Emptied at start.
    pub cache_dir: Option<PathBuf>,
    /// Read-cache size cap (least recently used chunks are evicted).
    pub cache_max_bytes: ByteSize,
}

impl Default for TieringConfig {
    fn default() -> Self {
        TieringConfig {
            enabled: false,
            url: String::new(),
            endpoint: None,
            region: None,
            access_key_id: None,
            secret_access_key: None,
            allow_http: false,
            request_timeout: Duration::from_secs(30),
            upload_interval: Duration::from_secs(1),
            upload_concurrency: 4,
            upload_bytes_per_second: ByteSize::b(0),
            chunk_size: ByteSize::mib(16),
            cache_dir: None,
            cache_max_bytes: ByteSize::gib(1),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkConfig {
    pub listen: SocketAddr,
    pub advertised_listener: Option<String>,
    /// Largest request frame accepted; larger frames close the connection (Kafka socket.request.max.bytes).
    pub max_request_size: ByteSize,
    /// Requests a connection may have read but not yet answered, for every API (Fetch
    /// long-polls and group waits included); at the limit the connection is not read until a
    /// response is written. Kafka itself answers one request per connection at a time.
    pub max_in_flight_requests: usize,
    /// A connection with no request for this long is closed (Kafka connections.max.idle.ms).
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// A request's bytes (size prefix and body) must all arrive within this time of its first
    /// byte, or the connection is closed (slowloris defence; Kafka has no equivalent key). Time
    /// spent waiting for request memory (`queued_max_request_bytes`) does not count.
    #[serde(with = "humantime_serde")]
    pub request_read_timeout: Duration,
    /// Request bytes read but not yet answered, over all connections (Kafka
    /// queued.max.request.bytes). A connection whose next request does not fit stops being read
    /// until memory is released. Must be at least `max_request_size`.
    pub queued_max_request_bytes: ByteSize,
    /// Open client connections (Kafka max.connections). At the limit new connections are not
    /// accepted (they wait in the listen backlog) until one closes.
    pub max_connections: usize,
    /// Open client connections from one IP address (Kafka max.connections.per.ip); a connection
    /// over the limit is closed at once.
    pub max_connections_per_ip: usize,
    /// Per-IP exceptions to `max_connections_per_ip`, IP address -> limit (Kafka
    /// max.connections.per.ip.overrides; addresses only, no host names).
    pub max_connections_per_ip_overrides: BTreeMap<String, usize>,
    /// Largest Fetch response (Kafka fetch.max.bytes): a request's max_bytes, and so every
    /// partition's, is capped at this. As in Kafka, the first partition with data may still
    /// return one whole batch above it.
    pub fetch_max_bytes: ByteSize,
    /// How long shutdown waits for in-flight requests before closing connections anyway.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// More listeners besides `listen` (which is the listener named `PLAINTEXT`), Kafka's
    /// `listeners` format: `SECURE://127.0.0.1:9094,INTERNAL://10.0.0.5:9095`.
    pub listeners: String,
    /// What clients are told for each extra listener, `NAME://host:port,...` (Kafka's
    /// `advertised.listeners`); a listener not named here advertises its bind address.
    pub advertised_listeners: String,
    /// Listener name -> security protocol, `NAME:PROTOCOL,...` (Kafka's
    /// `listener.security.protocol.map`). A listener not named here must itself be named after
    /// a protocol (`PLAINTEXT`, `SSL`, `SASL_PLAINTEXT`, `SASL_SSL`).
    pub listener_security_protocol_map: String,
    /// The listener other brokers' replica fetchers use to reach this one (Kafka's
    /// `inter.broker.listener.name`): its advertised address is what they dial. It must be a
    /// PLAINTEXT listener for now (the replica fetcher speaks neither TLS nor SASL).
    pub inter_broker_listener_name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address of the /metrics and /health endpoint; absent disables it.
    pub listen: Option<SocketAddr>,
    /// Export per-partition series (log end offset per topic-partition). High cardinality.
    pub per_partition_metrics: bool,
}

/// The admin gRPC API (`fjord.admin.v1.Admin`, gRPC health and reflection).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Address of the admin gRPC server; absent disables it.
    pub listen: Option<SocketAddr>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 9645))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub data_dir: PathBuf,
    /// acks=all responses wait for fsync of the batch (group commit), and followers fetch the
    /// next batch only once the previous ones are fsynced, so an acknowledged record is on the
    /// disk of every ISR member. false = Kafka's classic behaviour: acks=all waits for the ISR
    /// to have the batch in memory (page cache) and durability rests on the background flush.
    pub fsync_on_acks_all: bool,
    /// Background flush interval for data not yet fsynced (acks=0/1 writes). Topic `flush.ms`
    /// and `flush.messages` can make a topic flush sooner.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// How often retention runs (Kafka log.retention.check.interval.ms).
    #[serde(with = "humantime_serde")]
    pub retention_check_interval: Duration,
    /// How often recovery points and indexes are checkpointed.
    #[serde(with = "humantime_serde")]
    pub checkpoint_interval: Duration,
    /// Segment and index files kept open at once; the least recently used are closed and
    /// reopened on use. 0 = half of the open-file limit (RLIMIT_NOFILE, raised to its hard limit
    /// at start).
    pub max_open_files: usize,
    /// Space kept allocated next to the metadata log (a reserve file) and released when a
    /// metadata write finds the disk full, so DeleteTopics can always commit and free space.
    /// 0 = no reserve.
    pub metadata_reserve_bytes: ByteSize,
    /// The records of one batch may decompress to at most the topic's `max.message.bytes`
    /// times this; a batch that decompresses to more is refused (MESSAGE_TOO_LARGE) as a
    /// decompression bomb. Stored batches are read with the same cap (never below it at
    /// Kafka's default `max.message.bytes`).
    pub max_compression_ratio: u32,
}

/// The log cleaner (compaction of `cleanup.policy=compact` topics), Kafka's `log.cleaner.*`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogCleanerConfig {
    /// Run the cleaner thread (log.cleaner.enable).
    pub enable: bool,
    /// Cap on the cleaner's disk I/O, bytes read plus written (log.cleaner.io.max.bytes.per.second); 0 = no cap.
    pub io_max_bytes_per_second: ByteSize,
    /// Memory for one pass's key -> offset map (log.cleaner.dedupe.buffer.size); a pass that fills it
    /// stops at a segment boundary and the next pass continues.
    pub dedupe_buffer_size: ByteSize,
    /// Pause between scans when no log needs cleaning (log.cleaner.backoff.ms).
    #[serde(with = "humantime_serde")]
    pub backoff: Duration,
}

impl Default for LogCleanerConfig {
    fn default() -> Self {
        LogCleanerConfig {
            enable: true,
            io_max_bytes_per_second: ByteSize::mib(64),
            dedupe_buffer_size: ByteSize::mib(128),
            backoff: Duration::from_secs(15),
        }
    }
}

/// Broker-wide defaults for topic configs, in Kafka's units (the `log.*` broker settings).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicDefaults {
    /// auto.create.topics.enable
    pub auto_create: bool,
    /// num.partitions: partitions of an auto-created topic, or of CreateTopics with -1.
    pub num_partitions: i32,
    /// default.replication.factor (one node: must be 1).
    pub replication_factor: i16,
    /// log.segment.bytes
    pub segment_bytes: u64,
    /// log.roll.ms
    pub segment_ms: i64,
    /// log.retention.ms (-1 = unlimited)
    pub retention_ms: i64,
    /// log.retention.bytes (-1 = unlimited)
    pub retention_bytes: i64,
    /// message.max.bytes: largest record batch a topic accepts by default.
    pub max_message_bytes: i32,
    /// log.message.timestamp.type: CreateTime or LogAppendTime.
    pub message_timestamp_type: String,
    /// log.cleanup.policy
    pub cleanup_policy: String,
    /// log.flush.interval.messages (i64::MAX = leave it to the flush policy)
    pub flush_messages: i64,
    /// log.flush.interval.ms (i64::MAX = leave it to the flush policy)
    pub flush_ms: i64,
    /// log.index.interval.bytes
    pub index_interval_bytes: i32,
    /// log.index.size.max.bytes
    pub segment_index_bytes: i32,
    /// Most partitions this broker hosts (KIP-578's max.broker.partitions, internal topics
    /// included): CreateTopics and CreatePartitions beyond it are refused with POLICY_VIOLATION.
    /// 0 = a third of the open-file limit, between 1000 and 10000.
    pub max_partitions: i32,
    /// Dynamic broker configs in force (set through AlterConfigs on a BROKER resource and kept
    /// in the metadata log), by topic config name. Never read from the file: filled from the
    /// metadata image by `topic_config::with_dynamic`.
    #[serde(skip)]
    pub dynamic: BTreeMap<String, DynamicValue>,
}

/// One dynamic broker config value and the level it was set at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamicValue {
    pub value: String,
    /// Set for this broker (DYNAMIC_BROKER_CONFIG) rather than as the cluster default
    /// (DYNAMIC_DEFAULT_BROKER_CONFIG).
    pub per_broker: bool,
}

/// The group coordinator (Kafka's `group.*` and `offsets.*` broker settings).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GroupConfig {
    /// offsets.topic.num.partitions: partitions of `__consumer_offsets` (fixed once created).
    pub offsets_topic_partitions: i32,
    /// offsets.topic.segment.bytes
    pub offsets_topic_segment_bytes: u64,
    /// offsets.retention.minutes: committed offsets of an empty group are dropped this long after
    /// the group became empty (or after the commit, if later); those of a non-empty consumer group
    /// for topics it no longer subscribes to, this long after the commit (KIP-496).
    #[serde(with = "humantime_serde")]
    pub offsets_retention: Duration,
    /// offsets.retention.check.interval.ms
    #[serde(with = "humantime_serde")]
    pub offsets_retention_check_interval: Duration,
    /// offset.metadata.max.bytes: longest commit metadata string accepted.
    pub offset_metadata_max_bytes: usize,
    /// group.initial.rebalance.delay.ms: the first rebalance of an empty classic group waits
    /// this long for more members.
    #[serde(with = "humantime_serde")]
    pub initial_rebalance_delay: Duration,
    /// group.min.session.timeout.ms
    #[serde(with = "humantime_serde")]
    pub min_session_timeout: Duration,
    /// group.max.session.timeout.ms
    #[serde(with = "humantime_serde")]
    pub max_session_timeout: Duration,
    /// group.max.size: members per classic group.
    pub max_size: usize,
    /// group.consumer.session.timeout.ms (KIP-848 consumer groups).
    #[serde(with = "humantime_serde")]
    pub consumer_session_timeout: Duration,
    /// group.consumer.heartbeat.interval.ms (KIP-848 consumer groups).
    #[serde(with = "humantime_serde")]
    pub consumer_heartbeat_interval: Duration,
    /// group.consumer.migration.policy: whether a live classic group is converted to a consumer
    /// group when a member joins with ConsumerGroupHeartbeat (upgrade), and a consumer group back
    /// to a classic group when its last consumer-protocol member leaves (downgrade).
    pub consumer_migration_policy: MigrationPolicy,
}

/// Kafka's `group.consumer.migration.policy` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MigrationPolicy {
    /// Upgrades and downgrades (Kafka's default).
    #[default]
    Bidirectional,
    /// Classic to consumer groups only.
    Upgrade,
    /// Consumer to classic groups only.
    Downgrade,
    /// Neither: a non-empty group keeps its protocol.
    Disabled,
}

impl MigrationPolicy {
    /// Whether a live classic group may become a consumer group.
    pub fn upgrade(self) -> bool {
        matches!(self, MigrationPolicy::Bidirectional | MigrationPolicy::Upgrade)
    }

    /// Whether a consumer group left with classic members only may become a classic group.
    pub fn downgrade(self) -> bool {
        matches!(self, MigrationPolicy::Bidirectional | MigrationPolicy::Downgrade)
    }
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            offsets_topic_partitions: 50,
            offsets_topic_segment_bytes: 100 * 1024 * 1024,
            offsets_retention: Duration::from_secs(7 * 24 * 3600),
            offsets_retention_check_interval: Duration::from_secs(600),
            offset_metadata_max_bytes: 4096,
            initial_rebalance_delay: Duration::from_secs(3),
            min_session_timeout: Duration::from_secs(6),
            max_session_timeout: Duration::from_secs(1800),
            max_size: 2_147_483_647,
            consumer_session_timeout: Duration::from_secs(45),
            consumer_heartbeat_interval: Duration::from_secs(5),
            consumer_migration_policy: MigrationPolicy::Bidirectional,
        }
    }
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 9092)),
            advertised_listener: None,
            max_request_size: ByteSize::mib(100),
            max_in_flight_requests: 32,
            idle_timeout: Duration::from_secs(600),
            request_read_timeout: Duration::from_secs(30),
            queued_max_request_bytes: ByteSize::mib(512),
            max_connections: 10_000,
            max_connections_per_ip: i32::MAX as usize,
            max_connections_per_ip_overrides: BTreeMap::new(),
            fetch_max_bytes: ByteSize::mib(55),
            shutdown_timeout: Duration::from_secs(10),
            listeners: String::new(),
            advertised_listeners: String::new(),
            listener_security_protocol_map: String::new(),
            inter_broker_listener_name: DEFAULT_LISTENER.to_string(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 9644))),
            per_partition_metrics: false,
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: PathBuf::from("./data"),
            fsync_on_acks_all: true,
            flush_interval: Duration::from_secs(1),
            retention_check_interval: Duration::from_secs(300),
            checkpoint_interval: Duration::from_secs(60),
            max_open_files: 0,
            metadata_reserve_bytes: ByteSize::mib(8),
            max_compression_ratio: fjord_storage::DEFAULT_MAX_COMPRESSION_RATIO as u32,
        }
    }
}

impl Default for TopicDefaults {
    fn default() -> Self {
        TopicDefaults {
            auto_create: true,
            num_partitions: 1,
            replication_factor: 1,
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            max_message_bytes: 1_048_588,
            message_timestamp_type: "CreateTime".into(),
            cleanup_policy: "delete".into(),
            flush_messages: i64::MAX,
            flush_ms: i64::MAX,
            index_interval_bytes: 4096,
            segment_index_bytes: 10 * 1024 * 1024,
            max_partitions: 0,
            dynamic: BTreeMap::new(),
        }
    }
}

impl BrokerConfig {
    /// Loads the layered configuration for `cli` with the process environment.
    pub fn load(cli: &Cli) -> Result<BrokerConfig, ConfigError> {
        Self::load_from(cli, std::env::vars())
    }

    /// Loads the layered configuration: defaults < file < `FJORD_SECTION__KEY` env < flags.
    pub fn load_from(cli: &Cli, env: impl IntoIterator<Item = (String, String)>) -> Result<BrokerConfig, ConfigError> {
        let mut table = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                text.parse::<toml::Table>()
                    .map_err(|e| ConfigError::Parse(format!("{}: {e}", path.display())))?
            }
            None => toml::Table::new(),
        };
        // Nested keys from the environment: FJORD_STORAGE__FLUSH_INTERVAL=2s -> storage.flush_interval.
        for (name, value) in env {
            if let Some(path) = name
                .strip_prefix("FJORD_")
                .filter(|p| p.contains("__") || *p == "NODE_ID" || *p == "RACK")
            {
                let key = path.to_ascii_lowercase().replace("__", ".");
                set_key(&mut table, &key, &value)?;
            }
        }
        for entry in &cli.overrides {
            let (key, value) = entry
                .split_once('=')
                .ok_or_else(|| ConfigError::Parse(format!("--set {entry}: expected KEY=VALUE")))?;
            set_key(&mut table, key.trim(), value.trim())?;
        }
        let mut config: BrokerConfig = table.try_into_config().map_err(|e| ConfigError::Parse(e.to_string()))?;
        if let Some(v) = cli.listen {
            config.network.listen = v;
        }
        if let Some(v) = &cli.advertised_listener {
            config.network.advertised_listener = Some(v.clone());
        }
        if let Some(v) = &cli.data_dir {
            config.storage.data_dir = v.clone();
        }
        if let Some(v) = cli.http_listen {
            config.http.listen = Some(v);
        }
        if let Some(v) = cli.auto_create_topics {
            config.topics.auto_create = v;
        }
        if let Some(v) = cli.node_id {
            config.node_id = v;
        }
        if let Some(v) = &cli.rack {
            config.rack = Some(v.clone());
        }
        if let Some(v) = &cli.controller_voters {
            config.cluster.voters = v
                .iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
        }
        if let Some(v) = cli.controller_listen {
            config.cluster.listen = v;
        }
        if let Some(base) = cli.node_id_base {
            config.node_id = node_id_from_pod(base, cli.pod_name.as_deref().unwrap_or_default())?;
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks every cross-field rule and reports all violations together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let t = &self.topics;
        if self.node_id < 0 {
            problems.push(format!("node_id must be >= 0, got {}", self.node_id));
        }
        match self.cluster.parsed_voters() {
            Err(problem) => problems.push(problem),
            Ok(voters) if !matches!(voters.len(), 0 | 1 | 3 | 5) => problems.push(format!(
                "cluster.voters must name 1, 3 or 5 controllers, not {} (an even count tolerates no more failures than one fewer)",
                voters.len()
            )),
            Ok(_) => {}
        }
        if self.cluster.broker_heartbeat_interval.is_zero()
            || self.cluster.broker_heartbeat_interval >= self.cluster.broker_session_timeout
        {
            problems.push(
                "cluster.broker_heartbeat_interval must be above 0 and below cluster.broker_session_timeout"
                    .to_string(),
            );
        }
        if self.cluster.raft_heartbeat_interval.is_zero()
            || self.cluster.raft_heartbeat_interval * 3 > self.cluster.election_timeout
        {
            problems.push(
                "cluster.raft_heartbeat_interval must be above 0 and at most a third of cluster.election_timeout"
                    .to_string(),
            );
        }
        if self.cluster.is_clustered() && self.cluster.id.as_deref().is_none_or(str::is_empty) {
            problems
                .push("cluster.id must be set with cluster.voters (every broker of the cluster shares it)".to_string());
        }
        if self.cluster.raft_heartbeat_interval * 4 > self.cluster.election_timeout {
            problems.push(
                "cluster.raft_heartbeat_interval must be at most a quarter of cluster.election_timeout".to_string(),
            );
        }
        if self.cluster.snapshot_every == 0 {
            problems.push("cluster.snapshot_every must be at least 1".to_string());
        }
        if self.network.max_request_size.as_u64() < 1024 || self.network.max_request_size.as_u64() > i32::MAX as u64 {
            problems.push("network.max_request_size must be between 1 KiB and 2 GiB".to_string());
        }
        if self.network.max_in_flight_requests == 0 {
            problems.push("network.max_in_flight_requests must be at least 1".to_string());
        }
        if self.network.request_read_timeout.is_zero() {
            problems.push("network.request_read_timeout must be above 0".to_string());
        }
        if self.network.queued_max_request_bytes < self.network.max_request_size {
            problems.push(format!(
                "network.queued_max_request_bytes ({}) must be at least network.max_request_size ({})",
                self.network.queued_max_request_bytes, self.network.max_request_size
            ));
        }
        if self.network.max_connections == 0 {
            problems.push("network.max_connections must be at least 1".to_string());
        }
        for ip in self.network.max_connections_per_ip_overrides.keys() {
            if ip.parse::<IpAddr>().is_err() {
                problems.push(format!(
                    "network.max_connections_per_ip_overrides: {ip:?} is not an IP address"
                ));
            }
        }
        if self.network.fetch_max_bytes.as_u64() < 1024 || self.network.fetch_max_bytes.as_u64() > i32::MAX as u64 {
            problems.push("network.fetch_max_bytes must be between 1 KiB and 2 GiB".to_string());
        }
        if let Some(adv) = &self.network.advertised_listener
            && adv.rsplit_once(':').and_then(|(_, p)| p.parse::<u16>().ok()).is_none()
        {
            problems.push(format!("network.advertised_listener must be host:port, got {adv:?}"));
        }
        if self.network.listen.ip().is_unspecified() && self.network.advertised_listener.is_none() {
            problems.push(format!(
                "network.listen {} binds every interface; set network.advertised_listener (--advertised-listener) to the host:port clients should use",
                self.network.listen
            ));
        }
        match self.listeners() {
            Err(problem) => problems.push(problem),
            Ok(listeners) => {
                if listeners.iter().any(|l| l.protocol.tls())
                    && (self.tls.cert_file.is_none() || self.tls.key_file.is_none())
                {
                    problems.push("an SSL or SASL_SSL listener needs tls.cert_file and tls.key_file".to_string());
                }
                let inter = &self.network.inter_broker_listener_name;
                match listeners.iter().find(|l| l.name == *inter) {
                    None => problems.push(format!(
                        "network.inter_broker_listener_name: {inter} is not a listener (known: {})",
                        listeners.iter().map(|l| l.name.as_str()).collect::<Vec<_>>().join(", ")
                    )),
                    // Only replica fetchers dial it, and only in cluster mode.
                    Some(l) if l.protocol != SecurityProtocol::Plaintext && self.cluster.is_clustered() => problems.push(format!(
                        "network.inter_broker_listener_name: {inter} is {:?}; replica fetchers speak PLAINTEXT only",
                        l.protocol
                    )),
                    Some(_) => {}
                }
            }
        }
        if !matches!(self.tls.client_auth.as_str(), "none" | "requested" | "required") {
            problems.push(format!(
                "tls.client_auth must be none, requested or required, got {:?}",
                self.tls.client_auth
            ));
        }
        if self.tls.client_auth == "required" && self.tls.ca_file.is_none() {
            problems.push("tls.client_auth = required needs tls.ca_file".to_string());
        }
        for mechanism in &self.sasl.enabled_mechanisms {
            if !matches!(mechanism.as_str(), "PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512") {
                problems.push(format!("sasl.enabled_mechanisms: unsupported mechanism {mechanism:?}"));
            }
        }
        if self.producers.id_expiration_ms < 1 {
            problems.push(format!(
                "producers.id_expiration_ms must be >= 1, got {}",
                self.producers.id_expiration_ms
            ));
        }
        if t.num_partitions < 1 {
            problems.push(format!("topics.num_partitions must be >= 1, got {}", t.num_partitions));
        }
        if t.max_partitions < 0 {
            problems.push(format!(
                "topics.max_partitions must be >= 0 (0 = from the open-file limit), got {}",
                t.max_partitions
            ));
        }
        if t.replication_factor != 1 {
            problems.push("topics.replication_factor must be 1 on a single node".to_string());
        }
        for (name, value) in crate::topic_config::broker_defaults_as_topic_configs(t) {
            if let Err(e) = crate::topic_config::validate_value(name, &value) {
                problems.push(format!("topics: {e}"));
            }
        }
        for (name, d) in [
            ("storage.flush_interval", self.storage.flush_interval),
            (
                "storage.retention_check_interval",
                self.storage.retention_check_interval,
            ),
            ("storage.checkpoint_interval", self.storage.checkpoint_interval),
            ("cleaner.backoff", self.cleaner.backoff),
            ("tiering.upload_interval", self.tiering.upload_interval),
            ("tiering.request_timeout", self.tiering.request_timeout),
        ] {
            if d.is_zero() {
                problems.push(format!("{name} must be greater than zero"));
            }
        }
        if self.storage.max_compression_ratio < 1 {
            problems.push("storage.max_compression_ratio must be at least 1".to_string());
        }
        if self.cleaner.dedupe_buffer_size.as_u64() < 1024 * 1024 {
            problems.push("cleaner.dedupe_buffer_size must be at least 1 MiB".to_string());
        }
        let tiering = &self.tiering;
        if tiering.enabled && tiering.url.is_empty() {
            problems
                .push("tiering.enabled needs tiering.url (s3://bucket/prefix, file:///dir or memory://)".to_string());
        }
        if tiering.upload_concurrency == 0 {
            problems.push("tiering.upload_concurrency must be at least 1".to_string());
        }
        if tiering.chunk_size.as_u64() < 64 * 1024 || tiering.chunk_size.as_u64() > 256 * 1024 * 1024 {
            problems.push("tiering.chunk_size must be between 64 KiB and 256 MiB".to_string());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    /// Every Kafka listener: `network.listen` as `PLAINTEXT`, then `network.listeners`.
    pub fn listeners(&self) -> Result<Vec<Listener>, String> {
        let net = &self.network;
        let mut map = std::collections::HashMap::new();
        for entry in net
            .listener_security_protocol_map
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let (name, proto) = entry
                .split_once(':')
                .ok_or_else(|| format!("network.listener_security_protocol_map: {entry:?} is not NAME:PROTOCOL"))?;
            let proto = SecurityProtocol::parse(proto).ok_or_else(|| {
                format!("network.listener_security_protocol_map: unknown security protocol {proto:?}")
            })?;
            map.insert(name.to_string(), proto);
        }
        let protocol =
            |name: &str| {
                map.get(name).copied().or_else(|| SecurityProtocol::parse(name)).ok_or_else(|| {
                format!("listener {name} has no security protocol: name it in network.listener_security_protocol_map")
            })
            };
        let advertised = parse_listener_list("network.advertised_listeners", &net.advertised_listeners)?;
        let (host, port) = self.advertised_listener();
        let mut listeners = vec![Listener {
            name: DEFAULT_LISTENER.to_string(),
            listen: net.listen,
            advertised_host: host,
            advertised_port: port,
            protocol: protocol(DEFAULT_LISTENER)?,
        }];
        for (name, host, port) in parse_listener_list("network.listeners", &net.listeners)? {
            if listeners.iter().any(|l| l.name == name) {
                return Err(format!(
                    "network.listeners: listener {name} is defined twice ({DEFAULT_LISTENER} is network.listen)"
                ));
            }
            let ip: IpAddr = if host.is_empty() {
                IpAddr::from([0, 0, 0, 0])
            } else if host == "localhost" {
                IpAddr::from([127, 0, 0, 1])
            } else {
                host.parse()
                    .map_err(|_| format!("network.listeners: {name} must bind an IP address, got {host:?}"))?
            };
            let listen = SocketAddr::new(ip, port);
            let (adv_host, adv_port) = match advertised.iter().find(|(n, _, _)| *n == name) {
                Some((_, h, p)) => (h.clone(), i32::from(*p)),
                None if ip.is_unspecified() => {
                    return Err(format!(
                        "listener {name} binds every interface; name it in network.advertised_listeners"
                    ));
                }
                None => (ip.to_string(), i32::from(port)),
            };
            listeners.push(Listener {
                name: name.clone(),
                listen,
                advertised_host: adv_host,
                advertised_port: adv_port,
                protocol: protocol(&name)?,
            });
        }
        if let Some((name, _, _)) = advertised
            .iter()
            .find(|(n, _, _)| !listeners.iter().any(|l| l.name == *n))
        {
            return Err(format!(
                "network.advertised_listeners names {name}, which is not a listener"
            ));
        }
        Ok(listeners)
    }

    /// host:port clients of `listener` should connect to (the default listener's if unknown).
    pub fn advertised_for(&self, listener: &str) -> (String, i32) {
        self.listeners()
            .ok()
            .and_then(|ls| ls.into_iter().find(|l| l.name == listener))
            .map(|l| (l.advertised_host, l.advertised_port))
            .unwrap_or_else(|| self.advertised_listener())
    }

    /// host:port clients should connect to.
    pub fn advertised_listener(&self) -> (String, i32) {
        let raw = self
            .network
            .advertised_listener
            .clone()
            .unwrap_or_else(|| self.network.listen.to_string());
        match raw.rsplit_once(':') {
            Some((host, port)) => (host.trim_matches(['[', ']']).to_string(), port.parse().unwrap_or(9092)),
            None => (raw, 9092),
        }
    }
}

/// Deserialises a TOML table into the config, naming the offending key on error.
trait IntoConfig {
    fn try_into_config(self) -> Result<BrokerConfig, toml::de::Error>;
}

impl IntoConfig for toml::Table {
    fn try_into_config(self) -> Result<BrokerConfig, toml::de::Error> {
        toml::Value::Table(self).try_into()
    }
}

/// Sets a dotted key in the table. The value is read as TOML (numbers, booleans, strings in
/// quotes) and falls back to a plain string, so `--set storage.flush_interval=2s` works.
fn set_key(table: &mut toml::Table, key: &str, raw: &str) -> Result<(), ConfigError> {
    let value = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts
        .pop()
        .filter(|k| !k.is_empty())
        .ok_or_else(|| ConfigError::Parse(format!("empty key in {key:?}")))?;
    let mut current = table;
    for part in parts {
        let entry = current
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry
            .as_table_mut()
            .ok_or_else(|| ConfigError::Parse(format!("{key}: {part} is not a section")))?;
    }
    current.insert(last.to_string(), value);
    Ok(())
}

/// `base` + the ordinal after the last `-` of a StatefulSet pod name (`fjord-a-2` -> base + 2).
fn node_id_from_pod(base: i32, pod_name: &str) -> Result<i32, ConfigError> {
    let ordinal = pod_name
        .rsplit_once('-')
        .and_then(|(_, n)| n.parse::<u32>().ok())
        .ok_or_else(|| {
            ConfigError::Parse(format!(
                "--pod-name {pod_name:?} does not end in -<ordinal>, so --node-id-base {base} gives no node id"
            ))
        })?;
    i32::try_from(ordinal)
        .ok()
        .and_then(|o| base.checked_add(o))
        .ok_or_else(|| ConfigError::Parse(format!("node id {base} + {ordinal} is out of range")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cli(args: &[&str]) -> Cli {
        Cli::parse_from(std::iter::once("fjord-broker").chain(args.iter().copied()))
    }

    #[test]
    fn load_no_flags_gives_embedded_default() {
        let config = BrokerConfig::load_from(&cli(&[]), Vec::new()).expect("defaults load");
        assert_eq!(config, BrokerConfig::default());
        assert_eq!(config.network.listen.to_string(), "127.0.0.1:9092");
        assert_eq!(config.storage.data_dir, PathBuf::from("./data"));
        assert!(config.topics.auto_create);
    }

    #[test]
    fn load_layers_file_then_env_then_flags() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("broker.toml");
        std::fs::write(
            &path,
            "[storage]\nflush_interval = \"3s\"\ndata_dir = \"/from/file\"\n[topics]\nnum_partitions = 4\n",
        )
        .expect("write");
        let env = vec![
            ("FJORD_STORAGE__FLUSH_INTERVAL".to_string(), "5s".to_string()),
            ("FJORD_TOPICS__NUM_PARTITIONS".to_string(), "6".to_string()),
        ];
        let args = [
            "--config",
            path.to_str().expect("utf8"),
            "--data-dir",
            "/from/flag",
            "--set",
            "topics.num_partitions=8",
        ];
        let config = BrokerConfig::load_from(&cli(&args), env).expect("loads");
        assert_eq!(config.storage.flush_interval, Duration::from_secs(5));
        assert_eq!(config.storage.data_dir, PathBuf::from("/from/flag"));
        assert_eq!(config.topics.num_partitions, 8);
    }

    #[test]
    fn load_unknown_key_and_bad_values_are_refused() {
        let err =
            BrokerConfig::load_from(&cli(&["--set", "storage.flush_intervall=1s"]), Vec::new()).expect_err("typo");
        assert!(err.to_string().contains("flush_intervall"), "{err}");
        let err = BrokerConfig::load_from(
            &cli(&[
                "--set",
                "topics.num_partitions=0",
                "--set",
                "topics.message_timestamp_type=Wallclock",
            ]),
            Vec::new(),
        )
        .expect_err("invalid");
        let text = err.to_string();
        assert!(
            text.contains("num_partitions") && text.contains("message.timestamp.type"),
            "{text}"
        );
        let err = BrokerConfig::load_from(&cli(&["--listen", "0.0.0.0:9092"]), Vec::new()).expect_err("unadvertisable");
        assert!(err.to_string().contains("advertised_listener"), "{err}");
        let ok = BrokerConfig::load_from(
            &cli(&["--listen", "0.0.0.0:9092", "--advertised-listener", "broker-0:9092"]),
            Vec::new(),
        )
        .expect("advertised");
        assert_eq!(ok.advertised_listener(), ("broker-0".to_string(), 9092));
    }

    #[test]
    fn node_id_from_base_and_pod_ordinal() {
        let load = |args: &[&str]| BrokerConfig::load_from(&cli(args), Vec::new());
        let config = load(&["--node-id-base", "100", "--pod-name", "fjord-zone-a-12"]).expect("loads");
        assert_eq!(config.node_id, 112);
        // The flag overrides node_id from the file, env or --set.
        let config = load(&["--set", "node_id=7", "--node-id-base", "0", "--pod-name", "dev-3"]).expect("loads");
        assert_eq!(config.node_id, 3);
        for bad in ["dev", "dev-", "dev-x", "dev-1x"] {
            let err = load(&["--node-id-base", "0", "--pod-name", bad]).expect_err(bad);
            assert!(err.to_string().contains("-<ordinal>"), "{bad}: {err}");
        }
        let err = load(&["--node-id-base", &i32::MAX.to_string(), "--pod-name", "p-1"]).expect_err("overflow");
        assert!(err.to_string().contains("out of range"), "{err}");
        // The base without a pod name is a usage error (clap), not a silent node 0.
        let missing = Cli::try_parse_from(["fjord-broker", "--node-id-base", "5"]).expect_err("needs --pod-name");
        assert!(missing.to_string().contains("--pod-name"), "{missing}");
    }

    #[test]
    fn the_inter_broker_listener_must_exist_and_be_plaintext_in_cluster_mode() {
        let load = |args: &[&str]| BrokerConfig::load_from(&cli(args), Vec::new());
        let cluster = [
            "--node-id",
            "1",
            "--controller-voters",
            "1@127.0.0.1:9093",
            "--set",
            "cluster.id=c1",
        ];
        let ok = load(
            &[
                &cluster[..],
                &[
                    "--set",
                    "network.listeners=REPLICATION://127.0.0.1:9095",
                    "--set",
                    "network.listener_security_protocol_map=REPLICATION:PLAINTEXT",
                    "--set",
                    "network.inter_broker_listener_name=REPLICATION",
                ],
            ]
            .concat(),
        );
        assert!(ok.is_ok(), "{ok:?}");
        let unknown = load(&[&cluster[..], &["--set", "network.inter_broker_listener_name=NOPE"]].concat());
        assert!(
            unknown
                .expect_err("unknown")
                .to_string()
                .contains("NOPE is not a listener")
        );
        let sasl = load(
            &[
                &cluster[..],
                &[
                    "--set",
                    "network.listener_security_protocol_map=PLAINTEXT:SASL_PLAINTEXT",
                ],
            ]
            .concat(),
        );
        assert!(
            sasl.expect_err("sasl")
                .to_string()
                .contains("replica fetchers speak PLAINTEXT only")
        );
        // One node: nothing dials it, so a secured default listener is fine.
        assert!(
            load(&[
                "--set",
                "network.listener_security_protocol_map=PLAINTEXT:SASL_PLAINTEXT"
            ])
            .is_ok()
        );
    }

    #[test]
    fn listeners_parse_kafka_style_and_are_validated() {
        let load = |args: &[&str]| BrokerConfig::load_from(&cli(args), Vec::new());
        let config = load(&[
            "--set",
            "network.listeners=SSL://127.0.0.1:9093,EXTERNAL://0.0.0.0:9094",
            "--set",
            "network.advertised_listeners=EXTERNAL://broker-0.example:19094",
            "--set",
            "network.listener_security_protocol_map=EXTERNAL:SASL_SSL,PLAINTEXT:SASL_PLAINTEXT",
            "--set",
            "tls.cert_file=/c.pem",
            "--set",
            "tls.key_file=/k.pem",
        ])
        .expect("valid");
        let listeners = config.listeners().expect("listeners");
        let summary: Vec<(&str, SecurityProtocol, String)> = listeners
            .iter()
            .map(|l| {
                (
                    l.name.as_str(),
                    l.protocol,
                    format!("{}:{}", l.advertised_host, l.advertised_port),
                )
            })
            .collect();
        assert_eq!(
            summary,
            vec![
                (
                    "PLAINTEXT",
                    SecurityProtocol::SaslPlaintext,
                    "127.0.0.1:9092".to_string()
                ),
                ("SSL", SecurityProtocol::Ssl, "127.0.0.1:9093".to_string()),
                (
                    "EXTERNAL",
                    SecurityProtocol::SaslSsl,
                    "broker-0.example:19094".to_string()
                ),
            ]
        );
        assert_eq!(
            config.advertised_for("EXTERNAL"),
            ("broker-0.example".to_string(), 19094)
        );
        for (bad, why) in [
            (
                &["--set", "network.listeners=INTERNAL://127.0.0.1:9093"][..],
                "no security protocol",
            ),
            (
                &["--set", "network.listeners=SSL://127.0.0.1:9093"][..],
                "tls.cert_file",
            ),
            (
                &["--set", "network.listeners=PLAINTEXT://127.0.0.1:9093"][..],
                "defined twice",
            ),
            (
                &["--set", "network.listeners=SASL_SSL://0.0.0.0:9093"][..],
                "every interface",
            ),
            (&["--set", "network.listeners=nonsense"][..], "NAME://host:port"),
            (&["--set", "tls.client_auth=sometimes"][..], "client_auth"),
            (&["--set", "sasl.enabled_mechanisms=[\"GSSAPI\"]"][..], "GSSAPI"),
        ] {
            let err = load(bad).expect_err(why);
            assert!(err.to_string().contains(why), "{bad:?}: {err}");
        }
    }

    #[test]
    fn example_config_parses_and_matches_defaults() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/config/broker.example.toml");
        let config = BrokerConfig::load_from(
            &Cli {
                config: Some(path.into()),
                ..Cli::default()
            },
            Vec::new(),
        )
        .expect("example parses");
        assert_eq!(config, BrokerConfig::default(), "the example documents the defaults");
    }

    #[test]
    fn controller_voters_parse_from_flags_and_are_validated() {
        let config = BrokerConfig::load_from(
            &cli(&[
                "--node-id",
                "2",
                "--rack",
                "b",
                "--controller-voters",
                "1@127.0.0.1:19093,2@127.0.0.1:29093,3@host-3:9093",
                "--set",
                "cluster.id=abc",
            ]),
            Vec::new(),
        )
        .expect("loads");
        assert_eq!(config.node_id, 2);
        assert_eq!(config.rack.as_deref(), Some("b"));
        let voters = config.cluster.parsed_voters().expect("parses");
        assert_eq!(voters.len(), 3);
        assert_eq!(
            voters[2],
            Voter {
                id: 3,
                address: "host-3:9093".into()
            }
        );
        assert!(config.cluster.is_clustered());
        for bad in ["1@127.0.0.1:1,2@x:2", "1@nohost", "x@h:1", "1@h:1,1@h:2", "1@h:0"] {
            let err = BrokerConfig::load_from(&cli(&["--controller-voters", bad]), Vec::new())
                .expect_err(bad)
                .to_string();
            assert!(err.contains("cluster.voters"), "{bad}: {err}");
        }
    }
}
