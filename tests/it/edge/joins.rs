//! Issue 10, "join and hang up": joins are rate limited per socket and per client address
//! (token buckets: a minute's worth at once, refilled over a minute); past either the join is
//! refused with `{"reason":"too many joins"}` and nothing else on the socket changes.

use std::net::SocketAddr;

use serde_json::{json, Value};
use tokio::net::TcpSocket;

use crate::support::{Daemon, Socket};

async fn socket_from(from: [u8; 4], daemon: &Daemon) -> Socket {
    let tcp = TcpSocket::new_v4().expect("socket");
    tcp.bind(SocketAddr::from((from, 0))).expect("bind");
    let stream = tcp.connect(daemon.addr).await.expect("connect");
    let (ws, _) = tokio_tungstenite::client_async(
        daemon.url("vsn=2.0.0"),
        tokio_tungstenite::MaybeTlsStream::Plain(stream),
    )
    .await
    .expect("upgrade");
    Socket::from_ws(ws)
}

fn too_many() -> Value {
    json!({"status": "error", "response": {"reason": "too many joins"}})
}

#[tokio::test]
async fn joins_past_the_per_socket_and_per_address_rates_are_refused() {
    let daemon = Daemon::start(true, |c| {
        c.limits.joins_per_minute_per_socket = 5;
        c.limits.joins_per_minute_per_address = 8;
    })
    .await;
    let mut first = socket_from([127, 0, 0, 2], &daemon).await;
    for _ in 0..5 {
        first.join_ok("collection:status", json!({})).await;
    }
    assert_eq!(
        first.join("collection:message", json!({})).await,
        too_many()
    );
    // The socket itself stays up and answers its heartbeat.
    let r = first.make_ref();
    first
        .send(json!([null, r, "phoenix", "heartbeat", {}]))
        .await;
    let reply = first.recv().await;
    assert_eq!(reply[4]["status"], "ok", "{reply}");

    // A second socket from the same address has its own five, but the address only three more.
    let mut second = socket_from([127, 0, 0, 2], &daemon).await;
    for _ in 0..3 {
        second.join_ok("collection:status", json!({})).await;
    }
    assert_eq!(
        second.join("collection:status", json!({})).await,
        too_many()
    );

    // Another address joins as usual.
    let mut other = socket_from([127, 0, 0, 3], &daemon).await;
    for _ in 0..5 {
        other.join_ok("collection:status", json!({})).await;
    }
    daemon.stop().await;
}
