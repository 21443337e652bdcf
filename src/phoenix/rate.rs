//! Join rate limits: a token bucket per socket and one per client address. A join costs one
//! token; a bucket holds at most a minute's worth and refills continuously over a minute, so a
//! client may join a burst of that many at once, then one every 60/n seconds.
//!
//! The per-address buckets live in a table that forgets an address once its bucket is full
//! again (it would behave exactly like a new one), so the table only holds addresses that
//! joined within the last minute, and never more than [`MAX_ADDRESSES`] of those.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use super::per_address::client_key;

const REFILL_PERIOD: Duration = Duration::from_secs(60);
/// Addresses remembered at most; past it (after forgetting the refilled ones) the table starts
/// over, which forgives everyone rather than letting many addresses grow memory.
pub(crate) const MAX_ADDRESSES: usize = 16_384;
/// The table is swept for refilled buckets when it has grown this much since the last sweep.
const SWEEP_EVERY: usize = 1_024;

/// A token bucket of `capacity` tokens refilled over a minute.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    pub(crate) fn full(capacity: u32, now: Instant) -> Bucket {
        Bucket {
            tokens: f64::from(capacity),
            at: now,
        }
    }

    fn refill(&mut self, capacity: u32, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        let rate = f64::from(capacity) / REFILL_PERIOD.as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(f64::from(capacity));
        self.at = now;
    }

    /// Take one token if there is one (the capacity may have changed on reload).
    pub(crate) fn take(&mut self, capacity: u32, now: Instant) -> bool {
        self.refill(capacity, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn is_full(&mut self, capacity: u32, now: Instant) -> bool {
        self.refill(capacity, now);
        self.tokens >= f64::from(capacity)
    }
}

/// The per-address join buckets of an endpoint.
#[derive(Debug, Default)]
pub(crate) struct AddressBuckets {
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    buckets: HashMap<IpAddr, Bucket>,
    /// The table's size after the last sweep.
    swept_at_len: usize,
}

impl AddressBuckets {
    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Take a join token for `ip`'s client.
    pub(crate) fn take(&self, ip: IpAddr, capacity: u32) -> bool {
        let now = Instant::now();
        let mut table = self.lock();
        if table.buckets.len() >= table.swept_at_len + SWEEP_EVERY {
            table.sweep(capacity, now);
        }
        table
            .buckets
            .entry(client_key(ip))
            .or_insert_with(|| Bucket::full(capacity, now))
            .take(capacity, now)
    }

    /// Addresses remembered now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().buckets.len()
    }
}

impl Table {
    fn sweep(&mut self, capacity: u32, now: Instant) {
        self.buckets
            .retain(|_, bucket| !bucket.is_full(capacity, now));
        if self.buckets.len() >= MAX_ADDRESSES {
            tracing::warn!(
                addresses = self.buckets.len(),
                "join rate limits: too many addresses joining at once; forgetting them all"
            );
            self.buckets = HashMap::new();
        }
        self.swept_at_len = self.buckets.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_bucket_allows_a_burst_then_refills_over_a_minute() {
        let mut bucket = Bucket::full(3, Instant::now());
        for _ in 0..3 {
            assert!(bucket.take(3, Instant::now()));
        }
        assert!(!bucket.take(3, Instant::now()));
        tokio::time::advance(Duration::from_secs(20)).await;
        assert!(bucket.take(3, Instant::now()), "one token per 20 s");
        assert!(!bucket.take(3, Instant::now()));
    }

    #[tokio::test(start_paused = true)]
    async fn addresses_are_limited_apart_and_forgotten_once_refilled() {
        let buckets = AddressBuckets::default();
        let a: IpAddr = [10, 0, 0, 1].into();
        assert!(buckets.take(a, 2) && buckets.take(a, 2));
        assert!(!buckets.take(a, 2));
        assert!(buckets.take([10, 0, 0, 2].into(), 2));
        // Many addresses join once each: the table never holds more than the cap, and a
        // minute later every refilled bucket is forgotten at the next sweep.
        for i in 0..100_000u32 {
            buckets.take(IpAddr::from(i.to_be_bytes()), 2);
            assert!(buckets.len() <= MAX_ADDRESSES + SWEEP_EVERY);
        }
        tokio::time::advance(REFILL_PERIOD).await;
        let fresh = 2 * SWEEP_EVERY as u32;
        for i in 0..fresh {
            buckets.take(IpAddr::from([192, 168, (i >> 8) as u8, i as u8]), 2);
        }
        let len = buckets.len();
        assert!(
            len <= fresh as usize,
            "{len}: the refilled buckets were not forgotten"
        );
    }
}
