//! Limits that keep the broker within the machine's resources: the open-file limit (raised to
//! its hard limit at start), the size of the segment file cache and the broker-wide partition
//! limit derived from it, the partition-limit check CreateTopics and CreatePartitions make, and
//! the disk side of topic creation (partition logs staged before the metadata commit, undone if
//! it fails; metadata write failures answered KAFKA_STORAGE_ERROR).

use std::cell::Cell;
use std::collections::BTreeMap;
use std::ops::Range;

use fjord_metadata::{MetadataImage, TopicId};
use fjord_protocol::kafka_protocol::error::ResponseError;

use crate::broker::Broker;
use crate::config::BrokerConfig;
use crate::controller::ApiError;

/// Bounds of the automatic `topics.max_partitions` (Kafka advises about 4000 per broker; Kafka 4
/// refuses more than 10000 partitions in one CreateTopics).
const AUTO_MAX_PARTITIONS: (u64, u64) = (1_000, 10_000);
/// Files of one segment (log, offset index, time index): the automatic partition limit lets
/// every partition keep its active segment open at once.
const FILES_PER_PARTITION: u64 = 3;
/// Least automatic file cache size.
const MIN_OPEN_FILES: u64 = 64;
/// Used when the limit cannot be read (or is unlimited and `fs.nr_open` unreadable).
const FALLBACK_NOFILE: u64 = 1024;

/// Raises the soft open-file limit (RLIMIT_NOFILE) to the hard limit (capped at the kernel's
/// `fs.nr_open` when the hard limit is unlimited) and returns the soft limit now in force.
pub fn raise_open_file_limit() -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let before = getrlimit(Resource::Nofile);
    let nr_open = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    let hard = match (before.maximum, nr_open) {
        (Some(hard), Some(nr)) => hard.min(nr),
        (Some(hard), None) => hard,
        (None, Some(nr)) => nr,
        (None, None) => before.current.unwrap_or(FALLBACK_NOFILE),
    };
    let soft = before.current.unwrap_or(hard);
    if soft >= hard {
        return soft;
    }
    match setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(hard),
            maximum: before.maximum,
        },
    ) {
        Ok(()) => {
            tracing::info!(from = soft, to = hard, "raised the open-file limit (RLIMIT_NOFILE)");
            hard
        }
        Err(error) => {
            tracing::warn!(soft, hard, %error, "cannot raise the open-file limit");
            soft
        }
    }
}

/// Descriptors kept out of both the file cache and the connection limit (at most an eighth of
/// the open-file limit).
const RESERVED_FDS: u64 = 256;

/// Fills in the automatic (0) `storage.max_open_files` and `topics.max_partitions` from the
/// open-file limit `nofile`, and keeps `network.max_connections` within what is left of it.
pub fn resolve_limits(config: &mut BrokerConfig, nofile: u64) {
    if config.storage.max_open_files == 0 {
        config.storage.max_open_files = (nofile / 2).max(MIN_OPEN_FILES) as usize;
    } else if config.storage.max_open_files as u64 > nofile.saturating_sub(nofile / 4) {
        tracing::warn!(
            max_open_files = config.storage.max_open_files,
            open_file_limit = nofile,
            "storage.max_open_files leaves little of the open-file limit to connections"
        );
    }
    // Connections need descriptors too: keep network.max_connections within what the file
    // cache leaves (minus a margin for listeners, metadata, checkpoints and the admin API), so
    // at the limit the broker stops accepting instead of failing storage opens with EMFILE.
    let headroom = nofile
        .saturating_sub(config.storage.max_open_files as u64)
        .saturating_sub(RESERVED_FDS.min(nofile / 8))
        .max(1);
    if config.network.max_connections as u64 > headroom {
        tracing::warn!(
            max_connections = config.network.max_connections,
            lowered_to = headroom,
            open_file_limit = nofile,
            max_open_files = config.storage.max_open_files,
            "network.max_connections exceeds the descriptors left by the open-file limit; lowering it"
        );
        config.network.max_connections = usize::try_from(headroom).unwrap_or(usize::MAX);
    }
    if config.topics.max_partitions == 0 {
        let (least, most) = AUTO_MAX_PARTITIONS;
        config.topics.max_partitions = (nofile / FILES_PER_PARTITION).clamp(least, most) as i32;
    }
}

