//! The single writer: one connection owned by one std thread. Every write of the daemon is a
//! job run there inside its own `BEGIN IMMEDIATE` transaction; every commit (ours, or another
//! process's that we notice) becomes one [`ChangeSet`] on the change feed.
//!
//! Our commits: the update hook buffers touched rows; on `Ok` the rows are read back (inside
//! the transaction, so the records are exactly what this commit wrote, whatever another
//! process does next), `seq` is bumped, the transaction commits, and the change set is sent.
//! On `Err`, a panic or a failed commit, everything rolls back and the buffer is dropped.
//! Items carry their category's name, so a commit that changes a category's name also reads
//! back that category's items (`capture::CategoryNames`).
//!
//! Foreign commits: `PRAGMA data_version` on this connection changes only when another
//! connection commits. It is checked before every job, whenever `notify` reports a write to
//! the database or its WAL, and at least once a second; a change triggers a diff of the
//! collection tables against the shadow (see `capture`) — unless `collections_version`, a
//! counter the schema's triggers bump on every collection row change, has not moved.
//!
//! Group commit: the loop drains the jobs already queued (up to [`MAX_BATCH`]) into one
//! transaction, each inside its own `SAVEPOINT`: released on `Ok` (with the job's own `seq`,
//! read-back rows and change set), rolled back on `Err` or a panic without touching the
//! others. After the single durable COMMIT the change sets go onto the feed in order and
//! every job is answered. A lone job costs what it did before; under concurrent load one
//! fsync serves the whole batch (measured in `BENCHMARKS.md`). [`Writer::write`] is unchanged.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{Connection, Transaction, TransactionBehavior};
use tokio::sync::{mpsc::UnboundedSender, oneshot};

use super::capture::{self, CategoryNames, HookBuffer, RowChange, Shadow};
use super::{menu, records, schema, Change, ChangeSet, Collection, Op, RecordCtx, StoreError};

/// How often the writer looks for foreign commits when nothing else wakes it.
const FOREIGN_POLL: Duration = Duration::from_secs(1);

/// How soon after a file event the writer looks again. The events come from the WAL writes;
/// the commit becomes visible only when the other process then updates the shared-memory
/// index, which raises no event, so the check made at the event itself can be too early.
const SETTLE: Duration = Duration::from_millis(30);

/// Most jobs committed together. Only jobs already waiting are taken (the writer never waits
/// for more), so this only bounds how long the first job of a burst waits for its answer.
const MAX_BATCH: usize = 256;

/// Savepoint wrapping each job of a batch (jobs may nest their own under other names).
const JOB_SAVEPOINT: &str = "kaffediem_job";

/// Handle to the writer thread. Cheap to clone.
#[derive(Clone)]
pub struct Writer {
    inner: Arc<Inner>,
}

struct Inner {
    /// The writer thread's queue: jobs, wake-ups from the file watcher, shutdown.
    queue: mpsc::Sender<Msg>,
    /// Joined by [`Writer::shutdown`].
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Set when shutdown starts, so that a job dropped unanswered reports `Closed`.
    closed: Arc<AtomicBool>,
    /// Told how long each answered write took, queueing included (for `/metrics`).
    observer: std::sync::OnceLock<Box<dyn Fn(Duration) + Send + Sync>>,
    pulse: Arc<Pulse>,
}

/// When the writer thread last came round its loop: at least once a second while idle, after
/// every batch while busy. A watchdog can tell a stuck writer from a quiet one by it.
struct Pulse {
    epoch: Instant,
    /// Milliseconds since `epoch` at the last round.
    last_ms: std::sync::atomic::AtomicU64,
}

