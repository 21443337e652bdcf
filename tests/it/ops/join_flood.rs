//! "Join and hang up" (issue 10): hundreds of sockets each ask for the order snapshot and
//! close at once. The snapshots of sockets that have gone are skipped or stopped, and what
//! orders, `/healthz` and the systemd watchdog need never queues behind them.

use super::*;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_that_join_and_hang_up_cost_no_snapshots_and_stall_nobody() {
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
    // The per-address socket and join limits are another defence (and all these sockets come
    // from 127.0.0.1): lifted here, so that this proves what the snapshots themselves cost.
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
        .env("WATCHDOG_USEC", "2000000");
    let mut daemon = Daemon::start(cmd);
    let addr = daemon.addr;

    // Watchdog pings are counted for as long as the attack and the probes last.
    let done = Arc::new(AtomicBool::new(false));
    let pings = std::thread::spawn({
        let done = Arc::clone(&done);
        move || {
            let mut pings = 0;
            let mut buf = [0u8; 512];
            while !done.load(Ordering::SeqCst) {
                if let Ok(n) = notify.recv(&mut buf) {
                    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                    pings += usize::from(msg.lines().any(|l| l == "WATCHDOG=1"));
                }
            }
            pings
        }
    });

    let items = call(addr, "GET", "/api/collections/item/records")
        .send()
        .await
        .json();
    let item = items
        .as_array()
        .and_then(|all| all.iter().find(|i| i["enable"] == true))
        .map(|i| i["id"].clone())
        .expect("an enabled item in the demo café");
    let before = snapshot_reads(addr).await;

    let url = daemon.ws_url();
    let attack: Vec<_> = (0..ATTACKERS)
        .map(|n| tokio::spawn(join_and_hang_up(url.clone(), n)))
        .collect();

    // Meanwhile the café goes on: each probe is answered at all within the test's wait.
    for round in 0..10 {
        let health = tokio::time::timeout(WAIT, call(addr, "GET", "/healthz").send()).await;
        let health = health.unwrap_or_else(|_| panic!("/healthz unanswered in round {round}"));
        assert_eq!(health.status, 200, "round {round}");
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

    done.store(true, Ordering::SeqCst);
    let pings = pings.join().expect("ping counter");
    assert!(pings >= 1, "no watchdog ping during the attack");
    let log = daemon.log();
    assert!(!log.contains("no watchdog ping"), "{log}");
    daemon.terminate();
    assert!(daemon.wait().success());
}
