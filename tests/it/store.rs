//! The storage layer on a real SQLite file: schema, change capture for our own and for other
//! processes' commits, record shapes, the menu, the demo data.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kaffediem::clock::SystemClock;
use kaffediem::store::{
    self, records, ChangeFeed, ChangeSet, Collection, Op, OrderQuery, RecordCtx, Store, StoreError,
    StoreOptions,
};
use rusqlite::Connection;
use serde_json::{json, Value};

const PUBLIC_URL: &str = "http://kaffe.test:4000";

fn ctx() -> RecordCtx {
    RecordCtx {
        public_url: PUBLIC_URL.into(),
    }
}

fn open(path: &Path) -> (Store, ChangeFeed) {
    Store::open(
        StoreOptions {
            path: path.to_owned(),
            readers: 2,
            records: ctx(),
        },
        Arc::new(SystemClock),
    )
    .expect("open store")
}

fn db_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("kaffediem.db")
}

/// The next change set, failing the test if none arrives within a generous bound.
async fn next(feed: &mut ChangeFeed) -> Arc<ChangeSet> {
    tokio::time::timeout(Duration::from_secs(10), feed.recv())
        .await
        .expect("a change set within 10 s")
        .expect("feed open")
}

/// Assert that nothing was published before a barrier: a write of the writer's own (a message
/// titled "barrier"), whose change set must be the feed's next. Change sets come in commit
/// order, and the writer publishes another process's commit before its own next one, so
/// whatever an earlier commit owed the feed would come first — no waiting for silence.
/// Returns the barrier's change set.
async fn assert_quiet(store: &Store, feed: &mut ChangeFeed) -> Arc<ChangeSet> {
    store
        .writer
        .write(|tx| {
            tx.execute("INSERT INTO message (title) VALUES ('barrier')", [])?;
            Ok::<_, StoreError>(())
        })
        .await
        .expect("barrier write");
    let set = next(feed).await;
    let is_barrier = set.changes.len() == 1
        && set.changes[0].collection == Collection::Message
        && set.changes[0].op == Op::Create
        && set.changes[0]
            .record
            .as_deref()
            .is_some_and(|r| r["title"] == "barrier");
    assert!(is_barrier, "unexpected change set: {set:?}");
    set
}

/// A separate connection, as the `sqlite3` shell would open it.
fn shell(path: &Path) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn
}

async fn list(store: &Store, c: Collection) -> Vec<Value> {
    store
        .readers
        .read(move |conn| records::list(conn, c, &ctx()))
        .await
        .unwrap()
}

fn ops(set: &ChangeSet) -> Vec<(Collection, i64, Op)> {
    set.changes
        .iter()
        .map(|c| (c.collection, c.id, c.op))
        .collect()
}

fn is_canonical_timestamp(v: &Value) -> bool {
    let s = v.as_str().unwrap_or_default();
    // 2026-03-01T09:15:02.123456Z
    s.len() == 27
        && s.as_bytes()[10] == b'T'
        && s.as_bytes()[19] == b'.'
        && s.ends_with('Z')
        && s[20..26].bytes().all(|b| b.is_ascii_digit())
}

