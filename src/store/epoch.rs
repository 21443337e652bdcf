//! The database's identity (SPEC 3.1, resume): `epoch`, a random name for one history of the
//! file, carried in every join reply beside `seq`. A `seq` only means something within its
//! epoch; a screen resuming with a `since` from another epoch gets the full snapshot.
//!
//! A history ends when the file is replaced by an older copy of itself (a restore). Two ways
//! that is noticed at start, before anything is served:
//!
//! - `kaffediem backup` writes `restored_pending` into each copy it makes, so the first start
//!   on a restored copy begins a new epoch (and clears the flag). A `cp` of the file while the
//!   daemon is stopped is not a restore: same history, same epoch.
//! - The high-water mark, a small file beside the database (`kaffediem.db.highwater`), holds
//!   the epoch, the `seq` and every table's highest id the daemon has handed out. A database
//!   whose `seq` is below the mark (an old copy put back with plain `cp`, or a Litestream
//!   restore), or whose epoch is not the mark's (another file altogether), begins a new epoch,
//!   with `seq` and the id sequences raised above the mark: no screen can mistake a new order
//!   for one it saw before the restore.
//!
//! The mark is rewritten at start, every [`MARK_INTERVAL`] while commits happen, and at a
//! clean stop. It only ever helps: a missing or unreadable mark (a database moved to a new
//! Pi) leaves the epoch decision to `restored_pending`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use serde::{Deserialize, Serialize};

use super::schema::ID_TABLES;
use super::StoreError;

/// How often a running daemon brings the high-water mark up to date (when `seq` moved).
pub const MARK_INTERVAL: Duration = Duration::from_secs(10);

/// What [`settle`] decided at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Epoch {
    /// The epoch every join reply carries from now on.
    pub id: String,
    /// Why a new epoch began, if it did (for the log line).
    pub began: Option<&'static str>,
}

/// The high-water mark file's contents.
#[derive(Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
struct Mark {
    epoch: String,
    seq: u64,
    /// Per table, the highest id ever handed out (`sqlite_sequence`).
    ids: BTreeMap<String, i64>,
}

/// The high-water mark of the database at `db`: `kaffediem.db` → `kaffediem.db.highwater`.
pub fn mark_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".highwater");
    PathBuf::from(name)
}

/// Decide this start's epoch on the daemon's connection (migrated already), and write the
/// high-water mark for it. Only `kaffediem serve` calls this, holding the daemon lock.
pub fn settle(conn: &mut Connection, db: &Path) -> Result<Epoch, StoreError> {
    let mark = read_mark(db);
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let meta = |key: &str| -> Result<Option<rusqlite::types::Value>, StoreError> {
        Ok(tx
            .query_row(
                "SELECT value FROM kaffediem_meta WHERE key = ?1",
                [key],
                |r| r.get(0),
            )
            .optional()?)
    };
    let epoch = match meta("epoch")? {
        Some(rusqlite::types::Value::Text(e)) if !e.trim().is_empty() => Some(e),
        _ => None,
    };
    let restored =
        matches!(meta("restored_pending")?, Some(v) if v != rusqlite::types::Value::Null);
    // A `seq` made junk in the shell is recovered first (never below the mark), not read as 0.
    super::capture::recover_seq(&tx, mark.as_ref().map(|m| m.seq))?;
    let seq = super::current_seq(&tx)?;
    let began = if epoch.is_none() {
        Some("the database had no epoch")
    } else if restored {
        Some("first start on a copy made by `kaffediem backup` (a restore)")
    } else {
        match &mark {
            Some(m) if Some(&m.epoch) != epoch.as_ref() => {
                Some("the database is not the one this daemon last served")
            }
            Some(m) if seq < m.seq => {
                Some("the database is older than the one this daemon last served (a restore)")
            }
            _ => None,
        }
    };
    let id = match (&epoch, began) {
        (Some(e), None) => e.clone(),
        _ => new_epoch_id(),
    };
    if began.is_some() {
        tx.execute(
            "INSERT OR REPLACE INTO kaffediem_meta (key, value) VALUES ('epoch', ?1)",
            [&id],
        )?;
        tx.execute(
            "DELETE FROM kaffediem_meta WHERE key = 'restored_pending'",
            [],
        )?;
        if let Some(m) = &mark {
            // Old `since` values from before the restore are all below the new floor.
            tx.execute(
                "UPDATE kaffediem_meta SET value = ?1 WHERE key = 'seq' AND ?1 > value",
                [m.seq.saturating_add(1) as i64],
            )?;
        }
    }
    // Ids never go back below what was handed out, whatever happened to the file.
    if let Some(m) = &mark {
        for (table, highest) in &m.ids {
            if !ID_TABLES.contains(&table.as_str()) {
                continue;
            }
            let raised = tx.execute(
                "UPDATE sqlite_sequence SET seq = ?2 WHERE name = ?1 AND seq < ?2",
                rusqlite::params![table, highest],
            )?;
            let present: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = ?1)",
                [table],
                |r| r.get(0),
            )?;
            if raised == 0 && !present {
                tx.execute(
                    "INSERT INTO sqlite_sequence (name, seq) VALUES (?1, ?2)",
                    rusqlite::params![table, highest],
                )?;
            }
        }
    }
    tx.commit()?;
    write_mark(conn, db, &id)?;
    Ok(Epoch { id, began })
}

