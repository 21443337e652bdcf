//! Whether the daemon can serve the café right now: one check that `/healthz` answers with
//! and the systemd watchdog pings on, so the two never disagree.
//!
//! It runs on the store's quick reader lane, which snapshots and lists never use: a flood of
//! joins (or a few huge lists) can make screens wait for their snapshots, but it cannot make
//! the daemon look dead to systemd and get it restarted in the middle of service.

use std::time::Duration;

use crate::store::{current_seq, Readers, StoreError, Writer};

/// The writer thread may go this long without coming round its loop before the daemon counts
/// as unhealthy. A write that waits for another process's lock (someone's `sqlite3` session)
/// gives up after 5 s (the busy timeout) and a batch commits in milliseconds, so only a stuck
/// writer gets near this; the check never probes the writer with a write of its own, which
/// would queue behind that same lock.
pub const WRITER_STALL_LIMIT: Duration = Duration::from_secs(20);

/// Why the daemon is not healthy, worded for the log.
#[derive(Debug)]
pub enum Unhealthy {
    /// The database file did not answer a read (or answered with an error).
    Database(StoreError),
    /// The read did not finish within the check's time.
    Slow(Duration),
    /// The writer thread has not come round its loop for this long.
    WriterStuck(Duration),
}

impl std::fmt::Display for Unhealthy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unhealthy::Database(e) => write!(f, "the database did not answer: {e}"),
            Unhealthy::Slow(within) => write!(f, "the database did not answer within {within:?}"),
            Unhealthy::WriterStuck(for_) => {
                write!(f, "the writer thread has been stuck for {for_:?}")
            }
        }
    }
}

/// Healthy when the database file itself answers a read on the quick lane within `within`
/// (`SELECT 1` would answer without the file) and the writer thread keeps coming round its
/// loop (see [`WRITER_STALL_LIMIT`]).
pub async fn check(readers: &Readers, writer: &Writer, within: Duration) -> Result<(), Unhealthy> {
    let read = readers.read(current_seq);
    match tokio::time::timeout(within, read).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(Unhealthy::Database(e)),
        Err(_) => return Err(Unhealthy::Slow(within)),
    }
    let stalled = writer.stalled_for();
    if stalled > WRITER_STALL_LIMIT.max(within) {
        return Err(Unhealthy::WriterStuck(stalled));
    }
    Ok(())
}
