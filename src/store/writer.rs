//! The single writer: one connection owned by one std thread. Every write of the daemon is a
//! job run there inside its own `BEGIN IMMEDIATE` transaction; every commit (ours, or another
//! process's that we notice) becomes one [`ChangeSet`] on the change feed.
//!
//! Our commits: the schema's triggers log every collection row a job changes in the change
//! log (`change_log`); on `Ok` the job's log rows are taken and its rows read back (inside
//! the transaction, so the records are exactly what this commit wrote, whatever another
//! process does next), `seq` is bumped, the transaction commits, and the change set is sent.
//! On `Err`, a panic or a failed commit, everything rolls back, log rows included.
//! Items carry their category's name, so a commit that changes a category's name also reads
//! back that category's items (`capture::CategoryNames`).
//!
//! Foreign commits: the same triggers log another process's row changes, which stay in the
//! log until the writer publishes them. `PRAGMA data_version` on this connection changes only
//! when another connection commits; it is checked whenever `notify` reports a write to the
//! database or its WAL and at least once a second, and then a non-empty log is published as a
//! change set of its own. Every batch also looks at the log under its write lock and
//! publishes what it holds first, so a foreign commit is never folded into ours. The cost is
//! the rows changed, never the size of the history. A writer opened beside a running daemon
//! (`kaffediem user`, `demo`) leaves the log to the daemon.
//!
//! Group commit: the loop drains the jobs already queued (up to [`MAX_BATCH`]) into one
//! transaction, each inside its own `SAVEPOINT`: released on `Ok` (with the job's own `seq`,
//! read-back rows and change set), rolled back on `Err` or a panic without touching the
//! others. After the single durable COMMIT the change sets go onto the feed in order and
//! every job is answered. A lone job costs what it did before; under concurrent load one
//! fsync serves the whole batch (measured in `BENCHMARKS.md`), and after a commit that
//! answered several jobs the next batch waits a moment for as many ([`Gather`]).
//! [`Writer::write`] is unchanged.
//!
//! Where each part lives: this file, the handle ([`Writer`]), the thread's state and its loop,
//! and the final checkpoint; `batch`, group commit with savepoints; `readback`, `seq` and the
//! read-back of a commit's rows; `foreign`, noticing and publishing other processes' commits;
//! `wake`, the file watcher and the heartbeat; `checkpointer`, WAL checkpoints on a thread of
//! their own, out of the commits.

mod batch;
mod checkpointer;
mod foreign;
mod readback;
mod wake;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{Connection, Transaction};
use tokio::sync::{mpsc::UnboundedSender, oneshot};

use super::capture::{self, CategoryNames};
use super::{change_log, schema, ChangeSet, RecordCtx, StoreError};
use checkpointer::Checkpointer;
pub use checkpointer::{WAL_LIMIT_PAGES, WAL_PAGES};
use foreign::data_version;
use wake::{watch, Pulse, FOREIGN_POLL, SETTLE};

/// Most jobs committed together. Jobs already waiting are taken (and, after a commit that
/// answered several, those that arrive within [`Gather`]'s moment), so this only bounds how
/// long the first job of a burst waits for its answer.
const MAX_BATCH: usize = 256;

/// After a commit that answered several jobs, the writer waits for as many again for up to
/// this share of that commit's time (see [`Gather`])...
const GATHER_SHARE: u32 = 2;
/// ...and never longer than this.
const GATHER_CAP: Duration = Duration::from_millis(10);

/// What the writer counts, for `/metrics` and for tests (counts, not timings).
#[derive(Debug, Default)]
pub struct WriterCounts {
    /// Durable COMMITs of the daemon's own writes (one per batch).
    pub commits: AtomicU64,
    /// Batches that waited for the tills the commit before had answered ([`Gather`]).
    pub commit_waits: AtomicU64,
    /// WAL checkpoints run by the checkpointer thread (never inside a commit).
    pub checkpoints: AtomicU64,
    /// WAL checkpoints the writer ran itself between two batches, because unbroken load had
    /// kept the checkpointer's from completing until the WAL held [`WAL_LIMIT_PAGES`].
    pub writer_checkpoints: AtomicU64,
    /// Wake-ups the file watcher delivered to the writer's queue (the database or its WAL
    /// changed, the daemon's own commits included).
    pub wakeups: AtomicU64,
    /// Looks for other processes' commits (`PRAGMA data_version`): before every batch, at a
    /// wake-up, [`SETTLE`] after one, and once a second.
    pub foreign_checks: AtomicU64,
}

