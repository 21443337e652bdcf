//! The WebSocket endpoint: upgrade checks (vsn, origin, subprotocol, connect), socket tasks,
//! limits and metrics. CONTRACT STUB: the phoenix helper replaces the bodies.

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;

use super::SocketHandler;

/// Settings of the endpoint; replaceable while running ([`Endpoint::set_config`]).
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    /// Close a socket from which nothing was received for this long (code 1002).
    pub idle_timeout: Duration,
    /// Largest accepted client message; larger → close 1009.
    pub max_message_bytes: usize,
    /// Joins past this many topics on one socket → "too many channels joined".
    pub max_topics_per_socket: usize,
    /// Outbound queue length per socket; a full queue closes the socket with 1013.
    pub outbound_queue: usize,
    /// Upgrades past this many open sockets get HTTP 503.
    pub max_sockets: usize,
    /// Refuse upgrades whose `Origin` is neither the request's own host nor allowed.
    pub check_origin: bool,
    /// Allowed origins, e.g. `https://kaffediem.example` (scheme, host and port compared).
    pub allowed_origins: Vec<String>,
}

impl Default for EndpointConfig {
    fn default() -> Self {
        EndpointConfig {
            idle_timeout: Duration::from_secs(60),
            max_message_bytes: 64 * 1024,
            max_topics_per_socket: 100,
            outbound_queue: 1024,
            max_sockets: 10_000,
            check_origin: true,
            allowed_origins: Vec::new(),
        }
    }
}

/// Counters exported by `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    pub open_sockets: AtomicU64,
    pub messages_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub slow_closed: AtomicU64,
}

/// A Phoenix socket endpoint (`/socket/websocket`) for one application handler.
pub struct Endpoint<H: SocketHandler> {
    _handler: Arc<H>,
}

impl<H: SocketHandler> Endpoint<H> {
    pub fn new(_handler: Arc<H>, _config: EndpointConfig) -> Arc<Self> {
        todo!()
    }

    pub fn set_config(&self, _config: EndpointConfig) {
        todo!()
    }

    pub fn metrics(&self) -> &Metrics {
        todo!()
    }

    /// Answer a request for the WebSocket transport: 400 (not a GET upgrade), 403 (vsn,
    /// origin, refused connect), 503 (socket limit) or 101, spawning the socket's task.
    pub fn upgrade(
        self: &Arc<Self>,
        _req: hyper::Request<hyper::body::Incoming>,
        _peer: SocketAddr,
    ) -> hyper::Response<Full<Bytes>> {
        todo!()
    }

    /// Close every open socket with `code` (1001 on shutdown) and wait until all are gone.
    pub async fn close_all(&self, _code: u16) {
        todo!()
    }
}
