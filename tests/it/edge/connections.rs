//! Issue 10, "stuck request bodies" (600 of them exhausted file descriptors): open TCP
//! connections per client address are bounded at accept; other addresses are served as ever.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::support::{http::call, Daemon, WAIT};

/// A connection to `server` from the loopback address `from` (any 127/8 address is ours).
async fn connect_from(from: [u8; 4], server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from((from, 0)))
        .expect("bind a loopback address");
    socket.connect(server).await.expect("connect")
}

/// Whether the server closes `stream` (EOF, reset or a 503) without being asked anything.
async fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buf = Vec::new();
    match tokio::time::timeout(WAIT, stream.read_to_end(&mut buf)).await {
        Ok(Ok(_)) => buf.is_empty() || buf.starts_with(b"HTTP/1.1 503"),
        Ok(Err(_)) => true,
        Err(_) => false,
    }
}

/// The status line of `GET /healthz` on `stream`; empty when the server closed it instead.
async fn healthz_on(stream: &mut TcpStream) -> String {
    if stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .is_err()
    {
        return String::new();
    }
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(WAIT, stream.read(&mut buf))
        .await
        .expect("an answer")
        .unwrap_or(0);
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn connections_past_the_per_address_limit_are_closed_and_others_are_served() {
    let daemon = Daemon::start(true, |c| {
        c.limits.max_connections_per_address = 4;
        // Idle connections must not be dropped for being idle while the test runs.
        c.limits.header_timeout_seconds = 600;
    })
    .await;
    let mut kept = Vec::new();
    for _ in 0..4 {
        kept.push(connect_from([127, 0, 0, 2], daemon.addr).await);
    }
    for extra in 0..20 {
        let mut refused = connect_from([127, 0, 0, 2], daemon.addr).await;
        assert!(
            closed_by_server(&mut refused).await,
            "connection {} from 127.0.0.2 was kept open",
            5 + extra
        );
    }
    // Another address is served, and the four connections within the limit still work.
    let health = call(daemon.addr, "GET", "/healthz").send().await;
    assert_eq!(health.status, 200);
    for stream in &mut kept {
        assert_eq!(healthz_on(stream).await, "HTTP/1.1 200 OK");
    }
    // Closing connections gives their room back.
    drop(kept);
    let mut again = Vec::new();
    for _ in 0..4 {
        // Served (not refused) once the server has seen the old connections go.
        let served = tokio::time::timeout(WAIT, async {
            loop {
                let mut stream = connect_from([127, 0, 0, 2], daemon.addr).await;
                if healthz_on(&mut stream).await == "HTTP/1.1 200 OK" {
                    break stream;
                }
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("closed connections give their room back");
        again.push(served);
    }
    daemon.stop().await;
}

/// A kept-alive connection that sends nothing more is dropped after the header timeout, so
/// idle connections do not sit on the per-address count forever.
#[tokio::test]
async fn an_idle_kept_alive_connection_is_dropped_after_the_header_timeout() {
    let daemon = Daemon::start(true, |c| c.limits.header_timeout_seconds = 1).await;
    let mut stream = connect_from([127, 0, 0, 2], daemon.addr).await;
    assert_eq!(healthz_on(&mut stream).await, "HTTP/1.1 200 OK");
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(WAIT, stream.read_to_end(&mut rest)).await;
    assert!(ended.is_ok(), "an idle kept-alive connection stayed open");
    daemon.stop().await;
}
