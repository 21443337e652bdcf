//! Menu boards: sockets joined to `collection:menu` of a daemon holding the SPEC 11 menu, which
//! gets item renames (each re-sends the whole menu to every board); what a board costs and
//! what it keeps of the menus it was sent.

use std::sync::Arc;

use crate::orders;
use crate::process::{self, DaemonSpec};
use crate::report::{MenuScreensRun, Stats};
use crate::subscribers::{self, Tracker};
use crate::{floors, quiet, tracker_nonce, RunArgs, DELIVERY_TIMEOUT, SETTLE};

/// Menu boards: sockets joined to `collection:menu` of a daemon holding the SPEC 11 menu, one
/// item renamed at a time (each rename re-sends the whole menu to every board), RSS before and
/// after: what a board keeps of the menus it was sent.
pub async fn run(
    args: &RunArgs,
    daemon: &std::path::Path,
    dir: &std::path::Path,
) -> Result<MenuScreensRun, String> {
    let (m, edits) = (args.menu_screens, args.menu_edits);
    let spec = DaemonSpec {
        binary: daemon,
        dir,
        token: &args.token,
        max_sockets: m + 1000,
        lift_address_limits: true,
    };
    // With a menu in the database, `serve --demo` loads nothing.
    floors::seed_big_menu(&spec.db_path(), 2).await?;
    let server = process::start_daemon(&spec)?;
    tokio::time::sleep(SETTLE).await;
    let idle = server.rss();
    let nonce = format!("menu-{}-{}-", std::process::id(), tracker_nonce());
    let tracker = Tracker::by_field("name", &nonce, edits);
    let subs = subscribers::open(
        server.addr,
        m,
        subscribers::MENU_SCREEN,
        Arc::clone(&tracker),
    )
    .await?;
    tokio::time::sleep(quiet(args)).await;
    let connected = server.rss();
    let mut conn = tokio::io::BufReader::new(orders::connect(server.addr).await?);
    let mut latencies = Vec::new();
    for i in 0..edits {
        let body = format!(r#"{{"name":"{nonce}{i}"}}"#);
        let sent = tracker.now_ns();
        let path = "/api/collections/item/records/1";
        let (status, answer) =
            orders::request(&mut conn, server.addr, "PATCH", path, &args.token, &body).await?;
        if status != 200 {
            let answer = String::from_utf8_lossy(&answer);
            return Err(format!("PATCH {path}: HTTP {status}: {answer}"));
        }
        if !tracker.wait_for(i, m as u32, DELIVERY_TIMEOUT).await {
            eprintln!("   rename {i} did not reach every board within {DELIVERY_TIMEOUT:?}");
            break;
        }
        if let Some((_, last)) = tracker.arrivals(i) {
            latencies.push(last.saturating_sub(sent));
        }
    }
    drop(conn);
    tokio::time::sleep(quiet(args)).await;
    let after = server.rss();
    let got: u64 = (0..edits).map(|i| tracker.count(i) as u64).sum();
    subs.close().await;
    if let Err(e) = server.stop() {
        eprintln!("   the daemon {e}");
    }
    let kib = |r: Option<process::Rss>| r.map_or(0, |r| r.now_kib);
    let (connected_kib, after_kib) = (kib(connected), kib(after));
    Ok(MenuScreensRun {
        screens: m,
        edits,
        menu_bytes: tracker
            .frame_bytes
            .load(std::sync::atomic::Ordering::Relaxed),
        rss_idle_kib: kib(idle),
        rss_connected_kib: connected_kib,
        rss_after_kib: after_kib,
        kib_per_screen_after_menus: after_kib.saturating_sub(connected_kib) as f64
            / m.max(1) as f64,
        latency: Stats::of_ns(latencies),
        deliveries_missing: ((edits * m) as u64).saturating_sub(got),
    })
}
