//! The café's clock on a Raspberry Pi (issue 15): no real-time clock, so the system clock
//! may be behind the data (stale until NTP syncs) or be set back. Stamps never go back, a
//! day's order numbers never repeat, a `"today"` screen loses nothing; and the midnight
//! roll-over is a commit of its own, with a `seq` of its own, in the change log.
//!
//! The real binary runs under libfaketime (Debian's `faketime` package, installed by
//! `.ci/run`), its time read from a file the test rewrites while it runs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;

use serde_json::{json, Value};

use crate::support::http::{call, enabled_item, get_json};
use crate::support::process::{run, text, Daemon as Process, Site};
use crate::support::{Daemon, Socket};

const ADMIN_TOKEN: &str = "clock-admin-secret";

/// libfaketime's preload library, where Debian and Raspberry Pi OS install it.
fn libfaketime() -> Option<PathBuf> {
    let dirs = std::fs::read_dir("/usr/lib").ok()?;
    let mut candidates: Vec<PathBuf> = dirs
        .filter_map(Result::ok)
        .map(|d| d.path().join("faketime/libfaketime.so.1"))
        .collect();
    candidates.push("/usr/lib/faketime/libfaketime.so.1".into());
    candidates.push("/usr/local/lib/faketime/libfaketime.so.1".into());
    candidates.into_iter().find(|p| p.is_file())
}

/// The system clock of the processes started by a test: frozen at the time written into
/// its file, which the test rewrites to move it (forward or back) while they run.
struct FakeClock {
    lib: PathBuf,
    file: PathBuf,
}

impl FakeClock {
    /// `None` (and a loud line) when libfaketime is not installed; CI sets
    /// `KAFFEDIEM_REQUIRE_FAKETIME`, and there a missing library fails the test.
    fn new(site: &Site, test: &str) -> Option<FakeClock> {
        let Some(lib) = libfaketime() else {
            assert!(
                std::env::var_os("KAFFEDIEM_REQUIRE_FAKETIME").is_none(),
                "libfaketime is required here: apt-get install faketime"
            );
            eprintln!("SKIPPED {test}: libfaketime not installed (apt-get install faketime)");
            return None;
        };
        Some(FakeClock {
            lib,
            file: site.path("faketime.rc"),
        })
    }

    /// Set the clock to `utc` ("YYYY-MM-DD hh:mm:ss", UTC), frozen there.
    fn set(&self, utc: &str) {
        // Write then rename: the daemon never reads a half-written file.
        let tmp = self.file.with_extension("tmp");
        std::fs::write(&tmp, format!("{utc}\n")).expect("write faketime file");
        std::fs::rename(&tmp, &self.file).expect("rename faketime file");
    }

    /// Run `cmd` on this clock. Only the wall clock is faked: timers run on the real
    /// monotonic clock.
    fn apply(&self, cmd: &mut Command) {
        cmd.env("LD_PRELOAD", &self.lib)
            .env("FAKETIME_TIMESTAMP_FILE", &self.file)
            .env("FAKETIME_NO_CACHE", "1")
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
            .env_remove("FAKETIME")
            .env("TZ", "UTC");
    }
}

async fn place(addr: SocketAddr, token: &str, item: i64) -> Value {
    let reply = call(addr, "POST", "/api/collections/order/records")
        .header("authorization", &format!("Bearer {token}"))
        .json(&json!({"items": [{"item": item, "customizations": []}]}))
        .send()
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    reply.json()
}

fn ids(records: &Value) -> Vec<i64> {
    records
        .as_array()
        .expect("a list")
        .iter()
        .map(|o| o["id"].as_i64().expect("id"))
        .collect()
}

async fn metric(addr: SocketAddr, name: &str) -> f64 {
    let reply = call(addr, "GET", "/metrics").send().await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply
        .text()
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{}", reply.text()))
}

// Oslo is UTC+1 in December. The café's day 2 begins at 2036-12-07 23:00 UTC.
const DAY2_0020: &str = "2036-12-07 23:20:00";
const DAY2_0030: &str = "2036-12-07 23:30:00";
const DAY1_2330: &str = "2036-12-07 22:30:00";
const DAY2_0045: &str = "2036-12-07 23:45:00";

