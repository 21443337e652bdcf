//! Group commit: the jobs already queued run in one transaction, each inside its own
//! `SAVEPOINT`; one durable COMMIT serves them all.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::Arc;

use rusqlite::{Transaction, TransactionBehavior};

use super::super::capture;
use super::super::{schema, ChangeSet, Collection, StoreError};
use super::{collections_version, Engine, Job, Reply};

/// Savepoint wrapping each job of a batch (jobs may nest their own under other names).
const JOB_SAVEPOINT: &str = "kaffediem_job";

/// One shadow entry as it was before the current batch changed it.
pub(super) enum Undo {
    Row(Collection, i64, Option<u64>),
    CategoryName(i64, Option<String>),
}

impl Engine {
    /// Run `jobs` in one transaction, each in its own savepoint; commit once; publish one
    /// change set per committed job, in order; then answer every job.
    pub(super) fn run_batch(&mut self, jobs: Vec<Job>) {
        self.hook.take();
        // `new_unchecked` borrows the connection shared; this thread is its only user.
        let conn = Rc::clone(&self.conn);
        let tx = Transaction::new_unchecked(&conn, TransactionBehavior::Immediate)
            .map_err(|e| schema::unavailable(&self.path, e));
        let tx = match tx {
            Ok(tx) => tx,
            Err(e) => {
                for job in jobs {
                    let outcome = job(Err(copy(&e)));
                    (outcome.reply)(None);
                }
                return;
            }
        };
        let counted_before = collections_version(&tx);
        self.foreign_pending =
            matches!(&counted_before, Ok(Some(c)) if self.counted.is_some_and(|k| k != *c));
        // Jobs whose savepoint was released: their change set (if they changed a collection
        // row) and their answer, both held until the COMMIT is durable.
        let mut committed: Vec<(Option<ChangeSet>, Reply)> = Vec::with_capacity(jobs.len());
        self.undo.clear();
        for job in jobs {
            if let Some(done) = self.run_in_savepoint(&tx, job) {
                committed.push(done);
            }
        }
        if committed.is_empty() {
            return; // Nothing to commit; dropping `tx` rolls back (a no-op).
        }
        let counted_after = collections_version(&tx);
        if let Err(e) = tx.commit() {
            let e = schema::unavailable(&self.path, e);
            tracing::warn!(error = %e, "commit failed; rolled back");
            self.undo_shadow();
            for (_, reply) in committed {
                reply(Some(copy(&e)));
            }
            return;
        }
        // Our commit moved the counter; if nobody else had moved it before our BEGIN, the
        // shadow is current up to `counted_after`. Otherwise leave it stale, so the next
        // check diffs and finds the other process's rows.
        if counted_before.ok().flatten() == self.counted && self.counted.is_some() {
            self.counted = counted_after.ok().flatten();
        }
        let mut replies = Vec::with_capacity(committed.len());
        for (set, reply) in committed {
            if let Some(set) = set {
                self.seq = self.seq.max(set.seq);
                self.pulse.count_pages(&self.conn);
                let _ = self.feed.send(Arc::new(set));
            }
            replies.push(reply);
        }
        for reply in replies {
            reply(None);
        }
    }

    /// One job inside `SAVEPOINT`: `Some` with its change set and answer when released,
    /// `None` when it was rolled back (and already answered, unless it panicked).
    fn run_in_savepoint(
        &mut self,
        tx: &Transaction<'_>,
        job: Job,
    ) -> Option<(Option<ChangeSet>, Reply)> {
        self.hook.take();
        if let Err(e) = tx.execute_batch(&format!("SAVEPOINT {JOB_SAVEPOINT}")) {
            let outcome = job(Err(schema::unavailable(&self.path, e)));
            (outcome.reply)(None);
            return None;
        }
        let outcome = match catch_unwind(AssertUnwindSafe(|| job(Ok(tx)))) {
            Ok(outcome) => outcome,
            Err(_) => {
                // The job's answer channel was dropped with it; the caller hears "failed".
                tracing::error!("a write job panicked; rolled back");
                self.rollback_savepoint(tx);
                return None;
            }
        };
        if !outcome.commit {
            self.rollback_savepoint(tx);
            (outcome.reply)(None);
            return None;
        }
        let touched = self.hook.take();
        let changes = capture::collapse(&touched, |c, id| self.shadow.contains(c, id));
        let prepared = match (changes.is_empty(), outcome.new_day) {
            (true, None) => Ok(None),
            (_, new_day) => self
                .prepare(tx, &changes)
                .map(|mut p| {
                    p.set.new_day = new_day;
                    Some(p)
                })
                .map_err(|e| self.classify(e)),
        };
        let released = prepared.and_then(|p| {
            tx.execute_batch(&format!("RELEASE {JOB_SAVEPOINT}"))
                .map(|()| p)
                .map_err(|e| schema::unavailable(&self.path, e))
        });
        match released {
            Ok(prepared) => {
                // Later jobs of the batch collapse their rows against this job's result.
                let set = prepared.map(|p| {
                    for (c, id, hash) in p.hashes {
                        self.undo.push(Undo::Row(c, id, self.shadow.hash(c, id)));
                        self.shadow.set(c, id, hash);
                    }
                    for (id, name) in p.names {
                        let before = self.names.set(id, name);
                        self.undo.push(Undo::CategoryName(id, before));
                    }
                    p.set
                });
                Some((set, outcome.reply))
            }
            Err(e) => {
                tracing::warn!(error = %e, "a write could not be read back; rolled back");
                self.rollback_savepoint(tx);
                (outcome.reply)(Some(e));
                None
            }
        }
    }

    /// Undo the current job's savepoint and forget the rows it touched.
    fn rollback_savepoint(&mut self, tx: &Transaction<'_>) {
        let sql = format!("ROLLBACK TO {JOB_SAVEPOINT}; RELEASE {JOB_SAVEPOINT}");
        if let Err(e) = tx.execute_batch(&sql) {
            tracing::error!(error = %e, "cannot roll back a write job's savepoint");
        }
        self.hook.take();
    }

    /// Put back the shadow entries the current batch changed (its COMMIT failed, or it
    /// panicked): the rows are as they were before the batch.
    pub(super) fn undo_shadow(&mut self) {
        while let Some(undo) = self.undo.pop() {
            match undo {
                Undo::Row(c, id, hash) => self.shadow.set(c, id, hash),
                Undo::CategoryName(id, name) => {
                    self.names.set(id, name);
                }
            }
        }
    }
}

/// The same error again, for the other jobs of a batch that failed as a whole.
pub(super) fn copy(e: &StoreError) -> StoreError {
    match e {
        StoreError::Unavailable(why) => StoreError::Unavailable(why.clone()),
        StoreError::TooNew { found, supported } => StoreError::TooNew {
            found: *found,
            supported: *supported,
        },
        StoreError::Closed => StoreError::Closed,
        StoreError::Sqlite(e) => StoreError::Unavailable(e.to_string()),
    }
}
