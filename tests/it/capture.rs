//! Change capture over a long history: what the daemon reads to publish a commit made by
//! another process (the `sqlite3` shell), and to start, must not grow with the number of past
//! orders. Counted in database pages the writer's connection looked at (SQLite's own
//! page-cache counters), never timed.

mod history;
mod shell;
mod triggers;
mod upgrade;
