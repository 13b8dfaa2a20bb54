//! Fetch (key 1): read whole batches for many partitions up to the request and partition byte
//! limits (the request's capped by the broker's `network.fetch_max_bytes`), long-polling on
//! `max_wait_ms`/`min_bytes` until enough data arrives. Topics are addressed by id from v13.
//! Fetch sessions are not kept: session id 0 tells clients to send full requests, which Kafka
//! allows. A fetch from a follower replica (`replica_id`, or `replica_state` from v15) reads up to
//! the log end offset instead of the high watermark, records the follower's position (which moves
//! the high watermark), and answers a follower whose last fetched epoch diverges from this log
//! with `diverging_epoch` (KIP-595/KIP-320) so it truncates. With `isolation_level=1`
//! (read_committed) data is returned only below the last stable offset, with the aborted
//! transactions overlapping the returned range.
//!
//! Follower fetching (KIP-392): a consumer fetch (v11+) may read from a follower, up to the high
//! watermark the follower learnt from its leader. With `cluster.replica_selector = "rack_aware"`
//! a leader answers a consumer whose `rack_id` names a rack holding an in-sync follower (and not
//! the leader) with that follower as `preferred_read_replica` and no records, as Kafka's
//! RackAwareReplicaSelector does.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fjord_metadata::TopicId;
use fjord_protocol::kafka_protocol::error::ResponseError;
use fjord_protocol::kafka_protocol::messages::fetch_response::{
    AbortedTransaction, EpochEndOffset, FetchableTopicResponse, PartitionData,
};
use fjord_protocol::kafka_protocol::messages::{FetchRequest, FetchResponse, ProducerId};
use fjord_storage::{Offset, ReadPlan};
use tokio::sync::Notify;

use super::errors::storage_error_code;
use crate::broker::Broker;
use crate::config::ReplicaSelector;
use crate::replication::Partition;
use crate::tiering::RemoteLog;

/// One requested partition and what was found for it.
struct Wanted {
    topic_index: usize,
    index: i32,
    fetch_offset: i64,
    partition_max_bytes: usize,
    partition: Option<Arc<Partition>>,
    /// Error that does not depend on the data (unknown topic, epoch mismatch).
    fixed_error: Option<ResponseError>,
    /// A follower's fetch reads up to the log end offset.
    follower: bool,
    /// For a follower whose log diverges: the epoch and end offset to truncate to.
    diverging: Option<(i32, i64)>,
    /// As leader: the replica this consumer should fetch from instead (KIP-392); no records.
    preferred: Option<i32>,
    /// A consumer read served by this broker as a follower of the partition.
    as_follower: bool,
    /// For a follower: the high watermark it may know (the one before its fetch arrived). Its
    /// long-poll ends once the high watermark passes it, since followers serve consumers up to
    /// the high watermark they learn (KIP-392): otherwise they would learn it only with the next
    /// append or after `max_wait_ms`. `i64::MAX` for consumers.
    known_hw: i64,
}

struct Planned {
    error: Option<ResponseError>,
    high_watermark: i64,
    last_stable_offset: i64,
    /// read_committed: aborted transactions in the fetched range.
    aborted: Vec<fjord_storage::AbortedTxn>,
    log_start_offset: i64,
    plan: Option<ReadPlan>,
    /// A read below the local log start, served from tiered storage.
    remote: Option<RemoteRead>,
}

#[derive(Clone)]
struct RemoteRead {
    remote: Arc<RemoteLog>,
    offset: i64,
    max_bytes: usize,
    min_one_batch: bool,
}

