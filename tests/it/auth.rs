//! Accounts, sessions, socket tokens and socket authentication (SPEC 6, SPEC 2): real HTTP,
//! real WebSocket upgrades, a real SQLite file, and `kaffediem user` as the real binary.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hyper::StatusCode;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

use kaffediem::clock::OffsetClock;
use kaffediem::config::{Config, SameSite};
use kaffediem::server;

use crate::support::http::{call, Reply};
use crate::support::{Daemon, Socket};

mod cli;
mod csrf;
mod parallel_logins;
mod proxies;
mod session_end;

const ADMIN_EMAIL: &str = "admin@kaffediem.local";
const ADMIN_PASSWORD: &str = "bootstrap password";

async fn daemon_with(configure: impl FnOnce(&mut Config)) -> Daemon {
    Daemon::start(false, |c| {
        c.bootstrap.admin_password = ADMIN_PASSWORD.into();
        configure(c);
    })
    .await
}

async fn daemon() -> Daemon {
    daemon_with(|_| {}).await
}

async fn login(d: &Daemon, email: &str, password: &str) -> Reply {
    call(d.addr, "POST", "/api/session")
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
}

/// `kaffediem_session=...`, ready for a `Cookie` header.
fn cookie_of(reply: &Reply) -> String {
    let set_cookie = reply.header("set-cookie").expect("a Set-Cookie header");
    set_cookie.split(';').next().unwrap().trim().to_owned()
}

async fn login_cookie(d: &Daemon, email: &str, password: &str) -> String {
    let reply = login(d, email, password).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    cookie_of(&reply)
}

async fn admin_cookie(d: &Daemon) -> String {
    login_cookie(d, ADMIN_EMAIL, ADMIN_PASSWORD).await
}

async fn get_session(d: &Daemon, cookie: &str) -> Reply {
    call(d.addr, "GET", "/api/session")
        .header("cookie", cookie)
        .send()
        .await
}

async fn socket_token(d: &Daemon, cookie: &str) -> String {
    let reply = call(d.addr, "GET", "/api/session/token")
        .header("cookie", cookie)
        .send()
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    reply.json()["token"].as_str().expect("token").to_owned()
}

/// A user written straight into the file, as another process would.
fn add_user(d: &Daemon, email: &str, password: &str, admin: bool) -> i64 {
    let hash = kaffediem::accounts::hash_password(password).unwrap();
    d.shell()
        .query_row(
            "INSERT INTO user (email, name, is_admin, password_hash) VALUES (?1, 'Kari', ?2, ?3) RETURNING id",
            rusqlite::params![email, admin, hash],
            |r| r.get(0),
        )
        .unwrap()
}

