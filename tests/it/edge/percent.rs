//! Query strings are decoded the one way (`application/x-www-form-urlencoded`) on both doors,
//! the JSON API and the socket transports: `%XX` and `+` decoded, a broken escape kept as it
//! came. `%+9` is a broken escape on both (the API's own decoder once read it as a tab, so
//! `perPage=2%+9` listed two records where the socket refused the same value).

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{http::call, Daemon, WAIT};

/// The status of a WebSocket upgrade to `path_query`, sent by hand so the query goes as is.
async fn upgrade_status(addr: SocketAddr, path_query: &str) -> u16 {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!(
        "GET {path_query} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, stream.read(&mut byte))
            .await
            .expect("an answer in time")
            .expect("read");
        assert_eq!(n, 1, "connection closed before the head ended");
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head)
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status")
}

#[tokio::test]
async fn a_broken_escape_is_refused_alike_by_the_api_and_the_socket() {
    let daemon = Daemon::demo().await;
    let list = |query: &'static str| {
        call(
            daemon.addr,
            "GET",
            &format!("/api/collections/item/records?{query}"),
        )
        .send()
    };
    // Escapes and `+` are decoded the same on both doors…
    let reply = list("perPage=%32").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json().as_array().map(Vec::len), Some(2));
    assert_eq!(reply.json(), list("perPage=+2+").await.json());
    assert_eq!(
        upgrade_status(daemon.addr, "/socket/websocket?vsn=2%2E0.0").await,
        101
    );
    // …and a broken one is kept as it came, so neither reads `%+9` as a character.
    let reply = list("perPage=2%+9").await;
    assert_eq!(reply.status, 422, "{}", reply.text());
    assert!(reply.json()["errors"]["perPage"].is_array());
    assert_eq!(
        upgrade_status(daemon.addr, "/socket/websocket?vsn=2.0.0%+9").await,
        403
    );
    daemon.stop().await;
}
