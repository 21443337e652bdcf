//! `kaffediem backup FILE`: a consistent copy of the live database, taken with SQLite's online
//! backup API while the daemon keeps serving and writing (SPEC 9).
//!
//! The copy is one self-contained file (rollback journal mode, nothing in a `-wal` beside it)
//! that passes `PRAGMA integrity_check` before it gets its final name, so a `FILE` that exists
//! is always a whole, checked backup.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

/// Pages copied per backup step (4 MiB with the default page size).
const PAGES_PER_STEP: std::ffi::c_int = 1024;

/// How long the backup waits for a lock held by another process before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// What a finished backup wrote.
#[derive(Debug)]
pub struct Backup {
    pub file: PathBuf,
    pub bytes: u64,
    /// `PRAGMA user_version` of the copy.
    pub schema_version: i64,
}

/// Why a backup was not made. Nothing is left at the destination in any case.
#[derive(Debug)]
pub enum BackupError {
    /// There is no database at the source path.
    NoDatabase(PathBuf),
    /// The destination exists and `--force` was not given.
    Exists(PathBuf),
    /// The destination is the live database or one of the files kept beside it (`-wal`,
    /// `-shm`, `-journal`, the daemon's `.lock` and `.highwater`), however it was spelled:
    /// writing there loses orders.
    LiveDatabase { dest: PathBuf, source: PathBuf },
    /// The destination exists and is not a regular file (a directory, device node, pipe or
    /// symlink): `--force` replaces only a regular file.
    NotRegular(PathBuf),
    /// SQLite failed while reading the source or writing the copy.
    Sqlite {
        path: PathBuf,
        error: rusqlite::Error,
    },
    /// The copy itself failed (the source is damaged, or the destination disk is full).
    Copy {
        from: PathBuf,
        to: PathBuf,
        error: rusqlite::Error,
    },
    /// The filesystem refused (destination directory missing or not writable, disk full).
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The copy failed its integrity check (the first problems SQLite reported).
    Damaged(String),
}

impl std::fmt::Display for BackupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BackupError::NoDatabase(p) => write!(
                f,
                "no database at {}: set database.path or KAFFEDIEM_DB to the daemon's file",
                p.display()
            ),
            BackupError::Exists(p) => write!(
                f,
                "{} already exists: choose another file name, or pass --force to replace it",
                p.display()
            ),
            BackupError::LiveDatabase { dest, source } => write!(
                f,
                "{} is the live database {} (or a file kept beside it: -wal, -shm, .lock): write the backup to another file",
                dest.display(),
                source.display()
            ),
            BackupError::NotRegular(p) => write!(
                f,
                "{} is not a regular file (a directory, device, pipe or symlink): --force replaces only a regular file; choose another name",
                p.display()
            ),
            BackupError::Sqlite { path, error } => write!(f, "{}: {error}", path.display()),
            BackupError::Copy { from, to, error } => write!(
                f,
                "cannot copy {} to {}: {error}; run `kaffediem check` on the database",
                from.display(),
                to.display()
            ),
            BackupError::Io { path, error }
                if error.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                write!(
                    f,
                    "{}: {error}: run as a user that may read the database and write the backup (sudo -u kaffediem ...)",
                    path.display()
                )
            }
            BackupError::Io { path, error } => write!(f, "{}: {error}", path.display()),
            BackupError::Damaged(why) => write!(
                f,
                "the copy failed its integrity check ({why}); run `kaffediem check` on the database"
            ),
        }
    }
}

impl std::error::Error for BackupError {}

