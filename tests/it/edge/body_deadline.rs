//! Issue 10, "stuck request bodies": every route gives a client `limits.body_seconds` to send
//! its whole body, then answers 408 and closes the connection.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{http::call, Daemon, WAIT};

/// Send the headers of a POST (from the listed frontend) announcing 100 bytes and only 10 of
/// them; the answer's status line and whole head, once the server gives up.
async fn stuck_post(daemon: &Daemon, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(daemon.addr).await.expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Authorization: Bearer admin-secret\r\nOrigin: http://front.example\r\n\
         Content-Length: 100\r\n\r\n{{\"email\":",
        daemon.addr
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(WAIT, stream.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "POST {path}: a stuck body was never answered");
    let answer = String::from_utf8_lossy(&answer);
    let head = answer
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_owned();
    (answer.lines().next().unwrap_or_default().to_owned(), head)
}

#[tokio::test]
async fn a_body_that_never_completes_gets_408_on_every_route() {
    let daemon = Daemon::start(true, |c| {
        c.limits.body_seconds = 1;
        c.http.allowed_origins = vec!["http://front.example".into()];
    })
    .await;
    for path in [
        "/api/session",
        "/api/collections/message/records",
        "/api/collections/order/records",
    ] {
        let (status, head) = stuck_post(&daemon, path).await;
        assert_eq!(status, "HTTP/1.1 408 Request Timeout", "POST {path}");
        // The frontend's browser is shown the 408 (CORS headers kept).
        assert!(
            head.to_ascii_lowercase()
                .contains("access-control-allow-origin: http://front.example"),
            "POST {path}: {head}"
        );
    }
    // A body that does arrive is read as before.
    let ok = call(daemon.addr, "POST", "/api/collections/message/records")
        .header("authorization", "Bearer admin-secret")
        .json(&serde_json::json!({"title": "on time"}))
        .send()
        .await;
    assert!(ok.status.is_success(), "{}", ok.text());
    daemon.stop().await;
}
