//! Prices and increments stay within ±100 000 NOK (SPEC 4, 10), and an order's total is
//! computed with checked arithmetic: a total that does not fit is a 422, never a wrapped or
//! saturated number, whether the menu came through the API or the `sqlite3` shell.

use serde_json::{json, Value};

use super::{admin, list, named, Menu};
use crate::support::Daemon;

const ORDERS: &str = "/api/collections/order/records";

#[tokio::test]
async fn prices_and_increments_out_of_bounds_are_refused_on_create_and_update() {
    let daemon = Daemon::demo().await;
    let menu = Menu::load(&daemon).await;
    let kaffe = named(&list(&daemon, "category").await, "Kaffe")["id"].clone();
    let sirup = menu.key("Sirup");
    let items = "/api/collections/item/records";
    let values = "/api/collections/customization_value/records";
    for price in [json!(100_001), json!(i64::MAX), json!(-1), json!("1000000")] {
        let body = json!({"name": "Gull", "price_nok": price, "category_id": kaffe});
        let reply = admin(&daemon, "POST", items, body).await;
        assert_eq!(reply.status, 422, "{price}: {}", reply.text());
        assert!(reply.json()["errors"]["price_nok"][0].is_string());
    }
    for increment in [json!(100_001), json!(-100_001), json!(i64::MIN)] {
        let body = json!({"name": "Gull", "price_increment_nok": increment, "belongs_to": sirup});
        let reply = admin(&daemon, "POST", values, body).await;
        assert_eq!(reply.status, 422, "{increment}: {}", reply.text());
        assert!(reply.json()["errors"]["price_increment_nok"][0].is_string());
    }
    let latte = format!("{items}/{}", menu.item("Latte"));
    let reply = admin(&daemon, "PATCH", &latte, json!({"price_nok": 9_999_999})).await;
    assert_eq!(reply.status, 422, "{}", reply.text());
    let vanilje = format!("{values}/{}", menu.value("Vanilje"));
    let reply = admin(
        &daemon,
        "PATCH",
        &vanilje,
        json!({"price_increment_nok": i64::MAX}),
    )
    .await;
    assert_eq!(reply.status, 422, "{}", reply.text());
    // Nothing changed, and the edges themselves are fine.
    let reply = admin(&daemon, "PATCH", &latte, json!({"price_nok": 100_000})).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let reply = admin(
        &daemon,
        "PATCH",
        &vanilje,
        json!({"price_increment_nok": -100_000}),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    daemon.stop().await;
}

#[tokio::test]
async fn an_item_priced_i64_max_in_the_shell_is_a_422_naming_it_not_a_wrapped_total() {
    let daemon = Daemon::demo().await;
    let menu = Menu::load(&daemon).await;
    daemon
        .shell()
        .execute(
            "UPDATE item SET price_nok = 9223372036854775807 WHERE name = 'Latte'",
            [],
        )
        .expect("shell update");
    let line = json!({"item": menu.item("Latte"), "customizations": []});
    let reply = admin(
        &daemon,
        "POST",
        ORDERS,
        json!({"items": [line.clone(), line]}),
    )
    .await;
    assert_eq!(reply.status, 422, "{}", reply.text());
    let error = reply.json()["errors"]["items"][0]["item"][0].clone();
    assert!(
        error.as_str().is_some_and(|e| e.contains("Latte")),
        "{error}"
    );
    assert_eq!(list(&daemon, "order").await, Vec::<Value>::new());
    // The other items still sell.
    let bun = json!({"item": menu.item("Kanelbolle")});
    let reply = admin(&daemon, "POST", ORDERS, json!({"items": [bun]})).await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    daemon.stop().await;
}

#[tokio::test]
async fn a_total_too_large_for_an_integer_is_a_422() {
    let daemon = Daemon::demo().await;
    let menu = Menu::load(&daemon).await;
    let kaffe = named(&list(&daemon, "category").await, "Kaffe").clone();
    // Within every bound: an item at 100 000 NOK and a multiple-choice key whose values each
    // multiply the price by 1 000 (100 000 %). Six of them make 10^23 NOK.
    let key = admin(
        &daemon,
        "POST",
        "/api/collections/customization_key/records",
        json!({"name": "Gullstøv", "multiple_choice": true}),
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
    let mut values = Vec::new();
    for n in 0..6 {
        let reply = admin(
            &daemon,
            "POST",
            "/api/collections/customization_value/records",
            json!({"name": format!("Flak {n}"), "price_increment_nok": 100_000,
                   "constant_price": false, "belongs_to": key["id"]}),
        )
        .await;
        assert_eq!(reply.status, 201, "{}", reply.text());
        values.push(reply.json()["id"].clone());
    }
    let reply = admin(
        &daemon,
        "PATCH",
        &format!("/api/collections/item/records/{}", menu.item("Latte")),
        json!({"price_nok": 100_000}),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let line = json!({"item": menu.item("Latte"), "customizations": [
        {"key": key["id"], "value": values},
    ]});
    let reply = admin(&daemon, "POST", ORDERS, json!({"items": [line]})).await;
    assert_eq!(reply.status, 422, "{}", reply.text());
    let error = reply.json()["errors"]["items"][0]["item"][0].clone();
    assert!(
        error.as_str().is_some_and(|e| e.contains("too large")),
        "{error}"
    );
    // Four of them and one of 5 000 % make 5 × 10^18 NOK: one line fits an integer, two
    // do not, and the order's sum is checked too.
    let reply = admin(
        &daemon,
        "POST",
        "/api/collections/customization_value/records",
        json!({"name": "Halvflak", "price_increment_nok": 5_000,
               "constant_price": false, "belongs_to": key["id"]}),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let mut chosen = values[..4].to_vec();
    chosen.push(reply.json()["id"].clone());
    let line = json!({"item": menu.item("Latte"), "customizations": [
        {"key": key["id"], "value": chosen},
    ]});
    let reply = admin(&daemon, "POST", ORDERS, json!({"items": [line.clone()]})).await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    assert_eq!(reply.json()["total_nok"], 5_000_000_000_000_000_000i64);
    let reply = admin(
        &daemon,
        "POST",
        ORDERS,
        json!({"items": [line.clone(), line]}),
    )
    .await;
    assert_eq!(reply.status, 422, "{}", reply.text());
    assert!(
        reply.json()["errors"]["total_nok"][0].is_string(),
        "{}",
        reply.text()
    );
    assert_eq!(list(&daemon, "order").await.len(), 1);
    daemon.stop().await;
}
