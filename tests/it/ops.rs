//! The appliance through the real binary: start-up errors, clean shutdown on SIGTERM,
//! `backup` and `check`, the systemd handshake, config hot reload, `/metrics`, the unit file.
//! Every daemon here is a child process on 127.0.0.1:0 with its own directory and database;
//! waits are bounded by [`WAIT`] and only guard against hangs. This file holds what the
//! areas share: a test site, a daemon process, a stream of orders from another process.

mod backup;
mod cli;
mod metrics;
mod reload;
mod shutdown;
mod systemd;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

use crate::support::http::call;
use crate::support::{Socket, WAIT};

const BIN: &str = env!("CARGO_BIN_EXE_kaffediem");

/// The interim admin credential the daemons here are configured with.
const ADMIN_TOKEN: &str = "ops-admin-secret";

/// A directory of its own for one test: the database, config and sockets live in it, and
/// the daemon runs in it (so the repository's `kaffediem.toml` is never picked up).
struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn new() -> Site {
        Site {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn db(&self) -> PathBuf {
        self.path("kaffediem.db")
    }

    /// `kaffediem ARGS` with a clean environment: this site's database, port 0 on loopback,
    /// no systemd, no RUST_LOG.
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .current_dir(self.dir.path())
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env_remove("RUST_LOG")
            .env_remove("KAFFEDIEM_CONFIG")
            .env("KAFFEDIEM_DB", self.db())
            .env("KAFFEDIEM_PORT", "0")
            .env("KAFFEDIEM_BIND", "127.0.0.1")
            .stdin(Stdio::null());
        cmd
    }

    /// Run a command that should end by itself.
    fn run(&self, args: &[&str]) -> Output {
        run(self.command(args))
    }

    /// A database with the demo café, made by `kaffediem demo`.
    fn demo_db(&self) {
        let out = self.run(&["demo"]);
        assert!(out.status.success(), "demo: {}", text(&out.stderr));
    }

    /// A connection to the database, as the `sqlite3` shell would open it.
    fn shell(&self) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open(self.db()).expect("open db");
        conn.busy_timeout(Duration::from_secs(10))
            .expect("busy timeout");
        conn
    }
}

fn run(mut cmd: Command) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kaffediem");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    rx.recv_timeout(WAIT * 3)
        .expect("kaffediem ended in time")
        .expect("kaffediem output")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The last line of a failed command's stderr: the one-line error.
fn error_line(out: &Output) -> String {
    let stderr = text(&out.stderr);
    stderr.lines().last().unwrap_or_default().to_owned()
}