pub(super) async fn handle(
    broker: &Arc<Broker>,
    session: &crate::security::Session,
    request: FetchRequest,
    version: i16,
) -> FetchResponse {
    let image = broker.image();
    let replica_id = if version >= 15 {
        request.replica_state.replica_id.0
    } else {
        request.replica_id.0
    };
    let me = broker.node_id();
    let now = crate::clock::now_ms();
    let mut topics = Vec::with_capacity(request.topics.len());
    let mut wanted = Vec::new();
    for (topic_index, t) in request.topics.iter().enumerate() {
        let (name, topic_error) = if version >= 13 {
            match image.topic_by_id(TopicId(t.topic_id)) {
                Some(topic) => (topic.name.clone(), None),
                None => (String::new(), Some(ResponseError::UnknownTopicId)),
            }
        } else {
            (t.topic.to_string(), None)
        };
        // READ on the topic (Kafka's authorization of a consumer fetch).
        let topic_error = topic_error.or_else(|| {
            (!broker.authorize(
                session,
                fjord_metadata::security::AclOperation::Read,
                fjord_metadata::security::ResourceType::Topic,
                &name,
            ))
            .then_some(ResponseError::TopicAuthorizationFailed)
        });
        topics.push(
            FetchableTopicResponse::default()
                .with_topic(if version >= 13 {
                    Default::default()
                } else {
                    t.topic.clone()
                })
                .with_topic_id(t.topic_id),
        );
        for p in &t.partitions {
            let partition = if topic_error.is_none() {
                broker.replicas.get(&name, p.partition)
            } else {
                None
            };
            let follower = replica_id >= 0;
            let leads = partition.is_some() && super::leads(broker, &name, p.partition);
            // KIP-392: consumers speaking v11+ may read from any replica of the partition.
            let as_follower =
                !follower && version >= 11 && !leads && partition.as_ref().is_some_and(|part| part.has_replica(me));
            let fixed_error = topic_error.or_else(|| match &partition {
                // Kafka: a partition the metadata knows but this broker does not host.
                None if image
                    .topic(&name)
                    .is_some_and(|t| usize::try_from(p.partition).is_ok_and(|i| i < t.partitions.len())) =>
                {
                    Some(ResponseError::NotLeaderOrFollower)
                }
                None => Some(ResponseError::UnknownTopicOrPartition),
                Some(_) if !leads && !as_follower => Some(ResponseError::NotLeaderOrFollower),
                Some(part) if follower && !part.has_replica(replica_id) => Some(ResponseError::NotLeaderOrFollower),
                Some(part) => epoch_error(p.current_leader_epoch, part.leader_epoch().0),
            });
            let mut diverging = None;
            let mut known_hw = i64::MAX;
            if follower
                && fixed_error.is_none()
                && let Some(part) = &partition
            {
                if p.last_fetched_epoch >= 0 && version >= 12 {
                    let log = part.log.lock();
                    match log.end_offset_for_epoch(fjord_storage::LeaderEpoch(p.last_fetched_epoch)) {
                        Some((epoch, end)) if epoch.0 != p.last_fetched_epoch || end.0 < p.fetch_offset => {
                            diverging = Some((epoch.0, end.0));
                        }
                        None => diverging = Some((-1, log.log_start_offset().0.min(p.fetch_offset))),
                        Some(_) => {}
                    }
                }
                if diverging.is_none() {
                    let (hw, moved) = part.record_follower_fetch(me, replica_id, p.fetch_offset, now);
                    if moved {
                        part.wake_waiters();
                    }
                    // This fetch moved the high watermark: the follower cannot know it yet.
                    known_hw = if moved { i64::MIN } else { hw.0 };
                }
            }
            let preferred = match &partition {
                Some(part)
                    if leads
                        && !follower
                        && version >= 11
                        && fixed_error.is_none()
                        && !request.rack_id.is_empty()
                        && broker.config.cluster.replica_selector == ReplicaSelector::RackAware =>
                {
                    preferred_read_replica(&image, me, part, &request.rack_id, p.fetch_offset)
                }
                _ => None,
            };
            if preferred.is_some() {
                broker.metrics.replication.preferred_replica_redirects.inc();
            }
            wanted.push(Wanted {
                topic_index,
                index: p.partition,
                fetch_offset: p.fetch_offset,
                partition_max_bytes: p.partition_max_bytes.max(0) as usize,
                partition,
                fixed_error,
                follower,
                diverging,
                preferred,
                as_follower,
                known_hw,
            });
        }
    }
    // The broker's fetch.max.bytes caps the request's max_bytes (v0-v2 have none); every
    // partition's limit is then min'd with what is left of it (plan_reads), as Kafka does.
    let broker_max = broker.config.network.fetch_max_bytes.as_u64() as usize;
    let max_bytes = if request.max_bytes <= 0 {
        broker_max
    } else {
        (request.max_bytes as usize).min(broker_max)
    };
    let min_bytes = request.min_bytes.max(0) as usize;
    let deadline = Instant::now() + Duration::from_millis(request.max_wait_ms.max(0) as u64);
    let (planned, data) = loop {
        // Register before reading so an append between the read and the wait is not missed.
        let waiter = Arc::new(Notify::new());
        for w in wanted.iter().filter(|w| w.fixed_error.is_none()) {
            if let Some(p) = &w.partition {
                p.register_waiter(&waiter);
            }
        }
        let planned = plan_reads(&wanted, max_bytes, request.isolation_level == 1);
        let total: usize = planned.iter().filter_map(|p| p.plan.as_ref()).map(ReadPlan::len).sum();
        let answer_now = planned.iter().any(|p| p.error.is_some() || p.remote.is_some())
            || wanted.iter().any(|w| w.diverging.is_some() || w.preferred.is_some())
            || wanted.iter().zip(&planned).any(|(w, p)| p.high_watermark > w.known_hw);
        if total >= min_bytes || answer_now || Instant::now() >= deadline || broker.is_shutting_down() {
            let plans: Vec<Option<ReadPlan>> = planned.iter().map(|p| p.plan.clone()).collect();
            let local = broker.blocking(move |b| {
                plans
                    .into_iter()
                    .map(|p| p.map(|p| b.read_buffers.read(&p)))
                    .collect::<Vec<_>>()
            });
            // Remote reads of all partitions run concurrently with each other and the local reads.
            let remote = futures_util::future::join_all(planned.iter().map(|p| read_remote(broker, p.remote.clone())));
            let (data, remote) = tokio::join!(local, remote);
            break (planned, (data, remote));
        }
        let _ = tokio::time::timeout_at(deadline.into(), waiter.notified()).await;
    };
    let read_committed = request.isolation_level == 1;
    let (data, remote_data) = data;
    for (((w, planned), data), remote) in wanted.iter().zip(planned).zip(data).zip(remote_data) {
        let mut error = planned.error;
        let data = match remote {
            Some(Ok(bytes)) => Some(Ok(bytes)),
            Some(Err(e)) => {
                tracing::error!(partition = w.index, offset = w.fetch_offset, error = %e, "remote fetch failed");
                error = Some(ResponseError::KafkaStorageError);
                None
            }
            None => data,
        };
        let records = match data {
            Some(Ok(bytes)) => bytes,
            Some(Err(e)) => {
                tracing::error!(partition = w.index, error = %e, "fetch read failed");
                error = Some(storage_error_code(&e));
                Bytes::new()
            }
            None => Bytes::new(),
        };
        if w.as_follower && !records.is_empty() {
            let m = &broker.metrics.replication;
            m.follower_fetch_bytes.inc_by(records.len() as u64);
            m.follower_fetch_records.inc_by(records_from(&records, w.fetch_offset));
        }
        let mut partition = PartitionData::default();
        if let Some((epoch, end_offset)) = w.diverging {
            partition =
                partition.with_diverging_epoch(EpochEndOffset::default().with_epoch(epoch).with_end_offset(end_offset));
        }
        let partition = partition
            .with_partition_index(w.index)
            .with_error_code(error.map_or(0, |e| e.code()))
            .with_high_watermark(planned.high_watermark)
            .with_last_stable_offset(planned.last_stable_offset)
            .with_log_start_offset(planned.log_start_offset)
            .with_aborted_transactions(read_committed.then(|| {
                planned
                    .aborted
                    .iter()
                    .map(|a| {
                        AbortedTransaction::default()
                            .with_producer_id(ProducerId(a.producer_id))
                            .with_first_offset(a.first_offset)
                    })
                    .collect()
            }))
            .with_preferred_read_replica(super::broker_id(w.preferred.unwrap_or(-1)))
            .with_records(Some(records));
        topics[w.topic_index].partitions.push(partition);
    }
    FetchResponse::default().with_responses(topics).with_session_id(0)
}

