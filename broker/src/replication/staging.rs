//! Partition logs opened before their metadata is committed, so creating a topic (or adding
//! partitions) is atomic from a client's view: every directory, `partition.metadata` and empty
//! log is made first; only if all of them succeed are the records committed, and the staged logs
//! are then installed by `apply_image` without further disk writes. On failure (a full disk) the
//! staged directories are removed and nothing reaches the metadata log.

use std::collections::BTreeMap;
use std::ops::Range;

use fjord_metadata::TopicId;
use fjord_storage::Log;

use super::{Error, ReplicaManager, partition_dir};
use crate::topic_config;

impl ReplicaManager {
    /// Makes the directories and opens empty logs for `partitions` of `topic` (id `topic_id`,
    /// topic config overrides `configs`). All or nothing: on error what was made is removed.
    pub fn stage_partitions(
        &self,
        topic: &str,
        topic_id: TopicId,
        configs: &BTreeMap<String, String>,
        partitions: Range<i32>,
    ) -> Result<(), Error> {
        let mut log_config = topic_config::log_config(&self.config.topics, configs);
        log_config.producer_id_expiration_ms = self.config.producers.id_expiration_ms;
        for p in partitions.clone() {
            let dir = partition_dir(&self.data_dir, topic, p);
            let existed = dir.exists();
            let opened = self.claim_dir(&dir, topic_id).and_then(|()| {
                Log::open(&dir, log_config.clone(), true).map_err(|source| Error::Storage {
                    topic: topic.to_string(),
                    partition: p,
                    source,
                })
            });
            match opened {
                Ok(log) => {
                    self.staged.lock().insert((topic.to_string(), p), (topic_id, log));
                }
                Err(error) => {
                    tracing::warn!(topic, partition = p, %error, "cannot create partition log; topic not created");
                    // Its partition.metadata may not have been written: remove what this made.
                    if !existed && let Err(error) = std::fs::remove_dir_all(&dir) {
                        tracing::error!(dir = %dir.display(), %error, "cannot remove the directory of an uncreated partition");
                    }
                    self.unstage_partitions(topic, topic_id, partitions.start..p);
                    return Err(error);
                }
            }
        }
        Ok(())
    }

    /// Drops the staged logs of `partitions` of `topic_id` and removes their directories (the
    /// metadata commit did not happen).
    pub fn unstage_partitions(&self, topic: &str, topic_id: TopicId, partitions: Range<i32>) {
        for p in partitions {
            let staged = {
                let mut staged = self.staged.lock();
                match staged.get(&(topic.to_string(), p)) {
                    Some((id, _)) if *id == topic_id => staged.remove(&(topic.to_string(), p)),
                    _ => None,
                }
            };
            let dir = partition_dir(&self.data_dir, topic, p);
            let ours = std::fs::read_to_string(dir.join("partition.metadata"))
                .is_ok_and(|m| m.lines().any(|l| l == format!("topic_id: {topic_id}")));
            drop(staged);
            if ours && let Err(error) = std::fs::remove_dir_all(&dir) {
                tracing::error!(dir = %dir.display(), %error, "cannot remove the directory of an uncreated partition");
            }
        }
    }

    /// The staged log of `topic`-`partition` if it was staged for `topic_id`.
    pub(super) fn take_staged(&self, topic: &str, partition: i32, topic_id: TopicId) -> Option<Log> {
        let mut staged = self.staged.lock();
        let key = (topic.to_string(), partition);
        match staged.get(&key) {
            Some((id, _)) if *id == topic_id => staged.remove(&key).map(|(_, log)| log),
            _ => None,
        }
    }
}
