//! Kaffediem's channels through a real socket on an in-process daemon with a real SQLite file.
//! Writes come from a separate SQLite connection, as the `sqlite3` shell would make them.

use serde_json::{json, Value};

use crate::support::{Daemon, Socket};

const ORDER_COLUMNS: &str = r#"INSERT INTO "order" (uuid, customer_id, day_id, state, missing_information, items, total_nok"#;

fn insert_order(conn: &rusqlite::Connection, customer: i64, day_id: i64, at: Option<&str>) -> i64 {
    let uuid = format!("test-{customer}-{day_id}-{}", rand_suffix());
    match at {
        Some(at) => conn
            .execute(
                &format!("{ORDER_COLUMNS}, inserted_at, updated_at) VALUES (?1, ?2, ?3, 'received', 0, '[]', 0, ?4, ?4)"),
                rusqlite::params![uuid, customer, day_id, at],
            )
            .expect("insert order"),
        None => conn
            .execute(
                &format!("{ORDER_COLUMNS}) VALUES (?1, ?2, ?3, 'received', 0, '[]', 0)"),
                rusqlite::params![uuid, customer, day_id],
            )
            .expect("insert order"),
    };
    conn.last_insert_rowid()
}

/// The socket query of an admin's screen (the kitchen): it may filter by customer and sees
/// every order's `customer_id` (SPEC 6).
const ADMIN_SCREEN: &str = "token=admin-secret";

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("array")
        .iter()
        .map(|r| r["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn every_collection_answers_its_join_with_a_snapshot_and_seq() {
    let daemon = Daemon::demo().await;
    let mut socket = daemon.socket("").await;

    let menu = socket.join_ok("collection:menu", json!({})).await;
    assert!(menu["seq"].as_u64().is_some(), "{menu}");
    let tree = menu["items"]["tree"].as_array().expect("tree");
    assert!(!tree.is_empty());
    let all_items: Vec<String> = tree.iter().flat_map(|c| names(&c["items"])).collect();
    assert!(all_items.iter().any(|n| n == "Cortado"), "{all_items:?}");
    assert!(all_items.iter().any(|n| n == "Latte"), "{all_items:?}");
    let indexes = &menu["items"]["indexes"];
    for key in [
        "categories",
        "items",
        "customization_keys",
        "customization_values",
        "items_by_category",
        "customizations_by_key",
    ] {
        assert!(!indexes[key].is_null(), "index {key} missing");
    }
    let values = names(&indexes["customization_values"]);
    for milk in ["Havre", "Hel", "Laktosefri", "Liten", "Stor"] {
        assert!(values.iter().any(|v| v == milk), "{milk} in {values:?}");
    }

    for name in [
        "order",
        "status",
        "message",
        "category",
        "item",
        "customization_key",
        "customization_value",
    ] {
        let reply = socket
            .join_ok(&format!("collection:{name}"), json!({}))
            .await;
        assert!(reply["items"].is_array(), "{name}: {reply}");
        assert_eq!(
            reply["seq"], menu["seq"],
            "{name}: nothing was written in between"
        );
    }
    let status = socket.join_ok("collection:status", json!({})).await;
    assert_eq!(status["items"][0]["open"], true, "the demo café is open");
    daemon.stop().await;
}

#[tokio::test]
async fn one_transaction_touching_three_menu_rows_is_one_menu_broadcast() {
    let daemon = Daemon::demo().await;
    let mut socket = daemon.socket("").await;
    let joined = socket.join_ok("collection:menu", json!({})).await;
    let seq = joined["seq"].as_u64().expect("seq");
    socket.join_ok("collection:message", json!({})).await;

    let mut shell = daemon.shell();
    let tx = shell.transaction().expect("tx");
    tx.execute(
        "UPDATE item SET price_nok = price_nok + 1 WHERE name IN ('Cortado', 'Latte')",
        [],
    )
    .expect("update items");
    tx.execute(
        "UPDATE customization_value SET name = 'Havremelk' WHERE name = 'Havre'",
        [],
    )
    .expect("update value");
    tx.commit().expect("commit");

    let change = socket.next_event("collection:menu", "change").await;
    assert_eq!(change["action"], "update");
    assert!(change["seq"].as_u64().expect("seq") > seq);
    let values = names(&change["record"]["indexes"]["customization_values"]);
    assert!(values.iter().any(|v| v == "Havremelk"), "{values:?}");
    let more = socket.frames_before_barrier(&daemon, "message").await;
    assert!(
        more.iter().all(|f| f[2] != "collection:menu"),
        "a second menu broadcast arrived: {more:?}"
    );
    daemon.stop().await;
}

#[tokio::test]
async fn shell_writes_arrive_as_create_update_delete_in_order() {
    let daemon = Daemon::demo().await;
    let mut socket = daemon.socket("").await;
    socket.join_ok("collection:message", json!({})).await;
    let shell = daemon.shell();

    shell
        .execute(
            "INSERT INTO message (title, subtitle) VALUES ('Vafler i dag', NULL)",
            [],
        )
        .expect("insert");
    let id = shell.last_insert_rowid();
    let created = socket.next_event("collection:message", "change").await;
    assert_eq!(created["action"], "create");
    assert_eq!(created["record"]["id"], id);
    assert_eq!(created["record"]["title"], "Vafler i dag");
    assert!(created["record"]["inserted_at"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));

    shell
        .execute(
            "UPDATE message SET subtitle = 'med syltetøy' WHERE id = ?1",
            [id],
        )
        .expect("update");
    let updated = socket.next_event("collection:message", "change").await;
    assert_eq!(updated["action"], "update");
    assert_eq!(updated["record"]["subtitle"], "med syltetøy");
    assert!(updated["seq"].as_u64() > created["seq"].as_u64());

    shell
        .execute("DELETE FROM message WHERE id = ?1", [id])
        .expect("delete");
    let deleted = socket.next_event("collection:message", "change").await;
    assert_eq!(deleted["action"], "delete");
    assert_eq!(deleted["record"], json!({"id": id}));
    daemon.stop().await;
}

#[tokio::test]
async fn order_leaving_a_customer_filter_is_deleted_for_that_subscriber() {
    let daemon = Daemon::demo().await;
    let mut seven = daemon.socket(ADMIN_SCREEN).await;
    seven.join_ok("collection:message", json!({})).await;
    let mut eight = daemon.socket(ADMIN_SCREEN).await;
    let mut everyone = daemon.socket(ADMIN_SCREEN).await;
    let shell = daemon.shell();
    let existing = insert_order(&shell, 7, 101, None);

    // Wait until the daemon has published the first order, so the snapshots agree.
    everyone.join_ok("collection:order", json!({})).await;
    let snap7 = seven
        .join_ok("collection:order", json!({"options": {"customer_id": 7}}))
        .await;
    let snap8 = eight
        .join_ok("collection:order", json!({"options": {"customer_id": "8"}}))
        .await;
    let ids = |snap: &Value| -> Vec<i64> {
        snap["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter_map(|o| o["id"].as_i64())
            .collect()
    };
    // The insert may or may not have been published before the joins; either way the
    // snapshot or the live stream shows it to customer 7 only.
    if !ids(&snap7).contains(&existing) {
        let c = seven.next_event("collection:order", "change").await;
        assert_eq!(c["record"]["id"], existing);
    }
    assert!(!ids(&snap8).contains(&existing));

    shell
        .execute(
            r#"UPDATE "order" SET customer_id = 8 WHERE id = ?1"#,
            [existing],
        )
        .expect("move order");
    let left = seven.next_event("collection:order", "change").await;
    assert_eq!(left["action"], "delete");
    assert_eq!(left["record"], json!({"id": existing}));
    let entered = eight.next_event("collection:order", "change").await;
    assert_eq!(entered["action"], "create");
    assert_eq!(entered["record"]["customer_id"], 8);
    let seen_by_all = loop {
        let c = everyone.next_event("collection:order", "change").await;
        if c["action"] == "update" {
            break c;
        }
    };
    assert_eq!(seen_by_all["record"]["id"], existing);

    // An order of another customer never reaches customer 7's screen.
    insert_order(&shell, 9, 102, None);
    let frames = seven.frames_before_barrier(&daemon, "message").await;
    assert!(frames.is_empty(), "leaked to customer 7: {frames:?}");
    daemon.stop().await;
}

#[tokio::test]
async fn from_date_today_drops_the_previous_days_orders_at_local_midnight() {
    // 23:59:57 in Oslo (UTC+1 in winter), from the start: a clock set after the start made
    // the fan-out roll its day over from today's date to 2036 at its next tick, which under
    // load came after the kitchen joined and deleted the earlier day's order from its screen.
    let before_midnight: jiff::Timestamp = "2036-12-01T22:59:57Z".parse().expect("ts");
    let clock = kaffediem::clock::OffsetClock::new();
    clock.set(before_midnight);
    let daemon = Daemon::start_with_clock(clock, true, |_| {}).await;
    let shell = daemon.shell();
    let late = insert_order(&shell, 7, 150, Some("2036-12-01T22:59:50.000000Z"));
    let earlier_day = insert_order(&shell, 7, 120, Some("2036-11-30T12:00:00.000000Z"));

    let mut kitchen = daemon.socket("").await;
    let mut by_date = daemon.socket("").await;
    // Let the foreign inserts be published first, so they are in the snapshots: the writer
    // publishes another process's commits before its own.
    daemon.barrier_commit("message").await;
    let today = kitchen
        .join_ok(
            "collection:order",
            json!({"options": {"from_date": "today"}}),
        )
        .await;
    let ids: Vec<i64> = today["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|o| o["id"].as_i64())
        .collect();
    assert_eq!(ids, vec![late], "today's window holds only tonight's order");
    let dated = by_date
        .join_ok(
            "collection:order",
            json!({"options": {"from_date": "2036-11-30"}}),
        )
        .await;
    assert_eq!(dated["items"].as_array().map(Vec::len), Some(2));
    by_date.join_ok("collection:message", json!({})).await;

    daemon
        .clock
        .set("2036-12-01T23:00:02Z".parse().expect("ts"));
    let gone = kitchen.next_event("collection:order", "change").await;
    assert_eq!(gone["action"], "delete");
    assert_eq!(gone["record"], json!({"id": late}));
    // A fixed date is not a rolling window.
    let frames = by_date.frames_before_barrier(&daemon, "message").await;
    assert!(frames.is_empty(), "{frames:?}");
    let _ = earlier_day;
    daemon.stop().await;
}

#[tokio::test]
async fn bad_joins_get_clear_errors_and_the_socket_stays_up() {
    let daemon = Daemon::demo().await;
    let mut socket = daemon.socket("").await;
    let reply = socket.join("collection:orders", json!({})).await;
    assert_eq!(reply["status"], "error");
    assert_eq!(reply["response"]["reason"], "unknown collection");

    let reply = socket
        .join(
            "collection:order",
            json!({"options": {"from_date": "yesterday"}}),
        )
        .await;
    assert_eq!(reply["response"]["reason"], "invalid options");
    assert!(reply["response"]["errors"]["from_date"].is_array());

    let reply = socket.join("notifications:everyone", json!({})).await;
    assert_eq!(reply["response"]["reason"], "unknown scope");
    let reply = socket.join("notifications:admin", json!({})).await;
    assert_eq!(reply["response"]["reason"], "unauthorized");
    let reply = socket.join("notifications:user:7", json!({})).await;
    assert_eq!(reply["response"]["reason"], "unauthorized");

    socket
        .send(json!(["9", "9", "kitchen:1", "phx_join", {}]))
        .await;
    let frame = socket.recv().await;
    assert_eq!(
        frame,
        json!([null, "9", "kitchen:1", "phx_reply", {"status": "error", "response": {"reason": "unmatched topic"}}])
    );

    socket.join_ok("collection:status", json!({})).await;
    let jr = socket.make_ref();
    socket
        .send(json!([null, jr, "phoenix", "heartbeat", {}]))
        .await;
    let frame = socket.recv().await;
    assert_eq!(frame[3], "phx_reply");
    assert_eq!(frame[4]["status"], "ok");
    daemon.stop().await;
}

#[tokio::test]
async fn client_pushes_are_refused_at_once() {
    let daemon = Daemon::demo().await;
    let mut socket = daemon.socket("").await;
    socket
        .send(json!(["1", "1", "collection:status", "phx_join", {}]))
        .await;
    assert_eq!(socket.recv().await[4]["status"], "ok");
    socket
        .send(json!(["1", "2", "collection:status", "update", {"open": false}]))
        .await;
    let reply = socket.recv().await;
    assert_eq!(
        reply,
        json!(["1", "2", "collection:status", "phx_reply", {"status": "error", "response": {"reason": "unknown event"}}])
    );
    daemon.stop().await;
}

#[tokio::test]
async fn admins_hear_of_new_orders_and_customers_of_ready_ones() {
    let daemon = Daemon::demo().await;
    let mut admin = daemon.socket("token=admin-secret").await;
    admin.join_ok("notifications:admin", json!({})).await;
    admin.join_ok("notifications:user:7", json!({})).await;
    let shell = daemon.shell();
    let id = insert_order(&shell, 7, 101, None);

    let note = admin.next_event("notifications:admin", "new_order").await;
    assert_eq!(note["order_id"], id);
    assert_eq!(note["day_id"], 101);
    assert_eq!(note["message"], "New order #101");
    assert!(note["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));

    shell
        .execute(
            r#"UPDATE "order" SET state = 'production' WHERE id = ?1"#,
            [id],
        )
        .expect("production");
    shell
        .execute(
            r#"UPDATE "order" SET state = 'completed' WHERE id = ?1"#,
            [id],
        )
        .expect("completed");
    let ready = admin
        .next_event("notifications:user:7", "order_ready")
        .await;
    assert_eq!(ready["order_id"], id);
    assert_eq!(ready["day_id"], 101);
    daemon.stop().await;
}

#[tokio::test]
async fn a_wrong_token_refuses_the_upgrade() {
    // SPEC 2: a `token` that is neither the admin token nor a valid socket token is refused
    // with 403 (it used to make an anonymous socket before sessions existed).
    let daemon = Daemon::demo().await;
    let url = daemon.url("token=guess&vsn=2.0.0");
    match tokio_tungstenite::connect_async(url.as_str()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403)
        }
        other => panic!("expected 403, got {:?}", other.map(|_| ())),
    }
    daemon.stop().await;
}

#[tokio::test]
async fn after_leave_no_more_changes_arrive() {
    let daemon = Daemon::demo().await;
    let mut socket = daemon.socket("").await;
    socket
        .send(json!(["1", "1", "collection:message", "phx_join", {}]))
        .await;
    assert_eq!(socket.recv().await[4]["status"], "ok");
    // Joined for the barrier (on another topic: a rejoin would hide broadcasts queued for the
    // join that left).
    socket
        .send(json!(["3", "3", "collection:category", "phx_join", {}]))
        .await;
    assert_eq!(socket.recv().await[4]["status"], "ok");
    socket
        .send(json!(["1", "2", "collection:message", "phx_leave", {}]))
        .await;
    assert_eq!(socket.recv().await[3], "phx_reply");
    assert_eq!(
        socket.recv().await,
        json!(["1", "1", "collection:message", "phx_close", {}])
    );
    daemon
        .shell()
        .execute("INSERT INTO message (title) VALUES ('Stengt i morgen')", [])
        .expect("insert");
    let frames = socket.frames_before_barrier(&daemon, "category").await;
    assert!(frames.is_empty(), "{frames:?}");
    daemon.stop().await;
}

#[tokio::test]
async fn healthz_answers_ok_while_the_database_answers() {
    let daemon = Daemon::demo().await;
    let reply = crate::support::http::call(daemon.addr, "GET", "/healthz")
        .send()
        .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "ok");
    daemon.stop().await;
}

/// Wait until `observer` (joined to `topic`) has seen `n` more changes; returns the last seq.
async fn settle(observer: &mut Socket, topic: &str, n: usize) -> u64 {
    let mut seq = 0;
    for _ in 0..n {
        let change = observer.next_event(topic, "change").await;
        seq = change["seq"].as_u64().expect("seq");
    }
    seq
}

#[tokio::test]
async fn rejoin_with_since_receives_exactly_the_missed_changes_in_order() {
    let daemon = Daemon::demo().await;
    let mut observer = daemon.socket("").await;
    observer.join_ok("collection:message", json!({})).await;
    let mut screen = daemon.socket("").await;
    let first = screen.join_ok("collection:message", json!({})).await;
    let seen = first["seq"].as_u64().expect("seq");
    drop(screen);

    let shell = daemon.shell();
    shell
        .execute("INSERT INTO message (title) VALUES ('Ny kake')", [])
        .expect("insert");
    let id = shell.last_insert_rowid();
    settle(&mut observer, "collection:message", 1).await;
    shell
        .execute("UPDATE message SET subtitle = 'gulrot' WHERE id = ?1", [id])
        .expect("update");
    settle(&mut observer, "collection:message", 1).await;
    shell
        .execute("DELETE FROM message WHERE id = ?1", [id])
        .expect("delete");
    let last = settle(&mut observer, "collection:message", 1).await;

    let mut screen = daemon.socket("").await;
    let resumed = screen
        .join_ok("collection:message", json!({"options": {"since": seen}}))
        .await;
    assert_eq!(resumed["items"], Value::Null, "{resumed}");
    assert_eq!(resumed["seq"], last);
    let changes = resumed["changes"].as_array().expect("changes");
    let actions: Vec<&str> = changes
        .iter()
        .map(|c| c["action"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(actions, ["create", "update", "delete"]);
    let seqs: Vec<u64> = changes.iter().filter_map(|c| c["seq"].as_u64()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    assert_eq!(changes[1]["record"]["subtitle"], "gulrot");

    // And the live stream continues from there.
    shell
        .execute("INSERT INTO message (title) VALUES ('Åpent til 16')", [])
        .expect("insert");
    let live = screen.next_event("collection:message", "change").await;
    assert_eq!(live["action"], "create");
    assert!(live["seq"].as_u64().expect("seq") > last);

    // A resume point the log does not cover gets the ordinary snapshot.
    let mut stranger = daemon.socket("").await;
    let full = stranger
        .join_ok(
            "collection:message",
            json!({"options": {"since": last + 1000}}),
        )
        .await;
    assert!(full["items"].is_array(), "{full}");
    let bad = stranger
        .join("collection:status", json!({"options": {"since": "soon"}}))
        .await;
    assert_eq!(bad["response"]["reason"], "invalid options");
    daemon.stop().await;
}

#[tokio::test]
async fn resuming_an_order_filter_replays_leaving_it_as_a_delete() {
    let daemon = Daemon::demo().await;
    let shell = daemon.shell();
    let mut observer = daemon.socket(ADMIN_SCREEN).await;
    observer.join_ok("collection:order", json!({})).await;
    let id = insert_order(&shell, 7, 101, None);
    settle(&mut observer, "collection:order", 1).await;

    let mut seven = daemon.socket(ADMIN_SCREEN).await;
    let joined = seven
        .join_ok("collection:order", json!({"options": {"customer_id": 7}}))
        .await;
    let seen = joined["seq"].as_u64().expect("seq");
    drop(seven);

    shell
        .execute(r#"UPDATE "order" SET customer_id = 8 WHERE id = ?1"#, [id])
        .expect("move");
    settle(&mut observer, "collection:order", 1).await;
    insert_order(&shell, 9, 102, None);
    settle(&mut observer, "collection:order", 1).await;

    let mut seven = daemon.socket(ADMIN_SCREEN).await;
    let resumed = seven
        .join_ok(
            "collection:order",
            json!({"options": {"customer_id": 7, "since": seen}}),
        )
        .await;
    assert_eq!(
        resumed["changes"],
        json!([{"action": "delete", "record": {"id": id}, "seq": seen + 1}]),
        "customer 7 learns the order left, and nothing of customer 9's"
    );
    daemon.stop().await;
}

/// Ids of `records` (a snapshot's items) whose `category_name` is `category`.
fn ids_in(records: &Value, category: &str) -> Vec<i64> {
    let mut ids: Vec<i64> = records
        .as_array()
        .expect("items")
        .iter()
        .filter(|r| r["category_name"] == category)
        .filter_map(|r| r["id"].as_i64())
        .collect();
    ids.sort_unstable();
    ids
}

/// Read `socket` (joined to category, item, menu and message) until `items` item changes
/// arrived; returns the category change, the item changes (sorted by id) and how many menu
/// broadcasts came with them, counting up to a barrier commit made after.
async fn category_change_with_items(
    daemon: &Daemon,
    socket: &mut Socket,
    items: usize,
) -> (Value, Vec<Value>, usize) {
    let (mut category, mut changed, mut menus) = (Value::Null, Vec::new(), 0);
    while changed.len() < items || category.is_null() {
        let frame = socket.recv().await;
        match (frame[2].as_str(), frame[3].as_str()) {
            (Some("collection:category"), Some("change")) => category = frame[4].clone(),
            (Some("collection:item"), Some("change")) => changed.push(frame[4].clone()),
            (Some("collection:menu"), Some("change")) => menus += 1,
            _ => {}
        }
    }
    for frame in socket.frames_before_barrier(daemon, "message").await {
        assert_ne!(frame[2], "collection:item", "more item changes: {frame}");
        menus += usize::from(frame[2] == "collection:menu");
    }
    changed.sort_by_key(|c| c["record"]["id"].as_i64());
    (category, changed, menus)
}

#[tokio::test]
async fn renaming_a_category_republishes_its_items_with_the_new_name() {
    let daemon = Daemon::demo().await;
    let mut screen = daemon.socket("").await;
    let categories = screen.join_ok("collection:category", json!({})).await;
    let snapshot = screen.join_ok("collection:item", json!({})).await;
    screen.join_ok("collection:menu", json!({})).await;
    screen.join_ok("collection:message", json!({})).await;
    let seen = snapshot["seq"].as_u64().expect("seq");
    let kaffe = categories["items"]
        .as_array()
        .expect("categories")
        .iter()
        .find(|c| c["name"] == "Kaffe")
        .and_then(|c| c["id"].as_i64())
        .expect("Kaffe");
    let kaffe_items = ids_in(&snapshot["items"], "Kaffe");
    assert_eq!(kaffe_items.len(), 7);

    // Over HTTP.
    let reply = crate::support::http::call(
        daemon.addr,
        "PATCH",
        &format!("/api/collections/category/records/{kaffe}"),
    )
    .header("authorization", "Bearer admin-secret")
    .json(&json!({"name": "Kaffebar"}))
    .send()
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let (category, items, menus) = category_change_with_items(&daemon, &mut screen, 7).await;
    assert_eq!(category["record"]["name"], "Kaffebar");
    let seq = category["seq"].as_u64().expect("seq");
    let ids: Vec<i64> = items
        .iter()
        .filter_map(|c| c["record"]["id"].as_i64())
        .collect();
    assert_eq!(ids, kaffe_items);
    for change in &items {
        assert_eq!(change["action"], "update");
        assert_eq!(change["seq"], seq, "the rename's own transaction");
        assert_eq!(change["record"]["category_name"], "Kaffebar");
    }
    assert_eq!(menus, 1, "exactly one menu broadcast for the transaction");

    // A screen that was away resumes with the same item changes.
    let mut away = daemon.socket("").await;
    let resumed = away
        .join_ok("collection:item", json!({"options": {"since": seen}}))
        .await;
    let mut replayed: Vec<Value> = resumed["changes"].as_array().expect("changes").clone();
    replayed.sort_by_key(|c| c["record"]["id"].as_i64());
    assert_eq!(replayed, items);

    // From another process: rename one category, delete another under its items (the sqlite3
    // shell does not enforce foreign keys; rusqlite's bundled SQLite does unless told).
    let shell = daemon.shell();
    shell
        .execute("UPDATE category SET name = 'Urtete' WHERE name = 'Te'", [])
        .expect("rename");
    let (_, items, menus) = category_change_with_items(&daemon, &mut screen, 3).await;
    assert!(items
        .iter()
        .all(|c| c["record"]["category_name"] == "Urtete"));
    assert_eq!(menus, 1);
    shell
        .pragma_update(None, "foreign_keys", false)
        .expect("pragma");
    shell
        .execute("DELETE FROM category WHERE name = 'Mat og bakst'", [])
        .expect("delete");
    let (category, items, _) = category_change_with_items(&daemon, &mut screen, 4).await;
    assert_eq!(category["action"], "delete");
    // Exactly what a fresh snapshot shows for those items.
    let fresh = daemon
        .socket("")
        .await
        .join_ok("collection:item", json!({}))
        .await;
    for change in &items {
        assert_eq!(change["action"], "update");
        assert_eq!(change["record"]["category_name"], Value::Null);
        let id = &change["record"]["id"];
        let listed = fresh["items"]
            .as_array()
            .expect("items")
            .iter()
            .find(|r| r["id"] == *id)
            .expect("still listed");
        assert_eq!(&change["record"], listed);
    }
    daemon.stop().await;
}

/// Insert `orders` (customer ids) and close the café, all in one transaction of another
/// process, as a bulk fix from the `sqlite3` shell would.
fn bulk_orders_and_status(daemon: &Daemon, orders: &[i64]) {
    let mut shell = daemon.shell();
    let tx = shell.transaction().expect("tx");
    for (n, customer) in orders.iter().enumerate() {
        insert_order(&tx, *customer, 101 + n as i64, None);
    }
    tx.execute("UPDATE status SET open = 0", []).expect("close");
    tx.commit().expect("commit");
}

#[tokio::test]
async fn a_commit_too_big_for_a_join_resyncs_that_join_only() {
    // A queue of 16 takes at most 8 changes of one commit per join.
    let daemon = Daemon::start(true, |c| c.limits.outbound_queue = 16).await;
    let mut kitchen = daemon.socket(ADMIN_SCREEN).await;
    let joined = kitchen.join_ok("collection:order", json!({})).await;
    let seen = joined["seq"].as_u64().expect("seq");
    kitchen.join_ok("collection:status", json!({})).await;
    let mut seven = daemon.socket(ADMIN_SCREEN).await;
    seven
        .join_ok("collection:order", json!({"options": {"customer_id": 7}}))
        .await;
    seven.join_ok("collection:message", json!({})).await;

    // 20 orders, 2 of them customer 7's, and the status, in one commit.
    let customers: Vec<i64> = (0..20).map(|n| if n % 10 == 3 { 7 } else { 1 }).collect();
    bulk_orders_and_status(&daemon, &customers);

    // The kitchen's order join is told to resync; its status join gets the change as usual.
    let (mut errored, mut status) = (None, None);
    while errored.is_none() || status.is_none() {
        let frame = kitchen.recv().await;
        match (frame[2].as_str(), frame[3].as_str()) {
            (Some("collection:order"), Some("phx_error")) => errored = Some(frame),
            (Some("collection:order"), _) => panic!("an order frame besides phx_error: {frame}"),
            (Some("collection:status"), Some("change")) => status = Some(frame[4].clone()),
            _ => {}
        }
    }
    let errored = errored.unwrap_or_default();
    assert!(
        !errored[0].is_null() && errored[0] == errored[1],
        "{errored}"
    );
    let status = status.unwrap_or_default();
    assert_eq!(status["record"]["open"], false);
    let bulk_seq = status["seq"].as_u64().expect("seq");

    // The operator sees it: one join told to resync, no socket closed.
    let metrics = crate::support::http::call(daemon.addr, "GET", "/metrics")
        .send()
        .await
        .text();
    assert!(
        metrics.contains("\nkaffediem_resynced_joins_total 1\n")
            && metrics.contains("\nkaffediem_slow_sockets_closed_total 0\n"),
        "{metrics}"
    );

    // The kitchen's socket is still up; its rejoin from where it was gets the whole commit.
    let resumed = kitchen
        .join_ok("collection:order", json!({"options": {"since": seen}}))
        .await;
    assert_eq!(resumed["items"], Value::Null, "{resumed}");
    assert_eq!(resumed["seq"], bulk_seq);
    let changes = resumed["changes"].as_array().expect("changes");
    assert_eq!(changes.len(), 20);
    assert!(changes
        .iter()
        .all(|c| c["action"] == "create" && c["seq"] == bulk_seq));
    let replayed: Vec<i64> = changes
        .iter()
        .filter_map(|c| c["record"]["customer_id"].as_i64())
        .collect();
    assert_eq!(replayed, customers);

    // Customer 7's screen gets its two orders as plain changes.
    for _ in 0..2 {
        let change = seven.next_event("collection:order", "change").await;
        assert_eq!(change["action"], "create");
        assert_eq!(change["record"]["customer_id"], 7);
        assert_eq!(change["seq"], bulk_seq);
    }
    // (The barrier is a later commit: it comes after the kitchen's resume, whose seq it would
    // move.)
    let more = seven.frames_before_barrier(&daemon, "message").await;
    assert!(more.is_empty(), "{more:?}");

    // And the live stream goes on for both joins.
    let id = insert_order(&daemon.shell(), 1, 200, None);
    let live = kitchen.next_event("collection:order", "change").await;
    assert_eq!(live["record"]["id"], id);
    daemon
        .shell()
        .execute("UPDATE status SET open = 1", [])
        .expect("open");
    let live = kitchen.next_event("collection:status", "change").await;
    assert_eq!(live["record"]["open"], true);
    daemon.stop().await;
}

#[tokio::test]
async fn a_shell_update_of_more_orders_than_a_queue_holds_closes_no_socket() {
    // The default queue (1 024): a bulk UPDATE of 1 100 orders used to close every
    // subscriber's socket with 1013.
    let daemon = Daemon::demo().await;
    let mut probe = daemon.socket(ADMIN_SCREEN).await;
    probe.join_ok("collection:order", json!({})).await;
    let customers: Vec<i64> = (0..1100).map(|n| if n < 3 { 7 } else { 1 }).collect();
    {
        let mut shell = daemon.shell();
        let tx = shell.transaction().expect("tx");
        for (n, customer) in customers.iter().enumerate() {
            insert_order(&tx, *customer, 101 + n as i64, None);
        }
        tx.commit().expect("commit");
    }
    // The probe is told to resync once the fan-out has the inserts: the kitchen joins after.
    probe.next_event("collection:order", "phx_error").await;
    let mut kitchen = daemon.socket(ADMIN_SCREEN).await;
    let joined = kitchen.join_ok("collection:order", json!({})).await;
    assert_eq!(joined["items"].as_array().map(Vec::len), Some(1100));
    let seen = joined["seq"].as_u64().expect("seq");
    kitchen.join_ok("collection:status", json!({})).await;
    let mut seven = daemon.socket(ADMIN_SCREEN).await;
    seven
        .join_ok("collection:order", json!({"options": {"customer_id": 7}}))
        .await;

    {
        let mut shell = daemon.shell();
        let tx = shell.transaction().expect("tx");
        tx.execute(r#"UPDATE "order" SET state = 'production'"#, [])
            .expect("bulk update");
        tx.execute("UPDATE status SET open = 0", []).expect("close");
        tx.commit().expect("commit");
    }
    let (mut errored, mut status) = (false, None);
    while !errored || status.is_none() {
        let frame = kitchen.recv().await;
        match (frame[2].as_str(), frame[3].as_str()) {
            (Some("collection:order"), Some("phx_error")) => errored = true,
            (Some("collection:order"), _) => panic!("an order frame besides phx_error: {frame}"),
            (Some("collection:status"), Some("change")) => status = Some(frame[4].clone()),
            _ => {}
        }
    }
    let bulk_seq = status.unwrap_or_default()["seq"].as_u64().expect("seq");
    for _ in 0..3 {
        let change = seven.next_event("collection:order", "change").await;
        assert_eq!(change["action"], "update");
        assert_eq!(change["record"]["state"], "production");
        assert_eq!(change["seq"], bulk_seq);
    }
    let resumed = kitchen
        .join_ok("collection:order", json!({"options": {"since": seen}}))
        .await;
    let changes = resumed["changes"].as_array().expect("changes");
    assert_eq!(changes.len(), 1100);
    assert!(changes
        .iter()
        .all(|c| c["action"] == "update" && c["record"]["state"] == "production"));
    daemon.stop().await;
}
