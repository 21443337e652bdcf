//! Opening the database file and bringing it to the schema of `schema.sql`.
//!
//! A fresh file is created from `schema.sql` in one transaction; a file from an older
//! Kaffediem is upgraded by the steps in `UPGRADES`, all in one transaction; a file from a
//! newer Kaffediem is refused.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

use super::{change_log, orders, Collection, StoreError};

/// The schema every fresh database starts from (the repository's `schema.sql`).
pub const SCHEMA_SQL: &str = include_str!("../../schema.sql");

/// The `user_version` this build writes and understands.
pub const SCHEMA_VERSION: i64 = 4;

/// One upgrade step, run inside the upgrade transaction (foreign keys off, see [`migrate`]).
type Upgrade = fn(&Transaction<'_>) -> Result<(), StoreError>;

/// Upgrade steps: entry `i` takes a database from version `i + 1` to `i + 2`. All pending
/// steps run in one transaction at open, so a failed upgrade leaves the file as it was.
/// Append here (and bump [`SCHEMA_VERSION`], and edit `schema.sql` to the new shape).
const UPGRADES: &[Upgrade] = &[never_reused_ids, change_log, day_max];

/// Every table whose ids leave the database (records, users, sessions): AUTOINCREMENT since
/// schema version 2, so an id is never handed out twice.
pub const ID_TABLES: &[&str] = &[
    "category",
    "item",
    "customization_key",
    "customization_value",
    "message",
    "status",
    "order",
    "user",
    "session",
];

/// How long a connection waits for another process's lock (the `sqlite3` shell, a backup)
/// before a write answers "unavailable".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Open a read-write connection with the daemon's settings: WAL, `synchronous = FULL`,
/// foreign keys on, a busy timeout.
pub fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| unavailable(path, e))?;
    // SQLite quietly opens a write-protected file read-only; say so now, not at the first order.
    if conn.is_readonly(rusqlite::MAIN_DB)? {
        return Err(StoreError::Unavailable(format!(
            "{}: the file is not writable by this user",
            path.display()
        )));
    }
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Records, scans and the menu use more distinct statements than the default cache holds.
    conn.set_prepared_statement_cache_capacity(64);
    // WAL: readers never block the writer, and Litestream can stream the log (SPEC 9).
    // Setting it writes to the file, so this is also where a read-only file shows up.
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(|e| unavailable(path, e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Unavailable(format!(
            "{}: could not switch to WAL mode (journal_mode is {mode})",
            path.display()
        )));
    }
    // FULL, not NORMAL: in WAL mode NORMAL can lose the last commits on power loss, and a
    // placed order that the customer saw confirmed must survive the café's power cut.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    Ok(conn)
}

/// Create or upgrade the schema on `conn`. Refuses a file from a newer Kaffediem.
pub fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    // Cheap check first: refuse a newer file without taking the write lock.
    check_not_newer(user_version(conn)?)?;
    if user_version(conn)? == SCHEMA_VERSION {
        // An admin may have dropped a change-log trigger; without it the shell's writes to
        // that collection would never reach a screen.
        change_log::ensure_triggers(conn)?;
        return ensure_day_max_triggers(conn);
    }
    // An upgrade rebuilds tables; with foreign keys on, dropping the old table would cascade
    // its deletes (sessions, images). The pragma only takes effect outside a transaction.
    conn.pragma_update(None, "foreign_keys", false)?;
    let migrated = migrate_locked(conn, path);
    conn.pragma_update(None, "foreign_keys", true)?;
    migrated
}

fn migrate_locked(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| unavailable(path, e))?;
    // Read again under the lock: another process may have migrated meanwhile.
    let found = user_version(&tx)?;
    check_not_newer(found)?;
    if found == SCHEMA_VERSION {
        return Ok(());
    }
    if found == 0 {
        let tables: i64 = tx.query_row(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'table'",
            [],
            |r| r.get(0),
        )?;
        if tables > 0 {
            return Err(StoreError::Unavailable(format!(
                "{}: not a Kaffediem database (it has tables but no schema version)",
                path.display()
            )));
        }
        tx.execute_batch(SCHEMA_SQL)?;
        change_log::create_triggers(&tx)?;
        tx.execute_batch(orders::DAY_MAX_TRIGGERS)?;
    } else {
        // Rows already pointing nowhere (a category deleted from the sqlite3 shell) stay as
        // they were — `kaffediem check` names them — but the upgrade must break none.
        let broken = |tx: &Transaction<'_>| -> Result<i64, StoreError> {
            Ok(
                tx.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
                    r.get(0)
                })?,
            )
        };
        let broken_before = broken(&tx)?;
        for step in &UPGRADES[(found - 1) as usize..] {
            step(&tx)?;
        }
        if broken(&tx)? > broken_before {
            return Err(StoreError::Unavailable(format!(
                "{}: the schema upgrade would break references; the file is unchanged (run `kaffediem check`)",
                path.display()
            )));
        }
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit().map_err(|e| unavailable(path, e))?;
    tracing::info!(
        path = %path.display(),
        from = found,
        to = SCHEMA_VERSION,
        "database schema ready"
    );
    Ok(())
}

