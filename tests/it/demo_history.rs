//! `kaffediem demo --history N` (issue 14): a database with N past orders as a café leaves
//! them, for trying and measuring a school year of history. Checked through the real binary,
//! the file as the `sqlite3` shell reads it, and a daemon serving it.

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Value};

use crate::support::http::{call, get_json};
use crate::support::process::{error_line, text, Site};
use crate::support::Daemon;

/// Every order of the history: its day, number, state, total and lines, straight from the file.
struct Stored {
    day: String,
    day_id: i64,
    state: String,
    total: i64,
    items: Value,
}

fn stored(site: &Site) -> Vec<Stored> {
    let shell = site.shell();
    let mut stmt = shell
        .prepare(
            "SELECT date(inserted_at), day_id, state, total_nok, items, \
             inserted_at <= updated_at FROM \"order\" ORDER BY id",
        )
        .expect("prepare");
    stmt.query_map([], |r| {
        assert!(r.get::<_, bool>(5)?, "updated before it was placed");
        Ok(Stored {
            day: r.get(0)?,
            day_id: r.get(1)?,
            state: r.get(2)?,
            total: r.get(3)?,
            items: serde_json::from_str(&r.get::<_, String>(4)?).expect("items are JSON"),
        })
    })
    .expect("query")
    .collect::<Result<_, _>>()
    .expect("rows")
}

#[tokio::test]
async fn demo_history_writes_past_days_of_orders_that_the_menu_and_numbering_agree_with() {
    let site = Site::new();
    let out = site.run(&["demo", "--history", "2500"]);
    assert!(out.status.success(), "demo: {}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("wrote 2500 past orders"),
        "{}",
        text(&out.stdout)
    );

    let orders = stored(&site);
    assert_eq!(orders.len(), 2500);
    // Days: numbered 101, 102, … in placement order, 300–600 a day (the oldest day holds what
    // was left), only states a café leaves behind.
    let mut days: BTreeMap<&str, Vec<i64>> = BTreeMap::new();
    for o in &orders {
        days.entry(&o.day).or_default().push(o.day_id);
        assert!(
            ["dispatched", "completed"].contains(&o.state.as_str()),
            "{}",
            o.state
        );
    }
    assert!(days.len() >= 5, "{} days", days.len());
    for (n, (day, ids)) in days.iter().enumerate() {
        let expected: Vec<i64> = (101..101 + ids.len() as i64).collect();
        assert_eq!(ids, &expected, "numbering of {day}");
        if n > 0 {
            assert!((300..=600).contains(&ids.len()), "{day}: {}", ids.len());
        }
    }

    // Lines: items of the menu with values of keys their category offers; the order's total
    // is the sum of its lines, each priced by the frontend's rule (all demo values are
    // constant-price increments).
    let shell = site.shell();
    let mut category_keys: HashMap<i64, Vec<i64>> = HashMap::new();
    let mut stmt = shell
        .prepare("SELECT item.id, category.valid_customizations FROM item JOIN category ON category.id = item.category_id")
        .expect("prepare");
    for row in stmt
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
        .expect("items")
    {
        let (item, keys) = row.expect("row");
        category_keys.insert(item, serde_json::from_str(&keys).expect("ids"));
    }
    drop(stmt);
    let value_key: HashMap<i64, i64> = shell
        .prepare("SELECT id, belongs_to FROM customization_value")
        .expect("prepare")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("values")
        .collect::<Result<_, _>>()
        .expect("rows");
    let mut customized = 0;
    for o in &orders {
        let lines = o.items.as_array().expect("lines");
        assert!((1..=4).contains(&lines.len()));
        let mut sum = 0;
        for line in lines {
            let item = line["item_id"].as_i64().expect("item id");
            let offered = &category_keys[&item];
            let mut price = line["price"].as_i64().expect("price");
            for c in line["customizations"].as_array().expect("customizations") {
                let key = c["key_id"].as_i64().expect("key");
                assert!(offered.contains(&key), "{line}");
                assert_eq!(value_key[&c["value_id"].as_i64().expect("value")], key);
                price += c["price_change"].as_i64().expect("change");
                customized += 1;
            }
            assert_eq!(line["total"], price, "{line}");
            sum += price;
        }
        assert_eq!(o.total, sum);
    }
    assert!(
        customized > 500,
        "{customized} customizations in 2 500 orders"
    );
    drop(shell);

    let check = site.run(&["check"]);
    assert!(check.status.success(), "check: {}", text(&check.stdout));

    // The daemon on that file: today has no orders yet, and today's first is number 101.
    let daemon = Daemon::start(false, |c| {
        c.database.path = site.db();
    })
    .await;
    let (status, today) = get_json(
        daemon.addr,
        "/api/collections/order/records?from_date=today",
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(today, json!([]));
    let placed = call(daemon.addr, "POST", "/api/collections/order/records")
        .header("authorization", "Bearer admin-secret")
        .json(&json!({"items": [{"item": 1, "customizations": []}]}))
        .send()
        .await;
    assert_eq!(placed.status, 201, "{}", placed.text());
    assert_eq!(placed.json()["day_id"], 101);
    daemon.stop().await;
}

#[test]
fn demo_history_refuses_a_database_that_has_orders_and_changes_nothing() {
    let site = Site::new();
    let first = site.run(&["demo", "--history", "400"]);
    assert!(first.status.success(), "demo: {}", text(&first.stderr));
    let again = site.run(&["demo", "--history", "400"]);
    assert!(!again.status.success());
    assert!(
        error_line(&again).contains("already has 400 orders"),
        "{}",
        error_line(&again)
    );
    assert_eq!(stored(&site).len(), 400);
}
