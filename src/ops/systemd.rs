//! The systemd handshake of a `Type=notify` service: `READY=1` once the port is bound,
//! `WATCHDOG=1` while the daemon is healthy, `STOPPING=1` when shutdown begins. Every call is
//! a no-op when `NOTIFY_SOCKET` is not set (a shell, the tests, another supervisor).

use std::time::Duration;

use sd_notify::NotifyState;
use tokio::task::JoinHandle;

use crate::store::{Readers, StoreError, Writer};

/// Tell systemd the daemon is serving (the unit's start job completes).
pub fn ready() {
    send(&[NotifyState::Ready, NotifyState::Status("serving")]);
}

/// Tell systemd the daemon is shutting down on purpose (no restart, no watchdog alarm).
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("shutting down")]);
}

/// How often to ping the watchdog: half of `WATCHDOG_USEC`, as sd_watchdog_enabled(3)
/// recommends; `None` when the unit has no `WatchdogSec=` (or it is meant for another pid).
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled()
        .filter(|usec| !usec.is_zero())
        .map(|usec| usec / 2)
}

/// The writer thread may go this long without coming round its loop before the watchdog
/// stops pinging. A write that waits for another process's lock (someone's `sqlite3` session)
/// gives up after 5 s (the busy timeout) and a batch commits in milliseconds, so only a stuck
/// writer gets near this; the watchdog never probes the writer with a write of its own, which
/// would queue behind that same lock.
const WRITER_STALL_LIMIT: Duration = Duration::from_secs(20);

/// Ping the watchdog every `watchdog_interval()` for as long as the runtime schedules this
/// task, the store answers a read within the interval AND the writer thread keeps coming round
/// its loop (see [`WRITER_STALL_LIMIT`]). A ping proves more than "the process exists": a
/// runtime wedged by a blocking call, a reader pool that no longer answers or a writer that
/// hangs stops the pings and systemd restarts the service (`Restart=on-failure`).
/// Returns `None` when the watchdog is off.
pub fn spawn_watchdog(readers: Readers, writer: Writer) -> Option<JoinHandle<()>> {
    let every = watchdog_interval()?;
    tracing::info!("systemd watchdog on: pinging every {every:?}");
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let probe = readers.read(|conn| -> Result<i64, StoreError> {
                Ok(conn.query_row("SELECT 1", [], |r| r.get(0))?)
            });
            let stalled = writer.stalled_for();
            match tokio::time::timeout(every, probe).await {
                Ok(Ok(_)) if stalled > WRITER_STALL_LIMIT.max(every) => {
                    tracing::warn!(
                        "no watchdog ping: the writer thread has been stuck for {stalled:?}"
                    )
                }
                Ok(Ok(_)) => send(&[NotifyState::Watchdog]),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "no watchdog ping: the database did not answer")
                }
                Err(_) => {
                    tracing::warn!("no watchdog ping: the database did not answer within {every:?}")
                }
            }
        }
    }))
}

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        // Losing a notification is not fatal for serving; systemd will say what it missed.
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}
