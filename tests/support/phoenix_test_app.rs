//! The test channel of the protocol reference (`/work/shared/phoenix-protocol.md` §8) on top of
//! `kaffediem::phoenix`, and a minimal hyper HTTP/1 server for it. Shared by the raw-frame
//! tests (`tests/it/phoenix.rs`) and `examples/phoenix_test_server.rs` (for the JS suite).
#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use kaffediem::phoenix::{
    BoxFuture, Broadcast, Channel, ConnectInfo, Endpoint, EndpointConfig, JoinResult, Outbox,
    Payload, Refused, Reply, SocketHandler,
};
use serde_json::{json, Value};
use tokio::net::TcpListener;

/// Who connected: the socket id (`users_socket:<user_id>`) and what the connect hook saw.
pub struct TestSession {
    pub id: Option<String>,
}

/// Subscribers per topic, fed by `bcast` and by tests.
#[derive(Default)]
pub struct Registry {
    topics: Mutex<HashMap<String, Vec<Outbox>>>,
    seq: AtomicU64,
}

impl Registry {
    fn subscribe(&self, topic: &str, outbox: Outbox) {
        let mut topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        let list = topics.entry(topic.to_owned()).or_default();
        list.retain(|o| !o.is_closed());
        list.push(outbox);
    }

    /// Send `msg` to every current subscriber of its topic; returns how many accepted it.
    pub fn send(&self, msg: &Arc<Broadcast>) -> usize {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        self.send_at(seq, msg)
    }

    /// Send `msg` at an explicit position of the broadcast order.
    pub fn send_at(&self, seq: u64, msg: &Arc<Broadcast>) -> usize {
        let mut topics = self.topics.lock().unwrap_or_else(|e| e.into_inner());
        let Some(list) = topics.get_mut(&msg.topic) else {
            return 0;
        };
        list.retain(|o| o.broadcast(seq, msg));
        list.len()
    }
}

/// What the last connect saw: its query params and decoded `authToken`.
#[derive(Debug, Clone)]
pub struct SeenConnect {
    pub params: HashMap<String, String>,
    pub auth_token: Option<String>,
}

/// The application: `test:*` topics, connect refused on `reject=true`.
#[derive(Default)]
pub struct TestApp {
    pub registry: Arc<Registry>,
    /// The last connect's params and decoded `authToken`, for assertions.
    pub last_connect: Mutex<Option<SeenConnect>>,
}

impl TestApp {
    pub fn broadcast(&self, topic: &str, event: &str, payload: Payload) -> usize {
        self.registry.send(&Broadcast::new(topic, event, payload))
    }
}

impl SocketHandler for TestApp {
    type Session = TestSession;

    async fn connect(&self, info: &ConnectInfo) -> Result<TestSession, Refused> {
        *self.last_connect.lock().unwrap_or_else(|e| e.into_inner()) = Some(SeenConnect {
            params: info.params.clone(),
            auth_token: info.auth_token.clone(),
        });
        if info.params.get("reject").map(String::as_str) == Some("true") {
            return Err(Refused("reject=true".into()));
        }
        let id = info
            .params
            .get("user_id")
            .map(|u| format!("users_socket:{u}"));
        Ok(TestSession { id })
    }

    fn id(&self, session: &TestSession) -> Option<String> {
        session.id.clone()
    }

    fn join(
        &self,
        _session: &Arc<TestSession>,
        topic: &str,
        payload: Payload,
        outbox: Outbox,
    ) -> Option<BoxFuture<JoinResult>> {
        let rest = topic.strip_prefix("test:")?;
        let result = match rest {
            "refuse" => JoinResult::Error(json!({"reason": "unauthorized"})),
            "joincrash" => {
                return Some(Box::pin(async {
                    panic!("test:joincrash fails on purpose")
                }))
            }
            _ => {
                let param = |key: &str| payload.as_json().and_then(|p| p.get(key)).cloned();
                // `{"early": true}`: push and broadcast before the join has even answered.
                if param("early") == Some(json!(true)) {
                    outbox.push("early_push", Payload::Json(json!({})));
                    outbox.broadcast(
                        1,
                        &Broadcast::new(topic, "early_bcast", Payload::Json(json!({}))),
                    );
                }
                self.registry.subscribe(topic, outbox);
                let welcome = param("welcome") == Some(json!(true));
                JoinResult::Ok {
                    response: Payload::Json(if welcome {
                        json!({"welcome": true})
                    } else {
                        json!({})
                    }),
                    // `{"seq": N}` pretends the join's snapshot covers broadcasts up to N.
                    seq: param("seq").and_then(|v| v.as_u64()).unwrap_or(0),
                    channel: Box::new(TestChannel {
                        topic: topic.to_owned(),
                        registry: Arc::clone(&self.registry),
                    }),
                }
            }
        };
        Some(Box::pin(async move { result }))
    }
}

struct TestChannel {
    topic: String,
    registry: Arc<Registry>,
}

