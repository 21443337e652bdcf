//! Client addresses, below both `config` (which validates the ranges) and `http` (which
//! resolves one per request).
//!
//! Who a request comes from when a reverse proxy stands in front (`http.trusted_proxies`):
//! the TCP peer, unless that peer is a trusted proxy — then the address it forwarded in
//! `X-Forwarded-For`, or in `Forwarded: for=` (RFC 7239) when there is no `X-Forwarded-For`.
//!
//! Headers from any other peer are ignored, so a client cannot pick its own address (and its
//! own login rate-limit bucket). A forwarding header that cannot be read gives the peer back:
//! the answer is never an address nobody vouched for.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use hyper::header::{HeaderMap, HeaderName};

/// The client a request came from (after `http.trusted_proxies`), for routes that share
/// something per client (the bulk lane's turns).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// One entry of `http.trusted_proxies`: an address (`10.0.0.1`, `::1`) or a CIDR range
/// (`10.0.0.0/8`, `fd00::/8`). Host bits below the prefix are ignored, as nginx and Go do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    network: IpAddr,
    prefix: u8,
}

/// Why an `http.trusted_proxies` entry is not an [`IpRange`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRange(&'static str);

impl fmt::Display for BadRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl IpRange {
    pub fn parse(text: &str) -> Result<IpRange, BadRange> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = addr
            .parse()
            .map_err(|_| BadRange("not an IP address or CIDR range such as 10.0.0.0/8"))?;
        let bits = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= bits)
                .ok_or(match bits {
                    32 => BadRange("the prefix length of an IPv4 range is 0 to 32"),
                    _ => BadRange("the prefix length of an IPv6 range is 0 to 128"),
                })?,
        };
        Ok(IpRange {
            network: mask(network, prefix),
            prefix,
        })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        // A dual-stack listener sees IPv4 clients as `::ffff:a.b.c.d`.
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.network.is_ipv4() && mask(ip, self.prefix) == self.network
    }
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let keep = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & keep))
        }
        IpAddr::V6(v6) => {
            let keep = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & keep))
        }
    }
}

/// The proxies whose forwarding headers are believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpRange>);

/// A hop named in a forwarding header: its address, and its port when the header gave one.
type Hop = (IpAddr, Option<u16>);

impl TrustedProxies {
    /// From `http.trusted_proxies` (validated at load; an entry that does not parse is skipped,
    /// which trusts less, never more).
    pub fn from_config(entries: &[String]) -> TrustedProxies {
        TrustedProxies(
            entries
                .iter()
                .filter_map(|e| IpRange::parse(e).ok())
                .collect(),
        )
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|range| range.contains(ip))
    }

    /// Whether `peer` is one of the proxies (its connections carry many clients, so it is
    /// exempt from per-address limits).
    pub fn is_proxy(&self, peer: IpAddr) -> bool {
        self.trusts(peer)
    }

    /// The client's address for a request that arrived from `peer`. The port is the hop's own
    /// when the header names one, else the peer's.
    pub fn client_addr(&self, headers: &HeaderMap, peer: SocketAddr) -> SocketAddr {
        if self.0.is_empty() || !self.trusts(peer.ip()) {
            return peer;
        }
        let hops: Vec<Option<Hop>> = if headers.contains_key(X_FORWARDED_FOR) {
            x_forwarded_for(headers)
        } else {
            forwarded_for(headers)
        };
        match self.client_among(&hops) {
            Some((ip, port)) => SocketAddr::new(ip, port.unwrap_or(peer.port())),
            None => peer,
        }
    }

    /// Walk the hops from the nearest (rightmost) back: each proxy appended the address it
    /// got the request from, so the first hop that is not a trusted proxy is the client, and
    /// everything left of it is whatever the client chose to send. `None` (use the peer) when
    /// the walk meets an unreadable or hidden hop, or there are no hops at all; when every hop
    /// is a trusted proxy, the leftmost.
    fn client_among(&self, hops: &[Option<Hop>]) -> Option<Hop> {
        let mut leftmost = None;
        for hop in hops.iter().rev() {
            let (ip, port) = (*hop)?;
            let ip = ip.to_canonical();
            if !self.trusts(ip) {
                return Some((ip, port));
            }
            leftmost = Some((ip, port));
        }
        leftmost
    }
}

/// Every `X-Forwarded-For` entry, in order, across repeated header lines; `None` for an entry
/// that is not an address. Bytes, not text: a non-ASCII entry spoils only itself.
fn x_forwarded_for(headers: &HeaderMap) -> Vec<Option<Hop>> {
    headers
        .get_all(X_FORWARDED_FOR)
        .iter()
        .flat_map(|value| value.as_bytes().split(|b| *b == b','))
        .map(|entry| std::str::from_utf8(entry).ok().and_then(parse_hop))
        .collect()
}

