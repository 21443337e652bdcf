//! A restored database is a new history: join replies carry `epoch` beside `seq`, a screen
//! resuming across a restore gets the full snapshot of exactly the restored orders, and new
//! records get ids no screen has seen (SPEC 3.1, 9; issue 15).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use crate::support::http::{call, enabled_item};
use crate::support::process::{text, Daemon, Site};
use crate::support::Socket;

const ADMIN_TOKEN: &str = "restore-admin";

/// `kaffediem serve` with an admin token for HTTP writes (the demo menu made first if `demo`).
fn serve(site: &Site, demo: bool) -> Daemon {
    if demo {
        site.demo_db();
    }
    std::fs::write(
        site.path("kaffediem.toml"),
        format!("[access]\nadmin_token = \"{ADMIN_TOKEN}\"\n"),
    )
    .expect("write config");
    let mut cmd = site.command(&["serve"]);
    cmd.env("KAFFEDIEM_CONFIG", site.path("kaffediem.toml"));
    Daemon::start(cmd)
}

fn stop(mut daemon: Daemon) {
    daemon.terminate();
    assert!(daemon.wait().success(), "{}", daemon.log());
}

/// Place one order over HTTP; its id.
async fn place(daemon: &Daemon, item: i64, uuid: &str) -> i64 {
    let body = json!({
        "customer_id": 1,
        "missing_information": false,
        "state": "received",
        "items": [{"item": item, "customizations": []}],
        "uuid": uuid,
    });
    let reply = call(daemon.addr, "POST", "/api/collections/order/records")
        .header("authorization", &format!("Bearer {ADMIN_TOKEN}"))
        .json(&body)
        .send()
        .await;
    assert!(
        reply.status == 201 || reply.status == 200,
        "{}",
        reply.text()
    );
    reply.json()["id"].as_i64().expect("order id")
}

/// Join `collection:order` with `options`; the reply's response.
async fn join_orders(daemon: &Daemon, options: Value) -> Value {
    let mut screen = Socket::connect(&daemon.ws_url()).await;
    screen
        .join_ok("collection:order", json!({ "options": options }))
        .await
}

fn ids(snapshot: &Value) -> BTreeSet<i64> {
    snapshot["items"]
        .as_array()
        .unwrap_or_else(|| panic!("a full snapshot, got {snapshot}"))
        .iter()
        .map(|o| o["id"].as_i64().expect("id"))
        .collect()
}

fn epoch_of(reply: &Value) -> String {
    reply["epoch"]
        .as_str()
        .unwrap_or_else(|| panic!("no epoch beside seq: {reply}"))
        .to_owned()
}

