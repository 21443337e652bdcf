//! Admin writes to the catalog, messages and status with the frontend's exact bodies, and the
//! 422s that protect them: field names in every error, nothing stored by a refused write.

use serde_json::{json, Value};

use super::{admin, id_of, list, Menu, ADMIN};
use crate::support::http::{call, get_json};
use crate::support::Daemon;

#[tokio::test]
async fn admin_edits_the_catalog_with_the_frontends_exact_bodies() {
    let daemon = Daemon::demo().await;
    // Category create: the frontend sends id 0 and server-owned fields.
    let reply = admin(
        &daemon,
        "POST",
        "/api/collections/category/records",
        json!({"id": 0, "name": "Smoothie", "sort_order": 9, "enable": true,
               "valid_customizations": [], "inserted_at": "x", "updated_at": "y"}),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let category = reply.json();
    let category_id = category["id"].as_i64().expect("id");
    assert!(category_id > 0);
    assert_eq!(category["name"], "Smoothie");
    assert_eq!(category["valid_customizations"], json!([]));
    assert!(category["inserted_at"].as_str().unwrap().ends_with('Z'));

    // Item create, then the frontend's update body.
    let reply = admin(
        &daemon,
        "POST",
        "/api/collections/item/records",
        json!({"id": 0, "name": "Bær", "price_nok": 55, "category_id": category_id,
               "category_name": "ignored", "enable": true, "sort_order": 1, "image": null}),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let item = reply.json();
    assert_eq!(item["category_name"], "Smoothie");
    assert_eq!(item["image"], Value::Null);
    let path = format!("/api/collections/item/records/{}", item["id"]);
    let reply = admin(
        &daemon,
        "PATCH",
        &path,
        json!({"name": "Bærsmoothie", "price_nok": 60, "category_id": category_id,
               "enable": false, "sort_order": 2, "image": null}),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let updated = reply.json();
    assert_eq!(updated["name"], "Bærsmoothie");
    assert_eq!(updated["price_nok"], 60);
    assert_eq!(updated["enable"], false);
    assert!(updated["updated_at"].as_str() > item["updated_at"].as_str());
    // PUT is a partial update too.
    let reply = admin(&daemon, "PUT", &path, json!({"price_nok": 62})).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["name"], "Bærsmoothie");
    assert_eq!(reply.json()["price_nok"], 62);
    let (_, fetched) = get_json(daemon.addr, &path).await;
    assert_eq!(fetched, reply.json());

    // Customization key: default_value arrives as a string and is kept as one.
    let reply = admin(
        &daemon,
        "POST",
        "/api/collections/customization_key/records",
        json!({"id": 0, "name": "Is", "enable": true, "label_color": "#00ffff",
               "default_value": "", "multiple_choice": false, "sort_order": 5}),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let key = reply.json();
    let reply = admin(
        &daemon,
        "POST",
        "/api/collections/customization_value/records",
        json!({"id": 0, "name": "Mye is", "price_increment_nok": 0, "constant_price": true,
               "belongs_to": key["id"], "enable": true, "sort_order": 0}),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let value = reply.json();
    let reply = admin(
        &daemon,
        "PATCH",
        &format!("/api/collections/customization_key/records/{}", key["id"]),
        json!({"default_value": value["id"].to_string()}),
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["default_value"], value["id"].to_string());

    // Message create and the status update the front desk sends.
    let reply = admin(
        &daemon,
        "POST",
        "/api/collections/message/records",
        json!({"title": "Stengt i dag", "subtitle": null}),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let message = reply.json();
    assert_eq!(message["subtitle"], Value::Null);
    let reply = admin(
        &daemon,
        "PATCH",
        "/api/collections/status/records/1",
        json!({"open": false, "show_message": true, "message_id": message["id"]}),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let status = reply.json();
    assert_eq!(status["open"], false);
    assert_eq!(status["message_id"], message["id"]);

    // Deletes: value, key, item, category, message (which clears the status' message_id).
    for (collection, id) in [
        ("customization_value", &value["id"]),
        ("customization_key", &key["id"]),
        ("item", &item["id"]),
        ("category", &category["id"]),
        ("message", &message["id"]),
    ] {
        let path = format!("/api/collections/{collection}/records/{id}");
        let reply = call(daemon.addr, "DELETE", &path)
            .header("authorization", ADMIN)
            .send()
            .await;
        assert_eq!(reply.status, 204, "{path}: {}", reply.text());
        assert!(reply.body.is_empty());
        let reply = call(daemon.addr, "GET", &path).send().await;
        assert_eq!(reply.status, 404, "{path} is gone");
    }
    assert_eq!(list(&daemon, "status").await[0]["message_id"], Value::Null);
    daemon.stop().await;
}

#[tokio::test]
async fn validation_errors_name_the_fields_and_store_nothing() {
    let daemon = Daemon::demo().await;
    let menu = Menu::load(&daemon).await;
    let categories = list(&daemon, "category").await;
    let before_items = list(&daemon, "item").await;
    let before_values = list(&daemon, "customization_value").await;
    let before_status = list(&daemon, "status").await;

    let cases = [
        (
            "POST",
            "/api/collections/item/records".to_string(),
            json!({"name": "Ghost", "price_nok": 10, "category_id": 999999}),
            "category_id",
        ),
        (
            "POST",
            "/api/collections/item/records".to_string(),
            json!({"price_nok": "ten", "category_id": id_of(&categories, "Kaffe")}),
            "price_nok",
        ),
        (
            "POST",
            "/api/collections/item/records".to_string(),
            json!({"price_nok": 10, "category_id": id_of(&categories, "Kaffe")}),
            "name",
        ),
        (
            "POST",
            "/api/collections/customization_value/records".to_string(),
            json!({"name": "Soya", "belongs_to": 999999}),
            "belongs_to",
        ),
        (
            "PATCH",
            "/api/collections/status/records/1".to_string(),
            json!({"message_id": 999999}),
            "message_id",
        ),
        (
            "PATCH",
            format!("/api/collections/item/records/{}", menu.item("Latte")),
            json!({"enable": "maybe", "name": null}),
            "enable",
        ),
        (
            "DELETE",
            format!(
                "/api/collections/category/records/{}",
                id_of(&categories, "Kaffe")
            ),
            json!({}),
            "items",
        ),
        (
            "DELETE",
            format!(
                "/api/collections/customization_key/records/{}",
                menu.key("Melk")
            ),
            json!({}),
            "values",
        ),
    ];
    for (method, path, body, field) in &cases {
        let reply = admin(&daemon, method, path, body.clone()).await;
        assert_eq!(
            reply.status,
            422,
            "{method} {path} {body}: {}",
            reply.text()
        );
        let errors = &reply.json()["errors"];
        assert!(
            errors[field][0].is_string(),
            "{method} {path}: expected an error on {field}: {errors}"
        );
    }
    assert_eq!(list(&daemon, "item").await, before_items);
    assert_eq!(list(&daemon, "customization_value").await, before_values);
    assert_eq!(list(&daemon, "category").await, categories);
    assert_eq!(list(&daemon, "status").await, before_status);
    daemon.stop().await;
}
