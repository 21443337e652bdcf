//! The writer watches the database's directory for other processes' commits (the `sqlite3`
//! shell's), but the daemon's own commits change the same files: every page SQLite writes to
//! the WAL raises a file event. What that watch costs must follow the time that passes, not
//! the writes made (issue 14): a burst of events wakes the writer once, and it looks for
//! foreign commits a small, fixed number of times per commit of its own.

use std::net::SocketAddr;

use serde_json::json;

use crate::support::http::{call, enabled_item};
use crate::support::Daemon;

const ADMIN: &str = "Bearer admin-secret";
const ORDERS: u64 = 300;

async fn scrape(addr: SocketAddr) -> String {
    call(addr, "GET", "/metrics")
        .header("authorization", ADMIN)
        .send()
        .await
        .text()
}

fn metric(body: &str, sample: &str) -> u64 {
    body.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no sample {sample} in:\n{body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_commits_wake_the_writer_at_most_about_once_each() {
    let daemon = Daemon::demo().await;
    let item = enabled_item(daemon.addr).await;
    let before = scrape(daemon.addr).await;
    // Two tills, so that some commits serve both.
    let till = |n: u64| {
        let addr = daemon.addr;
        async move {
            for _ in 0..n {
                let reply = call(addr, "POST", "/api/collections/order/records")
                    .header("authorization", ADMIN)
                    .json(&json!({"items": [{"item": item, "customizations": []}]}))
                    .send()
                    .await;
                assert_eq!(reply.status, 201, "{}", reply.text());
            }
        }
    };
    tokio::join!(till(ORDERS / 2), till(ORDERS / 2));
    let after = scrape(daemon.addr).await;
    let delta = |name: &str| metric(&after, name) - metric(&before, name);
    let (commits, wakeups, checks) = (
        delta("kaffediem_writer_commits_total"),
        delta("kaffediem_writer_wakeups_total"),
        delta("kaffediem_writer_foreign_checks_total"),
    );
    eprintln!("{commits} commits: {wakeups} wake-ups, {checks} looks for foreign commits");
    assert!(commits > 0 && commits <= ORDERS, "{commits} commits");
    // Each commit writes several WAL pages, each page one event or more; before issue 14
    // every one of them woke the writer (about 11 per commit here). Now a commit's burst of
    // events wakes it once at most (twice if the burst straddles the watch's pause).
    assert!(
        wakeups <= 2 * commits + 5,
        "{wakeups} wake-ups, {checks} looks for {commits} commits"
    );
    // One look before each commit, one at its wake-up, one shortly after, and the ticks
    // (about 9 per commit before).
    assert!(
        checks <= 3 * commits + 10,
        "{wakeups} wake-ups, {checks} looks for {commits} commits"
    );
    daemon.stop().await;
}
