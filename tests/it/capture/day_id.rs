//! A long day: numbering the next order costs a few pages however many orders the day holds
//! (a bench or a busy event day has thousands), and stays right whoever else writes orders.

use std::path::Path;

use kaffediem::store;
use rusqlite::Connection;
use serde_json::json;

use super::{open, shell};
use crate::support::http::call;
use crate::support::Daemon;

/// Orders placed today before the one being numbered.
const TODAY: i64 = 20_000;

/// The zone in which it is noon now, and now.
fn noon() -> (jiff::tz::TimeZone, jiff::Timestamp) {
    let now = jiff::Timestamp::now();
    let since_midnight_utc = now.as_second().rem_euclid(86_400);
    let offset = i32::try_from(43_200 - since_midnight_utc).expect("seconds of a day");
    let zone = jiff::tz::TimeZone::fixed(jiff::tz::Offset::from_seconds(offset).expect("offset"));
    (zone, now)
}

/// The next `day_id` and the pages reading it looked at, in a transaction that is rolled back.
fn next(conn: &Connection, zone: &jiff::tz::TimeZone, now: jiff::Timestamp) -> (i64, u64) {
    let before = store::pages_looked_at(conn);
    let tx = conn.unchecked_transaction().expect("transaction");
    let next = store::orders::next_day_id(&tx, now, zone).expect("next day_id");
    drop(tx);
    (next, store::pages_looked_at(conn) - before)
}

