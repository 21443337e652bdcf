//! Rows edited in with the `sqlite3` shell (SPEC 4, 10): a bad value gets a clear error for
//! the record it is in, or a stand-in, never a 500 for everyone, a lost broadcast or a `seq`
//! that goes back; `kaffediem check` names each such row.

use serde_json::{json, Value};

use super::{admin, latte_order, list, Menu};
use crate::support::process::{error_line, text, Site};
use crate::support::{Daemon, Socket};

const ORDERS: &str = "/api/collections/order/records";

#[tokio::test]
async fn an_item_named_by_a_blob_is_ordered_under_its_name_read_as_text() {
    let daemon = Daemon::demo().await;
    let menu = Menu::load(&daemon).await;
    // "Latte" and one byte that is not UTF-8.
    daemon
        .shell()
        .execute(
            "UPDATE item SET name = X'4C61747465FF' WHERE name = 'Latte'",
            [],
        )
        .expect("shell update");
    let reply = admin(&daemon, "POST", ORDERS, latte_order(&menu, 1)).await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    assert_eq!(reply.json()["items"][0]["name"], "Latte\u{fffd}");
    let reply = admin(&daemon, "GET", "/api/menu", json!(null)).await;
    assert_eq!(reply.status, 200);
    daemon.stop().await;
}

#[tokio::test]
async fn an_item_whose_category_was_deleted_in_the_shell_is_a_422_naming_it() {
    let daemon = Daemon::demo().await;
    let menu = Menu::load(&daemon).await;
    // The sqlite3 shell enforces no foreign keys unless told to.
    let shell = daemon.shell();
    shell
        .pragma_update(None, "foreign_keys", false)
        .expect("foreign keys off, as in the sqlite3 shell");
    shell
        .execute("DELETE FROM category WHERE name = 'Mat og bakst'", [])
        .expect("shell delete");
    drop(shell);
    let bun = json!({"item": menu.item("Kanelbolle")});
    let latte = json!({"item": menu.item("Latte")});
    let reply = admin(
        &daemon,
        "POST",
        ORDERS,
        json!({"items": [latte.clone(), bun]}),
    )
    .await;
    assert_eq!(reply.status, 422, "{}", reply.text());
    let errors = &reply.json()["errors"]["items"];
    assert_eq!(errors[0], json!({}), "{errors}");
    assert_eq!(
        errors[1]["item"][0], "item Kanelbolle has no category",
        "{errors}"
    );
    assert_eq!(list(&daemon, "order").await, Vec::<Value>::new());
    let reply = admin(&daemon, "POST", ORDERS, json!({"items": [latte]})).await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    daemon.stop().await;
}

#[tokio::test]
async fn an_order_inserted_in_the_shell_with_a_junk_timestamp_is_still_broadcast() {
    let daemon = Daemon::demo().await;
    let mut screen = daemon.socket("").await;
    screen.join_ok("collection:order", json!({})).await;
    let mut today = daemon.socket("").await;
    today
        .join_ok(
            "collection:order",
            json!({"options": {"from_date": "today"}}),
        )
        .await;
    daemon
        .shell()
        .execute(
            "INSERT INTO \"order\" (uuid, day_id, items, inserted_at) \
             VALUES ('fra-skallet', 150, '[]', 'ved lunsj')",
            [],
        )
        .expect("shell insert");
    for socket in [&mut screen, &mut today] {
        let change = socket.next_event("collection:order", "change").await;
        assert_eq!(change["action"], "create", "{change}");
        assert_eq!(change["record"]["uuid"], "fra-skallet", "{change}");
        // Served as its updated_at (the column default: when the shell inserted it).
        let at = &change["record"]["inserted_at"];
        assert_eq!(at, &change["record"]["updated_at"], "{change}");
        assert!(at.as_str().is_some_and(|s| s.ends_with('Z')), "{change}");
    }
    let orders = list(&daemon, "order").await;
    assert_eq!(orders.len(), 1);
    daemon.stop().await;
}

/// Place one order as the admin; the `seq` its change carried to `screen`.
async fn order_seq(daemon: &Daemon, menu: &Menu, screen: &mut Socket) -> u64 {
    let reply = admin(daemon, "POST", ORDERS, latte_order(menu, 1)).await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let change = screen.next_event("collection:order", "change").await;
    assert_eq!(change["record"]["id"], reply.json()["id"], "{change}");
    change["seq"].as_u64().expect("a seq")
}