impl Pulse {
    fn new() -> Pulse {
        Pulse {
            epoch: Instant::now(),
            last_ms: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn beat(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.last_ms.store(now, Ordering::Relaxed);
    }

    fn since(&self) -> Duration {
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last)
    }
}

impl Drop for Inner {
    /// The last handle gone: let the thread finish its queue and stop. (The watcher holds a
    /// sender too, so the queue alone would never disconnect.)
    fn drop(&mut self) {
        let _ = self.queue.send(Msg::Stop);
    }
}

enum Msg {
    Job(Job),
    /// The watcher saw the database or its WAL change.
    Wake,
    /// Finish the queue, checkpoint, answer, stop.
    Shutdown(oneshot::Sender<Result<(), StoreError>>),
    /// The last handle was dropped.
    Stop,
}

/// A type-erased write job: given the open transaction (or why none could be opened), run
/// the caller's closure and say whether to commit, and how to answer afterwards.
type Job = Box<dyn FnOnce(Result<&Transaction<'_>, StoreError>) -> Outcome + Send>;

struct Outcome {
    commit: bool,
    /// The café day this commit opens ([`Writer::open_day`]): published even though no row
    /// changed, so the midnight roll-over has a `seq` of its own.
    new_day: Option<jiff::civil::Date>,
    /// Called after COMMIT (`None`: committed) or with why the commit failed.
    reply: Reply,
}

type Reply = Box<dyn FnOnce(Option<StoreError>) + Send>;

impl Writer {
    /// Start the writer thread on `conn` (already migrated) and the watcher of `path`.
    pub(crate) fn start(
        conn: Connection,
        path: &Path,
        ctx: RecordCtx,
        feed: UnboundedSender<Arc<ChangeSet>>,
    ) -> Result<Writer, StoreError> {
        let hook = HookBuffer::default();
        hook.install(&conn);
        let seq = capture::recover_seq(&conn, None)?;
        // Baseline for foreign writes: data_version first, then the scan, so that a commit
        // in between is seen as a (harmless, empty) change rather than missed.
        let data_version = data_version(&conn)?;
        let counted = collections_version(&conn)?;
        let shadow = Shadow::scan(&conn)?;
        let names = CategoryNames::scan(&conn)?;
        let (queue, inbox) = mpsc::channel();
        let watcher = watch(path, queue.clone());
        let path = path.to_owned();
        let closed = Arc::new(AtomicBool::new(false));
        let pulse = Arc::new(Pulse::new());
        let beating = Arc::clone(&pulse);
        let thread = std::thread::Builder::new()
            .name("kaffediem-writer".into())
            .spawn(move || {
                let _watcher = watcher;
                let mut engine = Engine {
                    conn: Rc::new(conn),
                    path,
                    ctx,
                    hook,
                    shadow,
                    names,
                    data_version,
                    counted,
                    seq,
                    feed,
                    undo: Vec::new(),
                    foreign_pending: false,
                };
                engine.run(inbox, &beating);
            })
            .map_err(|e| StoreError::Unavailable(format!("cannot start the writer: {e}")))?;
        Ok(Writer {
            inner: Arc::new(Inner {
                queue,
                thread: Mutex::new(Some(thread)),
                closed,
                observer: std::sync::OnceLock::new(),
                pulse,
            }),
        })
    }

    /// Have `observe` told how long every answered write took, from submission to its answer
    /// (queueing, the transaction and the durable commit). Set once; later calls are ignored.
    pub fn observe_with(&self, observe: impl Fn(Duration) + Send + Sync + 'static) {
        let _ = self.inner.observer.set(Box::new(observe));
    }

    /// How long ago the writer thread last came round its loop (it does at least once a
    /// second while idle). Long only while one batch runs, or if the thread is stuck.
    pub fn stalled_for(&self) -> Duration {
        self.inner.pulse.since()
    }

    /// Run `f` inside one write transaction on the writer thread. `Ok` commits: the commit
    /// gets the next `seq` and its changes are published on the change feed. `Err` rolls back
    /// and nothing is published.
    ///
    /// The answer comes after the change set is on the feed. A job that panics is rolled back
    /// and answered with [`StoreError::Unavailable`]; the writer carries on.
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        self.write_opening(None, f).await
    }

    /// Commit the start of café day `day` (the midnight roll-over): a commit that changes no
    /// row but takes the next `seq` and is published as a [`ChangeSet`] with `new_day`, so
    /// the `delete`s it causes on `"today"` screens carry a `seq` no earlier event had and
    /// land in the change log like any other change.
    pub async fn open_day(&self, day: jiff::civil::Date) -> Result<(), StoreError> {
        self.write_opening(Some(day), |_| Ok(())).await
    }

    /// [`Writer::write`], its commit also opening café day `new_day` when given.
    async fn write_opening<T, E, F>(&self, new_day: Option<jiff::civil::Date>, f: F) -> Result<T, E>
    where
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel::<Result<T, E>>();
        let job: Job = Box::new(move |tx| match tx.map(f) {
            Ok(Ok(value)) => Outcome {
                commit: true,
                new_day,
                reply: Box::new(move |failed| {
                    let _ = answer.send(match failed {
                        None => Ok(value),
                        Some(e) => Err(E::from(e)),
                    });
                }),
            },
            Ok(Err(e)) => Outcome {
                commit: false,
                new_day: None,
                reply: Box::new(move |_| {
                    let _ = answer.send(Err(e));
                }),
            },
            Err(e) => Outcome {
                commit: false,
                new_day: None,
                reply: Box::new(move |_| {
                    let _ = answer.send(Err(E::from(e)));
                }),
            },
        });
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(E::from(StoreError::Closed));
        }
        let started = Instant::now();
        self.inner
            .queue
            .send(Msg::Job(job))
            .map_err(|_| E::from(StoreError::Closed))?;
        let answer = answered.await;
        if let (Ok(_), Some(observe)) = (&answer, self.inner.observer.get()) {
            observe(started.elapsed());
        }
        match answer {
            Ok(result) => result,
            Err(_) if self.inner.closed.load(Ordering::SeqCst) => Err(E::from(StoreError::Closed)),
            Err(_) => Err(E::from(StoreError::Unavailable(
                "the write failed unexpectedly (a bug, logged); nothing was stored".into(),
            ))),
        }
    }

    /// Finish the queued jobs, checkpoint the WAL with TRUNCATE, stop and join the thread.
    /// Later writes answer [`StoreError::Closed`].
    pub async fn shutdown(&self) -> Result<(), StoreError> {
        if self.inner.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let (done, finished) = oneshot::channel();
        if self.inner.queue.send(Msg::Shutdown(done)).is_err() {
            return Ok(());
        }
        let result = finished.await.unwrap_or(Ok(()));
        let thread = self
            .inner
            .thread
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        result
    }
}

