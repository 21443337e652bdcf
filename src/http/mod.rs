//! The hyper service: routing, the JSON API, health and metrics, the WebSocket upgrade.
//!
//! Architecture invariant: HTTP handlers never broadcast. A write goes to the store's writer;
//! what subscribers see comes from the change capture after commit.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{header, HeaderMap, Method, Request, Response, StatusCode};
use jiff::tz::TimeZone;
use serde_json::json;

pub mod api;
pub mod auth;
pub mod cors;
pub mod deadline;
pub mod images;
pub mod metrics;
pub mod routes;

use crate::channels::Cafe;
use crate::clock::Clock;
use crate::config::Config;
use crate::phoenix::Endpoint;
use crate::store::orders::OrderLimits;
use crate::store::{RecordCtx, Store};

use crate::net::{ClientAddr, IpRange, TrustedProxies};
use auth::Auth;
use cors::Cors;
pub use deadline::Incoming;

pub type Body = Full<Bytes>;

/// Everything a request handler may need.
pub struct App {
    pub store: Store,
    pub endpoint: Arc<Endpoint<Cafe>>,
    /// Sessions: who a request comes from, and the `/api/session*` routes.
    pub auth: Arc<Auth>,
    /// "Now" for `updated_at`, `inserted_at` and the local day of `day_id`.
    pub clock: Arc<dyn Clock>,
    /// The café's time zone: where local days (`day_id`, `from_date`) begin.
    pub tz: TimeZone,
    /// Allowed frontend origins; replaced on config reload.
    pub cors: Cors,
    /// What `/metrics` shows besides the endpoint's own figures, made by whoever serves.
    pub metrics: Arc<crate::ops::metrics::Sources>,
    settings: RwLock<Settings>,
    /// `http.trusted_proxies`: whose forwarding headers name the client; replaced on reload.
    proxies: RwLock<TrustedProxies>,
}

/// The parts of the configuration the API reads on every request; replaced on config reload.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `http.public_url` without a trailing slash; empty: build URLs from the request's `Host`.
    pub public_url: String,
    /// Anonymous callers may read (GET) every collection.
    pub public_read: bool,
    /// Largest JSON body.
    pub max_body_bytes: usize,
    /// Largest multipart body (item images).
    pub max_upload_bytes: usize,
    /// How much one order may hold (`limits.max_order_lines`, `limits.max_order_bytes`).
    pub order_limits: OrderLimits,
    /// How long any request's body may take to arrive (`limits.body_seconds`); then 408.
    pub body_time: Duration,
    /// Open TCP connections one client address may hold (`limits.max_connections_per_address`).
    pub max_connections_per_address: usize,
    /// Who may read `/metrics` besides loopback and the admin token (`http.metrics_allowed`).
    pub metrics_allowed: Vec<IpRange>,
    /// Days of orders an unpaged order list without `from_date` holds
    /// (`limits.order_snapshot_days`, as an order join).
    pub order_snapshot_days: u32,
    /// Records in one unpaged list at most, the newest kept (`limits.snapshot_max_records`).
    pub snapshot_max_records: usize,
}

impl Settings {
    pub fn from_config(config: &Config) -> Settings {
        Settings {
            public_url: config.http.public_url.trim_end_matches('/').to_owned(),
            public_read: config.access.public_read,
            max_body_bytes: config.limits.max_body_bytes,
            max_upload_bytes: config.limits.max_upload_bytes,
            order_limits: OrderLimits {
                max_lines: config.limits.max_order_lines,
                max_bytes: config.limits.max_order_bytes,
            },
            body_time: Duration::from_secs(config.limits.body_seconds),
            max_connections_per_address: config.limits.max_connections_per_address,
            // Validated at load; an entry that does not parse allows less, never more.
            metrics_allowed: config
                .http
                .metrics_allowed
                .iter()
                .filter_map(|a| IpRange::parse(a).ok())
                .collect(),
            order_snapshot_days: config.limits.order_snapshot_days,
            snapshot_max_records: config.limits.snapshot_max_records,
        }
    }
}

impl App {
    pub fn new(
        store: Store,
        endpoint: Arc<Endpoint<Cafe>>,
        auth: Arc<Auth>,
        clock: Arc<dyn Clock>,
        metrics: Arc<crate::ops::metrics::Sources>,
        config: &Config,
    ) -> App {
        App {
            store,
            endpoint,
            auth,
            clock,
            metrics,
            tz: config.time_zone(),
            cors: Cors::new(config.http.allowed_origins.clone()),
            settings: RwLock::new(Settings::from_config(config)),
            proxies: RwLock::new(TrustedProxies::from_config(&config.http.trusted_proxies)),
        }
    }