/// Copy the database at `source` to `dest`. Refuses to replace an existing `dest` unless
/// `force`. Safe while the daemon runs: the copy is one consistent snapshot (a read
/// transaction held for the whole copy; in WAL mode it never blocks the daemon's writer).
pub fn backup(source: &Path, dest: &Path, force: bool) -> Result<Backup, BackupError> {
    match std::fs::metadata(source) {
        Ok(meta) if meta.is_file() => {}
        Err(error) if error.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(BackupError::Io {
                path: source.to_path_buf(),
                error,
            })
        }
        _ => return Err(BackupError::NoDatabase(source.to_path_buf())),
    }
    if dest.is_dir() {
        return Err(BackupError::Io {
            path: dest.to_path_buf(),
            error: std::io::Error::new(
                std::io::ErrorKind::IsADirectory,
                "is a directory; name the backup file in it",
            ),
        });
    }
    refuse_unsafe_destination(source, dest, force)?;
    let dir = match dest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(BackupError::Io {
            path: dir.to_path_buf(),
            error: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such directory for the backup; create it first",
            ),
        });
    }
    let partial = partial_path(dest);
    let result = copy_and_verify(source, &partial, dest).and_then(|schema_version| {
        publish(source, &partial, dest, dir, force)?;
        let bytes = std::fs::metadata(dest).map(|m| m.len()).unwrap_or(0);
        Ok(Backup {
            file: dest.to_path_buf(),
            bytes,
            schema_version,
        })
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
        let _ = std::fs::remove_file(journal_of(&partial));
    }
    result
}

/// Where the copy is written before it is checked: beside `dest`, so the final rename stays
/// on one filesystem and is atomic.
fn partial_path(dest: &Path) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "kaffediem-backup".into());
    dest.with_file_name(format!(".{name}.partial-{}", std::process::id()))
}

fn journal_of(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push("-journal");
    PathBuf::from(name)
}

/// Copy `source` into a fresh `partial`, check it, and return its schema version. Errors
/// about the copy name `dest`, the file the operator asked for.
fn copy_and_verify(source: &Path, partial: &Path, dest: &Path) -> Result<i64, BackupError> {
    let sqlite = |path: &Path| {
        let path = path.to_path_buf();
        move |error| BackupError::Sqlite {
            path: path.clone(),
            error,
        }
    };
    let _ = std::fs::remove_file(partial);
    // Read-write without CREATE: a WAL database is read through its `-shm` index, which a
    // read-only connection may not be able to map; and a missing file must not be created.
    let src = Connection::open_with_flags(
        source,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite(source))?;
    src.busy_timeout(BUSY_TIMEOUT).map_err(sqlite(source))?;
    // One read transaction for the whole copy: every step sees the same snapshot, so the
    // daemon's commits meanwhile neither tear the copy nor restart the backup from page 1.
    src.execute_batch("BEGIN; SELECT count(*) FROM sqlite_schema;")
        .map_err(sqlite(source))?;

    create_private(partial).map_err(|error| BackupError::Io {
        path: dest.to_path_buf(),
        error,
    })?;
    let mut dst = Connection::open(partial).map_err(sqlite(dest))?;
    {
        let backup = rusqlite::backup::Backup::new(&src, &mut dst).map_err(sqlite(dest))?;
        backup
            .run_to_completion(PAGES_PER_STEP, Duration::from_millis(1), None)
            .map_err(|error| BackupError::Copy {
                from: source.to_path_buf(),
                to: dest.to_path_buf(),
                error,
            })?;
    }
    src.execute_batch("COMMIT").map_err(sqlite(source))?;
    drop(src);

    // The pages say "WAL"; make the copy a single file that needs nothing beside it.
    let _: String = dst
        .query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))
        .map_err(sqlite(dest))?;
    // Mark the copy: the first daemon start on it (a restore) begins a new epoch, so screens
    // never resume across the restore with `seq` values of the history it replaced.
    let has_meta: bool = dst
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'kaffediem_meta')",
            [],
            |r| r.get(0),
        )
        .map_err(sqlite(dest))?;
    if has_meta {
        dst.execute(
            "INSERT OR REPLACE INTO kaffediem_meta (key, value) VALUES ('restored_pending', 1)",
            [],
        )
        .map_err(sqlite(dest))?;
    }
    // Pages are copied as they are: a damaged source gives a damaged copy, found here.
    let problems = integrity_problems(&dst).map_err(|e| BackupError::Damaged(e.to_string()))?;
    if !problems.is_empty() {
        return Err(BackupError::Damaged(problems.join("; ")));
    }
    let schema_version: i64 = dst
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(sqlite(dest))?;
    dst.close().map_err(|(_, e)| sqlite(dest)(e))?;
    Ok(schema_version)
}

