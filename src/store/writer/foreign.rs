//! Foreign commits: another process (the `sqlite3` shell) committed; find what it changed and
//! publish it like one of ours.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use rusqlite::{Connection, Transaction, TransactionBehavior};

use super::super::{capture, schema, StoreError};
use super::Engine;

impl Engine {
    /// Publish what another process committed since we last looked, if anything.
    pub(super) fn check_foreign(&mut self) {
        if catch_unwind(AssertUnwindSafe(|| self.check_foreign_inner())).is_err() {
            tracing::error!("the writer panicked while publishing a foreign commit");
            self.hook.take();
        }
    }

    fn check_foreign_inner(&mut self) {
        let version = match data_version(&self.conn) {
            Ok(v) if v == self.data_version => return,
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read data_version");
                return;
            }
        };
        // A shell may have broken `seq`; readers take snapshots' `seq` from it.
        if let Err(e) = capture::repair_seq(&self.conn, self.seq) {
            tracing::warn!(error = %e, "cannot repair kaffediem_meta.seq yet");
        }
        // Someone committed; if no collection row changed (the counter did not move), there
        // is nothing to diff. A commit after the PRAGMA just makes the next check look again.
        match collections_version(&self.conn) {
            Ok(Some(c)) if Some(c) == self.counted => {
                self.data_version = version;
                return;
            }
            _ => {}
        }
        if let Err(e) = self.publish_foreign() {
            // Retried on the next wake-up or tick: data_version is still different.
            tracing::warn!(error = %e, "could not publish a foreign change yet");
        }
    }

    fn publish_foreign(&mut self) -> Result<(), StoreError> {
        self.hook.take();
        let path = self.path.clone();
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)
            .map_err(|e| schema::unavailable(&path, e))?;
        // Under the write lock nobody else can commit: this version matches the diff.
        let version = data_version(&tx)?;
        let counted = collections_version(&tx)?;
        let (changes, shadow) = self.shadow.diff(&tx)?;
        if changes.is_empty() {
            drop(tx);
            self.data_version = version;
            self.counted = counted;
            return Ok(());
        }
        tracing::info!(
            rows = changes.len(),
            "publishing a commit made by another process"
        );
        self.foreign_pending = false;
        let prepared = self.prepare(&tx, &changes).map_err(|e| self.classify(e))?;
        tx.commit().map_err(|e| schema::unavailable(&path, e))?;
        self.hook.take();
        self.shadow = shadow;
        for (id, name) in prepared.names {
            self.names.set(id, name);
        }
        self.data_version = version;
        self.counted = counted;
        self.seq = self.seq.max(prepared.set.seq);
        self.pulse.count_pages(&self.conn);
        let _ = self.feed.send(Arc::new(prepared.set));
        Ok(())
    }
}

/// The `collections_version` counter kept by the triggers of `schema.sql`.
pub(super) fn collections_version(conn: &Connection) -> Result<Option<i64>, StoreError> {
    use rusqlite::OptionalExtension;
    Ok(conn
        .query_row(
            "SELECT value FROM kaffediem_meta WHERE key = 'collections_version'",
            [],
            |r| r.get::<_, Option<i64>>(0),
        )
        .optional()?
        .flatten())
}

pub(super) fn data_version(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row("PRAGMA data_version", [], |r| r.get(0))?)
}
