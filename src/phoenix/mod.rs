//! The Phoenix Channels wire protocol, server side: serializers (V1 JSON, V2 JSON, V2 binary),
//! the per-socket state machine (joins, refs, leaves, heartbeats, idle timeout), and two
//! transports feeding it: the WebSocket and LongPoll, with a bounded outbound queue per socket.
//!
//! Architecture invariant: this module knows nothing about cafés or SQLite. An application
//! plugs in through [`SocketHandler`] (connect + join) and [`Channel`] (client events on a
//! joined topic), and feeds broadcasts into sockets through the [`Outbox`] a join receives.

// CONTRACT FILE: the types and signatures below are the interface the rest of the crate codes
// against. Implementations live in the submodules.

pub mod frame;
pub mod longpoll;
pub mod origin;
pub mod outbox;
pub mod per_address;
mod rate;
pub mod socket;
pub mod transport;
mod websocket;

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

pub use frame::{Payload, Vsn};
pub use longpoll::LongPollConfig;
pub use outbox::{Broadcast, Outbox};
pub use transport::{Endpoint, EndpointConfig, Metrics};

/// A boxed future, as returned by [`SocketHandler::join`].
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What the application learns about a connecting client.
#[derive(Debug, Clone)]
pub struct ConnectInfo {
    /// Query parameters of the upgrade request, including `vsn` (Plug semantics: the last
    /// value of a repeated key wins, empty segments ignored, `a[b]=c` kept as the key `a[b]`).
    pub params: HashMap<String, String>,
    /// The token carried in the `base64url.bearer.phx.<token>` subprotocol, decoded.
    pub auth_token: Option<String>,
    /// The upgrade request's headers (cookies, user agent, ...).
    pub headers: hyper::HeaderMap,
    /// The client's address as the HTTP server determined it (behind a trusted reverse
    /// proxy, the one it forwarded; otherwise the TCP peer).
    pub peer: SocketAddr,
}

/// Why a connect was refused; the upgrade is answered with HTTP 403 either way.
#[derive(Debug)]
pub struct Refused(pub String);

/// The application side of a socket: admits connections and routes joins to channels.
pub trait SocketHandler: Send + Sync + 'static {
    /// Per-connection state returned by `connect` (who is connected), shared with every join.
    type Session: Send + Sync + 'static;

    /// Admit or refuse a connection (refused → HTTP 403 before the upgrade). Awaited by the
    /// upgrade (or the long poll's open), so an application may read its credentials from
    /// storage without holding a runtime thread; the socket's slot is held meanwhile.
    fn connect(
        &self,
        info: &ConnectInfo,
    ) -> impl Future<Output = Result<Self::Session, Refused>> + Send;

    /// The socket's id (Phoenix's `id/1`), e.g. `users_socket:42`: [`Endpoint::disconnect`]
    /// closes every socket with that id (1001), so its client reconnects and authenticates
    /// again. `None` (the default): anonymous, never disconnected by id.
    fn id(&self, _session: &Self::Session) -> Option<String> {
        None
    }

    /// Route a `phx_join`. `None` means no channel handles this topic ("unmatched topic").
    /// The future resolving to [`JoinResult`] may read a snapshot; if it panics the client
    /// gets `{"reason":"join crashed"}` and the socket stays up.
    fn join(
        &self,
        session: &std::sync::Arc<Self::Session>,
        topic: &str,
        payload: Payload,
        outbox: Outbox,
    ) -> Option<BoxFuture<JoinResult>>;
}

/// The outcome of a join.
pub enum JoinResult {
    /// Joined: reply `{"status":"ok","response":response}`. `seq` is the position in the
    /// application's broadcast order that the response reflects: broadcasts queued for this
    /// join with a `seq` at or below it are already contained in the response and are
    /// dropped. Use 0 when the application has no such order.
    Ok {
        /// JSON, or JSON already encoded off the async threads (a snapshot of megabytes is
        /// encoded where it was read, never on the worker that other sockets wait for).
        response: Payload,
        seq: u64,
        channel: Box<dyn Channel>,
    },
    /// Refused: reply `{"status":"error","response":response}`; the topic stays unjoined.
    Error(serde_json::Value),
}

/// One joined topic on one socket. Dropping it ends the subscription (leave, duplicate join,
/// socket closed), so implementations keep their subscription guards inside.
pub trait Channel: Send + 'static {
    /// A client event other than `phx_join`/`phx_leave` on this topic.
    fn handle_in(&mut self, event: &str, payload: Payload, outbox: &Outbox) -> Reply;
}

/// What a channel answers to a client event.
pub enum Reply {
    /// `phx_reply` with this status (`"ok"`, `"error"`, ...) and response payload.
    Status(String, Payload),
    /// Nothing is sent; the client's push times out.
    NoReply,
    /// Reply (if given), then end the channel normally: `phx_close`.
    Stop(Option<(String, Payload)>),
    /// The channel failed: `phx_error` `{"reason":"channel_crash"}`; the topic is unjoined.
    Crash,
}

impl Reply {
    pub fn ok(response: serde_json::Value) -> Self {
        Reply::Status("ok".into(), Payload::Json(response))
    }
    pub fn error(response: serde_json::Value) -> Self {
        Reply::Status("error".into(), Payload::Json(response))
    }
}