#[tokio::test]
async fn a_clock_set_back_across_midnight_never_moves_stamps_day_ids_or_today_back() {
    let site = Site::new();
    let Some(clock) = FakeClock::new(&site, "clock set back across midnight") else {
        return;
    };
    clock.set(DAY2_0020);
    let mut demo = site.command(&["demo"]);
    clock.apply(&mut demo);
    let out = run(demo);
    assert!(out.status.success(), "demo: {}", text(&out.stderr));
    std::fs::write(
        site.path("kaffediem.toml"),
        format!("[access]\nadmin_token = \"{ADMIN_TOKEN}\"\n"),
    )
    .expect("write config");

    clock.set(DAY2_0030);
    let mut serve = site.command(&["serve"]);
    serve.env("KAFFEDIEM_CONFIG", site.path("kaffediem.toml"));
    clock.apply(&mut serve);
    let daemon = Process::start(serve);
    let addr = daemon.addr;
    let item = enabled_item(addr).await;

    let mut kitchen = Socket::connect(&daemon.ws_url()).await;
    let joined = kitchen
        .join_ok(
            "collection:order",
            json!({"options": {"from_date": "today"}}),
        )
        .await;
    assert_eq!(ids(&joined["items"]), Vec::<i64>::new());

    let a = place(addr, ADMIN_TOKEN, item).await;
    let b = place(addr, ADMIN_TOKEN, item).await;
    assert_eq!((&a["day_id"], &b["day_id"]), (&json!(101), &json!(102)));
    assert_eq!(b["inserted_at"], "2036-12-07T23:30:00.000000Z");

    // NTP steps the clock an hour back, across the café's midnight.
    clock.set(DAY1_2330);
    let c = place(addr, ADMIN_TOKEN, item).await;
    let c2 = place(addr, ADMIN_TOKEN, item).await;
    for late in [&c, &c2] {
        assert_eq!(
            late["inserted_at"], b["inserted_at"],
            "stamped with the newest known time, not the hour before: {late}"
        );
    }
    assert_eq!((&c["day_id"], &c2["day_id"]), (&json!(103), &json!(104)));
    assert_eq!(metric(addr, "kaffediem_clock_behind_seconds").await, 3600.0);
    assert!(metric(addr, "kaffediem_clock_held_total").await >= 2.0);
    daemon.wait_for_log(&["WARN", "system clock is behind"]);
    let warnings = daemon
        .log()
        .lines()
        .filter(|l| l.contains("system clock is behind"))
        .count();
    assert_eq!(
        warnings,
        1,
        "one warning, not one per order:\n{}",
        daemon.log()
    );

    // `kaffediem check` on this clock says the data is ahead of it; on a clock past the
    // data it says nothing of the kind.
    let mut check = site.command(&["check"]);
    clock.apply(&mut check);
    let out = run(check);
    assert!(out.status.success(), "check: {}", text(&out.stderr));
    let report = text(&out.stdout);
    let line = report
        .lines()
        .find(|l| l.starts_with("clock"))
        .unwrap_or_else(|| panic!("no clock line:\n{report}"));
    assert!(
        line.contains("behind the data") && line.contains("3600 s"),
        "{line}"
    );

    // The clock catches up: numbering goes on, nothing of "today" is dropped.
    clock.set(DAY2_0045);
    let mut check = site.command(&["check"]);
    clock.apply(&mut check);
    let report = text(&run(check).stdout);
    assert!(!report.contains("behind the data"), "{report}");
    let d = place(addr, ADMIN_TOKEN, item).await;
    assert_eq!(d["day_id"], 105, "{d}");
    assert_eq!(d["inserted_at"], "2036-12-07T23:45:00.000000Z");
    assert_eq!(metric(addr, "kaffediem_clock_behind_seconds").await, 0.0);

    // The kitchen screen got every order created, in order, and no delete, up to the last.
    let mut created = Vec::new();
    let last = d["id"].as_i64().expect("id");
    let mut last_seq = joined["seq"].as_u64().expect("seq");
    while created.last() != Some(&last) {
        let change = kitchen.next_event("collection:order", "change").await;
        assert_eq!(change["action"], "create", "{change}");
        let seq = change["seq"].as_u64().expect("seq");
        assert!(seq > last_seq, "{change}");
        last_seq = seq;
        created.push(change["record"]["id"].as_i64().expect("id"));
    }
    let placed: Vec<i64> = [&a, &b, &c, &c2, &d]
        .iter()
        .map(|o| o["id"].as_i64().expect("id"))
        .collect();
    assert_eq!(created, placed);

    // A screen opened now shows the whole day; so does the HTTP list.
    let mut fresh = Socket::connect(&daemon.ws_url()).await;
    let today = fresh
        .join_ok(
            "collection:order",
            json!({"options": {"from_date": "today"}}),
        )
        .await;
    assert_eq!(ids(&today["items"]), placed);
    let (_, listed) = get_json(addr, "/api/collections/order/records?from_date=today").await;
    assert_eq!(ids(&listed), placed);
    let day_ids: Vec<i64> = listed
        .as_array()
        .expect("list")
        .iter()
        .map(|o| o["day_id"].as_i64().expect("day_id"))
        .collect();
    assert_eq!(day_ids, vec![101, 102, 103, 104, 105]);
}