/// KIP-392, Kafka's RackAwareReplicaSelector, on the leader: the in-sync follower on a live
/// broker in `client_rack` that has `fetch_offset` (the furthest along, then the most recently
/// caught up); None when the leader is in that rack or no follower qualifies (the leader serves).
fn preferred_read_replica(
    image: &fjord_metadata::MetadataImage,
    me: i32,
    partition: &Partition,
    client_rack: &str,
    fetch_offset: i64,
) -> Option<i32> {
    let cluster = image.cluster();
    let in_rack = |id: i32| {
        cluster
            .broker(fjord_metadata::BrokerId(id))
            // Metadata lists it to the client (unfenced, with a listener), as Kafka requires.
            .is_some_and(|b| !b.fenced && !b.listeners.is_empty() && b.rack.as_deref() == Some(client_rack))
    };
    if in_rack(me) {
        return None;
    }
    let set = partition.replica_set();
    set.isr
        .iter()
        .filter(|&&id| id != me && in_rack(id))
        .filter_map(|id| set.followers.get(id).map(|f| (*id, f)))
        .filter(|(_, f)| f.fetch_offset >= fetch_offset)
        .max_by_key(|(id, f)| (f.fetch_offset, f.last_caught_up_ms, -id))
        .map(|(id, _)| id)
}

