//! The WebSocket side of the Phoenix endpoint: upgrade answers (400/403/503/101), subprotocol
//! and compression negotiation, close codes (idle 1002, malformed 1011/1007/1009, slow
//! consumer 1013, shutdown 1001) and pings.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

use crate::phoenix::{connect, server, server_with, v2, Client, GUARD};
use crate::phoenix_test_app::j;

/// The idle timeout on paused time, over an in-memory pipe.
mod paused;

/// Send a raw HTTP request and return the status code and the response head (lowercased).
async fn http(addr: SocketAddr, request: String) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = timeout(GUARD, stream.read(&mut buf))
            .await
            .expect("answer in time")
            .expect("read");
        assert!(n > 0, "connection closed before the response head");
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, head)
}

fn upgrade_request(addr: SocketAddr, path_query: &str, extra: &[&str]) -> String {
    let mut req = format!(
        "GET {path_query} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    );
    for header in extra {
        req.push_str(header);
        req.push_str("\r\n");
    }
    req.push_str("\r\n");
    req
}

#[tokio::test]
async fn phoenix_unsupported_vsn_is_refused_before_upgrade() {
    let s = server().await;
    for vsn in ["3.0.0", "2.1.0", "abc"] {
        let (status, _) = http(
            s.addr,
            upgrade_request(s.addr, &format!("/socket/websocket?vsn={vsn}"), &[]),
        )
        .await;
        assert_eq!(status, 403, "vsn={vsn}");
    }
    let (status, _) = http(
        s.addr,
        upgrade_request(s.addr, "/socket/websocket?vsn[]=x", &[]),
    )
    .await;
    assert_eq!(status, 403);
    let (status, head) = http(
        s.addr,
        upgrade_request(s.addr, "/socket/websocket?vsn=2.0.0", &[]),
    )
    .await;
    assert_eq!(status, 101);
    assert!(
        head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
}

#[tokio::test]
async fn phoenix_refused_connect_is_403_with_empty_body() {
    let s = server().await;
    let (status, head) = http(
        s.addr,
        upgrade_request(
            s.addr,
            "/socket/websocket?vsn=2.0.0&reject=true&token=secret",
            &[],
        ),
    )
    .await;
    assert_eq!(status, 403);
    assert!(head.contains("content-length: 0"), "{head}");
    let seen = s
        .app
        .last_connect
        .lock()
        .unwrap()
        .clone()
        .expect("connect ran");
    assert_eq!(seen.params.get("vsn").map(String::as_str), Some("2.0.0"));
}

#[tokio::test]
async fn phoenix_origin_policy() {
    let s = server().await;
    let path = "/socket/websocket?vsn=2.0.0";
    let (evil, _) = http(
        s.addr,
        upgrade_request(s.addr, path, &["Origin: http://evil.example"]),
    )
    .await;
    assert_eq!(evil, 403);
    let (none, _) = http(s.addr, upgrade_request(s.addr, path, &[])).await;
    assert_eq!(none, 101);
    let own = format!("Origin: http://{}", s.addr);
    let (own, _) = http(s.addr, upgrade_request(s.addr, path, &[&own])).await;
    assert_eq!(own, 101);

    let open = server_with(|c| c.check_origin = false).await;
    let (off, _) = http(
        open.addr,
        upgrade_request(open.addr, path, &["Origin: http://evil.example"]),
    )
    .await;
    assert_eq!(off, 101);
    let listed = server_with(|c| c.allowed_origins = vec!["https://cafe.example".into()]).await;
    let (ok, _) = http(
        listed.addr,
        upgrade_request(listed.addr, path, &["Origin: https://cafe.example"]),
    )
    .await;
    assert_eq!(ok, 101);
    let (wrong_scheme, _) = http(
        listed.addr,
        upgrade_request(listed.addr, path, &["Origin: http://cafe.example"]),
    )
    .await;
    assert_eq!(wrong_scheme, 403);
}

#[tokio::test]
async fn phoenix_non_upgrade_requests_get_400() {
    let s = server().await;
    let post = format!(
        "POST /socket/websocket HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\n\r\n",
        s.addr
    );
    assert_eq!(http(s.addr, post).await.0, 400);
    let get = format!(
        "GET /socket/websocket?vsn=2.0.0 HTTP/1.1\r\nHost: {}\r\n\r\n",
        s.addr
    );
    assert_eq!(http(s.addr, get).await.0, 400);
}

#[tokio::test]
async fn phoenix_compression_is_never_negotiated() {
    let s = server().await;
    let offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits";
    let (status, head) = http(
        s.addr,
        upgrade_request(s.addr, "/socket/websocket?vsn=2.0.0", &[offer]),
    )
    .await;
    assert_eq!(status, 101);
    assert!(!head.contains("sec-websocket-extensions"), "{head}");
}

#[tokio::test]
async fn phoenix_auth_token_subprotocol_selects_phoenix() {
    let s = server().await;
    let url = format!("ws://{}/socket/websocket?token=abc&vsn=2.0.0", s.addr);
    let mut request = url.into_client_request().expect("request");
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "phoenix,base64url.bearer.phx.bXkgc2VjcmV0IHRva2VuIT8"
            .parse()
            .expect("header"),
    );
    let (ws, response) = timeout(GUARD, tokio_tungstenite::connect_async(request))
        .await
        .expect("in time")
        .expect("upgrade");
    assert_eq!(
        response
            .headers()
            .get("sec-websocket-protocol")
            .map(|v| v.as_bytes()),
        Some(&b"phoenix"[..])
    );
    let seen = s
        .app
        .last_connect
        .lock()
        .unwrap()
        .clone()
        .expect("connect ran");
    assert_eq!(seen.auth_token.as_deref(), Some("my secret token!?"));
    assert_eq!(seen.params.get("token").map(String::as_str), Some("abc"));
    let mut c = Client { ws };
    c.barrier().await;
}

#[tokio::test]
async fn phoenix_socket_limit_answers_503() {
    let s = server_with(|c| c.max_sockets = 1).await;
    let mut first = v2(s.addr).await;
    let (status, _) = http(
        s.addr,
        upgrade_request(s.addr, "/socket/websocket?vsn=2.0.0", &[]),
    )
    .await;
    assert_eq!(status, 503);
    first.barrier().await;
    assert_eq!(s.endpoint.metrics().open_sockets.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn phoenix_ping_gets_pong_and_no_phoenix_frame() {
    let s = server().await;
    let mut c = v2(s.addr).await;
    c.send_msg(Message::Ping(Bytes::from_static(b"hi"))).await;
    assert_eq!(c.next().await, Message::Pong(Bytes::from_static(b"hi")));
    c.barrier().await;
}

/// Case 42, raw: the forced disconnect of `users_socket:7` closes exactly user 7's sockets with
/// 1001 (both of them); user 8's and an anonymous socket go on.
#[tokio::test]
async fn phoenix_forced_disconnect_by_socket_id_closes_only_those_sockets() {
    let s = server().await;
    let mut seven = connect(s.addr, "vsn=2.0.0&user_id=7").await;
    let mut seven_again = connect(s.addr, "vsn=2.0.0&user_id=7").await;
    let mut eight = connect(s.addr, "vsn=2.0.0&user_id=8").await;
    let mut anonymous = v2(s.addr).await;
    for c in [&mut seven, &mut seven_again, &mut eight, &mut anonymous] {
        c.join("1", "test:a").await;
    }
    assert_eq!(s.endpoint.disconnect("users_socket:7"), 2);
    assert_eq!(seven.close_code().await, 1001);
    assert_eq!(seven_again.close_code().await, 1001);
    assert_eq!(s.endpoint.disconnect("users_socket:9"), 0);
    eight.barrier().await;
    anonymous.barrier().await;
    // The closed sockets' joins are gone with them: a broadcast reaches the other two only.
    timeout(GUARD, async {
        while s.endpoint.metrics().open_sockets.load(Ordering::Relaxed) != 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("two sockets left");
    assert_eq!(s.app.broadcast("test:a", "still", j(json!({}))), 2);
}

async fn assert_closes(frame: Message, code: u16) {
    let s = server().await;
    let mut c = v2(s.addr).await;
    c.join("1", "test:a").await;
    c.send_msg(frame).await;
    assert_eq!(c.close_code().await, code);
    // The socket's channels are gone with it.
    timeout(GUARD, async {
        while s.endpoint.metrics().open_sockets.load(Ordering::Relaxed) != 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("socket closed");
    assert_eq!(s.app.broadcast("test:a", "gone", j(json!({}))), 0);
}

#[tokio::test]
async fn phoenix_malformed_text_closes_1011() {
    assert_closes(Message::text("not json"), 1011).await;
    assert_closes(Message::text(r#"["1","2","test:a"]"#), 1011).await;
    assert_closes(
        Message::text(r#"{"topic":"test:a","event":"echo","payload":{},"ref":"1"}"#),
        1011,
    )
    .await;
}

#[tokio::test]
async fn phoenix_malformed_binary_closes_1011() {
    assert_closes(Message::Binary(Bytes::from_static(&[5, 0, 0, 0, 0])), 1011).await;
    assert_closes(Message::Binary(Bytes::from_static(&[0, 5])), 1011).await;
}

#[tokio::test]
async fn phoenix_invalid_utf8_closes_1007() {
    let frame = Frame::message(
        Bytes::from_static(&[b'[', 0xff, 0xfe, b']']),
        OpCode::Data(Data::Text),
        true,
    );
    assert_closes(Message::Frame(frame), 1007).await;
}

#[tokio::test]
async fn phoenix_oversized_message_closes_1009() {
    let s = server_with(|c| c.max_message_bytes = 1024).await;
    let mut c = v2(s.addr).await;
    let big = json!([null, "1", "phoenix", "heartbeat", {"pad": "x".repeat(4096)}]);
    c.send(big).await;
    assert_eq!(c.close_code().await, 1009);
}

#[tokio::test]
async fn phoenix_stalled_reader_is_closed_1013_while_others_keep_receiving() {
    let s = server_with(|c| c.outbound_queue = 16).await;
    let mut stalled = v2(s.addr).await;
    let mut healthy = v2(s.addr).await;
    stalled.join("1", "test:flood").await;
    healthy.join("1", "test:flood").await;
    let pad = "x".repeat(32 * 1024);
    let slow = || s.endpoint.metrics().slow_closed.load(Ordering::Relaxed);
    let mut sent = 0;
    // The healthy client reads each broadcast before the next is sent; the stalled one never
    // reads, so its TCP buffers and then its queue fill up.
    while slow() == 0 {
        assert!(sent < 4000, "the stalled reader was never closed");
        s.app
            .broadcast("test:flood", "flood", j(json!({"n": sent, "pad": pad})));
        let got = healthy.recv().await;
        assert_eq!(
            (got[3].clone(), got[4]["n"].clone()),
            (json!("flood"), json!(sent))
        );
        sent += 1;
    }
    for n in sent..sent + 10 {
        assert_eq!(
            s.app.broadcast("test:flood", "flood", j(json!({"n": n}))),
            1,
            "only the healthy one"
        );
        assert_eq!(healthy.recv().await[4]["n"], json!(n));
    }
    healthy.barrier().await;
    assert_eq!(stalled.close_code().await, 1013);
}

/// More broadcasts than the connection takes at once (the first ones written straight from
/// the sender until the connection takes one only in part, the rest by the socket task; the
/// last too large to be written straight) reach a client that reads late whole and in order;
/// a heartbeat sent meanwhile is answered (replies may overtake queued broadcasts).
#[tokio::test]
async fn phoenix_broadcasts_larger_than_the_connection_takes_arrive_whole_and_in_order() {
    const N: usize = 240;
    const PAD: usize = 60 * 1024;
    let s = server_with(|c| c.outbound_queue = 1024).await;
    let mut c = v2(s.addr).await;
    c.join("1", "test:big").await;
    for n in 0..N {
        // The last is past what a broadcast may be for a straight write (64 KiB).
        let pad = "x".repeat(if n == N - 1 { 2 * PAD } else { PAD });
        let payload = j(json!({"n": n, "pad": pad}));
        assert_eq!(s.app.broadcast("test:big", "big", payload), 1);
    }
    c.send(json!([null, "hb", "phoenix", "heartbeat", {}]))
        .await;
    let (mut next, mut replies) = (0, 0);
    while next < N || replies == 0 {
        let got = c.recv().await;
        if got[3] == json!("phx_reply") {
            assert_eq!(
                got,
                json!([null, "hb", "phoenix", "phx_reply", {"status": "ok", "response": {}}])
            );
            replies += 1;
            continue;
        }
        assert_eq!((&got[3], &got[4]["n"]), (&json!("big"), &json!(next)));
        let pad = if next == N - 1 { 2 * PAD } else { PAD };
        assert_eq!(got[4]["pad"].as_str().map(str::len), Some(pad));
        next += 1;
    }
    c.barrier().await;
    assert_eq!((next, replies), (N, 1));
    assert_eq!(s.endpoint.metrics().slow_closed.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn phoenix_close_all_closes_with_1001_and_waits() {
    let s = server().await;
    let mut a = v2(s.addr).await;
    let b = connect(s.addr, "").await;
    a.join("1", "test:a").await;
    let closing = async {
        timeout(GUARD, s.endpoint.close_all(1001))
            .await
            .expect("close_all returns");
    };
    let (code_a, code_b, ()) = tokio::join!(a.close_code(), b.close_code(), closing);
    assert_eq!((code_a, code_b), (1001, 1001));
    assert_eq!(s.endpoint.metrics().open_sockets.load(Ordering::Relaxed), 0);
    let (status, _) = http(
        s.addr,
        upgrade_request(s.addr, "/socket/websocket?vsn=2.0.0", &[]),
    )
    .await;
    assert_eq!(status, 503, "a closed endpoint takes no new sockets");
}

#[tokio::test]
async fn phoenix_config_is_replaceable_at_runtime() {
    let s = server().await;
    let mut c = v2(s.addr).await;
    c.join("1", "test:a").await;
    let mut config = (*s.endpoint.config()).clone();
    config.max_topics_per_socket = 1;
    s.endpoint.set_config(config);
    c.send(json!(["2", "2", "test:b", "phx_join", {}])).await;
    assert_eq!(
        c.recv().await,
        json!(["2", "2", "test:b", "phx_reply", {"status": "error", "response": {"reason": "too many channels joined"}}])
    );
}
