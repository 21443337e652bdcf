//! CORS for the frontends listed in `http.allowed_origins` (SPEC 5.3). The headers go on every
//! answer to a listed origin — errors, 204s and 401s included — or the browser hides the
//! answer from the frontend. A foreign origin gets nothing, and the browser enforces that.
//!
//! HTTP writes ([`Cors::may_write`]) follow the one origin rule for what a foreign page could
//! make a visitor's browser do with their cookie, [`origin_allowed`]; it lives with the socket
//! transports that apply it too (`phoenix::origin`). Origins are compared by scheme, host and
//! port.

use std::sync::RwLock;

use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};

use super::{empty, Body};
use crate::phoenix::origin::parse_all;
pub use crate::phoenix::origin::{origin_allowed, Origin};

const ALLOW_METHODS: &str = "GET, POST, PUT, PATCH, DELETE, OPTIONS";
const ALLOW_HEADERS: &str = "Authorization, Content-Type, Accept, X-Requested-With";
/// How long a browser may cache a preflight answer (seconds).
const MAX_AGE: &str = "600";

/// The allowed origins, replaceable while running (config reload).
#[derive(Debug, Default)]
pub struct Cors {
    origins: RwLock<Vec<Origin>>,
}

impl Cors {
    pub fn new(origins: Vec<String>) -> Cors {
        Cors {
            origins: RwLock::new(parse_all(&origins)),
        }
    }

    pub fn set_origins(&self, origins: Vec<String>) {
        *self.origins.write().unwrap_or_else(|e| e.into_inner()) = parse_all(&origins);
    }

    /// The request's `Origin` when it is listed, to be echoed back.
    pub fn origin(&self, headers: &HeaderMap) -> Option<HeaderValue> {
        let origin = headers.get(header::ORIGIN)?;
        let parsed = Origin::parse(origin.to_str().ok()?)?;
        let origins = self.origins.read().unwrap_or_else(|e| e.into_inner());
        origins.contains(&parsed).then(|| origin.clone())
    }

    /// Whether a state-changing request may proceed ([`origin_allowed`]). A form on a foreign
    /// page can POST `multipart/form-data` without a preflight and with the admin's cookie
    /// (when `SameSite=None`); refusing foreign origins closes that door.
    pub fn may_write(&self, headers: &HeaderMap) -> bool {
        let origins = self.origins.read().unwrap_or_else(|e| e.into_inner());
        origin_allowed(headers, &origins)
    }
}

/// The answer to a preflight `OPTIONS` (CORS headers are added by [`decorate`]).
pub fn preflight() -> Response<Body> {
    let mut response = empty(StatusCode::NO_CONTENT);
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(ALLOW_METHODS));
    response
}

/// Add the CORS headers for a listed `origin`; `Vary: Origin` whenever the request carried an
/// `Origin`, so that a cache never serves one origin's answer to another.
pub fn decorate(response: &mut Response<Body>, origin: Option<HeaderValue>, had_origin: bool) {
    let headers = response.headers_mut();
    if had_origin {
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    let Some(origin) = origin else {
        return;
    };
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(ALLOW_METHODS),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(ALLOW_HEADERS),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static(MAX_AGE),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_origin(origin: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
        headers
    }

    #[test]
    fn listed_origin_is_echoed_exactly() {
        let cors = Cors::new(vec!["https://kaffediem.example/".into()]);
        let got = cors.origin(&with_origin("https://kaffediem.example"));
        assert_eq!(got.unwrap(), "https://kaffediem.example");
        assert!(cors.origin(&with_origin("https://evil.example")).is_none());
        assert!(cors.origin(&HeaderMap::new()).is_none());
    }

    #[test]
    fn origins_can_be_replaced_while_running() {
        let cors = Cors::new(vec!["http://a.example".into()]);
        cors.set_origins(vec!["http://b.example".into()]);
        assert!(cors.origin(&with_origin("http://a.example")).is_none());
        assert!(cors.origin(&with_origin("http://b.example")).is_some());
    }

    #[test]
    fn writes_from_foreign_pages_are_refused() {
        let cors = Cors::new(vec!["http://front.example".into()]);
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("pi.local:4000"));
        assert!(cors.may_write(&headers), "no Origin: a script");
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://pi.local:4000"),
        );
        assert!(cors.may_write(&headers), "our own page");
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://front.example"),
        );
        assert!(cors.may_write(&headers), "a listed frontend");
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(!cors.may_write(&headers));
        headers.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(!cors.may_write(&headers), "sandboxed frames send null");
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://pi.local:4000"),
        );
        assert!(
            !cors.may_write(&headers),
            "our host and port, another scheme"
        );
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://pi.local:8080"),
        );
        assert!(!cors.may_write(&headers), "our host, another port");
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://front.example:80"),
        );
        assert!(cors.may_write(&headers), "the default port spelled out");
    }

    #[test]
    fn foreign_origin_gets_vary_only() {
        let mut response = empty(StatusCode::NOT_FOUND);
        decorate(&mut response, None, true);
        assert!(response
            .headers()
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .is_none());
        assert_eq!(response.headers()[header::VARY], "Origin");
    }
}
