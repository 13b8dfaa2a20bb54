//! Produce phase: one librdkafka producer (acks=all by default, linger.ms 5, batch.size 128 KiB,
//! no compression) sends fixed-size values for a fixed time, at maximum rate or at a paced offered
//! rate, and records each message's ack latency (`produce()` call to delivery callback).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use hdrhistogram::Histogram;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;

use crate::client::{base_config, print_log};

/// Distinct payloads cycled through (a power of two).
const PAYLOAD_POOL: usize = 1024;

/// Producer settings that define the workload.
#[derive(Debug, Clone)]
pub(crate) struct ProduceSpec {
    pub(crate) topic: String,
    pub(crate) value_size: usize,
    pub(crate) duration: Duration,
    /// Offered rate in messages per second; `None` = as fast as the client can.
    pub(crate) rate: Option<f64>,
    pub(crate) acks: String,
    pub(crate) linger_ms: u32,
    pub(crate) batch_size: u32,
    /// Disable sticky partitioning: every message picks a partition at random.
    pub(crate) spread: bool,
    pub(crate) flush_timeout: Duration,
    /// Also keep the worst ack latency per second of send time (for `--timeline`).
    pub(crate) timeline: bool,
    /// enable.idempotence.
    pub(crate) idempotence: bool,
    /// max.in.flight.requests.per.connection, if set.
    pub(crate) max_in_flight: Option<u32>,
}

/// What the produce phase measured.
#[derive(Debug)]
pub(crate) struct ProduceResult {
    pub(crate) sent: u64,
    pub(crate) acked: u64,
    /// Delivery reports with an error plus `produce()` calls rejected outright.
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
    /// From the first `produce()` call to the last delivery report.
    pub(crate) secs: f64,
    /// Ack latency histogram in microseconds.
    pub(crate) latency_us: Histogram<u64>,
    /// With `timeline`: per second of send time since the start, (acks, worst latency µs).
    pub(crate) timeline: Vec<(u64, u64)>,
}

/// Producer context: the delivery callback (run on the producer's polling thread) records
/// latency from the send timestamp carried as the message's opaque.
struct DeliveryCtx {
    t0: Instant,
    latency_us: Mutex<Histogram<u64>>,
    acked: AtomicU64,
    failed: AtomicU64,
    last_report_ns: AtomicU64,
    first_error: Mutex<Option<String>>,
    /// `Some` with `--timeline`: indexed by whole seconds of send time since `t0`.
    timeline: Option<Mutex<Vec<(u64, u64)>>>,
}

impl DeliveryCtx {
    fn now_ns(&self) -> u64 {
        self.t0.elapsed().as_nanos() as u64
    }
}

impl ClientContext for DeliveryCtx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        print_log(level, fac, log_message);
    }
    fn error(&self, error: KafkaError, reason: &str) {
        eprintln!("librdkafka error: {error}: {reason}");
    }
}

impl ProducerContext for DeliveryCtx {
    /// Nanoseconds since `t0` at the `produce()` call.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, sent_ns: usize) {
        let now = self.now_ns();
        match result {
            Ok(_) => {
                let micros = now.saturating_sub(sent_ns as u64) / 1_000;
                self.latency_us
                    .lock()
                    .expect("histogram lock")
                    .saturating_record(micros.max(1));
                self.acked.fetch_add(1, Ordering::Relaxed);
                if let Some(timeline) = &self.timeline {
                    let second = sent_ns / 1_000_000_000;
                    let mut timeline = timeline.lock().expect("timeline lock");
                    if timeline.len() <= second {
                        timeline.resize(second + 1, (0, 0));
                    }
                    let slot = &mut timeline[second];
                    slot.0 += 1;
                    slot.1 = slot.1.max(micros);
                }
            }
            Err((err, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let mut first = self.first_error.lock().expect("error lock");
                if first.is_none() {
                    *first = Some(err.to_string());
                }
            }
        }
        self.last_report_ns.fetch_max(now, Ordering::Relaxed);
    }
}

