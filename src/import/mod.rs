//! `kaffediem import kaffebase PATH`: a café moving from the old backend (Kaffebase, Elixir)
//! brings its menu, accounts and every order in one command (issue 11).
//!
//! The old file is opened read-only and never changed. Everything is read and converted
//! first (each row skipped or altered is named in the report), then written in one
//! transaction: all or nothing. Ids are kept, so `customer_id`s, bookmarks and screens stay
//! valid.
//!
//! While the daemon serves the same database the import is a foreign writer, like the
//! `sqlite3` shell: it takes no lock of the daemon's, writes no `seq`, epoch or high-water
//! mark; the daemon notices the commit and publishes it (a commit that big makes each screen
//! resync once, see `channels::registry`). When no daemon runs, the import holds the daemon
//! lock while it writes, so a `serve` started meanwhile waits for nothing half-done.

mod images;
mod menu;
mod model;
mod orders;
pub mod report;
mod source;
mod target;
mod users;
mod values;

use std::path::{Path, PathBuf};

use jiff::tz::TimeZone;
use rusqlite::TransactionBehavior;

pub use report::{Progress, Report};
pub use users::BUILT_IN_ADMIN;

use crate::store::lock::{DaemonLock, Lock};
use crate::store::{records, schema};

/// What to import, where, and how.
pub struct Options {
    /// The old backend's SQLite file.
    pub source: PathBuf,
    /// The Kaffediem database (`database.path`); created when missing.
    pub target: PathBuf,
    /// Replace the café data and accounts a target already has.
    pub replace: bool,
    /// Convert and check everything, write nothing.
    pub dry_run: bool,
    /// Where the files of items' local image paths are (`--images`).
    pub images: Option<PathBuf>,
    /// `limits.max_upload_bytes`: an imported image obeys the upload limit.
    pub max_image_bytes: usize,
    /// `cafe.time_zone`: which orders share a café day (for the day-number note).
    pub time_zone: TimeZone,
    /// The command that starts serving this database, for the report's last line.
    pub serve_command: String,
}

#[derive(Debug)]
pub enum ImportError {
    /// The old file is missing, unreadable, or not the old backend's.
    Source(String),
    /// Reading the old file failed part way.
    Read(rusqlite::Error),
    /// The target refused the write (disk full, locked past the busy timeout, ...).
    Write(String),
    /// The target has café data (and no `--replace`), or the two files are one.
    Refused(String),
}

impl ImportError {
    fn read(e: rusqlite::Error) -> ImportError {
        ImportError::Read(e)
    }
    fn write(e: rusqlite::Error) -> ImportError {
        ImportError::Write(e.to_string())
    }
}

impl std::fmt::Display for ImportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImportError::Source(why) | ImportError::Refused(why) => f.write_str(why),
            ImportError::Read(e) => write!(f, "reading the old database failed: {e}"),
            ImportError::Write(e) => {
                write!(f, "writing the import failed, nothing was written: {e}")
            }
        }
    }
}

impl std::error::Error for ImportError {}

impl From<crate::store::StoreError> for ImportError {
    fn from(e: crate::store::StoreError) -> Self {
        ImportError::Write(e.to_string())
    }
}

/// Import, and return the report to print.
pub fn kaffebase(options: &Options, progress: &mut Progress) -> Result<String, ImportError> {
    if same_file(&options.source, &options.target) {
        return Err(ImportError::Refused(format!(
            "{} is the target database itself",
            options.source.display()
        )));
    }
    if let Some(dir) = options.images.as_deref().filter(|d| !d.is_dir()) {
        return Err(ImportError::Source(format!(
            "--images {}: not a directory",
            dir.display()
        )));
    }
    let source = source::open(&options.source)?;
    let now = records::format_timestamp(jiff::Timestamp::now());
    let mut cafe = model::Cafe::default();
    let mut report = Report::default();
    users::read(&source, &now, &mut cafe, &mut report)?;
    menu::read(
        &source,
        &now,
        options.images.as_deref(),
        options.max_image_bytes,
        &mut cafe,
        &mut report,
    )?;
    orders::read(
        &source,
        &now,
        &options.time_zone,
        &mut cafe,
        &mut report,
        progress,
    )?;
    let tokens = source::count(&source, "users_tokens")?;
    if tokens > 0 {
        report.notes.push(format!(
            "users_tokens ({tokens} old sessions and e-mail tokens) not imported: everyone logs in once more"
        ));
    }
    drop(source);

    let from = options.source.display();
    let into = options.target.display();
    let serve = format!("    {}", options.serve_command);
    if options.dry_run {
        dry_run(options, &cafe, &mut report, progress)?;
        return Ok(report.render(
            &format!("Dry run: {from} checked against {into}; nothing was written."),
            &[
                "To import, run the same command without --dry-run; then start serving with:"
                    .into(),
                serve,
            ],
        ));
    }

    let lock = DaemonLock::try_acquire(&options.target).map_err(ImportError::Write)?;
    let mut conn = schema::open_connection(&options.target)?;
    schema::migrate(&mut conn, &options.target)?;
    let started = std::time::Instant::now();
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(ImportError::write)?;
    let existing = target::existing(&tx)?;
    target::refuse(&existing, &cafe, options.replace)?;
    if options.replace && !existing.users.is_empty() {
        report.notes.push(format!(
            "--replace: the target's {} accounts and their sessions were replaced by the old backend's",
            existing.users.len()
        ));
    }
    target::write(
        &tx,
        &cafe,
        &existing,
        options.replace,
        &mut report,
        progress,
    )?;
    tx.commit().map_err(ImportError::write)?;
    drop(conn);
    // The daemon's writes (orders!) wait this long when it serves the same file.
    report.notes.push(format!(
        "the write transaction held the database for {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    let next = match lock {
        Lock::Taken(held) => {
            drop(held);
            vec!["Start serving the imported café with:".into(), serve]
        }
        Lock::HeldBy(pid) => {
            let who = pid.map_or("kaffediem".to_owned(), |p| format!("kaffediem (pid {p})"));
            vec![
                format!("{who} is serving {into} already: its screens get the imported café by themselves (one resync each), nothing to start."),
                "After a restart it is served as usual with:".into(),
                serve,
            ]
        }
    };
    Ok(report.render(
        &format!("Imported {from} into {into} in one transaction."),
        &next,
    ))
}

/// A dry run writes into an empty database in memory (so every constraint is checked) and
/// checks the real target, read-only, for what would refuse the import.
fn dry_run(
    options: &Options,
    cafe: &model::Cafe,
    report: &mut Report,
    progress: &mut Progress,
) -> Result<(), ImportError> {
    if options.target.exists() {
        let flags =
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = rusqlite::Connection::open_with_flags(&options.target, flags)
            .map_err(ImportError::write)?;
        if schema::user_version(&conn)? > 0 {
            let existing = target::existing(&conn)?;
            target::refuse(&existing, cafe, options.replace)?;
        }
    }
    let mut memory = rusqlite::Connection::open_in_memory().map_err(ImportError::write)?;
    memory
        .execute_batch(schema::SCHEMA_SQL)
        .map_err(ImportError::write)?;
    memory
        .pragma_update(None, "foreign_keys", true)
        .map_err(ImportError::write)?;
    let tx = memory.transaction().map_err(ImportError::write)?;
    let existing = target::existing(&tx)?;
    target::write(&tx, cafe, &existing, true, report, progress)?;
    // Dropped without commit: rolled back.
    Ok(())
}

/// Whether the two paths name one file (so the import would read what it writes).
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}
