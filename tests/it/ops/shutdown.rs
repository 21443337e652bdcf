//! Clean shutdown on SIGTERM and SIGINT: sockets told 1001, every acknowledged write kept,
//! the WAL checkpointed into the database file.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_sockets_with_1001_keeps_every_commit_and_empties_the_wal() {
    let site = Site::new();
    let mut daemon = demo_with_admin_token(&site);
    let mut socket = Socket::connect(&daemon.ws_url()).await;
    socket.join_ok("collection:order", json!({})).await;

    // Orders from another process, as the sqlite3 shell makes them, reach the socket.
    let orders = OrderStream::start(&site);
    socket.next_event("collection:order", "change").await;
    // That connection stays open, idle, until the daemon is gone: SQLite's own clean-up
    // when the last connection closes cannot be what empties the WAL, only the daemon's
    // checkpoint can.
    let (shell, committed) = orders.stop();

    // Writes through the daemon keep coming while it receives SIGTERM.
    let acked = Arc::new(Mutex::new(Vec::new()));
    let writer = tokio::spawn(post_messages_until_refused(daemon.addr, Arc::clone(&acked)));
    let deadline = Instant::now() + WAIT;
    while acked.lock().unwrap().len() < 10 {
        assert!(
            Instant::now() < deadline,
            "no HTTP writes:\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    daemon.terminate();

    let close = loop {
        match tokio::time::timeout(WAIT, socket.ws.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => break frame,
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(
        close.map(|f| f.code),
        Some(CloseCode::Away),
        "close code 1001"
    );
    // Reading on sends our half of the closing handshake; then we hang up, as browsers do.
    let _ = tokio::time::timeout(WAIT, async { while socket.ws.next().await.is_some() {} }).await;
    drop(socket);
    tokio::time::timeout(WAIT, writer)
        .await
        .expect("the daemon stops answering")
        .expect("writer task");
    let status = daemon.wait();
    assert!(status.success(), "exit {status}:\n{}", daemon.log());
    assert!(
        wal_len(&site.db()).unwrap_or(0) == 0,
        "the -wal file should be empty or gone"
    );
    assert_orders_present(&shell, committed);
    drop(shell);

    // The file alone is complete: a copy of just it holds every acknowledged write.
    let copy = site.path("copy.db");
    std::fs::copy(site.db(), &copy).expect("copy");
    let conn = rusqlite::Connection::open(&copy).expect("open copy");
    assert_eq!(integrity(&conn), "ok");
    assert_orders_present(&conn, committed);
    let acked = acked.lock().unwrap().clone();
    for title in &acked {
        let found: i64 = conn
            .query_row(
                "SELECT count(*) FROM message WHERE title = ?1",
                [title],
                |r| r.get(0),
            )
            .expect("count");
        assert_eq!(found, 1, "acknowledged message {title} is missing");
    }
}

#[test]
fn sigint_stops_as_cleanly_as_sigterm() {
    let site = Site::new();
    let mut daemon = Daemon::start(site.command(&["serve"]));
    let status = Command::new("kill")
        .args(["-INT", &daemon.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    assert!(daemon.wait().success(), "{}", daemon.log());
    assert_eq!(wal_len(&site.db()).unwrap_or(0), 0);
}
