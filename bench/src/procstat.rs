//! Process resource sampling from `/proc` (Linux): resident memory and CPU time of the broker
//! under test and of this benchmark client, measured over one phase.

use std::fs;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// `USER_HZ`: the unit of `utime`/`stime` in `/proc/<pid>/stat`. The kernel ABI fixes it at 100
/// on every Linux architecture this bench runs on (it is independent of `CONFIG_HZ`).
const CLOCK_TICKS_PER_SEC: f64 = 100.0;

/// How often the peak-RSS sampler reads `/proc/<pid>/status`.
const RSS_SAMPLE_INTERVAL: Duration = Duration::from_millis(100);

/// `VmRSS` of a process in KiB; `who` is a PID or `"self"`. `None` if the process is gone.
pub(crate) fn rss_kib(who: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{who}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// User + system CPU seconds consumed so far by a process (all its threads).
pub(crate) fn cpu_secs(who: &str) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{who}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces: split after the
    // last ')'. The remainder starts at field 3 (state); utime is field 14, stime field 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / CLOCK_TICKS_PER_SEC)
}

/// What one phase cost, in broker and client resources.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PhaseUsage {
    /// Broker CPU time over the phase as a percentage of one core (200 % = both of 2 cores).
    pub(crate) broker_cpu_pct: Option<f64>,
    /// Highest broker RSS seen during the phase (sampled every 100 ms), KiB.
    pub(crate) broker_rss_peak_kib: Option<u64>,
    /// Broker RSS at the end of the phase, KiB.
    pub(crate) broker_rss_end_kib: Option<u64>,
    /// This benchmark process's CPU (all threads, librdkafka's included), % of one core.
    pub(crate) client_cpu_pct: Option<f64>,
}

/// Measures one phase: CPU deltas between `start` and `finish`, peak RSS in between.
pub(crate) struct PhaseMeter {
    broker: Option<String>,
    started: Instant,
    broker_cpu0: Option<f64>,
    client_cpu0: Option<f64>,
    peak_kib: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    sampler: Option<JoinHandle<()>>,
}

impl PhaseMeter {
    pub(crate) fn start(broker_pid: Option<u32>) -> Self {
        let broker = broker_pid.map(|p| p.to_string());
        let peak_kib = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let sampler = broker.clone().map(|pid| {
            let peak = Arc::clone(&peak_kib);
            let stop = Arc::clone(&stop);
            thread::Builder::new()
                .name("rss-sampler".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        if let Some(kib) = rss_kib(&pid) {
                            peak.fetch_max(kib, Ordering::Relaxed);
                        }
                        thread::sleep(RSS_SAMPLE_INTERVAL);
                    }
                })
                .expect("spawn rss sampler thread")
        });
        Self {
            broker_cpu0: broker.as_deref().and_then(cpu_secs),
            client_cpu0: cpu_secs("self"),
            broker,
            started: Instant::now(),
            peak_kib,
            stop,
            sampler,
        }
    }

    pub(crate) fn finish(mut self) -> PhaseUsage {
        let wall_secs = self.started.elapsed().as_secs_f64();
        let pct = |before: Option<f64>, after: Option<f64>| match (before, after) {
            (Some(b), Some(a)) if wall_secs > 0.0 => Some((a - b) / wall_secs * 100.0),
            _ => None,
        };
        let broker_cpu_pct = pct(self.broker_cpu0, self.broker.as_deref().and_then(cpu_secs));
        let client_cpu_pct = pct(self.client_cpu0, cpu_secs("self"));
        let broker_rss_end_kib = self.broker.as_deref().and_then(rss_kib);
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.sampler.take() {
            let _ = handle.join();
        }
        let peak = self
            .peak_kib
            .load(Ordering::Relaxed)
            .max(broker_rss_end_kib.unwrap_or(0));
        PhaseUsage {
            broker_cpu_pct,
            broker_rss_peak_kib: (self.broker.is_some() && peak > 0).then_some(peak),
            broker_rss_end_kib,
            client_cpu_pct,
        }
    }
}
