//! Replica fetchers (Kafka's ReplicaFetcherThread): one task per leader broker copies the log of
//! every partition this broker follows from that leader, with the Kafka Fetch protocol (v12:
//! `replica_id`, `last_fetched_epoch`, `diverging_epoch`) over one connection, multiplexing the
//! partitions. Batches are appended verbatim (`Log::append_as_follower`) and made durable by the
//! group-commit flusher before the next fetch, so the offset a follower fetches from is on its
//! disk: the leader's high watermark then means "on the disk of every ISR member". A leader that
//! answers `diverging_epoch` makes the follower truncate to where their logs agree.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use fjord_protocol::kafka_protocol::error::ResponseError;
use fjord_protocol::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use fjord_protocol::kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, RequestKind, ResponseKind, TopicName};
use fjord_protocol::kafka_protocol::protocol::StrBytes;
use fjord_storage::{LeaderEpoch, Offset};
use parking_lot::Mutex;
use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use super::{Flusher, Partition};

/// The Fetch version followers speak: topic names, replica id in the body, diverging epochs.
const FETCH_VERSION: i16 = 12;
const FETCH_MAX_WAIT_MS: i32 = 500;
const PARTITION_MAX_BYTES: i32 = 1 << 20;
/// Bytes in flight per fetch (per leader): the response's cap.
const FETCH_MAX_BYTES: i32 = 16 << 20;
const BACKOFF: Duration = Duration::from_millis(200);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// A response larger than this is refused (a misbehaving peer cannot make us allocate more).
const MAX_RESPONSE_BYTES: usize = 256 << 20;

type Key = (String, i32);

/// One leader's fetcher: the partitions it copies and its task.
struct Fetcher {
    address: String,
    partitions: Arc<Mutex<HashMap<Key, Arc<Partition>>>>,
    changed: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

/// Every replica fetcher of this broker, by leader.
pub struct Fetchers {
    me: i32,
    flusher: Arc<Flusher>,
    /// Fetch the next batch only once the previous ones are fsynced (the default durability
    /// promise: the leader's high watermark means "on the disk of every ISR member"). False is
    /// Kafka's classic in-memory replication (`storage.fsync_on_acks_all = false`).
    durable: bool,
    /// Record bytes fetched (the `fjord_replication_fetcher_fetched_bytes` counter).
    fetched_bytes: Counter,
    by_leader: Mutex<HashMap<i32, Fetcher>>,
}

impl std::fmt::Debug for Fetchers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetchers")
            .field("leaders", &self.by_leader.lock().keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Fetchers {
    pub fn new(me: i32, flusher: Arc<Flusher>, durable: bool, fetched_bytes: Counter) -> Fetchers {
        Fetchers {
            me,
            flusher,
            durable,
            fetched_bytes,
            by_leader: Mutex::new(HashMap::new()),
        }
    }

    /// Makes the fetchers copy exactly `wanted`: leader id -> (its address, the partitions this
    /// broker follows from it). Starts, re-targets and stops fetcher tasks as needed.
    pub fn update(&self, wanted: HashMap<i32, (String, Vec<Arc<Partition>>)>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("no runtime: replica fetchers not updated");
            return;
        };
        let mut by_leader = self.by_leader.lock();
        by_leader.retain(|leader, fetcher| {
            let keep = wanted
                .get(leader)
                .is_some_and(|(address, _)| *address == fetcher.address);
            if !keep {
                fetcher.task.abort();
                tracing::info!(leader, "stopped replica fetcher");
            }
            keep
        });
        for (leader, (address, partitions)) in wanted {
            let set: HashMap<Key, Arc<Partition>> = partitions
                .into_iter()
                .map(|p| ((p.topic.clone(), p.index), p))
                .collect();
            match by_leader.get(&leader) {
                Some(fetcher) => {
                    let mut current = fetcher.partitions.lock();
                    let changed = current.len() != set.len() || set.keys().any(|k| !current.contains_key(k));
                    *current = set;
                    if changed {
                        fetcher.changed.notify_one();
                    }
                }
                None => {
                    let partitions = Arc::new(Mutex::new(set));
                    let changed = Arc::new(Notify::new());
                    let task = runtime.spawn(run(
                        self.me,
                        leader,
                        address.clone(),
                        partitions.clone(),
                        changed.clone(),
                        self.flusher.clone(),
                        self.durable,
                        self.fetched_bytes.clone(),
                    ));
                    tracing::info!(leader, %address, "started replica fetcher");
                    by_leader.insert(
                        leader,
                        Fetcher {
                            address,
                            partitions,
                            changed,
                            task,
                        },
                    );
                }
            }
        }
    }

    /// Stops every fetcher (shutdown).
    pub fn stop_all(&self) {
        for (_, fetcher) in self.by_leader.lock().drain() {
            fetcher.task.abort();
        }
    }
}

/// One leader's fetch loop: connect, fetch every followed partition, apply, repeat.
async fn run(
    me: i32,
    leader: i32,
    address: String,
    partitions: Arc<Mutex<HashMap<Key, Arc<Partition>>>>,
    changed: Arc<Notify>,
    flusher: Arc<Flusher>,
    durable: bool,
    fetched_bytes: Counter,
) {
    let mut connection: Option<TcpStream> = None;
    let mut correlation_id = 0i32;
    loop {
        let followed: Vec<Arc<Partition>> = partitions.lock().values().cloned().collect();
        if followed.is_empty() {
            changed.notified().await;
            continue;
        }
        let stream = match connection.as_mut() {
            Some(stream) => stream,
            None => match TcpStream::connect(&address).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    connection.insert(stream)
                }
                Err(error) => {
                    tracing::debug!(leader, %address, %error, "replica fetcher cannot connect");
                    tokio::time::sleep(BACKOFF).await;
                    continue;
                }
            },
        };
        correlation_id = correlation_id.wrapping_add(1);
        // The leader epoch each partition was fetched in: a response is applied only while it
        // is still current (a leadership change meanwhile voids it).
        let epochs: HashMap<Key, i32> = followed
            .iter()
            .map(|p| ((p.topic.clone(), p.index), p.leader_epoch().0))
            .collect();
        let request = fetch_request(me, &followed);
        let response = match exchange(me, stream, correlation_id, request).await {
            Ok(response) => response,
            Err(error) => {
                tracing::debug!(leader, %address, %error, "replica fetch failed; reconnecting");
                connection = None;
                tokio::time::sleep(BACKOFF).await;
                continue;
            }
        };
        if response.error_code != 0 {
            tracing::debug!(leader, code = response.error_code, "replica fetch refused");
            tokio::time::sleep(BACKOFF).await;
            continue;
        }
        let by_key: HashMap<Key, Arc<Partition>> =
            followed.into_iter().map(|p| ((p.topic.clone(), p.index), p)).collect();
        let mut appended = false;
        let mut backoff = false;
        for topic in response.responses {
            let name = topic.topic.to_string();
            for data in topic.partitions {
                let key = (name.clone(), data.partition_index);
                let (Some(partition), Some(&epoch)) = (by_key.get(&key).cloned(), epochs.get(&key)) else {
                    continue;
                };
                fetched_bytes.inc_by(data.records.as_ref().map_or(0, |r| r.len() as u64));
                match apply(&partition, leader, epoch, data).await {
                    Applied::Appended => {
                        flusher.mark_dirty(&partition);
                        appended = true;
                    }
                    Applied::Nothing => {}
                    Applied::Backoff => backoff = true,
                }
            }
        }
        if appended && durable {
            // Fetch from the new log end only once it is on disk (the durability promise).
            flusher.wait_durable().await;
        }
        if backoff {
            tokio::time::sleep(BACKOFF).await;
        }
    }
}