/// `PAYLOAD_POOL` values of `size` bytes, each half random bytes and half zeros (like OMB's
/// "50 % random" payloads; irrelevant to the broker without compression, but honest on the wire).
fn payloads(size: usize) -> Vec<Vec<u8>> {
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let mut next = move || {
        // splitmix64
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    (0..PAYLOAD_POOL)
        .map(|_| {
            let mut v = vec![0u8; size];
            for chunk in v[..size / 2].chunks_mut(8) {
                let r = next().to_le_bytes();
                chunk.copy_from_slice(&r[..chunk.len()]);
            }
            v
        })
        .collect()
}

pub(crate) fn run(bootstrap: &str, spec: &ProduceSpec) -> Result<ProduceResult> {
    let mut config = base_config(bootstrap);
    config
        .set("acks", &spec.acks)
        .set("linger.ms", spec.linger_ms.to_string())
        .set("batch.size", spec.batch_size.to_string())
        .set("compression.type", "none")
        // Off unless --idempotence, so results stay comparable with earlier runs.
        .set("enable.idempotence", spec.idempotence.to_string())
        .set("message.timeout.ms", "120000")
        .set("request.timeout.ms", "60000");
    if spec.spread {
        config.set("sticky.partitioning.linger.ms", "0");
    }
    if let Some(n) = spec.max_in_flight {
        config.set("max.in.flight.requests.per.connection", n.to_string());
    }
    let ctx = DeliveryCtx {
        t0: Instant::now(),
        latency_us: Mutex::new(Histogram::new_with_bounds(1, 3_600_000_000, 3).context("histogram bounds")?),
        acked: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        last_report_ns: AtomicU64::new(0),
        first_error: Mutex::new(None),
        timeline: spec.timeline.then(|| Mutex::new(Vec::new())),
    };
    let producer: ThreadedProducer<DeliveryCtx> = config.create_with_context(ctx).context("create producer")?;
    // Connect and learn the partition leaders before the clock starts.
    producer
        .client()
        .fetch_metadata(Some(&spec.topic), Duration::from_secs(10))
        .context("producer metadata")?;

    let values = payloads(spec.value_size);
    let ctx = producer.context();
    let start_ns = ctx.now_ns();
    let start = Instant::now();
    let deadline = start + spec.duration;
    let mut sent: u64 = 0;
    let mut rejected: u64 = 0;
    let mut first_reject: Option<String> = None;

    'outer: loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        // How many messages may be sent now: paced mode sends what is due (bursts of ~1 ms),
        // max-rate mode sends in chunks so the deadline is checked regularly.
        let due = match spec.rate {
            Some(rate) => ((now - start).as_secs_f64() * rate) as u64,
            None => sent + 256,
        };
        if due <= sent {
            thread::sleep(Duration::from_micros(500));
            continue;
        }
        while sent < due {
            let value = &values[(sent as usize) & (PAYLOAD_POOL - 1)];
            let mut record = BaseRecord::<(), [u8], usize>::with_opaque_to(&spec.topic, ctx.now_ns() as usize)
                .payload(value.as_slice());
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        // The client's queue is full: wait for deliveries to drain it.
                        if Instant::now() >= deadline {
                            break 'outer;
                        }
                        thread::sleep(Duration::from_micros(200));
                        record = back;
                        record.delivery_opaque = ctx.now_ns() as usize;
                    }
                    Err((err, _)) => {
                        rejected += 1;
                        first_reject.get_or_insert_with(|| err.to_string());
                        break;
                    }
                }
            }
            sent += 1;
        }
    }

    // Wait for every outstanding delivery report.
    if let Err(e) = producer.flush(spec.flush_timeout) {
        eprintln!(
            "warning: flush: {e} ({} messages still in flight)",
            producer.in_flight_count()
        );
    }
    let acked = ctx.acked.load(Ordering::Relaxed);
    let failed = ctx.failed.load(Ordering::Relaxed);
    let last_ns = ctx.last_report_ns.load(Ordering::Relaxed).max(start_ns);
    let latency_us = ctx.latency_us.lock().expect("histogram lock").clone();
    let first_error = ctx.first_error.lock().expect("error lock").clone().or(first_reject);
    // Re-base the timeline on the phase start (t0 is taken before connecting).
    let skip = (start_ns / 1_000_000_000) as usize;
    let timeline = ctx
        .timeline
        .as_ref()
        .map(|t| t.lock().expect("timeline lock").iter().skip(skip).copied().collect())
        .unwrap_or_default();
    Ok(ProduceResult {
        sent,
        acked,
        errors: failed + rejected,
        first_error,
        secs: (last_ns - start_ns) as f64 / 1e9,
        latency_us,
        timeline,
    })
}
