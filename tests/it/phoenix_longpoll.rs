//! The LongPoll transport (`/socket/longpoll`) with raw HTTP requests, against the test app on
//! 127.0.0.1:0: the envelope cases 47–52 of `/work/shared/phoenix-protocol.md` §8, plus
//! broadcasts shared with WebSockets, the inactivity reaper, limits and shutdown. Every wait is
//! a failure guard or a wait for a condition (a poll waiting shows in the endpoint's count);
//! the timers are tested on paused time, in process (`paused`).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use base64::Engine;
use serde_json::{json, Value};
use tokio::time::{timeout, Instant};

use crate::phoenix::{reply, unmatched, v2, GUARD};
use crate::phoenix_test_app::{start, TestServer};
use crate::support::http::{call, Reply};
use crate::support::Daemon;
use kaffediem::phoenix::{EndpointConfig, LongPollConfig};

/// The timers (window, reaper, idle timeout) on paused time, in process.
mod paused;

/// The poll window in these tests (Phoenix: 10 s).
const WINDOW: Duration = Duration::from_millis(300);

async fn server_with(adjust: impl FnOnce(&mut EndpointConfig, &mut LongPollConfig)) -> TestServer {
    let mut config = EndpointConfig::default();
    let mut long_poll = LongPollConfig {
        window: WINDOW,
        inactivity: Duration::from_secs(30),
    };
    adjust(&mut config, &mut long_poll);
    let s = start(config).await;
    s.endpoint.set_long_poll_config(long_poll);
    s
}

async fn server() -> TestServer {
    server_with(|_, _| {}).await
}

