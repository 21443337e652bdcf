//! The subscribers: N WebSocket clients (V2), each joined to `collection:order` and
//! `collection:status` (or to nothing, against the floor server), that note when every
//! order's `change` reaches them. Arrivals are folded into one [`Tracker`] slot per order
//! (count, first and last arrival), so memory is O(orders), not O(orders × sockets).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Client sockets are spread over this many loopback source addresses (127.0.0.2 ...), so
/// that N is not bounded by one address's ephemeral ports.
const SOURCE_ADDRESSES: u32 = 16;
/// Handshakes in flight while ramping up.
const RAMP_CONCURRENCY: usize = 256;
/// The daemon closes a socket that sends nothing for 60 s; the official client beats every 30.
const HEARTBEAT: Duration = Duration::from_secs(30);

/// Where every order's deliveries are counted. Orders are numbered `0..capacity`; their
/// frames carry `"uuid":"<prefix><number>"`.
pub struct Tracker {
    pub epoch: Instant,
    marker: String,
    count: Vec<AtomicU32>,
    first_ns: Vec<AtomicU64>,
    last_ns: Vec<AtomicU64>,
    /// Size of the last order frame seen (the floor server mimics it).
    pub frame_bytes: AtomicUsize,
    /// Order frames whose uuid was not ours or out of range.
    pub strays: AtomicU64,
    /// Sockets the server closed (or that failed) before the tool closed them.
    pub closed_early: AtomicU64,
}

impl Tracker {
    pub fn new(prefix: &str, capacity: usize) -> Arc<Tracker> {
        Tracker::by_field("uuid", prefix, capacity)
    }

