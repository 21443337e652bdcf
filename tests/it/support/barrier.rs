//! Proving that a socket was sent nothing, without waiting for silence.
//!
//! The change feed publishes commits in commit order (a commit of another process that is
//! already on disk is published before the writer's next own commit), the fan-out queues a
//! commit's broadcasts onto every matching socket before it looks at the next commit, and a
//! socket writes its queue in order. So once a socket has received the broadcast of a later
//! commit of the daemon's own — the barrier — every broadcast any earlier commit had for it is
//! already in what it received. A test joins the socket to the barrier's collection before the
//! commit under test, makes the barrier commit over HTTP afterwards, and asserts on the frames
//! that came before it.
//!
//! The barrier is a commit of the daemon's own (never a second shell commit): two commits of
//! another process may be published as one change set, whose broadcasts reach a socket in no
//! promised order. A heartbeat is no barrier either: a socket writes its own replies before its
//! queued broadcasts.

use serde_json::{json, Value};

use super::http::call;
use super::{Daemon, Socket};

/// The admin token of [`Daemon::start`].
const ADMIN: &str = "Bearer admin-secret";

impl Daemon {
    /// Create a throwaway record in `collection` (`message` or `category`) over HTTP as the
    /// admin: a commit of the daemon's own, published after every commit made before it.
    /// Returns the record's id.
    pub async fn barrier_commit(&self, collection: &str) -> i64 {
        let body = match collection {
            "message" => json!({"title": "barrier"}),
            "category" => json!({"name": "barrier"}),
            other => panic!("no barrier record for {other}"),
        };
        let reply = call(
            self.addr,
            "POST",
            &format!("/api/collections/{collection}/records"),
        )
        .header("authorization", ADMIN)
        .json(&body)
        .send()
        .await;
        assert_eq!(reply.status, 201, "barrier commit: {}", reply.text());
        reply.json()["id"].as_i64().expect("barrier record id")
    }
}

impl Socket {
    /// Make a barrier commit in `collection` (this socket must already be joined to
    /// `collection:<collection>`, before the commit under test) and return every text frame
    /// this socket received before the barrier's `create`. Everything earlier commits sent to
    /// this socket is in the answer; nothing later is.
    pub async fn frames_before_barrier(&mut self, daemon: &Daemon, collection: &str) -> Vec<Value> {
        let id = daemon.barrier_commit(collection).await;
        let topic = format!("collection:{collection}");
        let mut before = Vec::new();
        loop {
            let frame = self.recv().await;
            let is_barrier = frame[2] == topic.as_str()
                && frame[3] == "change"
                && frame[4]["action"] == "create"
                && frame[4]["record"]["id"] == id;
            if is_barrier {
                return before;
            }
            before.push(frame);
        }
    }
}
