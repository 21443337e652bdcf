//! Everything SQLite: opening and migrating the file (`schema.sql`), the single writer thread,
//! the reader pool, change capture (triggers write every collection row change, ours or
//! another process's, into a change log the writer drains as it publishes; `PRAGMA
//! data_version` says when another process committed), typed records with their JSON shapes,
//! the menu tree, users and sessions ([`accounts`], [`sessions`]), and the demo data.
//!
//! Architecture invariant: only the writer thread writes. Every commit it makes or observes
//! becomes exactly one [`ChangeSet`] with the next `seq`, published in commit order on the
//! change feed; publishing never blocks the writer.
//!
//! Reading a snapshot with its `seq` (a join reply): the rows and the `seq` must come from one
//! read transaction, or a commit in between is counted twice or lost. Use
//! [`Readers::snapshot`] (or [`snapshot`] on a connection you hold), which runs
//! `BEGIN DEFERRED`, [`current_seq`], your reads, `COMMIT`:
//!
//! ```ignore
//! let (seq, items) = store.readers
//!     .snapshot(move |conn| records::list(conn, Collection::Item, &ctx))
//!     .await?;
//! ```
//!
//! Every change set on the feed with `seq` above that number is news to the snapshot; those at
//! or below it are already in it.

// CONTRACT FILE: the types and signatures below are the interface the rest of the crate codes
// against. Implementations live in the submodules.

pub mod accounts;
mod capture;
pub mod change_log;
pub mod demo;
pub mod epoch;
pub mod images;
pub mod lock;
pub mod menu;
pub mod orders;
pub mod readers;
pub mod records;
pub mod replication;
pub mod schema;
pub mod sessions;
pub mod stamps;
pub mod write;
pub mod writer;

use std::path::PathBuf;
use std::sync::Arc;

pub use readers::{snapshot, ReadCounts, Readers, Stop};
pub use records::{Collection, OrderQuery, RecordCtx};
pub use writer::Writer;

use crate::clock::Clock;

/// How a row changed in one committed transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Create,
    Update,
    Delete,
}

/// One changed row of a collection, as published after commit.
#[derive(Debug, Clone)]
pub struct Change {
    pub collection: Collection,
    pub id: i64,
    pub op: Op,
    /// The record read back after the commit, in the same JSON shape as snapshots and the HTTP
    /// API, with an order's facts typed; `None` for a delete.
    pub record: Option<Arc<records::Record>>,
    /// For an order that was there before the commit: the facts screens filter on as they
    /// were (`inserted_at`, `customer_id`, `state`, `day_id`), from the change log. The
    /// fan-out compares them with the new record to tell a screen that an order left or
    /// entered its filter, without keeping every order in memory. `None` for a created order
    /// and for the other collections.
    pub before: Option<orders::OrderFacts>,
}

/// Everything one committed transaction changed. Row changes are collapsed per row (create
/// then update → create; create then delete → nothing). A record can change without its row
/// changing: when the commit renames, deletes or creates a category, every item of it that
/// the commit did not touch itself follows as an `Update` (its `category_name` is new).
#[derive(Debug, Clone)]
pub struct ChangeSet {
    /// This commit's number in the persistent, gap-free sequence of commits.
    pub seq: u64,
    pub changes: Vec<Change>,
    /// The whole menu (`{"tree", "indexes"}`), rebuilt once after this commit, when the commit
    /// touched `category`, `item`, `customization_key` or `customization_value`. Kept as JSON
    /// text, ready to broadcast; dereferences to the parsed tree.
    pub menu: Option<Arc<menu::Menu>>,
    /// The café day this commit opens: the midnight roll-over is a commit of its own
    /// ([`Writer::open_day`]), so the `delete`s it sends to `"today"` screens carry a `seq` of
    /// their own and a resuming join finds them in the change log.
    pub new_day: Option<jiff::civil::Date>,
}

/// The receiving end of the change feed: one [`ChangeSet`] per commit, in `seq` order.
pub type ChangeFeed = tokio::sync::mpsc::UnboundedReceiver<Arc<ChangeSet>>;

