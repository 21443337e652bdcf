//! Hostile and careless clients against the whole daemon: each must be cut off or refused
//! without costing anyone else anything.

use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Daemon, WAIT};

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_dropped() {
    let daemon = Daemon::start(true, |c| c.limits.header_timeout_seconds = 1).await;
    let mut slow = tokio::net::TcpStream::connect(daemon.addr)
        .await
        .expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .await
        .expect("partial headers");
    // The server gives up on us: the read ends (EOF, or an error/timeout answer) well before
    // the test's own guard.
    let mut buf = Vec::new();
    let read = tokio::time::timeout(WAIT, slow.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the half-sent request was never dropped");
    let answer = String::from_utf8_lossy(&buf);
    assert!(
        buf.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );

    // Meanwhile a well-behaved client is served normally.
    let ok = crate::support::http::call(daemon.addr, "GET", "/healthz")
        .send()
        .await;
    assert_eq!(ok.status, 200);
    daemon.stop().await;
}

#[tokio::test]
async fn upgrades_past_the_socket_limit_get_503_and_the_others_keep_working() {
    let daemon = Daemon::start(true, |c| c.limits.max_sockets = 2).await;
    let mut a = daemon.socket("").await;
    let _b = daemon.socket("").await;
    let refused = tokio_tungstenite::connect_async(daemon.url("vsn=2.0.0")).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503)
        }
        other => panic!("expected HTTP 503, got {other:?}"),
    }
    a.join_ok("collection:status", json!({})).await;
    daemon.stop().await;
}

#[tokio::test]
async fn a_screen_that_stops_reading_is_cut_off_and_the_others_get_every_change() {
    let daemon = Daemon::start(true, |c| c.limits.outbound_queue = 64).await;
    let mut stalled = daemon.socket("").await;
    stalled.join_ok("collection:message", json!({})).await;
    let mut healthy = daemon.socket("").await;
    healthy.join_ok("collection:message", json!({})).await;

    // The healthy screen reads as it should, all along.
    let writes = 300;
    let reader = tokio::spawn(async move {
        let mut seen = 0;
        while seen < writes {
            let change = healthy.next_event("collection:message", "change").await;
            assert_eq!(change["action"], "create");
            seen += 1;
        }
        seen
    });

    // Enough changes, with big enough records, to fill the stalled socket's kernel buffers
    // and then its 64-message queue. One commit at a time, paced, so that the healthy screen
    // never has 64 changes waiting at once.
    let shell = daemon.shell();
    let filler = "x".repeat(64 * 1024);
    for i in 0..writes {
        shell
            .execute(
                "INSERT INTO message (title, subtitle) VALUES (?1, ?2)",
                rusqlite::params![format!("m{i}"), filler],
            )
            .expect("insert");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        reader.await.expect("reader"),
        writes,
        "every change reached the healthy screen"
    );

    // The stalled screen, reading at last, finds its socket closed: with 1013 when the close
    // frame could still get through, else cut off after the server's close grace period
    // (its buffers were full). Either way it was not kept open.
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let deadline = tokio::time::Instant::now() + WAIT;
    let ended = loop {
        match tokio::time::timeout_at(deadline, stalled.ws.next()).await {
            Err(_) => break None,
            Ok(Some(Ok(Message::Close(frame)))) => break Some(frame.map(|f| u16::from(f.code))),
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(_))) | Ok(None) => break Some(None),
        }
    };
    match ended {
        Some(Some(code)) => assert_eq!(code, 1013, "slow consumer close code"),
        Some(None) => {}
        None => panic!("the stalled socket is still open"),
    }
    daemon.stop().await;
}
