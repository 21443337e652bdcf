//! A commit by another process (the `sqlite3` shell) that lands while the daemon's writer
//! waits for the write lock: the daemon's own commit must not mark the other's rows as
//! published, or a join taken right then holds them in its snapshot and receives them again
//! as `create`s once the writer publishes them.

use std::time::Duration;

use serde_json::json;

use crate::support::http::call;
use crate::support::Daemon;

#[tokio::test]
async fn a_foreign_commit_under_the_writers_feet_reaches_a_screen_once() {
    let daemon = Daemon::demo().await;
    let shell = daemon.shell();
    // The shell takes the write lock and inserts an order, not yet committed.
    shell.execute_batch("BEGIN IMMEDIATE").expect("begin");
    shell
        .execute(
            r#"INSERT INTO "order" (uuid, customer_id, day_id, state, items) VALUES ('from-the-shell', 5, 101, 'received', '[]')"#,
            [],
        )
        .expect("insert");
    let foreign: i64 = shell.last_insert_rowid();
    // A daemon write now waits for the lock (after its own look for foreign commits).
    let addr = daemon.addr;
    let write = tokio::spawn(async move {
        call(addr, "POST", "/api/collections/message/records")
            .header("authorization", "Bearer admin-secret")
            .json(&json!({"title": "Stengt i morgen"}))
            .send()
            .await
    });
    // Let the request reach the writer; if it has not yet, the race is not staged and the
    // test proves nothing this time (it cannot fail wrongly).
    tokio::time::sleep(Duration::from_millis(300)).await;
    shell.execute_batch("COMMIT").expect("commit");
    let written = write.await.expect("request");
    assert_eq!(written.status, 201, "{}", written.text());

    let mut screen = daemon.socket("").await;
    let joined = screen.join_ok("collection:order", json!({})).await;
    let in_snapshot = joined["items"]
        .as_array()
        .expect("items")
        .iter()
        .any(|o| o["id"] == foreign);
    // A barrier: the next order through the API, after which every earlier change arrived.
    let placed = call(
        addr,
        "PATCH",
        &format!("/api/collections/order/records/{foreign}"),
    )
    .header("authorization", "Bearer admin-secret")
    .json(&json!({"state": "production"}))
    .send()
    .await;
    assert_eq!(placed.status, 200, "{}", placed.text());
    let mut creates = 0;
    loop {
        let change = screen.next_event("collection:order", "change").await;
        if change["record"]["id"] != foreign {
            continue;
        }
        match change["action"].as_str() {
            Some("create") => creates += 1,
            Some("update") if change["record"]["state"] == "production" => break,
            _ => {}
        }
    }
    assert_eq!(
        usize::from(in_snapshot) + creates,
        1,
        "the shell's order reached the screen once (snapshot: {in_snapshot}, creates: {creates})"
    );
    daemon.stop().await;
}
