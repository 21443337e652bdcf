//! The HTTP JSON API through real HTTP requests to an in-process daemon with a real SQLite
//! file: routes, error classes, permissions, CORS, and that a write over HTTP reaches socket
//! subscribers. Catalog writes, orders, images and session-level permissions have their own
//! files below `api/`. Admin writes here use the interim admin token for scripts
//! (`Authorization: Bearer admin-secret`).

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::http::{call, get_json, Reply};
use crate::support::process::{Daemon as Process, Site};
use crate::support::{Daemon, WAIT};

mod bad_rows;
mod catalog;
mod customer_orders;
mod images;
mod order_limits;
mod orders;
mod prices;
mod users;

const ADMIN: &str = "Bearer admin-secret";
const FRONTEND: &str = "http://kaffediem.local:5173";

async fn admin(daemon: &Daemon, method: &str, path: &str, body: Value) -> Reply {
    call(daemon.addr, method, path)
        .header("authorization", ADMIN)
        .json(&body)
        .send()
        .await
}

async fn list(daemon: &Daemon, collection: &str) -> Vec<Value> {
    let (status, body) = get_json(
        daemon.addr,
        &format!("/api/collections/{collection}/records"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body.as_array().expect("array").clone()
}

fn named<'a>(records: &'a [Value], name: &str) -> &'a Value {
    records
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no record named {name}"))
}

fn id_of(records: &[Value], name: &str) -> i64 {
    named(records, name)["id"].as_i64().expect("id")
}

/// Ids the order body needs, from the demo café.
struct Menu {
    items: Vec<Value>,
    keys: Vec<Value>,
    values: Vec<Value>,
}

impl Menu {
    async fn load(daemon: &Daemon) -> Menu {
        Menu {
            items: list(daemon, "item").await,
            keys: list(daemon, "customization_key").await,
            values: list(daemon, "customization_value").await,
        }
    }
    fn item(&self, name: &str) -> i64 {
        id_of(&self.items, name)
    }
    fn key(&self, name: &str) -> i64 {
        id_of(&self.keys, name)
    }
    fn value(&self, name: &str) -> i64 {
        id_of(&self.values, name)
    }
}

/// A Latte, plain: the smallest valid order body, as the frontend sends it.
fn latte_order(menu: &Menu, customer: i64) -> Value {
    json!({
        "customer_id": customer,
        "items": [{"item": menu.item("Latte"), "customizations": []}],
        "state": "received",
        "missing_information": false,
    })
}

