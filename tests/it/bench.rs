//! The benchmark tool cannot rot: `kaffediem-bench --smoke` runs end to end against the real
//! daemon binary (orders over HTTP, subscribers over WebSocket, the floors, menu boards), and
//! every subscriber gets every order and every menu. Counts only, never timings.

use std::process::Command;

use serde_json::Value;

#[test]
fn bench_smoke_delivers_every_order_to_every_subscriber() {
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("bench.json");
    let out = Command::new(env!("CARGO_BIN_EXE_kaffediem-bench"))
        .args(["--smoke", "--daemon"])
        .arg(env!("CARGO_BIN_EXE_kaffediem"))
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
