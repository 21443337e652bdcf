//! Bounded join snapshots (SPEC 3.1): an order join without `from_date` sees the last
//! `limits.order_snapshot_days` days; no snapshot holds more than
//! `limits.snapshot_max_records` records (the newest), and a cut reply says so.

use serde_json::{json, Value};

use crate::support::Daemon;

/// Insert an order inserted at `at` (RFC 3339) from the shell; its id.
fn order_at(conn: &rusqlite::Connection, uuid: &str, at: &str) -> i64 {
    conn.execute(
        r#"INSERT INTO "order" (uuid, customer_id, items, inserted_at, updated_at)
           VALUES (?1, 1, '[]', ?2, ?2)"#,
        rusqlite::params![uuid, at],
    )
    .expect("insert order");
    conn.last_insert_rowid()
}

fn ago(days: i64) -> String {
    let at = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * days);
    kaffediem::store::records::format_timestamp(at)
}

fn ids(items: &Value) -> Vec<i64> {
    items
        .as_array()
        .expect("items")
        .iter()
        .map(|r| r["id"].as_i64().expect("id"))
        .collect()
}

#[tokio::test]
async fn an_order_join_without_from_date_gets_the_last_days_only() {
    let daemon = Daemon::start(true, |c| c.limits.order_snapshot_days = 3).await;
    let shell = daemon.shell();
    let old = order_at(&shell, "last-month", &ago(30));
    let recent = order_at(&shell, "yesterday", &ago(1));
    let now = order_at(&shell, "now", &ago(0));

    let mut screen = daemon.socket("").await;
    let reply = screen.join_ok("collection:order", json!({})).await;
    assert_eq!(ids(&reply["items"]), vec![recent, now]);
    assert!(reply.get("truncated").is_none(), "{reply}");

    // Asking for the history by date still gets it.
    let mut history = daemon.socket("").await;
    let since = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * 40);
    let day = since.to_zoned(jiff::tz::TimeZone::UTC).date().to_string();
    let reply = history
        .join_ok("collection:order", json!({"options": {"from_date": day}}))
        .await;
    assert_eq!(ids(&reply["items"]), vec![old, recent, now]);
    daemon.stop().await;
}

#[tokio::test]
async fn snapshots_keep_the_newest_records_up_to_the_cap_and_say_they_were_cut() {
    let daemon = Daemon::start(true, |c| c.limits.snapshot_max_records = 3).await;
    let shell = daemon.shell();
    let placed: Vec<i64> = (0..5)
        .map(|n| {
            order_at(
                &shell,
                &format!("cap-{n}"),
                &ago(0).replace('Z', &format!("{n}Z")),
            )
        })
        .collect();

    let mut screen = daemon.socket("").await;
    let reply = screen.join_ok("collection:order", json!({})).await;
    assert_eq!(reply["truncated"], true, "{reply}");
    assert_eq!(
        ids(&reply["items"]),
        placed[2..].to_vec(),
        "newest, oldest first"
    );

    // A collection within the cap is whole and says nothing.
    let status = screen.join_ok("collection:status", json!({})).await;
    assert_eq!(status["items"].as_array().map(Vec::len), Some(1));
    assert!(status.get("truncated").is_none(), "{status}");

    // Other collections are capped the same way: the demo café has more than 3 items.
    let items = screen.join_ok("collection:item", json!({})).await;
    assert_eq!(items["truncated"], true);
    assert_eq!(items["items"].as_array().map(Vec::len), Some(3));
    daemon.stop().await;
}