#[tokio::test]
async fn collections_list_in_snapshot_order_and_records_are_fetched_by_id() {
    let daemon = Daemon::demo().await;
    let items = list(&daemon, "item").await;
    let orders: Vec<i64> = items
        .iter()
        .map(|i| i["sort_order"].as_i64().unwrap())
        .collect();
    let mut sorted = orders.clone();
    sorted.sort();
    assert_eq!(orders, sorted, "items come in sort_order");
    let latte = named(&items, "Latte");
    assert_eq!(latte["category_name"], "Kaffe");

    let (status, one) = get_json(
        daemon.addr,
        &format!("/api/collections/item/records/{}", latte["id"]),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(&one, latte);

    for name in [
        "category",
        "customization_key",
        "customization_value",
        "message",
        "status",
        "order",
    ] {
        let (status, body) =
            get_json(daemon.addr, &format!("/api/collections/{name}/records")).await;
        assert_eq!(status, 200, "{name}: {body}");
        assert!(body.is_array(), "{name}: {body}");
    }
    let status = list(&daemon, "status").await;
    assert_eq!(status[0]["open"], true);
    daemon.stop().await;
}

#[tokio::test]
async fn menu_route_serves_the_tree_and_indexes() {
    let daemon = Daemon::demo().await;
    let (status, menu) = get_json(daemon.addr, "/api/menu").await;
    assert_eq!(status, 200);
    let kaffe = menu["tree"]
        .as_array()
        .expect("tree")
        .iter()
        .find(|c| c["name"] == "Kaffe")
        .expect("Kaffe");
    let latte = kaffe["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["name"] == "Latte")
        .expect("Latte");
    assert!(!latte["customizations"]
        .as_array()
        .expect("custom")
        .is_empty());
    assert!(menu["indexes"]["items_by_category"].is_object());
    daemon.stop().await;
}

#[tokio::test]
async fn unknown_collection_record_and_route_are_json_404s() {
    let daemon = Daemon::demo().await;
    for path in [
        "/api/collections/orders/records",
        "/api/collections/item/records/999999",
        "/api/collections/item/records/latte",
        "/api/collections/item",
        "/api/nothing",
        "/nothing",
        "/api/files/item/999/none.png",
    ] {
        let reply = call(daemon.addr, "GET", path).send().await;
        assert_eq!(reply.status, 404, "{path}");
        assert!(
            reply.json()["errors"].is_object(),
            "{path}: {}",
            reply.text()
        );
    }
    let reply = admin(
        &daemon,
        "PATCH",
        "/api/collections/message/records/999999",
        json!({"title": "x"}),
    )
    .await;
    assert_eq!(reply.status, 404);
    let reply = call(
        daemon.addr,
        "DELETE",
        "/api/collections/message/records/999999",
    )
    .header("authorization", ADMIN)
    .send()
    .await;
    assert_eq!(reply.status, 404);
    daemon.stop().await;
}

#[tokio::test]
async fn wrong_method_is_405_with_allow() {
    let daemon = Daemon::demo().await;
    let reply = call(daemon.addr, "DELETE", "/api/collections/item/records")
        .send()
        .await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("GET, POST"));
    assert!(reply.json()["errors"].is_object());
    let reply = call(daemon.addr, "POST", "/api/collections/item/records/1")
        .send()
        .await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("GET, PATCH, PUT, DELETE"));
    let reply = call(daemon.addr, "POST", "/api/menu").send().await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("GET"));
    daemon.stop().await;
}

#[tokio::test]
async fn malformed_json_and_wrong_content_type_are_400_and_store_nothing() {
    let daemon = Daemon::demo().await;
    let before = list(&daemon, "message").await;
    let cases = [
        ("application/json", "{\"title\": "),
        ("application/json", "[1, 2]"),
        ("text/plain", "{\"title\": \"hei\"}"),
        ("application/x-www-form-urlencoded", "title=hei"),
    ];
    for (content_type, body) in cases {
        let reply = call(daemon.addr, "POST", "/api/collections/message/records")
            .header("authorization", ADMIN)
            .header("content-type", content_type)
            .raw(body)
            .send()
            .await;
        assert_eq!(reply.status, 400, "{content_type} {body}");
        assert!(
            reply.json()["errors"]["body"][0].is_string(),
            "{}",
            reply.text()
        );
    }
    assert_eq!(list(&daemon, "message").await, before);
    daemon.stop().await;
}

#[tokio::test]
async fn bodies_over_the_limit_are_413_even_when_chunked() {
    let daemon = Daemon::start(true, |c| c.limits.max_body_bytes = 1024).await;
    let big = json!({"title": "x".repeat(2000)});
    let reply = admin(&daemon, "POST", "/api/collections/message/records", big).await;
    assert_eq!(reply.status, 413);
    assert!(reply.json()["errors"].is_object());

    // No Content-Length: the stream itself is capped.
    let mut stream = tokio::net::TcpStream::connect(daemon.addr)
        .await
        .expect("connect");
    let mut request = format!(
        "POST /api/collections/message/records HTTP/1.1\r\nHost: {}\r\n\
         Authorization: {ADMIN}\r\nContent-Type: application/json\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        daemon.addr
    )
    .into_bytes();
    let chunk = "y".repeat(500);
    for _ in 0..4 {
        request.extend_from_slice(format!("{:x}\r\n{chunk}\r\n", chunk.len()).as_bytes());
    }
    request.extend_from_slice(b"0\r\n\r\n");
    stream.write_all(&request).await.expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    let titles: Vec<Value> = list(&daemon, "message").await;
    assert!(titles
        .iter()
        .all(|m| !m["title"].as_str().unwrap().starts_with("xx")));
    daemon.stop().await;
}

