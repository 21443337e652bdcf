//! The appliance through the real binary: start-up errors, clean shutdown on SIGTERM,
//! `backup` and `check`, the systemd handshake, config hot reload, `/metrics`, the unit file.
//! Every daemon here is a child process on 127.0.0.1:0 with its own directory and database;
//! waits are bounded by [`WAIT`] and only guard against hangs.

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

// ---------------------------------------------------------------------------------------
// CLI

#[test]
fn help_and_version_are_there_for_every_command() {
    let site = Site::new();
    let version = site.run(&["--version"]);
    assert!(version.status.success());
    assert!(text(&version.stdout).contains(env!("CARGO_PKG_VERSION")));
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["backup", "--help"],
        &["check", "--help"],
        &["demo", "--help"],
    ] {
        let out = site.run(args);
        assert!(out.status.success(), "{args:?}");
        assert!(text(&out.stdout).contains("Usage:"), "{args:?}");
    }
    let help = text(&site.run(&["--help"]).stdout);
    for command in ["serve", "backup", "check", "demo"] {
        assert!(help.contains(command), "{command} missing from --help");
    }
}

// ---------------------------------------------------------------------------------------
// Start-up errors: non-zero exit, one line naming the fix.

#[test]
fn port_in_use_is_one_line_naming_the_port() {
    let site = Site::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    let mut cmd = site.command(&["serve"]);
    cmd.env("KAFFEDIEM_PORT", &port);
    let out = run(cmd);
    assert!(!out.status.success());
    let line = error_line(&out);
    assert!(line.contains(&format!(":{port}")), "{line}");
    assert!(line.contains("KAFFEDIEM_PORT"), "{line}");
}

#[test]
fn unwritable_database_path_is_one_line_naming_the_path() {
    let site = Site::new();
    // A regular file where the database directory should be: refused even for root.
    let not_a_dir = site.path("not-a-directory");
    std::fs::write(&not_a_dir, "x").expect("write");
    let db = not_a_dir.join("kaffediem.db");
    let mut cmd = site.command(&["serve"]);
    cmd.env("KAFFEDIEM_DB", &db);
    let out = run(cmd);
    assert!(!out.status.success());
    let line = error_line(&out);
    assert!(line.contains(&not_a_dir.display().to_string()), "{line}");
    assert!(line.contains("KAFFEDIEM_DB"), "{line}");
}

#[test]
fn unknown_config_key_is_one_line_naming_key_and_file() {
    let site = Site::new();
    let config = site.path("kaffediem.toml");
    std::fs::write(&config, "[http]\nprot = 4000\n").expect("write");
    let out = site.run(&["--config", config.to_str().expect("utf-8"), "serve"]);
    assert!(!out.status.success());
    let line = error_line(&out);
    assert!(line.contains("prot"), "{line}");
    assert!(line.contains(&config.display().to_string()), "{line}");
}

#[test]
fn database_from_a_newer_kaffediem_is_refused_with_the_fix() {
    let site = Site::new();
    site.demo_db();
    site.shell()
        .pragma_update(None, "user_version", 999)
        .expect("set user_version");
    let out = site.run(&["serve"]);
    assert!(!out.status.success());
    let line = error_line(&out);
    assert!(line.contains("999"), "{line}");
    assert!(line.contains("upgrade kaffediem"), "{line}");
}

