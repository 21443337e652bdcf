//! Every kind of write another process can make to a collection reaches the change feed as
//! the right change, through the change log: shell writes to every collection, rows an
//! `INSERT OR REPLACE` replaces (by id and by the order's `uuid`), an id changed in place,
//! and the CLI writing beside a running daemon.

use kaffediem::store::orders::{OrderFacts, OrderState};
use kaffediem::store::{Collection, Op};
use serde_json::json;

use super::{next, open, ops, shell};
use crate::support::process::{text, Daemon, Site};
use crate::support::Socket;

/// One shell statement per collection and kind of change; each must come out as exactly
/// that change, with the next `seq`.
#[tokio::test]
async fn shell_creates_updates_and_deletes_in_every_collection_are_published() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kaffediem.db");
    let (store, mut feed) = open(&path);
    let sh = shell(&path);
    let mut seq = 0;
    let inserts = [
        (
            Collection::Category,
            "INSERT INTO category (id, name) VALUES (50, 'Te')",
        ),
        (
            Collection::Item,
            "INSERT INTO item (id, name, category_id) VALUES (50, 'Chai', 50)",
        ),
        (
            Collection::CustomizationKey,
            "INSERT INTO customization_key (id, name) VALUES (50, 'Melk')",
        ),
        (
            Collection::CustomizationValue,
            "INSERT INTO customization_value (id, name, belongs_to) VALUES (50, 'Havre', 50)",
        ),
        (
            Collection::Message,
            "INSERT INTO message (id, title) VALUES (50, 'Hei')",
        ),
        (
            Collection::Status,
            "INSERT INTO status (id, open) VALUES (50, 1)",
        ),
        (
            Collection::Order,
            r#"INSERT INTO "order" (id, items) VALUES (50, '[]')"#,
        ),
    ];
    assert_eq!(inserts.len(), Collection::ALL.len());
    for (collection, sql) in inserts {
        sh.execute(sql, []).expect(sql);
        let set = next(&mut feed).await;
        seq += 1;
        assert_eq!(set.seq, seq);
        assert_eq!(ops(&set), vec![(collection, 50, Op::Create)], "{sql}");
    }
    for collection in Collection::ALL {
        let table = format!("\"{}\"", collection.name());
        let sql =
            format!("UPDATE {table} SET updated_at = '2030-01-01T00:00:00.000Z' WHERE id = 50");
        sh.execute(&sql, []).expect(&sql);
        let set = next(&mut feed).await;
        seq += 1;
        assert_eq!(set.seq, seq);
        let changes = ops(&set);
        // A category's rename republishes its items; here only the category row changed.
        assert_eq!(changes[0], (collection, 50, Op::Update), "{sql}");
    }
    for collection in Collection::ALL.into_iter().rev() {
        let sql = format!("DELETE FROM \"{}\" WHERE id = 50", collection.name());
        sh.execute(&sql, []).expect(&sql);
        let set = next(&mut feed).await;
        seq += 1;
        assert_eq!(set.seq, seq);
        assert_eq!(ops(&set)[0], (collection, 50, Op::Delete), "{sql}");
    }
    store.shutdown().await.expect("shutdown");
}

/// Rows SQLite replaces or moves without firing DELETE triggers still come out right.
#[tokio::test]
async fn replaced_and_renumbered_rows_are_published_as_what_they_became() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kaffediem.db");
    let (store, mut feed) = open(&path);
    let sh = shell(&path);

    // The shell's way of setting the status: replace row 1 (it exists) → an update.
    sh.execute("INSERT OR REPLACE INTO status (id, open) VALUES (1, 1)", [])
        .expect("replace status");
    let set = next(&mut feed).await;
    assert_eq!(ops(&set), vec![(Collection::Status, 1, Op::Update)]);
    assert_eq!(
        set.changes[0].record.as_deref().expect("record")["open"],
        true
    );

    // An order replaced through its uuid: the old row is gone, a new one took its uuid.
    sh.execute(
        r#"INSERT INTO "order" (id, uuid, items) VALUES (1, 'u', '[]')"#,
        [],
    )
    .expect("order");
    next(&mut feed).await;
    sh.execute(
        r#"INSERT OR REPLACE INTO "order" (id, uuid, items) VALUES (2, 'u', '[]')"#,
        [],
    )
    .expect("replace order by uuid");
    let set = next(&mut feed).await;
    assert_eq!(
        ops(&set),
        vec![
            (Collection::Order, 1, Op::Delete),
            (Collection::Order, 2, Op::Create)
        ]
    );

    // An id changed in place: the old id is deleted, the new one created.
    sh.execute(r#"UPDATE "order" SET id = 9 WHERE id = 2"#, [])
        .expect("renumber");
    let set = next(&mut feed).await;
    assert_eq!(
        ops(&set),
        vec![
            (Collection::Order, 2, Op::Delete),
            (Collection::Order, 9, Op::Create)
        ]
    );

    // Created and deleted in one transaction: nothing to tell, and nothing pending after.
    sh.execute_batch(
        "BEGIN; INSERT INTO message (id, title) VALUES (7, 'x'); DELETE FROM message WHERE id = 7;
         UPDATE status SET open = 0 WHERE id = 1; COMMIT;",
    )
    .expect("transient row");
    let set = next(&mut feed).await;
    assert_eq!(ops(&set), vec![(Collection::Status, 1, Op::Update)]);
    let pending: i64 = sh
        .query_row("SELECT count(*) FROM kaffediem_changes", [], |r| r.get(0))
        .expect("log");
    assert_eq!(pending, 0);
    store.shutdown().await.expect("shutdown");
}

