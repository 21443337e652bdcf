//! Crash durability: SIGKILL the daemon at random moments while writers place orders, start it
//! again, and check that every order whose 201 reached its client is there, the file is
//! intact, and `day_id`s are unique and consecutive per local day.
//!
//! The suite runs a few iterations; `KAFFEDIEM_CRASH_ITERATIONS=200 cargo test --test it
//! durability -- --nocapture` is the long version (see BENCHMARKS.md / SECURITY.md).
//!
//! SIGKILL loses the process but not the kernel's page cache, so this proves the commit
//! protocol (WAL, one durable transaction per acknowledged write) rather than the disk's own
//! flush; `synchronous = FULL` is what carries that last step through a real power cut.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use serde_json::json;

use crate::support::http::call;
use crate::support::process::{Daemon, Site};

const CONFIG: &str = "[access]\nadmin_token = \"crash-admin\"\n";

fn iterations() -> usize {
    std::env::var("KAFFEDIEM_CRASH_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4)
}

/// Place orders until the daemon stops answering; returns the uuids it acknowledged.
async fn place_orders_until_refused(
    addr: std::net::SocketAddr,
    item: i64,
    tag: String,
    acked: Arc<Mutex<Vec<String>>>,
) {
    for n in 0.. {
        let uuid = format!("{tag}-{n}");
        let body = json!({
            "customer_id": 1,
            "missing_information": false,
            "state": "received",
            "items": [{"item": item, "customizations": []}],
            "uuid": uuid,
        });
        let sent = call(addr, "POST", "/api/collections/order/records")
            .header("authorization", "Bearer crash-admin")
            .json(&body)
            .try_send()
            .await;
        // The client half of a crash: a refused or reset connection ends this writer.
        let Ok(reply) = sent else {
            return;
        };
        assert!(
            reply.status == 201 || reply.status == 200,
            "unexpected answer {}: {}",
            reply.status,
            reply.text()
        );
        acked.lock().unwrap_or_else(|e| e.into_inner()).push(uuid);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_orders_survive_sigkill_at_random_moments() {
    let site = Site::new();
    let db = site.db();
    std::fs::write(site.path("kaffediem.toml"), CONFIG).expect("write config");
    let tz = jiff::tz::TimeZone::get("Europe/Oslo").expect("tz");
    let mut acked_total: Vec<String> = Vec::new();
    for round in 0..iterations() {
        let args: &[&str] = if round == 0 {
            &["--config", "kaffediem.toml", "serve", "--demo"]
        } else {
            &["--config", "kaffediem.toml", "serve"]
        };
        let mut daemon = Daemon::start(site.command(args));
        let items = call(daemon.addr, "GET", "/api/collections/item/records")
            .send()
            .await
            .json();
        let item = items
            .as_array()
            .and_then(|a| a.iter().find(|i| i["enable"] == true))
            .and_then(|i| i["id"].as_i64())
            .expect("an enabled item");

        let acked = Arc::new(Mutex::new(Vec::new()));
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let tag = format!("r{round}-w{w}");
                tokio::spawn(place_orders_until_refused(
                    daemon.addr,
                    item,
                    tag,
                    Arc::clone(&acked),
                ))
            })
            .collect();
        let pause = rand::rng().random_range(50..400);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        daemon.kill();
        for writer in writers {
            writer.await.expect("writer");
        }
        let acked_now = std::mem::take(&mut *acked.lock().unwrap_or_else(|e| e.into_inner()));
        eprintln!(
            "round {round}: killed after {pause} ms, {} orders acknowledged",
            acked_now.len()
        );
        acked_total.extend(acked_now);

        // The file as the next start will find it.
        let conn = rusqlite::Connection::open(&db).expect("open after crash");
        let check: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .expect("integrity_check");
        assert_eq!(check, "ok", "round {round}");
        let stored: HashSet<String> = conn
            .prepare(r#"SELECT uuid FROM "order""#)
            .and_then(|mut s| {
                s.query_map([], |r| r.get::<_, String>(0))?
                    .collect::<Result<_, _>>()
            })
            .expect("uuids");
        let lost: Vec<&String> = acked_total
            .iter()
            .filter(|u| !stored.contains(*u))
            .collect();
        assert!(
            lost.is_empty(),
            "round {round}: acknowledged but lost: {lost:?}"
        );

        let mut by_day: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        let mut stmt = conn
            .prepare(r#"SELECT inserted_at, day_id FROM "order""#)
            .expect("prepare");
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .expect("query");
        for row in rows {
            let (at, day_id) = row.expect("row");
            let at: jiff::Timestamp = at.parse().expect("timestamp");
            by_day
                .entry(at.to_zoned(tz.clone()).date().to_string())
                .or_default()
                .push(day_id);
        }
        for (day, mut ids) in by_day {
            ids.sort_unstable();
            let expected: Vec<i64> = (101..101 + ids.len() as i64).collect();
            assert_eq!(ids, expected, "round {round}, day {day}: day_ids");
        }
    }
    assert!(
        !acked_total.is_empty(),
        "no order was acknowledged in any round: the test proved nothing"
    );
}