/// The `for=` of every `Forwarded` element, in order; `None` for an element without a
/// readable `for=` address (`unknown`, an obfuscated `_name`, garbage).
fn forwarded_for(headers: &HeaderMap) -> Vec<Option<Hop>> {
    let mut hops = Vec::new();
    for value in headers.get_all(FORWARDED) {
        let Ok(value) = value.to_str() else {
            hops.push(None);
            continue;
        };
        for element in split_unquoted(value, ',') {
            let node = split_unquoted(element, ';').into_iter().find_map(|pair| {
                let (name, value) = pair.split_once('=')?;
                name.trim()
                    .eq_ignore_ascii_case("for")
                    .then(|| unquote(value.trim()))
            });
            // RFC 7239 brackets every IPv6 address: a bare one may have its port glued on.
            let hop = node.as_deref().and_then(|n| {
                parse_hop(n).filter(|(ip, _)| ip.is_ipv4() || n.trim_start().starts_with('['))
            });
            hops.push(hop);
        }
    }
    hops
}

/// `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]`, `[2001:db8::1]:4711`; an
/// obfuscated port (`1.2.3.4:_p`) counts as none.
fn parse_hop(text: &str) -> Option<Hop> {
    let text = text.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some((ip, None));
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some((addr.ip(), Some(addr.port())));
    }
    let host = match text.rsplit_once(':') {
        Some((host, port)) if port.starts_with('_') => host,
        _ => text,
    };
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse::<Ipv6Addr>().ok().map(|ip| (IpAddr::V6(ip), None));
    }
    host.parse::<Ipv4Addr>()
        .ok()
        .map(|ip| (IpAddr::V4(ip), None))
}

/// Split at `separator` outside double-quoted strings (RFC 7230 quoted-string, `\` escapes).
fn split_unquoted(text: &str, separator: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in text.char_indices() {
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == separator && !quoted {
            parts.push(&text[start..i]);
            start = i + c.len_utf8();
        }
    }
    parts.push(&text[start..]);
    parts
}

