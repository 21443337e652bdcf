//! The reader connection pool: a few `query_only` connections, each used by one blocking task
//! at a time, so that snapshots and HTTP reads never wait for the writer (WAL).
//!
//! A snapshot and the `seq` it reflects must come from ONE read transaction, or a commit in
//! between makes the client believe it has changes it has not. Use [`snapshot`] (or
//! [`Readers::snapshot`]); by hand it is `BEGIN DEFERRED`, [`super::current_seq`], the reads,
//! `COMMIT`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use tokio::sync::Semaphore;

use super::{current_seq, schema, StoreError};

/// A pool of read-only connections. Cheap to clone.
#[derive(Clone)]
pub struct Readers {
    inner: Arc<Pool>,
}

struct Pool {
    /// Idle connections; a task takes one and puts it back.
    idle: Mutex<Vec<Connection>>,
    /// One permit per connection, so a task that holds a permit always finds one idle.
    permits: Semaphore,
    /// For reopening a connection that a panicking reader left behind.
    path: PathBuf,
}

impl Readers {
    /// Open `count` (at least one) reader connections on `path`.
    pub fn open(path: &Path, count: usize) -> Result<Readers, StoreError> {
        let count = count.max(1);
        let idle = (0..count)
            .map(|_| open_reader(path))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Readers {
            inner: Arc::new(Pool {
                idle: Mutex::new(idle),
                permits: Semaphore::new(count),
                path: path.to_owned(),
            }),
        })
    }

    /// Run `f` on a reader connection off the async threads.
    pub async fn read<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&rusqlite::Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let _permit = self
            .inner
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::Closed)?;
        let pool = self.inner.clone();
        let task = tokio::task::spawn_blocking(move || {
            let conn = pool.take();
            let conn = match conn {
                Some(c) => c,
                None => open_reader(&pool.path)?,
            };
            let result = f(&conn);
            // A reader that returned early inside a transaction must not pin an old snapshot.
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            pool.put(conn);
            result
        });
        match task.await {
            Ok(result) => result,
            // The closure panicked: its connection is gone; the next read opens a new one.
            Err(_) => Err(StoreError::Unavailable("a read panicked".into()).into()),
        }
    }

    /// Run `f` inside one read transaction and return it with the `seq` it reflects.
    pub async fn snapshot<T, E, F>(&self, f: F) -> Result<(u64, T), E>
    where
        F: FnOnce(&rusqlite::Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        self.read(move |conn| snapshot(conn, f)).await
    }
}

impl Pool {
    fn take(&self) -> Option<Connection> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()
    }

    fn put(&self, conn: Connection) {
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(conn);
    }
}

/// Run `f` in one read transaction on `conn` and return the `seq` its reads reflect.
pub fn snapshot<T, E, F>(conn: &Connection, f: F) -> Result<(u64, T), E>
where
    F: FnOnce(&Connection) -> Result<T, E>,
    E: From<StoreError>,
{
    conn.execute_batch("BEGIN DEFERRED")
        .map_err(|e| E::from(e.into()))?;
    // The first read starts the read transaction: seq and rows come from the same instant.
    let result = current_seq(conn)
        .map_err(E::from)
        .and_then(|seq| f(conn).map(|t| (seq, t)));
    let end = conn.execute_batch(if result.is_ok() { "COMMIT" } else { "ROLLBACK" });
    let value = result?;
    end.map_err(|e| E::from(e.into()))?;
    Ok(value)
}

fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = schema::open_connection(path)?;
    conn.pragma_update(None, "query_only", true)?;
    Ok(conn)
}