/// The writer thread's state.
struct Engine {
    /// Shared with the open transaction of a batch (`Rc`: this thread is its only user), so
    /// the engine's other fields stay mutable while a transaction borrows the connection.
    conn: Rc<Connection>,
    /// For error messages.
    path: PathBuf,
    ctx: RecordCtx,
    hook: HookBuffer,
    /// What the collection tables held after the last commit we published.
    shadow: Shadow,
    /// Category names as of the last commit we published (items show them).
    names: CategoryNames,
    /// `PRAGMA data_version` as of the shadow.
    data_version: i64,
    /// `collections_version` (bumped by triggers on every collection row change, see
    /// `schema.sql`) as of the shadow; `None` if an admin deleted it (then always diff).
    counted: Option<i64>,
    /// The last `seq` published: the next is above it whatever the stored one says (a shell
    /// may set it to `'abc'` or lower it), so a `seq` is never handed out twice.
    seq: u64,
    feed: UnboundedSender<Arc<ChangeSet>>,
    /// Shadow entries as they were before the current batch (see `undo_shadow`).
    undo: Vec<Undo>,
    /// Another process committed between the last foreign check and this batch's BEGIN: our
    /// commits must not mark its rows published (a snapshot would then hold rows whose
    /// change set is still to come, and its screen would get them twice).
    foreign_pending: bool,
}

