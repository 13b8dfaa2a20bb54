//! ListOffsets (key 2): earliest (-2, the remote log start when older data is tiered), latest
//! (-1), max timestamp (-3, over local and tiered data), earliest local (-4, the local log
//! start), latest tiered (-5, the highest offset in remote storage, KIP-1005) and by timestamp
//! (first record with timestamp >= target, looked up through remote time indexes below the local
//! log start).

use std::sync::Arc;

use fjord_protocol::kafka_protocol::error::ResponseError;
use fjord_protocol::kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use fjord_protocol::kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::errors::storage_error_code;
use crate::broker::Broker;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

pub(super) async fn handle(broker: &Arc<Broker>, request: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
    // v10+ (KIP-1075): how long a lookup may wait for remote storage; REQUEST_TIMED_OUT after.
    let remote_timeout = (version >= 10 && request.timeout_ms >= 0)
        .then(|| std::time::Duration::from_millis(u64::try_from(request.timeout_ms).unwrap_or(0)));
    // read_committed: LATEST is the last stable offset.
    let read_committed = request.isolation_level == 1;
    // Timestamp lookups may read and decompress segment data: off the async workers.
    broker
        .blocking(move |broker| {
            let topics = request
                .topics
                .into_iter()
                .map(|t| {
                    let partitions = t
                        .partitions
                        .iter()
                        .map(|p| {
                            lookup(
                                broker,
                                &t.name,
                                p.partition_index,
                                p.timestamp,
                                version,
                                remote_timeout,
                                read_committed,
                            )
                        })
                        .collect();
                    ListOffsetsTopicResponse::default()
                        .with_name(t.name)
                        .with_partitions(partitions)
                })
                .collect();
            ListOffsetsResponse::default().with_topics(topics)
        })
        .await
}

fn lookup(
    broker: &Broker,
    topic: &str,
    index: i32,
    timestamp: i64,
    version: i16,
    remote_timeout: Option<std::time::Duration>,
    read_committed: bool,
) -> ListOffsetsPartitionResponse {
    let response = ListOffsetsPartitionResponse::default()
        .with_partition_index(index)
        .with_timestamp(-1)
        .with_offset(-1);
    let Some(partition) = broker.replicas.get(topic, index) else {
        return response.with_error_code(ResponseError::UnknownTopicOrPartition.code());
    };
    if !super::leads(broker, topic, index) {
        return response.with_error_code(ResponseError::NotLeaderOrFollower.code());
    }
    // leader_epoch exists from v4; older versions must leave it at its default (-1).
    let epoch = if version >= 4 { partition.leader_epoch().0 } else { -1 };
    if timestamp == LATEST_TIERED {
        // -1 until a segment is committed remotely, and on topics that do not tier.
        let highest = partition
            .remote()
            .and_then(|r| r.manifest())
            .and_then(|m| m.end_offset())
            .map_or(-1, |end| end - 1);
        return response.with_offset(highest).with_leader_epoch(epoch);
    }
    if (timestamp >= 0 || timestamp == MAX_TIMESTAMP)
        && let (Some(tiering), Some(remote)) = (broker.tiering.as_ref(), partition.remote())
    {
        let (local_start, local_max, limit) = {
            let log = partition.log.lock();
            (
                log.log_start_offset().0,
                log.max_timestamp().map(|(_, ts)| ts),
                log.config().max_decompressed_read_bytes(),
            )
        };
        // The first record with the largest timestamp: remote data wins a tie (it is earlier).
        let target = match timestamp {
            MAX_TIMESTAMP => crate::tiering::remote_max_timestamp(&remote, local_start)
                .filter(|remote_max| local_max.is_none_or(|local| *remote_max >= local)),
            ts => Some(ts),
        };
        // Blocking thread (see `handle`): wait for the remote lookup here.
        let remote_hit = match target {
            Some(ts) => {
                let lookup = tiering.offset_for_timestamp(&remote, ts, local_start, limit);
                let runtime = tokio::runtime::Handle::current();
                match remote_timeout {
                    Some(timeout) => match runtime.block_on(tokio::time::timeout(timeout, lookup)) {
                        Ok(hit) => hit,
                        Err(_) => {
                            tracing::debug!(topic, partition = index, ?timeout, "remote timestamp lookup timed out");
                            return response.with_error_code(ResponseError::RequestTimedOut.code());
                        }
                    },
                    None => runtime.block_on(lookup),
                }
            }
            None => Ok(None),
        };
        match remote_hit {
            Ok(Some((offset, ts))) => {
                return response
                    .with_offset(offset.0)
                    .with_timestamp(ts)
                    .with_leader_epoch(epoch);
            }
            Ok(None) => {}
            Err(error) => {
                tracing::error!(topic, partition = index, %error, "remote timestamp lookup failed");
                return response.with_error_code(ResponseError::KafkaStorageError.code());
            }
        }
    }
    let log = partition.log.lock();
    let found = match timestamp {
        LATEST if read_committed => Ok(Some((log.last_stable_offset(), -1))),
        LATEST => Ok(Some((log.high_watermark(), -1))),
        EARLIEST => Ok(Some((
            crate::tiering::log_start_offset(&partition, log.log_start_offset()),
            -1,
        ))),
        EARLIEST_LOCAL => Ok(Some((log.log_start_offset(), -1))),
        MAX_TIMESTAMP => log.max_timestamp_record(),
        ts if ts >= 0 => log.offset_for_timestamp(ts),
        _ => {
            return response.with_error_code(ResponseError::InvalidRequest.code());
        }
    };
    match found {
        Ok(Some((offset, ts))) => response
            .with_offset(offset.0)
            .with_timestamp(ts)
            .with_leader_epoch(epoch),
        Ok(None) => response.with_leader_epoch(epoch),
        Err(error) => response.with_error_code(storage_error_code(&error).code()),
    }
}
