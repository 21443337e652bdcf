//! The real `kaffediem` binary as a child process, for what only a process shows: signals,
//! crashes, exit codes, start-up errors, and what is on disk afterwards.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::WAIT;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_kaffediem");

/// A directory of its own for one test: the database, config and sockets live in it, and
/// the daemon runs in it (so the repository's `kaffediem.toml` is never picked up).
pub struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    pub fn new() -> Site {
        let mut dir = tempfile::tempdir().expect("tempdir");
        // KAFFEDIEM_KEEP_SITES: leave every site's files behind, to look at after a failure.
        if std::env::var_os("KAFFEDIEM_KEEP_SITES").is_some() {
            dir.disable_cleanup(true);
            eprintln!("site kept: {}", dir.path().display());
        }
        Site { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn db(&self) -> PathBuf {
        self.path("kaffediem.db")
    }

    /// `kaffediem ARGS` with a clean environment: this site's database, port 0 on loopback,
    /// no systemd, no RUST_LOG.
    pub fn command(&self, args: &[&str]) -> Command {
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
    pub fn run(&self, args: &[&str]) -> Output {
        run(self.command(args))
    }

    /// A database with the demo café, made by `kaffediem demo`.
    pub fn demo_db(&self) {
        let out = self.run(&["demo"]);
        assert!(out.status.success(), "demo: {}", text(&out.stderr));
    }

    /// A connection to the database, as the `sqlite3` shell would open it.
    pub fn shell(&self) -> rusqlite::Connection {
        let conn = rusqlite::Connection::open(self.db()).expect("open db");
        conn.busy_timeout(Duration::from_secs(10))
            .expect("busy timeout");
        conn
    }
}

pub fn run(mut cmd: Command) -> Output {
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

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The last line of a failed command's stderr: the one-line error.
pub fn error_line(out: &Output) -> String {
    let stderr = text(&out.stderr);
    stderr.lines().last().unwrap_or_default().to_owned()
}

/// A daemon running as a child process.
pub struct Daemon {
    child: Child,
    pub addr: SocketAddr,
    /// Everything it wrote to stderr so far, line by line.
    log: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    /// Start `cmd` and wait until it logs `listening on ADDR`.
    pub fn start(mut cmd: Command) -> Daemon {
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
                lines.lock().unwrap_or_else(|e| e.into_inner()).push(line);
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
                    log.lock().unwrap_or_else(|e| e.into_inner()).join("\n")
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

    pub fn log(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
    }

    /// Wait until a log line contains every one of `parts`.
    pub fn wait_for_log(&self, parts: &[&str]) -> String {
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

    /// SIGKILL: the process dies on the spot, as in a crash.
    /// The child's process id (for signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM");
    }

    /// Wait for the process to end (it was told to stop).
    pub fn wait(&mut self) -> ExitStatus {
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

    pub fn ws_url(&self) -> String {
        format!("ws://{}/socket/websocket?vsn=2.0.0", self.addr)
    }

    /// Try a WebSocket upgrade with `origin`; the HTTP status of the answer.
    pub async fn upgrade_status(&self, origin: &str) -> u16 {
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