    /// Apply a reloaded configuration: origins, trusted proxies, limits and access take effect
    /// with the next request. `http.public_url` stays as started, like the store's record
    /// URLs, so that an HTTP answer and a broadcast never disagree about where an image lives.
    pub fn set_config(&self, config: &Config) {
        self.cors.set_origins(config.http.allowed_origins.clone());
        *self.proxies.write().unwrap_or_else(|e| e.into_inner()) =
            TrustedProxies::from_config(&config.http.trusted_proxies);
        let mut settings = self.settings.write().unwrap_or_else(|e| e.into_inner());
        let public_url = std::mem::take(&mut settings.public_url);
        *settings = Settings {
            public_url,
            ..Settings::from_config(config)
        };
    }

    /// Who sent a request that arrived from `peer`: the peer itself, or the client a trusted
    /// proxy forwarded (`http.trusted_proxies`).
    pub fn client_addr(&self, headers: &HeaderMap, peer: SocketAddr) -> SocketAddr {
        self.proxies
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .client_addr(headers, peer)
    }

    /// How many TCP connections the peer `ip` may hold open; `None` for a trusted proxy, whose
    /// connections carry many clients.
    pub fn connection_limit(&self, ip: std::net::IpAddr) -> Option<usize> {
        let proxies = self.proxies.read().unwrap_or_else(|e| e.into_inner());
        if proxies.is_proxy(ip) {
            return None;
        }
        drop(proxies);
        Some(
            self.settings
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .max_connections_per_address,
        )
    }

    pub fn settings(&self) -> Settings {
        self.settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How records in a response render image URLs: `http.public_url` when set, else the
    /// host the client used to reach us (the frontend puts the URL straight into `<img src>`),
    /// with `https` when a proxy says so in `X-Forwarded-Proto`.
    pub fn record_ctx(&self, headers: &HeaderMap) -> RecordCtx {
        let public_url = self.settings().public_url;
        if !public_url.is_empty() {
            return RecordCtx { public_url };
        }
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| !h.is_empty() && !h.contains(['/', ' ', '@']))
            .unwrap_or("localhost");
        // Behind a TLS-terminating proxy the page is https; an http image URL would be
        // blocked as mixed content.
        let scheme = match headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
        {
            Some(p) if p.trim().eq_ignore_ascii_case("https") => "https",
            _ => "http",
        };
        RecordCtx {
            public_url: format!("{scheme}://{host}"),
        }
    }
}

/// Answer one request from the TCP peer `peer`. Never fails: every error is an HTTP answer.
pub async fn handle(
    app: Arc<App>,
    req: Request<hyper::body::Incoming>,
    peer: SocketAddr,
) -> Result<Response<Body>, Infallible> {
    // Every route reads its body under the same deadline; whatever the route answered to a
    // body cut off by it, the client gets 408.
    let expired = Arc::new(AtomicBool::new(false));
    let body_time = app.settings().body_time;
    let req = req.map(|body| Incoming::new(body, body_time, Arc::clone(&expired)));
    let mut response = route(&app, req, peer).await;
    if expired.load(Ordering::Acquire) {
        let mut timed_out = error(
            StatusCode::REQUEST_TIMEOUT,
            "the request body did not arrive in time",
        );
        // The route's CORS headers stay, so a listed frontend sees the 408 itself.
        for (name, value) in response.headers() {
            if name.as_str().starts_with("access-control-") || name == header::VARY {
                timed_out.headers_mut().append(name, value.clone());
            }
        }
        // The rest of the body may still come; the connection cannot be reused.
        timed_out.headers_mut().insert(
            header::CONNECTION,
            header::HeaderValue::from_static("close"),
        );
        response = timed_out;
    }
    Ok(response)
}

async fn route(app: &Arc<App>, mut req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    // Behind a reverse proxy every peer is the proxy; rate limits and log lines are about
    // the client it forwards.
    let client = ClientAddr(app.client_addr(req.headers(), peer));
    req.extensions_mut().insert(client);
    // HEAD is GET without the body, on every route that answers GET: routed as a GET here
    // once; hyper knows the request was a HEAD and sends the head only (Content-Length of
    // the body it would have sent). Not on the socket paths: a GET there opens a socket.
    if req.method() == Method::HEAD && !req.uri().path().starts_with("/socket/") {
        *req.method_mut() = Method::GET;
    }
    routes::route(app, req, client).await
}

/// How long `/healthz` waits for the database before it answers 503.
const HEALTH_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// 200 `ok` when the daemon passes the check the watchdog pings on, else 503.
pub(crate) async fn healthz(app: &App) -> Response<Body> {
    let store = &app.store;
    match crate::ops::health::check(&store.readers, &store.writer, HEALTH_WAIT).await {
        Ok(()) => text(StatusCode::OK, "ok"),
        Err(why) => {
            tracing::warn!("health check failed: {why}");
            text(StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
        }
    }
}

pub fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

pub fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

/// `{"errors": {"detail": [message]}}` with `status`.
pub fn error(status: StatusCode, message: &str) -> Response<Body> {
    json_response(status, &json!({"errors": {"detail": [message]}}))
}

/// 405 with the `Allow` header listing what the route does take.
pub fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut response = error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    response
        .headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static(allow));
    response
}

/// An empty answer (204 No Content, 304 Not Modified).
pub fn empty(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}
