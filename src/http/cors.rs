//! CORS for the frontends listed in `http.allowed_origins` (SPEC 5.3). The headers go on every
//! answer to a listed origin — errors, 204s and 401s included — or the browser hides the
//! answer from the frontend. A foreign origin gets nothing, and the browser enforces that.
//!
//! Also the one origin rule for what a foreign page could make a visitor's browser do with
//! their cookie: HTTP writes ([`Cors::may_write`]) and socket opens (the phoenix endpoint calls
//! [`origin_allowed`]). Origins are compared by scheme, host and port.

use std::sync::RwLock;

use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};

use super::{empty, Body};

const ALLOW_METHODS: &str = "GET, POST, PUT, PATCH, DELETE, OPTIONS";
const ALLOW_HEADERS: &str = "Authorization, Content-Type, Accept, X-Requested-With";
/// How long a browser may cache a preflight answer (seconds).
const MAX_AGE: &str = "600";

/// An origin as compared: scheme and host lower-cased, the port filled in from the scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    /// `scheme://host[:port]` (a trailing slash or path is ignored); `None` for anything else,
    /// `null` included.
    pub fn parse(origin: &str) -> Option<Origin> {
        let (scheme, rest) = origin.trim().split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        let authority = rest.split('/').next()?.rsplit('@').next()?;
        let (host, port) = split_host_port(authority);
        let port = match port {
            Some(p) => p.parse().ok()?,
            None => default_port(&scheme),
        };
        (!host.is_empty()).then(|| Origin {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// The daemon's own origin for this request: the host and port the client sent it to
    /// (`Host`), with `https` when a TLS-terminating proxy says so (`X-Forwarded-Proto`; a
    /// foreign page cannot make a browser send that header), else `http`.
    fn own(headers: &HeaderMap) -> Option<Origin> {
        let scheme = match headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
        {
            Some(p) if p.trim().eq_ignore_ascii_case("https") => "https",
            _ => "http",
        };
        let host = headers.get(header::HOST)?.to_str().ok()?.trim();
        Origin::parse(&format!("{scheme}://{host}"))
    }
}

fn default_port(scheme: &str) -> u16 {
    match scheme {
        "https" | "wss" => 443,
        _ => 80,
    }
}

/// Split `host[:port]`, keeping IPv6 literals (`[::1]:80`) whole.
fn split_host_port(authority: &str) -> (&str, Option<&str>) {
    if authority.starts_with('[') {
        return match authority.find(']') {
            Some(end) => (&authority[..=end], authority[end + 1..].strip_prefix(':')),
            None => (authority, None),
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    }
}

/// The origin rule: no `Origin` (scripts, curl, same-origin navigations of old browsers) →
/// allowed; the daemon's own origin → allowed; an origin of `allowed` (same scheme, host and
/// port) → allowed; anything else, `null` included → refused.
pub fn origin_allowed(headers: &HeaderMap, allowed: &[Origin]) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let Some(origin) = origin.to_str().ok().and_then(Origin::parse) else {
        return false;
    };
    allowed.contains(&origin) || Origin::own(headers).is_some_and(|own| own == origin)
}

/// [`origin_allowed`] with the allowed origins as configured (entries that are no origin are
/// skipped: that trusts less, never more).
pub fn origin_allowed_by(headers: &HeaderMap, allowed: &[String]) -> bool {
    origin_allowed(headers, &parse_all(allowed))
}

fn parse_all(origins: &[String]) -> Vec<Origin> {
    origins.iter().filter_map(|o| Origin::parse(o)).collect()
}

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
    fn own_origin_behind_a_tls_proxy_is_https() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("cafe.example"));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://cafe.example"),
        );
        assert!(!origin_allowed(&headers, &[]));
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        assert!(origin_allowed(&headers, &[]));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://cafe.example"),
        );
        assert!(!origin_allowed(&headers, &[]));
    }

    #[test]
    fn origins_parse_with_default_ports_and_ipv6() {
        let a = Origin::parse("HTTP://Cafe.Example/").unwrap();
        assert_eq!(a, Origin::parse("http://cafe.example:80").unwrap());
        assert_ne!(a, Origin::parse("https://cafe.example").unwrap());
        assert_eq!(Origin::parse("http://[::1]:4000").unwrap().port, 4000);
        assert!(Origin::parse("null").is_none());
        assert!(Origin::parse("http://x:notaport").is_none());
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
