//! The appliance through the real binary: start-up errors, clean shutdown on SIGTERM,
//! `backup` and `check`, the systemd handshake, config hot reload, `/metrics`, the unit file.
//! Every daemon here is a child process on 127.0.0.1:0 with its own directory and database;
//! waits are bounded by [`WAIT`] and only guard against hangs. This file holds what the
//! areas share: a test site, a daemon process, a stream of orders from another process.

mod admin_token;
mod backup;
mod cli;
mod join_flood;
mod metrics;
mod reload;
mod shutdown;
mod systemd;

use std::net::SocketAddr;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;

use crate::support::http::call;
use crate::support::process::{error_line, run, text, Daemon, Site, BIN};
use crate::support::{Socket, WAIT};

/// The interim admin credential the daemons here are configured with.
const ADMIN_TOKEN: &str = "ops-admin-secret";

/// `kaffediem serve` on the demo café, configured with [`ADMIN_TOKEN`] for HTTP writes.
fn demo_with_admin_token(site: &Site) -> Daemon {
    site.demo_db();
    std::fs::write(
        site.path("kaffediem.toml"),
        format!("[access]\nadmin_token = \"{ADMIN_TOKEN}\"\n"),
    )
    .expect("write config");
    let mut cmd = site.command(&["serve"]);
    cmd.env("KAFFEDIEM_CONFIG", site.path("kaffediem.toml"));
    Daemon::start(cmd)
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
    let sent = call(addr, "POST", path)
        .header("authorization", &format!("Bearer {ADMIN_TOKEN}"))
        .json(body)
        .try_send();
    let reply = tokio::time::timeout(WAIT, sent).await.ok()?.ok()?;
    Some(reply.status.as_u16())
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