/// The content of a quoted-string, or a token as it is.
fn unquote(value: &str) -> String {
    let Some(inner) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) else {
        return value.to_owned();
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEER: &str = "127.0.0.1:50000";

    fn proxies(list: &[&str]) -> TrustedProxies {
        let entries: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        TrustedProxies::from_config(&entries)
    }

    /// The client address of a request from `peer` with `headers`, as text.
    fn client(trusted: &[&str], peer: &str, headers: &[(&str, &[u8])]) -> String {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                hyper::header::HeaderValue::from_bytes(value).unwrap(),
            );
        }
        proxies(trusted)
            .client_addr(&map, peer.parse().unwrap())
            .to_string()
    }

    fn xff(trusted: &[&str], value: &str) -> String {
        client(trusted, PEER, &[("x-forwarded-for", value.as_bytes())])
    }

    fn fwd(value: &str) -> String {
        client(&["127.0.0.1"], PEER, &[("forwarded", value.as_bytes())])
    }

    #[test]
    fn ranges_parse_and_match() {
        let r = IpRange::parse("10.0.0.0/8").unwrap();
        assert!(r.contains("10.200.3.4".parse().unwrap()));
        assert!(!r.contains("11.0.0.1".parse().unwrap()));
        assert!(r.contains("::ffff:10.1.2.3".parse().unwrap()), "v4-mapped");
        let one = IpRange::parse("192.168.1.7").unwrap();
        assert!(one.contains("192.168.1.7".parse().unwrap()));
        assert!(!one.contains("192.168.1.8".parse().unwrap()));
        let v6 = IpRange::parse("fd00::/8").unwrap();
        assert!(v6.contains("fd12:3456::1".parse().unwrap()));
        assert!(!v6.contains("fe80::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        assert!(IpRange::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(IpRange::parse("::/0")
            .unwrap()
            .contains("2001:db8::1".parse().unwrap()));
        assert_eq!(
            IpRange::parse("10.1.2.3/8"),
            IpRange::parse("10.0.0.0/8"),
            "host bits ignored"
        );
    }

    #[test]
    fn bad_ranges_are_refused() {
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "10.0.0.0/",
            "10.0.0.0/-1",
            "localhost",
            " 10.0.0.1",
            "10.0.0.0/8/8",
            "1.2.3.4:80",
        ] {
            assert!(IpRange::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client() {
        assert_eq!(xff(&[], "203.0.113.7"), PEER);
        let forwarded = client(&[], PEER, &[("forwarded", b"for=203.0.113.7")]);
        assert_eq!(forwarded, PEER);
    }

    #[test]
    fn headers_from_an_untrusted_peer_are_ignored() {
        assert_eq!(xff(&["10.0.0.0/8"], "203.0.113.7"), PEER);
    }

    #[test]
    fn a_trusted_peer_forwards_the_client_with_the_peers_port() {
        assert_eq!(xff(&["127.0.0.1"], "203.0.113.7"), "203.0.113.7:50000");
        assert_eq!(xff(&["127.0.0.0/8"], " 203.0.113.7 "), "203.0.113.7:50000");
    }

    #[test]
    fn trusted_hops_are_skipped_from_the_right() {
        let trusted = ["127.0.0.1", "10.0.0.0/8"];
        // The client made up the first entry; our proxies appended the rest.
        assert_eq!(
            xff(&trusted, "6.6.6.6, 203.0.113.7, 10.1.1.1, 10.2.2.2"),
            "203.0.113.7:50000"
        );
        assert_eq!(
            xff(&trusted, "10.1.1.1, 10.2.2.2"),
            "10.1.1.1:50000",
            "leftmost"
        );
    }

    #[test]
    fn repeated_header_lines_form_one_list() {
        let got = client(
            &["127.0.0.1", "10.0.0.0/8"],
            PEER,
            &[
                ("x-forwarded-for", b"6.6.6.6"),
                ("x-forwarded-for", b"203.0.113.7, 10.0.0.2"),
            ],
        );
        assert_eq!(got, "203.0.113.7:50000");
    }

    #[test]
    fn ipv6_and_ports_in_x_forwarded_for() {
        let t = ["127.0.0.1"];
        assert_eq!(xff(&t, "2001:db8::1"), "[2001:db8::1]:50000");
        assert_eq!(xff(&t, "[2001:db8::1]"), "[2001:db8::1]:50000");
        assert_eq!(xff(&t, "[2001:db8::1]:4711"), "[2001:db8::1]:4711");
        assert_eq!(xff(&t, "203.0.113.7:4711"), "203.0.113.7:4711");
        assert_eq!(xff(&t, "::ffff:203.0.113.7"), "203.0.113.7:50000");
        let v6_peer = client(
            &["::1"],
            "[::1]:6000",
            &[("x-forwarded-for", b"203.0.113.7")],
        );
        assert_eq!(v6_peer, "203.0.113.7:6000");
        let mapped_peer = client(
            &["127.0.0.1"],
            "[::ffff:127.0.0.1]:6000",
            &[("x-forwarded-for", b"203.0.113.7")],
        );
        assert_eq!(mapped_peer, "203.0.113.7:6000", "dual-stack listener");
    }

    #[test]
    fn garbage_on_the_walk_falls_back_to_the_peer() {
        let t = ["127.0.0.1", "10.0.0.0/8"];
        for bad in [
            "",
            " , ",
            "203.0.113.7,",
            "not-an-ip",
            "203.0.113.7, 10.0.0.1, junk",
            "999.1.1.1",
            "[203.0.113.7]",
            "2001:db8::1:4711:x",
            "fe80::1%eth0",
            "unknown",
        ] {
            assert_eq!(xff(&t, bad), PEER, "{bad:?}");
        }
        let binary = client(&t, PEER, &[("x-forwarded-for", b"\xff\xfe, 10.0.0.1")]);
        assert_eq!(binary, PEER);
    }

    #[test]
    fn garbage_left_of_the_client_does_not_matter() {
        let got = client(
            &["127.0.0.1"],
            PEER,
            &[("x-forwarded-for", b"\xff\xfe, junk, 203.0.113.7")],
        );
        assert_eq!(got, "203.0.113.7:50000");
    }

    #[test]
    fn forwarded_for_is_read_when_x_forwarded_for_is_absent() {
        assert_eq!(fwd("for=203.0.113.7"), "203.0.113.7:50000");
        assert_eq!(fwd("For=\"203.0.113.7:4711\""), "203.0.113.7:4711");
        assert_eq!(
            fwd("for=\"[2001:db8::1]:4711\";proto=https;by=10.0.0.1"),
            "[2001:db8::1]:4711"
        );
        assert_eq!(
            fwd("proto=https; for=\"[2001:db8::1]\""),
            "[2001:db8::1]:50000"
        );
        assert_eq!(fwd("for=203.0.113.7:_hidden"), "203.0.113.7:50000");
        assert_eq!(
            fwd("for=6.6.6.6, for=203.0.113.7;by=\"a,b\", for=127.0.0.1"),
            "203.0.113.7:50000"
        );
    }

    #[test]
    fn x_forwarded_for_wins_over_forwarded() {
        let got = client(
            &["127.0.0.1"],
            PEER,
            &[
                ("forwarded", b"for=198.51.100.1"),
                ("x-forwarded-for", b"203.0.113.7"),
            ],
        );
        assert_eq!(got, "203.0.113.7:50000");
    }

    #[test]
    fn hidden_or_unreadable_forwarded_falls_back_to_the_peer() {
        for bad in [
            "for=unknown",
            "for=_hidden",
            "for=\"_gazonk\"",
            "proto=https",
            "for=",
            "for",
            "for=\"[2001:db8::1]:4711",
            "for=\"2001:db8::1:4711\"",
            "for=203.0.113.7, for=unknown",
            ";;,,==\"",
            "for=[2001:db8::1",
        ] {
            assert_eq!(fwd(bad), PEER, "{bad:?}");
        }
    }
}
