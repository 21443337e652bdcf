//! Group commit in the writer: jobs queued together share one transaction, each in its own
//! savepoint. Every job that succeeds gets its own change set and `seq`, in queue order; a
//! job that fails or panics is rolled back alone.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kaffediem::clock::SystemClock;
use kaffediem::store::{
    records, ChangeFeed, ChangeSet, Collection, Op, RecordCtx, Store, StoreError, StoreOptions,
};
use serde_json::Value;

fn open(path: &Path) -> (Store, ChangeFeed) {
    Store::open(
        StoreOptions {
            path: path.to_owned(),
            readers: 1,
            records: RecordCtx::default(),
        },
        Arc::new(SystemClock),
    )
    .expect("open store")
}

async fn next(feed: &mut ChangeFeed) -> Arc<ChangeSet> {
    tokio::time::timeout(Duration::from_secs(10), feed.recv())
        .await
        .expect("a change set within 10 s")
        .expect("feed open")
}

fn insert(tx: &rusqlite::Transaction<'_>, title: &str) -> Result<i64, StoreError> {
    tx.execute("INSERT INTO message (title) VALUES (?1)", [title])?;
    Ok(tx.last_insert_rowid())
}

#[tokio::test]
async fn queued_jobs_commit_together_and_a_failing_one_is_rolled_back_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut feed) = open(&dir.path().join("kaffediem.db"));
    let w = &store.writer;
    // Keep the writer busy so that the next jobs queue up behind it and form one batch.
    let busy = w.write(|tx| {
        std::thread::sleep(Duration::from_millis(300));
        insert(tx, "first")
    });
    let created = w.write(|tx| insert(tx, "created"));
    let refused = w.write(|tx| {
        insert(tx, "refused")?;
        Err::<i64, _>(StoreError::Unavailable("refused on purpose".into()))
    });
    let crashed = w.write(|tx| -> Result<i64, StoreError> {
        insert(tx, "crashed")?;
        panic!("a bug in a batched job");
    });
    let edited = w.write(|tx| {
        let id = insert(tx, "draft")?;
        tx.execute("UPDATE message SET title = 'edited' WHERE id = ?1", [id])?;
        Ok::<_, StoreError>(id)
    });
    let (busy, created, refused, crashed, edited) =
        tokio::join!(busy, created, refused, crashed, edited);
    let (busy, created, edited) = (busy.unwrap(), created.unwrap(), edited.unwrap());
    assert!(matches!(refused, Err(StoreError::Unavailable(why)) if why == "refused on purpose"));
    assert!(matches!(crashed, Err(StoreError::Unavailable(_))));

    // One change set per successful job, gap-free, in queue order; the edit folded into its
    // create (the row did not exist before that job).
    let mut seen = Vec::new();
    for _ in 0..3 {
        let set = next(&mut feed).await;
        assert_eq!(set.changes.len(), 1, "{set:?}");
        let change = &set.changes[0];
        assert_eq!(
            (change.collection, change.op),
            (Collection::Message, Op::Create)
        );
        let title = change.record.as_ref().unwrap()["title"].clone();
        seen.push((set.seq, change.id, title));
    }
    assert_eq!(
        seen,
        vec![
            (1, busy, Value::from("first")),
            (2, created, Value::from("created")),
            (3, edited, Value::from("edited")),
        ]
    );
    let titles: Vec<Value> = store
        .readers
        .read(|conn| records::list(conn, Collection::Message, &RecordCtx::default()))
        .await
        .unwrap()
        .iter()
        .map(|m| m["title"].clone())
        .collect();
    assert_eq!(titles, vec!["created", "edited", "first"]);
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_update_in_the_same_batch_as_the_create_is_published_as_an_update() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut feed) = open(&dir.path().join("kaffediem.db"));
    let w = &store.writer;
    let busy = w.write(|tx| {
        std::thread::sleep(Duration::from_millis(300));
        insert(tx, "busy")
    });
    let create = w.write(|tx| insert(tx, "ny"));
    // Same batch: the row was created by the job before, so this is an update.
    let update = w.write(|tx| {
        tx.execute("UPDATE message SET title = 'endret' WHERE title = 'ny'", [])?;
        Ok::<_, StoreError>(())
    });
    let (busy, create, update) = tokio::join!(busy, create, update);
    let (_, id) = (busy.unwrap(), create.unwrap());
    update.unwrap();
    next(&mut feed).await;
    let set = next(&mut feed).await;
    assert_eq!(
        (set.seq, set.changes[0].id, set.changes[0].op),
        (2, id, Op::Create)
    );
    let set = next(&mut feed).await;
    assert_eq!(
        (set.seq, set.changes[0].id, set.changes[0].op),
        (3, id, Op::Update)
    );
    store.shutdown().await.unwrap();
}