enum Applied {
    Appended,
    Nothing,
    Backoff,
}

/// Applies one partition's fetch response on a blocking thread.
async fn apply(
    partition: &Arc<Partition>,
    leader: i32,
    epoch: i32,
    data: fjord_protocol::kafka_protocol::messages::fetch_response::PartitionData,
) -> Applied {
    let partition = partition.clone();
    tokio::task::spawn_blocking(move || apply_blocking(&partition, leader, epoch, data))
        .await
        .unwrap_or(Applied::Backoff)
}

fn apply_blocking(
    partition: &Arc<Partition>,
    leader: i32,
    epoch: i32,
    data: fjord_protocol::kafka_protocol::messages::fetch_response::PartitionData,
) -> Applied {
    let code = data.error_code;
    let (topic, index) = (&partition.topic, partition.index);
    // Every change below happens under the log lock after checking that the fetch is still
    // current: leadership changes take the same lock (`Partition::set_replica_set`).
    let mut log = partition.log.lock();
    if !partition.still_follows(leader, epoch) {
        return Applied::Nothing;
    }
    if code == ResponseError::OffsetOutOfRange.code() {
        let leo = log.log_end_offset().0;
        let result = if data.log_start_offset > leo {
            log.truncate_fully_and_start_at(data.log_start_offset)
        } else {
            let to = data.high_watermark.max(log.log_start_offset().0);
            log.truncate_to(Offset(to))
        };
        tracing::warn!(%topic, partition = index, log_end_offset = leo, leader_log_start = data.log_start_offset,
            leader_high_watermark = data.high_watermark, ok = result.is_ok(), "follower out of range: truncated");
        return Applied::Nothing;
    }
    if code != 0 {
        tracing::debug!(%topic, partition = index, code, "replica fetch error for partition");
        return Applied::Backoff;
    }
    let diverging = &data.diverging_epoch;
    if diverging.epoch >= 0 || diverging.end_offset >= 0 {
        let local = log
            .end_offset_for_epoch(LeaderEpoch(diverging.epoch))
            .map(|(_, end)| end.0);
        let to = local
            .map_or(diverging.end_offset, |end| end.min(diverging.end_offset))
            .max(log.log_start_offset().0);
        let leo = log.log_end_offset().0;
        let last_epoch = log.latest_epoch();
        // Also at `to == leo`: the epochs starting there go (see `Log::truncate_to`).
        if to <= leo {
            match log.truncate_to(Offset(to)) {
                Ok(()) => tracing::info!(%topic, partition = index, from = leo, to,
                    diverging_epoch = diverging.epoch, "truncated a diverging follower log"),
                Err(error) => {
                    tracing::error!(%topic, partition = index, %error, "cannot truncate a diverging follower log");
                    return Applied::Backoff;
                }
            }
        }
        if log.log_end_offset().0 == leo && log.latest_epoch() == last_epoch {
            // Nothing changed, so the next fetch would be answered the same: never spin.
            tracing::warn!(%topic, partition = index, log_end_offset = leo, diverging_epoch = diverging.epoch,
                diverging_end_offset = diverging.end_offset, "diverging epoch answer changed nothing");
            return Applied::Backoff;
        }
        return Applied::Nothing;
    }
    let mut appended = false;
    let records = data.records.unwrap_or_default();
    if !records.is_empty() {
        match log.append_as_follower(&records, crate::clock::now_ms()) {
            Ok(_) => appended = true,
            Err(error) => {
                tracing::warn!(%topic, partition = index, %error, "follower append failed");
                return Applied::Backoff;
            }
        }
    }
    // The follower's high watermark: the leader's, up to what this log holds.
    let hw = data.high_watermark.min(log.log_end_offset().0);
    partition
        .fetcher_lag
        .store(data.high_watermark - hw, std::sync::atomic::Ordering::Relaxed);
    let moved = hw > log.high_watermark().0;
    if moved {
        log.set_high_watermark(Offset(hw));
    }
    drop(log);
    if appended || moved {
        partition.wake_waiters();
    }
    if appended { Applied::Appended } else { Applied::Nothing }
}