#[tokio::test]
async fn a_restart_on_a_clock_behind_the_data_keeps_numbering_the_same_day() {
    let site = Site::new();
    let Some(clock) = FakeClock::new(&site, "restart on a clock behind the data") else {
        return;
    };
    clock.set(DAY2_0020);
    let mut demo = site.command(&["demo"]);
    clock.apply(&mut demo);
    assert!(run(demo).status.success());
    std::fs::write(
        site.path("kaffediem.toml"),
        format!("[access]\nadmin_token = \"{ADMIN_TOKEN}\"\n"),
    )
    .expect("write config");
    let serve = || {
        let mut cmd = site.command(&["serve"]);
        cmd.env("KAFFEDIEM_CONFIG", site.path("kaffediem.toml"));
        clock.apply(&mut cmd);
        Process::start(cmd)
    };

    clock.set(DAY2_0030);
    let mut daemon = serve();
    let item = enabled_item(daemon.addr).await;
    let first = place(daemon.addr, ADMIN_TOKEN, item).await;
    assert_eq!(first["day_id"], 101);
    daemon.terminate();
    assert!(daemon.wait().success());

    // The Pi reboots with a clock from the evening before (no time sync yet).
    clock.set(DAY1_2330);
    let daemon = serve();
    daemon.wait_for_log(&["WARN", "system clock is behind"]);
    let next = place(daemon.addr, ADMIN_TOKEN, item).await;
    assert_eq!(next["day_id"], 102, "{next}");
    assert_eq!(next["inserted_at"], first["inserted_at"]);
}

/// In process, with the injected clock: the roll-over's deletes carry a `seq` of their own,
/// and a `"today"` screen resuming from before midnight gets them from the change log.
#[tokio::test]
async fn the_midnight_roll_over_is_a_commit_with_its_own_seq_in_the_change_log() {
    let daemon = Daemon::demo().await;
    let item = enabled_item(daemon.addr).await;
    // 23:59:50 in Oslo.
    daemon
        .clock
        .set("2036-12-01T22:59:50Z".parse().expect("ts"));
    let late = place(daemon.addr, "admin-secret", item).await;
    let late_id = late["id"].as_i64().expect("id");

    let mut kitchen = daemon.socket("").await;
    let joined = kitchen
        .join_ok(
            "collection:order",
            json!({"options": {"from_date": "today"}}),
        )
        .await;
    assert_eq!(ids(&joined["items"]), vec![late_id]);
    let before_midnight = joined["seq"].as_u64().expect("seq");

    daemon
        .clock
        .set("2036-12-01T23:00:02Z".parse().expect("ts"));
    let gone = kitchen.next_event("collection:order", "change").await;
    assert_eq!(gone["action"], "delete");
    assert_eq!(gone["record"], json!({"id": late_id}));
    let rolled = gone["seq"].as_u64().expect("seq");
    assert!(
        rolled > before_midnight,
        "the roll-over has a seq no earlier event had: {gone}"
    );

    let early = place(daemon.addr, "admin-secret", item).await;
    assert_eq!(early["day_id"], 101);
    let created = kitchen.next_event("collection:order", "change").await;
    assert_eq!(created["action"], "create");
    assert!(created["seq"].as_u64().expect("seq") > rolled, "{created}");

    // A screen that lost its connection before midnight resumes: it gets the delete and the
    // new order from the log, not a fresh snapshot.
    let mut resumed = daemon.socket("").await;
    let reply = resumed
        .join_ok(
            "collection:order",
            json!({"options": {"from_date": "today", "since": before_midnight}}),
        )
        .await;
    assert_eq!(
        reply["items"],
        Value::Null,
        "answered from the log: {reply}"
    );
    assert_eq!(
        reply["changes"],
        json!([gone, created]),
        "exactly the changes it missed"
    );
    // One resuming from after the roll-over gets only the new order.
    let mut later = daemon.socket("").await;
    let reply = later
        .join_ok(
            "collection:order",
            json!({"options": {"from_date": "today", "since": rolled}}),
        )
        .await;
    assert_eq!(reply["changes"], json!([created]));
    daemon.stop().await;
}

/// The unit starts the daemon after time sync where the system provides a wait-sync service.
#[test]
fn the_unit_waits_for_time_sync() {
    let unit = include_str!("../../kaffediem.service");
    let unit_section = unit.split("[Service]").next().expect("[Unit]");
    for line in ["After=time-sync.target", "Wants=time-sync.target"] {
        assert!(
            unit_section.lines().any(|l| l.trim() == line),
            "{line} in [Unit]"
        );
    }
}
