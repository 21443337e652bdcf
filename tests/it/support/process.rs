//! The real `kaffediem` binary as a child process: for what only a process shows (signals,
//! crashes, exit codes, what is on disk afterwards).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::WAIT;

/// A daemon process on 127.0.0.1 with an ephemeral port, its log collected as it runs.
pub struct Process {
    child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<String>>,
}

/// The binary under test.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kaffediem"))
}

impl Process {
    /// `kaffediem --config <dir>/kaffediem.toml serve [args]` on `db`, with `config` as the file.
    pub fn serve(dir: &Path, db: &Path, config: &str, args: &[&str]) -> Process {
        let config_path = dir.join("kaffediem.toml");
        std::fs::write(&config_path, config).expect("write config");
        let mut cmd = Command::new(binary());
        cmd.arg("--config")
            .arg(&config_path)
            .arg("serve")
            .args(args)
            .env("KAFFEDIEM_PORT", "0")
            .env("KAFFEDIEM_BIND", "127.0.0.1")
            .env("KAFFEDIEM_DB", db)
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn kaffediem");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Some(addr) = line
                        .split("listening on ")
                        .nth(1)
                        .and_then(|rest| rest.split_whitespace().next())
                        .and_then(|a| a.parse::<SocketAddr>().ok())
                    {
                        let _ = tx.send(addr);
                    }
                    let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        let deadline = Instant::now() + WAIT * 3;
        let addr = loop {
            if let Ok(addr) = rx.recv_timeout(Duration::from_millis(50)) {
                break addr;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "kaffediem exited with {status} before listening:\n{}",
                    log.lock().unwrap_or_else(|e| e.into_inner())
                );
            }
            assert!(
                Instant::now() < deadline,
                "kaffediem did not start listening"
            );
        };
        Process { child, addr, log }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// SIGKILL: as a power cut looks to the process (the page cache survives; see the test).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM");
        self.child.wait().expect("wait")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