/// After a commit that answered `jobs` jobs (more than one), the next batch waits until
/// `until` for that many to be queued (each answered till sends its next order about now),
/// instead of committing the first one alone while the others queue behind it: under steady
/// load that alternation costs every till two fsyncs per order (issue 14). The wait is a
/// share of the commit's own time, so on a fast disk it is next to nothing; a lone till
/// (one job per commit) never waits. Like PostgreSQL's `commit_delay` with `commit_siblings`.
#[derive(Clone, Copy)]
struct Gather {
    until: Instant,
    jobs: usize,
}
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
    counts: Arc<WriterCounts>,
    /// `database.external_replication`: the replicator checkpoints, the daemon never does.
    replicated: Arc<AtomicBool>,
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
    /// Publish pending foreign commits now, then answer ([`Writer::publish_foreign_now`]).
    PublishForeign(oneshot::Sender<()>),
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
        publishes: bool,
    ) -> Result<Writer, StoreError> {
        let seq = capture::recover_seq(&conn, None)?;
        let data_version = data_version(&conn)?;
        if publishes {
            // Written while no daemon ran: in every snapshot already, and nobody to tell.
            let stale = change_log::discard(&conn)?;
            if stale > 0 {
                tracing::info!(
                    rows = stale,
                    "changes made while the daemon was stopped are served by snapshots"
                );
            }
        }
        let names = CategoryNames::scan(&conn)?;
        let counts = Arc::new(WriterCounts::default());
        let replicated = Arc::new(AtomicBool::new(false));
        // The daemon's writer checkpoints on a thread of its own, out of its commits.
        let checkpointer = if publishes {
            checkpointer::take_over(&conn)?;
            Some(Checkpointer::start(
                path,
                Arc::clone(&counts),
                Arc::clone(&replicated),
            )?)
        } else {
            None
        };
        let (queue, inbox) = mpsc::channel();
        let wake_pending = Arc::new(AtomicBool::new(false));
        let watcher = watch(path, queue.clone(), Arc::clone(&wake_pending));
        let path = path.to_owned();
        let closed = Arc::new(AtomicBool::new(false));
        let pulse = Arc::new(Pulse::new());
        let beating = Arc::clone(&pulse);
        let (engine_counts, engine_replicated) = (Arc::clone(&counts), Arc::clone(&replicated));
        let thread = std::thread::Builder::new()
            .name("kaffediem-writer".into())
            .spawn(move || {
                let _watcher = watcher;
                let mut engine = Engine {
                    conn: Rc::new(conn),
                    path,
                    ctx,
                    names,
                    data_version,
                    seq,
                    feed,
                    undo: Vec::new(),
                    publishes,
                    foreign_left: false,
                    pulse: beating,
                    counts: engine_counts,
                    replicated: engine_replicated,
                    checkpointer,
                    gather: None,
                    wake_pending,
                };
                engine.run(inbox);
            })
            .map_err(|e| StoreError::Unavailable(format!("cannot start the writer: {e}")))?;
        Ok(Writer {
            inner: Arc::new(Inner {
                queue,
                thread: Mutex::new(Some(thread)),
                closed,
                observer: std::sync::OnceLock::new(),
                pulse,
                counts,
                replicated,
            }),
        })
    }

    /// Have `observe` told how long every answered write took, from submission to its answer
    /// (queueing, the transaction and the durable commit). Set once; later calls are ignored.
    pub fn observe_with(&self, observe: impl Fn(Duration) + Send + Sync + 'static) {
        let _ = self.inner.observer.set(Box::new(observe));
    }

    /// Database pages the writer's connection has looked at since it opened, as of its last
    /// round or publication: a count (not a timing) of the work its commits and its search
    /// for other processes' commits cost, for tests that hold it independent of the history.
    pub fn pages_read(&self) -> u64 {
        self.inner.pulse.pages()
    }

    /// What the writer has counted so far (commits, waits, checkpoints).
    pub fn counts(&self) -> Arc<WriterCounts> {
        Arc::clone(&self.inner.counts)
    }

    /// `database.external_replication`: from now on the daemon checkpoints nothing, neither
    /// on the checkpointer thread nor at shutdown ([`super::replication`]).
    pub(crate) fn leave_checkpoints(&self) {
        self.inner.replicated.store(true, Ordering::SeqCst);
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

    /// Publish now what another process committed and the writer has not published yet (it
    /// would within a second anyway); answers once it is on the change feed. For a reader
    /// that found unpublished rows ([`super::Store::snapshot`]).
    pub async fn publish_foreign_now(&self) -> Result<(), StoreError> {
        let (done, published) = oneshot::channel();
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(StoreError::Closed);
        }
        self.inner
            .queue
            .send(Msg::PublishForeign(done))
            .map_err(|_| StoreError::Closed)?;
        published.await.map_err(|_| StoreError::Closed)
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
    /// Category names as of the last commit we published (items show them).
    names: CategoryNames,
    /// `PRAGMA data_version` when the writer last looked for other processes' commits.
    data_version: i64,
    /// The last `seq` published: the next is above it whatever the stored one says (a shell
    /// may set it to `'abc'` or lower it), so a `seq` is never handed out twice.
    seq: u64,
    feed: UnboundedSender<Arc<ChangeSet>>,
    /// Category names as they were before the current batch changed them (see `undo_names`).
    undo: Vec<(i64, Option<String>)>,
    /// This is the daemon's writer: it drains the change log and publishes. A writer beside
    /// a running daemon (`kaffediem user`, `demo`) leaves the log to the daemon, which
    /// publishes its commits like any other process's.
    publishes: bool,
    /// The change log still held rows after the last try to publish them (a read-back
    /// failed): look again at the next tick, even if nobody committed since.
    foreign_left: bool,
    /// The heartbeat and page count the handle reads; pages are counted before every
    /// publication, so a test that saw a change set reads a count that includes its work.
    pulse: Arc<Pulse>,
    counts: Arc<WriterCounts>,
    replicated: Arc<AtomicBool>,
    /// Checkpoints the WAL off this thread; `None` for a writer beside a running daemon.
    checkpointer: Option<Checkpointer>,
    /// Set by a commit that answered several jobs: how long the next batch may wait for them.
    gather: Option<Gather>,
    /// A wake-up from the watcher is queued ([`watch`]); cleared when it is taken.
    wake_pending: Arc<AtomicBool>,
}

