//! A year of orders (and more) in the file: a shell edit of one order costs what it costs on
//! an almost empty database, and so do start-up and the reads that serve today.

use std::path::Path;

use kaffediem::store::records::{self, Window};
use kaffediem::store::{self, stamps, Collection, Op, OrderQuery, RecordCtx, Stop};
use rusqlite::Connection;

use super::{next, open, ops, shell};

/// Past orders written into the file while the daemon is stopped.
const HISTORY: i64 = 200_000;

/// `count` orders spread over the past days (oldest first), as a café leaves them.
fn fill(path: &Path, count: i64) {
    let sh = shell(path);
    sh.execute(
        r#"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?1)
           INSERT INTO "order" (uuid, customer_id, day_id, state, items, total_nok,
                                inserted_at, updated_at)
           SELECT printf('history-%d', i), NULLIF(i % 40, 0), 100 + i % 400, 'dispatched',
                  '[{"item_name":"Latte","price_nok":45,"customizations":[]}]', 45,
                  strftime('%Y-%m-%dT%H:%M:%fZ', 'now', printf('-%d minutes', (?1 - i) + 600)),
                  strftime('%Y-%m-%dT%H:%M:%fZ', 'now', printf('-%d minutes', (?1 - i) + 600))
           FROM n"#,
        [count],
    )
    .expect("fill history");
}

/// What the daemon reads on a file holding `history` past orders: (pages to start, pages to
/// publish a shell UPDATE of one order), after checking that exactly that update reached
/// the change feed.
async fn costs(path: &Path, history: i64) -> (u64, u64) {
    // The file as the daemon creates it, then filled while no daemon runs.
    let (store, _) = open(path);
    store.shutdown().await.expect("shutdown");
    drop(store);
    fill(path, history);
    // The first start after the fill forgets what the change log holds of it (rows written
    // while no daemon ran: that costs what was written then). A café's daemon wrote its
    // history itself, so measure the start after that one.
    let (store, _) = open(path);
    store.shutdown().await.expect("shutdown");
    drop(store);
    let (store, mut feed) = open(path);
    let sh = shell(path);
    // A first foreign commit: once it is published the writer has started and settled.
    sh.execute("UPDATE status SET open = 1 WHERE id = 1", [])
        .expect("open the café");
    let set = next(&mut feed).await;
    assert_eq!(ops(&set), vec![(Collection::Status, 1, Op::Update)]);
    let started = store.writer.pages_read();

    let id: i64 = sh
        .query_row(r#"SELECT max(id) - ?1 / 2 FROM "order""#, [history], |r| {
            r.get(0)
        })
        .expect("an order in the middle");
    sh.execute(
        r#"UPDATE "order" SET state = 'completed' WHERE id = ?1"#,
        [id],
    )
    .expect("shell update");
    let set = next(&mut feed).await;
    assert_eq!(ops(&set), vec![(Collection::Order, id, Op::Update)]);
    let record = set.changes[0].record.as_deref().expect("record");
    assert_eq!(record["state"], "completed");
    let published = store.writer.pages_read() - started;
    store.shutdown().await.expect("shutdown");
    (started, published)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shell_update_of_one_order_costs_the_same_with_200_000_orders_as_with_ten() {
    let small = tempfile::tempdir().expect("tempdir");
    let (start_small, update_small) = costs(&small.path().join("kaffediem.db"), 10).await;
    let big = tempfile::tempdir().expect("tempdir");
    let (start_big, update_big) = costs(&big.path().join("kaffediem.db"), HISTORY).await;
    eprintln!(
        "pages read: start {start_small} → {start_big}, one shell update {update_small} → {update_big}"
    );
    // A deeper B-tree costs a page or two per lookup; a scan of the history costs thousands.
    assert!(
        update_big <= update_small * 2 + 16,
        "publishing one shell update read {update_big} pages with {HISTORY} orders, \
         {update_small} with 10"
    );
    assert!(
        start_big <= start_small * 2 + 16,
        "starting read {start_big} pages with {HISTORY} orders, {start_small} with 10"
    );
}

