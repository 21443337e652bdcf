//! The appliance around the daemon (SPEC 8, 9): what an operator runs or watches on the Pi.
//! `kaffediem backup` and `kaffediem check` ([`backup`], [`check`]), the systemd handshake
//! ([`systemd`]), `/metrics` ([`metrics`]), configuration hot reload ([`reload`]), the log
//! subscriber whose level that reload can change ([`logging`]), giving the heap back after
//! a burst ([`memory`]) and the health check `/healthz` and the watchdog share ([`health`]).
//!
//! Architecture invariant: nothing here writes to the database. Backups and checks read the
//! file through their own SQLite connections, as any other process may (SPEC 7); the daemon's
//! state is observed through counters and changed only through the rooms' own setters.

pub mod backup;
pub mod check;
pub mod health;
pub mod logging;
pub mod memory;
pub mod metrics;
pub mod reload;
pub mod systemd;
