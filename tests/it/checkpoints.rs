//! WAL checkpoints out of the acknowledgement path (issue 14): the checkpointer thread copies
//! the WAL into the database file while the writer goes on committing, the WAL stays bounded
//! under unbroken load, and with `database.external_replication` the daemon checkpoints
//! nothing at all (Litestream does).

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde_json::json;

use kaffediem::clock::SystemClock;
use kaffediem::store::writer::{WAL_LIMIT_PAGES, WAL_PAGES};
use kaffediem::store::{replication, RecordCtx, Store, StoreError, StoreOptions};

use crate::support::http::call;
use crate::support::Daemon;

/// SQLite's page size, which the daemon leaves at its default.
const PAGE: u64 = 4096;

/// Rows the filler jobs overwrite, and the size of what each job writes (64 pages).
const ROWS: i64 = 16;
const BLOB: i64 = 256 * 1024;

fn open(path: &Path) -> Store {
    let (store, feed) = Store::open(
        StoreOptions {
            path: path.to_owned(),
            readers: 1,
            records: RecordCtx::default(),
        },
        Arc::new(SystemClock),
    )
    .expect("open store");
    drop(feed); // Nothing here subscribes.
    store
}

fn wal(db: &Path) -> PathBuf {
    PathBuf::from(format!("{}-wal", db.display()))
}

fn len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// A table of `ROWS` rows outside the collections (no change log, nothing published).
async fn filler(store: &Store) {
    store
        .writer
        .write(|tx| {
            tx.execute_batch("CREATE TABLE filler (id INTEGER PRIMARY KEY, b BLOB)")?;
            for id in 0..ROWS {
                tx.execute("INSERT INTO filler VALUES (?1, zeroblob(?2))", [id, BLOB])?;
            }
            Ok::<_, StoreError>(())
        })
        .await
        .expect("filler table");
}

/// Sixteen writers overwrite the filler rows back to back (unbroken load, no lull) until the
/// WAL pages written reach `pages`; returns the largest the WAL file was seen at.
async fn overwrite(store: &Store, db: &Path, pages: i64) -> u64 {
    let jobs = pages / (BLOB / PAGE as i64) + 1;
    let next = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let mut tills = tokio::task::JoinSet::new();
    for _ in 0..ROWS {
        let (writer, next, wal) = (store.writer.clone(), Arc::clone(&next), wal(db));
        tills.spawn(async move {
            let mut largest = 0;
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= jobs {
                    return largest;
                }
                writer
                    .write(move |tx| {
                        // Random: SQLite skips writing pages whose bytes did not change.
                        tx.execute(
                            "UPDATE filler SET b = randomblob(?1) WHERE id = ?2",
                            [BLOB, n % ROWS],
                        )?;
                        Ok::<_, StoreError>(())
                    })
                    .await
                    .expect("overwrite");
                largest = largest.max(len(&wal));
            }
        });
    }
    let mut largest = 0;
    while let Some(seen) = tills.join_next().await {
        largest = largest.max(seen.expect("till"));
    }
    largest
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_is_checkpointed_off_the_writer_and_stays_bounded_under_unbroken_load() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kaffediem.db");
    let store = open(&db);
    filler(&store).await;
    // Three times what the writer lets the WAL reach before it checkpoints itself.
    let written = 3 * WAL_LIMIT_PAGES;
    let largest = overwrite(&store, &db, written).await;
    let counts = store.writer.counts();
    let by_checkpointer = counts.checkpoints.load(Ordering::Relaxed);
    assert!(by_checkpointer >= 1, "the checkpointer never ran");
    // The limit and the batch that crossed it (sixteen jobs of 65 pages), with room to spare.
    let bound = (WAL_LIMIT_PAGES + WAL_PAGES / 2) as u64 * PAGE;
    assert!(
        largest <= bound,
        "the WAL grew to {largest} bytes (bound {bound}, written {} bytes)",
        written as u64 * PAGE
    );
    store.shutdown().await.unwrap();
    assert_eq!(len(&wal(&db)), 0, "the clean stop still empties the WAL");
}

/// With `database.external_replication` (Litestream) the daemon copies nothing into the
/// database file, however long the WAL grows, and leaves the WAL at its stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_external_replication_nothing_is_ever_checkpointed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kaffediem.db");
    let store = open(&db);
    replication::leave_checkpoints_to_replicator(&store.writer)
        .await
        .unwrap();
    filler(&store).await;
    let before = std::fs::read(&db).unwrap();
    overwrite(&store, &db, WAL_LIMIT_PAGES + WAL_PAGES).await;
    // Another connection holds the file open (as Litestream would), so that the last close
    // does not checkpoint it either.
    let replicator = rusqlite::Connection::open(&db).unwrap();
    store.shutdown().await.unwrap();
    let counts = store.writer.counts();
    assert_eq!(counts.checkpoints.load(Ordering::Relaxed), 0);
    assert_eq!(counts.writer_checkpoints.load(Ordering::Relaxed), 0);
    assert!(
        std::fs::read(&db).unwrap() == before,
        "the database file changed: something checkpointed"
    );
    assert!(len(&wal(&db)) > WAL_LIMIT_PAGES as u64 * PAGE);
    drop(replicator);
}

/// One till placing orders one after another never waits for company: every commit is its
/// own, and `/metrics` counts no commit-delay wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_writer_never_waits_for_others() {
    let daemon = Daemon::start(false, |_| {}).await;
    let metric = |body: &str, sample: &str| -> u64 {
        body.lines()
            .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no sample {sample} in:\n{body}"))
    };
    let scrape = || async {
        call(daemon.addr, "GET", "/metrics")
            .header("authorization", "Bearer admin-secret")
            .send()
            .await
            .text()
    };
    let before = metric(&scrape().await, "kaffediem_writer_commits_total");
    for n in 0..30 {
        let reply = call(daemon.addr, "POST", "/api/collections/message/records")
            .header("authorization", "Bearer admin-secret")
            .json(&json!({ "title": format!("alene {n}") }))
            .send()
            .await;
        assert_eq!(reply.status.as_u16(), 201, "{}", reply.text());
    }
    let body = scrape().await;
    assert_eq!(metric(&body, "kaffediem_writer_commits_total") - before, 30);
    assert_eq!(metric(&body, "kaffediem_writer_commit_waits_total"), 0);
    assert_eq!(
        metric(&body, "kaffediem_wal_checkpoints_total{by=\"writer\"}"),
        0
    );
    daemon.stop().await;
}
