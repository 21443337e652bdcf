//! Permission boundaries with real sessions (SPEC 6): a logged-in user orders as themself and
//! nothing more; an admin's session writes everything; reads need a login when
//! `access.public_read` is off; a foreign page cannot ride an admin's cookie.

use serde_json::{json, Value};

use super::{latte_order, list, Menu};
use crate::support::accounts::{customer, login, ADMIN_EMAIL, ADMIN_PASSWORD};
use crate::support::http::{call, Reply};
use crate::support::Daemon;

async fn cafe(configure: impl FnOnce(&mut kaffediem::config::Config)) -> Daemon {
    Daemon::start(true, |c| {
        c.bootstrap.admin_password = ADMIN_PASSWORD.into();
        configure(c);
    })
    .await
}

async fn send(daemon: &Daemon, cookie: &str, method: &str, path: &str, body: Value) -> Reply {
    call(daemon.addr, method, path)
        .header("cookie", cookie)
        .json(&body)
        .send()
        .await
}

#[tokio::test]
async fn a_users_order_is_placed_as_themself() {
    let daemon = cafe(|_| {}).await;
    let menu = Menu::load(&daemon).await;
    let (me, cookie) = customer(&daemon, "ola@skole.no").await;
    let reply = send(
        &daemon,
        &cookie,
        "POST",
        "/api/collections/order/records",
        latte_order(&menu, me + 1000),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    assert_eq!(
        reply.json()["customer_id"],
        me,
        "customer_id is forced to the caller"
    );
    daemon.stop().await;
}

#[tokio::test]
async fn a_user_gets_403_for_everything_but_placing_orders() {
    let daemon = cafe(|_| {}).await;
    let menu = Menu::load(&daemon).await;
    let (me, cookie) = customer(&daemon, "ola@skole.no").await;
    let order = send(
        &daemon,
        &cookie,
        "POST",
        "/api/collections/order/records",
        latte_order(&menu, me),
    )
    .await
    .json();
    let latte = format!("/api/collections/item/records/{}", menu.item("Latte"));
    let own_order = format!("/api/collections/order/records/{}", order["id"]);
    let writes = [
        (
            "POST",
            "/api/collections/message/records".to_owned(),
            json!({"title": "Gratis kaffe"}),
        ),
        (
            "PATCH",
            "/api/collections/status/records/1".to_owned(),
            json!({"open": false}),
        ),
        ("PATCH", latte.clone(), json!({"price_nok": 1})),
        ("DELETE", latte, json!({})),
        ("PATCH", own_order.clone(), json!({"state": "completed"})),
        ("DELETE", own_order, json!({})),
    ];
    for (method, path, body) in writes {
        let reply = send(&daemon, &cookie, method, &path, body).await;
        assert_eq!(reply.status, 403, "{method} {path}: {}", reply.text());
        assert!(reply.json()["errors"].is_object());
    }
    assert_eq!(list(&daemon, "item").await, menu.items);
    assert_eq!(list(&daemon, "order").await[0]["state"], "received");
    daemon.stop().await;
}

#[tokio::test]
async fn a_user_may_not_reuse_another_customers_uuid() {
    let daemon = cafe(|_| {}).await;
    let menu = Menu::load(&daemon).await;
    let (ola, ola_cookie) = customer(&daemon, "ola@skole.no").await;
    let (kari, kari_cookie) = customer(&daemon, "kari@skole.no").await;
    let mut body = latte_order(&menu, ola);
    body["uuid"] = json!("ola-1");
    let path = "/api/collections/order/records";
    let first = send(&daemon, &ola_cookie, "POST", path, body.clone()).await;
    assert_eq!(first.status, 201);
    let again = send(&daemon, &ola_cookie, "POST", path, body.clone()).await;
    assert_eq!(again.status, 200, "Ola's own retry");
    body["customer_id"] = json!(kari);
    let stolen = send(&daemon, &kari_cookie, "POST", path, body).await;
    assert_eq!(stolen.status, 422, "{}", stolen.text());
    assert!(stolen.json()["errors"]["uuid"][0].is_string());
    assert_eq!(list(&daemon, "order").await.len(), 1);
    daemon.stop().await;
}

#[tokio::test]
async fn an_admin_session_writes_the_catalog_and_names_any_customer() {
    let daemon = cafe(|_| {}).await;
    let menu = Menu::load(&daemon).await;
    let cookie = login(&daemon, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let latte = format!("/api/collections/item/records/{}", menu.item("Latte"));
    let reply = send(&daemon, &cookie, "PATCH", &latte, json!({"price_nok": 47})).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["price_nok"], 47);
    let reply = send(
        &daemon,
        &cookie,
        "POST",
        "/api/collections/order/records",
        latte_order(&menu, 42),
    )
    .await;
    assert_eq!(reply.status, 201);
    assert_eq!(
        reply.json()["customer_id"],
        42,
        "the front desk orders for a customer"
    );
    daemon.stop().await;
}

#[tokio::test]
async fn without_public_read_a_logged_in_user_reads() {
    let daemon = cafe(|c| c.access.public_read = false).await;
    let (_, cookie) = customer(&daemon, "ola@skole.no").await;
    for path in ["/api/menu", "/api/collections/status/records"] {
        let anonymous = call(daemon.addr, "GET", path).send().await;
        assert_eq!(anonymous.status, 401, "{path}");
        let reply = call(daemon.addr, "GET", path)
            .header("cookie", &cookie)
            .send()
            .await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
    }
    daemon.stop().await;
}

#[tokio::test]
async fn a_foreign_page_cannot_ride_an_admins_cookie() {
    let daemon = cafe(|c| c.http.allowed_origins = vec!["http://kaffediem.local".into()]).await;
    let cookie = login(&daemon, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let before = list(&daemon, "message").await;
    // `text/plain` and form posts need no preflight; the browser still says where it came from.
    for content_type in ["text/plain", "multipart/form-data; boundary=x"] {
        let reply = call(daemon.addr, "POST", "/api/collections/message/records")
            .header("cookie", &cookie)
            .header("origin", "https://evil.example")
            .header("content-type", content_type)
            .raw("--x\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nHacked\r\n--x--\r\n")
            .send()
            .await;
        assert_eq!(reply.status, 403, "{content_type}: {}", reply.text());
    }
    assert_eq!(list(&daemon, "message").await, before);
    daemon.stop().await;
}
