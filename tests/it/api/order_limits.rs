//! What one order may be (SPEC 5.2, 10): a customer cannot make one order cost the café more
//! than the menu and `[limits]` allow — no repeated value or key, no more lines than
//! `limits.max_order_lines`, no record larger than `limits.max_order_bytes` — and a refused
//! order stores and broadcasts nothing.

use serde_json::{json, Value};

use super::{admin, latte_order, list, Menu};
use crate::support::accounts::customer;
use crate::support::http::{call, Reply};
use crate::support::{Daemon, Socket};

const ORDERS: &str = "/api/collections/order/records";

/// A reply's body for an assertion message, cut short (a refused order must not print 65 MB).
fn brief(reply: &Reply) -> String {
    reply.text().chars().take(300).collect()
}

async fn as_customer(daemon: &Daemon, cookie: &str, body: &Value) -> Reply {
    call(daemon.addr, "POST", ORDERS)
        .header("cookie", cookie)
        .json(body)
        .send()
        .await
}

/// One Latte line with these customizations.
fn latte(menu: &Menu, customizations: Value) -> Value {
    json!({"items": [{"item": menu.item("Latte"), "customizations": customizations}]})
}

/// A socket on `collection:order`, joined before anything is ordered.
async fn order_screen(daemon: &Daemon) -> Socket {
    let mut screen = daemon.socket("").await;
    screen.join_ok("collection:order", json!({})).await;
    screen
}

/// Nothing was broadcast since `screen` joined: an order placed now is the first change it
/// sees (a barrier, not a wait).
async fn nothing_broadcast_before_the_next_order(daemon: &Daemon, screen: &mut Socket) {
    let menu = Menu::load(daemon).await;
    let reply = admin(daemon, "POST", ORDERS, latte_order(&menu, 1)).await;
    assert_eq!(reply.status, 201, "{}", brief(&reply));
    let change = screen.next_event("collection:order", "change").await;
    assert_eq!(change["action"], "create", "{change}");
    assert_eq!(change["record"]["id"], reply.json()["id"], "{change}");
}

#[tokio::test]
async fn a_megabyte_order_repeating_one_value_is_refused_and_neither_stored_nor_broadcast() {
    let daemon = Daemon::demo().await;
    let menu = Menu::load(&daemon).await;
    let (_, cookie) = customer(&daemon, "ola@skole.no").await;
    let mut screen = order_screen(&daemon).await;
    // The issue's reproduction: one multiple-choice key, one value, 500 000 times (1 MB).
    let vanilje = menu.value("Vanilje");
    let body = latte(
        &menu,
        json!([{"key": menu.key("Sirup"), "value": vec![vanilje; 500_000]}]),
    );
    assert!(body.to_string().len() > 1_000_000);
    let reply = as_customer(&daemon, &cookie, &body).await;
    assert_eq!(reply.status, 422, "{}", brief(&reply));
    let error = &reply.json()["errors"]["items"][0]["customizations"][0]["value"][0];
    assert!(
        error.as_str().is_some_and(|e| e.contains("Sirup")),
        "{error}"
    );
    assert!(
        reply.body.len() < 1000,
        "the error is small: {}",
        reply.body.len()
    );
    assert_eq!(list(&daemon, "order").await, Vec::<Value>::new());
    nothing_broadcast_before_the_next_order(&daemon, &mut screen).await;
    daemon.stop().await;
}

#[tokio::test]
async fn repeated_values_and_keys_are_refused_naming_the_field() {
    let daemon = Daemon::demo().await;
    let menu = Menu::load(&daemon).await;
    let (_, cookie) = customer(&daemon, "kari@skole.no").await;
    let (sirup, melk) = (menu.key("Sirup"), menu.key("Melk"));
    let (vanilje, karamell) = (menu.value("Vanilje"), menu.value("Karamell"));
    let cases = [
        // The same value twice within a key.
        (
            json!([{"key": sirup, "value": [vanilje, vanilje]}]),
            0,
            "value",
        ),
        // The same value again in a second entry of a multiple-choice key.
        (
            json!([{"key": sirup, "value": [vanilje]}, {"key": sirup, "value": [karamell, vanilje]}]),
            1,
            "value",
        ),
        // A key given twice, the second time bringing no value.
        (
            json!([{"key": sirup, "value": [vanilje]}, {"key": sirup, "value": []}]),
            1,
            "key",
        ),
        // A single-choice key given twice with the same value.
        (
            json!([{"key": melk, "value": [menu.value("Havre")]}, {"key": melk, "value": [menu.value("Havre")]}]),
            1,
            "value",
        ),
        // Two values for a single-choice key.
        (
            json!([{"key": melk, "value": [menu.value("Havre"), menu.value("Hel")]}]),
            0,
            "value",
        ),
    ];
    for (customizations, entry, field) in cases {
        let reply = as_customer(&daemon, &cookie, &latte(&menu, customizations.clone())).await;
        assert_eq!(reply.status, 422, "{customizations}: {}", brief(&reply));
        let errors = &reply.json()["errors"]["items"][0]["customizations"][entry];
        assert!(errors[field][0].is_string(), "{customizations}: {errors}");
    }
    // More entries than the Latte's keys and values could ever fill, each naming one key.
    let many: Vec<Value> = (0..10_000)
        .map(|_| json!({"key": sirup, "value": [vanilje]}))
        .collect();
    let reply = as_customer(&daemon, &cookie, &latte(&menu, Value::Array(many))).await;
    assert_eq!(reply.status, 422, "{}", brief(&reply));
    assert!(
        reply.json()["errors"]["items"][0]["customizations"][0].is_string(),
        "{}",
        brief(&reply)
    );
    assert!(reply.body.len() < 1000, "{}", reply.body.len());

    // The frontend's form of a multiple-choice key, one entry per value, still works.
    let fine = json!([{"key": sirup, "value": [vanilje]}, {"key": sirup, "value": [karamell]}]);
    let reply = as_customer(&daemon, &cookie, &latte(&menu, fine)).await;
    assert_eq!(reply.status, 201, "{}", brief(&reply));
    assert_eq!(reply.json()["items"][0]["total"], 45 + 5 + 5);
    assert_eq!(list(&daemon, "order").await.len(), 1);
    daemon.stop().await;
}