/// Errors of the storage layer.
#[derive(Debug)]
pub enum StoreError {
    /// SQLite refused or failed.
    Sqlite(rusqlite::Error),
    /// The database cannot take writes right now (read-only file, disk full, busy).
    Unavailable(String),
    /// The file was written by a newer Kaffediem (its `user_version` is above ours).
    TooNew { found: i64, supported: i64 },
    /// The writer thread is gone (shutting down).
    Closed,
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Sqlite(e) => write!(f, "database error: {e}"),
            StoreError::Unavailable(why) => write!(f, "database unavailable: {why}"),
            StoreError::TooNew { found, supported } => write!(
                f,
                "database schema version {found} is newer than this kaffediem supports ({supported}); upgrade kaffediem"
            ),
            StoreError::Closed => write!(f, "the database writer has shut down"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<rusqlite::Error> for StoreError {
    /// Errors that [`cannot_write`] names become [`StoreError::Unavailable`], so that a job's
    /// `?` reports them as such; everything else stays [`StoreError::Sqlite`].
    fn from(e: rusqlite::Error) -> Self {
        if cannot_write(&e) {
            StoreError::Unavailable(e.to_string())
        } else {
            StoreError::Sqlite(e)
        }
    }
}

/// The one rule for "the database cannot take writes right now" (a 503 and a warning, not a
/// 500 and a bug report): the file is read-only, the disk is full, an I/O error, another
/// process holds the lock past the busy timeout — or the file (or its `-wal`, `-shm`, a temp
/// file) cannot be opened or is not ours to write (`CANTOPEN`, `PERM`). Those last two are
/// the Pi's state too (a remounted card, a changed owner, a full temp dir) and pass when it is
/// mended, so they are no more a bug than a full disk.
pub fn cannot_write(e: &rusqlite::Error) -> bool {
    use rusqlite::ErrorCode::*;
    matches!(
        e.sqlite_error_code(),
        Some(
            ReadOnly
                | DiskFull
                | SystemIoFailure
                | CannotOpen
                | PermissionDenied
                | DatabaseBusy
                | DatabaseLocked
        )
    )
}

/// How to open the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub path: PathBuf,
    /// Reader connections of the quick lane (writes' reads, `/healthz`, the watchdog,
    /// logins, single records); the bulk lane has its own [`SNAPSHOT_READERS`].
    pub readers: usize,
    /// How records render item image URLs.
    pub records: RecordCtx,
}

/// Snapshots and HTTP lists read at once, at most (the bulk lane's connections). Building
/// one is CPU work (rows to JSON); on a 2-core Pi more of them side by side would only split
/// the cores that orders and screens need, while the rest wait their turn in the lane's queue
/// (or are skipped there when their socket has gone).
pub const SNAPSHOT_READERS: usize = 2;

/// The open database: the writer handle and the two reader lanes.
#[derive(Clone)]
pub struct Store {
    pub writer: Writer,
    /// The quick lane: short reads that writes, `/healthz`, the watchdog and logins wait for.
    /// Never used for snapshots or lists, so a flood of joins cannot queue in front of them.
    pub readers: Readers,
    /// The bulk lane: join snapshots and HTTP lists, [`SNAPSHOT_READERS`] at a time.
    pub snapshots: Readers,
    /// Bulk reads one at a time per client (HTTP lists and joins alike), so one client holds
    /// at most one of the bulk lane's connections.
    pub bulk_turns: Arc<readers::Turns>,
}

impl Store {
    /// Open (creating and migrating if needed) the database, start the writer thread and the
    /// foreign-write watcher, and return the change feed.
    ///
    /// The clock is not read by the store today: timestamps a writer sets itself come from the
    /// caller's clock (stored with [`records::format_timestamp`]); column defaults use SQLite's.
    pub fn open(
        options: StoreOptions,
        _clock: Arc<dyn Clock>,
    ) -> Result<(Store, ChangeFeed), StoreError> {
        let path = options.path;
        let mut conn = schema::open_connection(&path)?;
        schema::migrate(&mut conn, &path)?;
        let (feed, changes) = tokio::sync::mpsc::unbounded_channel();
        // Beside a running daemon (`kaffediem user`, `demo`) the daemon publishes our commits
        // from the change log; taking them out of it here would hide them from its screens.
        let publishes = !lock::held_elsewhere(&path);
        let writer = Writer::start(conn, &path, options.records, feed, publishes)?;
        let readers = Readers::open(&path, options.readers)?;
        let snapshots = Readers::open(&path, SNAPSHOT_READERS)?;
        Ok((
            Store {
                writer,
                readers,
                snapshots,
                bulk_turns: readers::Turns::new(),
            },
            changes,
        ))
    }

    /// Read `f` and the `seq` it reflects in one read transaction, such that the change feed
    /// after that `seq` holds every later change to what `f` read.
    ///
    /// A reader sees another process's commit as soon as it lands, but the writer publishes it
    /// only when it notices (within a second). A snapshot taken in between would show rows
    /// whose change set is still to come, and the two could disagree (an update folded into a
    /// create, say). So when the collections hold unpublished rows, the writer is asked to
    /// publish them first and the snapshot is read again.
    pub async fn snapshot<T, E, F>(&self, f: F) -> Result<(u64, T), E>
    where
        F: Fn(&rusqlite::Connection) -> Result<T, E> + Send + Sync + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        self.snapshot_until(Stop::never(), move |conn, _| f(conn))
            .await
    }

