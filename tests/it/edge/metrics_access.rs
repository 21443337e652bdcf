//! Issue 15, "`/metrics` is readable by anyone": loopback clients and holders of
//! `access.admin_token` may read it, and the addresses of `http.metrics_allowed`; anyone else
//! gets 403. Every loopback address is loopback, so clients on the café LAN are played by a
//! trusted reverse proxy on 127.0.0.1 naming them in `X-Forwarded-For`.

use crate::support::{http::call, Daemon};

#[tokio::test]
async fn metrics_are_for_loopback_the_admin_token_and_listed_addresses() {
    let daemon = Daemon::start(true, |c| {
        c.http.trusted_proxies = vec!["127.0.0.1".into()];
        c.http.metrics_allowed = vec!["192.168.1.10".into()];
    })
    .await;
    let from =
        |client: &str| call(daemon.addr, "GET", "/metrics").header("x-forwarded-for", client);
    // A student on the LAN.
    let refused = from("192.168.1.77").send().await;
    assert_eq!(refused.status, 403, "{}", refused.text());
    assert!(!refused.text().contains("kaffediem_open_sockets"));
    // The same student with the admin token.
    let admin = from("192.168.1.77")
        .header("authorization", "Bearer admin-secret")
        .send()
        .await;
    assert_eq!(admin.status, 200);
    assert!(admin.text().contains("kaffediem_open_sockets"));
    let wrong = from("192.168.1.77")
        .header("authorization", "Bearer guess")
        .send()
        .await;
    assert_eq!(wrong.status, 403);
    // The scraper named in http.metrics_allowed.
    assert_eq!(from("192.168.1.10").send().await.status, 200);
    // Loopback itself (the Pi's own shell, a local Prometheus).
    assert_eq!(
        call(daemon.addr, "GET", "/metrics").send().await.status,
        200
    );
    daemon.stop().await;
}
