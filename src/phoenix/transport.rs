//! The endpoint: the checks every new socket passes (vsn, origin, socket limit, the
//! application's connect), the WebSocket upgrade (method and headers, `authToken` subprotocol,
//! the 101 answer), and the registry of open sockets used by [`Endpoint::close_all`]. The
//! per-socket loop lives in `socket.rs`, the LongPoll transport in `longpoll.rs`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, StatusCode};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

use super::frame::Vsn;
use super::longpoll::LongPolls;
use super::origin::origin_allowed_by;
use super::outbox::SocketShared;
use super::per_address::{AddressSlot, PerAddress};
use super::rate::AddressBuckets;
use super::{ConnectInfo, SocketHandler};

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
    /// Sockets (WebSockets and long-poll sessions) one client address may hold; past it the
    /// upgrade gets HTTP 503 and a long-poll open `{"status":500}` (the client backs off).
    pub max_sockets_per_address: usize,
    /// Joins one socket may make per minute (a burst of this many, refilled over a minute);
    /// past it the join is refused with `{"reason":"too many joins"}`.
    pub joins_per_minute_per_socket: u32,
    /// Joins all sockets of one client address may make per minute, same rule.
    pub joins_per_minute_per_address: u32,
    /// Refuse upgrades whose `Origin` is neither the daemon's own origin nor allowed (the rule
    /// of HTTP writes, [`super::origin::origin_allowed`]).
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
            // Phoenix has no per-address bound; the daemon sets one from its configuration.
            max_sockets_per_address: 10_000,
            joins_per_minute_per_socket: u32::MAX,
            joins_per_minute_per_address: u32::MAX,
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
    /// Long polls held open now, waiting for frames for their session: how many clients sit
    /// on the LongPoll fallback, and what a test waits for before it acts on a waiting poll.
    pub waiting_polls: AtomicU64,
}

/// "Going away": the close code of a forced disconnect, as in Phoenix.
const CLOSE_GOING_AWAY: u16 = 1001;

/// Process-unique socket ids, so registries keyed by [`super::Outbox::socket_id`] never mix up
/// sockets of two endpoints.
static NEXT_SOCKET_ID: AtomicU64 = AtomicU64::new(1);

/// A Phoenix socket endpoint (`/socket/websocket`) for one application handler.
pub struct Endpoint<H: SocketHandler> {
    pub(crate) handler: Arc<H>,
    config: RwLock<Arc<EndpointConfig>>,
    pub(crate) metrics: Metrics,
    /// Open (and upgrading) sockets, so `close_all` can reach every one.
    sockets: Mutex<HashMap<u64, Arc<SocketShared>>>,
    /// Signalled whenever a socket leaves the registry.
    socket_gone: Notify,
    /// Set by `close_all`: the endpoint is shutting down and refuses new upgrades (503).
    shutting_down: AtomicBool,
    /// LongPoll sessions by token (each also an open socket above) and their timings.
    pub(crate) long_polls: LongPolls,
    /// Open sockets per client address (`max_sockets_per_address`).
    per_address: Arc<PerAddress>,
    /// Join buckets per client address (`joins_per_minute_per_address`).
    pub(crate) join_buckets: AddressBuckets,
}

impl<H: SocketHandler> Endpoint<H> {
    pub fn new(handler: Arc<H>, config: EndpointConfig) -> Arc<Self> {
        Arc::new(Endpoint {
            handler,
            config: RwLock::new(Arc::new(config)),
            metrics: Metrics::default(),
            sockets: Mutex::new(HashMap::new()),
            socket_gone: Notify::new(),
            shutting_down: AtomicBool::new(false),
            long_polls: LongPolls::new(),
            per_address: PerAddress::new(),
            join_buckets: AddressBuckets::default(),
        })
    }

    /// Replace the settings; open sockets pick up the new values at their next decision
    /// (idle check, join limit); queue and message sizes apply to new sockets.
    pub fn set_config(&self, config: EndpointConfig) {
        let mut guard = self.config.write().unwrap_or_else(|e| e.into_inner());
        *guard = Arc::new(config);
    }

