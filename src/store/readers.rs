//! The reader connection pools: `query_only` connections, each used by one blocking task at a
//! time, so that snapshots and HTTP reads never wait for the writer (WAL).
//!
//! Two lanes, each its own [`Readers`] pool: the quick lane (what writes, `/healthz`, the
//! watchdog, logins and single records need) and the bulk lane (join snapshots and HTTP
//! lists). A flood of joins fills the bulk lane's queue and nothing else: the quick lane's
//! connections are never lent to a snapshot. A bulk read takes a [`Stop`]: it is skipped when
//! its reader has gone before a connection is free, and stops between chunks of rows when the
//! reader goes while it runs.
//!
//! A snapshot and the `seq` it reflects must come from ONE read transaction, or a commit in
//! between makes the client believe it has changes it has not. Use [`snapshot`] (or
//! [`Readers::snapshot`]); by hand it is `BEGIN DEFERRED`, [`super::current_seq`], the reads,
//! `COMMIT`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use tokio::sync::Semaphore;

use super::{current_seq, schema, StoreError};

/// "Whoever asked for this read has gone": checked before a bulk read starts and between its
/// chunks of rows. Cheap to clone.
#[derive(Clone, Default)]
pub struct Stop(Option<Arc<dyn Fn() -> bool + Send + Sync>>);

impl Stop {
    /// A read nobody can call off (start-up, tests).
    pub fn never() -> Stop {
        Stop(None)
    }

    /// A read that stops once `gone()` is true (a socket that closed, a request dropped).
    pub fn when(gone: impl Fn() -> bool + Send + Sync + 'static) -> Stop {
        Stop(Some(Arc::new(gone)))
    }

    /// Whether the read should stop now.
    pub fn requested(&self) -> bool {
        self.0.as_ref().is_some_and(|gone| gone())
    }

    /// `Err` when the read should stop: `?` it between chunks.
    pub fn check(&self) -> Result<(), StoreError> {
        match self.requested() {
            true => Err(StoreError::Unavailable(STOPPED.into())),
            false => Ok(()),
        }
    }
}

/// The error text of a read stopped because its reader went away (never shown to anyone: the
/// reader is gone).
pub const STOPPED: &str = "the reader went away";

/// What one pool did, for `/metrics`.
#[derive(Debug, Default)]
pub struct ReadCounts {
    /// Reads that got a connection and ran (to the end or to a [`Stop`]).
    pub run: AtomicU64,
    /// Reads skipped because their reader had gone before a connection was free.
    pub skipped: AtomicU64,
    /// Reads that began and were stopped between chunks because their reader went away.
    pub stopped: AtomicU64,
}

/// A pool of read-only connections. Cheap to clone.
#[derive(Clone)]
pub struct Readers {
    inner: Arc<Pool>,
}

struct Pool {
    /// Idle connections; a task takes one and puts it back.
    idle: Mutex<Vec<Connection>>,
    /// One permit per connection, so a task that holds a permit always finds one idle. The
    /// permit travels with the blocking task: a caller that gives up while its read runs does
    /// not free a permit whose connection is still busy (the pool would open extra ones).
    permits: Arc<Semaphore>,
    /// For reopening a connection that a panicking reader left behind.
    path: PathBuf,
    /// Reads run and skipped, for `/metrics` and the tests that bound them.
    counts: Arc<ReadCounts>,
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
                permits: Arc::new(Semaphore::new(count)),
                path: path.to_owned(),
                counts: Arc::default(),
            }),
        })
    }

    /// What this pool has done so far.
    pub fn counts(&self) -> Arc<ReadCounts> {
        Arc::clone(&self.inner.counts)
    }

    /// Run `f` on a reader connection off the async threads.
    pub async fn read<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&rusqlite::Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        self.read_until(Stop::never(), move |conn, _| f(conn)).await
    }

    /// Run `f` on a reader connection off the async threads, unless `stop` is requested by
    /// the time a connection is free (then `f` never runs). `f` gets `stop` to check between
    /// its chunks of work.
    pub async fn read_until<T, E, F>(&self, stop: Stop, f: F) -> Result<T, E>
    where
        F: FnOnce(&rusqlite::Connection, &Stop) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let permit = Arc::clone(&self.inner.permits)
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        let pool = self.inner.clone();
        let task = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            if stop.requested() {
                pool.counts.skipped.fetch_add(1, Ordering::Relaxed);
                return Err(StoreError::Unavailable(STOPPED.into()).into());
            }
            pool.counts.run.fetch_add(1, Ordering::Relaxed);
            let conn = match pool.take() {
                Some(c) => c,
                None => open_reader(&pool.path)?,
            };
            let result = f(&conn, &stop);
            if result.is_err() && stop.requested() {
                pool.counts.stopped.fetch_add(1, Ordering::Relaxed);
            }
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