fn fetch_request(me: i32, followed: &[Arc<Partition>]) -> FetchRequest {
    let mut topics: HashMap<String, Vec<FetchPartition>> = HashMap::new();
    for p in followed {
        let log = p.log.lock();
        topics.entry(p.topic.clone()).or_default().push(
            FetchPartition::default()
                .with_partition(p.index)
                .with_current_leader_epoch(p.leader_epoch().0)
                .with_fetch_offset(log.log_end_offset().0)
                .with_last_fetched_epoch(log.latest_epoch().map_or(-1, |e| e.0))
                .with_log_start_offset(log.log_start_offset().0)
                .with_partition_max_bytes(PARTITION_MAX_BYTES),
        );
    }
    FetchRequest::default()
        .with_replica_id(BrokerId(me))
        .with_max_wait_ms(FETCH_MAX_WAIT_MS)
        .with_min_bytes(1)
        .with_max_bytes(FETCH_MAX_BYTES)
        .with_isolation_level(0)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(
            topics
                .into_iter()
                .map(|(name, partitions)| {
                    FetchTopic::default()
                        .with_topic(TopicName(StrBytes::from_string(name)))
                        .with_partitions(partitions)
                })
                .collect(),
        )
}

/// Sends one Fetch request and reads its response on `stream`.
async fn exchange(
    me: i32,
    stream: &mut TcpStream,
    correlation_id: i32,
    request: FetchRequest,
) -> Result<fjord_protocol::kafka_protocol::messages::FetchResponse, String> {
    let mut out = BytesMut::new();
    fjord_protocol::encode_request(
        &mut out,
        ApiKey::Fetch,
        FETCH_VERSION,
        correlation_id,
        &format!("broker-{me}-fetcher"),
        &RequestKind::Fetch(request),
    )
    .map_err(|e| e.to_string())?;
    let io = async {
        stream.write_all(&out).await.map_err(|e| e.to_string())?;
        let mut size = [0u8; 4];
        stream.read_exact(&mut size).await.map_err(|e| e.to_string())?;
        let size = i32::from_be_bytes(size);
        let size = usize::try_from(size).map_err(|_| format!("negative response size {size}"))?;
        if size > MAX_RESPONSE_BYTES {
            return Err(format!("response of {size} bytes is over the limit"));
        }
        let mut frame = vec![0u8; size];
        stream.read_exact(&mut frame).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(Bytes::from(frame))
    };
    let frame = tokio::time::timeout(RESPONSE_TIMEOUT, io)
        .await
        .map_err(|_| "no response in time".to_string())??;
    let (got, body) = fjord_protocol::decode_response(frame, ApiKey::Fetch, FETCH_VERSION)?;
    if got != correlation_id {
        return Err(format!("correlation id {got}, expected {correlation_id}"));
    }
    match body {
        ResponseKind::Fetch(response) => Ok(response),
        other => Err(format!("unexpected response {other:?}")),
    }
}
