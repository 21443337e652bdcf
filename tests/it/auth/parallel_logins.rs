//! A thousand parallel logins (issue 10): the login limit is charged before the password
//! check, and Argon2 (19 MiB a check) runs a bounded number at a time with a short queue —
//! past it a login gets 429 at once, without hashing. Measured on the real binary: its peak
//! RSS (`VmHWM`) must stay within what a Raspberry Pi with 1 GB can give.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hyper::StatusCode;
use serde_json::json;

use super::{daemon_with, login, ADMIN_EMAIL, ADMIN_PASSWORD};
use crate::support::http::call;
use crate::support::process::{Daemon as Process, Site};

/// Logins sent at once.
const PARALLEL: usize = 1000;

/// The budget over the idle daemon's peak: two checks at a time (38 MiB) plus the buffers of a
/// thousand connections fit; the old code (hundreds of checks at once, GBs) does not by far.
const HEADROOM_KIB: u64 = 64 * 1024;

fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Kill the daemon the moment its RSS passes `limit_kib`, so a regression fails this test
/// instead of taking the test machine's memory. Stops when `done` is set.
fn guard_memory(pid: u32, limit_kib: u64, done: Arc<AtomicBool>) -> std::thread::JoinHandle<bool> {
    std::thread::spawn(move || {
        while !done.load(Ordering::Acquire) {
            if status_kib(pid, "VmRSS:") > limit_kib {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
                return true;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        false
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_parallel_logins_keep_memory_bounded_and_the_cafe_open() {
    let site = Site::new();
    // Every login comes from its own address (forwarded by a trusted proxy on loopback), so
    // the per-address limit does not help: only the bound on password checks does.
    std::fs::write(
        site.path("kaffediem.toml"),
        format!(
            "[bootstrap]\nadmin_password = \"{ADMIN_PASSWORD}\"\n\
             [auth]\npassword_checks = 2\npassword_check_queue = 8\n\
             [http]\ntrusted_proxies = [\"127.0.0.1\"]\n\
             [limits]\nmax_connections_per_address = 4096\n"
        ),
    )
    .expect("write config");
    let mut daemon = Process::start(site.command(&["--config", "kaffediem.toml", "serve"]));
    let pid = daemon.pid();
    let idle_kib = status_kib(pid, "VmHWM:");
    assert!(idle_kib > 0, "cannot read /proc/{pid}/status");
    let limit_kib = idle_kib + HEADROOM_KIB;
    let done = Arc::new(AtomicBool::new(false));
    let guard = guard_memory(pid, limit_kib, Arc::clone(&done));

    let addr = daemon.addr;
    let storm: Vec<_> = (0..PARALLEL)
        .map(|i| {
            // One in ten guesses the admin's password; the others try unknown emails (each a
            // decoy hash: the same work as a real one).
            let email = if i % 10 == 0 {
                ADMIN_EMAIL.to_owned()
            } else {
                format!("guest{i}@example.com")
            };
            let from = format!("10.{}.{}.7", i / 256, i % 256);
            tokio::spawn(async move {
                let reply = call(addr, "POST", "/api/session")
                    .header("x-forwarded-for", &from)
                    .json(&json!({"email": email, "password": "not the password"}))
                    .try_send()
                    .await;
                (i % 10 == 0, reply)
            })
        })
        .collect();
    let mut replies = Vec::with_capacity(PARALLEL);
    for task in storm {
        replies.push(task.await.expect("login task"));
    }
    done.store(true, Ordering::Release);
    let killed = guard.join().expect("memory guard");
    let peak_kib = status_kib(pid, "VmHWM:");
    assert!(
        !killed && peak_kib <= limit_kib,
        "peak RSS {peak_kib} KiB over idle {idle_kib} KiB + {HEADROOM_KIB} KiB (killed: {killed})"
    );
    let (mut unauthorized, mut too_many, mut admin_checked) = (0, 0, 0);
    for (admin, reply) in replies {
        let reply = reply.unwrap_or_else(|e| {
            panic!("a login got no answer ({e}):\n{}", daemon.log());
        });
        match reply.status {
            StatusCode::UNAUTHORIZED => {
                unauthorized += 1;
                admin_checked += usize::from(admin);
            }
            StatusCode::TOO_MANY_REQUESTS => {
                too_many += 1;
                let retry: u64 = reply
                    .header("retry-after")
                    .and_then(|r| r.parse().ok())
                    .expect("a 429 says when to retry");
                assert!((1..=60).contains(&retry), "{retry}");
            }
            other => panic!("login answered {other}: {}", reply.text()),
        }
    }
    assert_eq!(unauthorized + too_many, PARALLEL);
    eprintln!(
        "{PARALLEL} parallel logins: {unauthorized} × 401, {too_many} × 429; peak RSS {peak_kib} KiB (idle {idle_kib} KiB)"
    );
    // The per-email limit (10 a minute) is charged before the check: of the hundred
    // guesses at the admin's password, ten at most were checked.
    assert!(admin_checked <= 10, "{admin_checked} admin guesses checked");

    // The café is still open: health answers, and another account logs in.
    let health = call(addr, "GET", "/healthz").send().await;
    assert_eq!(health.status, StatusCode::OK);
    let hash = kaffediem::accounts::hash_password("barista password").expect("hash");
    site.shell()
        .execute(
            "INSERT INTO user (email, name, is_admin, password_hash) VALUES ('kari@example.com', 'Kari', 0, ?1)",
            [hash],
        )
        .expect("add a user");
    let reply = call(addr, "POST", "/api/session")
        .header("x-forwarded-for", "192.168.1.20")
        .json(&json!({"email": "kari@example.com", "password": "barista password"}))
        .send()
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    daemon.terminate();
    assert!(daemon.wait().success());
}

/// Parallel guesses from one address at one account: the limit is charged before each
/// check, so no more than the limit of them are ever checked, however many arrive at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_guesses_never_check_more_passwords_than_the_limit() {
    let d = daemon_with(|c| {
        c.auth.login_attempts_per_minute = 5;
        // Room for every guess to wait: what refuses them here is the login limit alone.
        c.auth.password_check_queue = 100;
    })
    .await;
    let d = Arc::new(d);
    let guesses: Vec<_> = (0..40)
        .map(|_| {
            let d = Arc::clone(&d);
            tokio::spawn(async move { login(&d, ADMIN_EMAIL, "a guess").await.status })
        })
        .collect();
    let mut checked = 0;
    for guess in guesses {
        match guess.await.expect("guess") {
            StatusCode::UNAUTHORIZED => checked += 1,
            StatusCode::TOO_MANY_REQUESTS => {}
            other => panic!("a guess got {other}"),
        }
    }
    assert!(checked <= 5, "{checked} guesses checked, the limit is 5");
    assert!(checked >= 1, "the first guesses must be checked");
    if let Ok(d) = Arc::try_unwrap(d) {
        d.stop().await;
    }
}
