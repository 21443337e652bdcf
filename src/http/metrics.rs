//! `GET /metrics`: who may read the figures, and the Prometheus text answer. The figures come
//! from [`crate::ops::metrics::Sources`], which the server hands to [`App`].

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{header, HeaderMap, Response, StatusCode};

use super::{error, App, Body};

/// The answer to `GET /metrics` for `client`: the figures to those allowed by [`may_read`],
/// 403 to anyone else.
pub fn guarded(app: &App, headers: &HeaderMap, client: SocketAddr) -> Response<Body> {
    if !may_read(app, headers, client) {
        tracing::debug!(%client, "metrics refused");
        return error(
            StatusCode::FORBIDDEN,
            "metrics are for loopback, access.admin_token and http.metrics_allowed",
        );
    }
    let figures = app.metrics.figures(app.endpoint.metrics());
    let text = crate::ops::metrics::render(&figures);
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = StatusCode::OK;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// Who may read the figures (socket counts, traffic, order rates tell an outsider when the
/// café is busy and how to time an attack): loopback clients (the Pi itself), holders of
/// `access.admin_token`, and the addresses of `http.metrics_allowed`. `client` is the address
/// a trusted proxy forwarded, so a local reverse proxy does not make everyone loopback.
pub fn may_read(app: &App, headers: &HeaderMap, client: SocketAddr) -> bool {
    let ip = client.ip().to_canonical();
    if ip.is_loopback() {
        return true;
    }
    let settings = app.settings();
    if settings.metrics_allowed.iter().any(|r| r.contains(ip)) {
        return true;
    }
    app.auth.admin_token().in_bearer(headers)
}