/// Bulk reads one at a time per client: a client's second list or snapshot waits until its
/// first is done, so one client keeps at most one of the bulk lane's connections (one core)
/// busy however many it asks for at once, and other clients are never queued behind its
/// backlog. Keyed by the caller's client key (an IPv4 address or an IPv6 /64); an address
/// with nothing running or waiting has no entry.
#[derive(Debug, Default)]
pub struct Turns {
    queues: Mutex<HashMap<IpAddr, Arc<Semaphore>>>,
}

/// A client's turn on the bulk lane (or its place in line); dropping it lets the next in.
pub struct Turn {
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    queue: Arc<Semaphore>,
    table: Arc<Turns>,
    key: IpAddr,
}

impl Turns {
    pub fn new() -> Arc<Turns> {
        Arc::new(Turns::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Arc<Semaphore>>> {
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wait for `client`'s turn. Dropping the future while it waits gives up the place.
    pub async fn take(self: &Arc<Self>, client: IpAddr) -> Turn {
        let queue = Arc::clone(
            self.lock()
                .entry(client)
                .or_insert_with(|| Arc::new(Semaphore::new(1))),
        );
        // Made before waiting, so a client that leaves while in line cleans up too.
        let mut turn = Turn {
            permit: None,
            queue: Arc::clone(&queue),
            table: Arc::clone(self),
            key: client,
        };
        let wait = queue.acquire_owned();
        // The semaphore is never closed; a failure would only mean "go ahead unqueued".
        turn.permit = wait.await.ok();
        turn
    }

    /// Clients with a read running or waiting.
    pub fn clients(&self) -> usize {
        self.lock().len()
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.permit.take();
        let mut queues = self.table.lock();
        // Only the table and this turn still know the queue: nobody runs or waits.
        if Arc::strong_count(&self.queue) == 2 {
            queues.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod turn_tests {
    use super::*;

    #[tokio::test]
    async fn a_clients_second_read_waits_for_its_first_and_others_do_not() {
        let turns = Turns::new();
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let first = turns.take(a).await;
        let second = tokio::spawn({
            let turns = Arc::clone(&turns);
            async move { turns.take(a).await }
        });
        // Another client goes straight in.
        let other = tokio::time::timeout(std::time::Duration::from_secs(5), turns.take(b))
            .await
            .expect("another client's turn is not queued behind a's");
        tokio::task::yield_now().await;
        assert!(!second.is_finished(), "a's second read waits for its first");
        drop(first);
        let second = second.await.expect("a's second read gets its turn");
        drop((second, other));
        assert_eq!(turns.clients(), 0, "nothing left behind");
    }

    #[tokio::test]
    async fn a_client_that_leaves_the_line_leaves_nothing_behind() {
        let turns = Turns::new();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let first = turns.take(a).await;
        for _ in 0..1000 {
            let waiting = tokio::spawn({
                let turns = Arc::clone(&turns);
                async move { turns.take(a).await }
            });
            tokio::task::yield_now().await;
            waiting.abort();
            let _ = waiting.await;
        }
        drop(first);
        assert_eq!(turns.clients(), 0);
    }
}