#[tokio::test]
async fn anonymous_callers_read_but_every_write_needs_a_login() {
    let daemon = Daemon::demo().await;
    let menu = Menu::load(&daemon).await;
    let writes = [
        (
            "POST",
            "/api/collections/category/records".to_string(),
            json!({"name": "X"}),
        ),
        (
            "POST",
            "/api/collections/message/records".to_string(),
            json!({"title": "X"}),
        ),
        (
            "PATCH",
            "/api/collections/status/records/1".to_string(),
            json!({"open": false}),
        ),
        (
            "PATCH",
            format!("/api/collections/item/records/{}", menu.item("Latte")),
            json!({"price_nok": 1}),
        ),
        (
            "DELETE",
            format!("/api/collections/item/records/{}", menu.item("Latte")),
            json!({}),
        ),
        (
            "POST",
            "/api/collections/order/records".to_string(),
            latte_order(&menu, 7),
        ),
    ];
    for (method, path, body) in &writes {
        let reply = call(daemon.addr, method, path).json(body).send().await;
        assert_eq!(reply.status, 401, "{method} {path}");
        assert!(reply.json()["errors"].is_object());
        // A wrong token is no better than none.
        let reply = call(daemon.addr, method, path)
            .header("authorization", "Bearer guess")
            .json(body)
            .send()
            .await;
        assert_eq!(reply.status, 401, "{method} {path} with a wrong token");
    }
    assert_eq!(list(&daemon, "order").await, Vec::<Value>::new());
    assert_eq!(list(&daemon, "status").await[0]["open"], true);
    daemon.stop().await;
}

#[tokio::test]
async fn without_public_read_anonymous_reads_are_401() {
    let daemon = Daemon::start(true, |c| c.access.public_read = false).await;
    for path in [
        "/api/collections/item/records",
        "/api/menu",
        "/api/collections/order/records",
    ] {
        let reply = call(daemon.addr, "GET", path).send().await;
        assert_eq!(reply.status, 401, "{path}");
        let reply = call(daemon.addr, "GET", path)
            .header("authorization", ADMIN)
            .send()
            .await;
        assert_eq!(reply.status, 200, "{path} as admin");
    }
    daemon.stop().await;
}

