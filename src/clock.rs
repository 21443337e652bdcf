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