/// Create a category with one item, a key with one value (through the writer).
async fn small_menu(store: &Store) {
    store
        .writer
        .write(|tx| {
            tx.execute_batch(
                "INSERT INTO customization_key (id, name, label_color, sort_order) \
                   VALUES (1, 'Melk', '#ffffff', 0);
                 INSERT INTO customization_value (id, name, price_increment_nok, belongs_to) \
                   VALUES (1, 'Havre', 5, 1);
                 INSERT INTO category (id, name, valid_customizations) VALUES (1, 'Kaffe', '[1]');
                 INSERT INTO item (id, name, price_nok, category_id, image) \
                   VALUES (1, 'Latte', 45, 1, 'latte.png');",
            )?;
            Ok::<_, StoreError>(())
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn fresh_file_has_schema_version_and_one_closed_status() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let (store, _feed) = open(&path);
    let version: i64 = shell(&path)
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, kaffediem::store::schema::SCHEMA_VERSION);
    let status = list(&store, Collection::Status).await;
    assert_eq!(status.len(), 1);
    assert_eq!(status[0]["open"], json!(false));
    assert_eq!(status[0]["show_message"], json!(false));
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn reopening_keeps_data_and_seq_keeps_increasing() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let (store, mut feed) = open(&path);
    small_menu(&store).await;
    let first = next(&mut feed).await.seq;
    store.shutdown().await.unwrap();
    drop(store);

    let (store, mut feed) = open(&path);
    assert_eq!(list(&store, Collection::Item).await[0]["name"], "Latte");
    store
        .writer
        .write(|tx| {
            tx.execute("INSERT INTO message (title) VALUES ('Hei')", [])?;
            Ok::<_, StoreError>(())
        })
        .await
        .unwrap();
    assert_eq!(next(&mut feed).await.seq, first + 1);
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn newer_schema_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let (store, _feed) = open(&path);
    store.shutdown().await.unwrap();
    drop(store);
    shell(&path)
        .pragma_update(
            None,
            "user_version",
            kaffediem::store::schema::SCHEMA_VERSION + 1,
        )
        .unwrap();
    let refused = Store::open(
        StoreOptions {
            path: path.clone(),
            readers: 1,
            records: ctx(),
        },
        Arc::new(SystemClock),
    );
    match refused {
        Err(StoreError::TooNew { found, supported }) => {
            let ours = kaffediem::store::schema::SCHEMA_VERSION;
            assert_eq!((found, supported), (ours + 1, ours));
        }
        Err(e) => panic!("expected TooNew, got {e}"),
        Ok(_) => panic!("expected TooNew, got an open store"),
    }
}

#[tokio::test]
async fn unwritable_location_is_unavailable_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-dir").join("kaffediem.db");
    let refused = Store::open(
        StoreOptions {
            path: path.clone(),
            readers: 1,
            records: ctx(),
        },
        Arc::new(SystemClock),
    );
    match refused {
        Err(StoreError::Unavailable(why)) => assert!(why.contains("no-such-dir"), "{why}"),
        Err(e) => panic!("expected Unavailable, got {e}"),
        Ok(_) => panic!("expected Unavailable, got an open store"),
    }
}

