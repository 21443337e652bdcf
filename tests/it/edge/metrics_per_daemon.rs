//! `/metrics` shows the figures of the daemon that answers: each server hands its own sources
//! to its HTTP layer (no process-wide table), so two daemons in one process never mix.

use serde_json::json;

use crate::support::{http::call, Daemon};

async fn orders_created(daemon: &Daemon) -> f64 {
    let reply = call(daemon.addr, "GET", "/metrics").send().await;
    assert_eq!(reply.status, 200);
    let body = reply.text();
    body.lines()
        .find_map(|l| {
            l.strip_prefix("kaffediem_orders_created_total ")?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no orders_created sample in:\n{body}"))
}

#[tokio::test]
async fn two_daemons_in_one_process_each_show_their_own_figures() {
    let busy = Daemon::demo().await;
    let quiet = Daemon::demo().await;
    let mut screen = busy.socket("").await;
    screen.join_ok("collection:order", json!({})).await;
    for n in 0..3 {
        busy.shell()
            .execute(
                r#"INSERT INTO "order" (uuid, customer_id, items) VALUES (?1, 7, '[]')"#,
                [format!("per-daemon-{n}")],
            )
            .expect("insert order");
        screen.next_event("collection:order", "change").await;
    }
    assert_eq!(orders_created(&busy).await, 3.0);
    assert_eq!(orders_created(&quiet).await, 0.0);
    // Stopping one leaves the other's figures where they were.
    busy.stop().await;
    assert_eq!(orders_created(&quiet).await, 0.0);
    quiet.stop().await;
}
