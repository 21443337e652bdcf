//! Ids are never handed out twice: a version 1 database is upgraded to AUTOINCREMENT ids
//! without losing a row, a reference or a trigger, and deleting the newest order does not
//! give its id to the next one.

use kaffediem::store::schema::{SCHEMA_SQL, SCHEMA_VERSION};

use crate::support::process::{text, Site};

/// A database as Kaffediem's schema version 1 made it: ids that SQLite reuses after the
/// newest row is deleted, and no epoch.
fn version_1(site: &Site) -> rusqlite::Connection {
    let v1 = SCHEMA_SQL
        .replace(" AUTOINCREMENT,", ",")
        .replace(",\n       ('epoch', lower(hex(randomblob(8))))", "");
    assert!(!v1.contains("AUTOINCREMENT,") && !v1.contains("'epoch'"));
    let conn = site.shell();
    conn.execute_batch(&v1).expect("version 1 schema");
    conn.execute_batch(
        r#"PRAGMA user_version = 1;
        PRAGMA foreign_keys = OFF;
        INSERT INTO category (id, name) VALUES (1, 'Kaffe');
        INSERT INTO item (id, name, price_nok, category_id) VALUES (1, 'Latte', 45, 1);
        INSERT INTO image (item_id, filename, content_type, bytes, etag)
            VALUES (1, 'latte.png', 'image/png', x'89504e47', 'e1');
        INSERT INTO user (id, email, password_hash) VALUES (1, 'kari@example.com', 'x');
        INSERT INTO session (id, token_hash, user_id, expires_at)
            VALUES (1, 'h', 1, '2099-01-01T00:00:00Z');
        INSERT INTO "order" (id, uuid, items) VALUES (1, 'a', '[]'), (2, 'b', '[]'), (3, 'c', '[]');
        -- A reference already broken from the shell does not stop the upgrade.
        INSERT INTO item (id, name, category_id) VALUES (2, 'Orphan', 99);"#,
    )
    .expect("version 1 rows");
    conn
}

fn count(conn: &rusqlite::Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |r| r.get(0)).expect(sql)
}

#[test]
fn a_version_1_database_is_upgraded_to_ids_that_are_never_reused_keeping_every_row() {
    let site = Site::new();
    let conn = version_1(&site);
    let fresh = Site::new();
    let out = fresh.run(&["user", "list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let fresh_triggers = count(
        &fresh.shell(),
        "SELECT count(*) FROM sqlite_schema WHERE type IN ('trigger', 'index')",
    );
    drop(conn);

    // Any command opens (and so upgrades) the file.
    let out = site.run(&["user", "list"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("kari@example.com"));
    let conn = site.shell();
    assert_eq!(count(&conn, "PRAGMA user_version"), SCHEMA_VERSION);
    // Nothing was lost to a cascade while tables were rebuilt.
    assert_eq!(count(&conn, "SELECT count(*) FROM session"), 1);
    assert_eq!(count(&conn, "SELECT count(*) FROM image"), 1);
    assert_eq!(count(&conn, r#"SELECT count(*) FROM "order""#), 3);
    assert_eq!(
        count(&conn, "SELECT count(*) FROM pragma_foreign_key_check"),
        1,
        "only the orphan the file already had"
    );
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM sqlite_schema WHERE type IN ('trigger', 'index')"
        ),
        fresh_triggers,
        "every index and trigger is back"
    );
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM kaffediem_meta WHERE key = 'epoch' AND length(value) = 16"
        ),
        1
    );
    conn.execute("DELETE FROM item WHERE id = 2", [])
        .expect("fix the orphan");
    let check = site.run(&["check"]);
    assert!(check.status.success(), "{}", text(&check.stdout));

    // The newest order deleted, the next one placed: a new id, not the deleted one's.
    conn.execute_batch(
        r#"DELETE FROM "order" WHERE id = 3; INSERT INTO "order" (uuid) VALUES ('d');"#,
    )
    .expect("delete and insert");
    assert_eq!(count(&conn, r#"SELECT max(id) FROM "order""#), 4);
    // The touch trigger still works on the rebuilt table.
    conn.execute_batch(
        r#"UPDATE "order" SET updated_at = '2000-01-01T00:00:00Z' WHERE id = 4;
           UPDATE "order" SET state = 'completed' WHERE id = 4;"#,
    )
    .expect("update");
    assert_eq!(
        count(
            &conn,
            r#"SELECT count(*) FROM "order" WHERE id = 4 AND updated_at > '2001'"#
        ),
        1
    );
}
