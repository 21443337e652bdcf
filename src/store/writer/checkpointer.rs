//! WAL checkpoints off the acknowledgement path. SQLite's automatic checkpoint runs inside the
//! commit that crosses `wal_autocheckpoint` pages: that commit's answer waits for two more
//! fsyncs (the WAL, then the database file) and the page copies, a few times a minute under
//! load — on an SD card the slowest acknowledgements of all (issue 14). So the writer's
//! connection reports the WAL's length after each commit (a WAL hook, which also replaces
//! SQLite's automatic checkpoints) and this thread, on its own connection, runs a PASSIVE
//! checkpoint once the WAL holds [`WAL_PAGES`] pages. PASSIVE never waits for a lock, so the
//! writer's commits go on meanwhile; the next commit after a complete one starts the WAL over.
//!
//! A checkpoint is complete only if no commit landed while it ran (its last step is an fsync
//! of the database file), so under unbroken load it never is: the thread tries again every
//! [`RETRY`] (each time copying only what came since) and completes in the first lull, which
//! a café has between orders. Should the load never let up, the writer itself checkpoints
//! the rest once the WAL holds [`WAL_LIMIT_PAGES`], after answering the batch that got it
//! there: the next batch then waits for that checkpoint's two fsyncs, once in that many
//! pages (SQLite's own automatic checkpoint does so every 1 000 pages, copying them all).
//!
//! With `database.external_replication` it does nothing: Litestream checkpoints
//! (`replication.rs`). A writer beside a running daemon (`kaffediem user`) has none: its few
//! commits keep SQLite's automatic checkpoints.

use std::cell::Cell;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use super::super::{schema, StoreError};
use super::WriterCounts;

/// WAL pages (of 4 KiB) after which the checkpointer copies them into the database: 16 MiB.
/// Larger than SQLite's default (1 000) because the first commit after the WAL starts over
/// syncs the new WAL header too (two fsyncs instead of one): with ~8 pages per order that is
/// one acknowledgement in ~500 instead of one in ~120.
pub const WAL_PAGES: i64 = 4000;

/// WAL pages at which the writer checkpoints what the checkpointer could not (unbroken load).
pub const WAL_LIMIT_PAGES: i64 = 3 * WAL_PAGES;

/// How soon the checkpointer tries again after a checkpoint that commits kept from completing.
const RETRY: Duration = Duration::from_millis(250);

thread_local! {
    /// WAL pages after the last commit on this thread's connection (the writer's), as the WAL
    /// hook reports them.
    static WAL_FRAMES: Cell<i64> = const { Cell::new(0) };
}

fn wal_hook(_: &rusqlite::hooks::Wal, pages: std::os::raw::c_int) -> rusqlite::Result<()> {
    WAL_FRAMES.with(|f| f.set(i64::from(pages)));
    Ok(())
}

/// The WAL's length in pages after the last commit made on this thread (0 before any).
pub(super) fn wal_frames() -> i64 {
    WAL_FRAMES.with(Cell::get)
}

/// Make `conn` (the writer's) report its WAL length after each commit instead of
/// checkpointing in its commits, and keep the WAL file's size sane after a checkpoint.
pub(super) fn take_over(conn: &Connection) -> Result<(), StoreError> {
    conn.wal_hook(Some(wal_hook));
    let page: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    // After a restart the WAL file is cut back to twice what the checkpointer lets it hold
    // (a reader that kept it from being checkpointed can make it grow far past that).
    let limit = 2 * WAL_PAGES * page.max(512);
    conn.query_row(&format!("PRAGMA journal_size_limit = {limit}"), [], |_| {
        Ok(())
    })?;
    Ok(())
}

/// The checkpointer's thread and how to tell it about commits.
pub(super) struct Checkpointer {
    tell: Option<mpsc::Sender<i64>>,
    thread: Option<JoinHandle<()>>,
    /// The WAL length last told (0: not since it started over).
    told_at: i64,
    /// The WAL length at which the writer last checkpointed itself (0: likewise).
    forced_at: i64,
    /// Held through each checkpoint: the writer's own waits for the thread's to finish
    /// rather than fail (PASSIVE gives up at once when another is running).
    turn: Arc<Mutex<()>>,
}

