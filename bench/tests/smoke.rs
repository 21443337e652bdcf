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
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("bench.json");
    let out = Command::new(env!("CARGO_BIN_EXE_kaffediem-bench"))
        .args(["--smoke", "--daemon"])
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
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("hostile.json");
    let out = Command::new(env!("CARGO_BIN_EXE_kaffediem-bench"))
        .args(["--smoke", "--hostile-only", "--daemon"])
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
