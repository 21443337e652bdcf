//! Change capture over a long history: what the daemon reads to publish a commit made by
//! another process (the `sqlite3` shell), and to start, must not grow with the number of past
//! orders. Counted in database pages the writer's connection looked at (SQLite's own
//! page-cache counters), never timed.

mod day_id;
mod history;
mod shell;
mod triggers;
mod upgrade;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kaffediem::clock::SystemClock;
use kaffediem::store::{ChangeFeed, ChangeSet, Collection, Op, RecordCtx, Store, StoreOptions};
use rusqlite::Connection;

/// The store on `path`, in process, as the daemon opens it.
fn open(path: &Path) -> (Store, ChangeFeed) {
    Store::open(
        StoreOptions {
            path: path.to_owned(),
            readers: 1,
            records: RecordCtx {
                public_url: "http://kaffe.test:4000".into(),
            },
        },
        Arc::new(SystemClock),
    )
    .expect("open store")
}

/// A separate connection, as the `sqlite3` shell would open it.
fn shell(path: &Path) -> Connection {
    let conn = Connection::open(path).expect("shell");
    conn.busy_timeout(Duration::from_secs(5)).expect("busy");
    conn
}

/// The next change set (a generous deadline, no timing asserted).
async fn next(feed: &mut ChangeFeed) -> Arc<ChangeSet> {
    tokio::time::timeout(Duration::from_secs(30), feed.recv())
        .await
        .expect("a change set within 30 s")
        .expect("feed open")
}

/// What a change set changed: (collection, id, op) per change.
fn ops(set: &ChangeSet) -> Vec<(Collection, i64, Op)> {
    set.changes
        .iter()
        .map(|c| (c.collection, c.id, c.op))
        .collect()
}