/// Until one poll waits in the server for frames (the endpoint's count of waiting polls).
async fn poll_waiting(s: &TestServer) {
    let waiting = || s.endpoint.metrics().waiting_polls.load(Ordering::Relaxed);
    let deadline = Instant::now() + GUARD;
    while waiting() != 1 {
        assert!(Instant::now() < deadline, "no poll waiting");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn get(addr: SocketAddr, query: &str) -> Reply {
    let path = format!("/socket/longpoll?{query}");
    // Longer than any poll window used here (the daemon's is Phoenix's 10 s).
    timeout(2 * GUARD, call(addr, "GET", &path).send())
        .await
        .expect("answer in time")
}

/// Every LongPoll answer: HTTP 200, JSON, not cached, any origin.
fn envelope(reply: &Reply) -> Value {
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
    reply.json()
}

/// Where a session's requests go: over HTTP to the server's address (here), or straight to the
/// endpoint in process (`paused`). Each answer's envelope is checked, and its body returned.
trait Transport {
    async fn get(&self, query: &str) -> Value;
    /// A POST of ndjson lines.
    async fn post(&self, query: &str, body: String) -> Value;
}

impl Transport for SocketAddr {
    async fn get(&self, query: &str) -> Value {
        envelope(&get(*self, query).await)
    }

    async fn post(&self, query: &str, body: String) -> Value {
        let request = call(*self, "POST", &format!("/socket/longpoll?{query}"))
            .header("content-type", "application/x-ndjson")
            .raw(body);
        envelope(
            &timeout(GUARD, request.send())
                .await
                .expect("answer in time"),
        )
    }
}

/// A client of one session.
struct Session<T> {
    transport: T,
    token: String,
}

/// `GET ?vsn=2.0.0&` as the 1.8 client's first request: a new session (410 with its token).
async fn open<T: Transport>(transport: T) -> Session<T> {
    let body = transport.get("vsn=2.0.0&").await;
    assert_eq!(body["status"], 410, "{body}");
    assert_eq!(body["messages"], json!([]));
    let token = body["token"].as_str().expect("token").to_owned();
    Session { transport, token }
}

impl<T: Transport> Session<T> {
    fn query(&self) -> String {
        format!("vsn=2.0.0&token={}", self.token)
    }

    async fn poll(&self) -> Value {
        self.transport.get(&self.query()).await
    }

    /// POST frames as the 1.8 client does: ndjson, lines joined with `\n`.
    async fn post_lines(&self, lines: &[String]) -> Value {
        self.transport.post(&self.query(), lines.join("\n")).await
    }

    async fn post(&self, frames: &[Value]) -> Value {
        let lines: Vec<String> = frames.iter().map(Value::to_string).collect();
        self.post_lines(&lines).await
    }

    /// Poll until `n` frames arrived; each poll's status is 200 or 204.
    async fn frames(&self, n: usize) -> Vec<Value> {
        let mut frames = Vec::new();
        let deadline = Instant::now() + GUARD;
        while frames.len() < n {
            assert!(Instant::now() < deadline, "only {frames:?} arrived");
            let body = self.poll().await;
            assert_eq!(body["token"], self.token.as_str());
            match body["status"].as_u64() {
                Some(200) => {}
                Some(204) => continue,
                _ => panic!("unexpected poll answer {body}"),
            }
            for text in body["messages"].as_array().expect("messages") {
                let text = text.as_str().expect("each message is the frame's text");
                frames.push(serde_json::from_str(text).expect("JSON frame"));
            }
        }
        assert_eq!(frames.len(), n, "more frames than expected: {frames:?}");
        frames
    }

    async fn join(&self, jr: &str, topic: &str) {
        assert_eq!(
            self.post(&[json!([jr, jr, topic, "phx_join", {}])]).await,
            json!({"status": 200})
        );
        assert_eq!(
            self.frames(1).await,
            vec![reply(jr, jr, topic, "ok", json!({}))]
        );
    }
}

#[tokio::test]
async fn longpoll_first_get_opens_a_session_with_410_and_a_token() {
    let s = server().await;
    let session = open(s.addr).await;
    assert!(
        session.token.starts_with("lp."),
        "recognisable as a session token"
    );
    assert_eq!(session.token.len(), 3 + 43, "256 random bits, base64url");
    assert_ne!(open(s.addr).await.token, session.token);
    assert_eq!(s.endpoint.metrics().open_sockets.load(Ordering::Relaxed), 2);
    // The connect hook saw the query as its params.
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
async fn longpoll_refusals_are_403_in_the_body() {
    let s = server().await;
    let refused = [
        "vsn=2.0.0&reject=true",
        "vsn=3.0.0",
        "vsn=2.1.0&",
        "vsn%5B%5D=x",
    ];
    for query in refused {
        assert_eq!(
            envelope(&get(s.addr, query).await),
            json!({"status": 403}),
            "{query}"
        );
    }
    let evil = call(s.addr, "GET", "/socket/longpoll?vsn=2.0.0")
        .header("origin", "http://evil.example")
        .send()
        .await;
    assert_eq!(envelope(&evil), json!({"status": 403}));
    assert_eq!(s.endpoint.metrics().open_sockets.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn longpoll_posted_join_and_echo_come_back_with_the_next_poll() {
    let s = server().await;
    let session = open(s.addr).await;
    let posted = session
        .post(&[
            json!(["1", "1", "test:a", "phx_join", {}]),
            json!(["1", "2", "test:a", "echo", {"x": 1}]),
        ])
        .await;
    assert_eq!(posted, json!({"status": 200}));
    // The POST is answered once both frames were handled: one poll brings both replies.
    let body = session.poll().await;
    assert_eq!(body["status"], 200);
    assert_eq!(body["token"], session.token.as_str());
    let frames: Vec<Value> = body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| serde_json::from_str(m.as_str().expect("string")).expect("frame"))
        .collect();
    assert_eq!(
        frames,
        vec![
            reply("1", "1", "test:a", "ok", json!({})),
            reply("1", "2", "test:a", "ok", json!({"echo": {"x": 1}})),
        ]
    );
    // The frame texts are the compact V2 encoding, as on a WebSocket.
    assert_eq!(
        body["messages"][0],
        r#"["1","1","test:a","phx_reply",{"status":"ok","response":{}}]"#
    );
}

#[tokio::test]
async fn longpoll_waiting_poll_answers_as_soon_as_a_frame_arrives() {
    let s = server_with(|_, lp| lp.window = GUARD).await;
    let session = open(s.addr).await;
    session
        .post(&[json!(["1", "1", "test:w", "phx_join", {}])])
        .await;
    assert_eq!(session.frames(1).await.len(), 1);
    let poll = tokio::spawn(async move { session.frames(1).await });
    poll_waiting(&s).await;
    assert_eq!(
        s.app.broadcast(
            "test:w",
            "news",
            crate::phoenix_test_app::j(json!({"n": 1}))
        ),
        1
    );
    let frames = timeout(GUARD, poll).await.expect("in time").expect("poll");
    assert_eq!(
        frames,
        vec![json!([null, null, "test:w", "news", {"n": 1}])]
    );
}

#[tokio::test]
async fn longpoll_bogus_tokens_get_410() {
    let s = server().await;
    let bogus = Session {
        transport: s.addr,
        token: "bogus".into(),
    };
    assert_eq!(
        bogus
            .post(&[json!([null, "1", "phoenix", "heartbeat", {}])])
            .await,
        json!({"status": 410})
    );
    let body = bogus.poll().await;
    assert_eq!(body["status"], 410);
    assert_eq!(body["messages"], json!([]));
    let fresh = body["token"].as_str().expect("a new session's token");
    assert_ne!(fresh, "bogus");
    assert_eq!(s.endpoint.metrics().open_sockets.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn longpoll_last_token_wins_and_the_header_comes_first() {
    let s = server().await;
    let session = open(s.addr).await;
    session.join("1", "test:t").await;
    // A socket param named `token` comes before the session token in the client's URL.
    let posted = call(
        s.addr,
        "POST",
        &format!(
            "/socket/longpoll?token=user&vsn=2.0.0&token={}",
            session.token
        ),
    )
    .header("content-type", "application/x-ndjson")
    .raw(json!(["1", "2", "test:t", "echo", {}]).to_string())
    .send()
    .await;
    assert_eq!(envelope(&posted), json!({"status": 200}));
    let polled = get(
        s.addr,
        &format!("token=user&vsn=2.0.0&token={}", session.token),
    )
    .await;
    let body = envelope(&polled);
    assert_eq!(
        (body["status"].clone(), body["token"].clone()),
        (json!(200), json!(session.token))
    );
    // `x-phoenix-longpoll-token` is checked before the query.
    let posted = call(s.addr, "POST", "/socket/longpoll?vsn=2.0.0&token=stale")
        .header("x-phoenix-longpoll-token", &session.token)
        .header("content-type", "application/x-ndjson")
        .raw(json!(["1", "3", "test:t", "echo", {}]).to_string())
        .send()
        .await;
    assert_eq!(envelope(&posted), json!({"status": 200}));
    assert_eq!(
        session.frames(1).await,
        vec![reply("1", "3", "test:t", "ok", json!({"echo": {}}))]
    );
}

#[tokio::test]
async fn longpoll_options_is_the_cors_preflight() {
    let s = server().await;
    let preflight = call(s.addr, "OPTIONS", "/socket/longpoll")
        .header("origin", "http://elsewhere.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "x-phoenix-authtoken")
        .send()
        .await;
    assert_eq!(preflight.status, 200);
    assert_eq!(preflight.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        preflight.header("access-control-allow-headers"),
        Some("x-phoenix-authtoken")
    );
    assert_eq!(
        preflight.header("access-control-allow-methods"),
        Some("get, post, options")
    );
    assert_eq!(preflight.header("access-control-max-age"), Some("3600"));
    assert!(preflight.body.is_empty());
    for method in ["PUT", "DELETE", "PATCH"] {
        let reply = call(s.addr, method, "/socket/longpoll").send().await;
        assert_eq!(reply.status, 400, "{method}");
    }
}

#[tokio::test]
async fn longpoll_and_websocket_subscribers_get_the_same_broadcast() {
    let s = server().await;
    let session = open(s.addr).await;
    session.join("1", "test:b").await;
    let mut ws = v2(s.addr).await;
    ws.join("1", "test:b").await;
    ws.send(json!(["1", "2", "test:b", "bcast", {"hi": 1}]))
        .await;
    let frame = json!([null, null, "test:b", "bcasted", {"hi": 1}]);
    assert_eq!(ws.recv().await, frame);
    assert_eq!(session.frames(1).await, vec![frame.clone()]);
    // And the other way round.
    session
        .post(&[json!(["1", "2", "test:b", "bcast", {"hi": 2}])])
        .await;
    let frame = json!([null, null, "test:b", "bcasted", {"hi": 2}]);
    assert_eq!(ws.recv().await, frame);
    assert_eq!(session.frames(1).await, vec![frame]);
}

#[tokio::test]
async fn longpoll_channel_rules_are_the_websocket_rules() {
    let s = server().await;
    let session = open(s.addr).await;
    let posted = session
        .post(&[
            json!([null, "1", "phoenix", "heartbeat", {}]),
            json!(["9", "2", "test:never", "echo", {}]),
            json!(["1", "3", "test:a", "phx_join", {}]),
            json!(["1", "4", "test:a", "push", {}]),
            json!(["1", "5", "test:a", "crash", {}]),
        ])
        .await;
    assert_eq!(posted, json!({"status": 200}));
    assert_eq!(
        session.frames(5).await,
        vec![
            reply(Value::Null, "1", "phoenix", "ok", json!({})),
            unmatched("2", "test:never"),
            reply("1", "3", "test:a", "ok", json!({})),
            json!(["1", null, "test:a", "pushed", {"a": 1}]),
            json!(["1", "1", "test:a", "phx_error", {"reason": "channel_crash"}]),
        ]
    );
}

#[tokio::test]
async fn longpoll_binary_lines_are_base64_and_binary_answers_are_dropped() {
    let s = server().await;
    let session = open(s.addr).await;
    session.join("1", "test:bin").await;
    // kind 0 push: join_ref "1", ref "2", topic, event "error", payload de ad.
    let binary = |reference: &str, event: &str| {
        let mut raw = vec![0, 1, reference.len() as u8, 8, event.len() as u8];
        raw.extend_from_slice(format!("1{reference}test:bin{event}").as_bytes());
        raw.extend_from_slice(&[0xde, 0xad]);
        base64::engine::general_purpose::STANDARD.encode(raw)
    };
    // `bin` answers with a binary reply and a binary push, which LongPoll cannot carry; the
    // text reply to `error` proves the binary line reached the channel.
    let posted = session
        .post_lines(&[binary("2", "bin"), binary("3", "error")])
        .await;
    assert_eq!(posted, json!({"status": 200}));
    assert_eq!(
        session.frames(1).await,
        vec![reply(
            "1",
            "3",
            "test:bin",
            "error",
            json!({"reason": "nope"})
        )]
    );
}

#[tokio::test]
async fn longpoll_other_content_types_post_one_text_frame() {
    let s = server().await;
    let session = open(s.addr).await;
    let posted = call(
        s.addr,
        "POST",
        &format!("/socket/longpoll?vsn=2.0.0&token={}", session.token),
    )
    .header("content-type", "application/json")
    .raw(json!([null, "1", "phoenix", "heartbeat", {}]).to_string())
    .send()
    .await;
    assert_eq!(envelope(&posted), json!({"status": 200}));
    assert_eq!(
        session.frames(1).await,
        vec![reply(Value::Null, "1", "phoenix", "ok", json!({}))]
    );
}

#[tokio::test]
async fn longpoll_malformed_frame_ends_the_session() {
    let s = server().await;
    for bad in ["[\"1\",\"1\",\"test:a\"]", "[not json", "!!not base64!!"] {
        let session = open(s.addr).await;
        session.join("1", "test:a").await;
        let posted = session
            .post_lines(&[
                json!([null, "5", "phoenix", "heartbeat", {}]).to_string(),
                bad.to_owned(),
            ])
            .await;
        assert_eq!(posted, json!({"status": 410}), "{bad}");
        // The session is gone: its token opens a new one, which the client reads as "gone".
        let body = session.poll().await;
        assert_eq!(body["status"], 410, "{bad}: {body}");
        assert_ne!(body["token"], session.token.as_str());
    }
}

#[tokio::test]
async fn longpoll_slow_consumer_session_ends_as_1013_would() {
    let s = server_with(|config, _| config.outbound_queue = 4).await;
    let session = open(s.addr).await;
    session.join("1", "test:slow").await;
    // Nobody polls: 4 frames wait for a poll, 4 more fill the queue, the next one ends it.
    let mut accepted = 0;
    for n in 0..20 {
        accepted += s.app.broadcast(
            "test:slow",
            "e",
            crate::phoenix_test_app::j(json!({"n": n})),
        );
    }
    assert!(accepted < 20, "the session stopped taking broadcasts");
    let metrics = s.endpoint.metrics();
    let deadline = Instant::now() + GUARD;
    while metrics.open_sockets.load(Ordering::Relaxed) != 0 {
        assert!(Instant::now() < deadline, "slow session not ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(metrics.slow_closed.load(Ordering::Relaxed), 1);
    assert_eq!(session.poll().await["status"], 410);
}

#[tokio::test]
async fn longpoll_sessions_count_against_the_socket_limit() {
    let s = server_with(|config, _| config.max_sockets = 1).await;
    let _first = open(s.addr).await;
    // No room: not a status the client would throw on, and not an "open".
    assert_eq!(
        envelope(&get(s.addr, "vsn=2.0.0&").await),
        json!({"status": 500})
    );
    let ws =
        tokio_tungstenite::connect_async(format!("ws://{}/socket/websocket?vsn=2.0.0", s.addr))
            .await;
    assert!(ws.is_err(), "the WebSocket is refused too");
}

#[tokio::test]
async fn longpoll_close_all_answers_the_waiting_poll_then_410() {
    let s = server_with(|_, lp| lp.window = GUARD).await;
    let session = open(s.addr).await;
    session.join("1", "test:c").await;
    let (addr, token) = (session.transport, session.token.clone());
    let waiting = tokio::spawn(async move { session.poll().await });
    poll_waiting(&s).await;
    timeout(GUARD, s.endpoint.close_all(1001))
        .await
        .expect("close_all returns");
    let answered = timeout(Duration::from_secs(2), waiting)
        .await
        .expect("the waiting poll is answered at once")
        .expect("poll");
    assert_eq!(answered["status"], 204);
    assert_eq!(s.endpoint.metrics().open_sockets.load(Ordering::Relaxed), 0);
    let session = Session {
        transport: addr,
        token,
    };
    assert_eq!(
        session
            .post(&[json!(["1", "2", "test:c", "echo", {}])])
            .await,
        json!({"status": 410})
    );
    // No new session while shutting down: the client backs off and retries.
    assert_eq!(session.poll().await, json!({"status": 500}));
}

#[tokio::test]
async fn longpoll_daemon_serves_collections_over_long_poll() {
    let daemon = Daemon::demo().await;
    let session = open(daemon.addr).await;
    session
        .post(&[json!(["1", "1", "collection:message", "phx_join", {}])])
        .await;
    let joined = session.frames(1).await.remove(0);
    assert_eq!(joined[3], "phx_reply");
    assert_eq!(joined[4]["status"], "ok", "{joined}");
    daemon
        .shell()
        .execute(
            "INSERT INTO message (title, subtitle) VALUES ('Vafler i dag', NULL)",
            [],
        )
        .expect("insert");
    let change = session.frames(1).await.remove(0);
    assert_eq!(
        [&change[0], &change[1], &change[2], &change[3]],
        [
            &json!(null),
            &json!(null),
            &json!("collection:message"),
            &json!("change")
        ]
    );
    assert_eq!(change[4]["action"], "create");
    assert_eq!(change[4]["record"]["title"], "Vafler i dag");
    daemon.stop().await;
}

#[tokio::test]
async fn longpoll_oversized_posts_end_the_session() {
    let s = server_with(|config, _| config.max_message_bytes = 64).await;
    // One line over the frame limit (1009 on a WebSocket).
    let session = open(s.addr).await;
    let line = json!([null, "1", "phoenix", "heartbeat", {"pad": "x".repeat(64)}]);
    assert_eq!(session.post(&[line]).await, json!({"status": 410}));
    assert_eq!(session.poll().await["status"], 410);
    // A body over the body limit (16 frames' worth), however it is split into lines.
    let session = open(s.addr).await;
    let heartbeat = json!([null, "1", "phoenix", "heartbeat", {}]).to_string();
    assert_eq!(
        session.post_lines(&vec![heartbeat; 40]).await,
        json!({"status": 410})
    );
    assert_eq!(session.poll().await["status"], 410);
}

#[tokio::test]
async fn longpoll_v1_clients_post_one_object_per_request() {
    let s = server().await;
    let body = envelope(&get(s.addr, "").await);
    assert_eq!(body["status"], 410);
    let session = Session {
        transport: s.addr,
        token: body["token"].as_str().expect("token").to_owned(),
    };
    let join = json!({"topic": "test:v1", "event": "phx_join", "payload": {}, "ref": "1"});
    let posted = call(
        s.addr,
        "POST",
        &format!("/socket/longpoll?token={}", session.token),
    )
    .json(&join)
    .send()
    .await;
    assert_eq!(envelope(&posted), json!({"status": 200}));
    assert_eq!(
        session.frames(1).await,
        vec![
            json!({"topic": "test:v1", "event": "phx_reply", "payload": {"status": "ok", "response": {}}, "ref": "1"})
        ]
    );
}

#[tokio::test]
async fn longpoll_daemon_keeps_phoenix_cors_for_listed_origins() {
    let daemon = Daemon::start(true, |config| {
        config.http.allowed_origins = vec!["http://front.example".into()];
    })
    .await;
    // The 1.8 client sends `X-Phoenix-AuthToken` on its polls when `authToken` is set.
    let preflight = call(daemon.addr, "OPTIONS", "/socket/longpoll?vsn=2.0.0")
        .header("origin", "http://front.example")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "x-phoenix-authtoken")
        .send()
        .await;
    assert_eq!(preflight.status, 200);
    assert_eq!(preflight.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        preflight.header("access-control-allow-headers"),
        Some("x-phoenix-authtoken")
    );
    let listed = call(daemon.addr, "GET", "/socket/longpoll?vsn=2.0.0&")
        .header("origin", "http://front.example")
        .send()
        .await;
    assert_eq!(envelope(&listed)["status"], 410);
    let foreign = call(daemon.addr, "GET", "/socket/longpoll?vsn=2.0.0&")
        .header("origin", "http://evil.example")
        .send()
        .await;
    assert_eq!(envelope(&foreign), json!({"status": 403}));
    daemon.stop().await;
}

#[tokio::test]
async fn longpoll_daemon_stop_answers_a_waiting_poll_at_once() {
    let daemon = Daemon::demo().await;
    let session = open(daemon.addr).await;
    let waiting = tokio::spawn(async move { session.poll().await });
    // The operator's figure shows the poll waiting in the daemon.
    let deadline = Instant::now() + GUARD;
    loop {
        let metrics = call(daemon.addr, "GET", "/metrics").send().await.text();
        if metrics.contains("\nkaffediem_long_polls_waiting 1\n") {
            break;
        }
        assert!(Instant::now() < deadline, "no waiting poll: {metrics}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    daemon.stop().await;
    // Well under the 10 s poll window and the 5 s drain limit for HTTP requests.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let answered = timeout(GUARD, waiting)
        .await
        .expect("in time")
        .expect("poll");
    assert_eq!(answered["status"], 204);
}
