//! A database written by the release before the change log (schema version 2: `*_counted`
//! triggers, the shadow diff) is upgraded in place at start, keeps every row, and the shell's
//! writes to it reach a screen through the change log.

use kaffediem::store::change_log;
use kaffediem::store::schema::SCHEMA_VERSION;
use serde_json::json;

use crate::support::process::{Daemon, Site};
use crate::support::Socket;

/// `schema.sql` as the previous release shipped it (version 2).
const SCHEMA_V2: &str = include_str!("schema_v2.sql");

fn count(conn: &rusqlite::Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).expect(sql)
}

#[tokio::test]
async fn a_version_2_database_gets_the_change_log_and_shell_writes_reach_a_screen() {
    let site = Site::new();
    let v2 = site.shell();
    // What the previous release does on an empty file: the schema, then the version.
    v2.execute_batch(SCHEMA_V2).expect("version 2 schema");
    v2.execute_batch(
        r#"PRAGMA user_version = 2;
        INSERT INTO "order" (uuid, day_id, items, total_nok) VALUES
            ('a', 101, '[]', 45), ('b', 102, '[]', 50), ('c', 103, '[]', 55);
        UPDATE kaffediem_meta SET value = 7 WHERE key = 'seq';"#,
    )
    .expect("version 2 rows");
    assert_eq!(
        count(
            &v2,
            "SELECT count(*) FROM sqlite_schema WHERE name LIKE '%_counted'"
        ),
        21
    );
    drop(v2);

    let daemon = Daemon::start(site.command(&["serve"]));
    let sh = site.shell();
    assert_eq!(count(&sh, "PRAGMA user_version"), SCHEMA_VERSION);
    assert_eq!(count(&sh, r#"SELECT count(*) FROM "order""#), 3);
    assert_eq!(
        count(
            &sh,
            "SELECT count(*) FROM sqlite_schema WHERE name LIKE '%_counted'"
        ),
        0,
        "the old counting triggers are gone"
    );
    assert_eq!(
        change_log::missing_triggers(&sh).expect("triggers"),
        Vec::<String>::new()
    );

    let mut socket = Socket::connect(&daemon.ws_url()).await;
    let joined = socket.join_ok("collection:order", json!({})).await;
    assert_eq!(joined["items"].as_array().map(Vec::len), Some(3));
    assert_eq!(joined["seq"], 7);

    sh.execute(
        r#"UPDATE "order" SET state = 'completed' WHERE uuid = 'b'"#,
        [],
    )
    .expect("shell update");
    let change = socket.next_event("collection:order", "change").await;
    assert_eq!(change["action"], "update", "{change}");
    assert_eq!(change["record"]["id"], 2);
    assert_eq!(change["record"]["state"], "completed");
    assert_eq!(change["seq"], 8, "the next seq, none skipped");

    sh.execute(r#"DELETE FROM "order" WHERE id = 3"#, [])
        .expect("shell delete");
    let change = socket.next_event("collection:order", "change").await;
    assert_eq!(change["action"], "delete", "{change}");
    assert_eq!(change["record"]["id"], 3);
    assert_eq!(change["seq"], 9);
    assert_eq!(
        count(&sh, "SELECT count(*) FROM kaffediem_changes"),
        0,
        "published and emptied"
    );
    drop(daemon);
}