/// A job in a batch sees the rows of the earlier jobs of its batch (its transaction) but a
/// separate connection does not (they are not committed yet): how many jobs came before it
/// in the same transaction.
fn earlier_in_batch(tx: &rusqlite::Transaction<'_>, db: &Path) -> Result<i64, StoreError> {
    let mine: i64 = tx.query_row("SELECT count(*) FROM message", [], |r| r.get(0))?;
    let outside = rusqlite::Connection::open(db)?;
    let committed: i64 = outside.query_row("SELECT count(*) FROM message", [], |r| r.get(0))?;
    insert(tx, "queued")?;
    Ok(mine - committed)
}

/// The watcher's wake-ups (the database directory changed: our own commits, a backup, the
/// shell) land in the writer's queue between jobs. They must not split the jobs queued
/// behind a slow commit into several commits: on an SD card each commit is an fsync of
/// milliseconds, and 16 waiting tills would wait for 16 of them (issue 14).
#[tokio::test]
async fn a_wake_up_between_queued_jobs_does_not_split_their_commit() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kaffediem.db");
    let (store, _feed) = open(&db);
    let w = store.writer.clone();
    // The writer is busy (a slow commit) until the test lets go.
    let (release, released) = std::sync::mpsc::channel::<()>();
    let (started, running) = tokio::sync::oneshot::channel::<()>();
    let busy = {
        let w = w.clone();
        async move {
            w.write(move |tx| {
                let _ = started.send(());
                let _ = released.recv_timeout(Duration::from_secs(10));
                insert(tx, "busy")
            })
            .await
        }
    };
    let first: Vec<_> = (0..20)
        .map(|_| {
            let (w, db) = (w.clone(), db.clone());
            async move { w.write(move |tx| earlier_in_batch(tx, &db)).await }
        })
        .collect();
    // Polling the writes once queues them, in this order (one thread: tasks run in turn).
    let busy = tokio::spawn(busy);
    running.await.unwrap();
    let first = tokio::spawn(futures_util::future::join_all(first));
    tokio::task::yield_now().await;
    // Something changes the database file (as a backup or the shell would): the watcher
    // queues a wake-up behind the first twenty jobs.
    std::fs::File::options()
        .append(true)
        .open(&db)
        .unwrap()
        .set_modified(std::time::SystemTime::now())
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second: Vec<_> = (0..20)
        .map(|_| {
            let (w, db) = (w.clone(), db.clone());
            async move { w.write(move |tx| earlier_in_batch(tx, &db)).await }
        })
        .collect();
    let second = tokio::spawn(futures_util::future::join_all(second));
    tokio::task::yield_now().await;
    release.send(()).unwrap();
    busy.await.unwrap().unwrap();
    let first: Vec<i64> = first
        .await
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let second: Vec<i64> = second
        .await
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    // All forty queued behind the slow commit went into the next commit together.
    assert_eq!(first, (0..20).collect::<Vec<i64>>());
    assert_eq!(second, (20..40).collect::<Vec<i64>>());
    store.shutdown().await.unwrap();
}

/// Writes queued behind a slow commit share the next one: twenty tills' orders cost one
/// durable commit, not twenty (what `/metrics` counts as `kaffediem_writer_commits_total`).
#[tokio::test]
async fn writes_queued_together_are_counted_as_one_commit() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _feed) = open(&dir.path().join("kaffediem.db"));
    let w = &store.writer;
    let commits = || {
        w.counts()
            .commits
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let before = commits();
    let (started, running) = tokio::sync::oneshot::channel::<()>();
    let busy = tokio::spawn({
        let w = w.clone();
        async move {
            w.write(move |tx| {
                let _ = started.send(());
                std::thread::sleep(Duration::from_millis(300));
                insert(tx, "busy")
            })
            .await
        }
    });
    running.await.unwrap();
    let queued: Vec<_> = (0..20)
        .map(|n| w.write(move |tx| insert(tx, &format!("till {n}"))))
        .collect();
    let queued = futures_util::future::join_all(queued).await;
    busy.await.unwrap().unwrap();
    assert!(queued.iter().all(Result::is_ok));
    // The slow one, then the twenty together.
    assert_eq!(commits() - before, 2);
    store.shutdown().await.unwrap();
}
