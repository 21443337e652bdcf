//! Placing orders and timing them: over HTTP (`POST /api/collections/order/records`, the
//! real path, on keep-alive connections speaking minimal HTTP/1.1), or — before the API
//! existed, and still useful to isolate the writer — as foreign `INSERT`s on a separate
//! SQLite connection.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::subscribers::Tracker;

/// How orders reach the database.
#[derive(Clone)]
pub enum Placement {
    Http {
        addr: SocketAddr,
        token: String,
        item: i64,
    },
    /// A plain `INSERT` by another process's connection (noticed as a foreign commit).
    Sqlite { db: PathBuf },
    /// PocketBase's `POST /api/collections/orders/records` (the side-by-side).
    PocketBase { addr: SocketAddr },
}

/// Send and acknowledgement time of every order, in ns since the tracker's epoch.
pub struct Placed {
    pub sent_ns: Vec<u64>,
    pub acked_ns: Vec<u64>,
}

impl Placed {
    /// Orders acknowledged per second: from the first send to the last acknowledgement.
    pub fn rate(&self) -> f64 {
        let first = self.sent_ns.iter().copied().min().unwrap_or(0);
        let last = self.acked_ns.iter().copied().max().unwrap_or(0);
        let secs = (last.saturating_sub(first)) as f64 / 1e9;
        if secs > 0.0 {
            self.sent_ns.len() as f64 / secs
        } else {
            0.0
        }
    }
}

/// The request body of order `i` (its uuid is what the subscribers look for).
pub fn order_body(prefix: &str, i: usize, item: i64) -> String {
    format!(
        r#"{{"customer_id":null,"missing_information":false,"state":"received","items":[{{"item":{item},"customizations":[]}}],"uuid":"{prefix}{i}"}}"#
    )
}

/// Place orders `range` with `writers` concurrent writers, as fast as they are answered.
pub async fn place_concurrently(
    placement: &Placement,
    prefix: &str,
    range: std::ops::Range<usize>,
    writers: usize,
    tracker: &Arc<Tracker>,
) -> Result<Placed, String> {
    let next = Arc::new(AtomicUsize::new(range.start));
    let mut tasks = JoinSet::new();
    for _ in 0..writers.max(1) {
        let (placement, prefix, next, tracker) = (
            placement.clone(),
            prefix.to_owned(),
            Arc::clone(&next),
            Arc::clone(tracker),
        );
        let end = range.end;
        tasks.spawn(async move {
            let mut placer = Placer::open(&placement).await?;
            let mut times = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end {
                    return Ok::<_, String>(times);
                }
                let sent = tracker.now_ns();
                placer.place(&prefix, i).await?;
                times.push((i, sent, tracker.now_ns()));
            }
        });
    }
    let n = range.len();
    let mut placed = Placed {
        sent_ns: vec![0; n],
        acked_ns: vec![0; n],
    };
    while let Some(done) = tasks.join_next().await {
        for (i, sent, acked) in done.map_err(|e| e.to_string())?? {
            placed.sent_ns[i - range.start] = sent;
            placed.acked_ns[i - range.start] = acked;
        }
    }
    Ok(placed)
}

/// One writer's connection.
pub enum Placer {
    Http {
        conn: BufReader<TcpStream>,
        addr: SocketAddr,
        token: String,
        item: i64,
    },
    Sqlite(rusqlite::Connection),
    PocketBase {
        conn: BufReader<TcpStream>,
        addr: SocketAddr,
    },
}

impl Placer {
    pub async fn open(placement: &Placement) -> Result<Placer, String> {
        match placement {
            Placement::Http { addr, token, item } => Ok(Placer::Http {
                conn: BufReader::new(connect(*addr).await?),
                addr: *addr,
                token: token.clone(),
                item: *item,
            }),
            Placement::PocketBase { addr } => Ok(Placer::PocketBase {
                conn: BufReader::new(connect(*addr).await?),
                addr: *addr,
            }),
            Placement::Sqlite { db } => {
                let conn = rusqlite::Connection::open(db).map_err(|e| e.to_string())?;
                conn.busy_timeout(Duration::from_secs(10))
                    .map_err(|e| e.to_string())?;
                Ok(Placer::Sqlite(conn))
            }
        }
    }

