//! A byte-rate limiter shared by all uploads (the configurable upload bandwidth cap).

use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

/// Paces callers so that, together, they pass at most `bytes_per_second`.
#[derive(Debug)]
pub struct RateLimiter {
    bytes_per_second: u64,
    /// When the bytes granted so far will have drained at the configured rate.
    next_free: Mutex<Option<Instant>>,
}

impl RateLimiter {
    /// `bytes_per_second == 0` means unlimited.
    pub fn new(bytes_per_second: u64) -> RateLimiter {
        RateLimiter {
            bytes_per_second,
            next_free: Mutex::new(None),
        }
    }

    /// Waits until `bytes` may pass.
    pub async fn acquire(&self, bytes: u64) {
        if self.bytes_per_second == 0 {
            return;
        }
        let cost = Duration::from_secs_f64(bytes as f64 / self.bytes_per_second as f64);
        let start = {
            let mut next = self.next_free.lock();
            let now = Instant::now();
            let start = next.filter(|t| *t > now).unwrap_or(now);
            *next = Some(start + cost);
            start
        };
        tokio::time::sleep_until(start).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn limiter_paces_to_the_configured_rate() {
        let limiter = RateLimiter::new(1000);
        let t0 = Instant::now();
        for _ in 0..5 {
            limiter.acquire(1000).await;
        }
        // The first grant is immediate; four more seconds of budget follow.
        assert_eq!(t0.elapsed().as_secs(), 4);
        let unlimited = RateLimiter::new(0);
        let t1 = Instant::now();
        unlimited.acquire(u64::MAX).await;
        assert_eq!(t1.elapsed(), Duration::ZERO);
    }
}
