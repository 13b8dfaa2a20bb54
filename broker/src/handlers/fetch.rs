//! Fetch (key 1): read whole batches for many partitions up to the request and partition byte
//! limits (the request's capped by the broker's `network.fetch_max_bytes`), long-polling on
//! `max_wait_ms`/`min_bytes` until enough data arrives. Topics are addressed by id from v13.
//! Fetch sessions are not kept: session id 0 tells clients to send full requests, which Kafka
//! allows.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fjord_metadata::TopicId;
use fjord_protocol::kafka_protocol::error::ResponseError;
use fjord_protocol::kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use fjord_protocol::kafka_protocol::messages::{FetchRequest, FetchResponse};
use fjord_storage::{Offset, ReadPlan};
use tokio::sync::Notify;

use super::errors::storage_error_code;
use crate::broker::Broker;
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
}

struct Planned {
    error: Option<ResponseError>,
    high_watermark: i64,
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
            let fixed_error = topic_error.or_else(|| match &partition {
                None => Some(ResponseError::UnknownTopicOrPartition),
                Some(_) if !super::leads(broker, &name, p.partition) => Some(ResponseError::NotLeaderOrFollower),
                Some(part) => epoch_error(p.current_leader_epoch, part.leader_epoch().0),
            });
            wanted.push(Wanted {
                topic_index,
                index: p.partition,
                fetch_offset: p.fetch_offset,
                partition_max_bytes: p.partition_max_bytes.max(0) as usize,
                partition,
                fixed_error,
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
        let planned = plan_reads(&wanted, max_bytes);
        let total: usize = planned.iter().filter_map(|p| p.plan.as_ref()).map(ReadPlan::len).sum();
        let any_error = planned.iter().any(|p| p.error.is_some() || p.remote.is_some());
        if total >= min_bytes || any_error || Instant::now() >= deadline || broker.is_shutting_down() {
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
        let partition = PartitionData::default()
            .with_partition_index(w.index)
            .with_error_code(error.map_or(0, |e| e.code()))
            .with_high_watermark(planned.high_watermark)
            .with_last_stable_offset(planned.high_watermark)
            .with_log_start_offset(planned.log_start_offset)
            .with_aborted_transactions(read_committed.then(Vec::new))
            .with_preferred_read_replica(super::broker_id(-1))
            .with_records(Some(records));
        topics[w.topic_index].partitions.push(partition);
    }
    FetchResponse::default().with_responses(topics).with_session_id(0)
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
fn plan_reads(wanted: &[Wanted], max_bytes: usize) -> Vec<Planned> {
    let mut remaining = max_bytes;
    let mut first_data = true;
    wanted
        .iter()
        .map(|w| {
            let Some(partition) = w.partition.as_ref().filter(|_| w.fixed_error.is_none()) else {
                return Planned {
                    error: w.fixed_error,
                    high_watermark: -1,
                    log_start_offset: -1,
                    plan: None,
                    remote: None,
                };
            };
            let log = partition.log.lock();
            let (local_start, hw) = (log.log_start_offset(), log.high_watermark());
            let limit = w.partition_max_bytes.min(remaining);
            let result = if limit == 0 && !first_data {
                Ok(None)
            } else {
                log.read(Offset(w.fetch_offset), hw, limit, first_data).map(Some)
            };
            drop(log);
            let log_start = crate::tiering::log_start_offset(partition, local_start);
            if w.fetch_offset < local_start.0
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
                        log_start_offset: log_start.0,
                        plan,
                        remote: None,
                    }
                }
                Err(error) => Planned {
                    error: Some(storage_error_code(&error)),
                    high_watermark: hw.0,
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
