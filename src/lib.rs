//! Kaffediem: the backend of a café ordering system.
//!
//! One daemon keeps every collection in one SQLite file and pushes every committed change to
//! the café's screens over the Phoenix Channels protocol. The rooms, in the order a write flows
//! through them (see `ARCHITECTURE.md`):
//!
//! - [`http`]: the hyper service: JSON API, health, the WebSocket upgrade.
//! - [`store`]: everything SQLite: schema, the single writer thread, readers, change capture,
//!   records and their JSON shapes, the menu tree.
//! - [`channels`]: Kaffediem's topics (`collection:*`, `notifications:*`), per-subscriber
//!   filters and the fan-out of change sets.
//! - [`phoenix`]: the wire protocol only; knows nothing about cafés or SQLite.
//! - [`accounts`]: users' Argon2id password hashes and the rules for accounts (their rows,
//!   and sessions, are in `store`; cookies and socket tokens in `http::auth`).
//! - [`secret`]: random tokens, constant-time comparison, the admin token: one home for each.
//! - [`config`]: `kaffediem.toml`, environment overrides, validation.
//! - [`import`]: `kaffediem import kaffebase`: a café's data from the old backend's file.
//! - [`net`]: client addresses and trusted proxies, shared by `config` and `http`.
//! - [`server`]: wires the rooms together for `kaffediem serve`.
//! - [`ops`]: the appliance around it: backup, check, systemd, metrics, config reload, logs.
//! - [`watch`]: the file watcher the config reload and the writer share.

pub mod accounts;
pub mod channels;
pub mod clock;
pub mod config;
pub mod http;
pub mod import;
pub mod net;
pub mod ops;
pub mod phoenix;
pub mod secret;
pub mod server;
pub mod store;
pub mod watch;
