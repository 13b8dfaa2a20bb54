//! Consume phase: one librdkafka consumer with a manual assignment of every partition from the
//! beginning (no consumer group: the broker has none yet) reads everything that was produced.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::client::{LogCtx, base_config};

/// What the consume phase measured.
#[derive(Debug)]
pub(crate) struct ConsumeResult {
    pub(crate) msgs: u64,
    pub(crate) bytes: u64,
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
    /// From `assign()` to the last message.
    pub(crate) secs: f64,
    /// True if the phase stopped because no message arrived for the idle timeout.
    pub(crate) timed_out: bool,
}

fn consumer(bootstrap: &str) -> Result<BaseConsumer<LogCtx>> {
    let mut config = base_config(bootstrap);
    config
        // librdkafka's assign() needs a group.id, but with assign() and explicit offsets it never
        // joins the group or fetches committed offsets (it may look up the coordinator). Nothing
        // is committed.
        .set("group.id", "fjord-bench")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.max.bytes", (50 << 20).to_string())
        .set("max.partition.fetch.bytes", (10 << 20).to_string())
        // Must exceed fetch.max.bytes (librdkafka checks this at creation).
        .set("receive.message.max.bytes", (100 << 20).to_string())
        .set("queued.max.messages.kbytes", (256 << 10).to_string());
    config.create_with_context(LogCtx).context("create consumer")
}

/// Messages stored in the topic according to the broker: sum over partitions of
/// (high watermark - log start offset), via ListOffsets.
pub(crate) fn stored_messages(bootstrap: &str, topic: &str, partitions: i32) -> Result<u64> {
    let consumer = consumer(bootstrap)?;
    let mut total = 0u64;
    for p in 0..partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .with_context(|| format!("ListOffsets {topic}/{p}"))?;
        total += (high - low).max(0) as u64;
    }
    Ok(total)
}

pub(crate) fn run(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    expected: u64,
    idle_timeout: Duration,
) -> Result<ConsumeResult> {
    let consumer = consumer(bootstrap)?;
    consumer
        .client()
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .context("consumer metadata")?;
    let mut assignment = TopicPartitionList::with_capacity(partitions as usize);
    for p in 0..partitions {
        assignment.add_partition_offset(topic, p, Offset::Beginning)?;
    }

    let start = Instant::now();
    consumer.assign(&assignment).context("assign")?;
    let mut result = ConsumeResult {
        msgs: 0,
        bytes: 0,
        errors: 0,
        first_error: None,
        secs: 0.0,
        timed_out: false,
    };
    let mut last_msg = start;
    while result.msgs < expected {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(msg)) => {
                result.msgs += 1;
                result.bytes += msg.payload_len() as u64;
                last_msg = Instant::now();
            }
            Some(Err(e)) => {
                result.errors += 1;
                result.first_error.get_or_insert_with(|| e.to_string());
                if result.errors <= 5 {
                    eprintln!("consume error: {e}");
                }
            }
            None => {
                if last_msg.elapsed() >= idle_timeout {
                    result.timed_out = true;
                    break;
                }
            }
        }
    }
    result.secs = (last_msg - start).as_secs_f64();
    Ok(result)
}