/// A daemon running as a child process.
struct Daemon {
    child: Child,
    addr: SocketAddr,
    /// Everything it wrote to stderr so far, line by line.
    log: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    /// Start `cmd` and wait until it logs `listening on ADDR`.
    fn start(mut cmd: Command) -> Daemon {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kaffediem");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let lines = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        let deadline = Instant::now() + WAIT;
        let addr = loop {
            let found = log
                .lock()
                .unwrap()
                .iter()
                .find_map(|l| l.split("listening on ").nth(1).map(str::to_owned));
            if let Some(addr) = found {
                break addr.trim().parse().expect("address after `listening on`");
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "kaffediem exited ({status}) before listening:\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
            assert!(
                Instant::now() < deadline,
                "kaffediem did not start listening"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        Daemon { child, addr, log }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Wait until a log line contains every one of `parts`.
    fn wait_for_log(&self, parts: &[&str]) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let found = self
                .log
                .lock()
                .unwrap()
                .iter()
                .find(|l| parts.iter().all(|p| l.contains(p)))
                .cloned();
            if let Some(line) = found {
                return line;
            }
            assert!(
                Instant::now() < deadline,
                "no log line with {parts:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM");
    }

    /// Wait for the process to end (it was told to stop).
    fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "kaffediem did not exit:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn ws_url(&self) -> String {
        format!("ws://{}/socket/websocket?vsn=2.0.0", self.addr)
    }

    /// Try a WebSocket upgrade with `origin`; the HTTP status of the answer.
    async fn upgrade_status(&self, origin: &str) -> u16 {
        let mut req = self.ws_url().into_client_request().expect("request");
        req.headers_mut()
            .insert("origin", origin.parse().expect("origin header"));
        match tokio_tungstenite::connect_async(req).await {
            Ok((_, response)) => response.status().as_u16(),
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                response.status().as_u16()
            }
            Err(e) => panic!("upgrade failed oddly: {e}"),
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Inserts orders from its own SQLite connection, one transaction each, numbering them by
/// `customer_id` 1, 2, 3, ... `committed` is the highest number known to be committed.
struct OrderStream {
    committed: Arc<AtomicI64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<rusqlite::Connection>>,
}

impl OrderStream {
    fn start(site: &Site) -> OrderStream {
        let conn = site.shell();
        let committed = Arc::new(AtomicI64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (Arc::clone(&committed), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let mut n = 0;
            while !s.load(Ordering::SeqCst) {
                n += 1;
                conn.execute(
                    r#"INSERT INTO "order" (uuid, customer_id, items) VALUES (?1, ?2, '[]')"#,
                    rusqlite::params![format!("ops-test-{n}"), n],
                )
                .expect("insert order");
                c.store(n, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(2));
            }
            conn
        });
        let stream = OrderStream {
            committed,
            stop,
            thread: Some(thread),
        };
        stream.wait_for(20);
        stream
    }

    fn committed(&self) -> i64 {
        self.committed.load(Ordering::SeqCst)
    }

    fn wait_for(&self, n: i64) {
        let deadline = Instant::now() + WAIT;
        while self.committed() < n {
            assert!(Instant::now() < deadline, "orders are not being written");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Stop writing; returns the connection, still open, and the last number committed.
    fn stop(mut self) -> (rusqlite::Connection, i64) {
        self.stop.store(true, Ordering::SeqCst);
        let conn = self
            .thread
            .take()
            .expect("thread")
            .join()
            .expect("writer thread");
        (conn, self.committed())
    }
}

/// Every `customer_id` in 1..=n is an order in the database `conn` reads.
fn assert_orders_present(conn: &rusqlite::Connection, n: i64) {
    let present: i64 = conn
        .query_row(
            r#"SELECT count(DISTINCT customer_id) FROM "order" WHERE customer_id BETWEEN 1 AND ?1"#,
            [n],
            |r| r.get(0),
        )
        .expect("count orders");
    assert_eq!(present, n, "orders 1..={n} should all be there");
}

/// POST `body` as the interim admin; the status, or `None` when the daemon did not answer
/// (refused, reset: it is shutting down).
async fn try_post(addr: SocketAddr, path: &str, body: &serde_json::Value) -> Option<u16> {
    use http_body_util::Full;
    let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .ok()?;
    tokio::spawn(conn);
    let req = hyper::Request::post(path)
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .body(Full::new(bytes::Bytes::from(body.to_string())))
        .ok()?;
    let response = tokio::time::timeout(WAIT, sender.send_request(req))
        .await
        .ok()?
        .ok()?;
    Some(response.status().as_u16())
}

/// Messages created over HTTP one after another until the daemon stops answering; returns
/// the titles it acknowledged with 201.
async fn post_messages_until_refused(addr: SocketAddr, acked: Arc<Mutex<Vec<String>>>) {
    for n in 1.. {
        let title = format!("ops-{n}");
        let body = json!({ "title": title });
        match try_post(addr, "/api/collections/message/records", &body).await {
            Some(201) => acked.lock().unwrap().push(title),
            Some(503) => continue,
            Some(status) => panic!("POST answered {status}"),
            None => return,
        }
    }
}

fn integrity(conn: &rusqlite::Connection) -> String {
    conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check")
}

fn wal_len(db: &Path) -> Option<u64> {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    std::fs::metadata(PathBuf::from(wal)).ok().map(|m| m.len())
}
