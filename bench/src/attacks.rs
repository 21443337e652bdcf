//! The hostile phase's attacks: what one visitor on the café's Wi-Fi can send, each from
//! 127.0.0.2 (the probes measuring the daemon meanwhile come from 127.0.0.1, so per-address
//! limits tell the two apart). Each attack runs until its deadline and counts what the
//! attacker saw (status codes, closes); dropping its future closes every socket it opened.
//! Raw bytes on TCP wherever a well-behaved client library would not misbehave this way.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;
use tokio::time::{timeout_at, Instant};

use crate::orders;

/// Where every attack comes from.
pub const ATTACKER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// Pings written per `write` call by the ping flood (125-byte payloads, 131 bytes each).
const PINGS_PER_WRITE: usize = 256;
/// Connections opened at once by the stuck-body attack and the slow readers.
const OPENING: usize = 64;

/// What the attacker saw, by outcome (`"HTTP 401"`, `"closed by server"`, ...).
#[derive(Default)]
pub struct Outcomes(Mutex<BTreeMap<String, u64>>);

impl Outcomes {
    pub fn add(&self, what: impl Into<String>, n: u64) {
        if let Ok(mut map) = self.0.lock() {
            *map.entry(what.into()).or_default() += n;
        }
    }

    /// Keep the largest value seen under `what`.
    pub fn max(&self, what: &str, n: u64) {
        if let Ok(mut map) = self.0.lock() {
            let v = map.entry(what.to_owned()).or_default();
            *v = (*v).max(n);
        }
    }

    pub fn take(&self) -> BTreeMap<String, u64> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

/// A TCP connection from the attacker's address, optionally with a small receive buffer.
pub async fn tcp_from(
    src: Ipv4Addr,
    server: SocketAddr,
    recv_buffer: Option<u32>,
) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    if let Some(bytes) = recv_buffer {
        socket.set_recv_buffer_size(bytes)?;
    }
    socket.bind(SocketAddr::new(IpAddr::V4(src), 0))?;
    let stream = socket.connect(server).await?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// A client WebSocket frame (masked, as RFC 6455 requires of clients).
pub fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut frame = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => frame.push(0x80 | n as u8),
        n if n < 65_536 => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

/// Send a WebSocket upgrade and read the answer's head (never more than the head, so a
/// socket that "never reads" has read nothing of its frames). Returns the HTTP status.
async fn upgrade(
    stream: &mut TcpStream,
    server: SocketAddr,
    until: Instant,
) -> Result<u16, String> {
    let request = format!(
        "GET /socket/websocket?vsn=2.0.0 HTTP/1.1\r\nHost: {server}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    let io = |e: std::io::Error| e.to_string();
    timeout_at(until, stream.write_all(request.as_bytes()))
        .await
        .map_err(|_| "no upgrade answer".to_string())?
        .map_err(io)?;
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = timeout_at(until, stream.read(&mut byte))
            .await
            .map_err(|_| "no upgrade answer".to_string())?
            .map_err(io)?;
        if n == 0 || head.len() > 8192 {
            return Err("closed during the upgrade".into());
        }
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head)
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| "bad upgrade answer".into())
}

/// One request on its own connection (`Connection: close`), the answer read to its end and
/// thrown away. Returns the outcome label and the bytes read.
async fn one_shot(server: SocketAddr, request: &[u8], until: Instant) -> (String, u64) {
    let mut stream = match timeout_at(until, tcp_from(ATTACKER, server, None)).await {
        Ok(Ok(s)) => s,
        Ok(Err(_)) => return ("connect refused or failed".into(), 0),
        Err(_) => return ("no answer by the end".into(), 0),
    };
    if stream.write_all(request).await.is_err() {
        return ("closed by server before the answer".into(), 0);
    }
    let mut buf = vec![0u8; 64 * 1024];
    let (mut first, mut total) = (Vec::new(), 0u64);
    loop {
        match timeout_at(until, stream.read(&mut buf)).await {
            Err(_) if total == 0 => return ("no answer by the end".into(), 0),
            Err(_) => break,
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => {
                if first.len() < 32 {
                    first.extend_from_slice(&buf[..n.min(32)]);
                }
                total += n as u64;
            }
            Ok(Err(_)) if total == 0 => return ("reset by server, no answer".into(), 0),
            Ok(Err(_)) => break,
        }
    }
    let status = String::from_utf8_lossy(&first)
        .split_whitespace()
        .nth(1)
        .map(|s| format!("HTTP {s}"));
    (
        status.unwrap_or_else(|| "closed by server, no answer".into()),
        total,
    )
}