/// Pages each read the daemon makes to serve today costs on a file holding `history` past
/// orders and 20 of the last hour: (newest stamp at start, the fan-out's start, today's join
/// snapshot / HTTP list, the next order's `day_id`).
async fn today_costs(path: &Path, history: i64) -> [u64; 4] {
    let (store, _) = open(path);
    store.shutdown().await.expect("shutdown");
    drop(store);
    fill(path, history);
    let sh = shell(path);
    sh.execute_batch(
        r#"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20)
           INSERT INTO "order" (uuid, items) SELECT printf('today-%d', i), '[]' FROM n;
           DELETE FROM kaffediem_changes;"#,
    )
    .expect("today's orders");
    let hour_ago = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1);
    // A zone where it is 00:30 now: the history (ten hours old and older) is of past days and
    // the 20 orders just inserted are today's, numbered 101…120 as placement would.
    let now = jiff::Timestamp::now();
    let since_midnight_utc = now.as_second().rem_euclid(86_400);
    let offset = i32::try_from(1_800 - since_midnight_utc).expect("seconds of a day");
    let half_past_midnight =
        jiff::tz::TimeZone::fixed(jiff::tz::Offset::from_seconds(offset).expect("offset"));
    sh.execute(
        r#"UPDATE "order" SET day_id = 100 + CAST(substr(uuid, 7) AS INTEGER)
           WHERE uuid LIKE 'today-%'"#,
        [],
    )
    .expect("number today's orders");
    let ctx = RecordCtx {
        public_url: "http://kaffe.test:4000".into(),
    };
    let reader = shell(path);
    let cost = |read: &dyn Fn(&Connection)| {
        let before = store::pages_looked_at(&reader);
        read(&reader);
        store::pages_looked_at(&reader) - before
    };
    let stamp = cost(&|c| {
        stamps::newest(c).expect("newest").expect("a stamp");
    });
    let fanout = cost(&|c| {
        let today = records::order_fields(c, hour_ago).expect("fields");
        assert_eq!(today.len(), 20);
    });
    let snapshot = cost(&|c| {
        let query = OrderQuery {
            since: Some(hour_ago),
            ..OrderQuery::default()
        };
        let listed = records::list_bounded(
            c,
            Collection::Order,
            &query,
            Window::Newest(2000),
            &ctx,
            &Stop::never(),
        )
        .expect("list");
        assert_eq!(listed.records.len(), 20);
        assert_eq!(listed.total, 20);
    });
    // Placing an order numbers it after the day's highest `day_id`: past days' numbers ran
    // higher than today's so far, and they must not be walked through.
    let day_id = cost(&|c| {
        let tx = c.unchecked_transaction().expect("transaction");
        let next = store::orders::next_day_id(&tx, now, &half_past_midnight).expect("next day_id");
        assert_eq!(next, 121, "after today's 20 orders, numbered 101…120");
    });
    [stamp, fanout, snapshot, day_id]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serving_today_reads_the_same_pages_with_200_000_past_orders_as_with_ten() {
    let small = tempfile::tempdir().expect("tempdir");
    let few = today_costs(&small.path().join("kaffediem.db"), 10).await;
    let big = tempfile::tempdir().expect("tempdir");
    let many = today_costs(&big.path().join("kaffediem.db"), HISTORY).await;
    eprintln!(
        "pages read (newest stamp, fan-out start, today's snapshot, next day_id): {few:?} → {many:?}"
    );
    for (what, (few, many)) in [
        "newest stamp",
        "fan-out start",
        "today's snapshot",
        "the next order's day_id",
    ]
    .iter()
    .zip(few.into_iter().zip(many))
    {
        assert!(
            many <= few * 2 + 16,
            "{what} read {many} pages with {HISTORY} orders, {few} with 10"
        );
    }
}
