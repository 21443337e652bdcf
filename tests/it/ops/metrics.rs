//! `/metrics` in the Prometheus text format.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_sockets_channels_messages_and_orders() {
    let site = Site::new();
    let mut daemon = demo_with_admin_token(&site);
    let mut socket = Socket::connect(&daemon.ws_url()).await;
    socket.join_ok("collection:order", json!({})).await;
    // One write through the daemon's writer, one order from another process.
    let posted = try_post(
        daemon.addr,
        "/api/collections/message/records",
        &json!({"title": "metrics"}),
    )
    .await;
    assert_eq!(posted, Some(201));
    site.shell()
        .execute(
            r#"INSERT INTO "order" (uuid, customer_id, items) VALUES ('metrics-1', 7, '[]')"#,
            [],
        )
        .expect("insert order");
    socket.next_event("collection:order", "change").await;

    let reply = call(daemon.addr, "GET", "/metrics").send().await;
    assert_eq!(reply.status.as_u16(), 200);
    assert!(reply
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/plain; version=0.0.4")));
    let body = reply.text();
    let value = |sample: &str| -> f64 {
        body.lines()
            .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no sample {sample} in:\n{body}"))
    };
    assert_eq!(value("kaffediem_open_sockets"), 1.0);
    assert_eq!(
        value("kaffediem_joined_channels{topic=\"collection:order\"}"),
        1.0
    );
    assert!(value("kaffediem_messages_sent_total") >= 2.0); // join reply + change
    assert!(value("kaffediem_bytes_sent_total") > 0.0);
    assert_eq!(value("kaffediem_orders_created_total"), 1.0);
    assert!(value("kaffediem_commits_total") >= 2.0);
    assert_eq!(value("kaffediem_slow_sockets_closed_total"), 0.0);
    // Timed on the writer's handle, counted in the fan-out.
    assert!(value("kaffediem_write_transaction_seconds_count") >= 1.0);
    assert!(value("kaffediem_write_transaction_seconds_bucket{le=\"+Inf\"}") >= 1.0);
    assert!(value("kaffediem_broadcasts_total") >= 1.0);

    drop(socket);
    daemon.terminate();
    assert!(daemon.wait().success());
}
