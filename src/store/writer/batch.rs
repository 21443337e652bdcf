//! Group commit: the jobs already queued run in one transaction, each inside its own
//! `SAVEPOINT`; one durable COMMIT serves them all.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use rusqlite::{Transaction, TransactionBehavior};

use super::super::{change_log, schema, ChangeSet, StoreError};
use super::{checkpointer, Engine, Gather, Job, Outcome, Reply, GATHER_CAP, GATHER_SHARE};

/// Savepoint wrapping each job of a batch (jobs may nest their own under other names).
const JOB_SAVEPOINT: &str = "kaffediem_job";

impl Engine {
    /// Run `jobs` in one transaction, each in its own savepoint; commit once; publish one
    /// change set per committed job, in order; then answer every job. What other processes
    /// committed and the change log still holds goes first, as a change set of its own.
    pub(super) fn run_batch(&mut self, mut jobs: Vec<Job>) {
        // The callers answered by this batch (not the publication of foreign commits).
        let asked = jobs.len();
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
        // Under the write lock nobody else can add to the log until we commit.
        let foreign = match (self.publishes, change_log::pending(&tx)) {
            (true, Ok(true)) => {
                tracing::info!("publishing what another process committed");
                jobs.insert(0, foreign_commits());
                true
            }
            (true, Err(e)) => {
                tracing::warn!(error = %e, "cannot read the change log");
                false
            }
            _ => false,
        };
        // Jobs whose savepoint was released: their change set (if they changed a collection
        // row) and their answer, both held until the COMMIT is durable.
        let mut committed: Vec<(Option<ChangeSet>, Reply)> = Vec::with_capacity(jobs.len());
        self.undo.clear();
        for (i, job) in jobs.into_iter().enumerate() {
            if let Some(done) = self.run_in_savepoint(&tx, job, foreign && i == 0) {
                committed.push(done);
            }
        }
        if committed.is_empty() {
            return; // Nothing to commit; dropping `tx` rolls back (a no-op).
        }
        let committing = Instant::now();
        if let Err(e) = tx.commit() {
            let e = schema::unavailable(&self.path, e);
            tracing::warn!(error = %e, "commit failed; rolled back");
            self.undo_names();
            for (_, reply) in committed {
                reply(Some(copy(&e)));
            }
            return;
        }
        let took = committing.elapsed();
        self.counts.commits.fetch_add(1, Ordering::Relaxed);
        let wal_pages = checkpointer::wal_frames();
        let checkpoint_here = match &mut self.checkpointer {
            Some(c) if !self.replicated.load(Ordering::SeqCst) => c.committed(wal_pages),
            _ => false,
        };
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
        if let (true, Some(c)) = (checkpoint_here, &mut self.checkpointer) {
            // Unbroken load kept the checkpointer from completing: after the answers, so
            // only the next batch waits for it.
            match c.checkpoint_here(&self.conn, wal_pages) {
                Ok(Some(_)) => {
                    self.counts
                        .writer_checkpoints
                        .fetch_add(1, Ordering::Relaxed);
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "cannot checkpoint the WAL"),
            }
        }
        self.gather = (asked > 1).then(|| Gather {
            until: Instant::now() + (took / GATHER_SHARE).min(GATHER_CAP),
            jobs: asked,
        });
    }

    /// One job inside `SAVEPOINT`: `Some` with its change set and answer when released,
    /// `None` when it was rolled back (and already answered, unless it panicked). Its change
    /// set is what it added to the change log (`whole_log`: everything the log holds, for
    /// the job that publishes other processes' commits).
    fn run_in_savepoint(
        &mut self,
        tx: &Transaction<'_>,
        job: Job,
        whole_log: bool,
    ) -> Option<(Option<ChangeSet>, Reply)> {
        let mark = match (self.publishes, whole_log) {
            (false, _) => None,
            (true, true) => Some(Ok(i64::MIN)),
            (true, false) => Some(change_log::mark(tx)),
        };
        if let Err(e) = tx
            .prepare_cached(&format!("SAVEPOINT {JOB_SAVEPOINT}"))
            .and_then(|mut s| s.execute([]))
        {
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
        // A writer beside the daemon leaves its rows in the log: the daemon publishes them.
        let changes = match mark {
            None => Ok(change_log::Drained::default()),
            Some(mark) => mark.and_then(|after| change_log::drain(tx, after)),
        };
        let prepared = match (changes, outcome.new_day) {
            (Err(e), _) => Err(self.classify(e)),
            (Ok(drained), None) if drained.changes.is_empty() => Ok(None),
            (Ok(drained), new_day) => self
                .prepare(tx, &drained)
                .map(|mut p| {
                    p.set.new_day = new_day;
                    Some(p)
                })
                .map_err(|e| self.classify(e)),
        };
        let released = prepared.and_then(|p| {
            tx.prepare_cached(&format!("RELEASE {JOB_SAVEPOINT}"))
                .and_then(|mut s| s.execute([]))
                .map(|_| p)
                .map_err(|e| schema::unavailable(&self.path, e))
        });
        match released {
            Ok(prepared) => {
                // Later jobs of the batch compare category names with this job's result.
                let set = prepared.map(|p| {
                    for (id, name) in p.names {
                        let before = self.names.set(id, name);
                        self.undo.push((id, before));
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

    /// Undo the current job's savepoint (its rows and their change-log entries).
    fn rollback_savepoint(&mut self, tx: &Transaction<'_>) {
        let sql = format!("ROLLBACK TO {JOB_SAVEPOINT}; RELEASE {JOB_SAVEPOINT}");
        if let Err(e) = tx.execute_batch(&sql) {
            tracing::error!(error = %e, "cannot roll back a write job's savepoint");
        }
    }

    /// Put back the category names the current batch changed (its COMMIT failed, or it
    /// panicked): the rows are as they were before the batch.
    pub(super) fn undo_names(&mut self) {
        while let Some((id, name)) = self.undo.pop() {
            self.names.set(id, name);
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

/// The job that publishes other processes' commits: it writes nothing; its change set is the
/// change log as it stands. Nobody waits for its answer; a failure leaves the log for the
/// next try.
fn foreign_commits() -> Job {
    Box::new(|_| Outcome {
        commit: true,
        new_day: None,
        reply: Box::new(|failed| {
            if let Some(e) = failed {
                tracing::warn!(error = %e, "could not publish another process's commit yet");
            }
        }),
    })
}
