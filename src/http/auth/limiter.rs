//! Failed-login counting per client address and per email (SPEC 6): a fixed one-minute window
//! per key that opens at the key's first failure. Memory is bounded: expired windows are
//! pruned, and past [`MAX_KEYS`] the oldest window is dropped to make room.

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

/// Failed logins per key.
#[derive(Debug, Default)]
pub struct Limiter {
    windows: Mutex<HashMap<Key, Window>>,
}

impl Limiter {
    /// `Some(wait)` when any of `keys` already has `limit` failures in its current window:
    /// the attempt is refused, and `wait` is when the earliest blocking window closes.
    pub fn blocked(&self, keys: &[Key], limit: u32, now: Instant) -> Option<Duration> {
        let windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        keys.iter()
            .filter_map(|key| windows.get(key))
            .filter(|w| now.duration_since(w.opened) < WINDOW && w.failures >= limit)
            .map(|w| WINDOW.saturating_sub(now.duration_since(w.opened)))
            .max()
    }

    /// Count one failure against each of `keys`.
    pub fn fail(&self, keys: &[Key], now: Instant) {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
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
            assert_eq!(limiter.blocked(&keys, 3, t0), None);
            limiter.fail(&keys, t0);
        }
        let wait = limiter.blocked(&keys, 3, t0 + Duration::from_secs(10));
        assert_eq!(wait, Some(Duration::from_secs(50)));
        assert_eq!(limiter.blocked(&keys, 3, t0 + WINDOW), None);
    }

    #[test]
    fn address_and_email_count_separately() {
        let limiter = Limiter::default();
        let t0 = Instant::now();
        let addr = Key::Addr([10, 0, 0, 1].into());
        for i in 0..3 {
            limiter.fail(&[addr.clone(), email(&format!("{i}@x"))], t0);
        }
        assert!(limiter
            .blocked(&[addr.clone(), email("new@x")], 3, t0)
            .is_some());
        assert!(limiter
            .blocked(&[Key::Addr([10, 0, 0, 2].into()), email("0@x")], 3, t0)
            .is_none());
    }

    #[test]
    fn memory_stays_bounded() {
        let limiter = Limiter::default();
        let t0 = Instant::now();
        for i in 0..(MAX_KEYS + 50) {
            limiter.fail(&[email(&format!("{i}@x"))], t0);
        }
        assert!(limiter.len() <= MAX_KEYS);
    }

    #[test]
    fn clear_forgets_a_key() {
        let limiter = Limiter::default();
        let t0 = Instant::now();
        limiter.fail(&[email("a@x")], t0);
        limiter.clear(&email("a@x"));
        assert_eq!(limiter.blocked(&[email("a@x")], 1, t0), None);
    }
}