    /// Frames are matched by `"<field>":"<prefix><number>"` (the first occurrence).
    pub fn by_field(field: &str, prefix: &str, capacity: usize) -> Arc<Tracker> {
        Arc::new(Tracker {
            epoch: Instant::now(),
            marker: format!("\"{field}\":\"{prefix}"),
            count: (0..capacity).map(|_| AtomicU32::new(0)).collect(),
            first_ns: (0..capacity).map(|_| AtomicU64::new(u64::MAX)).collect(),
            last_ns: (0..capacity).map(|_| AtomicU64::new(0)).collect(),
            frame_bytes: AtomicUsize::new(0),
            strays: AtomicU64::new(0),
            closed_early: AtomicU64::new(0),
        })
    }

    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Note one frame's arrival at one subscriber. Cheap on purpose: a substring search,
    /// no JSON parse (10 000 clients share the daemon's two cores).
    fn arrived(&self, text: &str) {
        let Some(at) = text.find(&self.marker) else {
            return;
        };
        let digits = &text[at + self.marker.len()..];
        let end = digits.find('"').unwrap_or(digits.len());
        let now = self.now_ns();
        match digits[..end].parse::<usize>() {
            Ok(i) if i < self.count.len() => {
                self.count[i].fetch_add(1, Ordering::Relaxed);
                self.first_ns[i].fetch_min(now, Ordering::Relaxed);
                self.last_ns[i].fetch_max(now, Ordering::Relaxed);
                self.frame_bytes.store(text.len(), Ordering::Relaxed);
            }
            _ => {
                self.strays.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub fn count(&self, i: usize) -> u32 {
        self.count[i].load(Ordering::Relaxed)
    }

    /// (first, last) arrival of order `i`, in ns since `epoch`.
    pub fn arrivals(&self, i: usize) -> Option<(u64, u64)> {
        (self.count(i) > 0).then(|| {
            (
                self.first_ns[i].load(Ordering::Relaxed),
                self.last_ns[i].load(Ordering::Relaxed),
            )
        })
    }

    /// Wait until order `i` reached `n` subscribers (polled: the timing comes from the
    /// arrival stamps, not from this wake-up). `false` on timeout.
    pub async fn wait_for(&self, i: usize, n: u32, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.count(i) < n {
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_micros(500)).await;
        }
        true
    }
}

/// The open subscribers; dropping it (or [`Subscribers::close`]) ends every read loop.
pub struct Subscribers {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    pub ramp: Duration,
}

impl Subscribers {
    pub async fn close(mut self) {
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

/// What a socket joins: (topic, join payload) pairs.
pub type Topics = &'static [(&'static str, &'static str)];

/// The screens of the main runs: order and status joined on every socket, orders without
/// options (the last days' orders in the snapshot, SPEC 3.1).
pub const ORDER_SCREEN: Topics = &[("collection:order", "{}"), ("collection:status", "{}")];
/// A kitchen screen: today's orders (`from_date: "today"`, the rolling window) and status.
pub const KITCHEN_SCREEN: Topics = &[
    ("collection:order", r#"{"options":{"from_date":"today"}}"#),
    ("collection:status", "{}"),
];
/// A menu board.
pub const MENU_SCREEN: Topics = &[("collection:menu", "{}")];

/// Open `n` sockets to `server` (V2), join each to `topics`, and start reading.
pub async fn open(
    server: SocketAddr,
    n: usize,
    topics: Topics,
    tracker: Arc<Tracker>,
) -> Result<Subscribers, String> {
    open_with(n, tracker, move |i| async move {
        connect(server, i, topics).await.map(Stream::Ws)
    })
    .await
}

/// A subscriber's connection: a Phoenix WebSocket, or a PocketBase event stream. (Moved once
/// into its reading task; the size difference does not matter.)
#[allow(clippy::large_enum_variant)]
pub enum Stream {
    Ws(Ws),
    Sse(tokio::io::BufReader<TcpStream>),
}

/// Open `n` subscribers with `connect` (given each one's index), ramping up with a bounded
/// number of handshakes in flight, and start reading them all.
pub async fn open_with<F, Fut>(
    n: usize,
    tracker: Arc<Tracker>,
    connect: F,
) -> Result<Subscribers, String>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<Stream, String>> + Send,
{
    let (stop, stopped) = watch::channel(false);
    let gate = Arc::new(Semaphore::new(RAMP_CONCURRENCY));
    let started = Instant::now();
    let mut handshakes = JoinSet::new();
    for i in 0..n {
        let (gate, connect) = (Arc::clone(&gate), connect.clone());
        handshakes.spawn(async move {
            let _permit = gate.acquire_owned().await;
            connect(i).await
        });
    }
    let mut tasks = JoinSet::new();
    let mut failures = Vec::new();
    while let Some(done) = handshakes.join_next().await {
        match done {
            Ok(Ok(stream)) => {
                tasks.spawn(read_loop(stream, Arc::clone(&tracker), stopped.clone()));
            }
            Ok(Err(e)) => failures.push(e),
            Err(e) => failures.push(e.to_string()),
        }
    }
    let subs = Subscribers {
        stop,
        tasks,
        ramp: started.elapsed(),
    };
    if let Some(first) = failures.first() {
        subs.close().await;
        return Err(format!(
            "{} of {n} subscribers failed; first: {first}",
            failures.len()
        ));
    }
    Ok(subs)
}

pub type Ws = WebSocketStream<TcpStream>;

/// A TCP connection to `server` from one of the loopback source addresses (from the host's
/// own address when `server` is not on loopback: the equal-rate phase's network namespace).
pub async fn tcp(server: SocketAddr, i: usize) -> Result<TcpStream, String> {
    let src = Ipv4Addr::new(127, 0, 0, 2 + (i as u32 % SOURCE_ADDRESSES) as u8);
    let socket = TcpSocket::new_v4().map_err(|e| format!("socket: {e}"))?;
    if server.ip().is_loopback() {
        socket
            .bind(SocketAddr::new(IpAddr::V4(src), 0))
            .map_err(|e| format!("bind {src}: {e}"))?;
    }
    let stream = socket
        .connect(server)
        .await
        .map_err(|e| format!("connect {server}: {e}"))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

async fn connect(server: SocketAddr, i: usize, topics: &[(&str, &str)]) -> Result<Ws, String> {
    let stream = tcp(server, i).await?;
    // Small read buffers: the client side holds N sockets too (tungstenite's default is
    // 128 KiB each).
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    join(stream, server, topics, config).await
}

/// The WebSocket handshake on `stream`, then a join to each of `topics` with its payload
/// (each must be answered `ok`).
pub async fn join(
    stream: TcpStream,
    server: SocketAddr,
    topics: &[(&str, &str)],
    config: WebSocketConfig,
) -> Result<Ws, String> {
    let url = format!("ws://{server}/socket/websocket?vsn=2.0.0");
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(url, stream, Some(config))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    if !topics.is_empty() {
        for (r, (topic, payload)) in topics.iter().enumerate() {
            let frame = format!(r#"["{r}","{r}","{topic}","phx_join",{payload}]"#);
            ws.send(Message::text(frame))
                .await
                .map_err(|e| format!("join: {e}"))?;
        }
        let mut ok = 0;
        while ok < topics.len() {
            let msg = tokio::time::timeout(Duration::from_secs(30), ws.next())
                .await
                .map_err(|_| "join reply timed out".to_string())?
                .ok_or("closed during join")?
                .map_err(|e| format!("join: {e}"))?;
            if let Message::Text(t) = msg {
                if t.contains("\"phx_reply\"") {
                    if !t.contains("\"status\":\"ok\"") {
                        return Err(format!("join refused: {}", t.as_str()));
                    }
                    ok += 1;
                }
            }
        }
    }
    Ok(ws)
}

async fn read_loop(stream: Stream, tracker: Arc<Tracker>, stop: watch::Receiver<bool>) {
    match stream {
        Stream::Ws(ws) => read_ws(ws, tracker, stop).await,
        Stream::Sse(events) => read_sse(events, tracker, stop).await,
    }
}

/// Server-Sent Events: every `data:` line is one event.
async fn read_sse(
    mut events: tokio::io::BufReader<TcpStream>,
    tracker: Arc<Tracker>,
    mut stop: watch::Receiver<bool>,
) {
    use tokio::io::AsyncBufReadExt;
    let mut line = String::new();
    loop {
        line.clear();
        tokio::select! {
            read = events.read_line(&mut line) => match read {
                Ok(0) | Err(_) => {
                    tracker.closed_early.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Ok(_) => {
                    if line.starts_with("data:") {
                        tracker.arrived(&line);
                    }
                }
            },
            _ = stop.changed() => return,
        }
    }
}

async fn read_ws(mut ws: Ws, tracker: Arc<Tracker>, mut stop: watch::Receiver<bool>) {
    let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT);
    let mut refs = 10u64;
    loop {
        tokio::select! {
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(t))) => tracker.arrived(t.as_str()),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    tracker.closed_early.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            },
            _ = beat.tick() => {
                refs += 1;
                let hb = format!(r#"[null,"{refs}","phoenix","heartbeat",{{}}]"#);
                if ws.send(Message::text(hb)).await.is_err() {
                    return;
                }
            }
            _ = stop.changed() => {
                let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
                return;
            }
        }
    }
}