/// Upgrade with extra headers; `Err(status)` when the server refuses.
async fn upgrade(d: &Daemon, query: &str, headers: &[(&str, &str)]) -> Result<Socket, StatusCode> {
    let mut req = d
        .url(&format!("vsn=2.0.0{query}"))
        .into_client_request()
        .unwrap();
    for (name, value) in headers {
        req.headers_mut().insert(
            tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(Socket::from_ws(ws)),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => Err(response.status()),
        Err(e) => panic!("upgrade failed: {e}"),
    }
}

fn reason(reply: &Value) -> &str {
    reply["response"]["reason"].as_str().unwrap_or("")
}

// ---- login, cookie, session ----------------------------------------------------------------

#[tokio::test]
async fn login_answers_the_user_and_sets_an_http_only_session_cookie() {
    let d = daemon().await;
    let reply = login(&d, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    let data = &reply.json()["data"];
    assert!(data["id"].is_i64(), "{data}");
    assert_eq!(data["is_admin"], true);
    assert!(data.get("password_hash").is_none());
    let set_cookie = reply.header("set-cookie").unwrap();
    assert!(set_cookie.starts_with("kaffediem_session="), "{set_cookie}");
    for attribute in ["HttpOnly", "Path=/", "SameSite=Lax", "Max-Age=1209600"] {
        assert!(set_cookie.contains(attribute), "{attribute}: {set_cookie}");
    }
    assert!(!set_cookie.contains("Secure"), "{set_cookie}");
    d.stop().await;
}

#[tokio::test]
async fn login_email_is_case_insensitive() {
    let d = daemon().await;
    let reply = login(&d, &ADMIN_EMAIL.to_uppercase(), ADMIN_PASSWORD).await;
    assert_eq!(reply.status, StatusCode::OK);
    d.stop().await;
}

#[tokio::test]
async fn cookie_is_secure_with_the_configured_same_site() {
    let d = daemon_with(|c| {
        c.http.cookie_secure = true;
        c.http.cookie_same_site = SameSite::Strict;
        c.auth.session_days = 2;
    })
    .await;
    let reply = login(&d, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let set_cookie = reply.header("set-cookie").unwrap();
    for attribute in [
        "HttpOnly",
        "Path=/",
        "SameSite=Strict",
        "Secure",
        "Max-Age=172800",
    ] {
        assert!(set_cookie.contains(attribute), "{attribute}: {set_cookie}");
    }
    d.stop().await;
}

#[tokio::test]
async fn wrong_password_and_unknown_email_get_the_same_401() {
    let d = daemon().await;
    let wrong = login(&d, ADMIN_EMAIL, "not the password").await;
    let unknown = login(&d, "nobody@example.com", ADMIN_PASSWORD).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.json(), unknown.json());
    assert!(wrong.header("set-cookie").is_none());
    d.stop().await;
}

#[tokio::test]
async fn malformed_login_body_is_400() {
    let d = daemon().await;
    for body in ["{not json", "{\"email\": \"a@b.c\"}", "[]"] {
        let reply = call(d.addr, "POST", "/api/session")
            .header("content-type", "application/json")
            .raw(body)
            .send()
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}");
        assert!(
            reply.json()["errors"]["body"].is_array(),
            "{}",
            reply.text()
        );
    }
    d.stop().await;
}

#[tokio::test]
async fn get_session_is_200_with_a_cookie_and_204_without() {
    let d = daemon().await;
    let cookie = admin_cookie(&d).await;
    let with = get_session(&d, &cookie).await;
    assert_eq!(with.status, StatusCode::OK);
    assert_eq!(with.json()["data"]["is_admin"], true);
    let without = call(d.addr, "GET", "/api/session").send().await;
    assert_eq!(without.status, StatusCode::NO_CONTENT);
    let forged = get_session(&d, "kaffediem_session=forged").await;
    assert_eq!(forged.status, StatusCode::NO_CONTENT);
    d.stop().await;
}

#[tokio::test]
async fn logout_revokes_the_session_and_clears_the_cookie() {
    let d = daemon().await;
    let cookie = admin_cookie(&d).await;
    let token = socket_token(&d, &cookie).await;
    let reply = call(d.addr, "DELETE", "/api/session")
        .header("cookie", &cookie)
        .send()
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert!(reply.header("set-cookie").unwrap().contains("Max-Age=0"));
    let rows: i64 = d
        .shell()
        .query_row("SELECT count(*) FROM session", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 0);
    assert_eq!(
        get_session(&d, &cookie).await.status,
        StatusCode::NO_CONTENT
    );
    let token_reply = call(d.addr, "GET", "/api/session/token")
        .header("cookie", &cookie)
        .send()
        .await;
    assert_eq!(token_reply.status, StatusCode::UNAUTHORIZED);
    // A socket token issued for the session ends with it.
    let refused = upgrade(&d, &format!("&token={token}"), &[]).await;
    assert_eq!(refused.err(), Some(StatusCode::FORBIDDEN));
    d.stop().await;
}

/// Logging out closes the sockets that session authenticated (1001, so the client reconnects
/// and is judged again: its socket token now gets 403); another session's socket and an
/// anonymous one go on.
#[tokio::test]
async fn logout_closes_the_sockets_of_that_session_only() {
    let d = daemon().await;
    let cookie = admin_cookie(&d).await;
    let token = socket_token(&d, &cookie).await;
    let other_cookie = admin_cookie(&d).await;
    let other_token = socket_token(&d, &other_cookie).await;
    let mut mine = d.socket(&format!("token={token}")).await;
    mine.join_ok("notifications:admin", json!({})).await;
    let mut mine_by_cookie = upgrade(&d, "", &[("cookie", &cookie)])
        .await
        .expect("upgrade");
    mine_by_cookie
        .join_ok("notifications:admin", json!({}))
        .await;
    let mut other = d.socket(&format!("token={other_token}")).await;
    other.join_ok("notifications:admin", json!({})).await;
    let mut anonymous = d.socket("").await;
    anonymous.join_ok("collection:status", json!({})).await;

    let reply = call(d.addr, "DELETE", "/api/session")
        .header("cookie", &cookie)
        .send()
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    assert_eq!(mine.close_code().await, 1001);
    assert_eq!(mine_by_cookie.close_code().await, 1001);
    let refused = upgrade(&d, &format!("&token={token}"), &[]).await;
    assert_eq!(refused.err(), Some(StatusCode::FORBIDDEN));

    // The other session still hears new orders; the anonymous screen still works.
    let order = d
        .shell()
        .execute(
            r#"INSERT INTO "order" (uuid, customer_id, items) VALUES ('after-logout', 1, '[]')"#,
            [],
        )
        .expect("insert order");
    assert_eq!(order, 1);
    other.next_event("notifications:admin", "new_order").await;
    anonymous.join_ok("collection:message", json!({})).await;
    d.stop().await;
}

#[tokio::test]
async fn expired_session_stops_working() {
    let d = daemon_with(|c| c.auth.session_days = 1).await;
    let cookie = admin_cookie(&d).await;
    d.clock
        .set(jiff::Timestamp::now() + jiff::SignedDuration::from_hours(25));
    assert_eq!(
        get_session(&d, &cookie).await.status,
        StatusCode::NO_CONTENT
    );
    d.stop().await;
}

#[tokio::test]
async fn session_tokens_are_stored_only_as_hashes() {
    let d = daemon().await;
    let cookie = admin_cookie(&d).await;
    let token = cookie.trim_start_matches("kaffediem_session=");
    let stored: String = d
        .shell()
        .query_row("SELECT token_hash FROM session", [], |r| r.get(0))
        .unwrap();
    assert_ne!(stored, token);
    assert_eq!(stored.len(), 64);
    d.stop().await;
}

// ---- socket tokens and socket authentication ----------------------------------------------

#[tokio::test]
async fn socket_token_needs_a_session() {
    let d = daemon().await;
    let reply = call(d.addr, "GET", "/api/session/token").send().await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert!(reply.json()["errors"].is_object());
    d.stop().await;
}

#[tokio::test]
async fn socket_token_has_an_expiry_time() {
    let d = daemon().await;
    let cookie = admin_cookie(&d).await;
    let reply = call(d.addr, "GET", "/api/session/token")
        .header("cookie", &cookie)
        .send()
        .await;
    let expires: jiff::Timestamp = reply.json()["expires_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let left = expires.duration_since(jiff::Timestamp::now());
    assert!(left > jiff::SignedDuration::from_secs(290), "{left:?}");
    assert!(left <= jiff::SignedDuration::from_secs(301), "{left:?}");
    d.stop().await;
}

#[tokio::test]
async fn admin_with_a_token_param_joins_notifications_admin() {
    let d = daemon().await;
    let token = socket_token(&d, &admin_cookie(&d).await).await;
    let mut socket = upgrade(&d, &format!("&token={token}"), &[]).await.unwrap();
    socket.join_ok("notifications:admin", json!({})).await;
    d.stop().await;
}

#[tokio::test]
async fn admin_with_the_auth_token_subprotocol_joins_notifications_admin() {
    let d = daemon().await;
    let token = socket_token(&d, &admin_cookie(&d).await).await;
    let protocols = format!(
        "phoenix, base64url.bearer.phx.{}",
        URL_SAFE_NO_PAD.encode(token.as_bytes())
    );
    let mut socket = upgrade(&d, "", &[("sec-websocket-protocol", &protocols)])
        .await
        .unwrap();
    socket.join_ok("notifications:admin", json!({})).await;
    d.stop().await;
}

#[tokio::test]
async fn session_cookie_on_the_upgrade_authenticates() {
    let d = daemon().await;
    let cookie = admin_cookie(&d).await;
    let mut socket = upgrade(&d, "", &[("cookie", &cookie)]).await.unwrap();
    socket.join_ok("notifications:admin", json!({})).await;
    d.stop().await;
}

#[tokio::test]
async fn stale_cookie_on_the_upgrade_makes_an_anonymous_socket() {
    let d = daemon().await;
    let mut socket = upgrade(&d, "", &[("cookie", "kaffediem_session=gone")])
        .await
        .unwrap();
    let reply = socket.join("notifications:admin", json!({})).await;
    assert_eq!(reason(&reply), "unauthorized");
    socket.join_ok("collection:status", json!({})).await;
    d.stop().await;
}

#[tokio::test]
async fn forged_socket_token_is_refused_with_403() {
    let d = daemon().await;
    let token = socket_token(&d, &admin_cookie(&d).await).await;
    // Claim another user id under the same signature.
    let (_, rest) = token.split_once('.').unwrap();
    let forged = format!("999.{rest}");
    for bad in [forged.as_str(), "garbage", "1.1.99999999999.AAAA"] {
        let refused = upgrade(&d, &format!("&token={bad}"), &[]).await;
        assert_eq!(refused.err(), Some(StatusCode::FORBIDDEN), "{bad}");
    }
    let subprotocol = format!(
        "phoenix, base64url.bearer.phx.{}",
        URL_SAFE_NO_PAD.encode("garbage")
    );
    let refused = upgrade(&d, "", &[("sec-websocket-protocol", &subprotocol)]).await;
    assert_eq!(refused.err(), Some(StatusCode::FORBIDDEN));
    d.stop().await;
}

#[tokio::test]
async fn expired_socket_token_is_refused_with_403() {
    let d = daemon().await;
    let token = socket_token(&d, &admin_cookie(&d).await).await;
    d.clock
        .set(jiff::Timestamp::now() + jiff::SignedDuration::from_secs(301));
    let refused = upgrade(&d, &format!("&token={token}"), &[]).await;
    assert_eq!(refused.err(), Some(StatusCode::FORBIDDEN));
    d.stop().await;
}

#[tokio::test]
async fn anonymous_socket_cannot_join_notifications_admin() {
    let d = daemon().await;
    let mut socket = d.socket("").await;
    let reply = socket.join("notifications:admin", json!({})).await;
    assert_eq!(reason(&reply), "unauthorized");
    let reply = socket.join("notifications:user:1", json!({})).await;
    assert_eq!(reason(&reply), "unauthorized");
    d.stop().await;
}

#[tokio::test]
async fn the_interim_admin_token_still_grants_admin() {
    let d = daemon().await;
    let mut socket = d.socket("token=admin-secret").await;
    socket.join_ok("notifications:admin", json!({})).await;
    d.stop().await;
}

#[tokio::test]
async fn user_joins_their_own_notifications_but_not_anothers_nor_admin() {
    let d = daemon().await;
    let id = add_user(&d, "kari@example.com", "kari's password", false);
    let cookie = login_cookie(&d, "kari@example.com", "kari's password").await;
    let token = socket_token(&d, &cookie).await;
    let mut socket = upgrade(&d, &format!("&token={token}"), &[]).await.unwrap();
    socket
        .join_ok(&format!("notifications:user:{id}"), json!({}))
        .await;
    let other = socket
        .join(&format!("notifications:user:{}", id + 1), json!({}))
        .await;
    assert_eq!(reason(&other), "unauthorized");
    let admin = socket.join("notifications:admin", json!({})).await;
    assert_eq!(reason(&admin), "unauthorized");
    d.stop().await;
}

// ---- rate limiting -------------------------------------------------------------------------

#[tokio::test]
async fn failed_logins_over_the_limit_get_429_with_retry_after() {
    let d = daemon_with(|c| c.auth.login_attempts_per_minute = 3).await;
    for _ in 0..3 {
        let reply = login(&d, ADMIN_EMAIL, "wrong").await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    }
    // Even the right password waits now: the point is to stop guessing.
    let reply = login(&d, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(reply.json()["errors"].is_object());
    let retry: u64 = reply.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    d.stop().await;
}

// ---- bootstrap and dev auto login ----------------------------------------------------------

async fn start_on(
    dir: &std::path::Path,
    configure: impl FnOnce(&mut Config),
) -> Result<server::Running, server::StartError> {
    let mut config = Config::default();
    config.http.bind = [127, 0, 0, 1].into();
    config.http.port = 0;
    config.database.path = dir.join("kaffediem.db");
    configure(&mut config);
    server::start(server::Options {
        config,
        config_path: None,
        clock: OffsetClock::new(),
        demo: false,
    })
    .await
}

#[tokio::test]
async fn bootstrap_admin_is_created_once_with_the_configured_password() {
    let dir = tempfile::tempdir().unwrap();
    let first = start_on(dir.path(), |c| {
        c.bootstrap.admin_password = "first password".into()
    })
    .await
    .unwrap();
    first.shutdown().await;
    let second = start_on(dir.path(), |c| {
        c.bootstrap.admin_password = "second password".into()
    })
    .await
    .unwrap();
    let addr = second.local_addr();
    let ok = call(addr, "POST", "/api/session")
        .json(&json!({"email": ADMIN_EMAIL, "password": "first password"}))
        .send()
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    let refused = call(addr, "POST", "/api/session")
        .json(&json!({"email": ADMIN_EMAIL, "password": "second password"}))
        .send()
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    second.shutdown().await;
    let conn = rusqlite::Connection::open(dir.path().join("kaffediem.db")).unwrap();
    let (users, admins): (i64, i64) = conn
        .query_row("SELECT count(*), sum(is_admin) FROM user", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!((users, admins), (1, 1));
}

#[tokio::test]
async fn bootstrap_without_a_password_stores_an_argon2id_hash_of_a_generated_one() {
    let dir = tempfile::tempdir().unwrap();
    let running = start_on(dir.path(), |_| {}).await.unwrap();
    running.shutdown().await;
    let conn = rusqlite::Connection::open(dir.path().join("kaffediem.db")).unwrap();
    let (email, hash): (String, String) = conn
        .query_row("SELECT email, password_hash FROM user", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(email, ADMIN_EMAIL);
    assert!(hash.starts_with("$argon2id$"), "{hash}");
}

#[tokio::test]
async fn dev_auto_login_is_refused_on_a_non_loopback_bind() {
    let dir = tempfile::tempdir().unwrap();
    let result = start_on(dir.path(), |c| {
        c.http.bind = [0, 0, 0, 0].into();
        c.auth.dev_auto_login = true;
    })
    .await;
    let err = match result {
        Ok(running) => {
            running.shutdown().await;
            panic!("started with dev_auto_login on 0.0.0.0");
        }
        Err(e) => e.to_string(),
    };
    assert!(err.contains("dev_auto_login"), "{err}");
    assert!(err.contains("127.0.0.1"), "{err}");
    assert!(!err.contains('\n'), "{err}");
}

#[tokio::test]
async fn dev_auto_login_logs_the_caller_in_as_the_first_admin() {
    let d = daemon_with(|c| c.auth.dev_auto_login = true).await;
    let reply = call(d.addr, "GET", "/api/session").send().await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json()["data"]["is_admin"], true);
    let cookie = cookie_of(&reply);
    assert_eq!(get_session(&d, &cookie).await.status, StatusCode::OK);
    d.stop().await;
}

#[tokio::test]
async fn session_routes_answer_405_for_other_methods() {
    let d = daemon().await;
    let reply = call(d.addr, "PUT", "/api/session").send().await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    let reply = call(d.addr, "POST", "/api/session/token").send().await;
    assert_eq!(reply.status, StatusCode::METHOD_NOT_ALLOWED);
    d.stop().await;
}