/// Create `path` empty and readable by its owner only: a backup holds password hashes and the
/// socket-token secret. SQLite takes an empty file as an empty database, and gives the
/// journals it creates beside it the same permissions.
fn create_private(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map(drop)
}

/// `PRAGMA integrity_check`: empty when the database is sound, else SQLite's first messages.
pub fn integrity_problems(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare("PRAGMA integrity_check(20)")?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    let mut problems = Vec::new();
    for row in rows {
        let row = row?;
        if row != "ok" {
            problems.push(row);
        }
    }
    Ok(problems)
}

/// Refuse `dest` when it is the live database or a file SQLite keeps beside it (compared as
/// files — device and inode, and the directory's for names not created yet — never as
/// spellings), when it exists and `force` is not given, and when `force` would replace
/// something that is not a regular file.
fn refuse_unsafe_destination(source: &Path, dest: &Path, force: bool) -> Result<(), BackupError> {
    let live = || BackupError::LiveDatabase {
        dest: dest.to_path_buf(),
        source: source.to_path_buf(),
    };
    // The database and its companions, both as spelled and with symlinks resolved (SQLite
    // puts the -wal beside the resolved file).
    let mut live_files = vec![source.to_path_buf()];
    if let Ok(real) = std::fs::canonicalize(source) {
        live_files.push(real);
    }
    let mut companions = Vec::new();
    for file in &live_files {
        // The daemon lock and the high-water mark too: a backup renamed over the lock file
        // would let a second daemon lock the new file beside the running one.
        for suffix in ["-wal", "-shm", "-journal", ".lock", ".highwater"] {
            let mut name = file.as_os_str().to_owned();
            name.push(suffix);
            companions.push(PathBuf::from(name));
        }
    }
    // An existing destination that is one of those files (through `..`, a symlink, a hard
    // link, a bind mount: the same device and inode).
    if let Some(dest_id) = file_identity(dest) {
        if live_files
            .iter()
            .chain(&companions)
            .any(|f| file_identity(f) == Some(dest_id))
        {
            return Err(live());
        }
    }
    // A destination not there yet, named like a companion in the database's directory (the
    // -wal comes and goes with the daemon): the same directory, compared as a file.
    if let (Some(dest_dir), Some(dest_name)) = (parent_identity(dest), dest.file_name()) {
        for file in live_files.iter().chain(&companions) {
            if file.file_name() == Some(dest_name) && parent_identity(file) == Some(dest_dir) {
                return Err(live());
            }
        }
    }
    match std::fs::symlink_metadata(dest) {
        Ok(_) if !force => Err(BackupError::Exists(dest.to_path_buf())),
        Ok(meta) if !meta.file_type().is_file() => Err(BackupError::NotRegular(dest.to_path_buf())),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(BackupError::Io {
            path: dest.to_path_buf(),
            error,
        }),
    }
}

/// (device, inode) of the file at `path` (symlinks followed), if there is one.
fn file_identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// (device, inode) of the directory `path` is in.
fn parent_identity(path: &Path) -> Option<(u64, u64)> {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => file_identity(d),
        _ => file_identity(Path::new(".")),
    }
}

/// Give the checked copy its final name, durably: the copy is synced, renamed over `dest`
/// (a reader sees the old file or the whole new one, never half), and the directory synced.
fn publish(
    source: &Path,
    partial: &Path,
    dest: &Path,
    dir: &Path,
    force: bool,
) -> Result<(), BackupError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |error| BackupError::Io {
            path: path.clone(),
            error,
        }
    };
    std::fs::File::open(partial)
        .and_then(|f| f.sync_all())
        .map_err(io(partial))?;
    // Checked again: the copy took a while, and someone may have created `dest` meanwhile.
    refuse_unsafe_destination(source, dest, force)?;
    std::fs::rename(partial, dest).map_err(io(dest))?;
    // The rename is durable once the directory is synced; best effort (not every
    // filesystem lets a directory be opened for that).
    if let Ok(dir) = std::fs::File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}