// ---------------------------------------------------------------------------------------
// Clean shutdown

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_sockets_with_1001_keeps_every_commit_and_empties_the_wal() {
    let site = Site::new();
    site.demo_db();
    let mut cmd = site.command(&["serve"]);
    cmd.env("KAFFEDIEM_CONFIG", site.path("kaffediem.toml"));
    std::fs::write(
        site.path("kaffediem.toml"),
        format!("[access]\nadmin_token = \"{ADMIN_TOKEN}\"\n"),
    )
    .expect("write config");
    let mut daemon = Daemon::start(cmd);
    let mut socket = Socket::connect(&daemon.ws_url()).await;
    socket.join_ok("collection:order", json!({})).await;

    // Orders from another process, as the sqlite3 shell makes them, reach the socket.
    let orders = OrderStream::start(&site);
    socket.next_event("collection:order", "change").await;
    // That connection stays open, idle, until the daemon is gone: SQLite's own clean-up
    // when the last connection closes cannot be what empties the WAL, only the daemon's
    // checkpoint can.
    let (shell, committed) = orders.stop();

    // Writes through the daemon keep coming while it receives SIGTERM.
    let acked = Arc::new(Mutex::new(Vec::new()));
    let writer = tokio::spawn(post_messages_until_refused(daemon.addr, Arc::clone(&acked)));
    let deadline = Instant::now() + WAIT;
    while acked.lock().unwrap().len() < 10 {
        assert!(
            Instant::now() < deadline,
            "no HTTP writes:\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    daemon.terminate();

    let close = loop {
        match tokio::time::timeout(WAIT, socket.ws.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => break frame,
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(
        close.map(|f| f.code),
        Some(CloseCode::Away),
        "close code 1001"
    );
    // Reading on sends our half of the closing handshake; then we hang up, as browsers do.
    let _ = tokio::time::timeout(WAIT, async { while socket.ws.next().await.is_some() {} }).await;
    drop(socket);
    tokio::time::timeout(WAIT, writer)
        .await
        .expect("the daemon stops answering")
        .expect("writer task");
    let status = daemon.wait();
    assert!(status.success(), "exit {status}:\n{}", daemon.log());
    assert!(
        wal_len(&site.db()).unwrap_or(0) == 0,
        "the -wal file should be empty or gone"
    );
    assert_orders_present(&shell, committed);
    drop(shell);

    // The file alone is complete: a copy of just it holds every acknowledged write.
    let copy = site.path("copy.db");
    std::fs::copy(site.db(), &copy).expect("copy");
    let conn = rusqlite::Connection::open(&copy).expect("open copy");
    assert_eq!(integrity(&conn), "ok");
    assert_orders_present(&conn, committed);
    let acked = acked.lock().unwrap().clone();
    for title in &acked {
        let found: i64 = conn
            .query_row(
                "SELECT count(*) FROM message WHERE title = ?1",
                [title],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(found, 1, "acknowledged message {title} is missing");
    }
}

// ---------------------------------------------------------------------------------------
// backup and check

#[test]
fn backup_and_check_while_orders_are_written_hold_every_order_committed_before() {
    let site = Site::new();
    site.demo_db();
    let mut daemon = Daemon::start(site.command(&["serve"]));
    let orders = OrderStream::start(&site);
    let before = orders.committed();
    let file = site.path("backup.db");
    let out = site.run(&["backup", file.to_str().expect("utf-8")]);
    assert!(out.status.success(), "backup: {}", text(&out.stderr));
    // `check` reads the live file too, beside the daemon and the writer.
    let live = site.run(&["check"]);
    assert!(live.status.success(), "check: {}", text(&live.stderr));
    let later = orders.committed();
    orders.wait_for(later + 5);
    let (_shell, _) = orders.stop();

    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file)
        .expect("backup")
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o077,
        0,
        "a backup holds password hashes: owner only"
    );
    let copy = rusqlite::Connection::open(&file).expect("open backup");
    assert_eq!(integrity(&copy), "ok");
    assert_orders_present(&copy, before);
    // One consistent snapshot: the orders in it are exactly 1..=k for some k.
    let (count, max): (i64, i64) = copy
        .query_row(
            r#"SELECT count(*), coalesce(max(customer_id), 0) FROM "order" WHERE customer_id > 0"#,
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("count");
    assert_eq!(count, max, "a gap in the copied orders");
    drop(copy);

    // The backup is a database `check` accepts.
    let mut check = site.command(&["check"]);
    check.env("KAFFEDIEM_DB", &file);
    let checked = run(check);
    assert!(checked.status.success(), "{}", text(&checked.stderr));

    let again = site.run(&["backup", file.to_str().expect("utf-8")]);
    assert!(
        !again.status.success(),
        "an existing backup is never replaced silently"
    );
    assert!(
        error_line(&again).contains("--force"),
        "{}",
        error_line(&again)
    );
    let forced = site.run(&["backup", "--force", file.to_str().expect("utf-8")]);
    assert!(forced.status.success(), "{}", text(&forced.stderr));

    daemon.terminate();
    assert!(daemon.wait().success());
}

#[test]
fn check_passes_a_good_database_and_fails_a_damaged_or_newer_one() {
    let site = Site::new();
    site.demo_db();
    let good = site.run(&["check"]);
    assert!(good.status.success(), "{}", text(&good.stderr));
    let report = text(&good.stdout);
    assert!(report.contains("integrity     ok"), "{report}");
    assert!(report.contains("result        ok"), "{report}");

    // Damaged: every page after the first overwritten.
    let damaged = site.path("damaged.db");
    std::fs::copy(site.db(), &damaged).expect("copy");
    let mut bytes = std::fs::read(&damaged).expect("read");
    for b in bytes.iter_mut().skip(4096) {
        *b = 0x41;
    }
    std::fs::write(&damaged, &bytes).expect("write");
    let mut cmd = site.command(&["check"]);
    cmd.env("KAFFEDIEM_DB", &damaged);
    let out = run(cmd);
    assert!(!out.status.success());
    assert!(error_line(&out).contains("backup"), "{}", error_line(&out));

    // Newer: a schema version this build does not know.
    site.shell()
        .pragma_update(None, "user_version", 999)
        .expect("set user_version");
    let out = site.run(&["check"]);
    assert!(!out.status.success());
    assert!(
        error_line(&out).contains("upgrade kaffediem"),
        "{}",
        error_line(&out)
    );

    let mut missing = site.command(&["check"]);
    missing.env("KAFFEDIEM_DB", site.path("nothing-here.db"));
    let out = run(missing);
    assert!(!out.status.success());
    assert!(error_line(&out).contains("nothing-here.db"));
}

// ---------------------------------------------------------------------------------------
// systemd

#[test]
fn systemd_hears_ready_then_watchdog_pings_then_stopping() {
    let site = Site::new();
    let path = site.path("notify.sock");
    let notify = UnixDatagram::bind(&path).expect("bind notify socket");
    notify.set_read_timeout(Some(WAIT)).expect("read timeout");
    let mut cmd = site.command(&["serve"]);
    cmd.env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "200000");
    let mut daemon = Daemon::start(cmd);

    let next = || {
        let mut buf = [0u8; 512];
        let n = notify.recv(&mut buf).expect("a notification in time");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let first = next();
    assert!(first.lines().any(|l| l == "READY=1"), "{first}");
    let mut pings = 0;
    while pings < 3 {
        let msg = next();
        assert!(!msg.contains("STOPPING=1"), "{msg}");
        if msg.lines().any(|l| l == "WATCHDOG=1") {
            pings += 1;
        }
    }
    daemon.terminate();
    loop {
        let msg = next();
        if msg.lines().any(|l| l == "STOPPING=1") {
            break;
        }
    }
    assert!(daemon.wait().success());
}

#[test]
fn unit_file_passes_systemd_analyze_verify() {
    let Ok(probe) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("systemd-analyze is not installed (apt package `systemd`): skipped");
        return;
    };
    assert!(probe.status.success());
    let unit = include_str!("../../kaffediem.service");
    assert!(unit.contains("ExecStart=/usr/local/bin/kaffediem "));
    // `verify` checks that ExecStart is executable: point it at the binary under test.
    let site = Site::new();
    let path = site.path("kaffediem.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/kaffediem", BIN)).expect("write unit");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("run systemd-analyze");
    let stderr = text(&out.stderr);
    // `verify` exits 0 even for unknown keys and bad values, but names the file for each.
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("kaffediem.service"))
        .collect();
    assert!(out.status.success() && ours.is_empty(), "{stderr}");
    for line in [
        "Type=notify",
        "User=kaffediem",
        "StateDirectory=kaffediem",
        "WorkingDirectory=/var/lib/kaffediem",
        "Environment=KAFFEDIEM_DB=/var/lib/kaffediem/kaffediem.db",
        "/etc/kaffediem/kaffediem.toml",
        "Restart=on-failure",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/kaffediem",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=\n",
    ] {
        assert!(unit.contains(line), "unit lacks {line:?}");
    }
    assert!(unit.lines().any(|l| l.starts_with("WatchdogSec=")));
    assert!(unit.lines().any(|l| l.starts_with("TimeoutStopSec=")));
}

// ---------------------------------------------------------------------------------------
// Config hot reload

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_origin_edit_applies_at_once_and_a_broken_edit_keeps_it() {
    let site = Site::new();
    let config = site.path("kaffediem.toml");
    std::fs::write(&config, "[http]\nallowed_origins = []\n").expect("write");
    let mut daemon =
        Daemon::start(site.command(&["--config", config.to_str().expect("utf-8"), "serve"]));
    let screens = "https://screens.example";
    assert_eq!(daemon.upgrade_status(screens).await, 403);

    std::fs::write(
        &config,
        format!("[http]\nallowed_origins = [\"{screens}\"]\n"),
    )
    .expect("write");
    let deadline = Instant::now() + WAIT;
    while daemon.upgrade_status(screens).await != 101 {
        assert!(
            Instant::now() < deadline,
            "origin not allowed after the edit:\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    daemon.wait_for_log(&["http.allowed_origins", "applied"]);

    // A restart-only key: logged, not applied.
    std::fs::write(
        &config,
        format!("[http]\nallowed_origins = [\"{screens}\"]\n[cafe]\ntime_zone = \"UTC\"\n"),
    )
    .expect("write");
    daemon.wait_for_log(&["cafe.time_zone", "needs a restart"]);

    // A broken edit: logged with key and file; the old rule stays, the daemon keeps serving.
    std::fs::write(&config, "[http]\nallowed_origins = []\nprot = 1\n").expect("write");
    daemon.wait_for_log(&["not reloaded", "prot", &config.display().to_string()]);
    assert_eq!(daemon.upgrade_status(screens).await, 101);
    assert_eq!(
        daemon.upgrade_status("https://elsewhere.example").await,
        403
    );
    let health = call(daemon.addr, "GET", "/healthz").send().await;
    assert_eq!(health.status.as_u16(), 200);

    daemon.terminate();
    assert!(daemon.wait().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_level_edit_applies_at_once() {
    let site = Site::new();
    let config = site.path("kaffediem.toml");
    std::fs::write(&config, "[log]\nlevel = \"info\"\n").expect("write");
    let mut daemon =
        Daemon::start(site.command(&["--config", config.to_str().expect("utf-8"), "serve"]));
    std::fs::write(&config, "[log]\nlevel = \"warn\"\n").expect("write");
    // Warnings still show...
    std::fs::write(
        &config,
        "[log]\nlevel = \"warn\"\n[cafe]\ntime_zone = \"UTC\"\n",
    )
    .expect("write");
    daemon.wait_for_log(&["cafe.time_zone", "needs a restart"]);
    // ...information does not: this reload's "applied" line is suppressed.
    let screens = "https://screens.example";
    std::fs::write(
        &config,
        format!("[log]\nlevel = \"warn\"\n[http]\nallowed_origins = [\"{screens}\"]\n"),
    )
    .expect("write");
    let deadline = Instant::now() + WAIT;
    while daemon.upgrade_status(screens).await != 101 {
        assert!(Instant::now() < deadline, "origin edit not applied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    std::fs::write(
        &config,
        format!("[log]\nlevel = \"info\"\n[http]\nallowed_origins = [\"{screens}\"]\n"),
    )
    .expect("write");
    daemon.wait_for_log(&["log level is now `info`"]);
    let log = daemon.log();
    assert!(!log.contains("http.allowed_origins applied"), "{log}");

    daemon.terminate();
    assert!(daemon.wait().success());
}

#[test]
fn sigint_stops_as_cleanly_as_sigterm() {
    let site = Site::new();
    let mut daemon = Daemon::start(site.command(&["serve"]));
    let status = Command::new("kill")
        .args(["-INT", &daemon.child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    assert!(daemon.wait().success(), "{}", daemon.log());
    assert_eq!(wal_len(&site.db()).unwrap_or(0), 0);
}

// ---------------------------------------------------------------------------------------
// /metrics

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_sockets_channels_messages_and_orders() {
    let site = Site::new();
    site.demo_db();
    let mut cmd = site.command(&["serve"]);
    cmd.env("KAFFEDIEM_CONFIG", site.path("kaffediem.toml"));
    std::fs::write(
        site.path("kaffediem.toml"),
        format!("[access]\nadmin_token = \"{ADMIN_TOKEN}\"\n"),
    )
    .expect("write config");
    let mut daemon = Daemon::start(cmd);
    let mut socket = Socket::connect(&daemon.ws_url()).await;
    socket.join_ok("collection:order", json!({})).await;
    // One write through the daemon's writer, one order from another process.
    let posted = try_post(
        daemon.addr,
        "/api/collections/message/records",
        &json!({"title": "metrics"}),
    )
    .await;
    assert_eq!(posted, Some(201));
    site.shell()
        .execute(
            r#"INSERT INTO "order" (uuid, customer_id, items) VALUES ('metrics-1', 7, '[]')"#,
            [],
        )
        .expect("insert order");
    socket.next_event("collection:order", "change").await;

    let reply = call(daemon.addr, "GET", "/metrics").send().await;
    assert_eq!(reply.status.as_u16(), 200);
    assert!(reply
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/plain; version=0.0.4")));
    let body = reply.text();
    let value = |sample: &str| -> f64 {
        body.lines()
            .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no sample {sample} in:\n{body}"))
    };
    assert_eq!(value("kaffediem_open_sockets"), 1.0);
    assert_eq!(
        value("kaffediem_joined_channels{topic=\"collection:order\"}"),
        1.0
    );
    assert!(value("kaffediem_messages_sent_total") >= 2.0); // join reply + change
    assert!(value("kaffediem_bytes_sent_total") > 0.0);
    assert_eq!(value("kaffediem_orders_created_total"), 1.0);
    assert!(value("kaffediem_commits_total") >= 2.0);
    assert_eq!(value("kaffediem_slow_sockets_closed_total"), 0.0);
    // Shown once the writer thread and the fan-out keep them (see ops::metrics::Sources).
    if body.contains("kaffediem_write_transaction_seconds") {
        assert!(value("kaffediem_write_transaction_seconds_count") >= 1.0);
        assert!(value("kaffediem_write_transaction_seconds_bucket{le=\"+Inf\"}") >= 1.0);
    }
    if body.contains("kaffediem_broadcasts_total") {
        assert!(value("kaffediem_broadcasts_total") >= 1.0);
    }

    drop(socket);
    daemon.terminate();
    assert!(daemon.wait().success());
}
