//! The broker-wide request memory pool (Kafka's `queued.max.request.bytes`): every request frame
//! holds its size from the pool from the moment its body is read until its response is written.
//! A connection whose next request does not fit stops being read (its bytes wait in the kernel)
//! until memory is released, like Kafka's muted channels.
//!
//! Unlike a FIFO semaphore, waiters do not queue behind each other: a small request that fits is
//! admitted while a large one waits, so clients sending ordinary requests keep working while
//! huge frames wait their turn (Kafka's pool behaves the same way). The pool is strict: the bytes
//! held never exceed its capacity (config validation keeps `max_request_size` within it).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::Notify;

#[derive(Debug)]
pub(super) struct MemoryPool {
    capacity: usize,
    available: AtomicUsize,
    released: Notify,
    used: Gauge,
}

/// Bytes taken from the pool; given back when dropped.
#[derive(Debug)]
pub(super) struct Reservation {
    pool: Arc<MemoryPool>,
    size: usize,
}

impl MemoryPool {
    pub(super) fn new(capacity: usize, used: Gauge) -> Arc<MemoryPool> {
        Arc::new(MemoryPool {
            capacity,
            available: AtomicUsize::new(capacity),
            released: Notify::new(),
            used,
        })
    }

    /// Takes `size` bytes if they are free now.
    pub(super) fn try_reserve(self: &Arc<Self>, size: usize) -> Option<Reservation> {
        let size = size.min(self.capacity);
        self.available
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |free| free.checked_sub(size))
            .ok()?;
        self.used.inc_by(size as i64);
        Some(Reservation {
            pool: self.clone(),
            size,
        })
    }

    /// Takes `size` bytes, waiting until that much is free. A request larger than the whole
    /// pool (impossible with a validated config) takes all of it.
    pub(super) async fn reserve(self: &Arc<Self>, size: usize) -> Reservation {
        loop {
            // Register for the wake-up before checking, so a release in between is not missed.
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            if let Some(reservation) = self.try_reserve(size) {
                return reservation;
            }
            released.await;
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.pool.available.fetch_add(self.size, Ordering::AcqRel);
        self.pool.used.dec_by(self.size as i64);
        self.pool.released.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn small_requests_pass_a_large_waiter_and_release_wakes_it() {
        let pool = MemoryPool::new(100, Gauge::default());
        let big = pool.reserve(80).await;
        // A second large request does not fit and waits...
        let waiting = tokio::spawn({
            let pool = pool.clone();
            async move { pool.reserve(60).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        // ...while a small one that fits is admitted at once (no FIFO queue).
        let small = tokio::time::timeout(Duration::from_secs(1), pool.reserve(20))
            .await
            .expect("small request admitted");
        assert!(pool.try_reserve(1).is_none(), "the pool is strict");
        drop(big);
        let second = tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("woken on release")
            .expect("task");
        assert_eq!(pool.used.get(), 80);
        drop((small, second));
        assert_eq!(pool.used.get(), 0);
        assert_eq!(pool.available.load(Ordering::Acquire), 100);
    }
}