#[tokio::test]
async fn one_write_of_three_menu_rows_publishes_one_change_set_with_the_menu() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut feed) = open(&db_path(&dir));
    let before = store.readers.read(store::current_seq).await.unwrap();
    store
        .writer
        .write(|tx| {
            tx.execute_batch(
                "INSERT INTO category (id, name) VALUES (7, 'Kaffe');
                 INSERT INTO item (id, name, price_nok, category_id) VALUES (3, 'Latte', 45, 7);
                 INSERT INTO item (id, name, price_nok, category_id) VALUES (4, 'Mocha', 50, 7);
                 UPDATE item SET price_nok = 46 WHERE id = 3;",
            )?;
            Ok::<_, StoreError>(())
        })
        .await
        .unwrap();
    let set = next(&mut feed).await;
    assert_eq!(set.seq, before + 1);
    assert_eq!(
        ops(&set),
        vec![
            (Collection::Category, 7, Op::Create),
            (Collection::Item, 3, Op::Create),
            (Collection::Item, 4, Op::Create),
        ]
    );
    let latte = set.changes[1].record.as_deref().unwrap();
    assert_eq!(latte["price_nok"], 46);
    assert_eq!(latte["category_name"], "Kaffe");
    let menu = set.menu.as_deref().expect("menu rebuilt");
    assert_eq!(menu["tree"][0]["items"].as_array().unwrap().len(), 2);
    assert_quiet(&store, &mut feed).await;
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn failed_write_publishes_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut feed) = open(&db_path(&dir));
    let result: Result<(), StoreError> = store
        .writer
        .write(|tx| {
            tx.execute("INSERT INTO message (title) VALUES ('Borte')", [])?;
            Err(StoreError::Unavailable("changed my mind".into()))
        })
        .await;
    assert!(result.is_err());
    assert!(list(&store, Collection::Message).await.is_empty());
    // A later write is published alone, with the next seq.
    store
        .writer
        .write(|tx| {
            tx.execute("INSERT INTO message (title) VALUES ('Her')", [])?;
            Ok::<_, StoreError>(())
        })
        .await
        .unwrap();
    let set = next(&mut feed).await;
    assert_eq!(set.seq, 1);
    assert_eq!(set.changes.len(), 1);
    assert_eq!(set.changes[0].record.as_deref().unwrap()["title"], "Her");
    assert!(set.menu.is_none());
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn writes_that_change_no_collection_publish_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut feed) = open(&db_path(&dir));
    store
        .writer
        .write(|tx| {
            tx.execute(
                "INSERT INTO user (email, password_hash) VALUES ('a@b.no', 'x')",
                [],
            )?;
            tx.execute("INSERT INTO message (title) VALUES ('kort')", [])?;
            tx.execute("DELETE FROM message WHERE title = 'kort'", [])?;
            Ok::<_, StoreError>(())
        })
        .await
        .unwrap();
    assert_quiet(&store, &mut feed).await;
    let users: i64 = store
        .readers
        .read(|c| Ok::<_, StoreError>(c.query_row("SELECT count(*) FROM user", [], |r| r.get(0))?))
        .await
        .unwrap();
    assert_eq!(users, 1);
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn delete_without_where_is_captured_row_by_row() {
    // `order` has no foreign keys or delete triggers: SQLite would truncate it in one step,
    // skipping the update hook, unless the writer prevents that.
    let dir = tempfile::tempdir().unwrap();
    let (store, mut feed) = open(&db_path(&dir));
    store
        .writer
        .write(|tx| {
            tx.execute_batch("INSERT INTO \"order\" (id) VALUES (1), (2);")?;
            Ok::<_, StoreError>(())
        })
        .await
        .unwrap();
    next(&mut feed).await;
    store
        .writer
        .write(|tx| {
            tx.execute_batch("DELETE FROM \"order\";")?;
            Ok::<_, StoreError>(())
        })
        .await
        .unwrap();
    let set = next(&mut feed).await;
    assert_eq!(
        ops(&set),
        vec![
            (Collection::Order, 1, Op::Delete),
            (Collection::Order, 2, Op::Delete)
        ]
    );
    assert!(set.changes.iter().all(|c| c.record.is_none()));
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn shell_insert_update_delete_are_published_as_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let (store, mut feed) = open(&path);
    let sh = shell(&path);

    sh.execute(
        "INSERT INTO message (title, subtitle) VALUES ('Fra skallet', 'hei')",
        [],
    )
    .unwrap();
    let set = next(&mut feed).await;
    assert_eq!(set.seq, 1);
    assert_eq!(ops(&set), vec![(Collection::Message, 1, Op::Create)]);
    let record = set.changes[0].record.as_deref().unwrap();
    assert_eq!(record["title"], "Fra skallet");
    // The column default has milliseconds; the record has microseconds.
    assert!(is_canonical_timestamp(&record["inserted_at"]), "{record}");

    sh.execute("UPDATE status SET open = 1 WHERE id = 1", [])
        .unwrap();
    let set = next(&mut feed).await;
    assert_eq!(set.seq, 2);
    assert_eq!(ops(&set), vec![(Collection::Status, 1, Op::Update)]);
    assert_eq!(set.changes[0].record.as_deref().unwrap()["open"], true);

    sh.execute("DELETE FROM message", []).unwrap();
    let set = next(&mut feed).await;
    assert_eq!(ops(&set), vec![(Collection::Message, 1, Op::Delete)]);
    assert!(set.changes[0].record.is_none());

    // Menu rows from the shell rebuild the menu.
    sh.execute_batch(
        "INSERT INTO category (id, name) VALUES (1, 'Te');
         INSERT INTO item (name, price_nok, category_id) VALUES ('Chai', 45, 1);",
    )
    .unwrap();
    let mut seen = Vec::new();
    let mut menu = None;
    while seen.len() < 2 {
        let set = next(&mut feed).await;
        seen.extend(ops(&set));
        menu = set.menu.clone().or(menu);
    }
    assert_eq!(
        seen,
        vec![
            (Collection::Category, 1, Op::Create),
            (Collection::Item, 1, Op::Create)
        ]
    );
    assert_eq!(menu.expect("menu")["tree"][0]["items"][0]["name"], "Chai");
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn own_writes_are_never_reported_again_as_foreign() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let (store, mut feed) = open(&path);
    small_menu(&store).await;
    let set = next(&mut feed).await;
    assert_eq!(set.changes.len(), 4);
    // A foreign commit to another row makes the writer diff every table: only that row shows.
    shell(&path)
        .execute("INSERT INTO message (title) VALUES ('skall')", [])
        .unwrap();
    let set = next(&mut feed).await;
    assert_eq!(ops(&set), vec![(Collection::Message, 1, Op::Create)]);
    assert_quiet(&store, &mut feed).await;
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn record_shapes_follow_the_spec() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let (store, mut feed) = open(&path);
    small_menu(&store).await;
    next(&mut feed).await;
    store
        .writer
        .write(|tx| {
            tx.execute_batch(
                "UPDATE customization_key SET default_value = '1' WHERE id = 1;
                 INSERT INTO message (id, title) VALUES (1, 'Velkommen');
                 UPDATE status SET show_message = 1, message_id = 1;
                 INSERT INTO \"order\" (id, uuid, customer_id, day_id, items, total_nok) VALUES
                   (1, 'u-1', 7, 101, '[{\"item_id\":1,\"name\":\"Latte\",\"price\":45,\
                    \"category\":\"Kaffe\",\"customizations\":[{\"key_id\":1,\"key_name\":\"Melk\",\
                    \"value_id\":1,\"value_name\":\"Havre\",\"price_change\":5,\
                    \"constant_price\":true,\"label_color\":\"#000000\"}],\"total\":50}]', 50);",
            )?;
            Ok::<_, StoreError>(())
        })
        .await
        .unwrap();
    next(&mut feed).await;

    let category = &list(&store, Collection::Category).await[0];
    let item = &list(&store, Collection::Item).await[0];
    let key = &list(&store, Collection::CustomizationKey).await[0];
    let value = &list(&store, Collection::CustomizationValue).await[0];
    let message = &list(&store, Collection::Message).await[0];
    let status = &list(&store, Collection::Status).await[0];
    let order = &list(&store, Collection::Order).await[0];

    let strip = |v: &Value| {
        let mut v = v.clone();
        for field in ["inserted_at", "updated_at"] {
            assert!(is_canonical_timestamp(&v[field]), "{field} of {v}");
            v.as_object_mut().unwrap().remove(field);
        }
        v
    };
    assert_eq!(
        strip(category),
        json!({"id": 1, "name": "Kaffe", "sort_order": 0, "enable": true,
               "valid_customizations": [1]})
    );
    assert_eq!(
        strip(item),
        json!({"id": 1, "name": "Latte", "price_nok": 45, "category_id": 1,
               "category_name": "Kaffe", "enable": true, "sort_order": 0,
               "image": format!("{PUBLIC_URL}/api/files/item/1/latte.png")})
    );
    assert_eq!(
        strip(key),
        json!({"id": 1, "name": "Melk", "enable": true, "label_color": "#ffffff",
               "default_value": "1", "multiple_choice": false, "sort_order": 0})
    );
    assert_eq!(
        strip(value),
        json!({"id": 1, "name": "Havre", "price_increment_nok": 5, "constant_price": true,
               "belongs_to": 1, "enable": true, "sort_order": 0})
    );
    assert_eq!(
        strip(message),
        json!({"id": 1, "title": "Velkommen", "subtitle": null})
    );
    assert_eq!(
        strip(status),
        json!({"id": 1, "open": false, "show_message": true, "message_id": 1})
    );
    let order = strip(order);
    assert_eq!(order["uuid"], "u-1");
    assert_eq!(order["customer_id"], 7);
    assert_eq!(order["day_id"], 101);
    assert_eq!(order["state"], "received");
    assert_eq!(order["missing_information"], false);
    assert_eq!(order["total_nok"], 50);
    assert_eq!(order["items"][0]["total"], 50);
    // label_color comes from the current key, not the snapshot.
    assert_eq!(
        order["items"][0]["customizations"][0]["label_color"],
        "#ffffff"
    );
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn order_label_color_follows_the_key_and_survives_its_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let (store, _feed) = open(&path);
    let sh = shell(&path);
    sh.execute_batch(
        "INSERT INTO customization_key (id, name, label_color) VALUES (5, 'Sirup', '#111111');
         INSERT INTO \"order\" (id, items) VALUES
           (1, '[{\"item_id\":1,\"customizations\":[{\"key_id\":5,\"label_color\":\"#999999\"}]}]'),
           (2, 'this is not json');",
    )
    .unwrap();
    let color = |store: Store| async move {
        store
            .readers
            .read(|c| records::get(c, Collection::Order, 1, &ctx()))
            .await
            .unwrap()
            .unwrap()["items"][0]["customizations"][0]["label_color"]
            .clone()
    };
    assert_eq!(color(store.clone()).await, "#111111");
    sh.execute("UPDATE customization_key SET label_color = '#222222'", [])
        .unwrap();
    assert_eq!(color(store.clone()).await, "#222222");
    sh.execute("DELETE FROM customization_key", []).unwrap();
    assert_eq!(color(store.clone()).await, "#999999");
    // Junk in `items` is served as an empty list.
    let junk = store
        .readers
        .read(|c| records::get(c, Collection::Order, 2, &ctx()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(junk["items"], json!([]));
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn snapshots_are_sorted_as_the_spec_says() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let (store, _feed) = open(&path);
    shell(&path)
        .execute_batch(
            "INSERT INTO category (id, name, sort_order) VALUES (1, 'B', 2), (2, 'A', 2), (3, 'C', 1);
             INSERT INTO message (id, title) VALUES (1, 'zebra'), (2, 'alpakka');
             INSERT INTO status (id) VALUES (5);
             INSERT INTO \"order\" (id, inserted_at) VALUES
               (1, '2026-03-02T08:00:00.000000Z'),
               (2, '2026-03-01T08:00:00.000Z'),
               (3, '2026-03-01T08:00:00.000Z'),
               (4, '2026-03-01T07:00:00Z');",
        )
        .unwrap();
    let ids = |v: Vec<Value>| {
        v.iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(list(&store, Collection::Category).await), vec![3, 2, 1]);
    assert_eq!(ids(list(&store, Collection::Message).await), vec![2, 1]);
    assert_eq!(ids(list(&store, Collection::Status).await), vec![1, 5]);
    let orders = list(&store, Collection::Order).await;
    assert_eq!(ids(orders.clone()), vec![4, 2, 3, 1]);
    assert_eq!(orders[0]["inserted_at"], "2026-03-01T07:00:00.000000Z");
    assert_eq!(orders[1]["inserted_at"], "2026-03-01T08:00:00.000000Z");
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn orders_can_be_listed_by_time_customer_and_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let (store, _feed) = open(&path);
    shell(&path)
        .execute_batch(
            "INSERT INTO \"order\" (id, customer_id, state, inserted_at) VALUES
               (1, 7, 'received',  '2026-03-01T08:00:00.000000Z'),
               (2, 8, 'completed', '2026-03-02T08:00:00.000000Z'),
               (3, 7, 'completed', '2026-03-02T09:00:00.000000Z');",
        )
        .unwrap();
    let query = |q: OrderQuery| {
        let store = store.clone();
        async move {
            store
                .readers
                .read(move |c| records::list_orders(c, &q, &ctx()))
                .await
                .unwrap()
                .iter()
                .map(|r| r["id"].as_i64().unwrap())
                .collect::<Vec<_>>()
        }
    };
    let since: jiff::Timestamp = "2026-03-02T00:00:00Z".parse().unwrap();
    assert_eq!(
        query(OrderQuery {
            since: Some(since),
            ..Default::default()
        })
        .await,
        vec![2, 3]
    );
    assert_eq!(
        query(OrderQuery {
            customer_id: Some(7),
            ..Default::default()
        })
        .await,
        vec![1, 3]
    );
    assert_eq!(
        query(OrderQuery {
            customer_id: Some(7),
            state: Some(kaffediem::store::orders::OrderState::Completed),
            since: Some(since),
        })
        .await,
        vec![3]
    );
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn snapshot_and_its_seq_come_from_one_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut feed) = open(&db_path(&dir));
    small_menu(&store).await;
    let published = next(&mut feed).await.seq;
    let (seq, items) = store
        .readers
        .snapshot(|c| records::list(c, Collection::Item, &ctx()))
        .await
        .unwrap();
    assert_eq!(seq, published);
    assert_eq!(items.len(), 1);
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn demo_menu_tree_and_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut feed) = open(&db_path(&dir));
    assert!(store::demo::load(&store.writer).await.unwrap());
    let set = next(&mut feed).await;
    assert!(set.changes.len() > 20);
    let menu = set.menu.as_deref().expect("menu");

    let tree = menu["tree"].as_array().unwrap();
    let names: Vec<&str> = tree.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["Kaffe", "Te", "Kald drikke", "Mat og bakst"]);
    let kaffe = &tree[0];
    let latte = kaffe["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "Latte")
        .expect("Latte");
    assert_eq!(latte["category_name"], "Kaffe");
    let keys: Vec<&str> = latte["customizations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["key"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(keys, vec!["Størrelse", "Melk", "Ekstra shot", "Sirup"]);
    let sizes: Vec<&str> = latte["customizations"][0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(sizes, vec!["Liten", "Stor"]);
    // Food takes no customizations.
    assert_eq!(tree[3]["items"][0]["customizations"], json!([]));

    let indexes = &menu["indexes"];
    assert_eq!(indexes["categories"].as_array().unwrap().len(), 4);
    assert_eq!(indexes["customization_keys"].as_array().unwrap().len(), 4);
    let kaffe_id = kaffe["id"].to_string();
    assert_eq!(
        indexes["items_by_category"][&kaffe_id],
        json!(indexes["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["category_id"] == kaffe["id"])
            .cloned()
            .collect::<Vec<_>>())
    );
    let size_id = latte["customizations"][0]["key"]["id"].to_string();
    assert_eq!(
        indexes["customizations_by_key"][&size_id],
        latte["customizations"][0]["values"]
    );
    // The same menu is what a reader builds.
    let built = store
        .readers
        .read(|c| store::menu::build(c, &ctx()))
        .await
        .unwrap();
    assert_eq!(&built, menu);

    // The café is open in the demo, and the demo loads only once.
    assert_eq!(list(&store, Collection::Status).await[0]["open"], true);
    assert!(!store::demo::load(&store.writer).await.unwrap());
    assert_quiet(&store, &mut feed).await;
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn demo_does_not_load_into_a_menu_that_exists() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut feed) = open(&db_path(&dir));
    small_menu(&store).await;
    next(&mut feed).await;
    assert!(!store::demo::load(&store.writer).await.unwrap());
    assert_eq!(list(&store, Collection::Item).await.len(), 1);
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_panicking_job_does_not_kill_the_writer() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut feed) = open(&db_path(&dir));
    let result: Result<(), StoreError> = store
        .writer
        .write(|tx| {
            tx.execute("INSERT INTO message (title) VALUES ('halvveis')", [])?;
            panic!("a bug in a write job");
        })
        .await;
    assert!(matches!(result, Err(StoreError::Unavailable(_))));
    store
        .writer
        .write(|tx| {
            tx.execute("INSERT INTO message (title) VALUES ('etterpå')", [])?;
            Ok::<_, StoreError>(())
        })
        .await
        .unwrap();
    let set = next(&mut feed).await;
    assert_eq!(set.seq, 1);
    let titles: Vec<Value> = list(&store, Collection::Message)
        .await
        .iter()
        .map(|m| m["title"].clone())
        .collect();
    assert_eq!(titles, vec![json!("etterpå")]);
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn shutdown_checkpoints_the_wal_and_refuses_later_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let (store, _feed) = open(&path);
    small_menu(&store).await;
    store.shutdown().await.unwrap();
    let wal = std::fs::metadata(dir.path().join("kaffediem.db-wal"))
        .map(|m| m.len())
        .unwrap_or(0);
    assert_eq!(wal, 0);
    let late: Result<(), StoreError> = store.writer.write(|_| Ok(())).await;
    assert!(matches!(late, Err(StoreError::Closed)));
}

#[tokio::test]
async fn rows_changed_by_foreign_key_actions_are_published_with_the_write() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut feed) = open(&db_path(&dir));
    store
        .writer
        .write(|tx| {
            tx.execute_batch(
                "INSERT INTO message (id, title) VALUES (1, 'Stengt');
                 UPDATE status SET show_message = 1, message_id = 1 WHERE id = 1;",
            )?;
            Ok::<_, StoreError>(())
        })
        .await
        .unwrap();
    next(&mut feed).await;
    store
        .writer
        .write(|tx| {
            tx.execute("DELETE FROM message WHERE id = 1", [])?;
            Ok::<_, StoreError>(())
        })
        .await
        .unwrap();
    let set = next(&mut feed).await;
    assert_eq!(
        ops(&set),
        vec![
            (Collection::Message, 1, Op::Delete),
            (Collection::Status, 1, Op::Update)
        ]
    );
    assert_eq!(
        set.changes[1].record.as_deref().unwrap()["message_id"],
        Value::Null
    );
    store.shutdown().await.unwrap();
}

