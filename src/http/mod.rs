//! The hyper service: routing, the JSON API, health and metrics, the WebSocket upgrade.
//!
//! Architecture invariant: HTTP handlers never broadcast. A write goes to the store's writer;
//! what subscribers see comes from the change capture after commit.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{header, Method, Request, Response, StatusCode};
use serde_json::json;

pub mod auth;

use crate::channels::Cafe;
use crate::phoenix::Endpoint;
use crate::store::{Store, StoreError};

pub type Body = Full<Bytes>;

/// Everything a request handler may need.
pub struct App {
    pub store: Store,
    pub endpoint: Arc<Endpoint<Cafe>>,
    pub auth: Arc<auth::Auth>,
}

/// Answer one request. Never fails: every error is an HTTP answer.
pub async fn handle(
    app: Arc<App>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_owned();
    let response = match (req.method(), path.as_str()) {
        (_, "/socket/websocket") => app.endpoint.upgrade(req, peer),
        (&Method::GET, "/healthz") => healthz(&app).await,
        (_, "/api/session" | "/api/session/token") => match app.auth.route(req, peer).await {
            Ok(response) => response,
            Err(_) => error(StatusCode::NOT_FOUND, "not found"),
        },
        (_, "/healthz") => error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
        _ => error(StatusCode::NOT_FOUND, "not found"),
    };
    Ok(response)
}

async fn healthz(app: &App) -> Response<Body> {
    let alive = app
        .store
        .readers
        .read(|conn| -> Result<i64, StoreError> {
            Ok(conn.query_row("SELECT 1", [], |r| r.get(0))?)
        })
        .await;
    match alive {
        Ok(_) => text(StatusCode::OK, "ok"),
        Err(e) => {
            tracing::warn!(error = %e, "health check failed");
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