fn order_ids_in(file: &std::path::Path) -> BTreeSet<i64> {
    let conn =
        rusqlite::Connection::open_with_flags(file, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open copy");
    let mut stmt = conn.prepare(r#"SELECT id FROM "order""#).expect("prepare");
    let ids = stmt
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("ids");
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_drill_backup_while_orders_flow_then_resume_gets_exactly_the_restored_orders() {
    let site = Site::new();
    let daemon = serve(&site, true);
    let item = enabled_item(daemon.addr).await;
    let before = join_orders(&daemon, json!({})).await;
    let first_epoch = epoch_of(&before);

    // Orders flow from the counter while the backup is taken.
    let stop_flow = Arc::new(AtomicBool::new(false));
    let placed = Arc::new(Mutex::new(Vec::new()));
    let flow = {
        let (addr, stop_flow, placed) = (daemon.addr, Arc::clone(&stop_flow), Arc::clone(&placed));
        tokio::spawn(async move {
            let mut n = 0;
            while !stop_flow.load(Ordering::SeqCst) {
                n += 1;
                let body = json!({
                    "customer_id": 1, "missing_information": false, "state": "received",
                    "items": [{"item": item, "customizations": []}], "uuid": format!("flow-{n}"),
                });
                let reply = call(addr, "POST", "/api/collections/order/records")
                    .header("authorization", &format!("Bearer {ADMIN_TOKEN}"))
                    .json(&body)
                    .send()
                    .await;
                assert!(
                    reply.status == 201 || reply.status == 200,
                    "{}",
                    reply.text()
                );
                placed
                    .lock()
                    .unwrap()
                    .push(reply.json()["id"].as_i64().expect("id"));
            }
        })
    };
    let placed_count = || placed.lock().unwrap().len();
    crate::support::eventually(|| placed_count() >= 10).await;
    let backup_file = site.path("backup.db");
    let out = {
        let cmd = site.command(&["backup", backup_file.to_str().expect("utf-8")]);
        tokio::task::spawn_blocking(move || crate::support::process::run(cmd))
            .await
            .expect("backup")
    };
    assert!(out.status.success(), "{}", text(&out.stderr));
    let at_backup = placed_count();
    crate::support::eventually(|| placed_count() >= at_backup + 10).await;
    stop_flow.store(true, Ordering::SeqCst);
    flow.await.expect("order flow");

    // What a screen knows just before the stop: every order, and the last seq.
    let last = join_orders(&daemon, json!({})).await;
    let seen = ids(&last);
    let last_seq = last["seq"].as_u64().expect("seq");
    assert!(seen.len() >= 20);
    stop(daemon);

    // The restore: the backup copied over the database while the daemon is stopped.
    let restored = order_ids_in(&backup_file);
    assert!(
        !restored.is_empty() && restored.len() < seen.len(),
        "{restored:?}"
    );
    std::fs::copy(&backup_file, site.db()).expect("restore the backup");
    let daemon = serve(&site, false);

    // A screen that comes back with the `since` and `epoch` it had: the full snapshot of
    // exactly the restored orders, under a new epoch.
    let resumed = join_orders(&daemon, json!({"since": last_seq, "epoch": first_epoch})).await;
    assert_eq!(ids(&resumed), restored, "{resumed}");
    let second_epoch = epoch_of(&resumed);
    assert_ne!(second_epoch, first_epoch, "a restore begins a new epoch");
    // An older client that sends no epoch: its `since` is judged by seq alone, and the new
    // history starts above every seq of the old one, so it too gets the snapshot.
    let old_client = join_orders(&daemon, json!({"since": last_seq})).await;
    assert_eq!(ids(&old_client), restored, "{old_client}");
    assert!(old_client["seq"].as_u64().expect("seq") > last_seq);

    // New orders get ids no screen has ever seen.
    for n in 0..3 {
        let id = place(&daemon, item, &format!("after-restore-{n}")).await;
        assert!(
            !seen.contains(&id) && id > *seen.last().expect("ids"),
            "id {id} was seen before"
        );
    }
    // A resume within the new epoch works as before: just the changes. The screen waits for
    // the order's broadcast first: the fan-out logs a change and sends it under one lock, and
    // the 201 comes before the fan-out has done either (a resume a moment earlier would get
    // no changes and then the broadcast).
    let mut screen = Socket::connect(&daemon.ws_url()).await;
    let now = screen
        .join_ok("collection:order", json!({ "options": {} }))
        .await;
    let seq = now["seq"].as_u64().expect("seq");
    let id = place(&daemon, item, "after-restore-resume").await;
    loop {
        let frame = screen.recv().await;
        if frame[3] == "change" && frame[4]["record"]["id"] == id {
            break;
        }
    }
    let delta = join_orders(&daemon, json!({"since": seq, "epoch": second_epoch})).await;
    assert!(delta["items"].is_null(), "{delta}");
    assert_eq!(
        delta["changes"].as_array().expect("changes").len(),
        1,
        "{delta}"
    );
    assert_eq!(epoch_of(&delta), second_epoch);
    stop(daemon);

    // The first start after the restore began the epoch; the next start keeps it.
    let daemon = serve(&site, false);
    assert_eq!(
        epoch_of(&join_orders(&daemon, json!({})).await),
        second_epoch
    );
    stop(daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cp_copy_keeps_its_epoch_but_an_old_cp_copy_put_back_begins_a_new_one() {
    let site = Site::new();
    let daemon = serve(&site, true);
    let item = enabled_item(daemon.addr).await;
    for n in 0..3 {
        place(&daemon, item, &format!("first-{n}")).await;
    }
    let first_epoch = epoch_of(&join_orders(&daemon, json!({})).await);
    stop(daemon);
    let old_copy = site.path("old-copy.db");
    std::fs::copy(site.db(), &old_copy).expect("cp while stopped");

    // The same history, moved: a copy started elsewhere keeps the epoch.
    let elsewhere = Site::new();
    std::fs::copy(&old_copy, elsewhere.db()).expect("cp to another place");
    let moved = serve(&elsewhere, false);
    assert_eq!(epoch_of(&join_orders(&moved, json!({})).await), first_epoch);
    stop(moved);

    // The original goes on; a restart keeps the epoch too.
    let daemon = serve(&site, false);
    assert_eq!(
        epoch_of(&join_orders(&daemon, json!({})).await),
        first_epoch
    );
    for n in 0..5 {
        place(&daemon, item, &format!("second-{n}")).await;
    }
    let last = join_orders(&daemon, json!({})).await;
    let seen = ids(&last);
    let last_seq = last["seq"].as_u64().expect("seq");
    stop(daemon);

    // The old copy put back with plain `cp`: the high-water mark beside the database shows
    // the file went back in time.
    std::fs::copy(&old_copy, site.db()).expect("cp the old copy back");
    let daemon = serve(&site, false);
    let resumed = join_orders(&daemon, json!({"since": last_seq})).await;
    assert_eq!(ids(&resumed), order_ids_in(&old_copy), "{resumed}");
    assert_ne!(epoch_of(&resumed), first_epoch);
    let id = place(&daemon, item, "after-cp-restore").await;
    assert!(
        id > *seen.last().expect("ids"),
        "id {id} was handed out before the restore"
    );
    stop(daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restored_over_a_crashed_database_is_not_mixed_with_the_old_write_ahead_log() {
    let site = Site::new();
    let daemon = serve(&site, true);
    let item = enabled_item(daemon.addr).await;
    for n in 0..3 {
        place(&daemon, item, &format!("before-{n}")).await;
    }
    let backup_file = site.path("backup.db");
    let out = site.run(&["backup", backup_file.to_str().expect("utf-8")]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for n in 0..5 {
        place(&daemon, item, &format!("after-{n}")).await;
    }
    // The Pi loses power: the daemon dies with its write-ahead log full.
    let mut daemon = daemon;
    daemon.kill();
    let mut wal = site.db().into_os_string();
    wal.push("-wal");
    assert!(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0) > 0);

    // The operator restores yesterday's backup the simple way.
    std::fs::copy(&backup_file, site.db()).expect("restore");
    let daemon = serve(&site, false);
    let restored = join_orders(&daemon, json!({})).await;
    assert_eq!(ids(&restored), order_ids_in(&backup_file), "{restored}");
    daemon.wait_for_log(&["write-ahead log", "not applied"]);
    let check = site.run(&["check"]);
    assert!(check.status.success(), "{}", text(&check.stdout));
    stop(daemon);
}
