//! A small pool of read buffers for the fetch path. Fetches read up to tens of MiB per request;
//! allocating that afresh each time costs page faults (first touch is ~0.7 GiB/s on our
//! machines, and jemalloc purges allocations above 8 MiB eagerly). Pooled buffers are handed out
//! as `Bytes` and come back to the pool when the response that holds them is dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use fjord_storage::ReadPlan;
use parking_lot::Mutex;

/// Buffers larger than this are not pooled (a request for one is served by a plain allocation).
const MAX_POOLED_BUFFER: usize = 64 * 1024 * 1024;

/// Read buffers kept for reuse, bounded in total bytes.
#[derive(Debug)]
pub struct BufferPool {
    free: Mutex<Vec<Vec<u8>>>,
    max_pooled_bytes: usize,
    /// Set by every `take`; cleared by `trim_if_idle`.
    used: AtomicBool,
}

/// A pooled buffer lent out as `Bytes`; returns to the pool on drop.
struct Lent {
    buf: Vec<u8>,
    len: usize,
    pool: Arc<BufferPool>,
}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        self.pool.give_back(std::mem::take(&mut self.buf));
    }
}

impl BufferPool {
    pub fn new(max_pooled_bytes: usize) -> Arc<BufferPool> {
        Arc::new(BufferPool {
            free: Mutex::new(Vec::new()),
            max_pooled_bytes,
            used: AtomicBool::new(false),
        })
    }

    /// Reads `plan` into a pooled buffer.
    pub fn read(self: &Arc<Self>, plan: &ReadPlan) -> fjord_storage::Result<Bytes> {
        let want = plan.len();
        if want == 0 {
            return Ok(Bytes::new());
        }
        if want > MAX_POOLED_BUFFER {
            return plan.read_bytes();
        }
        let mut buf = self.take(want);
        let len = plan.read_into(&mut buf)?;
        Ok(Bytes::from_owner(Lent {
            buf,
            len,
            pool: self.clone(),
        }))
    }

    /// The smallest free buffer that fits, or a new one. Buffers stay fully initialised, so a
    /// reused buffer is never zeroed again.
    fn take(&self, want: usize) -> Vec<u8> {
        self.used.store(true, Ordering::Relaxed);
        let mut free = self.free.lock();
        let best = free
            .iter()
            .enumerate()
            .filter(|(_, b)| b.len() >= want)
            .min_by_key(|(_, b)| b.len())
            .map(|(i, _)| i);
        match best {
            Some(i) => free.swap_remove(i),
            None => {
                drop(free);
                // Round up so that slightly larger later reads can reuse it.
                vec![0u8; want.next_power_of_two().min(MAX_POOLED_BUFFER)]
            }
        }
    }

    fn give_back(&self, buf: Vec<u8>) {
        let mut free = self.free.lock();
        let pooled: usize = free.iter().map(Vec::len).sum();
        if pooled + buf.len() <= self.max_pooled_bytes {
            free.push(buf);
        } else if let Some((i, smallest)) = free.iter().enumerate().min_by_key(|(_, b)| b.len()) {
            // Prefer keeping big buffers: they are the expensive ones to fault in.
            if smallest.len() < buf.len() && pooled - smallest.len() + buf.len() <= self.max_pooled_bytes {
                free.swap_remove(i);
                free.push(buf);
            }
        }
    }

    /// Frees every pooled buffer if none was taken since the previous call, so an idle broker
    /// gives its fetch memory back. Called periodically.
    pub fn trim_if_idle(&self) {
        if !self.used.swap(false, Ordering::Relaxed) {
            self.free.lock().clear();
        }
    }

    /// Bytes currently held for reuse.
    pub fn pooled_bytes(&self) -> usize {
        self.free.lock().iter().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_reuses_returned_buffers_and_stays_bounded() {
        let pool = BufferPool::new(3 * 1024 * 1024);
        let a = pool.take(1_000_000);
        let ptr = a.as_ptr();
        pool.give_back(a);
        let b = pool.take(900_000);
        assert_eq!(b.as_ptr(), ptr, "a fitting free buffer is reused");
        pool.give_back(b);
        pool.give_back(vec![0u8; 2 * 1024 * 1024]);
        pool.give_back(vec![0u8; 2 * 1024 * 1024]);
        assert!(pool.pooled_bytes() <= 3 * 1024 * 1024);
        // Used since the last trim: kept. Idle for a whole period: freed.
        pool.trim_if_idle();
        assert!(pool.pooled_bytes() > 0);
        pool.trim_if_idle();
        assert_eq!(pool.pooled_bytes(), 0);
    }
}