impl Checkpointer {
    /// Start the thread on its own connection to `path`.
    pub(super) fn start(
        path: &Path,
        counts: Arc<WriterCounts>,
        replicated: Arc<AtomicBool>,
    ) -> Result<Checkpointer, StoreError> {
        let conn = schema::open_connection(path)?;
        let (tell, told) = mpsc::channel();
        let path = path.to_owned();
        let turn = Arc::new(Mutex::new(()));
        let theirs = Arc::clone(&turn);
        let thread = std::thread::Builder::new()
            .name("kaffediem-checkpointer".into())
            .spawn(move || run(&conn, &path, &told, &counts, &replicated, &theirs))
            .map_err(|e| StoreError::Unavailable(format!("cannot start the checkpointer: {e}")))?;
        Ok(Checkpointer {
            tell: Some(tell),
            thread: Some(thread),
            told_at: 0,
            forced_at: 0,
            turn,
        })
    }

    /// After a commit: the WAL now holds `pages` pages. The thread is told when they reach
    /// [`WAL_PAGES`], and again each time they grow a quarter more without starting over.
    /// `true`: the writer is to checkpoint itself now ([`WAL_LIMIT_PAGES`]; once it has,
    /// again only a quarter of [`WAL_PAGES`] later, should a reader keep that one from
    /// completing: see [`Checkpointer::checkpointed`]).
    pub(super) fn committed(&mut self, pages: i64) -> bool {
        if pages < self.told_at.max(self.forced_at) {
            // Started over.
            self.told_at = 0;
            self.forced_at = 0;
        }
        if due(pages, self.told_at, WAL_PAGES) {
            if let Some(tell) = &self.tell {
                self.told_at = pages;
                let _ = tell.send(pages);
            }
        }
        due(pages, self.forced_at, WAL_LIMIT_PAGES)
    }

    /// Checkpoint on `conn` (the writer's, between two batches) once the thread's own
    /// checkpoint, if one is running, has finished; the WAL held `pages` pages. `None`: a
    /// checkpoint of another process was running (tried again after the next commit).
    pub(super) fn checkpoint_here(
        &mut self,
        conn: &Connection,
        pages: i64,
    ) -> rusqlite::Result<Option<(i64, i64)>> {
        let _turn = self.turn.lock().unwrap_or_else(|e| e.into_inner());
        let done = passive(conn);
        if !matches!(done, Ok(None)) {
            self.forced_at = pages;
        }
        done
    }

    /// Let a running checkpoint finish and stop the thread (before the shutdown's own).
    pub(super) fn stop(&mut self) {
        self.tell = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Whether a WAL of `pages` pages calls for a checkpoint: at `from` pages, then each time it
/// grows a quarter of [`WAL_PAGES`] past the last one (`last`, 0 when none since it started
/// over).
fn due(pages: i64, last: i64, from: i64) -> bool {
    if last == 0 {
        pages >= from
    } else {
        pages >= last + WAL_PAGES / 4
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(
    conn: &Connection,
    path: &Path,
    told: &mpsc::Receiver<i64>,
    counts: &WriterCounts,
    replicated: &AtomicBool,
    turn: &Mutex<()>,
) {
    // The last checkpoint left frames behind (commits landed while it ran).
    let mut behind = false;
    loop {
        let message = if behind {
            told.recv_timeout(RETRY)
        } else {
            told.recv()
                .map_err(|_| mpsc::RecvTimeoutError::Disconnected)
        };
        match message {
            Ok(_) | Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        }
        // Told twice while checkpointing: once more is enough.
        while told.try_recv().is_ok() {}
        if replicated.load(Ordering::SeqCst) {
            behind = false;
            continue;
        }
        let done = {
            let _turn = turn.lock().unwrap_or_else(|e| e.into_inner());
            passive(conn)
        };
        match done {
            Ok(None) => {} // Another process's checkpoint was running.
            Ok(Some((log, done))) => {
                counts.checkpoints.fetch_add(1, Ordering::Relaxed);
                behind = done < log;
                tracing::debug!(log, done, "checkpointed the WAL");
            }
            Err(e) => {
                behind = false;
                tracing::warn!(
                    error = %e,
                    "{}: cannot checkpoint the WAL; trying again as it grows",
                    path.display()
                );
            }
        }
    }
}

/// A PASSIVE checkpoint on `conn`: the WAL's frames and how many of them are now in the
/// database file, or `None` when another checkpoint was running. Waits for no lock.
pub(super) fn passive(conn: &Connection) -> rusqlite::Result<Option<(i64, i64)>> {
    let (busy, log, done): (i64, i64, i64) =
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    Ok((busy == 0 && log >= 0).then_some((log, done)))
}
