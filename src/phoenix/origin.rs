//! The origin rule for requests a foreign page could make a visitor's browser send with their
//! cookie: socket opens here, and the daemon's HTTP writes (`http::cors`, which uses it).
//! Generic HTTP: origins are compared by scheme, host and port.

use hyper::header::{self, HeaderMap};

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

/// The origins of `origins` that parse (entries that are no origin are skipped: that trusts
/// less, never more).
pub fn parse_all(origins: &[String]) -> Vec<Origin> {
    origins.iter().filter_map(|o| Origin::parse(o)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

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
}
