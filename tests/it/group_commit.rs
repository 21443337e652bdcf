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