async fn order_screen(daemon: &Daemon) -> Socket {
    let mut screen = daemon.socket("").await;
    screen.join_ok("collection:order", json!({})).await;
    screen
}

#[tokio::test]
async fn seq_never_goes_back_when_the_shell_breaks_it_while_running_or_stopped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("kaffediem.db");
    let path = db.clone();
    let daemon = Daemon::start(true, move |c| c.database.path = path).await;
    let menu = Menu::load(&daemon).await;
    let mut screen = order_screen(&daemon).await;
    let shell = || {
        let conn = rusqlite::Connection::open(&db).expect("open");
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .expect("busy timeout");
        conn
    };
    let set_seq = |value: &str| {
        shell()
            .execute(
                &format!("UPDATE kaffediem_meta SET value = {value} WHERE key = 'seq'"),
                [],
            )
            .expect("shell update");
    };
    let first = order_seq(&daemon, &menu, &mut screen).await;
    set_seq("'abc'");
    let second = order_seq(&daemon, &menu, &mut screen).await;
    assert!(second > first, "{second} after {first}");
    set_seq("0");
    let third = order_seq(&daemon, &menu, &mut screen).await;
    assert!(third > second, "{third} after {second}");
    daemon.stop().await;

    // Broken while stopped: the daemon starts, and continues above every seq it handed out.
    set_seq("'abc'");
    let path = dir.path().join("kaffediem.db");
    let daemon = Daemon::start(false, move |c| c.database.path = path).await;
    let mut screen = order_screen(&daemon).await;
    let fourth = order_seq(&daemon, &menu, &mut screen).await;
    assert!(fourth > third, "{fourth} after {third}");
    let stored: i64 = shell()
        .query_row(
            "SELECT value FROM kaffediem_meta WHERE key = 'seq'",
            [],
            |r| r.get(0),
        )
        .expect("seq is a number again");
    assert_eq!(stored as u64, fourth);
    daemon.stop().await;
}

#[test]
fn check_names_every_bad_row_by_table_id_and_column() {
    let site = Site::new();
    site.demo_db();
    let shell = site.shell();
    shell
        .pragma_update(None, "foreign_keys", false)
        .expect("foreign keys off, as in the sqlite3 shell");
    let id = |sql: &str| -> i64 { shell.query_row(sql, [], |r| r.get(0)).expect(sql) };
    let latte = id("SELECT id FROM item WHERE name = 'Latte'");
    let bun = id("SELECT id FROM item WHERE name = 'Kanelbolle'");
    let bakst = id("SELECT id FROM category WHERE name = 'Mat og bakst'");
    let vanilje = id("SELECT id FROM customization_value WHERE name = 'Vanilje'");
    shell
        .execute_batch(&format!(
            "UPDATE item SET name = X'4C61747465FF' WHERE id = {latte};
             DELETE FROM category WHERE id = {bakst};
             UPDATE customization_value SET price_increment_nok = 'gratis' WHERE id = {vanilje};
             INSERT INTO \"order\" (uuid, day_id, items, inserted_at)
                 VALUES ('fra-skallet', 150, '[]', 'ved lunsj');
             UPDATE kaffediem_meta SET value = 'abc' WHERE key = 'seq';"
        ))
        .expect("shell edits");
    let order = id("SELECT id FROM \"order\" WHERE uuid = 'fra-skallet'");
    drop(shell);
    let out = site.run(&["check"]);
    assert!(!out.status.success());
    let report = text(&out.stdout);
    for line in [
        format!("bad row       item {latte} name: a BLOB"),
        format!("bad row       item {bun} category_id: category {bakst} does not exist"),
        format!("bad row       customization_value {vanilje} price_increment_nok: 'gratis'"),
        format!("bad row       order {order} inserted_at: 'ved lunsj' is not a timestamp"),
        "bad row       kaffediem_meta seq value: 'abc' is not a number".to_owned(),
    ] {
        assert!(report.contains(&line), "{line}\n{report}");
    }
    assert!(
        error_line(&out).contains("fix them"),
        "{}",
        error_line(&out)
    );
}