impl Channel for TestChannel {
    fn handle_in(&mut self, event: &str, payload: Payload, outbox: &Outbox) -> Reply {
        match event {
            "echo" => match payload {
                Payload::Json(p) => Reply::ok(json!({"echo": p})),
                binary => Reply::Status("ok".into(), binary),
            },
            "noreply" => Reply::NoReply,
            "error" => Reply::error(json!({"reason": "nope"})),
            "crash" => Reply::Crash,
            "panic" => panic!("test channel panics on purpose"),
            "async_crash" => {
                outbox.crash();
                Reply::NoReply
            }
            "stop" => Reply::Stop(Some(("ok".into(), Payload::Json(json!({}))))),
            "push" => {
                outbox.push("pushed", Payload::Json(json!({"a": 1})));
                Reply::NoReply
            }
            "bcast" => {
                self.registry
                    .send(&Broadcast::new(self.topic.clone(), "bcasted", payload));
                Reply::NoReply
            }
            "bin" => {
                let Payload::Binary(data) = payload else {
                    return Reply::error(json!({"reason": "binary payload expected"}));
                };
                let mut out = data.to_vec();
                out.extend_from_slice(&[3, 4]);
                outbox.push("bin_push", Payload::Binary(Bytes::from_static(&[0, 1])));
                Reply::Status("ok".into(), Payload::Binary(Bytes::from(out)))
            }
            // Like a Phoenix channel without a matching handle_in clause.
            _ => Reply::Crash,
        }
    }
}

/// A running test server.
pub struct TestServer {
    pub addr: SocketAddr,
    pub app: Arc<TestApp>,
    pub endpoint: Arc<Endpoint<TestApp>>,
}

/// Bind 127.0.0.1:0 and serve the test app in the background.
pub async fn start(config: EndpointConfig) -> TestServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let app = Arc::new(TestApp::default());
    let endpoint = Endpoint::new(Arc::clone(&app), config);
    tokio::spawn(serve_endpoint(listener, Arc::clone(&endpoint)));
    TestServer {
        addr,
        app,
        endpoint,
    }
}

/// Serve the test app on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, config: EndpointConfig) {
    let endpoint = Endpoint::new(Arc::new(TestApp::default()), config);
    serve_endpoint(listener, endpoint).await
}

/// HTTP/1 with upgrades: `/socket/websocket` and `/socket/longpoll` go to the endpoint,
/// anything else is 404. Like a network that breaks WebSockets, an upgrade whose query holds
/// `block_websocket=refuse` is answered 403, `block_websocket=hang` never answered, and
/// `block_websocket=mute` opened but never answered a frame (the LongPoll transport ignores the
/// parameter, so the JS suite can test every row of the fallback, case 54).
pub async fn serve_endpoint(listener: TcpListener, endpoint: Arc<Endpoint<TestApp>>) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let endpoint = Arc::clone(&endpoint);
        tokio::spawn(async move {
            let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let endpoint = Arc::clone(&endpoint);
                async move {
                    let block = req.uri().query().and_then(|q| {
                        q.split('&')
                            .find_map(|kv| kv.strip_prefix("block_websocket="))
                            .map(str::to_owned)
                    });
                    // `POST /control/disconnect?id=ID`: the forced disconnect of case 42.
                    if req.uri().path() == "/control/disconnect" {
                        let id = req.uri().query().and_then(|q| {
                            q.split('&')
                                .find_map(|kv| kv.strip_prefix("id="))
                                .map(str::to_owned)
                        });
                        let closed = id.map_or(0, |id| endpoint.disconnect(&id));
                        let mut answer = status(200);
                        *answer.body_mut() = Full::new(Bytes::from(closed.to_string()));
                        return Ok(answer);
                    }
                    let response = match (req.uri().path(), block.as_deref()) {
                        ("/socket/websocket", Some("refuse")) => status(403),
                        ("/socket/websocket", Some("hang")) => std::future::pending().await,
                        ("/socket/websocket", Some("mute")) => mute_websocket(req),
                        ("/socket/websocket", _) => endpoint.upgrade(req, peer).await,
                        ("/socket/longpoll", _) => endpoint.long_poll(req, peer).await,
                        _ => status(404),
                    };
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

/// Accept a WebSocket upgrade, then read and ignore every frame (heartbeats go unanswered).
fn mute_websocket(req: hyper::Request<hyper::body::Incoming>) -> hyper::Response<Full<Bytes>> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
    use tokio_tungstenite::tungstenite::protocol::Role;
    let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
        return status(400);
    };
    let upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            TokioIo::new(upgraded),
            Role::Server,
            None,
        )
        .await;
        while let Some(Ok(_)) = ws.next().await {}
    });
    let mut response = status(101);
    let headers = response.headers_mut();
    headers.insert(
        "upgrade",
        hyper::header::HeaderValue::from_static("websocket"),
    );
    headers.insert(
        "connection",
        hyper::header::HeaderValue::from_static("Upgrade"),
    );
    let accept = derive_accept_key(key.as_bytes());
    headers.insert(
        "sec-websocket-accept",
        hyper::header::HeaderValue::from_str(&accept).expect("accept key"),
    );
    response
}

fn status(code: u16) -> hyper::Response<Full<Bytes>> {
    let mut response = hyper::Response::new(Full::new(Bytes::new()));
    *response.status_mut() = hyper::StatusCode::from_u16(code).expect("status code");
    response
}

/// A JSON payload, for brevity in tests.
pub fn j(value: Value) -> Payload {
    Payload::Json(value)
}