/// The records at or above `from` in whole batches read from a log (control batches excluded).
fn records_from(bytes: &[u8], from: i64) -> u64 {
    fjord_storage::batch::scan_batches(bytes)
        .filter_map(Result::ok)
        .filter(|b| !b.header.is_control())
        .map(|b| (b.header.last_offset() - b.header.base_offset.max(from) + 1).max(0) as u64)
        .sum()
}

/// KIP-320: a consumer's view of the leader epoch must match ours (-1 = not checked).
fn epoch_error(requested: i32, current: i32) -> Option<ResponseError> {
    match requested {
        -1 => None,
        e if e > current => Some(ResponseError::UnknownLeaderEpoch),
        e if e < current => Some(ResponseError::FencedLeaderEpoch),
        _ => None,
    }
}

/// Plans every partition's read under its log lock (cheap: index lookups), applying the
/// request-wide byte limit. Only the first partition that returns data may exceed the limits,
/// by returning one whole batch (KIP-74).
fn plan_reads(wanted: &[Wanted], max_bytes: usize, read_committed: bool) -> Vec<Planned> {
    let mut remaining = max_bytes;
    let mut first_data = true;
    wanted
        .iter()
        .map(|w| {
            let Some(partition) = w
                .partition
                .as_ref()
                .filter(|_| w.fixed_error.is_none() && w.diverging.is_none())
            else {
                return Planned {
                    error: w.fixed_error,
                    high_watermark: -1,
                    last_stable_offset: -1,
                    aborted: Vec::new(),
                    log_start_offset: -1,
                    plan: None,
                    remote: None,
                };
            };
            let log = partition.log.lock();
            let (local_start, hw, lso) = (log.log_start_offset(), log.high_watermark(), log.last_stable_offset());
            // A follower copies everything the leader has; consumers read what the ISR has,
            // read_committed ones up to the last stable offset.
            let upper = if w.follower {
                log.log_end_offset()
            } else if read_committed {
                lso
            } else {
                hw
            };
            let limit = w.partition_max_bytes.min(remaining);
            let result = if w.preferred.is_some() || (limit == 0 && !first_data) {
                Ok(None)
            } else {
                log.read(Offset(w.fetch_offset), upper, limit, first_data).map(Some)
            };
            let aborted = if read_committed && !w.follower && w.preferred.is_none() && w.fetch_offset < upper.0 {
                log.aborted_transactions(Offset(w.fetch_offset), upper)
            } else {
                Vec::new()
            };
            drop(log);
            let log_start = crate::tiering::log_start_offset(partition, local_start);
            if w.fetch_offset < local_start.0
                && w.preferred.is_none()
                && (limit > 0 || first_data)
                && let Some(remote) = partition.remote()
                && remote.manifest().is_some_and(|m| {
                    m.start_offset().is_some_and(|s| s <= w.fetch_offset) && m.segment_for(w.fetch_offset).is_some()
                })
            {
                let read = RemoteRead {
                    remote,
                    offset: w.fetch_offset,
                    max_bytes: limit,
                    min_one_batch: first_data,
                };
                remaining = remaining.saturating_sub(limit);
                first_data = false;
                return Planned {
                    error: None,
                    high_watermark: hw.0,
                    last_stable_offset: lso.0,
                    aborted,
                    log_start_offset: log_start.0,
                    plan: None,
                    remote: Some(read),
                };
            }
            match result {
                Ok(plan) => {
                    let plan = plan.filter(|p| !p.is_empty());
                    if let Some(p) = &plan {
                        remaining = remaining.saturating_sub(p.len());
                        first_data = false;
                    }
                    Planned {
                        error: None,
                        high_watermark: hw.0,
                        last_stable_offset: lso.0,
                        aborted,
                        log_start_offset: log_start.0,
                        plan,
                        remote: None,
                    }
                }
                Err(error) => Planned {
                    error: Some(storage_error_code(&error)),
                    high_watermark: hw.0,
                    last_stable_offset: lso.0,
                    aborted: Vec::new(),
                    log_start_offset: log_start.0,
                    plan: None,
                    remote: None,
                },
            }
        })
        .collect()
}

