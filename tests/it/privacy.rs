//! Who ordered what is private (SPEC 6): an order's `customer_id` is shown only to admins and
//! to that customer — in HTTP lists and records, join snapshots, resumed changes and live
//! broadcasts — and a `customer_id` filter is for one's own id only (admins: any). Public
//! screens keep everything else.

use serde_json::{json, Value};

use crate::support::accounts::customer;
use crate::support::http::call;
use crate::support::{Daemon, Socket};

const ADMIN: &str = "Bearer admin-secret";

fn order_for(conn: &rusqlite::Connection, customer: i64, uuid: &str) -> i64 {
    conn.execute(
        r#"INSERT INTO "order" (uuid, customer_id, day_id, items, total_nok)
           VALUES (?1, ?2, 101, '[{"item_id":1,"name":"Latte","total":45}]', 45)"#,
        rusqlite::params![uuid, customer],
    )
    .expect("insert order");
    conn.last_insert_rowid()
}

async fn socket_token(daemon: &Daemon, cookie: &str) -> String {
    let reply = call(daemon.addr, "GET", "/api/session/token")
        .header("cookie", cookie)
        .send()
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["token"].as_str().expect("token").to_owned()
}

/// `customer_id` of the order `id` in `records`: `Some(None)` when the order is there
/// without it.
fn shown(records: &Value, id: i64) -> Option<Option<i64>> {
    let record = records.as_array()?.iter().find(|r| r["id"] == id)?;
    assert_eq!(
        record["day_id"], 101,
        "the rest of the order stays: {record}"
    );
    assert_eq!(record["items"][0]["name"], "Latte", "{record}");
    Some(
        record
            .get("customer_id")
            .map(|c| c.as_i64().expect("an id")),
    )
}

async fn get(daemon: &Daemon, path: &str, auth: Option<(&str, &str)>) -> (u16, Value) {
    let mut request = call(daemon.addr, "GET", path);
    if let Some((name, value)) = auth {
        request = request.header(name, value);
    }
    let reply = request.send().await;
    let body = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
    (reply.status.as_u16(), body)
}

#[tokio::test]
async fn http_shows_the_customer_only_to_admins_and_that_customer() {
    let daemon = Daemon::demo().await;
    let (ola, ola_cookie) = customer(&daemon, "ola@example.com").await;
    let (kari, _) = customer(&daemon, "kari@example.com").await;
    let shell = daemon.shell();
    let olas = order_for(&shell, ola, "olas");
    let karis = order_for(&shell, kari, "karis");
    let ola_auth = Some(("cookie", ola_cookie.as_str()));
    let admin = Some(("authorization", ADMIN));
    let list = "/api/collections/order/records";

    let (_, anonymous) = get(&daemon, list, None).await;
    assert_eq!(shown(&anonymous, olas), Some(None));
    assert_eq!(shown(&anonymous, karis), Some(None));
    let (_, as_ola) = get(&daemon, list, ola_auth).await;
    assert_eq!(shown(&as_ola, olas), Some(Some(ola)));
    assert_eq!(shown(&as_ola, karis), Some(None));
    let (_, as_admin) = get(&daemon, list, admin).await;
    assert_eq!(shown(&as_admin, olas), Some(Some(ola)));
    assert_eq!(shown(&as_admin, karis), Some(Some(kari)));

    let one = format!("{list}/{olas}");
    let (_, record) = get(&daemon, &one, None).await;
    assert!(record.get("customer_id").is_none(), "{record}");
    assert_eq!(record["day_id"], 101);
    let (_, record) = get(&daemon, &one, ola_auth).await;
    assert_eq!(record["customer_id"], ola);

    // A filter by customer: one's own, or any for admins.
    let by = |c: i64| format!("{list}?customer_id={c}");
    assert_eq!(get(&daemon, &by(ola), None).await.0, 403);
    assert_eq!(get(&daemon, &by(kari), ola_auth).await.0, 403);
    let (status, mine) = get(&daemon, &by(ola), ola_auth).await;
    assert_eq!(status, 200);
    assert_eq!(shown(&mine, olas), Some(Some(ola)));
    assert_eq!(shown(&mine, karis), None, "only Ola's");
    let (status, karis_orders) = get(&daemon, &by(kari), admin).await;
    assert_eq!(status, 200);
    assert_eq!(shown(&karis_orders, karis), Some(Some(kari)));
    daemon.stop().await;
}

