//! The benchmark tool cannot rot: `kaffediem-bench --smoke` runs end to end against the real
//! daemon binary (orders over HTTP, subscribers over WebSocket, the floors, menu boards), and
//! every subscriber gets every order and every menu. Counts only, never timings.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

/// The daemon binary the smoke runs measure: `kaffediem` in the same target directory as this
/// tool. `cargo test --workspace` (what `scripts/test.sh` runs) builds both before running any
/// test; a package cannot name another package's binary (`CARGO_BIN_EXE_*` is per package).
fn daemon() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_kaffediem-bench")).with_file_name("kaffediem");
    assert!(
        path.exists(),
        "{} is missing: run `cargo test --workspace` (or `cargo build -p kaffediem` first)",
        path.display()
    );
    path
}

#[test]
fn bench_smoke_delivers_every_order_to_every_subscriber() {
    let report = smoke_run(&[]);
    let run = &report["runs"][0];
    assert_eq!(run["sockets"], 20);
    // 5 orders one at a time + 40 concurrently, each to 20 subscribers.
    assert_eq!(run["deliveries_expected"], 45 * 20);
    assert_eq!(run["deliveries_missing"], 0, "{run}");
    assert_eq!(run["strays"], 0);
    assert_eq!(run["closed_by_server"], 0);
    assert_eq!(run["latency"]["n"], 5);
    assert_eq!(run["loaded_latency"]["n"], 40);
    assert_eq!(run["floor"]["deliveries_missing"], 0);
    assert!(run["rss_connected_kib"].as_u64().unwrap_or(0) > 0);
    assert!(report["raw_sqlite_inserts_per_s"].as_f64().unwrap_or(0.0) > 0.0);
    assert!(
        report["writer_in_process_orders_per_s"]
            .as_f64()
            .unwrap_or(0.0)
            > 0.0
    );
    for menu in report["menus"].as_array().expect("menus") {
        assert!(menu["bytes"].as_u64().unwrap_or(0) > 100_000, "{menu}");
    }
    // Menu boards: 5 sockets on collection:menu, 2 renames, each a whole menu to every board.
    let boards = &report["menu_screens"];
    assert_eq!(boards["screens"], 5, "{boards}");
    assert_eq!(boards["edits"], 2);
    assert_eq!(boards["deliveries_missing"], 0, "{boards}");
    assert_eq!(boards["latency"]["n"], 2);
    assert!(
        boards["menu_bytes"].as_u64().unwrap_or(0) > 100_000,
        "{boards}"
    );
}

/// The hostile phase (`--smoke --hostile-only`: one second per attack, tiny counts) runs every
/// attack against the real daemon while the probes run: the healthy screen misses nothing,
/// `/healthz` and order placement keep answering, and every attack is judged in the report.
/// Counts only: the budget verdicts are figures for BENCHMARKS.md, not assertions.
#[test]
fn bench_smoke_hostile_phase_runs_every_attack_and_the_screen_misses_nothing() {
    let report = smoke_run(&["--hostile-only"]);
    assert_eq!(
        report["runs"].as_array().map(Vec::len),
        Some(0),
        "hostile only"
    );
    let hostile = &report["hostile"];
    assert_eq!(hostile["seeded_orders"], 50);
    assert!(hostile["rss_idle_kib"].as_u64().unwrap_or(0) > 0);
    let attacks = hostile["attacks"].as_array().expect("attacks");
    let names: Vec<&str> = attacks
        .iter()
        .filter_map(|a| a["attack"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "ping-flood",
            "logins",
            "join-hang-up",
            "amplification",
            "stuck-requests",
            "slow-readers"
        ]
    );
    let quiet = &hostile["quiet"];
    for phase in std::iter::once(quiet).chain(attacks) {
        // /healthz and the customer's orders answered during the phase, and every order the
        // daemon acknowledged reached the healthy screen.
        let answered = |stats: &str, failed: &str| {
            phase[stats]["n"].as_u64().unwrap_or(0) > phase[failed].as_u64().unwrap_or(u64::MAX)
        };
        assert!(answered("healthz", "healthz_failed"), "{phase}");
        assert!(phase["orders_acked"].as_u64().unwrap_or(0) > 0, "{phase}");
        assert_eq!(phase["deliveries_missed"], 0, "{phase}");
        assert_eq!(phase["screen_closed"], false, "{phase}");
        assert_eq!(phase["daemon_alive"], true, "{phase}");
        assert!(phase["rss_samples"].as_u64().unwrap_or(0) > 0, "{phase}");
    }
    for attack in attacks {
        // The attack ran (the attacker saw outcomes), the daemon answered /healthz again
        // afterwards, and it was judged against the budget.
        let seen = attack["attacker"].as_object().expect("attacker outcomes");
        assert!(
            seen.values().any(|n| n.as_u64().unwrap_or(0) > 0),
            "{attack}"
        );
        assert!(attack["recovery_s"].is_number(), "{attack}");
        assert_eq!(attack["daemon_restarted"], false, "{attack}");
        assert!(attack["rss_within_budget"].is_boolean(), "{attack}");
        assert!(attack["ack_within_budget"].is_boolean(), "{attack}");
    }
    let verdicts = report["verdicts"].as_array().expect("verdicts");
    let judged = verdicts
        .iter()
        .filter(|v| {
            v["target"]
                .as_str()
                .is_some_and(|t| t.starts_with("hostile "))
        })
        .count();
    assert_eq!(judged, 2 * attacks.len());
}

