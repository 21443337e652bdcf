//! An order query is read by one parser for both doors: the same options over HTTP (query
//! string) and in a `collection:order` join (JSON) select the same orders, and the same bad
//! option gets the same `errors` object (a 422 over HTTP, `invalid options` in a join).

use serde_json::{json, Value};

use crate::support::{http::call, Daemon};

/// Admin on both doors, so a customer filter is allowed.
const ADMIN: &str = "Bearer admin-secret";

fn insert_order(conn: &rusqlite::Connection, customer: i64, at: &str) -> i64 {
    conn.execute(
        r#"INSERT INTO "order" (uuid, customer_id, items, inserted_at, updated_at)
           VALUES (?1, ?2, '[]', ?3, ?3)"#,
        rusqlite::params![format!("q-{customer}-{at}"), customer, at],
    )
    .expect("insert order");
    conn.last_insert_rowid()
}

fn ids(records: &Value) -> Vec<i64> {
    let mut ids: Vec<i64> = records
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {records}"))
        .iter()
        .filter_map(|r| r["id"].as_i64())
        .collect();
    ids.sort_unstable();
    ids
}

#[tokio::test]
async fn the_same_options_select_the_same_orders_over_http_and_in_a_join() {
    let daemon = Daemon::demo().await;
    let shell = daemon.shell();
    let old = insert_order(&shell, 7, "2026-01-05T10:00:00.000000Z");
    let seven = insert_order(&shell, 7, "2026-02-05T10:00:00.000000Z");
    let eight = insert_order(&shell, 8, "2026-02-06T10:00:00.000000Z");
    let mut socket = daemon.socket("token=admin-secret").await;
    for (query, options, expected) in [
        (
            "from_date=2026-02-01&customer_id=7",
            json!({"from_date": "2026-02-01", "customer_id": 7}),
            vec![seven],
        ),
        (
            "from_date=2026-01-01&customer_id=+7+",
            json!({"from_date": "2026-01-01", "customer_id": " 7 "}),
            vec![old, seven],
        ),
        (
            "from_date=2026-02-01",
            json!({"from_date": "2026-02-01"}),
            vec![seven, eight],
        ),
    ] {
        let path = format!("/api/collections/order/records?{query}");
        let listed = call(daemon.addr, "GET", &path)
            .header("authorization", ADMIN)
            .send()
            .await;
        assert_eq!(listed.status, 200, "{query}: {}", listed.text());
        assert_eq!(ids(&listed.json()), expected, "HTTP {query}");
        let joined = socket
            .join_ok("collection:order", json!({ "options": options }))
            .await;
        assert_eq!(ids(&joined["items"]), expected, "join {options}");
    }
    daemon.stop().await;
}

#[tokio::test]
async fn a_bad_option_gets_the_same_errors_over_http_and_in_a_join() {
    let daemon = Daemon::demo().await;
    let mut socket = daemon.socket("token=admin-secret").await;
    for (query, options) in [
        ("from_date=yesterday", json!({"from_date": "yesterday"})),
        ("from_date=2026-2-1", json!({"from_date": "2026-2-1"})),
        ("customer_id=1.5", json!({"customer_id": "1.5"})),
        ("customer_id=", json!({"customer_id": ""})),
        (
            "from_date=&customer_id=seven",
            json!({"from_date": "", "customer_id": "seven"}),
        ),
    ] {
        let path = format!("/api/collections/order/records?{query}");
        let listed = call(daemon.addr, "GET", &path)
            .header("authorization", ADMIN)
            .send()
            .await;
        assert_eq!(listed.status, 422, "{query}: {}", listed.text());
        let reply = socket
            .join("collection:order", json!({ "options": options }))
            .await;
        assert_eq!(reply["status"], "error", "{options}");
        assert_eq!(reply["response"]["reason"], "invalid options");
        assert_eq!(
            reply["response"]["errors"],
            listed.json()["errors"],
            "{query} vs {options}"
        );
    }
    daemon.stop().await;
}