/// Partitions staged inside a metadata commit closure: (topic id, first, end) to undo if the
/// commit fails.
#[derive(Debug, Default)]
pub(crate) struct Staged(Cell<Option<(TopicId, i32, i32)>>);

/// The Kafka code for a failed metadata commit: an I/O failure of the metadata log (a full
/// disk) is KAFKA_STORAGE_ERROR, anything else UNKNOWN_SERVER_ERROR.
pub(crate) fn metadata_error_code(error: &fjord_metadata::Error) -> ResponseError {
    match error {
        fjord_metadata::Error::Io { .. } => ResponseError::KafkaStorageError,
        _ => ResponseError::UnknownServerError,
    }
}

impl Broker {
    /// Opens empty logs (directories, `partition.metadata`) for `partitions` of a topic about to
    /// be committed; a disk that cannot hold them (full) refuses the request with
    /// KAFKA_STORAGE_ERROR and nothing is left behind. Call inside the commit closure.
    pub(crate) fn stage_new_partitions(
        &self,
        staged: &Staged,
        topic: &str,
        topic_id: TopicId,
        configs: &BTreeMap<String, String>,
        partitions: Range<i32>,
    ) -> Result<(), ApiError> {
        self.replicas
            .stage_partitions(topic, topic_id, configs, partitions.clone())
            .map_err(|error| {
                ApiError::new(
                    ResponseError::KafkaStorageError,
                    format!("cannot create the partition logs of {topic}: {error}"),
                )
            })?;
        staged.0.set(Some((topic_id, partitions.start, partitions.end)));
        Ok(())
    }

    /// After a failed metadata commit: removes what [`Broker::stage_new_partitions`] made and
    /// returns the error for the client.
    pub(crate) fn commit_failed(&self, staged: &Staged, topic: &str, error: fjord_metadata::Error) -> ApiError {
        if let Some((topic_id, start, end)) = staged.0.take() {
            self.replicas.unstage_partitions(topic, topic_id, start..end);
        }
        tracing::error!(%error, topic, "metadata commit failed");
        ApiError::new(metadata_error_code(&error), format!("metadata commit failed: {error}"))
    }

    /// Refuses adding `adding` partitions when the broker would then host more than
    /// `topics.max_partitions` (POLICY_VIOLATION, as Kafka refuses too many partitions in one
    /// request). Call with the image the commit is checked against.
    pub(crate) fn check_partition_limit(&self, image: &MetadataImage, adding: i32) -> Result<(), ApiError> {
        let limit = i64::from(self.config.topics.max_partitions);
        let hosted = image.partition_count() as i64;
        let total = hosted + i64::from(adding.max(0));
        if limit > 0 && total > limit {
            return Err(ApiError::new(
                ResponseError::PolicyViolation,
                format!(
                    "adding {adding} partitions would bring this broker to {total}, over its limit of {limit} \
                     (topics.max_partitions); {hosted} are hosted now"
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn automatic_limits_follow_the_open_file_limit() {
        let mut config = BrokerConfig::default();
        resolve_limits(&mut config, 1024);
        assert_eq!(config.storage.max_open_files, 512);
        assert_eq!(config.topics.max_partitions, 1000);
        assert_eq!(config.network.max_connections, 1024 - 512 - 128);
        let mut config = BrokerConfig::default();
        resolve_limits(&mut config, 1 << 20);
        assert_eq!(config.storage.max_open_files, 1 << 19);
        assert_eq!(config.topics.max_partitions, 10_000);
        let mut config = BrokerConfig::default();
        config.storage.max_open_files = 7;
        config.topics.max_partitions = 5;
        resolve_limits(&mut config, 1 << 20);
        assert_eq!((config.storage.max_open_files, config.topics.max_partitions), (7, 5));
    }

    #[test]
    fn raising_the_open_file_limit_reaches_the_hard_limit() {
        let soft = raise_open_file_limit();
        let now = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        assert_eq!(now.current, Some(soft));
    }
}