/// One shadow entry as it was before the current batch changed it.
enum Undo {
    Row(Collection, i64, Option<u64>),
    CategoryName(i64, Option<String>),
}

/// What [`Engine::prepare`] read inside the transaction: the change set, and what the shadow
/// and the category names become once it is published.
struct Prepared {
    set: ChangeSet,
    /// Each changed row's new hash (`None`: the row is gone).
    hashes: Vec<(Collection, i64, Option<u64>)>,
    /// Each category whose name changed, with the new one (`None`: the category is gone).
    names: Vec<(i64, Option<String>)>,
}

impl Engine {
    fn run(&mut self, inbox: mpsc::Receiver<Msg>, pulse: &Pulse) {
        let mut next_check = Instant::now() + FOREIGN_POLL;
        // A message taken off the queue while collecting a batch, handled next.
        let mut held: Option<Msg> = None;
        loop {
            pulse.beat();
            let wait = next_check.saturating_duration_since(Instant::now());
            let msg = match held.take() {
                Some(msg) => Ok(msg),
                None => inbox.recv_timeout(wait),
            };
            match msg {
                Ok(Msg::Job(job)) => {
                    let mut batch = vec![job];
                    while batch.len() < MAX_BATCH {
                        match inbox.try_recv() {
                            Ok(Msg::Job(job)) => batch.push(job),
                            Ok(other) => {
                                held = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    // Publish a foreign commit first, so it is not mistaken for ours.
                    self.check_foreign();
                    // A bug past the jobs themselves (reading back, the menu) must not take the
                    // writer down either: the transaction rolls back as the stack unwinds.
                    if catch_unwind(AssertUnwindSafe(|| self.run_batch(batch))).is_err() {
                        tracing::error!("the writer panicked while committing; rolled back");
                        self.hook.take();
                        self.undo_shadow();
                    }
                }
                Ok(Msg::Wake) => {
                    self.check_foreign();
                    next_check = Instant::now() + SETTLE;
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.check_foreign();
                    next_check = Instant::now() + FOREIGN_POLL;
                }
                Ok(Msg::Shutdown(done)) => {
                    let _ = done.send(self.checkpoint());
                    break;
                }
                Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => {
                    let _ = self.checkpoint();
                    break;
                }
            }
        }
        tracing::debug!("writer thread stopped");
    }

    /// Run `jobs` in one transaction, each in its own savepoint; commit once; publish one
    /// change set per committed job, in order; then answer every job.
    fn run_batch(&mut self, jobs: Vec<Job>) {
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
    fn undo_shadow(&mut self) {
        while let Some(undo) = self.undo.pop() {
            match undo {
                Undo::Row(c, id, hash) => self.shadow.set(c, id, hash),
                Undo::CategoryName(id, name) => {
                    self.names.set(id, name);
                }
            }
        }
    }

    /// Inside the open transaction: bump `seq`, read the changed rows back (and the items of
    /// a renamed category, whose records changed with it), rebuild the menu if needed.
    fn prepare(&self, conn: &Connection, changes: &[RowChange]) -> Result<Prepared, StoreError> {
        let seq = capture::next_seq(conn, self.seq)?;
        // Everything the collections hold now is what this change set publishes: readers
        // compare this with `collections_version` to spot unpublished foreign commits.
        // Unless a foreign commit is still to be published: then readers must keep seeing it
        // as unpublished, so that they have the writer publish it first.
        if !self.foreign_pending {
            conn.execute(
            "INSERT INTO kaffediem_meta (key, value) \
             SELECT 'published_version', value FROM kaffediem_meta WHERE key = 'collections_version' \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                [],
            )?;
        }
        let mut out = Vec::with_capacity(changes.len());
        let mut hashes = Vec::with_capacity(changes.len());
        let colors = match changes.iter().any(|c| c.0 == Collection::Order) {
            true => Some(records::label_colors(conn)?),
            false => None,
        };
        for &(collection, id, op) in changes {
            let record = match op {
                Op::Delete => None,
                _ => records::get_with(conn, collection, id, &self.ctx, colors.as_ref())?,
            };
            let hash = match record {
                Some(_) => capture::row_hash(conn, collection, id)?,
                None => None,
            };
            hashes.push((collection, id, hash));
            // A row the hook saw written but that is gone now is a delete.
            let op = if record.is_none() { Op::Delete } else { op };
            out.push(Change {
                collection,
                id,
                op,
                record: record.map(Arc::new),
            });
        }
        let names = self.names.renamed(&out);
        if !names.is_empty() {
            capture::republish_items(conn, &self.ctx, &names, &mut out)?;
        }
        let menu = if changes.iter().any(|c| c.0.is_menu()) {
            Some(Arc::new(menu::build_published(conn, &self.ctx)?))
        } else {
            None
        };
        let set = ChangeSet {
            seq,
            changes: out,
            menu,
            new_day: None,
        };
        Ok(Prepared { set, hashes, names })
    }

    /// Publish what another process committed since we last looked, if anything.
    fn check_foreign(&mut self) {
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
        let _ = self.feed.send(Arc::new(prepared.set));
        Ok(())
    }

    fn checkpoint(&mut self) -> Result<(), StoreError> {
        self.check_foreign();
        // database.external_replication: the WAL is Litestream's to checkpoint.
        if super::replication::replicator_checkpoints(&self.conn) {
            return Ok(());
        }
        // The first column is 1 when another connection's read lock (Litestream's, say) kept
        // the WAL from being emptied within the busy timeout.
        let busy: i64 = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
            .map_err(|e| schema::unavailable(&self.path, e))?;
        if busy != 0 {
            tracing::warn!(
                "{}: the WAL could not be checkpointed: another process holds it open (Litestream? then set database.external_replication = true)",
                self.path.display()
            );
        }
        Ok(())
    }

    fn classify(&self, e: StoreError) -> StoreError {
        match e {
            StoreError::Sqlite(e) => schema::unavailable(&self.path, e),
            other => other,
        }
    }
}

/// The same error again, for the other jobs of a batch that failed as a whole.
fn copy(e: &StoreError) -> StoreError {
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

/// The `collections_version` counter kept by the triggers of `schema.sql`.
fn collections_version(conn: &Connection) -> Result<Option<i64>, StoreError> {
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

fn data_version(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row("PRAGMA data_version", [], |r| r.get(0))?)
}

/// Watch the database's directory and wake the writer when the file or its WAL changes.
/// Without a watcher (an unsupported file system) the once-a-second check still works.
fn watch(path: &Path, queue: mpsc::Sender<Msg>) -> Option<notify::RecommendedWatcher> {
    use notify::{EventKind, RecursiveMode, Watcher};

    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name()?.to_os_string();
    let mut wal = name.clone();
    wal.push("-wal");
    // Several events arrive per commit; each wake-up costs the writer one PRAGMA.
    let queue = Mutex::new(queue);
    let handler = move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if matches!(event.kind, EventKind::Access(_)) {
            return;
        }
        let ours = event
            .paths
            .iter()
            .any(|p| p.file_name().is_some_and(|n| n == name || n == wal));
        if ours {
            let _ = queue
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .send(Msg::Wake);
        }
    };
    let watcher = notify::recommended_watcher(handler).and_then(|mut w| {
        w.watch(&dir, RecursiveMode::NonRecursive)?;
        Ok(w)
    });
    match watcher {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, dir = %dir.display(), "cannot watch the database directory; checking for outside writes once a second");
            None
        }
    }
}