/// Runs the tool with `args` (plus `--smoke`, the daemon and a temp dir) and returns its JSON.
fn smoke_run(args: &[&str]) -> Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("bench.json");
    let out = Command::new(env!("CARGO_BIN_EXE_kaffediem-bench"))
        .arg("--smoke")
        .args(args)
        .arg("--daemon")
        .arg(daemon())
        .arg("--dir")
        .arg(dir.path())
        .arg("--json")
        .arg(&json)
        .output()
        .expect("the bench tool runs");
    assert!(
        out.status.success(),
        "bench failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value =
        serde_json::from_slice(&std::fs::read(&json).expect("json written")).expect("json");
    if report["history"].is_object() {
        let svg = std::fs::read_to_string(dir.path().join("bench.svg")).expect("svg written");
        assert!(svg.starts_with("<svg") && svg.contains("polyline"), "{svg}");
    }
    report
}

/// The history phase (issue 14) at two sizes: the daemon's generator wrote the past orders,
/// every phase ran against each file (subscribers got every order, joins and lists answered
/// with today's orders, the foreign update reached the subscriber), and the figures were
/// judged against the empty database and drawn. Counts only.
#[test]
fn bench_smoke_history_measures_every_phase_at_each_size() {
    let report = smoke_run(&["--history-only", "--history", "0,700"]);
    let points = report["history"]["points"].as_array().expect("points");
    assert_eq!(points.len(), 2);
    for (p, orders) in points.iter().zip([0, 700]) {
        assert_eq!(p["orders"], orders, "{p}");
        assert!(p["db_bytes"].as_u64().unwrap_or(0) > 0, "{p}");
        assert_eq!(p["start_to_ready"]["n"], 1, "{p}");
        assert!(p["rss_after_start_kib"].as_u64().unwrap_or(0) > 0, "{p}");
        let run = &p["socket_run"];
        assert_eq!(run["deliveries_missing"], 0, "{run}");
        assert_eq!(run["ack"]["n"], 5, "{run}");
        // Today's orders: the 45 the socket run placed, whatever the history holds.
        assert_eq!(p["join_today_records"], 45, "{p}");
        assert_eq!(p["join_today"]["n"], 3, "{p}");
        assert_eq!(p["join_default"]["n"], 3, "{p}");
        assert_eq!(p["list_today"]["n"], 3, "{p}");
        assert_eq!(p["foreign_write"]["n"], 3, "{p}");
        assert!(p["backup_s"].as_f64().unwrap_or(0.0) > 0.0, "{p}");
        assert!(p["check_s"].as_f64().unwrap_or(0.0) > 0.0, "{p}");
    }
    // The past week is in the no-options snapshot when there is history.
    assert!(points[1]["join_default_records"].as_u64().unwrap_or(0) > 45);
    assert_eq!(points[0]["join_default_records"], 45);
    let verdicts = report["verdicts"].as_array().expect("verdicts");
    // 700 orders is not a school year: nothing is judged, but the figures were all taken.
    assert!(verdicts
        .iter()
        .all(|v| !v["target"].as_str().unwrap_or("").starts_with("history")));
}

/// The SD-card phase (issue 14) with a 1 ms fsync: the shim was built and slowed the raw
/// floor, and the daemon acknowledged every order with 1 and 4 writers, judged per target.
#[test]
fn bench_smoke_sd_card_builds_the_shim_and_measures_floor_and_daemon() {
    let report = smoke_run(&["--sd-only", "--sd-fsync-ms", "1", "--sd-writers", "1,16"]);
    let runs = report["sd_card"].as_array().expect("sd runs");
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!(run["fsync_ms"], 1);
    // At least one fsync per durable insert, each at least 1 ms: at most 1 000 a second.
    let raw = run["raw_inserts_per_s"].as_f64().unwrap_or(0.0);
    assert!(raw > 0.0 && raw <= 1000.0, "{run}");
    let daemon = run["daemon"].as_array().expect("daemon runs");
    let writers: Vec<u64> = daemon
        .iter()
        .filter_map(|w| w["writers"].as_u64())
        .collect();
    assert_eq!(writers, [1, 16]);
    for w in daemon {
        assert_eq!(w["ack"]["n"], w["orders"], "{w}");
    }
    let judged = report["verdicts"]
        .as_array()
        .expect("verdicts")
        .iter()
        .filter(|v| v["target"].as_str().unwrap_or("").starts_with("SD card"))
        .count();
    assert_eq!(judged, 3);
}

/// The equal-rate phase (issue 14) against the daemon alone (PocketBase is not installed in
/// the suite): the scheduled orders all went out, every subscriber got every one, and the CPU
/// per delivered event was computed from the deliveries counted.
#[test]
fn bench_smoke_equal_rate_sends_on_schedule_and_counts_every_delivery() {
    let report = smoke_run(&["--equal-rate-only"]);
    let runs = report["equal_rate"].as_array().expect("equal-rate runs");
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    assert_eq!(run["orders_per_s"], 20);
    assert_eq!(run["subscribers"], 10);
    let k = &run["kaffediem"];
    assert_eq!(k["orders"], 20, "{k}");
    assert_eq!(k["ack"]["n"], 20, "{k}");
    assert_eq!(k["deliveries_expected"], 200, "{k}");
    assert_eq!(k["deliveries_missing"], 0, "{k}");
    assert_eq!(k["latency"]["n"], 20, "{k}");
    assert!(k["cpu_us_per_event"].as_f64().unwrap_or(0.0) > 0.0, "{k}");
    assert!(run["pocketbase"].is_null());
}