    /// Place order `i` and wait for its acknowledgement.
    pub async fn place(&mut self, prefix: &str, i: usize) -> Result<(), String> {
        match self {
            Placer::Http {
                conn,
                addr,
                token,
                item,
            } => {
                let body = order_body(prefix, i, *item);
                let (status, answer) = request(
                    conn,
                    *addr,
                    "POST",
                    "/api/collections/order/records",
                    token,
                    &body,
                )
                .await?;
                if status != 201 {
                    return Err(format!(
                        "order {i}: HTTP {status}: {}",
                        String::from_utf8_lossy(&answer)
                    ));
                }
                Ok(())
            }
            Placer::PocketBase { conn, addr } => {
                // The same order snapshot the daemon stores, as PocketBase fields.
                let body = format!(
                    r#"{{"uuid":"{prefix}{i}","total_nok":45,"items":[{{"item_id":1,"name":"Cappuccino","price":45,"category":"Kaffe","customizations":[],"total":45}}]}}"#
                );
                let path = "/api/collections/orders/records";
                let (status, answer) = request(conn, *addr, "POST", path, "", &body).await?;
                if status != 200 {
                    return Err(format!(
                        "pocketbase order {i}: HTTP {status}: {}",
                        String::from_utf8_lossy(&answer)
                    ));
                }
                Ok(())
            }
            Placer::Sqlite(conn) => {
                // Blocking, but one short durable insert; the writers are few.
                tokio::task::block_in_place(|| {
                    conn.execute(
                        r#"INSERT INTO "order" (uuid, items, total_nok) VALUES (?1, '[]', 0)"#,
                        [format!("{prefix}{i}")],
                    )
                })
                .map_err(|e| format!("order {i}: {e}"))?;
                Ok(())
            }
        }
    }
}

pub async fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// One HTTP/1.1 request on a keep-alive connection; returns status and body. Enough HTTP for
/// a server that answers with `Content-Length` (hyper with full bodies does).
pub async fn request(
    conn: &mut BufReader<TcpStream>,
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: &str,
    body: &str,
) -> Result<(u16, Vec<u8>), String> {
    let auth = match token {
        "" => String::new(),
        token => format!("Authorization: Bearer {token}\r\n"),
    };
    let reply = exchange(conn, addr, method, path, &auth, body).await?;
    Ok((reply.status, reply.body))
}

/// What [`exchange`] read back.
pub struct Reply {
    pub status: u16,
    /// The `name=value` pair of the first `Set-Cookie` header (a login's session).
    pub set_cookie: Option<String>,
    pub body: Vec<u8>,
}

/// [`request`] with any extra header lines (each ending in CRLF), e.g. a session `Cookie`.
pub async fn exchange(
    conn: &mut BufReader<TcpStream>,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> Result<Reply, String> {
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let mut out = head.into_bytes();
    out.extend_from_slice(body.as_bytes());
    let io = |e: std::io::Error| format!("{method} {path}: {e}");
    conn.get_mut().write_all(&out).await.map_err(io)?;
    let mut line = String::new();
    conn.read_line(&mut line).await.map_err(io)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{method} {path}: bad status line {line:?}"))?;
    let mut length = 0usize;
    let mut set_cookie = None;
    loop {
        line.clear();
        if conn.read_line(&mut line).await.map_err(io)? == 0 {
            return Err(format!("{method} {path}: connection closed"));
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            } else if name.eq_ignore_ascii_case("set-cookie") && set_cookie.is_none() {
                set_cookie = value.split(';').next().map(|c| c.trim().to_owned());
            }
        }
    }
    let mut answer = vec![0; length];
    conn.read_exact(&mut answer).await.map_err(io)?;
    Ok(Reply {
        status,
        set_cookie,
        body: answer,
    })
}

/// The id of an enabled item to order (from `GET /api/collections/item/records`).
pub async fn pick_item(addr: SocketAddr, token: &str) -> Result<i64, String> {
    let mut conn = BufReader::new(connect(addr).await?);
    let (status, body) = request(
        &mut conn,
        addr,
        "GET",
        "/api/collections/item/records",
        token,
        "",
    )
    .await?;
    if status != 200 {
        return Err(format!(
            "GET /api/collections/item/records: HTTP {status} (does this daemon have the HTTP API?)"
        ));
    }
    let items: serde_json::Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    items
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|i| i["enable"] == serde_json::Value::Bool(true))
        })
        .and_then(|i| i["id"].as_i64())
        .ok_or_else(|| "the daemon has no enabled item to order (start it with --demo)".into())
}
