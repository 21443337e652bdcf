//! What a customer's order may say about itself (SPEC 6): it is theirs, `received`, with
//! nothing missing, whatever the body claims; only admins move it through the kitchen.

use serde_json::json;

use super::{admin, latte_order, Menu};
use crate::support::accounts::customer;
use crate::support::http::call;
use crate::support::Daemon;

const ORDERS: &str = "/api/collections/order/records";

#[tokio::test]
async fn a_customers_order_is_received_with_nothing_missing_whatever_the_body_says() {
    let daemon = Daemon::demo().await;
    let menu = Menu::load(&daemon).await;
    let (me, cookie) = customer(&daemon, "ola@skole.no").await;
    for (state, missing) in [
        (json!("completed"), json!(true)),
        (json!("dispatched"), json!("true")),
        (json!("eaten"), json!("maybe")),
    ] {
        let mut body = latte_order(&menu, 999);
        body["state"] = state.clone();
        body["missing_information"] = missing;
        let reply = call(daemon.addr, "POST", ORDERS)
            .header("cookie", &cookie)
            .json(&body)
            .send()
            .await;
        assert_eq!(reply.status, 201, "{state}: {}", reply.text());
        let order = reply.json();
        assert_eq!(order["state"], "received", "{order}");
        assert_eq!(order["missing_information"], false, "{order}");
        assert_eq!(order["customer_id"], me, "{order}");
    }

    // An admin places orders in any state (the counter's "already made" button).
    let mut body = latte_order(&menu, me);
    body["state"] = json!("production");
    body["missing_information"] = json!(true);
    let reply = admin(&daemon, "POST", ORDERS, body).await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    assert_eq!(reply.json()["state"], "production");
    assert_eq!(reply.json()["missing_information"], true);
    daemon.stop().await;
}

#[tokio::test]
async fn a_customer_cannot_move_their_order_through_the_kitchen() {
    let daemon = Daemon::demo().await;
    let menu = Menu::load(&daemon).await;
    let (_, cookie) = customer(&daemon, "kari@skole.no").await;
    let reply = call(daemon.addr, "POST", ORDERS)
        .header("cookie", &cookie)
        .json(&latte_order(&menu, 0))
        .send()
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let path = format!("{ORDERS}/{}", reply.json()["id"]);
    for method in ["PATCH", "PUT"] {
        let reply = call(daemon.addr, method, &path)
            .header("cookie", &cookie)
            .json(&json!({"state": "completed", "missing_information": true}))
            .send()
            .await;
        assert_eq!(reply.status, 403, "{method}: {}", reply.text());
    }
    let reply = call(daemon.addr, "GET", &path).send().await;
    assert_eq!(reply.json()["state"], "received");
    assert_eq!(reply.json()["missing_information"], false);
    daemon.stop().await;
}
