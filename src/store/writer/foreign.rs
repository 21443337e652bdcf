//! Foreign commits: another process (the `sqlite3` shell) committed. Its row changes are in
//! the change log (written by the triggers); the writer publishes them like one of its own
//! commits, in a transaction that also empties the log. Finding them costs the rows changed.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;

use rusqlite::Connection;

use super::super::{capture, change_log, StoreError};
use super::Engine;

impl Engine {
    /// Publish what another process committed since we last looked, if anything.
    pub(super) fn check_foreign(&mut self) {
        if !self.publishes {
            return;
        }
        if catch_unwind(AssertUnwindSafe(|| self.check_foreign_inner())).is_err() {
            tracing::error!("the writer panicked while publishing a foreign commit");
            self.undo_names();
        }
    }

    fn check_foreign_inner(&mut self) {
        if !self.notice_foreign() && !self.foreign_left {
            return;
        }
        // Someone committed; if no collection row changed, the log is empty.
        match change_log::pending(&self.conn) {
            Ok(false) => self.foreign_left = false,
            Ok(true) => {
                self.run_batch(Vec::new());
                // Retried on the next tick when it could not be published.
                self.foreign_left = !matches!(change_log::pending(&self.conn), Ok(false));
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the change log");
                self.foreign_left = true;
            }
        }
    }

    /// Whether another process committed since we last looked (`PRAGMA data_version` moved,
    /// which our own commits never do); if so, put back a `seq` it broke. One PRAGMA when
    /// nothing happened.
    pub(super) fn notice_foreign(&mut self) -> bool {
        self.counts.foreign_checks.fetch_add(1, Ordering::Relaxed);
        let version = match data_version(&self.conn) {
            Ok(v) if v == self.data_version => return false,
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read data_version");
                return false;
            }
        };
        self.data_version = version;
        // A shell may have broken `seq`; readers take snapshots' `seq` from it.
        if let Err(e) = capture::repair_seq(&self.conn, self.seq) {
            tracing::warn!(error = %e, "cannot repair kaffediem_meta.seq yet");
        }
        true
    }
}

pub(super) fn data_version(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn
        .prepare_cached("PRAGMA data_version")?
        .query_row([], |r| r.get(0))?)
}
