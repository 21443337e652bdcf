//! The systemd handshake (READY, WATCHDOG, STOPPING) and the unit file.

use super::*;

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

/// The watchdog also watches the writer thread, but a write that waits for another process's
/// lock (someone's `sqlite3` session) is not a stuck writer: the pings go on, and the write
/// lands once the lock is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_waiting_for_a_shell_lock_keeps_the_watchdog_pinging() {
    let site = Site::new();
    let path = site.path("notify.sock");
    let notify = UnixDatagram::bind(&path).expect("bind notify socket");
    notify.set_read_timeout(Some(WAIT)).expect("read timeout");
    site.demo_db();
    std::fs::write(
        site.path("kaffediem.toml"),
        format!("[access]\nadmin_token = \"{ADMIN_TOKEN}\"\n"),
    )
    .expect("write config");
    let mut cmd = site.command(&["serve"]);
    cmd.env("KAFFEDIEM_CONFIG", site.path("kaffediem.toml"))
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "200000");
    let mut daemon = Daemon::start(cmd);
    let next = |notify: &UnixDatagram| {
        let mut buf = [0u8; 512];
        let n = notify.recv(&mut buf).expect("a notification in time");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    while !next(&notify).lines().any(|l| l == "READY=1") {}

    // A shell takes the write lock; a write over HTTP queues behind it on the writer thread.
    let shell = site.shell();
    shell
        .execute_batch("BEGIN IMMEDIATE")
        .expect("take the write lock");
    let addr = daemon.addr;
    let body = json!({"title": "after the shell"});
    let post =
        tokio::spawn(
            async move { try_post(addr, "/api/collections/message/records", &body).await },
        );
    // While the writer waits (up to its 5 s busy timeout), the watchdog is fed as before.
    let held = Instant::now();
    let notify = tokio::task::spawn_blocking(move || {
        let mut pings = 0;
        while held.elapsed() < Duration::from_secs(3) {
            if next(&notify).lines().any(|l| l == "WATCHDOG=1") {
                pings += 1;
            }
        }
        (notify, pings)
    });
    let (_notify, pings) = notify.await.expect("notifications read");
    shell.execute_batch("COMMIT").expect("release the lock");
    assert!(pings >= 5, "{pings} watchdog pings while the writer waited");
    assert_eq!(post.await.expect("post"), Some(201), "{}", daemon.log());
    assert!(
        !daemon.log().contains("no watchdog ping"),
        "{}",
        daemon.log()
    );
    daemon.terminate();
    assert!(daemon.wait().success());
}

#[test]
fn unit_file_passes_systemd_analyze_verify() {
    let Ok(probe) = Command::new("systemd-analyze").arg("--version").output() else {
        eprintln!("systemd-analyze is not installed (apt package `systemd`): skipped");
        return;
    };
    assert!(probe.status.success());
    let unit = include_str!("../../../kaffediem.service");
    assert!(unit.contains("ExecStart=/usr/bin/kaffediem "));
    // `verify` checks that ExecStart is executable: point it at the binary under test.
    let site = Site::new();
    let path = site.path("kaffediem.service");
    std::fs::write(&path, unit.replace("/usr/bin/kaffediem", BIN)).expect("write unit");
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
        // No real-time clock on a Pi: start only once the clock is synchronised.
        "After=time-sync.target\n",
        "Wants=time-sync.target\n",
    ] {
        assert!(unit.contains(line), "unit lacks {line:?}");
    }
    assert!(unit.lines().any(|l| l.starts_with("WatchdogSec=")));
    assert!(unit.lines().any(|l| l.starts_with("TimeoutStopSec=")));
}
