//! Placing orders over HTTP (SPEC 5.2): the frontend's body, prices, per-item errors,
//! `day_id` numbering under concurrency and across local midnight, `uuid` idempotency, state
//! changes and list filters.

use serde_json::{json, Value};

use super::{admin, latte_order, list, named, Menu, ADMIN};
use crate::support::http::{call, get_json};
use crate::support::Daemon;

#[tokio::test]
async fn an_order_with_the_frontends_body_is_priced_and_snapshotted() {
    let daemon = Daemon::demo().await;
    let menu = Menu::load(&daemon).await;
    // The frontend keeps ids as strings and sends one entry per chosen value, so a
    // multiple-choice key appears once per value.
    let s = |id: i64| id.to_string();
    let body = json!({
        "customer_id": 7,
        "missing_information": false,
        "state": "received",
        "items": [
            {"item": s(menu.item("Latte")), "customizations": [
                {"key": s(menu.key("Størrelse")), "value": [s(menu.value("Stor"))]},
                {"key": s(menu.key("Melk")), "value": [s(menu.value("Havre"))]},
                {"key": s(menu.key("Sirup")), "value": [s(menu.value("Vanilje"))]},
                {"key": s(menu.key("Sirup")), "value": [s(menu.value("Karamell"))]},
            ]},
            {"item": menu.item("Kanelbolle"), "customizations": []},
        ],
    });
    let reply = admin(&daemon, "POST", "/api/collections/order/records", body).await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let order = reply.json();
    assert_eq!(order["day_id"], 101);
    assert_eq!(order["state"], "received");
    assert_eq!(order["customer_id"], 7);
    assert_eq!(order["missing_information"], false);
    assert!(
        order["uuid"].as_str().is_some_and(|u| u.len() >= 32),
        "{order}"
    );
    let latte = &order["items"][0];
    assert_eq!(latte["name"], "Latte");
    assert_eq!(latte["price"], 45);
    assert_eq!(latte["category"], "Kaffe");
    assert_eq!(latte["total"], 45 + 10 + 5 + 5 + 5);
    let customizations = latte["customizations"].as_array().expect("customizations");
    assert_eq!(customizations.len(), 4);
    let havre = customizations
        .iter()
        .find(|c| c["value_name"] == "Havre")
        .expect("Havre");
    assert_eq!(havre["key_name"], "Melk");
    assert_eq!(havre["key_id"], menu.key("Melk"));
    assert_eq!(havre["value_id"], menu.value("Havre"));
    assert_eq!(havre["price_change"], 5);
    assert_eq!(havre["constant_price"], true);
    assert_eq!(havre["label_color"], "#42a5f5");
    assert_eq!(order["items"][1]["total"], 35);
    assert_eq!(order["total_nok"], 70 + 35);

    // Later menu edits never change a placed order.
    let reply = admin(
        &daemon,
        "PATCH",
        &format!("/api/collections/item/records/{}", menu.item("Latte")),
        json!({"price_nok": 99, "name": "Caffè latte"}),
    )
    .await;
    assert_eq!(reply.status, 200);
    let (_, again) = get_json(
        daemon.addr,
        &format!("/api/collections/order/records/{}", order["id"]),
    )
    .await;
    assert_eq!(again["items"][0]["name"], "Latte");
    assert_eq!(again["total_nok"], 105);
    daemon.stop().await;
}

