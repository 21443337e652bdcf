//! Login-attempt counting per client address and per email (SPEC 6): a fixed one-minute window
//! per key that opens at the key's first attempt. An attempt is charged before its password
//! is checked (so a thousand parallel attempts cannot all pass the check of an empty window)
//! and refunded when the login succeeds or was never checked. Memory is bounded: expired
//! windows are pruned, and past [`MAX_KEYS`] the oldest window is dropped to make room.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The window failures are counted in.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Most keys remembered at once (a few hundred bytes each).
pub const MAX_KEYS: usize = 10_000;

/// What failures are counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    Addr(IpAddr),
    /// Lowercased, as emails compare case-insensitively.
    Email(String),
}

#[derive(Debug, Clone, Copy)]
struct Window {
    opened: Instant,
    failures: u32,
}

/// Login attempts (charged, not yet refunded) per key.
#[derive(Debug, Default)]
pub struct Limiter {
    windows: Mutex<HashMap<Key, Window>>,
}

impl Limiter {
    /// Charge one attempt against each of `keys`, unless any of them already has `limit`
    /// attempts in its current window: then `Err(wait)`, nothing is charged, and `wait` is
    /// when the latest blocking window closes. Checking and charging happen under one lock, so
    /// parallel attempts see each other.
    pub fn charge(&self, keys: &[Key], limit: u32, now: Instant) -> Result<(), Duration> {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let wait = keys
            .iter()
            .filter_map(|key| windows.get(key))
            .filter(|w| now.duration_since(w.opened) < WINDOW && w.failures >= limit)
            .map(|w| WINDOW.saturating_sub(now.duration_since(w.opened)))
            .max();
        if let Some(wait) = wait {
            return Err(wait);
        }
        for key in keys {
            if !windows.contains_key(key) && windows.len() >= MAX_KEYS {
                make_room(&mut windows, now);
            }
            let window = windows.entry(key.clone()).or_insert(Window {
                opened: now,
                failures: 0,
            });
            if now.duration_since(window.opened) >= WINDOW {
                *window = Window {
                    opened: now,
                    failures: 0,
                };
            }
            window.failures = window.failures.saturating_add(1);
        }
        Ok(())
    }

    /// Give back an attempt charged against `key` (a login that succeeded, or one refused
    /// before its password was checked).
    pub fn refund(&self, key: &Key) {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(window) = windows.get_mut(key) {
            window.failures = window.failures.saturating_sub(1);
        }
    }

    /// Forget `key` (a successful login clears its email's count).
    pub fn clear(&self, key: &Key) {
        self.windows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.windows.lock().unwrap().len()
    }
}

fn make_room(windows: &mut HashMap<Key, Window>, now: Instant) {
    windows.retain(|_, w| now.duration_since(w.opened) < WINDOW);
    if windows.len() >= MAX_KEYS {
        if let Some(oldest) = windows
            .iter()
            .min_by_key(|(_, w)| w.opened)
            .map(|(k, _)| k.clone())
        {
            windows.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email(e: &str) -> Key {
        Key::Email(e.into())
    }

    #[test]
    fn blocks_after_limit_failures_until_the_window_closes() {
        let limiter = Limiter::default();
        let t0 = Instant::now();
        let keys = [email("a@x")];
        for _ in 0..3 {
            assert_eq!(limiter.charge(&keys, 3, t0), Ok(()));
        }
        let wait = limiter.charge(&keys, 3, t0 + Duration::from_secs(10));
        assert_eq!(wait, Err(Duration::from_secs(50)));
        assert_eq!(limiter.charge(&keys, 3, t0 + WINDOW), Ok(()));
    }

    #[test]
    fn address_and_email_count_separately() {
        let limiter = Limiter::default();
        let t0 = Instant::now();
        let addr = Key::Addr([10, 0, 0, 1].into());
        for i in 0..3 {
            assert!(limiter
                .charge(&[addr.clone(), email(&format!("{i}@x"))], 3, t0)
                .is_ok());
        }
        assert!(limiter
            .charge(&[addr.clone(), email("new@x")], 3, t0)
            .is_err());
        // A refused attempt charged nothing: new@x has a clean window.
        assert!(limiter.charge(&[email("new@x")], 1, t0).is_ok());
        assert!(limiter
            .charge(&[Key::Addr([10, 0, 0, 2].into()), email("0@x")], 3, t0)
            .is_ok());
    }

    #[test]
    fn memory_stays_bounded() {
        let limiter = Limiter::default();
        let t0 = Instant::now();
        for i in 0..(MAX_KEYS + 50) {
            let _ = limiter.charge(&[email(&format!("{i}@x"))], 1, t0);
        }
        assert!(limiter.len() <= MAX_KEYS);
    }

    #[test]
    fn clear_forgets_a_key() {
        let limiter = Limiter::default();
        let t0 = Instant::now();
        assert!(limiter.charge(&[email("a@x")], 1, t0).is_ok());
        limiter.clear(&email("a@x"));
        assert_eq!(limiter.charge(&[email("a@x")], 1, t0), Ok(()));
    }

    #[test]
    fn a_refund_gives_one_attempt_back() {
        let limiter = Limiter::default();
        let t0 = Instant::now();
        let keys = [Key::Addr([10, 0, 0, 1].into())];
        assert!(limiter.charge(&keys, 2, t0).is_ok());
        assert!(limiter.charge(&keys, 2, t0).is_ok());
        assert!(limiter.charge(&keys, 2, t0).is_err());
        limiter.refund(&keys[0]);
        assert!(limiter.charge(&keys, 2, t0).is_ok());
    }

    #[test]
    fn a_million_attempts_in_one_window_pass_only_the_limit() {
        let limiter = Limiter::default();
        let t0 = Instant::now();
        let keys = [Key::Addr([10, 0, 0, 1].into()), email("a@x")];
        let passed = (0..1_000_000)
            .filter(|_| limiter.charge(&keys, 10, t0).is_ok())
            .count();
        assert_eq!(passed, 10);
    }
}
