//! The login rate limit behind a reverse proxy (`http.trusted_proxies`): each client the proxy
//! forwards has its own limit, and nobody else can pick an address with a header. Every
//! request here comes from 127.0.0.1, as it would from a proxy on the Pi itself.

use hyper::StatusCode;
use serde_json::json;

use super::{daemon_with, ADMIN_EMAIL, ADMIN_PASSWORD};
use crate::support::http::{call, Reply};
use crate::support::Daemon;

const LIMIT: u32 = 3;

/// A login with one extra header (`X-Forwarded-For` or `Forwarded`).
async fn login_via(d: &Daemon, header: (&str, &str), email: &str, password: &str) -> Reply {
    call(d.addr, "POST", "/api/session")
        .header(header.0, header.1)
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
}

/// Fail [`LIMIT`] logins with `header`, each for another unknown email (so only the address
/// is counted, never an email).
async fn use_up_the_limit(d: &Daemon, header: (&str, &str), tag: &str) {
    for i in 0..LIMIT {
        let reply = login_via(d, header, &format!("{tag}-{i}@nowhere"), "wrong").await;
        assert_eq!(
            reply.status,
            StatusCode::UNAUTHORIZED,
            "{header:?}: {}",
            reply.text()
        );
    }
}

async fn daemon_trusting(proxies: &[&str]) -> Daemon {
    let proxies: Vec<String> = proxies.iter().map(|p| p.to_string()).collect();
    daemon_with(move |c| {
        c.auth.login_attempts_per_minute = LIMIT;
        c.http.trusted_proxies = proxies;
    })
    .await
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_login_limit() {
    let d = daemon_trusting(&["127.0.0.1"]).await;
    let a = ("x-forwarded-for", "203.0.113.7");
    let b = ("x-forwarded-for", "198.51.100.2");
    use_up_the_limit(&d, a, "a").await;
    let blocked = login_via(&d, a, "a-next@nowhere", "wrong").await;
    assert_eq!(blocked.status, StatusCode::TOO_MANY_REQUESTS);

    // Another client of the same café, through the same proxy, is not locked out.
    let other = login_via(&d, b, "b@nowhere", "wrong").await;
    assert_eq!(other.status, StatusCode::UNAUTHORIZED);
    let admin = login_via(&d, b, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(admin.status, StatusCode::OK, "{}", admin.text());
    // Nor is a client behind a second proxy hop, nor the proxy's own requests.
    let chained = ("x-forwarded-for", "203.0.113.7, 192.0.2.50, 127.0.0.1");
    let reply = login_via(&d, chained, "c@nowhere", "wrong").await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    let direct = call(d.addr, "POST", "/api/session")
        .json(&json!({"email": "d@nowhere", "password": "wrong"}))
        .send()
        .await;
    assert_eq!(direct.status, StatusCode::UNAUTHORIZED);
    d.stop().await;
}

#[tokio::test]
async fn without_trusted_proxies_x_forwarded_for_cannot_dodge_the_limit() {
    let d = daemon_trusting(&[]).await;
    for i in 0..LIMIT {
        let xff = format!("203.0.113.{i}");
        let reply = login_via(&d, ("x-forwarded-for", &xff), &format!("{i}@nowhere"), "x").await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    let fresh = ("x-forwarded-for", "198.51.100.99");
    let reply = login_via(&d, fresh, "fresh@nowhere", "x").await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    let reply = login_via(&d, ("forwarded", "for=198.51.100.98"), "f@nowhere", "x").await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    d.stop().await;
}

#[tokio::test]
async fn forwarding_headers_from_an_untrusted_peer_are_ignored() {
    // A proxy is configured, but these requests do not come from it.
    let d = daemon_trusting(&["10.0.0.0/8", "::1"]).await;
    for i in 0..LIMIT {
        let xff = format!("10.0.0.{i}, 203.0.113.{i}");
        let reply = login_via(&d, ("x-forwarded-for", &xff), &format!("{i}@nowhere"), "x").await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    let reply = login_via(&d, ("x-forwarded-for", "198.51.100.99"), "n@nowhere", "x").await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    d.stop().await;
}

#[tokio::test]
async fn forwarded_for_names_the_client_and_unknown_means_the_proxy() {
    let d = daemon_trusting(&["127.0.0.1"]).await;
    let v6 = ("forwarded", "for=\"[2001:db8::1]:4711\";proto=https");
    use_up_the_limit(&d, v6, "v6").await;
    let reply = login_via(&d, v6, "v6-next@nowhere", "x").await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    let v4 = ("forwarded", "for=198.51.100.2;proto=https");
    let reply = login_via(&d, v4, "v4@nowhere", "x").await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);

    // A hidden client counts as the proxy itself: no bucket of its own to hide in.
    use_up_the_limit(&d, ("forwarded", "for=unknown"), "hidden").await;
    let direct = call(d.addr, "POST", "/api/session")
        .json(&json!({"email": "direct@nowhere", "password": "x"}))
        .send()
        .await;
    assert_eq!(direct.status, StatusCode::TOO_MANY_REQUESTS);
    let garbage = login_via(&d, ("x-forwarded-for", "not an address"), "g@nowhere", "x").await;
    assert_eq!(garbage.status, StatusCode::TOO_MANY_REQUESTS);
    d.stop().await;
}