#[tokio::test]
async fn percentage_values_multiply_and_round_up() {
    let daemon = Daemon::demo().await;
    let menu = Menu::load(&daemon).await;
    let categories = list(&daemon, "category").await;
    let kaffe = named(&categories, "Kaffe").clone();
    let key = admin(
        &daemon,
        "POST",
        "/api/collections/customization_key/records",
        json!({"name": "Rabatt", "multiple_choice": true}),
    )
    .await
    .json();
    let mut valid = kaffe["valid_customizations"].as_array().unwrap().clone();
    valid.push(key["id"].clone());
    let reply = admin(
        &daemon,
        "PATCH",
        &format!("/api/collections/category/records/{}", kaffe["id"]),
        json!({"valid_customizations": valid}),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let student = percentage_value(&daemon, &key["id"], "Student", 90).await;
    let tiny = percentage_value(&daemon, &key["id"], "Smak", 110).await;
    let body = json!({"customer_id": null, "items": [
        // (45 + 5) × 0.9 × 1.1 = 49.5 → 50
        {"item": menu.item("Latte"), "customizations": [
            {"key": menu.key("Melk"), "value": [menu.value("Havre")]},
            {"key": key["id"], "value": [student, tiny]},
        ]},
    ]});
    let reply = admin(&daemon, "POST", "/api/collections/order/records", body).await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let order = reply.json();
    assert_eq!(order["items"][0]["total"], 50);
    assert_eq!(order["total_nok"], 50);
    daemon.stop().await;
}

async fn percentage_value(daemon: &Daemon, key: &Value, name: &str, percent: i64) -> Value {
    let reply = admin(
        daemon,
        "POST",
        "/api/collections/customization_value/records",
        json!({"name": name, "price_increment_nok": percent,
               "constant_price": false, "belongs_to": key}),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    reply.json()["id"].clone()
}

#[tokio::test]
async fn bad_orders_name_the_item_index_and_store_nothing() {
    let daemon = Daemon::demo().await;
    let menu = Menu::load(&daemon).await;
    let latte = menu.item("Latte");
    let reply = admin(
        &daemon,
        "PATCH",
        &format!("/api/collections/item/records/{}", menu.item("Mocha")),
        json!({"enable": false}),
    )
    .await;
    assert_eq!(reply.status, 200);

    let order = |items: Value| json!({"customer_id": 1, "items": items, "state": "received"});
    let cases = [
        // Unknown item at index 0, a fine item at index 1.
        (
            order(
                json!([{"item": 999999, "customizations": []}, {"item": latte, "customizations": []}]),
            ),
            json!({"items": [{"item": ["not found"]}, {}]}),
        ),
        // A disabled item.
        (
            order(json!([{"item": latte}, {"item": menu.item("Mocha")}])),
            json!({"items": [{}, {"item": ["is not available"]}]}),
        ),
    ];
    for (body, expected) in cases {
        let reply = admin(&daemon, "POST", "/api/collections/order/records", body).await;
        assert_eq!(reply.status, 422, "{}", reply.text());
        assert_eq!(reply.json()["errors"], expected);
    }

    let more = [
        // Milk is no choice for a cinnamon bun.
        order(json!([{"item": menu.item("Kanelbolle"), "customizations": [
            {"key": menu.key("Melk"), "value": [menu.value("Havre")]}]}])),
        // A value of another key.
        order(json!([{"item": latte, "customizations": [
            {"key": menu.key("Melk"), "value": [menu.value("Stor")]}]}])),
        // Two values for a single-choice key.
        order(json!([{"item": latte, "customizations": [
            {"key": menu.key("Melk"), "value": [menu.value("Havre"), menu.value("Hel")]}]}])),
        // An unknown key.
        order(json!([{"item": latte, "customizations": [{"key": 999999, "value": []}]}])),
    ];
    for body in more {
        let reply = admin(
            &daemon,
            "POST",
            "/api/collections/order/records",
            body.clone(),
        )
        .await;
        assert_eq!(reply.status, 422, "{body}: {}", reply.text());
        let errors = &reply.json()["errors"]["items"][0]["customizations"][0];
        assert!(
            errors.is_object() && !errors.as_object().unwrap().is_empty(),
            "{}",
            reply.text()
        );
    }
    // The same single-choice key twice, one value each (the frontend's shape): the second
    // entry is the one at fault.
    let twice = order(json!([{"item": latte, "customizations": [
        {"key": menu.key("Melk"), "value": [menu.value("Havre")]},
        {"key": menu.key("Melk"), "value": [menu.value("Hel")]}]}]));
    let reply = admin(&daemon, "POST", "/api/collections/order/records", twice).await;
    assert_eq!(reply.status, 422);
    let entries = &reply.json()["errors"]["items"][0]["customizations"];
    assert_eq!(entries[0], json!({}));
    assert!(entries[1]["value"][0].is_string(), "{entries}");

    for (body, field) in [
        (json!({"customer_id": 1, "items": []}), "items"),
        (json!({"customer_id": 1}), "items"),
        (
            json!({"customer_id": 1, "items": [{"item": latte}], "state": "eaten"}),
            "state",
        ),
        (
            json!({"customer_id": "seven", "items": [{"item": latte}]}),
            "customer_id",
        ),
    ] {
        let reply = admin(&daemon, "POST", "/api/collections/order/records", body).await;
        assert_eq!(reply.status, 422);
        assert!(
            reply.json()["errors"][field][0].is_string(),
            "{}",
            reply.text()
        );
    }
    assert_eq!(list(&daemon, "order").await, Vec::<Value>::new());
    daemon.stop().await;
}

#[tokio::test]
async fn fifty_parallel_orders_get_consecutive_day_ids() {
    let daemon = Daemon::demo().await;
    let menu = Menu::load(&daemon).await;
    let body = latte_order(&menu, 3);
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let body = body.clone();
        let addr = daemon.addr;
        tasks.push(tokio::spawn(async move {
            call(addr, "POST", "/api/collections/order/records")
                .header("authorization", ADMIN)
                .json(&body)
                .send()
                .await
        }));
    }
    let mut day_ids = Vec::new();
    for task in tasks {
        let reply = task.await.expect("task");
        assert_eq!(reply.status, 201, "{}", reply.text());
        day_ids.push(reply.json()["day_id"].as_i64().expect("day_id"));
    }
    day_ids.sort();
    assert_eq!(day_ids, (101..=150).collect::<Vec<_>>());
    assert_eq!(list(&daemon, "order").await.len(), 50);
    daemon.stop().await;
}

#[tokio::test]
async fn a_retried_order_with_the_same_uuid_is_one_order() {
    let daemon = Daemon::demo().await;
    let menu = Menu::load(&daemon).await;
    let mut body = latte_order(&menu, 7);
    body["uuid"] = json!("3f0e9c1e-retry-me");
    let first = admin(
        &daemon,
        "POST",
        "/api/collections/order/records",
        body.clone(),
    )
    .await;
    assert_eq!(first.status, 201, "{}", first.text());
    let second = admin(&daemon, "POST", "/api/collections/order/records", body).await;
    assert_eq!(second.status, 200, "{}", second.text());
    assert_eq!(second.json(), first.json());
    assert_eq!(first.json()["uuid"], "3f0e9c1e-retry-me");
    assert_eq!(list(&daemon, "order").await.len(), 1);
    daemon.stop().await;
}

#[tokio::test]
async fn day_ids_restart_at_101_after_local_midnight() {
    let daemon = Daemon::demo().await;
    let menu = Menu::load(&daemon).await;
    // 23:59:50 in Oslo (UTC+1 in winter).
    daemon
        .clock
        .set("2036-12-01T22:59:50Z".parse().expect("ts"));
    let place = || {
        admin(
            &daemon,
            "POST",
            "/api/collections/order/records",
            latte_order(&menu, 1),
        )
    };
    assert_eq!(place().await.json()["day_id"], 101);
    assert_eq!(place().await.json()["day_id"], 102);
    daemon
        .clock
        .set("2036-12-01T23:00:05Z".parse().expect("ts"));
    let after = place().await.json();
    assert_eq!(after["day_id"], 101, "{after}");
    assert!(after["inserted_at"]
        .as_str()
        .unwrap()
        .starts_with("2036-12-01T23:00:0"));
    daemon.stop().await;
}

#[tokio::test]
async fn order_state_changes_by_patch_and_lists_filter_by_query() {
    let daemon = Daemon::demo().await;
    let menu = Menu::load(&daemon).await;
    daemon
        .clock
        .set("2036-03-02T10:00:00Z".parse().expect("ts"));
    let a = admin(
        &daemon,
        "POST",
        "/api/collections/order/records",
        latte_order(&menu, 7),
    )
    .await
    .json();
    let b = admin(
        &daemon,
        "POST",
        "/api/collections/order/records",
        latte_order(&menu, 8),
    )
    .await
    .json();
    let path = format!("/api/collections/order/records/{}", a["id"]);
    let reply = admin(&daemon, "PATCH", &path, json!({"state": "production"})).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["state"], "production");
    assert_eq!(reply.json()["items"], a["items"], "the snapshot stays");
    let reply = admin(&daemon, "PATCH", &path, json!({"state": "eaten"})).await;
    assert_eq!(reply.status, 422);
    assert!(reply.json()["errors"]["state"][0].is_string());
    let reply = call(daemon.addr, "PATCH", &path)
        .json(&json!({"state": "completed"}))
        .send()
        .await;
    assert_eq!(reply.status, 401);

    let ids = |v: Value| -> Vec<i64> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|o| o["id"].as_i64().unwrap())
            .collect()
    };
    let base = "/api/collections/order/records";
    let (_, all) = get_json(daemon.addr, base).await;
    assert_eq!(
        ids(all),
        vec![a["id"].as_i64().unwrap(), b["id"].as_i64().unwrap()]
    );
    // A customer filter is for admins (and the customer itself): SPEC 6.
    let sevens = call(daemon.addr, "GET", &format!("{base}?customer_id=7"))
        .header("authorization", ADMIN)
        .send()
        .await
        .json();
    assert_eq!(ids(sevens), vec![a["id"].as_i64().unwrap()]);
    let (_, received) = get_json(daemon.addr, &format!("{base}?state=received")).await;
    assert_eq!(ids(received), vec![b["id"].as_i64().unwrap()]);
    let (_, today) = get_json(daemon.addr, &format!("{base}?from_date=today")).await;
    assert_eq!(ids(today).len(), 2);
    let (_, later) = get_json(daemon.addr, &format!("{base}?from_date=2036-03-03")).await;
    assert_eq!(ids(later), Vec::<i64>::new());
    for bad in [
        "from_date=yesterday",
        "customer_id=x",
        "state=eaten",
        "from_date=2026-3-1",
    ] {
        let reply = call(daemon.addr, "GET", &format!("{base}?{bad}"))
            .send()
            .await;
        assert_eq!(reply.status, 422, "{bad}");
        let field = bad.split('=').next().unwrap();
        assert!(
            reply.json()["errors"][field].is_array(),
            "{bad}: {}",
            reply.text()
        );
    }

    let reply = call(daemon.addr, "DELETE", &path)
        .header("authorization", ADMIN)
        .send()
        .await;
    assert_eq!(reply.status, 204);
    let (_, rest) = get_json(daemon.addr, base).await;
    assert_eq!(ids(rest), vec![b["id"].as_i64().unwrap()]);
    daemon.stop().await;
}

#[tokio::test]
async fn a_placed_order_reaches_order_subscribers() {
    let daemon = Daemon::demo().await;
    let menu = Menu::load(&daemon).await;
    // An admin's screen: it sees the order whole, customer included (SPEC 6).
    let mut socket = daemon.socket("token=admin-secret").await;
    socket.join_ok("collection:order", json!({})).await;
    let reply = admin(
        &daemon,
        "POST",
        "/api/collections/order/records",
        latte_order(&menu, 4),
    )
    .await;
    assert_eq!(reply.status, 201);
    let change = socket.next_event("collection:order", "change").await;
    assert_eq!(change["action"], "create");
    assert_eq!(change["record"], reply.json());
    daemon.stop().await;
}
