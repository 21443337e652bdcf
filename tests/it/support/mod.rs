//! Shared test support: an in-process daemon on an ephemeral port with a real SQLite file,
//! and a raw Phoenix V2 WebSocket client.

pub mod accounts;
pub mod barrier;
pub mod http;
pub mod process;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use kaffediem::clock::OffsetClock;
use kaffediem::config::Config;
use kaffediem::server::{self, Running};

/// How long a test waits for something that should happen before calling it a failure.
pub const WAIT: Duration = Duration::from_secs(10);

/// A daemon running in this process on 127.0.0.1:0 with its own database file.
pub struct Daemon {
    pub addr: SocketAddr,
    pub db: PathBuf,
    pub clock: Arc<OffsetClock>,
    running: Option<Running>,
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// The demo café, with `admin_token = "admin-secret"`.
    pub async fn demo() -> Daemon {
        Daemon::start(true, |_| {}).await
    }

    pub async fn start(demo: bool, configure: impl FnOnce(&mut Config)) -> Daemon {
        Daemon::start_with_clock(OffsetClock::new(), demo, configure).await
    }

    /// [`Daemon::start`] on `clock`, already set: what the daemon reads at start (the café's
    /// day the fan-out begins with) comes from it, so no roll-over races the test's first steps.
    pub async fn start_with_clock(
        clock: Arc<OffsetClock>,
        demo: bool,
        configure: impl FnOnce(&mut Config),
    ) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("kaffediem.db");
        let mut config = Config::default();
        config.http.bind = [127, 0, 0, 1].into();
        config.http.port = 0;
        config.database.path = db.clone();
        config.access.admin_token = "admin-secret".into();
        configure(&mut config);
        let running = server::start(server::Options {
            config,
            config_path: None,
            clock: clock.clone(),
            demo,
        })
        .await
        .expect("daemon starts");
        Daemon {
            addr: running.local_addr(),
            db,
            clock,
            running: Some(running),
            _dir: dir,
        }
    }

    pub fn url(&self, query: &str) -> String {
        format!("ws://{}/socket/websocket?{query}", self.addr)
    }

    /// A V2 socket with extra query parameters (`token=...`).
    pub async fn socket(&self, query: &str) -> Socket {
        let q = if query.is_empty() {
            "vsn=2.0.0".to_string()
        } else {
            format!("{query}&vsn=2.0.0")
        };
        Socket::connect(&self.url(&q)).await
    }

    /// A separate connection to the database file, as the `sqlite3` shell would open it.
    pub fn shell(&self) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open(&self.db).expect("open db");
        conn.busy_timeout(Duration::from_secs(5))
            .expect("busy timeout");
        conn
    }

    pub async fn stop(mut self) {
        if let Some(running) = self.running.take() {
            running.shutdown().await;
        }
    }
}

/// A raw Phoenix V2 client.
pub struct Socket {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_ref: u64,
}

impl Socket {
    /// Wrap an upgraded stream (for upgrades built by hand: cookies, subprotocols).
    pub fn from_ws(ws: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Socket {
        Socket { ws, next_ref: 0 }
    }

    pub async fn connect(url: &str) -> Socket {
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket upgrade");
        Socket { ws, next_ref: 0 }
    }

    pub fn make_ref(&mut self) -> String {
        self.next_ref += 1;
        self.next_ref.to_string()
    }

    pub async fn send(&mut self, frame: Value) {
        self.ws
            .send(Message::Text(frame.to_string().into()))
            .await
            .expect("send");
    }

    /// The next text frame as JSON, failing after [`WAIT`].
    pub async fn recv(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame within the wait")
                .expect("socket open")
                .expect("frame ok");
            match msg {
                Message::Text(text) => return serde_json::from_str(&text).expect("json frame"),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("unexpected frame {other:?}"),
            }
        }
    }

    /// Read until the server's close frame; its code (frames before it are skipped).
    pub async fn close_code(&mut self) -> u16 {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a close within the wait")
                .expect("a close frame before the end")
                .expect("frame ok");
            if let Message::Close(frame) = msg {
                return frame.map_or(1005, |f| f.code.into());
            }
        }
    }

    /// Join `topic` with `payload`; returns the reply's payload (`{"status","response"}`).
    pub async fn join(&mut self, topic: &str, payload: Value) -> Value {
        let r = self.make_ref();
        self.send(json!([r, r, topic, "phx_join", payload])).await;
        loop {
            let frame = self.recv().await;
            if frame[1] == json!(r) && frame[3] == "phx_reply" {
                return frame[4].clone();
            }
        }
    }

    /// Join and insist on `ok`; returns the response.
    pub async fn join_ok(&mut self, topic: &str, payload: Value) -> Value {
        let reply = self.join(topic, payload).await;
        assert_eq!(reply["status"], "ok", "join {topic}: {reply}");
        reply["response"].clone()
    }

    /// The next `event` on `topic`, skipping other frames.
    pub async fn next_event(&mut self, topic: &str, event: &str) -> Value {
        loop {
            let frame = self.recv().await;
            if frame[2] == topic && frame[3] == event {
                return frame[4].clone();
            }
        }
    }
}

/// Wait until `f` is true, polling; panics after [`WAIT`].
pub async fn eventually(mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met in time"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
