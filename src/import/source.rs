//! The old backend's file, opened so that it cannot change, and read table by table.

use std::collections::HashSet;
use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use super::values::Row;
use super::ImportError;

/// Open the Kaffebase file read-only. Without a `-wal` or `-journal` beside it (the old
/// backend stopped cleanly) it is opened `immutable`: SQLite then takes no lock and creates no
/// companion file, so not a byte in that directory changes. With one, SQLite must read the log
/// (the newest commits may be only there), still without writing to the database file.
pub fn open(path: &Path) -> Result<Connection, ImportError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| ImportError::Source(format!("cannot read {}: {e}", path.display())))?;
    if !meta.is_file() {
        return Err(ImportError::Source(format!(
            "{} is not a file",
            path.display()
        )));
    }
    let companion = |suffix: &str| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        std::fs::metadata(std::path::PathBuf::from(name)).is_ok_and(|m| m.len() > 0)
    };
    let live = companion("-wal") || companion("-journal");
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let uri = format!(
        "file:{}?mode=ro{}",
        uri_path(&absolute.to_string_lossy()),
        if live { "" } else { "&immutable=1" }
    );
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let unreadable = |e: rusqlite::Error| {
        ImportError::Source(format!("cannot open {} as SQLite: {e}", path.display()))
    };
    let conn = Connection::open_with_flags(&uri, flags).map_err(unreadable)?;
    conn.pragma_update(None, "query_only", true)
        .map_err(unreadable)?;
    let tables = tables(&conn).map_err(unreadable)?;
    if tables.contains("kaffediem_meta") {
        return Err(ImportError::Source(format!(
            "{} is a Kaffediem database, not the old backend's: copy it with `kaffediem backup` instead",
            path.display()
        )));
    }
    if !["users", "category", "item", "order"]
        .iter()
        .all(|t| tables.contains(*t))
    {
        return Err(ImportError::Source(format!(
            "{} is not the old backend's (Kaffebase) database: it lacks its tables users, category, item and order",
            path.display()
        )));
    }
    Ok(conn)
}

/// A path inside a `file:` URI: `%`, `?` and `#` would end or escape it.
fn uri_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        match c {
            '%' => out.push_str("%25"),
            '?' => out.push_str("%3f"),
            '#' => out.push_str("%23"),
            c => out.push(c),
        }
    }
    out
}

pub fn tables(conn: &Connection) -> rusqlite::Result<HashSet<String>> {
    let mut stmt = conn.prepare("SELECT name FROM sqlite_schema WHERE type = 'table'")?;
    let names = stmt.query_map([], |r| r.get::<_, String>(0))?;
    names.collect()
}

/// How many rows `table` has (0 when the file has no such table).
pub fn count(conn: &Connection, table: &str) -> Result<usize, ImportError> {
    if !tables(conn).map_err(ImportError::read)?.contains(table) {
        return Ok(0);
    }
    let n: i64 = conn
        .query_row(&format!("SELECT count(*) FROM \"{table}\""), [], |r| {
            r.get(0)
        })
        .map_err(ImportError::read)?;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// Every row of `table` by id, calling `each` on it; nothing when the file has no such
/// table (an old file from before that migration).
pub fn each_row(
    conn: &Connection,
    table: &str,
    mut each: impl FnMut(Row) -> Result<(), ImportError>,
) -> Result<(), ImportError> {
    if !tables(conn).map_err(ImportError::read)?.contains(table) {
        return Ok(());
    }
    let mut stmt = conn
        .prepare(&format!("SELECT * FROM \"{table}\" ORDER BY id"))
        .map_err(ImportError::read)?;
    let columns: Vec<String> = stmt.column_names().iter().map(|c| c.to_string()).collect();
    let mut rows = stmt.query([]).map_err(ImportError::read)?;
    while let Some(row) = rows.next().map_err(ImportError::read)? {
        each(Row::read(&columns, row).map_err(ImportError::read)?)?;
    }
    Ok(())
}
