//! The SD-card phase (issue 14): a Raspberry Pi's SD card takes milliseconds per fsync. The
//! tool builds a tiny `LD_PRELOAD` shim (C, with the system's `cc`) that sleeps before every
//! `fsync`/`fdatasync` and changes nothing else, and measures under it, for each delay: the
//! floor (raw SQLite, one durable transaction per insert, WAL + `synchronous = FULL`, in a
//! child process of this tool) and the daemon's orders/s and ack p50/p99 with 1, 16 and 64
//! concurrent HTTP writers. Durability is the daemon's own (`synchronous = FULL`).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use crate::orders::{self, Placement};
use crate::process::{self, DaemonSpec};
use crate::report::{Stats, Verdict};
use crate::subscribers::Tracker;

/// The shim: sleep `KAFFEDIEM_FSYNC_DELAY_US` microseconds, then the real call. With
/// `KAFFEDIEM_FSYNC_LOG` set, it also appends one line per call to that file: the start
/// (`CLOCK_MONOTONIC`, ns), how long the call took with its sleep (µs), the thread, the fd and
/// the file it syncs — to attribute slow acknowledgements (see `fsync_log` below).
const SHIM_C: &str = r#"
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <errno.h>

static long delay_us(void) {
    static long delay = -1;
    if (delay < 0) {
        const char *s = getenv("KAFFEDIEM_FSYNC_DELAY_US");
        delay = s ? atol(s) : 0;
    }
    return delay;
}

static int log_fd = -1;
static pthread_once_t log_once = PTHREAD_ONCE_INIT;
static void open_log(void) {
    const char *s = getenv("KAFFEDIEM_FSYNC_LOG");
    if (s && *s) log_fd = open(s, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
}

static long long mono_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void sd_card(void) {
    long us = delay_us();
    if (us <= 0) return;
    struct timespec left = { us / 1000000, (us % 1000000) * 1000 };
    while (nanosleep(&left, &left) != 0 && errno == EINTR) {}
}

static void note(int fd, long long start) {
    pthread_once(&log_once, open_log);
    if (log_fd < 0) return;
    long long end = mono_ns();
    char link[64], target[512], line[700];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n < 0) n = 0;
    target[n] = 0;
    int len = snprintf(line, sizeof line, "%lld %lld %ld %d %s\n", start,
                       (end - start) / 1000, (long)syscall(SYS_gettid), fd, target);
    if (len > 0) (void)!write(log_fd, line, len < (int)sizeof line ? len : (int)sizeof line - 1);
}

int fsync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    long long start = mono_ns();
    sd_card();
    int r = real(fd);
    int saved = errno;
    note(fd, start);
    errno = saved;
    return r;
}

int fdatasync(int fd) {
    static int (*real)(int);
    if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    long long start = mono_ns();
    sd_card();
    int r = real(fd);
    int saved = errno;
    note(fd, start);
    errno = saved;
    return r;
}
"#;

#[derive(clap::Args)]
pub struct SdArgs {
    /// Simulated fsync times in ms, comma separated (e.g. `5,20`): the SD-card phase.
    #[arg(long, value_delimiter = ',', value_name = "MS,...")]
    pub sd_fsync_ms: Vec<u64>,
    /// Concurrent writers in the SD-card phase.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    pub sd_writers: Vec<usize>,
    /// Run only the SD-card phase.
    #[arg(long)]
    pub sd_only: bool,
}

#[derive(Debug, Default, Serialize)]
pub struct SdWriters {
    pub writers: usize,
    pub orders: usize,
    pub orders_per_s: f64,
    /// orders/s ÷ the raw floor's durable inserts/s at the same fsync time.
    pub ratio_to_raw: f64,
    pub ack: Stats,
}

#[derive(Debug, Default, Serialize)]
pub struct SdRun {
    pub fsync_ms: u64,
    /// Raw SQLite, one durable transaction per insert, under the same shim.
    pub raw_inserts_per_s: f64,
    pub raw_rows: usize,
    pub daemon: Vec<SdWriters>,
}

