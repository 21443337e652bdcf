//! Issue 10, "WebSocket origin check ignores scheme and port": sockets and HTTP writes follow
//! one origin rule — the exact origins of `http.allowed_origins` (scheme, host and port) plus
//! the daemon's own origin.

use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::{http::call, Daemon};

async fn upgrade_status(daemon: &Daemon, origin: &str) -> u16 {
    let mut req = daemon
        .url("vsn=2.0.0")
        .into_client_request()
        .expect("request");
    req.headers_mut()
        .insert("origin", origin.parse().expect("origin header"));
    match tokio_tungstenite::connect_async(req).await {
        Ok((_, response)) => response.status().as_u16(),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("upgrade failed oddly: {e}"),
    }
}

async fn write_status(daemon: &Daemon, origin: &str) -> u16 {
    call(daemon.addr, "POST", "/api/collections/message/records")
        .header("authorization", "Bearer admin-secret")
        .header("origin", origin)
        .json(&json!({"title": "from a page"}))
        .send()
        .await
        .status
        .as_u16()
}

#[tokio::test]
async fn sockets_and_http_writes_follow_one_origin_rule() {
    let daemon = Daemon::start(true, |c| {
        c.http.allowed_origins = vec!["http://front.example:8080".into()];
    })
    .await;
    let port = daemon.addr.port();
    let own = format!("http://127.0.0.1:{port}");
    let cases = [
        (own.clone(), true),
        ("http://front.example:8080".to_owned(), true),
        // The case: our host on another port (another program on the Pi).
        ("http://127.0.0.1:8080".to_owned(), false),
        (format!("https://127.0.0.1:{port}"), false),
        ("http://front.example".to_owned(), false),
        ("https://front.example:8080".to_owned(), false),
        ("null".to_owned(), false),
    ];
    for (origin, allowed) in cases {
        let upgrade = upgrade_status(&daemon, &origin).await;
        let write = write_status(&daemon, &origin).await;
        if allowed {
            assert_eq!(upgrade, 101, "socket from {origin}");
            assert!((200..300).contains(&write), "write from {origin}: {write}");
        } else {
            assert_eq!(upgrade, 403, "socket from {origin}");
            assert_eq!(write, 403, "write from {origin}");
        }
    }
    daemon.stop().await;
}