#[tokio::test]
async fn a_write_over_http_reaches_item_subscribers_and_the_menu_once() {
    let daemon = Daemon::demo().await;
    let menu = Menu::load(&daemon).await;
    let mut socket = daemon.socket("").await;
    socket.join_ok("collection:item", json!({})).await;
    socket.join_ok("collection:menu", json!({})).await;
    socket.join_ok("collection:message", json!({})).await;

    let reply = admin(
        &daemon,
        "PATCH",
        &format!("/api/collections/item/records/{}", menu.item("Cortado")),
        json!({"price_nok": 42}),
    )
    .await;
    assert_eq!(reply.status, 200);
    let change = socket.next_event("collection:item", "change").await;
    assert_eq!(change["action"], "update");
    assert_eq!(
        change["record"],
        reply.json(),
        "same JSON over HTTP and socket"
    );

    let mut frames = socket.frames_before_barrier(&daemon, "message").await;
    frames.retain(|f| f[2] == "collection:menu");
    assert_eq!(frames.len(), 1, "exactly one menu broadcast: {frames:?}");
    let record = &frames[0][4]["record"];
    let cortado = record["indexes"]["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "Cortado")
        .expect("Cortado")
        .clone();
    assert_eq!(cortado["price_nok"], 42);
    daemon.stop().await;
}

#[tokio::test]
async fn cors_headers_go_on_every_answer_to_a_listed_origin_only() {
    let daemon = Daemon::start(true, |c| c.http.allowed_origins = vec![FRONTEND.into()]).await;

    let preflight = call(daemon.addr, "OPTIONS", "/api/collections/order/records")
        .header("origin", FRONTEND)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await;
    assert_eq!(preflight.status, 204);
    assert_cors(&preflight);

    let answers = [
        call(daemon.addr, "GET", "/api/collections/item/records"),
        call(daemon.addr, "GET", "/api/collections/nope/records"),
        call(daemon.addr, "POST", "/api/collections/message/records").json(&json!({"title": "x"})),
        call(daemon.addr, "DELETE", "/api/menu"),
        call(daemon.addr, "GET", "/healthz"),
    ];
    let mut statuses = Vec::new();
    for request in answers {
        let reply = request.header("origin", FRONTEND).send().await;
        assert_cors(&reply);
        statuses.push(reply.status.as_u16());
    }
    assert_eq!(statuses, vec![200, 404, 401, 405, 200]);

    for request in [
        call(daemon.addr, "OPTIONS", "/api/collections/item/records"),
        call(daemon.addr, "GET", "/api/collections/item/records"),
        call(daemon.addr, "POST", "/api/collections/message/records").json(&json!({"title": "x"})),
    ] {
        let reply = request
            .header("origin", "https://evil.example")
            .send()
            .await;
        assert!(reply.header("access-control-allow-origin").is_none());
        assert!(reply.header("access-control-allow-credentials").is_none());
    }
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_origins_follow_an_edit_of_the_config_file() {
    let site = Site::new();
    let config = site.path("kaffediem.toml");
    std::fs::write(&config, "[http]\nallowed_origins = []\n").expect("write config");
    let mut daemon = Process::start(site.command(&["--config", "kaffediem.toml", "serve"]));
    let ask = || {
        call(daemon.addr, "GET", "/api/collections/status/records")
            .header("origin", FRONTEND)
            .send()
    };
    assert!(ask().await.header("access-control-allow-origin").is_none());

    let edited = format!("[http]\nallowed_origins = [\"{FRONTEND}\"]\n");
    std::fs::write(&config, edited).expect("edit config");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let reply = ask().await;
        if reply.header("access-control-allow-origin").is_some() {
            assert_cors(&reply);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "origin not allowed after the edit:\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    daemon.terminate();
    assert!(daemon.wait().success());
}

fn assert_cors(reply: &Reply) {
    assert_eq!(
        reply.header("access-control-allow-origin"),
        Some(FRONTEND),
        "{reply:?}"
    );
    assert_eq!(
        reply.header("access-control-allow-credentials"),
        Some("true")
    );
    assert_eq!(
        reply.header("access-control-allow-methods"),
        Some("GET, POST, PUT, PATCH, DELETE, OPTIONS")
    );
    assert_eq!(
        reply.header("access-control-allow-headers"),
        Some("Authorization, Content-Type, Accept, X-Requested-With")
    );
    assert_eq!(reply.header("vary"), Some("Origin"));
}

#[tokio::test]
async fn health_still_answers() {
    let daemon = Daemon::demo().await;
    let reply = call(daemon.addr, "GET", "/healthz").send().await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text(), "ok");
    daemon.stop().await;
}

#[tokio::test]
async fn a_database_locked_by_another_process_answers_503_then_recovers() {
    let daemon = Daemon::demo().await;
    let shell = daemon.shell();
    shell.execute_batch("BEGIN IMMEDIATE").expect("lock");
    let body = json!({"title": "Låst"});
    let reply = admin(
        &daemon,
        "POST",
        "/api/collections/message/records",
        body.clone(),
    )
    .await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    assert!(reply.json()["errors"]["detail"][0]
        .as_str()
        .is_some_and(|m| m.contains("cannot take writes")));
    shell.execute_batch("ROLLBACK").expect("unlock");
    let reply = admin(&daemon, "POST", "/api/collections/message/records", body).await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    daemon.stop().await;
}
