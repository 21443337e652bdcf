//! `kaffediem check`: is this file a sound Kaffediem database this build can open? Also the
//! start-up preflight that turns "SQLite could not open the file" into the fix.
//!
//! The check only reads: it is safe on the live file while the daemon serves, on a backup,
//! and on a file just restored by `litestream restore`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use super::backup::integrity_problems;

/// What `kaffediem check` found.
#[derive(Debug)]
pub struct Report {
    pub path: PathBuf,
    pub bytes: u64,
    pub journal_mode: String,
    /// `PRAGMA user_version` of the file.
    pub schema_version: i64,
    /// The schema version this build writes and understands.
    pub supported: i64,
    /// `PRAGMA integrity_check` messages; empty when sound.
    pub integrity: Vec<String>,
    /// Rows violating a foreign key (`PRAGMA foreign_key_check`), as `table rowid`.
    pub foreign_keys: Vec<String>,
    /// Rows per table, by table name.
    pub tables: Vec<(String, i64)>,
    /// The newest `inserted_at`/`updated_at` of any record, and this machine's clock when
    /// checked: a newest stamp in the future means the clock is behind the data (no time
    /// sync yet, or set back), and the daemon stamps with that newest time until it catches up.
    pub clock: (Option<jiff::Timestamp>, jiff::Timestamp),
}

impl Report {
    /// Everything that needs the operator's attention, one sentence each naming the fix;
    /// empty when the database is fine.
    pub fn trouble(&self) -> Vec<String> {
        let mut trouble = Vec::new();
        if !self.integrity.is_empty() {
            trouble.push(format!(
                "integrity check failed ({}): restore the last good backup",
                self.integrity.join("; ")
            ));
        }
        if self.schema_version > self.supported {
            trouble.push(format!(
                "schema version {} is newer than this kaffediem supports ({}): upgrade kaffediem",
                self.schema_version, self.supported
            ));
        }
        if self.schema_version <= 0 {
            trouble.push(
                "schema version 0: not a Kaffediem database (the daemon creates its schema on first start)"
                    .into(),
            );
        }
        if !self.foreign_keys.is_empty() {
            trouble.push(format!(
                "rows point at records that do not exist ({}): fix them with the sqlite3 shell",
                self.foreign_keys.join(", ")
            ));
        }
        trouble
    }

    /// The report as printed by `kaffediem check`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "database      {} ({} bytes, journal mode {})",
            self.path.display(),
            self.bytes,
            self.journal_mode
        );
        let upgrade = if self.schema_version > 0 && self.schema_version < self.supported {
            " (upgraded at the next start)"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "schema        version {}, this kaffediem supports {}{upgrade}",
            self.schema_version, self.supported
        );
        let integrity = if self.integrity.is_empty() {
            "ok"
        } else {
            "FAILED"
        };
        let _ = writeln!(out, "integrity     {integrity}");
        let fk = if self.foreign_keys.is_empty() {
            "ok".to_string()
        } else {
            format!("{} broken references", self.foreign_keys.len())
        };
        let _ = writeln!(out, "foreign keys  {fk}");
        let rows: Vec<String> = self
            .tables
            .iter()
            .map(|(t, n)| format!("{t} {n}"))
            .collect();
        let _ = writeln!(out, "rows          {}", rows.join(", "));
        if let (Some(newest), now) = self.clock {
            let ahead = newest.duration_since(now).as_secs();
            if ahead > 0 {
                let _ = writeln!(
                    out,
                    "clock         behind the data: the newest stamp ({newest}) is {ahead} s \
                     ahead of this machine's clock ({now}); new records get that newest time \
                     until the clock catches up (is time sync on?)"
                );
            }
        }
        let trouble = self.trouble();
        if trouble.is_empty() {
            let _ = writeln!(out, "result        ok");
        } else {
            for t in trouble {
                let _ = writeln!(out, "trouble       {t}");
            }
        }
        out
    }
}

/// Why the check could not even read the file.
#[derive(Debug)]
pub enum CheckError {
    /// No file at the path.
    NoDatabase(PathBuf),
    /// SQLite could not read it (not a database, damaged header, unreadable).
    Unreadable {
        path: PathBuf,
        error: rusqlite::Error,
    },
}