/// `kaffediem demo` run beside the serving daemon writes through a writer of its own; the
/// daemon publishes its rows to the screens (the CLI leaves the change log to it).
#[tokio::test]
async fn the_cli_writing_beside_the_daemon_reaches_its_screens() {
    let site = Site::new();
    let daemon = Daemon::start(site.command(&["serve"]));
    let mut socket = Socket::connect(&daemon.ws_url()).await;
    let joined = socket.join_ok("collection:category", json!({})).await;
    assert_eq!(joined["items"], json!([]));

    let out = site.run(&["demo"]);
    assert!(out.status.success(), "demo: {}", text(&out.stderr));
    let change = socket.next_event("collection:category", "change").await;
    assert_eq!(change["action"], "create", "{change}");
    assert!(change["record"]["name"].is_string(), "{change}");
    drop(daemon);
}

/// An order's change carries its filter fields as they were before the commit (the fan-out
/// compares them with the new record instead of keeping every order in memory): for a shell
/// edit of an order from last month as for one of ours.
#[tokio::test]
async fn an_order_change_carries_the_fields_it_had_before() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kaffediem.db");
    let (store, mut feed) = open(&path);
    let sh = shell(&path);
    sh.execute(
        r#"INSERT INTO "order" (id, customer_id, day_id, state, items, inserted_at)
           VALUES (1, 5, 117, 'dispatched', '[]', '2026-01-05T08:00:00.000Z')"#,
        [],
    )
    .expect("old order");
    let set = next(&mut feed).await;
    assert_eq!(ops(&set), vec![(Collection::Order, 1, Op::Create)]);
    assert!(
        set.changes[0].before.is_none(),
        "a created order had nothing before"
    );

    sh.execute(
        r#"UPDATE "order" SET customer_id = 6, state = 'completed' WHERE id = 1"#,
        [],
    )
    .expect("shell update");
    let set = next(&mut feed).await;
    assert_eq!(ops(&set), vec![(Collection::Order, 1, Op::Update)]);
    assert_eq!(
        set.changes[0].before,
        Some(OrderFacts {
            inserted_at: "2026-01-05T08:00:00Z".parse().expect("instant"),
            customer_id: Some(5),
            state: Some(OrderState::Dispatched),
            day_id: Some(117),
        })
    );
    assert_eq!(
        set.changes[0].record.as_deref().expect("record")["customer_id"],
        6
    );

    // Our own write: the same.
    store
        .writer
        .write(|tx| {
            tx.execute(r#"UPDATE "order" SET state = 'received' WHERE id = 1"#, [])?;
            Ok::<_, kaffediem::store::StoreError>(())
        })
        .await
        .expect("write");
    let set = next(&mut feed).await;
    assert_eq!(
        set.changes[0].before.as_ref().and_then(|b| b.state),
        Some(OrderState::Completed)
    );

    sh.execute(r#"DELETE FROM "order" WHERE id = 1"#, [])
        .expect("shell delete");
    let set = next(&mut feed).await;
    assert_eq!(ops(&set), vec![(Collection::Order, 1, Op::Delete)]);
    assert_eq!(
        set.changes[0].before.as_ref().and_then(|b| b.customer_id),
        Some(6)
    );
    store.shutdown().await.expect("shutdown");
}