/// The item records of `set`, by id.
fn item_records(set: Arc<ChangeSet>) -> Vec<(i64, Op, Value)> {
    set.changes
        .iter()
        .filter(|c| c.collection == Collection::Item)
        .map(|c| {
            let record = c.record.as_deref().map_or(Value::Null, |r| r.json.clone());
            (c.id, c.op, record)
        })
        .collect()
}

#[tokio::test]
async fn renaming_a_category_republishes_its_items_in_the_same_change_set() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut feed) = open(&db_path(&dir));
    small_menu(&store).await;
    store
        .writer
        .write(|tx| {
            tx.execute_batch(
                "INSERT INTO item (id, name, price_nok, category_id) VALUES (2, 'Cortado', 40, 1);
                 INSERT INTO category (id, name) VALUES (2, 'Te');
                 INSERT INTO item (id, name, price_nok, category_id) VALUES (3, 'Chai', 45, 2);",
            )?;
            Ok::<_, StoreError>(())
        })
        .await
        .unwrap();
    next(&mut feed).await;
    next(&mut feed).await;

    // A rename: both items of the category follow, with the new name; the other category's
    // item does not; the menu is rebuilt once.
    store
        .writer
        .write(|tx| {
            tx.execute("UPDATE category SET name = 'Kaffebar' WHERE id = 1", [])?;
            Ok::<_, StoreError>(())
        })
        .await
        .unwrap();
    let set = next(&mut feed).await;
    assert_eq!(set.changes[0].collection, Collection::Category);
    let items = item_records(Arc::clone(&set));
    let ids: Vec<i64> = items.iter().map(|(id, _, _)| *id).collect();
    assert_eq!(ids, vec![1, 2]);
    for (_, op, record) in &items {
        assert_eq!(*op, Op::Update);
        assert_eq!(record["category_name"], "Kaffebar");
    }
    let listed = list(&store, Collection::Item).await;
    let latte = listed.iter().find(|i| i["id"] == 1).unwrap();
    assert_eq!(&items[0].2, latte, "as a snapshot shows it");
    assert!(set.menu.is_some());

    // Another category field: the items' records did not change, nothing for them.
    store
        .writer
        .write(|tx| {
            tx.execute("UPDATE category SET sort_order = 5 WHERE id = 1", [])?;
            Ok::<_, StoreError>(())
        })
        .await
        .unwrap();
    assert!(item_records(next(&mut feed).await).is_empty());

    // A rename together with an edit of one of its items: that item once, as written.
    store
        .writer
        .write(|tx| {
            tx.execute_batch(
                "UPDATE category SET name = 'Kaffe' WHERE id = 1;
                 UPDATE item SET price_nok = 46 WHERE id = 1;",
            )?;
            Ok::<_, StoreError>(())
        })
        .await
        .unwrap();
    let items = item_records(next(&mut feed).await);
    assert_eq!(items.len(), 2, "{items:?}");
    assert_eq!(items[0].2["price_nok"], 46);
    assert!(items.iter().all(|(_, _, r)| r["category_name"] == "Kaffe"));

    // Another process renames it: the same.
    let sh = shell(&db_path(&dir));
    sh.execute("UPDATE category SET name = 'Espresso' WHERE id = 1", [])
        .unwrap();
    let items = item_records(next(&mut feed).await);
    assert_eq!(items.len(), 2, "{items:?}");
    assert!(items
        .iter()
        .all(|(_, _, r)| r["category_name"] == "Espresso"));

    // The sqlite3 shell does not enforce foreign keys (rusqlite's bundled SQLite does, so
    // turn them off as the shell has them): a category deleted under its item leaves the
    // item showing `category_name: null`, in the change set as in a snapshot.
    sh.pragma_update(None, "foreign_keys", false).unwrap();
    sh.execute("DELETE FROM category WHERE id = 2", []).unwrap();
    let items = item_records(next(&mut feed).await);
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].2["category_name"], Value::Null);
    let listed = list(&store, Collection::Item).await;
    let chai = listed.iter().find(|i| i["id"] == 3).unwrap();
    assert_eq!(&items[0].2, chai);
    // ... and a category created again under that id gives it a name again.
    sh.execute("INSERT INTO category (id, name) VALUES (2, 'Urtete')", [])
        .unwrap();
    let items = item_records(next(&mut feed).await);
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].2["category_name"], "Urtete");
    assert_quiet(&store, &mut feed).await;
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn foreign_writes_outside_the_collections_publish_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let (store, mut feed) = open(&path);
    shell(&path)
        .execute(
            "INSERT INTO user (email, password_hash) VALUES ('kari@kafe.no', 'x')",
            [],
        )
        .unwrap();
    let barrier = assert_quiet(&store, &mut feed).await;
    // And the sequence did not move: the barrier took the first seq.
    assert_eq!(barrier.seq, 1);
    let seq = store.readers.read(store::current_seq).await.unwrap();
    assert_eq!(seq, 1);
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn own_and_foreign_commits_share_one_gap_free_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let (store, mut feed) = open(&path);
    let sh = shell(&path);
    for n in 0..5 {
        store
            .writer
            .write(move |tx| {
                tx.execute(
                    "INSERT INTO message (title) VALUES (?1)",
                    [format!("vår {n}")],
                )?;
                Ok::<_, StoreError>(())
            })
            .await
            .unwrap();
        sh.execute(
            "INSERT INTO message (title) VALUES (?1)",
            [format!("skall {n}")],
        )
        .unwrap();
    }
    let mut seqs = Vec::new();
    let mut titles = Vec::new();
    while titles.len() < 10 {
        let set = next(&mut feed).await;
        seqs.push(set.seq);
        for change in &set.changes {
            assert_eq!(change.op, Op::Create);
            titles.push(change.record.as_deref().unwrap()["title"].clone());
        }
    }
    let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(seqs, expected);
    assert_eq!(list(&store, Collection::Message).await.len(), 10);
    assert_quiet(&store, &mut feed).await;
    store.shutdown().await.unwrap();
}

