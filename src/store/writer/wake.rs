//! What wakes the writer besides jobs: the watcher of the database files and the once-a-second
//! tick; and the heartbeat it leaves on every round.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use super::Msg;
use crate::watch::FileWatch;

/// How often the writer looks for foreign commits when nothing else wakes it.
pub(super) const FOREIGN_POLL: Duration = Duration::from_secs(1);

/// How soon after a file event the writer looks again. The events come from the WAL writes;
/// the commit becomes visible only when the other process then updates the shared-memory
/// index, which raises no event, so the check made at the event itself can be too early.
/// (The watch reports a burst of events once, and the rest of it at most
/// [`crate::watch::COALESCE`] later, when the writer looks again too.)
pub(super) const SETTLE: Duration = Duration::from_millis(30);

/// When the writer thread last came round its loop: at least once a second while idle, after
/// every batch while busy. A watchdog can tell a stuck writer from a quiet one by it.
pub(super) struct Pulse {
    epoch: Instant,
    /// Milliseconds since `epoch` at the last round.
    last_ms: std::sync::atomic::AtomicU64,
    /// Database pages the writer's connection has looked at since it opened (page-cache hits
    /// and misses, as SQLite counts them), as of the last round or publication: what tests
    /// read to bound the work a commit costs, whatever the size of the history.
    pages: std::sync::atomic::AtomicU64,
}

impl Pulse {
    pub(super) fn new() -> Pulse {
        Pulse {
            epoch: Instant::now(),
            last_ms: std::sync::atomic::AtomicU64::new(0),
            pages: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub(super) fn beat(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.last_ms.store(now, Ordering::Relaxed);
    }

    /// Record how many pages `conn` (the writer's) has looked at so far.
    pub(super) fn count_pages(&self, conn: &rusqlite::Connection) {
        self.pages
            .store(super::super::pages_looked_at(conn), Ordering::Relaxed);
    }

    pub(super) fn pages(&self) -> u64 {
        self.pages.load(Ordering::Relaxed)
    }

    pub(super) fn since(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last)
    }
}

/// Watch the database's directory and wake the writer when the file or its WAL changes.
/// Without a watcher (an unsupported file system) the once-a-second check still works.
///
/// `pending` is set when a wake-up is queued and cleared by the writer when it takes it, so
/// the queue holds at most one: the daemon's own commits change the WAL too, a few writes per
/// page, and each wake-up taken costs the writer a `PRAGMA data_version`.
pub(super) fn watch(
    path: &Path,
    queue: mpsc::Sender<Msg>,
    pending: Arc<AtomicBool>,
) -> Option<FileWatch> {
    match crate::watch::watch_file(path, &["-wal"], move || {
        if !pending.swap(true, Ordering::AcqRel) {
            let _ = queue.send(Msg::Wake);
        }
    }) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, db = %path.display(), "cannot watch the database directory; checking for outside writes once a second");
            None
        }
    }
}
