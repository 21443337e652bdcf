//! The WebSocket idle timeout on paused time. The endpoint serves one HTTP/1 connection over an
//! in-memory pipe (the upgrade, then the socket), so no network sits between client and server
//! and the runtime's clock moves only when every task waits for it: the timeout is exact, and
//! the test takes no wall time however loaded the machine is.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::io::DuplexStream;
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::phoenix::{reply, server_with, GUARD};
use crate::phoenix_test_app::TestApp;
use kaffediem::phoenix::Endpoint;

/// The client address the endpoint sees.
const PEER: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 40000);

/// A V2 socket to `endpoint` over an in-memory pipe.
async fn in_memory_socket(endpoint: &Arc<Endpoint<TestApp>>) -> WebSocketStream<DuplexStream> {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let endpoint = Arc::clone(endpoint);
    tokio::spawn(async move {
        let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
            let endpoint = Arc::clone(&endpoint);
            async move { Ok::<_, Infallible>(endpoint.upgrade(req, PEER).await) }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(server), service)
            .with_upgrades()
            .await;
    });
    let (ws, response) =
        tokio_tungstenite::client_async("ws://localhost/socket/websocket?vsn=2.0.0", client)
            .await
            .expect("upgrade");
    assert_eq!(response.status(), 101);
    ws
}

/// The next frame, skipping nothing.
async fn next(ws: &mut WebSocketStream<DuplexStream>) -> Message {
    match timeout(GUARD, ws.next()).await.expect("frame in time") {
        Some(Ok(msg)) => msg,
        other => panic!("expected a frame, got {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn phoenix_idle_socket_is_closed_with_1002_unless_it_talks() {
    let idle = Duration::from_millis(400);
    let s = server_with(|c| c.idle_timeout = idle).await;
    let mut ws = in_memory_socket(&s.endpoint).await;
    // Three idle timeouts' worth of pings and heartbeats keep the socket open.
    let mut last_heartbeat = Instant::now();
    for round in 0..12 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if round % 2 == 0 {
            ws.send(Message::Ping(Bytes::from_static(b"k")))
                .await
                .expect("send ping");
            assert_eq!(next(&mut ws).await, Message::Pong(Bytes::from_static(b"k")));
        } else {
            ws.send(Message::text(
                json!([null, "hb", "phoenix", "heartbeat", {}]).to_string(),
            ))
            .await
            .expect("send heartbeat");
            last_heartbeat = Instant::now();
            let answer = next(&mut ws).await;
            let frame: Value = serde_json::from_str(answer.to_text().expect("text")).expect("json");
            assert_eq!(frame, reply(Value::Null, "hb", "phoenix", "ok", json!({})));
        }
    }
    // Then silence: closed with 1002, not before the idle timeout after the last heartbeat.
    let code = loop {
        match next(&mut ws).await {
            Message::Close(Some(frame)) => break u16::from(frame.code),
            Message::Close(None) => panic!("close frame without a code"),
            _ => continue,
        }
    };
    assert_eq!(code, 1002);
    assert!(
        last_heartbeat.elapsed() >= idle,
        "{:?}",
        last_heartbeat.elapsed()
    );
}