impl std::fmt::Display for CheckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CheckError::NoDatabase(p) => write!(
                f,
                "no database at {}: set database.path or KAFFEDIEM_DB to the daemon's file",
                p.display()
            ),
            CheckError::Unreadable { path, error } if is_access_problem(error) => write!(
                f,
                "cannot open {} ({error}): run as the user that owns it (sudo -u kaffediem ...)",
                path.display()
            ),
            CheckError::Unreadable { path, error } => write!(
                f,
                "{} cannot be read as a database ({error}): restore the last good backup",
                path.display()
            ),
        }
    }
}

impl std::error::Error for CheckError {}

/// Whether SQLite failed for lack of permission rather than because of the file's contents.
fn is_access_problem(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(
            rusqlite::ErrorCode::CannotOpen
                | rusqlite::ErrorCode::PermissionDenied
                | rusqlite::ErrorCode::ReadOnly
        )
    )
}

/// Check the database at `path` against schema version `supported`.
pub fn check(path: &Path, supported: i64) -> Result<Report, CheckError> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => {}
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(CheckError::Unreadable {
                path: path.to_path_buf(),
                error: rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
                    Some(e.to_string()),
                ),
            })
        }
        _ => return Err(CheckError::NoDatabase(path.to_path_buf())),
    }
    let unreadable = |error| CheckError::Unreadable {
        path: path.to_path_buf(),
        error,
    };
    let conn = open_for_reading(path).map_err(unreadable)?;
    let journal_mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .map_err(unreadable)?;
    let schema_version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(unreadable)?;
    let integrity = integrity_problems(&conn).map_err(unreadable)?;
    let foreign_keys = foreign_key_problems(&conn).map_err(unreadable)?;
    let tables = row_counts(&conn).map_err(unreadable)?;
    // Not a Kaffediem database (no tables): nothing stamped.
    let newest = crate::store::stamps::newest(&conn).ok().flatten();
    Ok(Report {
        path: path.to_path_buf(),
        bytes: std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
        journal_mode,
        schema_version,
        supported,
        integrity,
        foreign_keys,
        tables,
        clock: (newest, jiff::Timestamp::now()),
    })
}

/// Read-write without CREATE when allowed (a WAL file is read through its `-shm`, which a
/// read-only connection may be unable to set up), else read-only. Never creates a file.
fn open_for_reading(path: &Path) -> rusqlite::Result<Connection> {
    let rw = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    );
    let conn = match rw {
        Ok(conn) => conn,
        Err(_) => Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?,
    };
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    // `query_only`: whatever happens below, this connection cannot change the file.
    conn.pragma_update(None, "query_only", true)?;
    Ok(conn)
}

fn foreign_key_problems(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare("PRAGMA foreign_key_check")?;
    let rows = stmt.query_map([], |r| {
        let table: String = r.get(0)?;
        let rowid: Option<i64> = r.get(1)?;
        Ok(match rowid {
            Some(id) => format!("{table} {id}"),
            None => table,
        })
    })?;
    rows.take(20).collect()
}

fn row_counts(conn: &Connection) -> rusqlite::Result<Vec<(String, i64)>> {
    let names: Vec<String> = conn
        .prepare(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    names
        .into_iter()
        .map(|name| {
            let quoted = name.replace('"', "\"\"");
            let n = conn.query_row(&format!("SELECT count(*) FROM \"{quoted}\""), [], |r| {
                r.get(0)
            })?;
            Ok((name, n))
        })
        .collect()
}

/// Start-up preflight: can the daemon create and write `path` and its `-wal`/`-shm` files?
/// Returns one sentence naming the fix, so a wrong `database.path` or a directory owned by
/// another user reads as such instead of SQLite's "unable to open database file".
pub fn database_writable(path: &Path) -> Result<(), String> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let fix = "give the user running kaffediem write access, or set database.path / KAFFEDIEM_DB";
    if !dir.is_dir() {
        return Err(format!(
            "database directory {} does not exist: create it ({fix})",
            dir.display()
        ));
    }
    if path.is_dir() {
        return Err(format!(
            "database path {} is a directory: set database.path / KAFFEDIEM_DB to a file in it",
            path.display()
        ));
    }
    for file in [
        path.to_path_buf(),
        suffixed(path, "-wal"),
        suffixed(path, "-shm"),
    ] {
        if file.exists() {
            std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&file)
                .map_err(|e| format!("database {} is not writable ({e}): {fix}", file.display()))?;
        }
    }
    // SQLite creates the `-wal` and `-shm` files beside the database, so the directory
    // itself must be writable, not only the file.
    let probe = dir.join(format!(".kaffediem-probe-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(format!(
            "database directory {} is not writable ({e}): {fix}",
            dir.display()
        )),
    }
}

fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}
