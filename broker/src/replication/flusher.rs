//! Group commit: one dedicated thread fsyncs every dirty partition in rounds. An acks=all
//! producer waits for the first round that starts after its append; one round serves every
//! partition and connection waiting at that moment. Data written with acks=0/1 is fsynced by the
//! periodic rounds (broker flush interval, topic flush.ms / flush.messages).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use tokio::sync::watch;

use super::partition::Partition;
use crate::metrics::Metrics;

/// Above this many dirty files in one round, one `syncfs` of the data volume is cheaper than
/// an fdatasync per file (each fdatasync is a journal commit on ext4).
const SYNCFS_THRESHOLD: usize = 32;
/// fdatasyncs issued at once in one round. Concurrent fdatasyncs on ext4/xfs join the same
/// journal commit, so a round costs about one fsync instead of one per partition.
const PARALLEL_SYNCS: usize = 8;
/// How often the flusher looks for data older than its flush deadline.
const TICK: Duration = Duration::from_millis(50);

#[derive(Debug, Default)]
struct State {
    dirty: Vec<Arc<Partition>>,
    /// Rounds started and the highest round anybody waits for.
    started: u64,
    wanted: u64,
    shutdown: bool,
}

/// Handle to the flusher thread.
#[derive(Debug)]
pub struct Flusher {
    state: Mutex<State>,
    wake: Condvar,
    completed: watch::Sender<u64>,
    flush_interval: Duration,
    data_dir: std::path::PathBuf,
    metrics: Arc<Metrics>,
}

impl Flusher {
    /// Starts the flusher thread.
    pub fn start(flush_interval: Duration, data_dir: std::path::PathBuf, metrics: Arc<Metrics>) -> Arc<Flusher> {
        let flusher = Arc::new(Flusher {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            completed: watch::channel(0).0,
            flush_interval,
            data_dir,
            metrics,
        });
        let worker = flusher.clone();
        std::thread::Builder::new()
            .name("fjord-flusher".into())
            .spawn(move || worker.run())
            .expect("spawning the flusher thread");
        flusher
    }

    /// Records that `partition` has unflushed data. Call after the append, outside its log lock.
    pub fn mark_dirty(&self, partition: &Arc<Partition>) {
        let urgent = {
            let log = partition.log.lock();
            partition
                .flush_messages
                .lock()
                .is_some_and(|n| log.unflushed_messages() >= n)
        };
        if partition.mark_dirty() {
            self.state.lock().dirty.push(partition.clone());
        }
        if urgent {
            let mut state = self.state.lock();
            state.wanted = state.wanted.max(state.started + 1);
            self.wake.notify_one();
        }
    }

    /// Waits until everything appended before this call is fsynced.
    pub async fn wait_durable(&self) {
        let target = {
            let mut state = self.state.lock();
            let target = state.started + 1;
            state.wanted = state.wanted.max(target);
            target
        };
        self.wake.notify_one();
        let mut completed = self.completed.subscribe();
        // An error means the flusher is gone (shutdown), which flushes everything on its way out.
        let _ = completed.wait_for(|done| *done >= target).await;
    }

    /// Flushes everything and stops the thread (used by graceful shutdown).
    pub async fn shutdown(&self) {
        self.wait_durable().await;
        self.state.lock().shutdown = true;
        self.wake.notify_one();
    }

    fn run(self: Arc<Self>) {
        let mut last_periodic = Instant::now();
        loop {
            let (round, dirty) = {
                let mut state = self.state.lock();
                loop {
                    if state.shutdown {
                        return;
                    }
                    if state.wanted > state.started {
                        break;
                    }
                    if !state.dirty.is_empty() && self.has_overdue(&state.dirty, &mut last_periodic) {
                        break;
                    }
                    self.wake.wait_for(&mut state, TICK);
                }
                state.started += 1;
                // Clear the dirty flags before syncing: an append racing with this round re-marks
                // its partition and is caught by the next round.
                let dirty = std::mem::take(&mut state.dirty);
                for p in &dirty {
                    p.dirty.store(false, Ordering::Release);
                }
                (state.started, dirty)
            };
            self.flush_round(&dirty);
            self.completed.send_replace(round);
        }
    }

