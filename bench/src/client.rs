//! librdkafka plumbing shared by the phases: a client context that prints librdkafka's warnings
//! to stderr, and topic setup (delete if present, create, wait until every partition has a leader).

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;

/// Prints librdkafka log lines at warning level and above (the `log` crate has no logger here,
/// so without this a misbehaving broker would be silent).
pub(crate) fn print_log(level: RDKafkaLogLevel, facility: &str, message: &str) {
    if (level as i32) <= (RDKafkaLogLevel::Warning as i32) {
        eprintln!("librdkafka {level:?} {facility}: {message}");
    }
}

/// Context for the admin client and the consumer: only logging is customised.
pub(crate) struct LogCtx;

impl ClientContext for LogCtx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        print_log(level, fac, log_message);
    }
    fn error(&self, error: KafkaError, reason: &str) {
        eprintln!("librdkafka error: {error}: {reason}");
    }
}

impl ConsumerContext for LogCtx {}

impl ProducerContext for LogCtx {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::producer::DeliveryResult<'_>, _: ()) {}
}

/// Config every client starts from.
pub(crate) fn base_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("client.id", "fjord-bench")
        // Only warnings and errors reach `print_log`; librdkafka filters the rest itself.
        .set("log_level", "4");
    config.set_log_level(RDKafkaLogLevel::Warning);
    config
}

/// Deletes `topic` if it exists, creates it with `partitions` partitions (replication factor 1)
/// and waits until the metadata shows a leader for every partition.
pub(crate) fn recreate_topic(bootstrap: &str, topic: &str, partitions: i32) -> Result<()> {
    let admin: AdminClient<LogCtx> = base_config(bootstrap)
        .create_with_context(LogCtx)
        .context("create admin client")?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .context("tokio runtime for admin calls")?;

    // Delete only if the cluster lists it (a metadata request for all topics creates nothing).
    let all = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))
        .context("metadata (is the broker up?)")?;
    if all.topics().iter().any(|t| t.name() == topic) {
        let deleted = rt
            .block_on(admin.delete_topics(&[topic], &opts))
            .context("DeleteTopics")?;
        for result in deleted {
            match result {
                Ok(_) => eprintln!("deleted existing topic {topic}"),
                Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
                Err((name, code)) => bail!("DeleteTopics {name}: {code}"),
            }
        }
    }

    // A broker may finish a deletion asynchronously: retry TOPIC_ALREADY_EXISTS for a while.
    let deadline = Instant::now() + Duration::from_secs(60);
    let new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    loop {
        let created = rt
            .block_on(admin.create_topics([&new_topic], &opts))
            .context("CreateTopics")?;
        match created.into_iter().next() {
            Some(Ok(_)) => break,
            Some(Err((_, RDKafkaErrorCode::TopicAlreadyExists))) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(500));
            }
            Some(Err((name, code))) => bail!("CreateTopics {name}: {code}"),
            None => bail!("CreateTopics returned no result"),
        }
    }

    // Wait until every partition is visible with a leader.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = match admin.inner().fetch_metadata(Some(topic), Duration::from_secs(10)) {
            Ok(md) => md.topics().iter().any(|t| {
                t.name() == topic
                    && t.error().is_none()
                    && t.partitions().len() == partitions as usize
                    && t.partitions().iter().all(|p| p.error().is_none() && p.leader() >= 0)
            }),
            Err(e) => {
                eprintln!("metadata: {e}");
                false
            }
        };
        if ready {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("topic {topic} did not get {partitions} partitions with leaders within 60 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Deletes `topic`, reporting (not failing on) errors: used to free broker disk/RAM afterwards.
pub(crate) fn delete_topic(bootstrap: &str, topic: &str) {
    let result = (|| -> Result<()> {
        let admin: AdminClient<LogCtx> = base_config(bootstrap).create_with_context(LogCtx)?;
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build()?;
        for r in rt.block_on(admin.delete_topics(&[topic], &opts))? {
            if let Err((name, code)) = r {
                bail!("DeleteTopics {name}: {code}");
            }
        }
        Ok(())
    })();
    if let Err(e) = result {
        eprintln!("warning: could not delete topic {topic} after the run: {e:#}");
    }
}

/// For brokers without CreateTopics (librdkafka's mock cluster): lets a producer's metadata
/// request auto-create `topic` (or find it) and returns its partition count.
pub(crate) fn existing_topic_partitions(bootstrap: &str, topic: &str) -> Result<i32> {
    let producer: BaseProducer<LogCtx> = base_config(bootstrap)
        .set("allow.auto.create.topics", "true")
        .create_with_context(LogCtx)
        .context("create metadata client")?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let md = producer.client().fetch_metadata(Some(topic), Duration::from_secs(10))?;
        if let Some(t) = md.topics().iter().find(|t| t.name() == topic && t.error().is_none())
            && !t.partitions().is_empty()
            && t.partitions().iter().all(|p| p.leader() >= 0)
        {
            return Ok(t.partitions().len() as i32);
        }
        if Instant::now() >= deadline {
            bail!("topic {topic} not found or not auto-created within 30 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
