//! "Join and hang up" (issue 10): hundreds of sockets each ask for the order snapshot and
//! close at once. The snapshots of sockets that have gone are skipped or stopped, and what
//! orders, `/healthz` and the systemd watchdog need never queues behind them.

use super::*;
use crate::support::http::enabled_item;

/// Orders in the file: more than one snapshot may hold (`limits.snapshot_max_records`).
const ORDERS: usize = 3_000;
/// Sockets that join `collection:order` with `{}` and hang up at once.
const ATTACKERS: usize = 300;

/// What a placed order holds, at the size of a real one with a few lines (~1 KB).
fn order_items() -> String {
    let line = json!({
        "item_id": 1, "name": "Latte", "price": 45, "category": "Kaffe", "total": 59,
        "customizations": [
            {"key_id": 1, "key_name": "Størrelse", "value_id": 2, "value_name": "Stor",
             "price_change": 10, "constant_price": true, "label_color": null},
            {"key_id": 2, "key_name": "Melk", "value_id": 5, "value_name": "Havre",
             "price_change": 4, "constant_price": true, "label_color": null}
        ]
    });
    json!([line, line, line]).to_string()
}

/// The figures of `kaffediem_snapshot_reads_total` by outcome (run, skipped, stopped).
async fn snapshot_reads(addr: SocketAddr) -> [u64; 3] {
    let text = call(addr, "GET", "/metrics").send().await.text();
    let read = |outcome: &str| {
        let prefix = format!("kaffediem_snapshot_reads_total{{outcome=\"{outcome}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("/metrics lacks {prefix}:\n{text}"))
    };
    [read("run"), read("skipped"), read("stopped")]
}

/// Join `collection:order` with `{}` and hang up: every other socket sends its close frame,
/// the others just drop the connection. `true` when the join was sent.
async fn join_and_hang_up(url: String, n: usize) -> bool {
    let Ok((mut ws, _)) = tokio_tungstenite::connect_async(url).await else {
        return false;
    };
    let join = json!(["1", "1", "collection:order", "phx_join", {}]).to_string();
    if futures_util::SinkExt::send(&mut ws, Message::Text(join.into()))
        .await
        .is_err()
    {
        return false;
    }
    if n % 2 == 0 {
        let _ = ws.close(None).await;
    }
    true
}

/// A café with [`ORDERS`] orders in its file, served by the real binary with the systemd
/// watchdog on (`watchdog_usec`), and a thread counting its pings until `done`.
struct Busy {
    /// The directory, database and config (removed when the test ends).
    site: Site,
    daemon: Daemon,
    done: Arc<AtomicBool>,
    /// Watchdog pings heard so far.
    pings: Arc<std::sync::atomic::AtomicUsize>,
    listener: std::thread::JoinHandle<()>,
}

impl Busy {
    fn start(watchdog_usec: &str) -> Busy {
        let site = Site::new();
        site.demo_db();
        {
            let shell = site.shell();
            let items = order_items();
            let tx = shell.unchecked_transaction().expect("begin");
            for n in 0..ORDERS {
                tx.execute(
                    r#"INSERT INTO "order" (uuid, customer_id, day_id, items, total_nok)
                       VALUES (?1, ?2, ?3, ?4, 177)"#,
                    rusqlite::params![format!("flood-{n}"), n as i64 % 40, 101 + n as i64, items],
                )
                .expect("insert order");
            }
            tx.commit().expect("commit");
        }
        let notify_path = site.path("notify.sock");
        let notify = UnixDatagram::bind(&notify_path).expect("bind notify socket");
        notify
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("read timeout");
        // The per-address socket and join limits are another defence (and all these sockets
        // come from 127.0.0.1): lifted here, so that this proves what the snapshots cost.
        std::fs::write(
            site.path("kaffediem.toml"),
            format!(
                "[access]\nadmin_token = \"{ADMIN_TOKEN}\"\n[limits]\n\
                 max_sockets_per_address = 10000\nmax_connections_per_address = 10000\n\
                 joins_per_minute_per_socket = 10000\njoins_per_minute_per_address = 10000\n"
            ),
        )
        .expect("write config");
        let mut cmd = site.command(&["serve"]);
        cmd.env("KAFFEDIEM_CONFIG", site.path("kaffediem.toml"))
            .env("NOTIFY_SOCKET", &notify_path)
            .env("WATCHDOG_USEC", watchdog_usec);
        let daemon = Daemon::start(cmd);
        let done = Arc::new(AtomicBool::new(false));
        let pings = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let listener = std::thread::spawn({
            let (done, pings) = (Arc::clone(&done), Arc::clone(&pings));
            move || {
                let mut buf = [0u8; 512];
                while !done.load(Ordering::SeqCst) {
                    if let Ok(n) = notify.recv(&mut buf) {
                        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                        if msg.lines().any(|l| l == "WATCHDOG=1") {
                            pings.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                }
            }
        });
        Busy {
            site,
            daemon,
            done,
            pings,
            listener,
        }
    }

    /// Stop counting; the pings heard, after checking that none was missed for want of
    /// health, and stop the daemon.
    fn finish(mut self) -> usize {
        self.done.store(true, Ordering::SeqCst);
        self.listener.join().expect("ping counter");
        let pings = self.pings.load(Ordering::SeqCst);
        let log = self.daemon.log();
        assert!(!log.contains("no watchdog ping"), "{log}");
        self.daemon.terminate();
        assert!(self.daemon.wait().success());
        pings
    }
}

/// `/healthz` answers 200 at all within the test's wait.
async fn healthy(addr: SocketAddr, when: &str) {
    let health = tokio::time::timeout(WAIT, call(addr, "GET", "/healthz").send()).await;
    let health = health.unwrap_or_else(|_| panic!("/healthz unanswered {when}"));
    assert_eq!(health.status, 200, "{when}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_that_join_and_hang_up_cost_no_snapshots_and_stall_nobody() {
    let busy = Busy::start("2000000");
    let daemon = &busy.daemon;
    let addr = daemon.addr;
    let item = enabled_item(addr).await;
    let before = snapshot_reads(addr).await;

    let url = daemon.ws_url();
    let attack: Vec<_> = (0..ATTACKERS)
        .map(|n| tokio::spawn(join_and_hang_up(url.clone(), n)))
        .collect();

    // Meanwhile the café goes on: each probe is answered at all within the test's wait.
    for round in 0..10 {
        healthy(addr, &format!("in round {round}")).await;
        let body = json!({"items": [{"item": item, "customizations": []}]});
        let placed = call(addr, "POST", "/api/collections/order/records")
            .header("authorization", &format!("Bearer {ADMIN_TOKEN}"))
            .json(&body)
            .send();
        let placed = tokio::time::timeout(WAIT, placed)
            .await
            .unwrap_or_else(|_| panic!("order unanswered in round {round}"));
        assert_eq!(placed.status, 201, "round {round}: {}", placed.text());
    }
    let mut sent = 0;
    for task in attack {
        sent += usize::from(task.await.expect("attacker"));
    }
    assert!(sent >= ATTACKERS * 9 / 10, "only {sent} joins were sent");

    // A screen joining now is answered, with the newest orders up to the cap.
    let mut screen = Socket::connect(&daemon.ws_url()).await;
    let reply = screen.join_ok("collection:order", json!({})).await;
    assert_eq!(reply["truncated"], true, "{}", reply["seq"]);
    assert_eq!(reply["items"].as_array().map(Vec::len), Some(2_000));

    // Every attacking join has been dealt with by now (the screen's join was queued after
    // them): most snapshots never ran; those that started before the hang-up was read are
    // few, whatever the machine's speed.
    let after = snapshot_reads(addr).await;
    let run = after[0] - before[0] - 1;
    assert!(
        run <= (ATTACKERS / 6) as u64,
        "{run} snapshots run for {ATTACKERS} sockets that had gone (skipped {}, stopped {})",
        after[1] - before[1],
        after[2] - before[2]
    );

    assert!(busy.finish() >= 1, "no watchdog ping during the attack");
}

/// Screens that stay and wait for big snapshots (a morning's reconnect storm) make each
/// other wait, but the watchdog's check and `/healthz` never queue behind them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watchdog_keeps_pinging_while_screens_wait_for_big_snapshots() {
    const SCREENS: usize = 250;
    // Pings every 0.5 s, each after a health check given 0.5 s to answer.
    let busy = Busy::start("1000000");
    let addr = busy.daemon.addr;
    let url = busy.daemon.ws_url();
    let before = snapshot_reads(addr).await;
    // All connected first, then all joining at once: the snapshots queue up.
    let mut screens = Vec::new();
    for _ in 0..SCREENS {
        screens.push(Socket::connect(&url).await);
    }
    for screen in &mut screens {
        screen
            .send(json!(["1", "1", "collection:order", "phx_join", {}]))
            .await;
    }
    // While their snapshots are read, one after another, the café's checks go on.
    let pinged = busy.pings.load(Ordering::SeqCst);
    for round in 0..5 {
        healthy(
            addr,
            &format!("while {SCREENS} screens join, round {round}"),
        )
        .await;
    }
    let deadline = Instant::now() + WAIT * 3;
    while busy.pings.load(Ordering::SeqCst) < pinged + 2 {
        assert!(Instant::now() < deadline, "the watchdog stopped pinging");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let during = snapshot_reads(addr).await;
    assert!(
        during[0] > before[0],
        "the screens' snapshots were being read meanwhile"
    );
    // The screens give up; the snapshots still waiting are skipped.
    drop(screens);
    busy.finish();
}

/// The watchdog pings on the daemon's own data answering, not on `SELECT 1` (which answers
/// without reading the file): when the database no longer holds what the daemon needs to
/// commit an order (here its bookkeeping table, dropped from the shell), the pings stop and
/// `/healthz` says 503, so systemd restarts the daemon and the operator sees why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watchdog_stops_when_the_database_cannot_serve() {
    let busy = Busy::start("1000000");
    let addr = busy.daemon.addr;
    let deadline = Instant::now() + WAIT;
    while busy.pings.load(Ordering::SeqCst) < 1 {
        assert!(Instant::now() < deadline, "no watchdog ping at all");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    healthy(addr, "before the shell broke the file").await;
    busy.site
        .shell()
        .execute_batch("DROP TABLE kaffediem_meta")
        .expect("drop the bookkeeping table");
    busy.daemon.wait_for_log(&["no watchdog ping"]);
    let health = call(addr, "GET", "/healthz").send().await;
    assert_eq!(health.status, 503);
    busy.done.store(true, Ordering::SeqCst);
    let mut daemon = busy.daemon;
    daemon.kill();
}
