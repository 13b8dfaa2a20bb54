//! DescribeLogDirs (key 35): the data directory with its total and usable bytes (v4) and the
//! size of every hosted partition in it (all, or the requested ones), as `kafka-log-dirs` and
//! admin tools read it. One log dir per broker; no future (moving) replicas.

use std::collections::BTreeMap;
use std::sync::Arc;

use fjord_protocol::kafka_protocol::error::ResponseError;
use fjord_protocol::kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use fjord_protocol::kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse};

use super::{str_bytes, topic_name};
use crate::broker::Broker;

pub(super) async fn handle(broker: &Arc<Broker>, request: DescribeLogDirsRequest) -> DescribeLogDirsResponse {
    broker
        .blocking(move |broker| {
            // null topics = every partition; an unknown requested partition is simply absent.
            let wanted = request.topics.map(|topics| {
                topics
                    .into_iter()
                    .map(|t| (t.topic.to_string(), t.partitions))
                    .collect::<BTreeMap<_, _>>()
            });
            let mut by_topic: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
            for p in broker.replicas.all() {
                if let Some(wanted) = &wanted
                    && !wanted.get(&p.topic).is_some_and(|parts| parts.contains(&p.index))
                {
                    continue;
                }
                let size = p.log.lock().size_bytes();
                by_topic.entry(p.topic.clone()).or_default().push(
                    DescribeLogDirsPartition::default()
                        .with_partition_index(p.index)
                        .with_partition_size(i64::try_from(size).unwrap_or(i64::MAX))
                        .with_offset_lag(0)
                        .with_is_future_key(false),
                );
            }
            let topics = by_topic
                .into_iter()
                .map(|(name, mut partitions)| {
                    partitions.sort_by_key(|p| p.partition_index);
                    DescribeLogDirsTopic::default()
                        .with_name(topic_name(name))
                        .with_partitions(partitions)
                })
                .collect();
            let dir = &broker.config.storage.data_dir;
            let dir_name = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.clone());
            let mut result = DescribeLogDirsResult::default()
                .with_log_dir(str_bytes(dir_name.display().to_string()))
                .with_topics(topics)
                .with_total_bytes(-1)
                .with_usable_bytes(-1);
            match rustix::fs::statvfs(dir) {
                Ok(stat) => {
                    let total = stat.f_blocks.saturating_mul(stat.f_frsize);
                    let usable = stat.f_bavail.saturating_mul(stat.f_frsize);
                    result = result
                        .with_total_bytes(i64::try_from(total).unwrap_or(i64::MAX))
                        .with_usable_bytes(i64::try_from(usable).unwrap_or(i64::MAX));
                }
                Err(error) => {
                    tracing::warn!(dir = %dir.display(), %error, "cannot stat the data dir");
                    result = result.with_error_code(ResponseError::KafkaStorageError.code());
                }
            }
            DescribeLogDirsResponse::default().with_results(vec![result])
        })
        .await
}