/// Serves one partition's read from tiered storage (None if it has no remote read).
async fn read_remote(broker: &Arc<Broker>, read: Option<RemoteRead>) -> Option<Result<Bytes, fjord_tiering::Error>> {
    let read = read?;
    let tiering = broker.tiering.as_ref()?;
    let started = Instant::now();
    let result = tiering
        .read(&read.remote, read.offset, read.max_bytes, read.min_one_batch)
        .await;
    broker.metrics.tiering.observe_read(started.elapsed());
    Some(result)
}

#[cfg(test)]
mod tests {
    use fjord_metadata::{BrokerId, MetadataImage, MetadataRecord};
    use fjord_storage::{LeaderEpoch, Log};

    use super::*;

    /// Brokers 1-4 in racks a, b, b, c; `fenced` ones fenced.
    fn image(fenced: &[i32]) -> MetadataImage {
        let register = |id: i32, rack: &str| MetadataRecord::RegisterBroker {
            broker_id: BrokerId(id),
            incarnation_id: uuid::Uuid::new_v4(),
            broker_epoch: 1,
            rack: Some(rack.into()),
            listeners: vec![fjord_metadata::Endpoint {
                name: "PLAINTEXT".into(),
                host: format!("b{id}"),
                port: 9092,
                security_protocol: "PLAINTEXT".into(),
            }],
            fenced: fenced.contains(&id),
        };
        MetadataImage::default()
            .apply(&[register(1, "a"), register(2, "b"), register(3, "b"), register(4, "c")])
            .expect("applies")
    }

    /// Broker 1 leads replicas 1-4 with ISR `isr`; followers fetched at the given offsets.
    fn partition(isr: Vec<i32>, fetched: &[(i32, i64, i64)]) -> (tempfile::TempDir, Partition) {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Log::open(&dir.path().join("t-0"), fjord_storage::LogConfig::default(), true).expect("opens");
        let p = Partition::new("t".into(), TopicId::random(), 0, log, LeaderEpoch(0));
        p.set_replica_set(1, 1, 0, 0, vec![1, 2, 3, 4], isr);
        for &(id, offset, now) in fetched {
            p.record_follower_fetch(1, id, offset, now);
        }
        (dir, p)
    }

    #[test]
    fn the_rack_aware_selector_picks_an_in_sync_follower_in_the_clients_rack() {
        let (_d, p) = partition(vec![1, 2, 3, 4], &[(2, 0, 10), (3, 0, 20), (4, 0, 10)]);
        // Both b followers have everything (log end 0): the most recently caught up wins.
        assert_eq!(preferred_read_replica(&image(&[]), 1, &p, "b", 0), Some(3));
        assert_eq!(preferred_read_replica(&image(&[]), 1, &p, "c", 0), Some(4));
        // The leader's own rack, an unknown rack: the leader serves.
        assert_eq!(preferred_read_replica(&image(&[]), 1, &p, "a", 0), None);
        assert_eq!(preferred_read_replica(&image(&[]), 1, &p, "z", 0), None);
        // Fenced brokers are skipped; so are followers that lack the fetch offset.
        assert_eq!(preferred_read_replica(&image(&[3]), 1, &p, "b", 0), Some(2));
        assert_eq!(preferred_read_replica(&image(&[4]), 1, &p, "c", 0), None);
        assert_eq!(preferred_read_replica(&image(&[]), 1, &p, "b", 5), None);
    }

    #[test]
    fn followers_out_of_the_isr_or_never_fetched_are_not_preferred() {
        let (_d, p) = partition(vec![1, 2, 4], &[(3, 0, 20)]);
        // 3 fetched but is not in the ISR; 2 is in the ISR but has not fetched this epoch.
        assert_eq!(preferred_read_replica(&image(&[]), 1, &p, "b", 0), None);
        // Out of the ISR although it fetched: still not preferred.
        assert_eq!(preferred_read_replica(&image(&[]), 1, &p, "c", 0), None);
    }

    #[test]
    fn records_served_count_from_the_fetch_offset() {
        let batch = crate::txn::records::encode_batch(
            &[
                (Bytes::from_static(b"a"), Some(Bytes::from_static(b"1"))),
                (Bytes::from_static(b"b"), Some(Bytes::from_static(b"2"))),
                (Bytes::from_static(b"c"), Some(Bytes::from_static(b"3"))),
            ],
            0,
        )
        .expect("encodes");
        assert_eq!(records_from(&batch, 0), 3);
        assert_eq!(records_from(&batch, 2), 1);
    }
}
