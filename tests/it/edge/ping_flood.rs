//! Issue 10, "ping flood": a socket that sends WebSocket pings and never reads is closed once
//! the pongs owed to it pass the socket's outbound bound, and the daemon's memory stays flat.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

use super::{client_frame, raw_upgrade, rss_kib};
use crate::support::process::{Daemon, Site};
use crate::support::{self, WAIT};

/// Pings a flooding client may send before the test calls the flood unbounded.
const FLOOD_PINGS: usize = 2_000_000;
/// Pings written per `write_all` (one buffer, reused).
const BATCH: usize = 1_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_flood_that_never_reads_is_closed_and_memory_stays_flat() {
    let site = Site::new();
    site.demo_db();
    let daemon = Daemon::start(site.command(&["serve"]));
    let pid = daemon.pid();
    // A socket the flood must not disturb, and the daemon's memory with it open.
    let mut screen = support::Socket::connect(&daemon.ws_url()).await;
    screen
        .join_ok("collection:status", serde_json::json!({}))
        .await;
    let idle_rss = rss_kib(pid);

    let mut flood = raw_upgrade(daemon.addr).await;
    let batch: Vec<u8> = (0..BATCH)
        .flat_map(|_| client_frame(0x9, &[b'p'; 125]))
        .collect();
    let mut sent = 0;
    let mut peak_rss = idle_rss;
    let mut cut_off = false;
    while sent < FLOOD_PINGS {
        match tokio::time::timeout(WAIT, flood.write_all(&batch)).await {
            // The daemon hung up (reset) or stopped reading us for good: cut off.
            Ok(Err(_)) | Err(_) => {
                cut_off = true;
                break;
            }
            Ok(Ok(())) => sent += BATCH,
        }
        if sent % (50 * BATCH) == 0 {
            peak_rss = peak_rss.max(rss_kib(pid));
        }
        if daemon.log().contains("slow consumer") {
            cut_off = true;
            break;
        }
    }
    peak_rss = peak_rss.max(rss_kib(pid));
    eprintln!("ping flood: cut off after {sent} pings; RSS {idle_rss} KiB -> peak {peak_rss} KiB");
    assert!(
        cut_off,
        "{sent} pings sent without ever reading, and the socket is still open"
    );
    assert!(
        peak_rss < idle_rss + 64 * 1024,
        "RSS went from {idle_rss} KiB to {peak_rss} KiB under {sent} pings"
    );

    // The flooding connection ends: reading it reaches its end (or a reset).
    let mut sink = vec![0u8; 64 * 1024];
    let ended = tokio::time::timeout(WAIT * 2, async {
        loop {
            match flood.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the flooding connection was never closed");

    // Everyone else is served as before.
    screen
        .join_ok("collection:message", serde_json::json!({}))
        .await;
    let health = crate::support::http::call(daemon.addr, "GET", "/healthz")
        .send()
        .await;
    assert_eq!(health.status, 200);
}

/// Pings do not keep a socket alive: only Phoenix messages (the client's heartbeats) count as
/// activity, so a client that only pings is closed by the idle timeout (1002) like a silent one.
#[tokio::test]
async fn pings_alone_do_not_hold_off_the_idle_timeout() {
    let daemon = support::Daemon::start(true, |c| c.limits.idle_timeout_seconds = 1).await;
    let mut socket = daemon.socket("").await;
    let pinging = async {
        loop {
            socket
                .ws
                .send(Message::Ping(Bytes::from_static(b"still here")))
                .await?;
            tokio::time::sleep(Duration::from_millis(100)).await;
            // Read what came back (pongs) without blocking the pings.
            while let Ok(Some(msg)) =
                tokio::time::timeout(Duration::from_millis(1), socket.ws.next()).await
            {
                if let Message::Close(frame) = msg? {
                    return Ok::<_, tokio_tungstenite::tungstenite::Error>(
                        frame.map_or(1005, |f| u16::from(f.code)),
                    );
                }
            }
        }
    };
    let code = tokio::time::timeout(WAIT, pinging)
        .await
        .expect("a socket that only pings was never closed")
        .expect("pinging");
    assert_eq!(code, 1002);
    daemon.stop().await;
}
