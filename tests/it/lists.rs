//! Bounded HTTP lists (SPEC 10): still plain JSON arrays, `page` / `perPage` (at most 500)
//! select a page, `X-Total-Count` tells the total, and an order list without `from_date` or
//! paging is bounded like an order snapshot.

use serde_json::Value;

use crate::support::http::call;
use crate::support::Daemon;

fn order_at(conn: &rusqlite::Connection, uuid: &str, at: &str) -> i64 {
    conn.execute(
        r#"INSERT INTO "order" (uuid, customer_id, items, inserted_at, updated_at)
           VALUES (?1, 1, '[]', ?2, ?2)"#,
        rusqlite::params![uuid, at],
    )
    .expect("insert order");
    conn.last_insert_rowid()
}

/// An instant `days` ago plus `n` microseconds, as stored.
fn ago(days: i64, n: i64) -> String {
    let at = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * days)
        + jiff::SignedDuration::from_micros(n);
    kaffediem::store::records::format_timestamp(at)
}

/// GET `path`: the ids listed and `X-Total-Count`.
async fn listed(daemon: &Daemon, path: &str) -> (Vec<i64>, u64) {
    let reply = call(daemon.addr, "GET", path).send().await;
    assert_eq!(reply.status, 200, "{path}: {}", reply.text());
    let total = reply
        .header("x-total-count")
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("{path}: no X-Total-Count"));
    let ids = match reply.json() {
        Value::Array(records) => records.iter().filter_map(|r| r["id"].as_i64()).collect(),
        other => panic!("{path}: not an array: {other}"),
    };
    (ids, total)
}

#[tokio::test]
async fn order_lists_are_bounded_by_default_and_page_through_everything() {
    let daemon = Daemon::start(true, |c| {
        c.limits.order_snapshot_days = 2;
        c.limits.snapshot_max_records = 4;
    })
    .await;
    let shell = daemon.shell();
    let old: Vec<i64> = (0..3)
        .map(|n| order_at(&shell, &format!("old-{n}"), &ago(30, n)))
        .collect();
    let recent: Vec<i64> = (0..6)
        .map(|n| order_at(&shell, &format!("new-{n}"), &ago(0, n)))
        .collect();
    let all: Vec<i64> = old.iter().chain(&recent).copied().collect();

    // No from_date, no paging: the last days, the newest up to the cap, oldest first.
    let (ids, total) = listed(&daemon, "/api/collections/order/records").await;
    assert_eq!(ids, recent[2..].to_vec());
    assert_eq!(total, 6);

    // A from_date far back: the whole window counted, still at most the cap, the newest.
    let (ids, total) = listed(
        &daemon,
        "/api/collections/order/records?from_date=2000-01-01",
    )
    .await;
    assert_eq!((ids, total), (recent[2..].to_vec(), 9));

    // Pages walk the whole history in snapshot order, whatever the default window.
    let mut walked = Vec::new();
    for page in 1..=3 {
        let path = format!("/api/collections/order/records?page={page}&perPage=4");
        let (ids, total) = listed(&daemon, &path).await;
        assert_eq!(total, 9, "{path}");
        walked.extend(ids);
    }
    assert_eq!(walked, all);
    let (ids, _) = listed(&daemon, "/api/collections/order/records?page=99&perPage=4").await;
    assert!(ids.is_empty());
    daemon.stop().await;
}

#[tokio::test]
async fn bad_paging_is_a_422_naming_the_parameter() {
    let daemon = Daemon::demo().await;
    for (query, field) in [
        ("perPage=501", "perPage"),
        ("perPage=0", "perPage"),
        ("page=0", "page"),
        ("page=-1", "page"),
        ("page=abc", "page"),
    ] {
        let path = format!("/api/collections/item/records?{query}");
        let reply = call(daemon.addr, "GET", &path).send().await;
        assert_eq!(reply.status, 422, "{query}: {}", reply.text());
        assert!(reply.json()["errors"][field].is_array(), "{query}");
    }
    daemon.stop().await;
}

#[tokio::test]
async fn the_frontends_catalog_lists_are_whole_arrays_with_their_total() {
    let daemon = Daemon::demo().await;
    for collection in [
        "category",
        "item",
        "customization_key",
        "customization_value",
    ] {
        let path = format!("/api/collections/{collection}/records");
        let (ids, total) = listed(&daemon, &path).await;
        assert!(!ids.is_empty(), "{collection}");
        assert_eq!(ids.len() as u64, total, "{collection}: the whole list");
        let (first, _) = listed(&daemon, &format!("{path}?perPage=1")).await;
        assert_eq!(first.len(), 1);
    }
    daemon.stop().await;
}