/// A file with 5 000 orders of past days numbered above today's, whose day began with one
/// order placed (which started the day's count), then `today` orders of the last hours
/// written by the shell (numbered 102, 103, … as placement would). Pages the next `day_id`
/// reads: (kept from the day's count, counted afresh after a schema change).
async fn long_day(path: &Path, today: i64) -> (u64, u64) {
    let (store, _) = open(path);
    store.shutdown().await.expect("shutdown");
    drop(store);
    let sh = shell(path);
    sh.execute(
        r#"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000)
           INSERT INTO "order" (uuid, day_id, state, items, total_nok, inserted_at, updated_at)
           SELECT printf('past-%d', i), 20000 + i, 'dispatched', '[]', 45,
                  strftime('%Y-%m-%dT%H:%M:%fZ', 'now', printf('-%d minutes', 5000 - i + 1440)),
                  strftime('%Y-%m-%dT%H:%M:%fZ', 'now', printf('-%d minutes', 5000 - i + 1440))
           FROM n"#,
        [],
    )
    .expect("past days");
    let (zone, now) = noon();
    // The day's first order, as the writer places it.
    let tx = sh.unchecked_transaction().expect("transaction");
    let first = store::orders::next_day_id(&tx, now, &zone).expect("first day_id");
    assert_eq!(first, 101);
    tx.execute(
        r#"INSERT INTO "order" (uuid, day_id, items, inserted_at)
           VALUES ('first', 101, '[]', strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-6 hours'))"#,
        [],
    )
    .expect("first order");
    tx.commit().expect("commit");
    sh.execute(
        r#"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
           INSERT INTO "order" (uuid, day_id, items, total_nok, inserted_at, updated_at)
           SELECT printf('today-%d', i), 101 + i,
                  '[{"item_name":"Latte","price_nok":45,"customizations":[]}]', 45,
                  strftime('%Y-%m-%dT%H:%M:%fZ', 'now', printf('-%d seconds', ?1 - i + 1)),
                  strftime('%Y-%m-%dT%H:%M:%fZ', 'now', printf('-%d seconds', ?1 - i + 1))
           FROM n"#,
        [today],
    )
    .expect("today's orders");
    let (kept_next, kept) = next(&sh, &zone, now);
    assert_eq!(
        kept_next,
        102 + today,
        "after today's orders 101…{}",
        101 + today
    );
    // Any schema change (here a table made and dropped) and the count starts afresh.
    sh.execute_batch("CREATE TABLE scratch (x); DROP TABLE scratch;")
        .expect("schema change");
    let (afresh_next, afresh) = next(&sh, &zone, now);
    assert_eq!(afresh_next, 102 + today);
    (kept, afresh)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_day_id_after_20_000_orders_today_reads_a_few_pages() {
    let small = tempfile::tempdir().expect("tempdir");
    let (few, few_afresh) = long_day(&small.path().join("kaffediem.db"), 100).await;
    let big = tempfile::tempdir().expect("tempdir");
    let path = big.path().join("kaffediem.db");
    let (many, many_afresh) = long_day(&path, TODAY).await;
    eprintln!(
        "pages read for the next day_id after 100 / {TODAY} orders today: {few} / {many} \
         (counted afresh: {few_afresh} / {many_afresh})"
    );
    // The day's highest number is kept: three keys of `kaffediem_meta`.
    assert!(
        many <= 8 && many <= few + 1,
        "the next day_id read {many} pages after {TODAY} orders today, {few} after 100"
    );
    // Counted afresh, the day's orders are read from the index's leaves (over a hundred
    // entries a page), never one order row per entry.
    assert!(
        many_afresh <= few_afresh + TODAY as u64 / 50,
        "counting afresh read {many_afresh} pages after {TODAY} orders today, \
         {few_afresh} after 100"
    );
    let sh = shell(&path);
    let plan: Vec<String> = sh
        .prepare(&format!(
            "EXPLAIN QUERY PLAN {}",
            store::orders::NEXT_DAY_ID_SQL
        ))
        .expect("explain")
        .query_map(["2026-12-07T00:00:00.000Z"], |r| r.get(3))
        .expect("plan")
        .collect::<Result<_, _>>()
        .expect("plan rows");
    assert_eq!(
        plan,
        vec!["SEARCH order USING COVERING INDEX order_inserted (inserted_at>?)".to_owned()],
        "{plan:?}"
    );
}

/// Place a cinnamon bun over HTTP; its `day_id`.
async fn place(daemon: &Daemon, item: i64) -> i64 {
    let reply = call(daemon.addr, "POST", "/api/collections/order/records")
        .header("authorization", "Bearer admin-secret")
        .json(&json!({"items": [{"item": item, "customizations": []}]}))
        .send()
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    reply.json()["day_id"].as_i64().expect("day_id")
}

#[tokio::test]
async fn the_shells_orders_of_today_are_counted_and_no_number_comes_twice() {
    let daemon = Daemon::demo().await;
    // 11:00 in Oslo.
    daemon
        .clock
        .set("2036-12-01T10:00:00Z".parse().expect("ts"));
    let sh = daemon.shell();
    let bun: i64 = sh
        .query_row("SELECT id FROM item WHERE name = 'Kanelbolle'", [], |r| {
            r.get(0)
        })
        .expect("the demo's cinnamon bun");
    let insert = |uuid: &str, day_id: i64, at: &str| {
        sh.execute(
            r#"INSERT INTO "order" (uuid, day_id, items, inserted_at) VALUES (?1, ?2, '[]', ?3)"#,
            rusqlite::params![uuid, day_id, at],
        )
        .expect("shell insert");
    };
    assert_eq!(place(&daemon, bun).await, 101);
    assert_eq!(place(&daemon, bun).await, 102);
    // The shell writes an order of today numbered far above.
    insert("shell-500", 500, "2036-12-01T09:00:00.000Z");
    assert_eq!(place(&daemon, bun).await, 501);
    // ... renumbers one higher still.
    sh.execute(
        r#"UPDATE "order" SET day_id = 700 WHERE uuid = 'shell-500'"#,
        [],
    )
    .expect("shell renumber");
    assert_eq!(place(&daemon, bun).await, 701);
    // ... moves yesterday's 900 into today.
    insert("shell-900", 900, "2036-11-30T09:00:00.000Z");
    assert_eq!(
        place(&daemon, bun).await,
        702,
        "yesterday's numbers do not count"
    );
    sh.execute(
        r#"UPDATE "order" SET inserted_at = '2036-12-01T09:30:00.000Z' WHERE uuid = 'shell-900'"#,
        [],
    )
    .expect("shell move");
    assert_eq!(place(&daemon, bun).await, 901);
    // A deleted order's number is not handed out again the same day.
    sh.execute(r#"DELETE FROM "order" WHERE day_id = 901"#, [])
        .expect("shell delete");
    assert_eq!(place(&daemon, bun).await, 902);
    // A junk number typed into the shell (text in `day_id`) numbers nothing: placement goes
    // on from the last number, kept or counted afresh, and so does junk in the kept maximum.
    sh.execute(
        r#"INSERT INTO "order" (uuid, day_id, items, inserted_at)
           VALUES ('shell-junk', 'abc', '[]', '2036-12-01T09:40:00.000Z')"#,
        [],
    )
    .expect("shell junk");
    assert_eq!(place(&daemon, bun).await, 903);
    sh.execute_batch("CREATE TABLE scratch (x); DROP TABLE scratch;")
        .expect("schema change");
    assert_eq!(
        place(&daemon, bun).await,
        904,
        "counted afresh past the junk"
    );
    sh.execute(
        "UPDATE kaffediem_meta SET value = 'junk' WHERE key = 'day_max'",
        [],
    )
    .expect("shell junk in the kept maximum");
    assert_eq!(place(&daemon, bun).await, 905, "junk kept: counted afresh");
    // Without the triggers the day's orders are read every time: still right.
    sh.execute_batch("DROP TRIGGER order_day_max_insert")
        .expect("drop trigger");
    insert("shell-1000", 1000, "2036-12-01T09:45:00.000Z");
    assert_eq!(place(&daemon, bun).await, 1001);
    insert("shell-1100", 1100, "2036-12-01T09:46:00.000Z");
    assert_eq!(place(&daemon, bun).await, 1101);
    daemon.stop().await;
}
