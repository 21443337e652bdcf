//! Issue 10, "HTTP details": HEAD answers like GET without a body; wrong methods on
//! `/metrics` get 405 with `Allow`.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{http::call, Daemon, WAIT};

/// The raw answer to `METHOD path` on a connection of its own: head and body bytes.
async fn raw(daemon: &Daemon, method: &str, path: &str) -> (String, Vec<u8>) {
    let mut stream = TcpStream::connect(daemon.addr).await.expect("connect");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        daemon.addr
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut answer))
        .await
        .expect("an answer in time")
        .expect("read");
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a whole head");
    let head = String::from_utf8_lossy(&answer[..split]).into_owned();
    (head, answer[split + 4..].to_vec())
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test]
async fn head_answers_like_get_without_a_body() {
    let daemon = Daemon::demo().await;
    for path in [
        "/healthz",
        "/api/menu",
        "/api/collections/item/records",
        "/api/collections/item/records/1",
    ] {
        let (get_head, get_body) = raw(&daemon, "GET", path).await;
        let (head_head, head_body) = raw(&daemon, "HEAD", path).await;
        let status = |h: &str| h.lines().next().unwrap_or_default().to_owned();
        assert_eq!(status(&head_head), status(&get_head), "HEAD {path}");
        assert!(
            status(&get_head).starts_with("HTTP/1.1 200"),
            "GET {path}: {get_head}"
        );
        assert!(head_body.is_empty(), "HEAD {path} sent a body");
        assert_eq!(
            header(&head_head, "content-type"),
            header(&get_head, "content-type"),
            "HEAD {path}"
        );
        assert_eq!(
            header(&head_head, "content-length").map(str::to_owned),
            Some(get_body.len().to_string()),
            "HEAD {path} announces the GET body's length"
        );
    }
    daemon.stop().await;
}

#[tokio::test]
async fn wrong_methods_on_metrics_get_405() {
    let daemon = Daemon::demo().await;
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let reply = call(daemon.addr, method, "/metrics").send().await;
        assert_eq!(reply.status, 405, "{method} /metrics");
        let allow = reply.header("allow").unwrap_or_default();
        assert!(allow.contains("GET"), "{method} /metrics: Allow {allow:?}");
    }
    daemon.stop().await;
}