    /// True when the broker flush interval passed, or a topic's flush.ms deadline is due.
    fn has_overdue(&self, dirty: &[Arc<Partition>], last_periodic: &mut Instant) -> bool {
        if last_periodic.elapsed() >= self.flush_interval {
            *last_periodic = Instant::now();
            return true;
        }
        let now_ms = crate::clock::now_ms();
        dirty.iter().any(|p| {
            let Some(flush_ms) = *p.flush_ms.lock() else {
                return false;
            };
            p.log
                .lock()
                .oldest_unflushed_append_ms()
                .is_some_and(|t| now_ms - t >= flush_ms as i64)
        })
    }

    fn flush_round(&self, dirty: &[Arc<Partition>]) {
        let tickets: Vec<_> = dirty
            .iter()
            .filter_map(|p| p.log.lock().flush_ticket().map(|t| (p, t)))
            .collect();
        if tickets.is_empty() {
            return;
        }
        let started = Instant::now();
        let synced = if tickets.len() > SYNCFS_THRESHOLD {
            self.syncfs()
        } else {
            sync_in_parallel(&tickets)
        };
        self.metrics.observe_fsync(started.elapsed(), tickets.len());
        if !synced || fault::fsync_fails() {
            // After a failed fsync the kernel may have dropped the dirty pages and cleared the
            // error, so a retry that succeeds proves nothing ("fsyncgate"). Kafka treats it as a
            // failed log dir and, with no other dir, halts. Do the same before any waiter is
            // released: nothing that was not durable is ever acknowledged, and the next start
            // recovers the logs from their recovery points.
            tracing::error!(
                partitions = tickets.len(),
                "fsync failed: halting the broker so that no unflushed write is acknowledged"
            );
            std::process::exit(FSYNC_FAILED_EXIT_CODE);
        }
        for (p, ticket) in tickets {
            p.log.lock().mark_flushed(ticket.up_to());
        }
    }

    #[allow(clippy::unused_self)]
    fn syncfs(&self) -> bool {
        let result =
            std::fs::File::open(&self.data_dir).and_then(|dir| rustix::fs::syncfs(&dir).map_err(std::io::Error::from));
        if let Err(error) = &result {
            tracing::error!(data_dir = %self.data_dir.display(), %error, "syncfs failed");
        }
        result.is_ok()
    }
}

/// The exit code of a broker halted by a failed fsync.
pub const FSYNC_FAILED_EXIT_CODE: i32 = 74; // EX_IOERR

/// Fault injection for the durability tests, compiled into debug builds only: with
/// `FJORD_FAULT_FSYNC_FAIL_IF_EXISTS=<path>`, every flush round fails while `<path>` exists.
mod fault {
    #[cfg(debug_assertions)]
    pub(super) fn fsync_fails() -> bool {
        std::env::var_os("FJORD_FAULT_FSYNC_FAIL_IF_EXISTS").is_some_and(|path| std::path::Path::new(&path).exists())
    }

    #[cfg(not(debug_assertions))]
    pub(super) fn fsync_fails() -> bool {
        false
    }
}

/// fdatasyncs every ticket, up to [`PARALLEL_SYNCS`] at a time; true if all succeeded.
fn sync_in_parallel(tickets: &[(&Arc<Partition>, fjord_storage::FlushTicket)]) -> bool {
    let sync_one = |(p, ticket): &(&Arc<Partition>, fjord_storage::FlushTicket)| match ticket.sync() {
        Ok(()) => true,
        Err(error) => {
            tracing::error!(topic = %p.topic, partition = p.index, %error, "fsync failed");
            false
        }
    };
    if tickets.len() == 1 {
        return sync_one(&tickets[0]);
    }
    let per_thread = tickets.len().div_ceil(PARALLEL_SYNCS);
    std::thread::scope(|scope| {
        let workers: Vec<_> = tickets
            .chunks(per_thread)
            // Count failures instead of `all()`: every ticket must be synced even after one fails.
            .map(|chunk| scope.spawn(move || chunk.iter().map(sync_one).filter(|ok| !ok).count() == 0))
            .collect();
        // Join every worker before answering.
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or(false))
            .filter(|ok| !ok)
            .count()
            == 0
    })
}
