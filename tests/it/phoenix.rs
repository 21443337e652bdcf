//! Phoenix Channels protocol conformance with raw frames (cases of
//! `/work/shared/phoenix-protocol.md` §8), against the test app on 127.0.0.1:0.
//! Absence of a frame is proven with a heartbeat as a barrier, never with a sleep.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{connect_async, MaybeTlsStream, WebSocketStream};

use crate::phoenix_test_app::{j, start, TestServer};
use kaffediem::phoenix::{Broadcast, EndpointConfig, Vsn};

/// Failure guard for every wait; never a timing assertion.
pub const GUARD: Duration = Duration::from_secs(10);

pub async fn server() -> TestServer {
    start(EndpointConfig::default()).await
}

pub async fn server_with(adjust: impl FnOnce(&mut EndpointConfig)) -> TestServer {
    let mut config = EndpointConfig::default();
    adjust(&mut config);
    start(config).await
}

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

pub async fn connect(addr: SocketAddr, query: &str) -> Client {
    let url = format!("ws://{addr}/socket/websocket?{query}");
    let (ws, _) = timeout(GUARD, connect_async(url))
        .await
        .expect("upgrade in time")
        .expect("upgrade accepted");
    Client { ws }
}

pub async fn v2(addr: SocketAddr) -> Client {
    connect(addr, "vsn=2.0.0").await
}

/// `[join_ref, ref, topic, "phx_reply", {"status": status, "response": response}]`.
pub fn reply(
    jr: impl Into<Value>,
    r: impl Into<Value>,
    topic: &str,
    status: &str,
    response: Value,
) -> Value {
    json!([jr.into(), r.into(), topic, "phx_reply", {"status": status, "response": response}])
}

pub fn unmatched(r: impl Into<Value>, topic: &str) -> Value {
    reply(
        Value::Null,
        r,
        topic,
        "error",
        json!({"reason": "unmatched topic"}),
    )
}

impl Client {
    pub async fn send(&mut self, frame: Value) {
        self.send_msg(Message::text(frame.to_string())).await;
    }

    pub async fn send_msg(&mut self, msg: Message) {
        timeout(GUARD, self.ws.send(msg))
            .await
            .expect("send in time")
            .expect("send");
    }

