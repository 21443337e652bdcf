//! The clock the daemon reads "now" from. Injectable so that tests can cross local midnight
//! (the `"today"` order filter, `day_id` numbering) without waiting for one.

use std::sync::{Arc, Mutex};

use jiff::{SignedDuration, Timestamp};

/// A source of the current time.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// The system clock shifted by an adjustable offset: time keeps flowing, and a test can jump
/// it forward (to just before midnight, say) while the daemon runs.
#[derive(Debug, Default)]
pub struct OffsetClock {
    offset: Mutex<SignedDuration>,
}

impl OffsetClock {
    pub fn new() -> Arc<Self> {
        Arc::new(OffsetClock::default())
    }

    /// Make `now()` return `to` at this instant, flowing on from there.
    pub fn set(&self, to: Timestamp) {
        let offset = to.duration_since(Timestamp::now());
        *self.offset.lock().unwrap_or_else(|e| e.into_inner()) = offset;
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> Timestamp {
        let offset = *self.offset.lock().unwrap_or_else(|e| e.into_inner());
        Timestamp::now()
            .checked_add(offset)
            .unwrap_or_else(|_| Timestamp::now())
    }
}

/// The café's clock: the system clock, but never earlier than the newest time the daemon
/// has already stamped or found in the database.
///
/// A Raspberry Pi has no real-time clock: it boots with a stale time until NTP syncs, and
/// NTP may step the clock back. Stamping by such a clock would put an order before orders
/// already stored, move the café's "today" back a day (a `"today"` screen would then drop
/// the order at the next midnight) and number it again from 101. So while the system clock
/// is behind, the newest known time is used instead (time stands still until the clock
/// catches up), one warning is logged per episode, and `/metrics` shows how far behind.
pub struct CafeClock {
    system: Arc<dyn Clock>,
    /// The newest instant handed out or found stored; `now()` never returns less.
    newest: Mutex<Timestamp>,
    /// How many readings were held at `newest` because the system clock was behind it.
    held: std::sync::atomic::AtomicU64,
    /// Whether the current "clock is behind" episode was already logged (once, not per order).
    warned: std::sync::atomic::AtomicBool,
}

impl CafeClock {
    /// `newest_stored`: the newest `inserted_at`/`updated_at` in the database, if any.
    pub fn new(system: Arc<dyn Clock>, newest_stored: Option<Timestamp>) -> Arc<CafeClock> {
        Arc::new(CafeClock {
            system,
            newest: Mutex::new(newest_stored.unwrap_or(Timestamp::MIN)),
            held: std::sync::atomic::AtomicU64::new(0),
            warned: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// How far the system clock is behind the newest known time now, in whole seconds
    /// (0 when it is not behind).
    pub fn behind_seconds(&self) -> u64 {
        let newest = *self.newest.lock().unwrap_or_else(|e| e.into_inner());
        let system = self.system.now();
        u64::try_from(newest.duration_since(system).as_secs()).unwrap_or(0)
    }

    /// How many readings were held at the newest known time so far.
    pub fn held_total(&self) -> u64 {
        self.held.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Clock for CafeClock {
    fn now(&self) -> Timestamp {
        use std::sync::atomic::Ordering;
        let mut newest = self.newest.lock().unwrap_or_else(|e| e.into_inner());
        // Read under the lock: two threads reading first and locking second could see each
        // other's later reading and call a microsecond's difference "behind".
        let system = self.system.now();
        if system >= *newest {
            *newest = system;
            drop(newest);
            if self.warned.swap(false, Ordering::Relaxed) {
                tracing::info!(now = %system, "the system clock caught up with the stored data");
            }
            return system;
        }
        let held = *newest;
        drop(newest);
        self.held.fetch_add(1, Ordering::Relaxed);
        if !self.warned.swap(true, Ordering::Relaxed) {
            let behind = held.duration_since(system);
            tracing::warn!(
                clock = %system,
                newest = %held,
                behind_seconds = behind.as_secs(),
                "the system clock is behind the newest time in the database (no time sync yet, \
                 or it was set back); stamping with the newest known time until it catches up"
            );
        }
        held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Mutex<Timestamp>);

    impl Clock for Fixed {
        fn now(&self) -> Timestamp {
            *self.0.lock().unwrap()
        }
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn never_earlier_than_the_newest_known_time() {
        let system = Arc::new(Fixed(Mutex::new(at("2026-12-08T00:30:00Z"))));
        let clock = CafeClock::new(system.clone(), Some(at("2026-12-08T00:40:00Z")));
        assert_eq!(clock.now(), at("2026-12-08T00:40:00Z"));
        assert_eq!(clock.behind_seconds(), 600);
        assert_eq!(clock.held_total(), 1);
        *system.0.lock().unwrap() = at("2026-12-08T00:50:00Z");
        assert_eq!(clock.now(), at("2026-12-08T00:50:00Z"));
        assert_eq!(clock.behind_seconds(), 0);
        // Set back after handing out 00:50: held there, not at the stored stamp.
        *system.0.lock().unwrap() = at("2026-12-07T23:50:00Z");
        for _ in 0..1000 {
            assert_eq!(clock.now(), at("2026-12-08T00:50:00Z"));
        }
        assert_eq!(clock.held_total(), 1001);
        assert_eq!(clock.behind_seconds(), 3600);
    }

    #[test]
    fn threads_reading_at_once_never_see_the_clock_behind() {
        let clock = CafeClock::new(Arc::new(SystemClock), None);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..50_000 {
                        clock.now();
                    }
                });
            }
        });
        assert_eq!(clock.held_total(), 0);
    }

    #[test]
    fn an_empty_database_holds_nothing() {
        let system = Arc::new(Fixed(Mutex::new(at("1970-01-02T00:00:00Z"))));
        let clock = CafeClock::new(system, None);
        assert_eq!(clock.now(), at("1970-01-02T00:00:00Z"));
        assert_eq!(clock.held_total(), 0);
    }
}