/// The last high-water mark, once the writer has stopped: read from the file on a read-only
/// connection of its own, so everything committed is in it.
pub fn write_final_mark(db: &Path, epoch: &str) -> Result<(), StoreError> {
    let conn = Connection::open_with_flags(
        db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    write_mark(&conn, db, epoch)
}

/// Bring the high-water mark up to what `conn` sees (a reader, or the daemon's connection at
/// stop). Never lowers it: the mark's `seq` and ids only grow within an epoch.
pub fn write_mark(conn: &Connection, db: &Path, epoch: &str) -> Result<(), StoreError> {
    let mut ids = BTreeMap::new();
    {
        let mut stmt = conn.prepare("SELECT name, seq FROM sqlite_sequence")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        for row in rows {
            let (name, seq) = row?;
            if ID_TABLES.contains(&name.as_str()) {
                ids.insert(name, seq);
            }
        }
    }
    let mut mark = Mark {
        epoch: epoch.to_owned(),
        seq: super::current_seq(conn)?,
        ids,
    };
    if let Some(old) = read_mark(db).filter(|m| m.epoch == epoch) {
        mark.seq = mark.seq.max(old.seq);
        for (table, highest) in old.ids {
            let entry = mark.ids.entry(table).or_insert(highest);
            *entry = (*entry).max(highest);
        }
    }
    let path = mark_path(db);
    replace_durably(&path, &serde_json::to_vec(&mark).unwrap_or_default())
        .map_err(|e| StoreError::Unavailable(format!("cannot write {}: {e}", path.display())))
}

/// A restore copies a backup over the database; if the daemon last stopped by crashing, its
/// `-wal` is still there, and SQLite would replay that other history's log onto the restored
/// file (it does not check that a log belongs to its database). A file in rollback-journal
/// mode (what `kaffediem backup` writes; a database the daemon ever opened is in WAL mode)
/// cannot own a `-wal`: such a log is renamed aside — kept for inspection, never applied —
/// and its `-shm` index removed, before anything opens the database. Call with the daemon
/// lock held. Returns where the log went.
pub fn set_aside_foreign_wal(db: &Path) -> std::io::Result<Option<PathBuf>> {
    use std::io::Read;
    let suffixed = |suffix: &str| {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    let wal = suffixed("-wal");
    match std::fs::metadata(&wal) {
        Ok(meta) if meta.len() > 0 => {}
        _ => return Ok(None),
    }
    let mut header = [0u8; 20];
    match std::fs::File::open(db).and_then(|mut f| f.read_exact(&mut header)) {
        Ok(()) => {}
        // No database (or a short one): nothing to protect; SQLite decides.
        Err(_) => return Ok(None),
    }
    // Bytes 18 and 19 of the header: file format write/read versions, 1 = rollback journal,
    // 2 = WAL.
    if &header[..16] != b"SQLite format 3\0" || header[18] != 1 || header[19] != 1 {
        return Ok(None);
    }
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let aside = suffixed(&format!("-wal.stale-{stamp}"));
    std::fs::rename(&wal, &aside)?;
    match std::fs::remove_file(suffixed("-shm")) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    Ok(Some(aside))
}

/// A new random epoch: 16 hex digits (a string, so JavaScript compares it exactly).
fn new_epoch_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

fn read_mark(db: &Path) -> Option<Mark> {
    let path = mark_path(db);
    // A few hundred bytes; anything bigger is not ours (and is not read whole).
    const MAX: u64 = 64 * 1024;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(std::fs::File::open(&path).ok()?, MAX + 1),
        &mut bytes,
    )
    .ok()?;
    if bytes.len() as u64 > MAX {
        tracing::warn!(path = %path.display(), "high-water mark is too big; ignored");
        return None;
    }
    match serde_json::from_slice(&bytes) {
        Ok(mark) => Some(mark),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "high-water mark is unreadable; ignored");
            None
        }
    }
}

/// Write `bytes` to `path` so that a power cut leaves the old contents or the new, never
/// half: a temporary file beside it, synced, renamed over, the directory synced.
fn replace_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = PathBuf::from(tmp_name);
    let written = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    if let Ok(dir) = std::fs::File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::schema;

    fn open(db: &Path) -> Connection {
        let mut conn = schema::open_connection(db).expect("open");
        schema::migrate(&mut conn, db).expect("migrate");
        conn
    }

    #[test]
    fn a_database_replaced_under_its_mark_begins_a_new_epoch_above_every_old_seq_and_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("kaffediem.db");
        let mut conn = open(&db);
        let first = settle(&mut conn, &db).expect("settle");
        assert_eq!(
            first.began, None,
            "a fresh file keeps the epoch it was created with"
        );
        conn.execute_batch(
            r#"INSERT INTO "order" (uuid) VALUES ('a'), ('b'), ('c');
               UPDATE kaffediem_meta SET value = 40 WHERE key = 'seq';"#,
        )
        .expect("orders");
        write_mark(&conn, &db, &first.id).expect("mark");
        // A restart of the same file keeps everything.
        assert_eq!(settle(&mut conn, &db).expect("again"), first);
        drop(conn);

        // The file replaced by an empty one (or an old copy): a new history.
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
        }
        let mut conn = open(&db);
        let second = settle(&mut conn, &db).expect("settle");
        assert!(second.began.is_some());
        assert_ne!(second.id, first.id);
        assert!(crate::store::current_seq(&conn).expect("seq") > 40);
        conn.execute(r#"INSERT INTO "order" (uuid) VALUES ('d')"#, [])
            .expect("order");
        let id: i64 = conn
            .query_row(r#"SELECT max(id) FROM "order""#, [], |r| r.get(0))
            .expect("id");
        assert_eq!(id, 4, "ids go on above the old history's");
        // The mark never goes back within an epoch, and is now the new epoch's.
        let mark = read_mark(&db).expect("mark");
        assert_eq!(mark.epoch, second.id);
        assert!(mark.seq > 40);
    }
}