    /// [`Store::snapshot`] on the bulk lane for a reader that may go away: skipped when
    /// `stop` is requested before a connection is free; `f` checks `stop` between chunks.
    pub async fn snapshot_until<T, E, F>(&self, stop: Stop, f: F) -> Result<(u64, T), E>
    where
        F: Fn(&rusqlite::Connection, &Stop) -> Result<T, E> + Send + Sync + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let f = Arc::new(f);
        let mut attempts = 0;
        loop {
            let read = Arc::clone(&f);
            let (clean, seq, value) = self
                .snapshots
                .read_until(stop.clone(), move |conn, stop| {
                    readers::snapshot(conn, |c| {
                        let clean = all_published(c)?;
                        read(c, stop).map(|value| (clean, value))
                    })
                    .map(|(seq, (clean, value))| (clean, seq, value))
                })
                .await?;
            attempts += 1;
            if clean || attempts >= 3 {
                return Ok((seq, value));
            }
            self.writer.publish_foreign_now().await?;
        }
    }

    /// Finish the writes in flight, stop the writer, checkpoint the WAL with TRUNCATE.
    pub async fn shutdown(&self) -> Result<(), StoreError> {
        self.writer.shutdown().await
    }
}

/// Whether every collection row change in the database has been published (no commit by
/// another process is waiting in the change log to be noticed).
pub fn all_published(conn: &rusqlite::Connection) -> Result<bool, StoreError> {
    Ok(!change_log::pending(conn)?)
}

/// The last committed `seq` as seen by `conn` (read it in the same transaction as a snapshot,
/// see [`snapshot`]).
pub fn current_seq(conn: &rusqlite::Connection) -> Result<u64, StoreError> {
    use rusqlite::OptionalExtension;
    let seq: Option<i64> = conn
        .query_row(
            "SELECT value FROM kaffediem_meta WHERE key = 'seq'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    Ok(seq.unwrap_or(0).max(0) as u64)
}

/// Database pages `conn` has looked at since it was opened (its page-cache hits and misses,
/// as SQLite counts them): the work of a read or a write, counted rather than timed, for the
/// tests that hold what serving today costs independent of the history.
pub fn pages_looked_at(conn: &rusqlite::Connection) -> u64 {
    use rusqlite::ffi;
    let mut total = 0u64;
    for op in [
        ffi::SQLITE_DBSTATUS_CACHE_HIT,
        ffi::SQLITE_DBSTATUS_CACHE_MISS,
    ] {
        let (mut current, mut highwater) = (0, 0);
        // SAFETY: `conn` is open for the whole call and not used elsewhere meanwhile (we
        // hold `&` of it on this thread); `sqlite3_db_status` only writes the two integers.
        let rc =
            unsafe { ffi::sqlite3_db_status(conn.handle(), op, &mut current, &mut highwater, 0) };
        if rc == ffi::SQLITE_OK {
            total += u64::try_from(current).unwrap_or(0);
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite(code: std::ffi::c_int) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None)
    }

    /// One rule, whichever way an error reaches `StoreError`: `?` in a job, or opening and
    /// committing with the file named (`schema::unavailable`).
    #[test]
    fn a_file_that_cannot_be_opened_or_written_is_unavailable_however_it_is_met() {
        use rusqlite::ffi::*;
        let path = std::path::Path::new("/srv/kaffediem.db");
        for code in [
            SQLITE_READONLY,
            SQLITE_FULL,
            SQLITE_IOERR,
            SQLITE_CANTOPEN,
            SQLITE_PERM,
            SQLITE_BUSY,
            SQLITE_LOCKED,
        ] {
            assert!(
                matches!(StoreError::from(sqlite(code)), StoreError::Unavailable(_)),
                "code {code} through ?"
            );
            assert!(
                matches!(
                    schema::unavailable(path, sqlite(code)),
                    StoreError::Unavailable(why) if why.contains("/srv/kaffediem.db")
                ),
                "code {code} with the path"
            );
        }
        for code in [SQLITE_CONSTRAINT, SQLITE_MISMATCH, SQLITE_CORRUPT] {
            assert!(matches!(
                StoreError::from(sqlite(code)),
                StoreError::Sqlite(_)
            ));
            assert!(matches!(
                schema::unavailable(path, sqlite(code)),
                StoreError::Sqlite(_)
            ));
        }
    }
}