/// a. One socket writes 125-byte pings as fast as the daemon takes them and never reads.
pub async fn ping_flood(server: SocketAddr, until: Instant, out: Arc<Outcomes>) {
    let mut stream = match tcp_from(ATTACKER, server, None).await {
        Ok(s) => s,
        Err(_) => return out.add("connect refused or failed", 1),
    };
    match upgrade(&mut stream, server, until).await {
        Ok(101) => {}
        Ok(status) => return out.add(format!("upgrade HTTP {status}"), 1),
        Err(e) => return out.add(e, 1),
    }
    let ping = client_frame(0x9, &[b'p'; 125]);
    let burst: Vec<u8> = ping.repeat(PINGS_PER_WRITE);
    let (mut pings, mut last_write) = (0u64, Instant::now());
    loop {
        match timeout_at(until, stream.write_all(&burst)).await {
            Ok(Ok(())) => {
                pings += PINGS_PER_WRITE as u64;
                last_write = Instant::now();
            }
            Ok(Err(_)) => {
                out.add("socket closed by server", 1);
                break;
            }
            Err(_) => {
                // The deadline: if the last write went through long ago, the daemon had
                // stopped reading this socket (the kernel buffers were full).
                if until.duration_since(last_write) > Duration::from_secs(1) {
                    out.add("writes stalled: daemon stopped reading", 1);
                }
                break;
            }
        }
    }
    out.add("pings written", pings);
}