/// `cargo test --release --test it menu_build_timing_on_a_real_file -- --ignored --nocapture`
#[tokio::test]
#[ignore]
async fn menu_build_timing_on_a_real_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = db_path(&dir);
    let (store, _feed) = open(&path);
    // SPEC 11's menu: 200 items in 20 categories, 20 keys with 4 values each, 2 keys a category.
    shell(&path)
        .execute_batch(
            "BEGIN;
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20)
               INSERT INTO customization_key (id, name, label_color, sort_order)
               SELECT i, 'Valg ' || i, '#aabbcc', i FROM n;
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 80)
               INSERT INTO customization_value (id, name, price_increment_nok, belongs_to, sort_order)
               SELECT i, 'Verdi ' || i, 5, (i - 1) / 4 + 1, i FROM n;
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20)
               INSERT INTO category (id, name, sort_order, valid_customizations)
               SELECT i, 'Kategori ' || i, i, json_array(i, (i % 20) + 1) FROM n;
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200)
               INSERT INTO item (id, name, price_nok, category_id, sort_order)
               SELECT i, 'Vare ' || i, 45, (i - 1) / 10 + 1, i FROM n;
             COMMIT;",
        )
        .unwrap();
    let (per_build, bytes) = store
        .readers
        .read(|conn| {
            let rounds = 200;
            let start = std::time::Instant::now();
            let mut bytes = 0;
            for _ in 0..rounds {
                let menu = store::menu::build(conn, &ctx())?;
                bytes = serde_json::to_vec(&menu).unwrap().len();
            }
            Ok::<_, StoreError>((start.elapsed() / rounds, bytes))
        })
        .await
        .unwrap();
    println!("menu::build (SQL reads included) + encode: {per_build:?} for {bytes} bytes");
    store.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_full_disk_answers_unavailable_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut feed) = open(&db_path(&dir));
    small_menu(&store).await;
    next(&mut feed).await;
    // Cap the file at its current size, as a full disk would.
    let full: Result<(), StoreError> = store
        .writer
        .write(|tx| {
            let pages: i64 = tx.query_row("PRAGMA page_count", [], |r| r.get(0))?;
            tx.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))?;
            for n in 0..1000 {
                tx.execute(
                    "INSERT INTO message (title, subtitle) VALUES (?1, ?2)",
                    (n, "x".repeat(4000)),
                )?;
            }
            Ok(())
        })
        .await;
    assert!(matches!(full, Err(StoreError::Unavailable(_))), "{full:?}");
    // The space comes back; what was stored before is intact and writes work again. That
    // write is the barrier: the failed one published nothing before it.
    store
        .writer
        .write(|tx| {
            tx.query_row("PRAGMA max_page_count = 1073741823", [], |_| Ok(()))?;
            tx.execute("INSERT INTO message (title) VALUES ('igjen')", [])?;
            Ok::<_, StoreError>(())
        })
        .await
        .unwrap();
    let set = next(&mut feed).await;
    assert_eq!(set.seq, 2);
    assert_eq!(set.changes.len(), 1, "{set:?}");
    assert_eq!(set.changes[0].record.as_deref().unwrap()["title"], "igjen");
    assert_eq!(list(&store, Collection::Item).await.len(), 1);
    assert_eq!(list(&store, Collection::Message).await.len(), 1);
    store.shutdown().await.unwrap();
}
