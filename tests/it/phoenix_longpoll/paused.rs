//! The LongPoll transport's timers — the poll window, the inactivity reaper, and the idle
//! timeout it does not have — on paused time. Requests go straight to `Endpoint::long_poll` in
//! this process, with no network in between, so the runtime's clock moves only when every task
//! waits for it: the windows are exact, and pass instantly however loaded the machine is.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use tokio::time::Instant;

use super::{open, server, server_with, Session, Transport, WINDOW};
use crate::phoenix::reply;
use crate::phoenix_test_app::{TestApp, TestServer};
use kaffediem::phoenix::Endpoint;

/// The client address the endpoint sees.
const PEER: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 40000);

/// One request to the endpoint, answered in process; the envelope every answer carries is
/// checked as over HTTP (status 200, JSON, not cached, any origin), and its body returned.
async fn request(
    endpoint: &Arc<Endpoint<TestApp>>,
    method: &str,
    query: &str,
    body: String,
) -> Value {
    let request = hyper::Request::builder()
        .method(method)
        .uri(format!("/socket/longpoll?{query}"))
        .header("content-type", "application/x-ndjson")
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    let response = endpoint.long_poll(request, PEER).await;
    assert_eq!(response.status(), 200);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(
        header("content-type").as_deref(),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(header("cache-control").as_deref(), Some("no-store"));
    assert_eq!(header("access-control-allow-origin").as_deref(), Some("*"));
    let bytes = response
        .into_body()
        .collect()
        .await
        .expect("in-memory body")
        .to_bytes();
    serde_json::from_slice(&bytes).expect("JSON envelope")
}

impl Transport for Arc<Endpoint<TestApp>> {
    async fn get(&self, query: &str) -> Value {
        request(self, "GET", query, String::new()).await
    }

    async fn post(&self, query: &str, body: String) -> Value {
        request(self, "POST", query, body).await
    }
}

/// A client of one session, talking to the endpoint in process.
async fn open_direct(s: &TestServer) -> Session<Arc<Endpoint<TestApp>>> {
    open(Arc::clone(&s.endpoint)).await
}

#[tokio::test(start_paused = true)]
async fn longpoll_poll_with_nothing_pending_answers_204_after_the_window() {
    let s = server().await;
    let session = open_direct(&s).await;
    let started = Instant::now();
    let body = session.poll().await;
    assert!(started.elapsed() >= WINDOW, "{:?}", started.elapsed());
    assert_eq!(
        body,
        json!({"status": 204, "token": session.token, "messages": []})
    );
}

#[tokio::test(start_paused = true)]
async fn longpoll_session_without_polls_is_reaped() {
    let inactivity = Duration::from_millis(300);
    let s = server_with(|_, lp| lp.inactivity = inactivity).await;
    let session = open_direct(&s).await;
    session.join("1", "test:r").await;
    let open_sockets = || s.endpoint.metrics().open_sockets.load(Ordering::Relaxed);
    assert_eq!(open_sockets(), 1);
    // Not before the inactivity period has passed without a poll...
    tokio::time::sleep(inactivity - Duration::from_millis(10)).await;
    assert_eq!(open_sockets(), 1, "reaped early");
    // ...and within 4/3 of it (the reaper looks every third of it).
    tokio::time::sleep(inactivity / 3 + Duration::from_millis(20)).await;
    assert_eq!(open_sockets(), 0, "session not reaped");
    // Its subscription ended with it.
    assert_eq!(
        s.app
            .broadcast("test:r", "e", crate::phoenix_test_app::j(json!({}))),
        0
    );
    let body = session.poll().await;
    assert_eq!(body["status"], 410);
    assert_ne!(body["token"], session.token.as_str());
}

#[tokio::test(start_paused = true)]
async fn longpoll_polling_session_outlives_the_idle_timeout_and_the_reaper() {
    let s = server_with(|config, lp| {
        config.idle_timeout = Duration::from_millis(100);
        lp.inactivity = Duration::from_millis(400);
    })
    .await;
    let session = open_direct(&s).await;
    session.join("1", "test:p").await;
    // Polls of 300 ms each, back to back, for well over both timeouts; no heartbeats.
    let started = Instant::now();
    for _ in 0..4 {
        assert_eq!(session.poll().await["status"], 204);
    }
    assert!(started.elapsed() >= 4 * WINDOW);
    session
        .post(&[json!(["1", "2", "test:p", "echo", {}])])
        .await;
    assert_eq!(
        session.frames(1).await,
        vec![reply("1", "2", "test:p", "ok", json!({"echo": {}}))]
    );
}

#[tokio::test(start_paused = true)]
async fn longpoll_post_not_handled_within_the_window_is_408() {
    // One frame waits for a poll at most; replies then pile up in the socket until it stops
    // reading, so the rest of a large batch is not handled while nobody polls.
    let s = server_with(|config, _| config.outbound_queue = 1).await;
    let session = open_direct(&s).await;
    let heartbeats: Vec<Value> = (0..100)
        .map(|n| json!([null, n.to_string(), "phoenix", "heartbeat", {}]))
        .collect();
    let started = Instant::now();
    assert_eq!(session.post(&heartbeats).await, json!({"status": 408}));
    assert!(started.elapsed() >= WINDOW);
    // The session lives on: the replies handled so far come in order, then nothing more.
    let body = session.poll().await;
    assert_eq!(body["status"], 200);
    let first: Value =
        serde_json::from_str(body["messages"][0].as_str().expect("frame")).expect("json");
    assert_eq!(first, reply(Value::Null, "0", "phoenix", "ok", json!({})));
}
