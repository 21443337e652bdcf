//! Child processes the tool measures: the daemon (spawned on a temp database, or one already
//! running) and the bare-broadcast floor server (this binary re-run as `floor-server`). Both
//! announce `listening on ADDR` on stderr; their RSS is read from `/proc/PID/status`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long a child gets to print its address, and to exit after SIGTERM.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// A measured server process. Killed on drop if still running.
pub struct Server {
    pub addr: SocketAddr,
    pub pid: u32,
    child: Option<Child>,
    /// The floor server takes its commands on stdin.
    pub stdin: Option<ChildStdin>,
}

/// Settings of a daemon the tool starts itself.
pub struct DaemonSpec<'a> {
    pub binary: &'a Path,
    pub dir: &'a Path,
    pub token: &'a str,
    pub max_sockets: usize,
    /// The load phases open thousands of sockets (and joins) from 16 loopback addresses, so
    /// they lift the per-address limits past N; the hostile phase keeps every default limit,
    /// as a café's daemon has them (`false`).
    pub lift_address_limits: bool,
}

impl DaemonSpec<'_> {
    pub fn db_path(&self) -> PathBuf {
        self.dir.join("kaffediem.db")
    }
}

/// Start `kaffediem serve --demo` on a fresh database in `spec.dir`.
pub fn start_daemon(spec: &DaemonSpec<'_>) -> Result<Server, String> {
    spawn(daemon_command(spec)?, "daemon")
}

/// The command [`start_daemon`] runs (its config written), for phases that add to its
/// environment (`NOTIFY_SOCKET`, `LD_PRELOAD`) before [`spawn`]ing it.
pub fn daemon_command(spec: &DaemonSpec<'_>) -> Result<Command, String> {
    let config = spec.dir.join("kaffediem-bench.toml");
    let text = if spec.lift_address_limits {
        // The socket limit must sit above N: the upgrade past it is refused with 503. So must
        // the per-address limits (N / 16 sockets and twice as many joins per address).
        let n = spec.max_sockets;
        format!(
            "[access]\nadmin_token = \"{}\"\n\n[limits]\nmax_sockets = {n}\n\
             max_connections_per_address = {}\nmax_sockets_per_address = {n}\n\
             joins_per_minute_per_address = {}\n\n[log]\nlevel = \"warn,kaffediem::server=info\"\n",
            spec.token,
            n + 1000,
            4 * n,
        )
    } else {
        // Default limits; the attacks would fill the output with the daemon's warnings.
        format!(
            "[access]\nadmin_token = \"{}\"\n\n[log]\nlevel = \"error,kaffediem::server=info\"\n",
            spec.token
        )
    };
    std::fs::write(&config, text).map_err(|e| format!("{}: {e}", config.display()))?;
    let mut cmd = Command::new(spec.binary);
    cmd.arg("--config")
        .arg(&config)
        .args(["serve", "--demo"])
        .env("KAFFEDIEM_PORT", "0")
        .env("KAFFEDIEM_BIND", "127.0.0.1")
        .env("KAFFEDIEM_DB", spec.db_path())
        .env_remove("RUST_LOG")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("LD_PRELOAD");
    Ok(cmd)
}

/// Start this binary as the bare-broadcast floor server.
pub fn start_floor_server(frame_bytes: usize) -> Result<Server, String> {
    let me = std::env::current_exe().map_err(|e| format!("cannot find myself: {e}"))?;
    let mut cmd = Command::new(me);
    cmd.args(["floor-server", "--frame-bytes", &frame_bytes.to_string()])
        .stdin(Stdio::piped());
    spawn(cmd, "floor server")
}

/// Start `cmd` and wait (bounded) until it prints `listening on ADDR` on stderr.
pub fn spawn(mut cmd: Command, what: &str) -> Result<Server, String> {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the {what}: {e}"))?;
    let stderr = child.stderr.take().expect("piped stderr");
    let (found, address) = mpsc::channel();
    let label = what.to_owned();
    // Drain stderr for the child's whole life (a full pipe would block it); warnings and
    // errors are passed on, so a run that misbehaves says why.
    std::thread::spawn(move || {
        let mut found = Some(found);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(at) = line.find("listening on ") {
                let addr = line[at + "listening on ".len()..].trim().to_owned();
                if let Some(tx) = found.take() {
                    let _ = tx.send(addr);
                    continue;
                }
            }
            if line.contains("WARN") || line.contains("ERROR") || line.contains("panicked") {
                eprintln!("[{label}] {line}");
            }
        }
    });
    let addr = match address.recv_timeout(START_TIMEOUT) {
        Ok(a) => a,
        Err(_) => {
            let _ = child.kill();
            return Err(format!("the {what} did not report its address"));
        }
    };
    let addr: SocketAddr = addr
        .parse()
        .map_err(|_| format!("the {what} reported a bad address: {addr}"))?;
    Ok(Server {
        addr,
        pid: child.id(),
        stdin: child.stdin.take(),
        child: Some(child),
    })
}

impl Server {
    /// A child started elsewhere that listens on `addr`.
    pub fn from_child(child: Child, addr: SocketAddr) -> Server {
        Server {
            addr,
            pid: child.id(),
            stdin: None,
            child: Some(child),
        }
    }

    /// A daemon somebody else started: only measured, never stopped.
    pub fn external(addr: SocketAddr, pid: Option<u32>) -> Server {
        Server {
            addr,
            pid: pid.unwrap_or(0),
            child: None,
            stdin: None,
        }
    }

    /// Resident memory now and at its peak, in KiB (`None` without a known local pid).
    pub fn rss(&self) -> Option<Rss> {
        (self.pid != 0).then(|| rss_of(self.pid)).flatten()
    }

    /// CPU time used so far (user + system), in milliseconds.
    pub fn cpu_ms(&self) -> Option<f64> {
        if self.pid == 0 {
            return None;
        }
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).ok()?;
        // Fields after the command name (which may hold spaces): state is field 3, utime 14,
        // stime 15.
        let rest = &stat[stat.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 =
            fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
        // SAFETY: sysconf has no preconditions.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        Some(ticks * 1000.0 / per_second.max(1.0))
    }

    /// SIGTERM, then wait (bounded) for a clean exit. Returns whether it exited 0.
    pub fn stop(mut self) -> Result<bool, String> {
        drop(self.stdin.take());
        let Some(mut child) = self.child.take() else {
            return Ok(true);
        };
        // SAFETY: kill(2) on our own child's pid, which we have not reaped yet.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = std::time::Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
                return Ok(status.success());
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err("did not stop within 20 s after SIGTERM; killed".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Rss {
    pub now_kib: u64,
    pub peak_kib: u64,
}

pub fn rss_of(pid: u32) -> Option<Rss> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some(Rss {
        now_kib: field("VmRSS:")?,
        peak_kib: field("VmHWM:")?,
    })
}

/// Raise this process's open-file limit to its hard limit (children inherit it). Returns
/// the soft limit in force afterwards.
pub fn raise_nofile() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a stack struct of the right type.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    limit.rlim_cur
}