#[tokio::test]
async fn more_lines_than_the_limit_are_refused_before_any_is_checked() {
    let daemon = Daemon::start(true, |c| c.limits.max_order_lines = 3).await;
    let menu = Menu::load(&daemon).await;
    let (_, cookie) = customer(&daemon, "per@skole.no").await;
    let mut screen = order_screen(&daemon).await;
    let line = json!({"item": menu.item("Latte"), "customizations": []});
    let reply = as_customer(&daemon, &cookie, &json!({"items": vec![line.clone(); 4]})).await;
    assert_eq!(reply.status, 422, "{}", brief(&reply));
    let error = reply.json()["errors"]["items"][0].clone();
    assert!(
        error
            .as_str()
            .is_some_and(|e| e.contains("at most 3 lines")),
        "{error}"
    );
    // 50 000 lines of unknown items (800 kB): one error, not one per line.
    let junk = json!({"item": 999_999});
    let reply = as_customer(&daemon, &cookie, &json!({"items": vec![junk; 50_000]})).await;
    assert_eq!(reply.status, 422);
    assert!(reply.body.len() < 1000, "{}", reply.body.len());
    let reply = as_customer(&daemon, &cookie, &json!({"items": vec![line; 3]})).await;
    assert_eq!(reply.status, 201, "{}", brief(&reply));
    let change = screen.next_event("collection:order", "change").await;
    assert_eq!(change["record"]["id"], reply.json()["id"], "{change}");
    daemon.stop().await;
}

#[tokio::test]
async fn an_order_whose_record_is_over_max_order_bytes_is_refused_and_not_stored() {
    let daemon = Daemon::start(true, |c| c.limits.max_order_bytes = 2000).await;
    let menu = Menu::load(&daemon).await;
    let (_, cookie) = customer(&daemon, "siri@skole.no").await;
    let mut screen = order_screen(&daemon).await;
    let line = json!({"item": menu.item("Latte"), "customizations": [
        {"key": menu.key("Sirup"), "value": [menu.value("Vanilje"), menu.value("Karamell")]},
        {"key": menu.key("Melk"), "value": [menu.value("Havre")]},
    ]});
    // One such line is well under 2 000 bytes; five are not.
    let reply = as_customer(&daemon, &cookie, &json!({"items": vec![line.clone(); 5]})).await;
    assert_eq!(reply.status, 422, "{}", brief(&reply));
    let error = reply.json()["errors"]["items"][0].clone();
    assert!(
        error
            .as_str()
            .is_some_and(|e| e.contains("max_order_bytes")),
        "{error}"
    );
    assert_eq!(list(&daemon, "order").await, Vec::<Value>::new());
    nothing_broadcast_before_the_next_order(&daemon, &mut screen).await;
    let reply = as_customer(&daemon, &cookie, &json!({"items": [line]})).await;
    assert_eq!(reply.status, 201, "{}", brief(&reply));
    assert!(reply.body.len() <= 2000, "{}", reply.body.len());
    daemon.stop().await;
}

#[tokio::test]
async fn the_default_body_limit_applies_to_orders() {
    let daemon = Daemon::demo().await;
    let (_, cookie) = customer(&daemon, "eva@skole.no").await;
    let huge = format!(
        r#"{{"items": [], "pad": "{}"}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    let reply = call(daemon.addr, "POST", ORDERS)
        .header("cookie", &cookie)
        .header("content-type", "application/json")
        .raw(huge)
        .send()
        .await;
    assert_eq!(reply.status, 413, "{}", brief(&reply));
    daemon.stop().await;
}
