//! The systemd handshake of a `Type=notify` service: `READY=1` once the port is bound,
//! `WATCHDOG=1` while the daemon is healthy, `STOPPING=1` when shutdown begins. Every call is
//! a no-op when `NOTIFY_SOCKET` is not set (a shell, the tests, another supervisor).

use std::time::Duration;

use sd_notify::NotifyState;
use tokio::task::JoinHandle;

use crate::ops::health;
use crate::store::{Readers, Writer};

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

/// Ping the watchdog every `watchdog_interval()` for as long as the runtime schedules this
/// task and the daemon passes [`health::check`] within the interval: the database file
/// answers on the quick reader lane (never queued behind snapshots or lists) and the writer
/// thread keeps coming round its loop. A ping proves more than "the process exists": a
/// runtime wedged by a blocking call, a database that no longer answers or a writer that
/// hangs stops the pings and systemd restarts the service (`Restart=on-failure`); a flood of
/// joins does not. Returns `None` when the watchdog is off.
pub fn spawn_watchdog(readers: Readers, writer: Writer) -> Option<JoinHandle<()>> {
    let every = watchdog_interval()?;
    tracing::info!("systemd watchdog on: pinging every {every:?}");
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match health::check(&readers, &writer, every).await {
                Ok(()) => send(&[NotifyState::Watchdog]),
                Err(why) => tracing::warn!("no watchdog ping: {why}"),
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
