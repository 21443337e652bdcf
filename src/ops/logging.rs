//! The log subscriber: one line per event on stderr (under journald without a timestamp, as
//! journald adds its own), no colour unless stderr is a terminal, level from `RUST_LOG` or
//! else `log.level` — and that level can be changed while running, by a config reload.
//!
//! The subscriber is process-global, so the handle that changes its level is too.

use std::sync::OnceLock;

use tracing_subscriber::layer::{Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

static LEVEL: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Whether `RUST_LOG` decides the level (it wins over `log.level`, also on reload).
fn env_wins() -> bool {
    std::env::var("RUST_LOG").is_ok_and(|v| !v.is_empty())
}

/// Install the subscriber with `level` (a level or filter directive, as validated by the
/// config) unless `RUST_LOG` is set. Call once, from the binary.
pub fn init(level: &str) {
    use std::io::IsTerminal;
    let filter = if env_wins() {
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level))
    } else {
        EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"))
    };
    let (filter, handle) = reload::Layer::new(filter);
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    // Under systemd (which sets JOURNAL_STREAM) journald stamps every line itself.
    let fmt = if std::env::var_os("JOURNAL_STREAM").is_some() {
        fmt.without_time().boxed()
    } else {
        fmt.boxed()
    };
    if tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .try_init()
        .is_ok()
    {
        let _ = LEVEL.set(handle);
    }
}

/// Change the level to `level` (from a reloaded config). Does nothing when `RUST_LOG` is set
/// or when [`init`] was not called (the daemon runs inside a test).
pub fn set_level(level: &str) {
    let Some(handle) = LEVEL.get() else { return };
    if env_wins() {
        tracing::info!("log.level changed to `{level}`, but RUST_LOG is set and wins");
        return;
    }
    match EnvFilter::try_new(level) {
        Ok(filter) => match handle.reload(filter) {
            Ok(()) => tracing::info!("log level is now `{level}`"),
            Err(e) => tracing::warn!(error = %e, "cannot change the log level"),
        },
        Err(e) => tracing::warn!(error = %e, "log.level `{level}` is not a filter; level kept"),
    }
}