/// Version 1 → 2: ids become AUTOINCREMENT (never reused, and raisable above a high-water mark
/// after a restore), and the database gets its `epoch`. SQLite cannot add AUTOINCREMENT to a
/// table, so each is rebuilt as its documented 12-step recipe says: a new table from the old
/// definition, the rows copied, the old one dropped, the new one renamed, and its indexes and
/// triggers created again from their stored SQL.
fn never_reused_ids(tx: &Transaction<'_>) -> Result<(), StoreError> {
    for table in ID_TABLES {
        let definition: String = tx.query_row(
            "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = ?1",
            [table],
            |r| r.get(0),
        )?;
        let not_ours = || {
            StoreError::Unavailable(format!(
                "table {table} does not look like Kaffediem's (its id column is not `INTEGER PRIMARY KEY`)"
            ))
        };
        const KEY: &str = "INTEGER PRIMARY KEY";
        let columns = definition.find('(').ok_or_else(not_ours)?;
        let key = definition.find(KEY).ok_or_else(not_ours)? + KEY.len();
        let rebuilt = format!(
            "CREATE TABLE \"kaffediem_v2_{table}\" {} AUTOINCREMENT{}",
            &definition[columns..key],
            &definition[key..]
        );
        let mut dependents = tx.prepare(
            "SELECT sql FROM sqlite_schema \
             WHERE tbl_name = ?1 AND type IN ('index', 'trigger') AND sql IS NOT NULL",
        )?;
        let dependents: Vec<String> = dependents
            .query_map([table], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        tx.execute_batch(&format!(
            "{rebuilt};
             INSERT INTO \"kaffediem_v2_{table}\" SELECT * FROM \"{table}\";
             DROP TABLE \"{table}\";
             ALTER TABLE \"kaffediem_v2_{table}\" RENAME TO \"{table}\";"
        ))?;
        for sql in dependents {
            tx.execute_batch(&sql)?;
        }
    }
    tx.execute(
        "INSERT OR IGNORE INTO kaffediem_meta (key, value) VALUES ('epoch', lower(hex(randomblob(8))))",
        [],
    )?;
    Ok(())
}

/// Version 2 → 3: the change log. Other processes' commits were found by diffing every
/// collection table against a copy in memory (time, memory and start-up grew with the
/// history); now triggers log each changed row in `kaffediem_changes`. The `*_counted`
/// triggers give way to the generated `*_captured` ones (which bump `collections_version`
/// too), and `order.updated_at` gets the index the start-up's newest-stamp lookup needs.
fn change_log(tx: &Transaction<'_>) -> Result<(), StoreError> {
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS kaffediem_changes (
             id         INTEGER PRIMARY KEY,
             collection TEXT    NOT NULL,
             row_id     INTEGER NOT NULL,
             op         TEXT    NOT NULL,
             before     TEXT
         );
         CREATE INDEX IF NOT EXISTS order_updated ON \"order\" (updated_at);",
    )?;
    for collection in Collection::ALL {
        for op in ["insert", "update", "delete"] {
            let name = format!("{}_{op}_counted", collection.name());
            tx.execute_batch(&format!("DROP TRIGGER IF EXISTS \"{name}\""))?;
        }
    }
    change_log::create_triggers(tx)
}

/// Version 3 → 4: numbering the next order ([`orders::next_day_id`]) read every order of the
/// day (most of the writer's CPU on a day of thousands of orders). Now triggers keep the day's
/// highest `day_id` in `kaffediem_meta` ([`orders::DAY_MAX_TRIGGERS`]), and `order_inserted`
/// carries `day_id`, so counting it afresh (a day's first order) reads that index only. The
/// index is built again once, from the orders already there.
fn day_max(tx: &Transaction<'_>) -> Result<(), StoreError> {
    tx.execute_batch(
        "DROP INDEX IF EXISTS order_inserted;
         CREATE INDEX order_inserted ON \"order\" (inserted_at, id, day_id);",
    )?;
    tx.execute_batch(orders::DAY_MAX_TRIGGERS)?;
    Ok(())
}

/// Put back the day-number triggers if an admin dropped them. Without them numbering stays
/// right (it reads the day's orders every time) but costs what the day holds.
fn ensure_day_max_triggers(conn: &mut Connection) -> Result<(), StoreError> {
    if orders::day_max_triggers(conn)? == orders::DAY_MAX_TRIGGER_NAMES.len() {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute_batch(orders::DAY_MAX_TRIGGERS)?;
    tx.commit()?;
    tracing::warn!("the day-number triggers were missing and have been put back");
    Ok(())
}

/// The file's `PRAGMA user_version`.
pub fn user_version(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row("PRAGMA user_version", [], |r| r.get(0))?)
}

fn check_not_newer(found: i64) -> Result<(), StoreError> {
    if found > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(())
}

/// Map an error to [`StoreError::Unavailable`] naming the file when it means "this file
/// cannot take writes right now" (the one rule, [`super::cannot_write`]), and to
/// [`StoreError::Sqlite`] otherwise.
pub fn unavailable(path: &Path, e: rusqlite::Error) -> StoreError {
    if super::cannot_write(&e) {
        StoreError::Unavailable(format!("{}: {e}", path.display()))
    } else {
        StoreError::Sqlite(e)
    }
}