#[tokio::test]
async fn a_customer_filter_on_a_join_is_for_oneself_only() {
    let daemon = Daemon::demo().await;
    let (ola, ola_cookie) = customer(&daemon, "ola@example.com").await;
    let token = socket_token(&daemon, &ola_cookie).await;
    let mut anonymous = daemon.socket("").await;
    let mut as_ola = daemon.socket(&format!("token={token}")).await;
    let mut admin = daemon.socket("token=admin-secret").await;
    for (socket, filter) in [(&mut anonymous, json!(ola)), (&mut as_ola, json!(ola + 1))] {
        let reply = socket
            .join(
                "collection:order",
                json!({"options": {"customer_id": filter}}),
            )
            .await;
        assert_eq!(reply["status"], "error", "{reply}");
        assert_eq!(reply["response"], json!({"reason": "unauthorized"}));
    }
    let filter = json!({"options": {"customer_id": ola.to_string()}});
    as_ola.join_ok("collection:order", filter.clone()).await;
    admin.join_ok("collection:order", filter).await;
    daemon.stop().await;
}

/// The next order change on `socket` for order `id`.
async fn change_for(socket: &mut Socket, id: i64) -> Value {
    loop {
        let change = socket.next_event("collection:order", "change").await;
        if change["record"]["id"] == id {
            return change;
        }
    }
}

#[tokio::test]
async fn screens_see_the_customer_only_on_their_own_orders_in_snapshots_changes_and_resumes() {
    let daemon = Daemon::demo().await;
    let (ola, ola_cookie) = customer(&daemon, "ola@example.com").await;
    let (kari, _) = customer(&daemon, "kari@example.com").await;
    let shell = daemon.shell();
    let before = order_for(&shell, ola, "before");
    let token = socket_token(&daemon, &ola_cookie).await;
    let mut screen = daemon.socket("").await;
    let mut as_ola = daemon.socket(&format!("token={token}")).await;
    let mut admin = daemon.socket("token=admin-secret").await;

    // Snapshots.
    let public = screen.join_ok("collection:order", json!({})).await;
    assert_eq!(shown(&public["items"], before), Some(None));
    let own = as_ola.join_ok("collection:order", json!({})).await;
    assert_eq!(shown(&own["items"], before), Some(Some(ola)));
    let all = admin.join_ok("collection:order", json!({})).await;
    assert_eq!(shown(&all["items"], before), Some(Some(ola)));
    let seen = public["seq"].as_u64().expect("seq");

    // Live changes: each socket gets the variant meant for it.
    let olas = order_for(&shell, ola, "olas");
    let karis = order_for(&shell, kari, "karis");
    for id in [olas, karis] {
        let change = change_for(&mut screen, id).await;
        assert!(change["record"].get("customer_id").is_none(), "{change}");
        assert_eq!(change["record"]["day_id"], 101);
        assert!(change_for(&mut admin, id).await["record"]["customer_id"].is_i64());
    }
    assert_eq!(
        change_for(&mut as_ola, olas).await["record"]["customer_id"],
        ola
    );
    let other = change_for(&mut as_ola, karis).await;
    assert!(other["record"].get("customer_id").is_none(), "{other}");

    // A screen coming back with `since` gets the missed changes, redacted the same way.
    let mut back = daemon.socket("").await;
    let resumed = back
        .join_ok("collection:order", json!({"options": {"since": seen}}))
        .await;
    let changes = resumed["changes"].as_array().expect("resumed from the log");
    assert_eq!(changes.len(), 2, "{resumed}");
    for change in changes {
        assert!(change["record"].get("customer_id").is_none(), "{change}");
        assert_eq!(change["record"]["day_id"], 101);
    }
    daemon.stop().await;
}
