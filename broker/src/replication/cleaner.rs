//! The log cleaner thread: compacts partitions whose topic has `cleanup.policy=compact`. One
//! dedicated OS thread (never a tokio worker), throttled to `cleaner.io_max_bytes_per_second`;
//! each round cleans the partition with the highest dirty ratio among those due
//! (`fjord_storage::Log::cleanable_ratio`), and sleeps `cleaner.backoff` when none is.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use fjord_storage::{CleanerConfig, Throttler, clean_log};
use parking_lot::{Condvar, Mutex};

use crate::broker::Broker;

/// Partitions whose pass failed wait this many backoffs before the next attempt.
const FAILURE_BACKOFFS: u32 = 10;

/// Handle of the running cleaner thread.
#[derive(Debug)]
pub struct LogCleaner {
    stop: Arc<AtomicBool>,
    wake: Arc<(Mutex<()>, Condvar)>,
    handle: Mutex<Option<JoinHandle<()>>>,
}

impl LogCleaner {
    /// Starts the cleaner thread unless `cleaner.enable` is off.
    pub fn start(broker: Arc<Broker>) -> std::io::Result<Option<LogCleaner>> {
        if !broker.config.cleaner.enable {
            tracing::info!("log cleaner disabled");
            return Ok(None);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let wake = Arc::new((Mutex::new(()), Condvar::new()));
        let handle = std::thread::Builder::new().name("fjord-cleaner".into()).spawn({
            let (stop, wake) = (stop.clone(), wake.clone());
            move || run(&broker, &stop, &wake)
        })?;
        Ok(Some(LogCleaner {
            stop,
            wake,
            handle: Mutex::new(Some(handle)),
        }))
    }

    /// Stops the thread (an in-flight pass stops at its next throttle check, leaving the
    /// segments it has not swapped in untouched) and waits for it.
    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::Release);
        {
            let _guard = self.wake.0.lock();
            self.wake.1.notify_all();
        }
        if let Some(handle) = self.handle.lock().take()
            && handle.join().is_err()
        {
            tracing::error!("log cleaner thread panicked");
        }
    }
}

fn run(broker: &Broker, stop: &Arc<AtomicBool>, wake: &(Mutex<()>, Condvar)) {
    let cfg = &broker.config.cleaner;
    let rate = Some(cfg.io_max_bytes_per_second.as_u64()).filter(|r| *r > 0);
    let throttler = Throttler::new(rate, stop.clone());
    let config = CleanerConfig {
        dedupe_buffer_bytes: cfg.dedupe_buffer_size.as_u64() as usize,
    };
    let mut failed: HashMap<(String, i32), Instant> = HashMap::new();
    tracing::info!(io_max_bytes_per_second = rate, backoff = ?cfg.backoff, "log cleaner started");
    while !stop.load(Ordering::Acquire) {
        let now = crate::clock::now_ms();
        failed.retain(|_, until| *until > Instant::now());
        let mut best = None;
        for p in broker.replicas.all() {
            if failed.contains_key(&(p.topic.clone(), p.index)) {
                continue;
            }
            let ratio = {
                let mut log = p.log.lock();
                if !log.config().cleanup_policy.compact {
                    continue;
                }
                log.cleanable_ratio(now)
            };
            match ratio {
                Ok(Some(r)) if best.as_ref().is_none_or(|(b, _)| r > *b) => best = Some((r, p)),
                Ok(_) => {}
                Err(error) => {
                    tracing::error!(topic = %p.topic, partition = p.index, %error, "cannot plan log cleaning");
                    failed.insert(
                        (p.topic.clone(), p.index),
                        Instant::now() + cfg.backoff * FAILURE_BACKOFFS,
                    );
                }
            }
        }
        let Some((_, p)) = best else {
            let mut guard = wake.0.lock();
            if !stop.load(Ordering::Acquire) {
                wake.1.wait_for(&mut guard, cfg.backoff);
            }
            continue;
        };
        let started = Instant::now();
        match clean_log(&p.log, now, &config, &throttler) {
            Ok(Some(stats)) => {
                broker
                    .metrics
                    .cleaner_pass(&stats, started.elapsed(), crate::clock::now_ms());
            }
            Ok(None) => {}
            Err(fjord_storage::Error::CleaningAborted(reason)) => {
                tracing::info!(topic = %p.topic, partition = p.index, %reason, "log cleaning pass stopped");
                // The log changed under the pass: try again after a backoff.
                failed.insert((p.topic.clone(), p.index), Instant::now() + cfg.backoff);
            }
            Err(error) => {
                broker.metrics.cleaner_failed();
                tracing::error!(topic = %p.topic, partition = p.index, %error, "log cleaning failed");
                failed.insert(
                    (p.topic.clone(), p.index),
                    Instant::now() + cfg.backoff * FAILURE_BACKOFFS,
                );
            }
        }
    }
    tracing::info!("log cleaner stopped");
}
