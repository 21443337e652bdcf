//! The authorization matrix (SPEC 5.1, 6): every route and channel against every kind of
//! caller, in one table each, so that a gap shows as one wrong cell.

use serde_json::json;

use crate::support::accounts::{customer, login, ADMIN_EMAIL, ADMIN_PASSWORD};
use crate::support::http::call;
use crate::support::{Daemon, Socket};

const COLLECTIONS: [&str; 7] = [
    "category",
    "item",
    "customization_key",
    "customization_value",
    "message",
    "status",
    "order",
];
const FRONTEND: &str = "http://kaffediem.local:5173";

#[derive(Debug, Clone, Copy, PartialEq)]
enum Caller {
    Anonymous,
    Forged,
    User,
    Admin,
}

async fn cafe(public_read: bool) -> Daemon {
    Daemon::start(true, |c| {
        c.bootstrap.admin_password = ADMIN_PASSWORD.into();
        c.access.public_read = public_read;
        c.http.allowed_origins = vec![FRONTEND.into()];
    })
    .await
}

/// The cookie each caller sends (none for anonymous).
async fn cookies(daemon: &Daemon) -> Vec<(Caller, Option<String>)> {
    let (_, user) = customer(daemon, "kari@skole.no").await;
    let admin = login(daemon, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    vec![
        (Caller::Anonymous, None),
        (
            Caller::Forged,
            Some("kaffediem_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into()),
        ),
        (Caller::User, Some(user)),
        (Caller::Admin, Some(admin)),
    ]
}

async fn status_of(
    daemon: &Daemon,
    cookie: &Option<String>,
    origin: Option<&str>,
    method: &str,
    path: &str,
) -> u16 {
    let mut request = call(daemon.addr, method, path);
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    if method != "GET" && method != "DELETE" {
        request = request.json(&json!({}));
    }
    request.send().await.status.as_u16()
}

/// What the spec promises: anonymous 401, logged in without the right 403, the right → the
/// request goes on to validation (so anything but 401/403).
fn allowed(caller: Caller, may: bool, status: u16) -> bool {
    match caller {
        Caller::Anonymous | Caller::Forged => status == 401,
        Caller::User if !may => status == 403,
        _ => status != 401 && status != 403,
    }
}

#[tokio::test]
async fn every_route_answers_each_caller_as_the_spec_says() {
    let daemon = cafe(true).await;
    let callers = cookies(&daemon).await;
    let mut wrong = Vec::new();
    for (caller, cookie) in &callers {
        for c in COLLECTIONS {
            let list = format!("/api/collections/{c}/records");
            let one = format!("/api/collections/{c}/records/999999");
            // Public reads.
            for path in [&list, &"/api/menu".to_string()] {
                let got = status_of(&daemon, cookie, None, "GET", path).await;
                if got != 200 {
                    wrong.push(format!("{caller:?} GET {path} → {got}"));
                }
            }
            // Users may create orders (as themselves), nothing else.
            let got = status_of(&daemon, cookie, None, "POST", &list).await;
            if !allowed(*caller, c == "order", got) {
                wrong.push(format!("{caller:?} POST {list} → {got}"));
            }
            for method in ["PATCH", "PUT", "DELETE"] {
                let got = status_of(&daemon, cookie, None, method, &one).await;
                if !allowed(*caller, false, got) {
                    wrong.push(format!("{caller:?} {method} {one} → {got}"));
                }
            }
        }
        // A page on a foreign origin cannot ride this caller's cookie to write; the
        // frontend's own origin can.
        let path = "/api/collections/message/records";
        let foreign = status_of(&daemon, cookie, Some("http://evil.example"), "POST", path).await;
        if foreign != 403 && *caller == Caller::Admin {
            wrong.push(format!("{caller:?} POST from a foreign origin → {foreign}"));
        }
        let own = status_of(&daemon, cookie, Some(FRONTEND), "POST", path).await;
        if !allowed(*caller, false, own) {
            wrong.push(format!("{caller:?} POST from the frontend → {own}"));
        }
    }
    assert!(wrong.is_empty(), "wrong answers:\n{}", wrong.join("\n"));
    daemon.stop().await;
}

#[tokio::test]
async fn without_public_read_only_logged_in_callers_read() {
    let daemon = cafe(false).await;
    let callers = cookies(&daemon).await;
    let mut wrong = Vec::new();
    for (caller, cookie) in &callers {
        for c in COLLECTIONS {
            let path = format!("/api/collections/{c}/records");
            let got = status_of(&daemon, cookie, None, "GET", &path).await;
            let expected = match caller {
                Caller::Anonymous | Caller::Forged => 401,
                _ => 200,
            };
            if got != expected {
                wrong.push(format!(
                    "{caller:?} GET {path} → {got}, expected {expected}"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "wrong answers:\n{}", wrong.join("\n"));

    // The same holds on the socket.
    let mut anonymous = daemon.socket("").await;
    let reply = anonymous.join("collection:order", json!({})).await;
    assert_eq!(reply["response"]["reason"], "unauthorized");
    daemon.stop().await;
}

/// A socket upgraded with `cookie` (the session cookie travels with the upgrade request).
async fn socket_with(daemon: &Daemon, cookie: Option<&str>) -> Socket {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = daemon
        .url("vsn=2.0.0")
        .into_client_request()
        .expect("request");
    if let Some(cookie) = cookie {
        request
            .headers_mut()
            .insert("cookie", cookie.parse().expect("cookie header"));
    }
    let (ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("upgrade");
    Socket::from_ws(ws)
}

#[tokio::test]
async fn every_channel_admits_exactly_who_the_spec_says() {
    let daemon = cafe(true).await;
    let (user_id, user_cookie) = customer(&daemon, "per@skole.no").await;
    let admin_cookie = login(&daemon, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let own = format!("notifications:user:{user_id}");
    let other = format!("notifications:user:{}", user_id + 1000);

    let topics: [(&str, [bool; 3]); 5] = [
        // (topic, [anonymous, user, admin])
        ("collection:order", [true, true, true]),
        ("collection:menu", [true, true, true]),
        ("notifications:admin", [false, false, true]),
        (own.as_str(), [false, true, true]),
        (other.as_str(), [false, false, true]),
    ];
    let mut wrong = Vec::new();
    for (who, cookie) in [
        ("anonymous", None),
        ("user", Some(user_cookie.as_str())),
        ("admin", Some(admin_cookie.as_str())),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (who, cookie))| ((i, who), cookie))
    {
        let mut socket = socket_with(&daemon, cookie).await;
        for (topic, expected) in &topics {
            let reply = socket.join(topic, json!({})).await;
            let joined = reply["status"] == "ok";
            if joined != expected[who.0] {
                wrong.push(format!("{} joining {topic}: {reply}", who.1));
            }
        }
    }
    assert!(wrong.is_empty(), "wrong answers:\n{}", wrong.join("\n"));

    // Forged socket credentials and cross-site upgrades are refused before the upgrade.
    for query in ["token=forged.token.value&vsn=2.0.0"] {
        match tokio_tungstenite::connect_async(daemon.url(query)).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 403),
            other => panic!("forged token: {other:?}"),
        }
    }
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut hijack = daemon
        .url("vsn=2.0.0")
        .into_client_request()
        .expect("request");
    hijack
        .headers_mut()
        .insert("origin", "http://evil.example".parse().expect("origin"));
    hijack
        .headers_mut()
        .insert("cookie", admin_cookie.parse().expect("cookie"));
    match tokio_tungstenite::connect_async(hijack).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => assert_eq!(r.status(), 403),
        other => panic!("cross-site WebSocket hijacking was not refused: {other:?}"),
    }
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_the_log_even_at_debug_level() {
    use crate::support::process::{Daemon as Process, Site};
    let site = Site::new();
    site.demo_db();
    let mut cmd = site.command(&["serve"]);
    cmd.env("RUST_LOG", "debug");
    let daemon = Process::start(cmd);

    // A forged socket token in the query, a refused upgrade that gets logged.
    let forged = "forged-socket-token-5f2c9a";
    let _ = tokio_tungstenite::connect_async(format!(
        "ws://{}/socket/websocket?token={forged}&vsn=2.0.0",
        daemon.addr
    ))
    .await;
    // A failed login with a password, and a bogus session cookie.
    let password = "hunter2-not-logged";
    let reply = call(daemon.addr, "POST", "/api/session")
        .json(&json!({"email": ADMIN_EMAIL, "password": password}))
        .send()
        .await;
    assert_eq!(reply.status, 401);
    let cookie = "kaffediem_session=cookie-secret-7d1e04";
    call(daemon.addr, "GET", "/api/session")
        .header("cookie", cookie)
        .send()
        .await;
    // The refused upgrade must have been handled before we read the log.
    let _ = call(daemon.addr, "GET", "/healthz").send().await;

    let log = daemon.log();
    assert!(
        log.contains("token=[redacted]"),
        "the refused upgrade is logged, with its token redacted:\n{log}"
    );
    for secret in [forged, password, "cookie-secret-7d1e04"] {
        assert!(!log.contains(secret), "{secret} is in the log:\n{log}");
    }
}