/// b. Waves of `n` parallel logins with a wrong password for `email`, until the deadline
/// (or `waves` of them, if not 0).
pub async fn logins(
    server: SocketAddr,
    until: Instant,
    (n, waves): (usize, usize),
    email: String,
    out: Arc<Outcomes>,
) {
    let mut wave = 0;
    while Instant::now() < until && (waves == 0 || wave < waves) {
        let mut tasks = JoinSet::new();
        for i in 0..n {
            let body = format!(r#"{{"email":"{email}","password":"wrong guess {wave}-{i}"}}"#);
            let request = format!(
                "POST /api/session HTTP/1.1\r\nHost: {server}\r\nContent-Type: application/json\r\n\
                 Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            tasks.spawn(async move { one_shot(server, request.as_bytes(), until).await });
        }
        out.add("logins sent", n as u64);
        while let Some(done) = tasks.join_next().await {
            if let Ok((label, _)) = done {
                out.add(label, 1);
            }
        }
        wave += 1;
    }
}

/// c. Waves of `n` sockets that each join `collection:order` with `{}` and hang up at once,
/// until the deadline (or `waves` of them, if not 0).
pub async fn join_and_hang_up(
    server: SocketAddr,
    until: Instant,
    (n, waves): (usize, usize),
    out: Arc<Outcomes>,
) {
    let join = client_frame(0x1, br#"["1","1","collection:order","phx_join",{}]"#);
    let close = client_frame(0x8, &1000u16.to_be_bytes());
    let mut wave = 0;
    while Instant::now() < until && (waves == 0 || wave < waves) {
        wave += 1;
        let mut tasks = JoinSet::new();
        for _ in 0..n {
            let (join, close) = (join.clone(), close.clone());
            tasks.spawn(async move {
                let Ok(Ok(mut stream)) = timeout_at(until, tcp_from(ATTACKER, server, None)).await
                else {
                    return "connect refused or failed".to_string();
                };
                match upgrade(&mut stream, server, until).await {
                    Ok(101) => {}
                    Ok(status) => return format!("upgrade HTTP {status}"),
                    Err(e) => return e,
                }
                let mut frames = join;
                frames.extend_from_slice(&close);
                match stream.write_all(&frames).await {
                    Ok(()) => "joined and hung up".to_string(),
                    Err(_) => "closed by server before the join".to_string(),
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            if let Ok(label) = done {
                out.add(label, 1);
            }
        }
    }
}

/// What the order-amplification attack orders: a multiple-choice key offered on `item`.
#[derive(Clone, Copy)]
pub struct BigOrder {
    pub item: i64,
    pub key: i64,
    pub value: i64,
    /// How many times the one value is repeated in the order.
    pub repeats: usize,
    /// Orders posted at most (each is stored if the daemon accepts it).
    pub orders: usize,
}

/// d. A logged-in customer posts orders repeating one value `repeats` times, while four
/// anonymous clients fetch the whole order list over and over.
pub async fn amplification(
    server: SocketAddr,
    until: Instant,
    cookie: String,
    big: BigOrder,
    out: Arc<Outcomes>,
) {
    let mut tasks = JoinSet::new();
    {
        let out = Arc::clone(&out);
        tasks.spawn(async move {
            let values = vec![big.value.to_string(); big.repeats].join(",");
            let body = format!(
                r#"{{"items":[{{"item":{},"customizations":[{{"key":{},"value":[{values}]}}]}}],"state":"received"}}"#,
                big.item, big.key
            );
            out.max("order body bytes", body.len() as u64);
            for _ in 0..big.orders {
                if Instant::now() >= until {
                    break;
                }
                let Ok(Ok(stream)) = timeout_at(until, tcp_from(ATTACKER, server, None)).await
                else {
                    out.add("order: connect refused or failed", 1);
                    continue;
                };
                let mut conn = BufReader::new(stream);
                let headers = format!("Cookie: {cookie}\r\n");
                let path = "/api/collections/order/records";
                let sent = orders::exchange(&mut conn, server, "POST", path, &headers, &body);
                match timeout_at(until, sent).await {
                    Ok(Ok(reply)) => out.add(format!("order: HTTP {}", reply.status), 1),
                    Ok(Err(_)) => out.add("order: closed by server", 1),
                    Err(_) => out.add("order: no answer by the end", 1),
                }
            }
        });
    }
    for _ in 0..4 {
        let out = Arc::clone(&out);
        tasks.spawn(async move {
            let request = format!(
                "GET /api/collections/order/records HTTP/1.1\r\nHost: {server}\r\nConnection: close\r\n\r\n"
            );
            while Instant::now() < until {
                let (label, bytes) = one_shot(server, request.as_bytes(), until).await;
                out.add(format!("list: {label}"), 1);
                out.max("list: largest answer (bytes)", bytes);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// e. `n` connections that send part of a request and never finish it: a login body, an
/// order body (with the attacking customer's session `cookie`, so the daemon has to read
/// it), a header block. Each waits for what the daemon does about it.
pub async fn stuck_requests(
    server: SocketAddr,
    until: Instant,
    n: usize,
    cookie: &str,
    out: Arc<Outcomes>,
) {
    let kinds: [(&str, String); 3] = [
        (
            "login body",
            format!(
                "POST /api/session HTTP/1.1\r\nHost: {server}\r\nContent-Type: application/json\r\n\
                 Content-Length: 1000\r\n\r\n{{\"email\":"
            ),
        ),
        (
            "order body",
            format!(
                "POST /api/collections/order/records HTTP/1.1\r\nHost: {server}\r\n\
                 Cookie: {cookie}\r\nContent-Type: application/json\r\n\
                 Content-Length: 1000\r\n\r\n{{\"items\":"
            ),
        ),
        (
            "header block",
            format!("GET /healthz HTTP/1.1\r\nHost: {server}\r\nX-Never-Ends: "),
        ),
    ];
    let gate = Arc::new(tokio::sync::Semaphore::new(OPENING));
    let mut tasks = JoinSet::new();
    for i in 0..n {
        let (what, request) = kinds[i % kinds.len()].clone();
        let (gate, out) = (Arc::clone(&gate), Arc::clone(&out));
        tasks.spawn(async move {
            let permit = gate.acquire_owned().await;
            let Ok(Ok(mut stream)) = timeout_at(until, tcp_from(ATTACKER, server, None)).await
            else {
                return out.add("connect refused or failed", 1);
            };
            if stream.write_all(request.as_bytes()).await.is_err() {
                return out.add(format!("{what}: closed by server at once"), 1);
            }
            drop(permit);
            out.add("partial requests sent", 1);
            let mut buf = [0u8; 512];
            let label = match timeout_at(until, stream.read(&mut buf)).await {
                Err(_) => "still open at the end".to_string(),
                Ok(Ok(0)) | Ok(Err(_)) => "closed by server, no answer".to_string(),
                Ok(Ok(n)) => String::from_utf8_lossy(&buf[..n])
                    .split_whitespace()
                    .nth(1)
                    .map_or("answered".to_string(), |s| format!("answered HTTP {s}")),
            };
            out.add(format!("{what}: {label}"), 1);
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// f. `n` sockets with 4 KiB receive buffers join `collection:order` and never read again:
/// the join reply and every change after it pile up on the daemon's side.
pub async fn slow_readers(server: SocketAddr, until: Instant, n: usize, out: Arc<Outcomes>) {
    let join = client_frame(0x1, br#"["1","1","collection:order","phx_join",{}]"#);
    let gate = Arc::new(tokio::sync::Semaphore::new(OPENING));
    let mut tasks = JoinSet::new();
    for _ in 0..n {
        let (gate, out, join) = (Arc::clone(&gate), Arc::clone(&out), join.clone());
        tasks.spawn(async move {
            let permit = gate.acquire_owned().await;
            let connected = timeout_at(until, tcp_from(ATTACKER, server, Some(4096))).await;
            let Ok(Ok(mut stream)) = connected else {
                return out.add("connect refused or failed", 1);
            };
            match upgrade(&mut stream, server, until).await {
                Ok(101) => {}
                Ok(status) => return out.add(format!("upgrade HTTP {status}"), 1),
                Err(e) => return out.add(e, 1),
            }
            if stream.write_all(&join).await.is_err() {
                return out.add("closed by server before the join", 1);
            }
            drop(permit);
            out.add("joined, never reading", 1);
            tokio::time::sleep_until(until).await;
            // Still there? A heartbeat to a socket the daemon closed fails (after its RST).
            let beat = client_frame(0x1, br#"[null,"2","phoenix","heartbeat",{}]"#);
            let mut wrote = stream.write_all(&beat).await.is_ok();
            if wrote {
                tokio::time::sleep(Duration::from_millis(50)).await;
                wrote = stream.write_all(&beat).await.is_ok();
            }
            if !wrote {
                out.add("closed by server by the end", 1);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}
