//! Issue 15, "long-poll sessions": WebSockets and long-poll sessions count together against
//! `limits.max_sockets_per_address`, so one address cannot take the daemon's every socket;
//! and a GET with a dead session's token opens a new session (410 with a new token).

use std::net::SocketAddr;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Error as WsError;

use crate::support::{Daemon, Socket, WAIT};

async fn connect_from(from: [u8; 4], server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::from((from, 0))).expect("bind");
    socket.connect(server).await.expect("connect")
}

/// A WebSocket from the loopback address `from`: the socket, or the HTTP status refusing it.
async fn websocket_from(from: [u8; 4], daemon: &Daemon) -> Result<Socket, u16> {
    let stream = connect_from(from, daemon.addr).await;
    let url = daemon.url("vsn=2.0.0");
    match tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(stream))
        .await
    {
        Ok((ws, _)) => Ok(Socket::from_ws(ws)),
        Err(WsError::Http(response)) => Err(response.status().as_u16()),
        Err(e) => panic!("upgrade failed oddly: {e}"),
    }
}

/// `GET /socket/longpoll?QUERY` from `from`; the JSON envelope.
async fn long_poll_from(from: [u8; 4], daemon: &Daemon, query: &str) -> Value {
    let mut stream = connect_from(from, daemon.addr).await;
    let request = format!(
        "GET /socket/longpoll?{query} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        daemon.addr
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut answer))
        .await
        .expect("an answer in time")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n").expect("a whole answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    serde_json::from_str(body).expect("JSON envelope")
}

#[tokio::test]
async fn sockets_and_long_poll_sessions_are_bounded_per_address() {
    let daemon = Daemon::start(true, |c| {
        c.limits.max_sockets = 8;
        c.limits.max_sockets_per_address = 3;
    })
    .await;
    // 127.0.0.3 opens bare long-poll sessions, as many as it likes to ask for: three get one.
    let mut opened = 0;
    for _ in 0..20 {
        let answer = long_poll_from([127, 0, 0, 3], &daemon, "vsn=2.0.0").await;
        match answer["status"].as_u64() {
            Some(410) => opened += 1,
            Some(500) => {}
            other => panic!("unexpected long-poll answer {other:?}"),
        }
    }
    assert_eq!(opened, 3, "long-poll sessions opened from one address");

    // 127.0.0.2: WebSockets and a long-poll session share its three.
    let mut kept = Vec::new();
    for _ in 0..3 {
        kept.push(
            websocket_from([127, 0, 0, 2], &daemon)
                .await
                .expect("within the limit"),
        );
    }
    assert_eq!(
        websocket_from([127, 0, 0, 2], &daemon).await.err(),
        Some(503)
    );
    let refused = long_poll_from([127, 0, 0, 2], &daemon, "vsn=2.0.0").await;
    assert_eq!(refused, json!({"status": 500}));

    // Everyone else still gets a socket, and it works.
    let mut screen = daemon.socket("").await;
    screen.join_ok("collection:status", json!({})).await;
    for socket in &mut kept {
        socket.join_ok("collection:status", json!({})).await;
    }
    daemon.stop().await;
}

#[tokio::test]
async fn a_long_poll_with_a_dead_session_token_gets_a_new_session() {
    let first = Daemon::start(true, |_| {}).await;
    let opened = long_poll_from([127, 0, 0, 1], &first, "vsn=2.0.0").await;
    assert_eq!(opened["status"], 410);
    let old = opened["token"].as_str().expect("a token").to_owned();
    first.stop().await;

    // The daemon restarted: the session is gone, and the client polls with its token.
    let second = Daemon::start(true, |_| {}).await;
    let answer = long_poll_from([127, 0, 0, 1], &second, &format!("vsn=2.0.0&token={old}")).await;
    assert_eq!(answer["status"], 410, "{answer}");
    let new = answer["token"].as_str().expect("a new token");
    assert_ne!(new, old);
    assert_eq!(answer["messages"], json!([]));
    second.stop().await;
}