    pub async fn next(&mut self) -> Message {
        match timeout(GUARD, self.ws.next()).await.expect("frame in time") {
            Some(Ok(msg)) => msg,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    pub async fn recv(&mut self) -> Value {
        match self.next().await {
            Message::Text(text) => serde_json::from_str(text.as_str()).expect("JSON frame"),
            other => panic!("expected a text frame, got {other:?}"),
        }
    }

    pub async fn join(&mut self, jr: &str, topic: &str) {
        self.send(json!([jr, jr, topic, "phx_join", {}])).await;
        assert_eq!(self.recv().await, reply(jr, jr, topic, "ok", json!({})));
    }

    /// A heartbeat round trip: every frame the server meant to send before it has arrived.
    pub async fn barrier(&mut self) {
        self.send(json!([null, "hb", "phoenix", "heartbeat", {}]))
            .await;
        assert_eq!(
            self.recv().await,
            reply(Value::Null, "hb", "phoenix", "ok", json!({}))
        );
    }

    /// Read until the server's close frame, then until the server hangs up; return the code.
    /// The client is dropped (its TCP side closed) as a browser would.
    pub async fn close_code(mut self) -> u16 {
        let code = loop {
            match timeout(GUARD, self.ws.next()).await.expect("close in time") {
                Some(Ok(Message::Close(Some(frame)))) => break frame.code.into(),
                Some(Ok(Message::Close(None))) => panic!("close frame without a code"),
                Some(Ok(_)) => continue,
                other => panic!("connection ended without a close frame: {other:?}"),
            }
        };
        // Our close reply goes out while reading; the server then ends the TCP connection.
        match timeout(GUARD, self.ws.next())
            .await
            .expect("server hangs up in time")
        {
            None | Some(Err(_)) => code,
            Some(Ok(other)) => panic!("frame after the close frame: {other:?}"),
        }
    }
}

#[tokio::test]
async fn phoenix_heartbeat_needs_no_join() {
    let s = server().await;
    let mut c = v2(s.addr).await;
    c.send(json!([null, "1", "phoenix", "heartbeat", {}])).await;
    assert_eq!(
        c.recv().await,
        reply(Value::Null, "1", "phoenix", "ok", json!({}))
    );
    // Whatever join_ref the client sends, the heartbeat reply has none.
    c.send(json!(["7", "2", "phoenix", "heartbeat", {"any": "payload"}]))
        .await;
    assert_eq!(
        c.recv().await,
        reply(Value::Null, "2", "phoenix", "ok", json!({}))
    );
    let metrics = s.endpoint.metrics();
    assert_eq!(metrics.messages_sent.load(Ordering::Relaxed), 2);
    let frame = r#"[null,"1","phoenix","phx_reply",{"status":"ok","response":{}}]"#;
    assert_eq!(
        metrics.bytes_sent.load(Ordering::Relaxed),
        2 * frame.len() as u64
    );
    assert_eq!(metrics.open_sockets.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn phoenix_join_replies_ok_and_welcome() {
    let s = server().await;
    let mut c = v2(s.addr).await;
    c.send(json!(["1", "1", "test:a", "phx_join", {}])).await;
    assert_eq!(
        c.recv().await,
        json!(["1", "1", "test:a", "phx_reply", {"status": "ok", "response": {}}])
    );
    c.send(json!(["2", "2", "test:w", "phx_join", {"welcome": true}]))
        .await;
    assert_eq!(
        c.recv().await,
        reply("2", "2", "test:w", "ok", json!({"welcome": true}))
    );
}

#[tokio::test]
async fn phoenix_refused_join_leaves_topic_unjoined() {
    let s = server().await;
    let mut c = v2(s.addr).await;
    c.send(json!(["1", "1", "test:refuse", "phx_join", {}]))
        .await;
    assert_eq!(
        c.recv().await,
        reply(
            "1",
            "1",
            "test:refuse",
            "error",
            json!({"reason": "unauthorized"})
        )
    );
    c.send(json!(["1", "2", "test:refuse", "echo", {}])).await;
    assert_eq!(c.recv().await, unmatched("2", "test:refuse"));
}

#[tokio::test]
async fn phoenix_unmatched_topic_join_has_null_join_ref() {
    let s = server().await;
    let mut c = v2(s.addr).await;
    c.send(json!(["1", "1", "nope:x", "phx_join", {}])).await;
    assert_eq!(c.recv().await, unmatched("1", "nope:x"));
    c.barrier().await;
}

#[tokio::test]
async fn phoenix_crashing_join_keeps_socket_alive() {
    let s = server().await;
    let mut c = v2(s.addr).await;
    c.send(json!(["1", "1", "test:joincrash", "phx_join", {}]))
        .await;
    assert_eq!(
        c.recv().await,
        reply(
            "1",
            "1",
            "test:joincrash",
            "error",
            json!({"reason": "join crashed"})
        )
    );
    c.barrier().await;
    c.join("2", "test:after").await;
}

#[tokio::test]
async fn phoenix_join_past_topic_limit_is_refused() {
    let s = server().await;
    let mut c = v2(s.addr).await;
    for n in 1..=100 {
        c.join(&n.to_string(), &format!("test:{n}")).await;
    }
    c.send(json!(["101", "101", "test:101", "phx_join", {}]))
        .await;
    assert_eq!(
        c.recv().await,
        reply(
            "101",
            "101",
            "test:101",
            "error",
            json!({"reason": "too many channels joined"})
        )
    );
    // Leaving one makes room again.
    c.send(json!(["1", "102", "test:1", "phx_leave", {}])).await;
    assert_eq!(c.recv().await, reply("1", "102", "test:1", "ok", json!({})));
    assert_eq!(c.recv().await, json!(["1", "1", "test:1", "phx_close", {}]));
    c.join("103", "test:101").await;
}

#[tokio::test]
async fn phoenix_duplicate_join_replies_then_closes_old_and_broadcasts_once() {
    let s = server().await;
    let mut c = v2(s.addr).await;
    c.join("1", "test:d").await;
    c.send(json!(["3", "3", "test:d", "phx_join", {}])).await;
    assert_eq!(c.recv().await, reply("3", "3", "test:d", "ok", json!({})));
    assert_eq!(c.recv().await, json!(["1", "1", "test:d", "phx_close", {}]));
    assert_eq!(s.app.broadcast("test:d", "news", j(json!({"n": 1}))), 1);
    assert_eq!(
        c.recv().await,
        json!([null, null, "test:d", "news", {"n": 1}])
    );
    c.barrier().await;
}

#[tokio::test]
async fn phoenix_null_join_ref_join_uses_ref_for_pushes() {
    let s = server().await;
    let mut c = v2(s.addr).await;
    c.send(json!([null, "5", "test:n", "phx_join", {}])).await;
    assert_eq!(
        c.recv().await,
        reply(Value::Null, "5", "test:n", "ok", json!({}))
    );
    c.send(json!([null, "6", "test:n", "push", {}])).await;
    assert_eq!(
        c.recv().await,
        json!(["5", null, "test:n", "pushed", {"a": 1}])
    );
}

#[tokio::test]
async fn phoenix_echo_keeps_ref_type() {
    let s = server().await;
    let mut c = v2(s.addr).await;
    c.join("1", "test:a").await;
    c.send(json!(["1", "2", "test:a", "echo", {"x": 1}])).await;
    assert_eq!(
        c.recv().await,
        reply("1", "2", "test:a", "ok", json!({"echo": {"x": 1}}))
    );
    c.send(json!(["1", 2, "test:a", "echo", {"x": 1}])).await;
    let numeric = c.recv().await;
    assert_eq!(
        numeric,
        reply("1", 2, "test:a", "ok", json!({"echo": {"x": 1}}))
    );
    assert!(numeric[1].is_number());
}

#[tokio::test]
async fn phoenix_error_reply() {
    let s = server().await;
    let mut c = v2(s.addr).await;
    c.join("1", "test:a").await;
    c.send(json!(["1", "2", "test:a", "error", {}])).await;
    assert_eq!(
        c.recv().await,
        reply("1", "2", "test:a", "error", json!({"reason": "nope"}))
    );
}

#[tokio::test]
async fn phoenix_event_on_unjoined_topic_is_unmatched() {
    let s = server().await;
    let mut c = v2(s.addr).await;
    c.send(json!(["9", "2", "test:never", "echo", {}])).await;
    assert_eq!(c.recv().await, unmatched("2", "test:never"));
    c.barrier().await;
}

#[tokio::test]
async fn phoenix_stale_join_ref_is_dropped_silently() {
    let s = server().await;
    let mut c = v2(s.addr).await;
    c.join("1", "test:a").await;
    c.send(json!(["3", "3", "test:a", "phx_join", {}])).await;
    assert_eq!(c.recv().await, reply("3", "3", "test:a", "ok", json!({})));
    assert_eq!(c.recv().await, json!(["1", "1", "test:a", "phx_close", {}]));
    c.send(json!(["1", "4", "test:a", "echo", {}])).await;
    c.send(json!(["3", "5", "test:a", "echo", {}])).await;
    assert_eq!(
        c.recv().await,
        reply("3", "5", "test:a", "ok", json!({"echo": {}}))
    );
}

#[tokio::test]
async fn phoenix_null_join_ref_event_is_answered_with_channel_join_ref() {
    let s = server().await;
    let mut c = v2(s.addr).await;
    c.join("1", "test:a").await;
    c.send(json!([null, "4", "test:a", "echo", {}])).await;
    assert_eq!(
        c.recv().await,
        reply("1", "4", "test:a", "ok", json!({"echo": {}}))
    );
}

#[tokio::test]
async fn phoenix_push_carries_join_ref_and_null_ref() {
    let s = server().await;
    let mut c = v2(s.addr).await;
    c.join("1", "test:a").await;
    c.send(json!(["1", "2", "test:a", "push", {}])).await;
    assert_eq!(
        c.recv().await,
        json!(["1", null, "test:a", "pushed", {"a": 1}])
    );
}

#[tokio::test]
async fn phoenix_bcast_reaches_every_socket_once() {
    let s = server().await;
    let (mut a, mut b) = (v2(s.addr).await, v2(s.addr).await);
    a.join("1", "test:b").await;
    b.join("7", "test:b").await;
    a.send(json!(["1", "2", "test:b", "bcast", {"hi": true}]))
        .await;
    let frame = json!([null, null, "test:b", "bcasted", {"hi": true}]);
    assert_eq!(a.recv().await, frame);
    assert_eq!(b.recv().await, frame);
    a.barrier().await;
    b.barrier().await;
}

#[tokio::test]
async fn phoenix_leave_replies_then_closes() {
    let s = server().await;
    let mut c = v2(s.addr).await;
    c.join("1", "test:a").await;
    c.send(json!(["1", "2", "test:a", "phx_leave", {}])).await;
    assert_eq!(c.recv().await, reply("1", "2", "test:a", "ok", json!({})));
    assert_eq!(c.recv().await, json!(["1", "1", "test:a", "phx_close", {}]));
    c.send(json!(["1", "3", "test:a", "echo", {}])).await;
    assert_eq!(c.recv().await, unmatched("3", "test:a"));
    // No broadcast reaches a left topic.
    assert_eq!(s.app.broadcast("test:a", "late", j(json!({}))), 0);
    c.barrier().await;
}

#[tokio::test]
async fn phoenix_leave_of_unjoined_topic_echoes_join_ref() {
    let s = server().await;
    let mut c = v2(s.addr).await;
    c.send(json!(["7", "2", "test:zzz", "phx_leave", {}])).await;
    assert_eq!(c.recv().await, reply("7", "2", "test:zzz", "ok", json!({})));
    c.barrier().await;
}

#[tokio::test]
async fn phoenix_stale_leave_is_ignored() {
    let s = server().await;
    let mut c = v2(s.addr).await;
    c.join("1", "test:a").await;
    c.send(json!(["3", "3", "test:a", "phx_join", {}])).await;
    assert_eq!(c.recv().await, reply("3", "3", "test:a", "ok", json!({})));
    assert_eq!(c.recv().await, json!(["1", "1", "test:a", "phx_close", {}]));
    c.send(json!(["1", "4", "test:a", "phx_leave", {}])).await;
    c.barrier().await;
    c.send(json!(["3", "5", "test:a", "echo", {}])).await;
    assert_eq!(
        c.recv().await,
        reply("3", "5", "test:a", "ok", json!({"echo": {}}))
    );
}

#[tokio::test]
async fn phoenix_crash_errors_only_that_channel() {
    let s = server().await;
    let mut c = v2(s.addr).await;
    c.join("1", "test:a").await;
    c.join("2", "test:other").await;
    c.send(json!(["1", "3", "test:a", "crash", {}])).await;
    assert_eq!(
        c.recv().await,
        json!(["1", "1", "test:a", "phx_error", {"reason": "channel_crash"}])
    );
    c.send(json!(["1", "4", "test:a", "echo", {}])).await;
    assert_eq!(c.recv().await, unmatched("4", "test:a"));
    c.send(json!(["2", "5", "test:other", "echo", {}])).await;
    assert_eq!(
        c.recv().await,
        reply("2", "5", "test:other", "ok", json!({"echo": {}}))
    );
}

#[tokio::test]
async fn phoenix_panicking_or_async_crashing_channel_errors() {
    let s = server().await;
    let mut c = v2(s.addr).await;
    c.join("1", "test:a").await;
    c.send(json!(["1", "2", "test:a", "panic", {}])).await;
    assert_eq!(
        c.recv().await,
        json!(["1", "1", "test:a", "phx_error", {"reason": "channel_crash"}])
    );
    c.join("3", "test:a").await;
    c.send(json!(["3", "4", "test:a", "async_crash", {}])).await;
    assert_eq!(
        c.recv().await,
        json!(["3", "3", "test:a", "phx_error", {"reason": "channel_crash"}])
    );
    c.send(json!(["3", "5", "test:a", "echo", {}])).await;
    assert_eq!(c.recv().await, unmatched("5", "test:a"));
}

#[tokio::test]
async fn phoenix_stop_replies_then_closes() {
    let s = server().await;
    let mut c = v2(s.addr).await;
    c.join("1", "test:a").await;
    c.send(json!(["1", "2", "test:a", "stop", {}])).await;
    assert_eq!(c.recv().await, reply("1", "2", "test:a", "ok", json!({})));
    assert_eq!(c.recv().await, json!(["1", "1", "test:a", "phx_close", {}]));
    c.send(json!(["1", "3", "test:a", "echo", {}])).await;
    assert_eq!(c.recv().await, unmatched("3", "test:a"));
}

#[tokio::test]
async fn phoenix_binary_push_reply_and_broadcast() {
    let s = server().await;
    let mut c = v2(s.addr).await;
    c.join("3", "test:bin").await;
    let mut push = vec![0u8, 1, 1, 8, 3];
    push.extend_from_slice(b"34test:binbin");
    push.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
    c.send_msg(Message::Binary(Bytes::from(push))).await;
    let mut want_push = vec![0u8, 1, 8, 8];
    want_push.extend_from_slice(b"3test:binbin_push");
    want_push.extend_from_slice(&[0, 1]);
    assert_eq!(
        c.next().await,
        Message::Binary(Bytes::from(want_push)),
        "channel push before its reply"
    );
    let mut want_reply = vec![1u8, 1, 1, 8, 2];
    want_reply.extend_from_slice(b"34test:binok");
    want_reply.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef, 3, 4]);
    assert_eq!(c.next().await, Message::Binary(Bytes::from(want_reply)));

    s.app.broadcast(
        "test:bin",
        "bin_bcast",
        kaffediem::phoenix::Payload::Binary(Bytes::from_static(b"hello")),
    );
    let mut want = vec![2u8, 8, 9];
    want.extend_from_slice(b"test:binbin_bcasthello");
    assert_eq!(c.next().await, Message::Binary(Bytes::from(want)));
}

#[tokio::test]
async fn phoenix_broadcast_bytes_are_encoded_once_and_sent_verbatim() {
    let s = server().await;
    let (mut a, mut b) = (v2(s.addr).await, v2(s.addr).await);
    a.join("1", "test:e").await;
    b.join("1", "test:e").await;
    let msg = Broadcast::new("test:e", "shared", j(json!({"k": [1, 2, 3]})));
    let first = msg.encoded(Vsn::V2);
    assert_eq!(first, msg.encoded(Vsn::V2));
    assert_eq!(s.app.registry.send(&msg), 2);
    assert_eq!(a.next().await, first);
    assert_eq!(b.next().await, first);
}

#[tokio::test]
async fn phoenix_v1_without_vsn() {
    let s = server().await;
    let mut c = connect(s.addr, "").await;
    c.send(json!({"topic": "test:a", "event": "phx_join", "payload": {}, "ref": "1"}))
        .await;
    let joined = c.recv().await;
    assert_eq!(
        joined,
        json!({"topic": "test:a", "event": "phx_reply", "payload": {"status": "ok", "response": {}}, "ref": "1"})
    );
    assert!(joined.get("join_ref").is_none());
    c.send(json!({"topic": "test:a", "event": "echo", "payload": {"v": 1}, "ref": "2", "join_ref": null})).await;
    assert_eq!(
        c.recv().await,
        json!({"topic": "test:a", "event": "phx_reply", "payload": {"status": "ok", "response": {"echo": {"v": 1}}}, "ref": "2"})
    );
    // A V1 message without `ref` is malformed.
    c.send(json!({"topic": "test:a", "event": "echo", "payload": {}}))
        .await;
    assert_eq!(c.close_code().await, 1011);
}

#[tokio::test]
async fn phoenix_v1_broadcast_has_no_join_ref() {
    let s = server().await;
    let mut c = connect(s.addr, "vsn=1.0.0").await;
    c.send(json!({"topic": "test:a", "event": "phx_join", "payload": {}, "ref": "1"}))
        .await;
    c.recv().await;
    s.app.broadcast("test:a", "news", j(json!({"x": 1})));
    assert_eq!(
        c.recv().await,
        json!({"topic": "test:a", "event": "news", "payload": {"x": 1}, "ref": null})
    );
}

#[tokio::test]
async fn phoenix_broadcasts_already_in_the_join_snapshot_are_dropped() {
    let s = server().await;
    let mut c = v2(s.addr).await;
    c.send(json!(["1", "1", "test:s", "phx_join", {"seq": 5}]))
        .await;
    assert_eq!(c.recv().await, reply("1", "1", "test:s", "ok", json!({})));
    s.app
        .registry
        .send_at(5, &Broadcast::new("test:s", "old", j(json!({}))));
    s.app
        .registry
        .send_at(6, &Broadcast::new("test:s", "new", j(json!({}))));
    assert_eq!(c.recv().await, json!([null, null, "test:s", "new", {}]));
    c.barrier().await;
}

#[tokio::test]
async fn phoenix_join_reply_precedes_anything_sent_during_the_join() {
    let s = server().await;
    let mut c = v2(s.addr).await;
    c.send(json!(["1", "1", "test:early", "phx_join", {"early": true}]))
        .await;
    assert_eq!(
        c.recv().await,
        reply("1", "1", "test:early", "ok", json!({}))
    );
    assert_eq!(
        c.recv().await,
        json!(["1", null, "test:early", "early_push", {}])
    );
    assert_eq!(
        c.recv().await,
        json!([null, null, "test:early", "early_bcast", {}])
    );
}