impl Engine {
    fn run(&mut self, inbox: mpsc::Receiver<Msg>) {
        let mut next_check = Instant::now() + FOREIGN_POLL;
        // A message taken off the queue while collecting a batch, handled next.
        let mut held: Option<Msg> = None;
        loop {
            self.pulse.beat();
            self.pulse.count_pages(&self.conn);
            let wait = next_check.saturating_duration_since(Instant::now());
            let msg = match held.take() {
                Some(msg) => Ok(msg),
                None => inbox.recv_timeout(wait),
            };
            match msg {
                Ok(Msg::Job(job)) => {
                    let mut batch = vec![job];
                    let gather = self.gather.take();
                    let mut waited = false;
                    while batch.len() < MAX_BATCH {
                        let msg = match inbox.try_recv() {
                            Ok(msg) => Some(msg),
                            Err(TryRecvError::Disconnected) => None,
                            Err(TryRecvError::Empty) => match gather {
                                Some(g) if batch.len() < g.jobs => {
                                    let left = g.until.saturating_duration_since(Instant::now());
                                    waited |= !left.is_zero();
                                    inbox.recv_timeout(left).ok()
                                }
                                _ => None,
                            },
                        };
                        match msg {
                            Some(Msg::Job(job)) => batch.push(job),
                            // Served by the check right before the batch. Breaking here
                            // would split the jobs queued behind a slow commit into one
                            // fsync each (every commit of ours wakes the watcher).
                            Some(Msg::Wake) => {
                                self.take_wake();
                                next_check = Instant::now() + SETTLE;
                            }
                            Some(other) => {
                                held = Some(other);
                                break;
                            }
                            None => break,
                        }
                    }
                    if waited {
                        self.counts.commit_waits.fetch_add(1, Ordering::Relaxed);
                    }
                    // A foreign commit still in the log is published first, in the batch.
                    if self.publishes {
                        self.notice_foreign();
                    }
                    // A bug past the jobs themselves (reading back, the menu) must not take the
                    // writer down either: the transaction rolls back as the stack unwinds.
                    if catch_unwind(AssertUnwindSafe(|| self.run_batch(batch))).is_err() {
                        tracing::error!("the writer panicked while committing; rolled back");
                        self.undo_names();
                    }
                }
                Ok(Msg::PublishForeign(done)) => {
                    self.check_foreign();
                    let _ = done.send(());
                }
                Ok(Msg::Wake) => {
                    self.take_wake();
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

    /// A wake-up from the watcher was taken off the queue: the next change queues another.
    fn take_wake(&self) {
        self.wake_pending.store(false, Ordering::Release);
        self.counts.wakeups.fetch_add(1, Ordering::Relaxed);
    }

    fn checkpoint(&mut self) -> Result<(), StoreError> {
        self.check_foreign();
        // Its checkpoint would only make this one wait.
        if let Some(mut checkpointer) = self.checkpointer.take() {
            checkpointer.stop();
        }
        // database.external_replication: the WAL is Litestream's to checkpoint.
        if self.replicated.load(Ordering::SeqCst) {
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