    /// The current settings.
    pub fn config(&self) -> Arc<EndpointConfig> {
        Arc::clone(&self.config.read().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Answer a request for the WebSocket transport: 400 (not a GET upgrade), 403 (vsn,
    /// origin, refused connect), 503 (socket limit) or 101, spawning the socket's task.
    pub async fn upgrade<B>(
        self: &Arc<Self>,
        req: hyper::Request<B>,
        peer: SocketAddr,
    ) -> hyper::Response<Full<Bytes>> {
        if req.method() != Method::GET {
            return respond(StatusCode::BAD_REQUEST, "");
        }
        let Some(key) = websocket_key(req.headers()) else {
            return respond(StatusCode::BAD_REQUEST, "not a WebSocket upgrade request");
        };
        let (auth_token, offers_phoenix) = match subprotocols(req.headers()) {
            Ok(found) => found,
            Err(()) => return respond(StatusCode::FORBIDDEN, ""),
        };
        let query = req.uri().query().unwrap_or("");
        let admitted = self.admit(req.headers(), query, auth_token, peer).await;
        let (slot, session, vsn, config) = match admitted {
            Ok(admitted) => admitted,
            Err(Refusal::Forbidden) => return respond(StatusCode::FORBIDDEN, ""),
            Err(Refusal::Unavailable) => return respond(StatusCode::SERVICE_UNAVAILABLE, ""),
        };

        // Taken out of the request now so the socket task does not carry the request along.
        let on_upgrade = hyper::upgrade::on(req);
        let fut = async move {
            let Ok(upgraded) = on_upgrade.await else {
                tracing::debug!(%peer, "upgrade failed before the socket opened");
                return drop(slot);
            };
            let io = hyper_util::rt::TokioIo::new(upgraded);
            super::socket::run(slot, session, vsn, peer, io, &config).await;
        };
        tokio::spawn(fut);

        let mut response = respond(StatusCode::SWITCHING_PROTOCOLS, "");
        let headers = response.headers_mut();
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
            headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        }
        // Browsers fail the handshake when they offered subprotocols and none is selected.
        // Compression (permessage-deflate) is never negotiated, as in Phoenix's default.
        if offers_phoenix {
            headers.insert(
                header::SEC_WEBSOCKET_PROTOCOL,
                HeaderValue::from_static("phoenix"),
            );
        }
        response
    }

    /// The checks every new socket passes, whatever its transport: `vsn` negotiation, the
    /// origin policy, the socket limit and the application's `connect`, in that order.
    pub(crate) async fn admit(
        self: &Arc<Self>,
        headers: &HeaderMap,
        query: &str,
        auth_token: Option<String>,
        peer: SocketAddr,
    ) -> Result<Admitted<H>, Refusal> {
        let params = parse_query(query);
        let vsn = match params.keys().any(|k| k.starts_with("vsn[")) {
            true => None,
            false => Vsn::negotiate(params.get("vsn").map(String::as_str)),
        };
        let Some(vsn) = vsn else {
            tracing::warn!(%peer, query = %redact_query(query), "refused socket: unsupported vsn");
            return Err(Refusal::Forbidden);
        };
        let config = self.config();
        if !self.origin_ok(headers, &config) {
            tracing::warn!(%peer, origin = ?headers.get(header::ORIGIN), "refused socket: origin");
            return Err(Refusal::Forbidden);
        }
        let info = ConnectInfo {
            params,
            auth_token,
            headers: headers.clone(),
            peer,
        };
        let slot = self
            .reserve_slot(&config, peer)
            .ok_or(Refusal::Unavailable)?;
        let session = match self.handler.connect(&info).await {
            Ok(session) => {
                if let Some(id) = self.handler.id(&session) {
                    let _ = slot.shared.app_id.set(id);
                }
                Arc::new(session)
            }
            Err(refused) => {
                tracing::debug!(%peer, query = %redact_query(query), reason = %refused.0, "socket refused");
                return Err(Refusal::Forbidden);
            }
        };
        tracing::debug!(%peer, query = %redact_query(query), ?vsn, "socket connected");
        Ok((slot, session, vsn, config))
    }

    /// Whether the request's `Origin` passes the endpoint's policy.
    pub(crate) fn origin_ok(&self, headers: &HeaderMap, config: &EndpointConfig) -> bool {
        // One origin rule for sockets and HTTP writes, so that what a foreign page cannot do
        // over HTTP it cannot do over a socket either.
        !config.check_origin || origin_allowed_by(headers, &config.allowed_origins)
    }

    /// Register a new socket if the limits allow (its address's, then the endpoint's); the
    /// guard unregisters it when dropped.
    fn reserve_slot(
        self: &Arc<Self>,
        config: &EndpointConfig,
        peer: SocketAddr,
    ) -> Option<SocketSlot<H>> {
        if self.shutting_down.load(Ordering::Acquire) {
            return None;
        }
        let Some(address) = self
            .per_address
            .try_acquire(peer.ip(), config.max_sockets_per_address)
        else {
            tracing::debug!(%peer, "refused socket: too many from this address");
            return None;
        };
        let open = self.metrics.open_sockets.fetch_add(1, Ordering::AcqRel);
        if open >= config.max_sockets as u64 {
            self.metrics.open_sockets.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        let shared = Arc::new(SocketShared::new(
            NEXT_SOCKET_ID.fetch_add(1, Ordering::Relaxed),
            config.outbound_queue,
        ));
        self.lock_sockets().insert(shared.id, Arc::clone(&shared));
        Some(SocketSlot {
            endpoint: Arc::clone(self),
            shared,
            _address: address,
        })
    }

    fn lock_sockets(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<SocketShared>>> {
        self.sockets.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Close every socket whose application id ([`SocketHandler::id`]) is `id` with 1001, as
    /// Phoenix does for `Endpoint.broadcast(id, "disconnect", %{})`: their clients reconnect,
    /// which runs `connect` again (a revoked credential then gets 403). Returns how many.
    pub fn disconnect(&self, id: &str) -> usize {
        let sockets = self.lock_sockets();
        let mut closed = 0;
        for shared in sockets.values() {
            if shared.app_id.get().is_some_and(|own| own == id) {
                shared.request_close(CLOSE_GOING_AWAY);
                closed += 1;
            }
        }
        closed
    }

    /// The application ids ([`SocketHandler::id`]) of the open sockets, each once: for an
    /// application that checks, now and then, whether what vouched for them still holds.
    pub fn socket_ids(&self) -> std::collections::HashSet<String> {
        let sockets = self.lock_sockets();
        sockets
            .values()
            .filter_map(|shared| shared.app_id.get().cloned())
            .collect()
    }

    /// Close every open socket with `code` (1001 on shutdown) and wait until all are gone.
    /// From then on the endpoint refuses upgrades with 503, so reconnecting clients cannot
    /// keep the wait going.
    pub async fn close_all(&self, code: u16) {
        self.shutting_down.store(true, Ordering::Release);
        for shared in self.lock_sockets().values() {
            shared.request_close(code);
        }
        loop {
            let gone = self.socket_gone.notified();
            tokio::pin!(gone);
            gone.as_mut().enable();
            if self.lock_sockets().is_empty() {
                return;
            }
            gone.await;
        }
    }
}

/// A socket that passed [`Endpoint::admit`]: its slot, the application's session, the
/// negotiated serializer and the settings it was admitted under.
pub(crate) type Admitted<H> = (
    SocketSlot<H>,
    Arc<<H as SocketHandler>::Session>,
    Vsn,
    Arc<EndpointConfig>,
);

/// Why [`Endpoint::admit`] turned a socket away.
pub(crate) enum Refusal {
    /// vsn, origin or the application's connect (WebSocket: HTTP 403).
    Forbidden,
    /// Socket limit reached or shutting down (WebSocket: HTTP 503).
    Unavailable,
}

/// One open socket's place in the endpoint: counted in `open_sockets` and reachable by
/// `close_all` for exactly as long as this guard lives.
pub(crate) struct SocketSlot<H: SocketHandler> {
    pub(crate) endpoint: Arc<Endpoint<H>>,
    pub(crate) shared: Arc<SocketShared>,
    /// The socket's place in its client address's count, given back with the slot.
    _address: AddressSlot,
}

impl<H: SocketHandler> Drop for SocketSlot<H> {
    fn drop(&mut self) {
        self.endpoint.lock_sockets().remove(&self.shared.id);
        self.endpoint
            .metrics
            .open_sockets
            .fetch_sub(1, Ordering::AcqRel);
        self.endpoint.socket_gone.notify_waiters();
    }
}

fn respond(status: StatusCode, body: &'static str) -> hyper::Response<Full<Bytes>> {
    let mut response = hyper::Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response
}

/// Whether a header holds `token` in its comma-separated list (case-insensitive).
fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

/// The `Sec-WebSocket-Key` of a valid version-13 upgrade request.
fn websocket_key(headers: &HeaderMap) -> Option<String> {
    let upgrade = header_has_token(headers, header::CONNECTION, "upgrade")
        && header_has_token(headers, header::UPGRADE, "websocket")
        && headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .is_some_and(|v| v == "13");
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)?
        .to_str()
        .ok()?
        .trim();
    (upgrade && !key.is_empty()).then(|| key.to_owned())
}

/// Query parameters with Plug semantics: `application/x-www-form-urlencoded` (`+` and
/// percent-escapes decoded, a broken escape kept as it came), empty segments and empty keys
/// ignored, the last value of a repeated key wins. `a[b]=c` stays the flat key `a[b]`.
pub fn parse_query(query: &str) -> HashMap<String, String> {
    form_urlencoded::parse(query.as_bytes())
        .filter(|(key, _)| !key.is_empty())
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect()
}

/// The query string for logs, with the values of token-like keys hidden.
pub fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|segment| match segment.split_once('=') {
            Some((key, _)) if key.to_ascii_lowercase().contains("token") => {
                format!("{key}=[redacted]")
            }
            _ => segment.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

const AUTH_TOKEN_PREFIX: &str = "base64url.bearer.phx.";

/// The `authToken` carried as a subprotocol, and whether `phoenix` was offered. The 1.8 client
/// uses the standard alphabet without padding; either alphabet, padded or not, is accepted.
/// An undecodable token refuses the connection.
fn subprotocols(headers: &HeaderMap) -> Result<(Option<String>, bool), ()> {
    let mut token = None;
    let mut phoenix = false;
    for value in headers.get_all(header::SEC_WEBSOCKET_PROTOCOL) {
        let Ok(value) = value.to_str() else { continue };
        for offered in value.split(',').map(str::trim) {
            if offered == "phoenix" {
                phoenix = true;
            } else if let Some(encoded) = offered.strip_prefix(AUTH_TOKEN_PREFIX) {
                token = Some(decode_token(encoded).ok_or(())?);
            }
        }
    }
    Ok((token, phoenix))
}

fn decode_token(encoded: &str) -> Option<String> {
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    let trimmed = encoded.trim_end_matches('=');
    let bytes = STANDARD_NO_PAD
        .decode(trimmed)
        .or_else(|_| URL_SAFE_NO_PAD.decode(trimmed))
        .ok()?;
    // `btoa` encodes Latin-1; UTF-8 tokens (ASCII in practice) decode as themselves.
    Some(
        String::from_utf8(bytes)
            .unwrap_or_else(|e| e.into_bytes().iter().map(|&b| b as char).collect()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, HeaderValue::from_str(v).expect("header"));
        }
        map
    }

    #[test]
    fn query_has_plug_semantics() {
        let p = parse_query("token=user&&vsn=2.0.0&token=T&nested%5Ba%5D=1&s=x%20y+z&flag");
        assert_eq!(p["token"], "T");
        assert_eq!(p["vsn"], "2.0.0");
        assert_eq!(p["nested[a]"], "1");
        assert_eq!(p["s"], "x y z");
        assert_eq!(p["flag"], "");
        assert_eq!(p.len(), 5);
        assert_eq!(parse_query("a=%zz&b=%4")["a"], "%zz");
        assert_eq!(parse_query("b=%4")["b"], "%4");
        // `from_str_radix` takes a sign: a decoder built on it read `%+9` as a tab.
        assert_eq!(parse_query("c=2%+9")["c"], "2% 9");
        assert_eq!(parse_query("=x&d=%E2%82%AC%FF")["d"], "€\u{FFFD}");
        assert_eq!(parse_query("=x").len(), 0);
    }

    #[test]
    fn tokens_are_redacted_from_logged_queries() {
        assert_eq!(
            redact_query("token=abc&vsn=2.0.0"),
            "token=[redacted]&vsn=2.0.0"
        );
        assert_eq!(redact_query("authToken=x"), "authToken=[redacted]");
    }

    #[test]
    fn auth_token_subprotocol_is_decoded() {
        let h = headers(&[(
            "sec-websocket-protocol",
            "phoenix, base64url.bearer.phx.bXkgc2VjcmV0IHRva2VuIT8",
        )]);
        assert_eq!(
            subprotocols(&h),
            Ok((Some("my secret token!?".into()), true))
        );
        let h = headers(&[(
            "sec-websocket-protocol",
            "base64url.bearer.phx.bXkgc2VjcmV0IHRva2VuIT8=",
        )]);
        assert_eq!(
            subprotocols(&h),
            Ok((Some("my secret token!?".into()), false))
        );
        let h = headers(&[("sec-websocket-protocol", "base64url.bearer.phx.Pz8_")]);
        assert_eq!(subprotocols(&h), Ok((Some("???".into()), false)));
        let h = headers(&[("sec-websocket-protocol", "base64url.bearer.phx.!!")]);
        assert_eq!(subprotocols(&h), Err(()));
    }
}
