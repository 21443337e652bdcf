//! The imported café as the upstream frontend sees it: imported while no daemon ran, then
//! served by the real binary.

use serde_json::{json, Value};

use super::fixture::{png, Kaffebase, BUILT_IN_ADMIN, BUILT_IN_PASSWORD, KARI};
use super::{counts, import, report};
use crate::support::http::{call, get_json};
use crate::support::process::{Daemon, Site};
use crate::support::Socket;

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("a list")
        .iter()
        .map(|v| v["name"].as_str().expect("a name").to_owned())
        .collect()
}

fn hash_of(site: &Site, id: i64) -> String {
    site.shell()
        .query_row("SELECT password_hash FROM user WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .expect("hash")
}

#[tokio::test]
async fn the_frontend_finds_the_imported_menu_orders_and_accounts() {
    let site = Site::new();
    let kb = Kaffebase::create(&site.path("kaffebase_prod.db"));
    kb.clean_cafe();
    let old = kb.close();
    let images = site.path("uploads");
    std::fs::create_dir_all(images.join("images")).expect("mkdir");
    std::fs::write(images.join("images/kanelbolle.png"), png()).expect("png");
    let report = report(&import(
        &site,
        &old,
        &["--images", images.to_str().expect("utf-8")],
    ));
    assert_eq!(counts(&report, "item"), [4, 4, 0, 0], "{report}");
    assert!(report.contains("images stored: 1"), "{report}");

    let daemon = Daemon::start(site.command(&["serve"]));

    // The menu tree, as the frontend builds its screens from it.
    let (status, menu) = get_json(daemon.addr, "/api/menu").await;
    assert_eq!(status, 200);
    let tree = &menu["tree"];
    assert_eq!(names(tree), ["Kaffe", "Te", "Bakst"]);
    let coffee = &tree[0];
    assert_eq!(names(&coffee["items"]), ["Espresso", "Latte"]);
    let latte = &coffee["items"][1];
    assert_eq!(latte["price_nok"], 45);
    assert_eq!(latte["image"], "https://cdn.kafe.no/latte.png");
    let keys: Vec<&str> = latte["customizations"]
        .as_array()
        .expect("customizations")
        .iter()
        .map(|c| c["key"]["name"].as_str().expect("key name"))
        .collect();
    assert_eq!(keys, ["Størrelse", "Melk", "Sirup"]);
    let milk = &latte["customizations"][1];
    assert_eq!(milk["key"]["default_value"], "4");
    assert_eq!(names(&milk["values"]), ["Havremelk", "Laktosefri"]);
    assert_eq!(milk["values"][0]["price_increment_nok"], 5);
    // Te listed its key as a string id ("2"): still its syrup.
    let tea_keys = &tree[1]["items"][0]["customizations"];
    assert_eq!(tea_keys[0]["key"]["name"], "Sirup");
    // The bun's image came from --images and is served like an upload.
    let bun = &tree[2]["items"][0];
    let url = bun["image"].as_str().expect("an image URL");
    let path = &url[url.find("/api/files/item/4/").expect("a file URL")..];
    let image = call(daemon.addr, "GET", path).send().await;
    assert_eq!(image.status, 200);
    assert_eq!(image.header("content-type"), Some("image/png"));
    assert_eq!(image.body.as_ref(), png().as_slice());

    // Today's orders with their customizations and colours, over HTTP and on a join.
    let (status, orders) = get_json(
        daemon.addr,
        "/api/collections/order/records?from_date=today",
    )
    .await;
    assert_eq!(status, 200);
    let orders = orders.as_array().expect("orders").clone();
    let summary: Vec<(i64, i64, i64)> = orders
        .iter()
        .map(|o| {
            (
                o["id"].as_i64().expect("id"),
                o["day_id"].as_i64().expect("day_id"),
                o["total_nok"].as_i64().expect("total"),
            )
        })
        .collect();
    assert_eq!(summary, [(3, 101, 85), (4, 102, 50)]);
    let line = &orders[0]["items"][0];
    assert_eq!(line["name"], "Latte");
    assert_eq!(line["price"], 45);
    assert_eq!(line["total"], 50);
    assert_eq!(
        line["customizations"][0],
        json!({"key_id": 1, "key_name": "Melk", "value_id": 4, "value_name": "Havremelk",
               "price_change": 5, "constant_price": true, "label_color": "#f5deb3"})
    );
    let mut socket = Socket::connect(&daemon.ws_url()).await;
    let joined = socket
        .join_ok(
            "collection:order",
            json!({"options": {"from_date": "today"}}),
        )
        .await;
    assert_eq!(joined["items"].as_array().expect("items").len(), 2);
    assert_eq!(
        joined["items"][1]["items"][0]["customizations"][1]["label_color"],
        "#4682b4"
    );
    let (_, status) = get_json(daemon.addr, "/api/collections/status/records").await;
    assert_eq!(status[0]["open"], true);
    assert_eq!(status[0]["message_id"], 1);

    // Kari logs in with her old password; the bcrypt hash is replaced by Argon2id.
    assert!(hash_of(&site, 2).starts_with("$2b$"));
    let login = |email: &'static str, password: &'static str| {
        call(daemon.addr, "POST", "/api/session")
            .json(&json!({"email": email, "password": password}))
    };
    let first = login(KARI.0, KARI.1).send().await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.json()["data"]["is_admin"], true);
    let rehashed = hash_of(&site, 2);
    assert!(rehashed.starts_with("$argon2id$"), "{rehashed}");
    assert_eq!(login(KARI.0, KARI.1).send().await.status, 200);
    assert_eq!(login(KARI.0, "not her password").send().await.status, 401);
    // Nobody gets in with the published password.
    assert_eq!(
        login(BUILT_IN_ADMIN, BUILT_IN_PASSWORD).send().await.status,
        401
    );
}
