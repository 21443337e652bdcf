//! One daemon per database file. Two daemons on one file would each keep their own `seq` and
//! drain each other's change log, and screens would miss what the other one wrote.
//!
//! `kaffediem serve` holds an exclusive `flock` on `<database>.lock` for as long as it runs,
//! with its process id written inside so that a second one can name it. The kernel drops a
//! `flock` when the process dies, however it dies, so a crash never leaves a stale lock; the
//! file itself stays (deleting it would let a third process lock a fresh file while the
//! second still holds the old one). The CLI (`user`, `backup`, `check`, `demo`) takes no
//! lock: it writes through SQLite's own locking beside the daemon, which sees its commits.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The held lock; dropping it (or the process ending) releases it.
#[derive(Debug)]
pub struct DaemonLock {
    /// The open lock file: the `flock` lives as long as this descriptor.
    _file: File,
}

/// The lock file of the database at `db`: `kaffediem.db` → `kaffediem.db.lock`, beside it
/// (systemd's `ReadWritePaths` already covers that directory).
pub fn lock_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

impl DaemonLock {
    /// Take the lock for the database at `db`, or say which process holds it. One line, for
    /// the console and the journal.
    pub fn acquire(db: &Path) -> Result<DaemonLock, String> {
        match DaemonLock::try_acquire(db)? {
            Lock::Taken(lock) => Ok(lock),
            Lock::HeldBy(pid) => {
                let who = match pid {
                    Some(pid) => format!("another kaffediem (pid {pid})"),
                    None => "another kaffediem".to_owned(),
                };
                Err(format!(
                    "{who} is already serving {}: stop it first (systemctl stop kaffediem), or give this one another database.path / KAFFEDIEM_DB",
                    db.display()
                ))
            }
        }
    }

    /// Take the lock if no daemon holds it. A command that writes beside the daemon (the
    /// import) uses this to tell whether one is serving; `Err` only when the lock file cannot
    /// be opened or locked at all.
    pub fn try_acquire(db: &Path) -> Result<Lock, String> {
        let path = lock_path(db);
        let mut options = std::fs::OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o640);
        let mut file = options
            .open(&path)
            .map_err(|e| format!("cannot open the lock file {}: {e}", path.display()))?;
        match try_flock(&file) {
            Ok(true) => {}
            Ok(false) => {
                let mut held_by = String::new();
                // At most a pid and a newline; a hand-made file is not read whole.
                let _ = (&file).take(64).read_to_string(&mut held_by);
                return Ok(Lock::HeldBy(held_by.trim().parse::<u32>().ok()));
            }
            Err(e) => {
                return Err(format!("cannot lock {}: {e}", path.display()));
            }
        }
        // Ours now: write our pid for the next one to name. Best effort — the lock is what
        // counts, the pid only makes the message better.
        let _ = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()));
        Ok(Lock::Taken(DaemonLock { _file: file }))
    }
}

/// What [`DaemonLock::try_acquire`] found.
#[derive(Debug)]
pub enum Lock {
    /// Nobody held it; now this process does.
    Taken(DaemonLock),
    /// A daemon serves the database (its pid, when the lock file says).
    HeldBy(Option<u32>),
}

/// Whether another process serves the database at `db` now (holds its lock). This process
/// holding it (the daemon opening its store) is not "elsewhere".
pub fn held_elsewhere(db: &Path) -> bool {
    let Ok(mut file) = File::open(lock_path(db)) else {
        return false; // No lock file: no daemon ever served it from here.
    };
    match try_shared_flock(&file) {
        Ok(true) => false, // Nobody holds it (released when `file` closes).
        Ok(false) => {
            let mut held_by = String::new();
            let _ = (&mut file).take(64).read_to_string(&mut held_by);
            held_by.trim().parse::<u32>().ok() != Some(std::process::id())
        }
        Err(_) => false,
    }
}

/// `flock(LOCK_SH | LOCK_NB)`: `Ok(false)` when an exclusive lock is held on the file.
fn try_shared_flock(file: &File) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: `flock` on a descriptor this `File` owns and keeps open; no memory is shared.
    let done = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) };
    if done == 0 {
        return Ok(true);
    }
    let error = std::io::Error::last_os_error();
    if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(error)
    }
}

/// `flock(LOCK_EX | LOCK_NB)`: `Ok(false)` when another open file holds it. (`File::try_lock`
/// does the same but needs a newer Rust than the crate's minimum.)
fn try_flock(file: &File) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: `flock` on a descriptor this `File` owns and keeps open; no memory is shared.
    let done = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if done == 0 {
        return Ok(true);
    }
    let error = std::io::Error::last_os_error();
    if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("kaffediem.db");
        let first = DaemonLock::acquire(&db).expect("first");
        let refused = DaemonLock::acquire(&db).expect_err("second");
        assert!(
            refused.contains(&format!("pid {}", std::process::id())),
            "{refused}"
        );
        assert!(!held_elsewhere(&db), "held by this process");
        drop(first);
        assert!(!held_elsewhere(&db), "held by nobody");
        DaemonLock::acquire(&db).expect("after the first is gone");
    }
}
