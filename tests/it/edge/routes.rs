//! The route table as a client sees it: for every route, which methods it takes (the 405's
//! `Allow`), what an unknown path gets, and that session answers are never cached, refused
//! ones included.

use crate::support::{http::call, Daemon};

#[tokio::test]
async fn every_route_answers_405_with_what_it_takes() {
    let daemon = Daemon::demo().await;
    for (method, path, allow) in [
        ("POST", "/healthz", "GET, HEAD"),
        ("DELETE", "/metrics", "GET, HEAD"),
        ("PUT", "/api/session", "GET, POST, DELETE"),
        ("POST", "/api/session/token", "GET"),
        ("POST", "/api/menu", "GET"),
        ("DELETE", "/api/files/item/1/x.png", "GET"),
        ("PATCH", "/api/collections/item/records", "GET, POST"),
        (
            "POST",
            "/api/collections/item/records/1",
            "GET, PATCH, PUT, DELETE",
        ),
    ] {
        let reply = call(daemon.addr, method, path).send().await;
        assert_eq!(reply.status, 405, "{method} {path}");
        assert_eq!(reply.header("allow"), Some(allow), "{method} {path}");
        assert_eq!(
            reply.json()["errors"]["detail"][0],
            "method not allowed",
            "{method} {path}"
        );
    }
    daemon.stop().await;
}

#[tokio::test]
async fn unknown_paths_are_404_whatever_the_method() {
    let daemon = Daemon::demo().await;
    for (method, path, detail) in [
        ("GET", "/", "not found"),
        ("DELETE", "/api", "not found"),
        ("GET", "/api/menu/", "not found"),
        ("POST", "/api/session/", "not found"),
        ("GET", "/api/session/other", "not found"),
        ("GET", "/api/collections/item", "not found"),
        (
            "PATCH",
            "/api/collections/nope/records/1",
            "unknown collection",
        ),
        ("GET", "/api/files/order/1/x.png", "file not found"),
        ("GET", "/api/files/item/1", "not found"),
    ] {
        let reply = call(daemon.addr, method, path).send().await;
        assert_eq!(reply.status, 404, "{method} {path}");
        assert_eq!(
            reply.json()["errors"]["detail"][0],
            detail,
            "{method} {path}"
        );
    }
    // A trailing slash on a collection path is forgiven.
    let reply = call(daemon.addr, "GET", "/api/collections/item/records/")
        .send()
        .await;
    assert_eq!(reply.status, 200);
    daemon.stop().await;
}

#[tokio::test]
async fn session_answers_are_never_cached_even_when_refused() {
    let daemon = Daemon::demo().await;
    let foreign = "https://evil.example";
    for (method, path, status) in [
        ("GET", "/api/session", 204),
        ("PUT", "/api/session", 405),
        ("GET", "/api/session/token", 401),
        ("PATCH", "/api/session/token", 405),
    ] {
        let reply = call(daemon.addr, method, path).send().await;
        assert_eq!(reply.status, status, "{method} {path}");
        assert_eq!(
            reply.header("cache-control"),
            Some("no-store"),
            "{method} {path}"
        );
    }
    let refused = call(daemon.addr, "POST", "/api/session")
        .header("origin", foreign)
        .json(&serde_json::json!({"email": "a@b.c", "password": "x"}))
        .send()
        .await;
    assert_eq!(refused.status, 403);
    assert_eq!(refused.header("cache-control"), Some("no-store"));
    // Other routes say nothing about caching.
    let menu = call(daemon.addr, "GET", "/api/menu").send().await;
    assert_eq!(menu.header("cache-control"), None);
    daemon.stop().await;
}
