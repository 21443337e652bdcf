//! Integration tests: one binary, one module per area (fast to link, shared support code).

#[path = "../support/phoenix_test_app.rs"]
mod phoenix_test_app;

mod api;
mod auth;
mod auth_waits;
mod authz;
mod body_fuzz;
mod capture;
mod channels;
mod checkpoints;
mod clock;
mod database;
mod demo_history;
mod disk;
mod durability;
mod edge;
mod foreign_race;
mod group_commit;
mod hostile;
mod hostile_load;
mod import;
mod lists;
mod litestream;
mod log_level;
mod ops;
mod order_query;
mod package;
mod phoenix;
mod phoenix_fuzz_regressions;
mod phoenix_longpoll;
mod phoenix_transport;
mod privacy;
mod snapshots;
mod store;
mod support;
mod tidy;
mod watch_wakeups;