/// Build the shim into `dir` with the system C compiler.
fn build_shim(dir: &Path) -> Result<PathBuf, String> {
    let src = dir.join("fsync-delay.c");
    let lib = dir.join("fsync-delay.so");
    std::fs::write(&src, SHIM_C).map_err(|e| e.to_string())?;
    let out = Command::new(std::env::var("CC").unwrap_or_else(|_| "cc".into()))
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&lib)
        .arg(&src)
        .arg("-ldl")
        .output()
        .map_err(|e| format!("cannot run cc to build the fsync shim: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "building the fsync shim failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(lib)
}

/// The floor in a child process (this tool as `raw-sqlite`) under the shim.
fn raw_floor(shim: &Path, dir: &Path, delay_us: u64, rows: usize) -> Result<f64, String> {
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = Command::new(me);
    fsync_log::set(&mut cmd, &format!("raw-{}", delay_us / 1000));
    let out = cmd
        .arg("raw-sqlite")
        .arg("--dir")
        .arg(dir)
        .args(["--rows", &rows.to_string()])
        .env("LD_PRELOAD", shim)
        .env("KAFFEDIEM_FSYNC_DELAY_US", delay_us.to_string())
        .output()
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim()
        .strip_prefix("inserts/s ")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| {
            format!(
                "raw SQLite under the shim failed: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

pub async fn run(main: &crate::RunArgs, daemon: &Path, dir: &Path) -> Result<Vec<SdRun>, String> {
    let args = &main.sd;
    let shim = build_shim(dir)?;
    let mut runs = Vec::new();
    for &ms in &args.sd_fsync_ms {
        let delay_us = ms * 1000;
        eprintln!("== SD card: {ms} ms per fsync");
        let raw_rows = if main.smoke {
            10
        } else {
            (3000 / ms.max(1)).clamp(50, 2000) as usize
        };
        let raw = raw_floor(&shim, dir, delay_us, raw_rows)?;
        eprintln!("   raw SQLite: {raw:.0} durable inserts/s");
        let here = dir.join(format!("sd-{ms}"));
        std::fs::create_dir_all(&here).map_err(|e| e.to_string())?;
        let spec = DaemonSpec {
            binary: daemon,
            dir: &here,
            token: &main.token,
            max_sockets: 1000,
            lift_address_limits: true,
        };
        let mut cmd = process::daemon_command(&spec)?;
        cmd.env("LD_PRELOAD", &shim)
            .env("KAFFEDIEM_FSYNC_DELAY_US", delay_us.to_string());
        fsync_log::set(&mut cmd, &format!("daemon-{ms}"));
        let server = process::spawn(cmd, "daemon")?;
        let placement = Placement::Http {
            addr: server.addr,
            token: main.token.clone(),
            item: orders::pick_item(server.addr, &main.token).await?,
        };
        let mut daemon_runs = Vec::new();
        for (k, &writers) in args.sd_writers.iter().enumerate() {
            // About three seconds of one writer's work, and at least 25 per writer.
            let orders = if main.smoke {
                writers * 3
            } else {
                (writers * 25).max((3000 / ms.max(1)) as usize).max(100)
            };
            let prefix = format!("sd{ms}-{k}-");
            let tracker = Tracker::new(&prefix, orders);
            let placed =
                orders::place_concurrently(&placement, &prefix, 0..orders, writers, &tracker)
                    .await?;
            let acks: Vec<u64> = placed
                .sent_ns
                .iter()
                .zip(&placed.acked_ns)
                .map(|(s, a)| a.saturating_sub(*s))
                .collect();
            fsync_log::acks(&format!("acks-{ms}-{writers}"), &tracker, &placed);
            let rate = placed.rate();
            let run = SdWriters {
                writers,
                orders,
                orders_per_s: rate,
                ratio_to_raw: rate / raw.max(f64::MIN_POSITIVE),
                ack: Stats::of_ns(acks),
            };
            eprintln!(
                "   {writers} writers: {rate:.0} orders/s ({:.1}x raw), ack p50 {:.1} / p99 {:.1} ms",
                run.ratio_to_raw, run.ack.p50_ms, run.ack.p99_ms
            );
            daemon_runs.push(run);
        }
        if let Err(e) = server.stop() {
            eprintln!("   the daemon {e}");
        }
        runs.push(SdRun {
            fsync_ms: ms,
            raw_inserts_per_s: raw,
            raw_rows,
            daemon: daemon_runs,
        });
    }
    Ok(runs)
}

/// `KAFFEDIEM_FSYNC_LOG=<base>` in the bench's environment: the shim logs every fsync of the
/// floor to `<base>.raw-<ms>` and of the daemon to `<base>.daemon-<ms>`, and the bench writes
/// each order's send and acknowledgement (`CLOCK_MONOTONIC` ns, like the shim's) to
/// `<base>.acks-<ms>-<writers>`: which fsyncs a slow acknowledgement waited for.
mod fsync_log {
    use std::io::Write;
    use std::process::Command;

    use crate::orders::Placed;
    use crate::subscribers::Tracker;

    const VAR: &str = "KAFFEDIEM_FSYNC_LOG";

    fn base() -> Option<String> {
        std::env::var(VAR).ok().filter(|b| !b.is_empty())
    }

    /// The child logs to `<base>.<what>`, or not at all.
    pub fn set(cmd: &mut Command, what: &str) {
        match base() {
            Some(base) => cmd.env(VAR, format!("{base}.{what}")),
            None => cmd.env_remove(VAR),
        };
    }

    fn mono_ns() -> u64 {
        let mut t = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `t` is a valid timespec for the call to fill in.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
        t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
    }

    pub fn acks(what: &str, tracker: &Tracker, placed: &Placed) {
        let Some(base) = base() else { return };
        // The tracker's epoch on the monotonic clock.
        let epoch = mono_ns().saturating_sub(tracker.now_ns());
        let mut out = String::new();
        for (s, a) in placed.sent_ns.iter().zip(&placed.acked_ns) {
            out.push_str(&format!("{} {}\n", epoch + s, epoch + a));
        }
        let path = format!("{base}.{what}");
        if let Err(e) = std::fs::File::create(&path).and_then(|mut f| f.write_all(out.as_bytes())) {
            eprintln!("   cannot write {path}: {e}");
        }
    }
}

/// Issue 14's SD-card targets.
pub fn verdicts(runs: &[SdRun]) -> Vec<Verdict> {
    let mut out = Vec::new();
    for r in runs {
        let ms = r.fsync_ms as f64;
        if let Some(w) = r.daemon.iter().find(|w| w.writers == 16) {
            out.push(Verdict {
                target: format!("SD card {ms} ms/fsync, 16 writers: orders/s >= 10x raw SQLite"),
                figure: format!(
                    "{:.0} vs {:.0} ({:.1}x)",
                    w.orders_per_s, r.raw_inserts_per_s, w.ratio_to_raw
                ),
                met: w.ratio_to_raw >= 10.0,
            });
            out.push(Verdict {
                target: format!("SD card {ms} ms/fsync, 16 writers: ack p99 <= 3 fsync times"),
                figure: format!("{:.1} ms ({:.2} fsyncs)", w.ack.p99_ms, w.ack.p99_ms / ms),
                met: w.ack.p99_ms <= 3.0 * ms,
            });
        }
        if let Some(w) = r.daemon.iter().find(|w| w.writers == 1) {
            out.push(Verdict {
                target: format!("SD card {ms} ms/fsync, 1 writer: ack p99 <= 1.5 fsync times"),
                figure: format!("{:.1} ms ({:.2} fsyncs)", w.ack.p99_ms, w.ack.p99_ms / ms),
                met: w.ack.p99_ms <= 1.5 * ms,
            });
        }
    }
    out
}
