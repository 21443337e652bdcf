//! The change-log triggers come from the list of collections, not from hand-written SQL: every
//! collection has them on a fresh file, and one dropped in the shell is put back at the next
//! start (without it the shell's writes to that collection would never reach a screen).

use std::time::Duration;

use kaffediem::store::{change_log, Collection, Op};
use rusqlite::Connection;

use super::{open, shell};

/// The names of the triggers on `table`.
fn triggers_on(conn: &Connection, table: &str) -> Vec<String> {
    let mut stmt = conn
        .prepare(
            "SELECT name FROM sqlite_schema WHERE type = 'trigger' AND tbl_name = ?1 ORDER BY name",
        )
        .expect("prepare");
    stmt.query_map([table], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

#[tokio::test]
async fn every_collection_has_its_capture_triggers_and_a_dropped_one_comes_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kaffediem.db");
    let (store, _) = open(&path);
    store.shutdown().await.expect("shutdown");
    drop(store);
    let sh = shell(&path);
    for collection in Collection::ALL {
        let on_table = triggers_on(&sh, collection.name());
        for (name, _) in change_log::triggers(collection, &[]) {
            assert!(
                on_table.contains(&name),
                "{} lacks {name}: {on_table:?}",
                collection.name()
            );
        }
    }
    assert!(change_log::missing_triggers(&sh).expect("check").is_empty());

    // An admin drops one; the shell's updates of messages would go unpublished.
    sh.execute_batch("DROP TRIGGER message_update_captured")
        .expect("drop");
    assert_eq!(
        change_log::missing_triggers(&sh).expect("check"),
        vec!["message_update_captured".to_owned()]
    );
    sh.execute("INSERT INTO message (id, title) VALUES (1, 'Hei')", [])
        .expect("insert");
    // `kaffediem check` names it.
    let site_db = path.to_str().expect("utf-8 path");
    let out = std::process::Command::new(crate::support::process::BIN)
        .args(["check"])
        .env("KAFFEDIEM_DB", site_db)
        .env_remove("KAFFEDIEM_CONFIG")
        .current_dir(dir.path())
        .output()
        .expect("run check");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{report}");
    assert!(report.contains("message_update_captured"), "{report}");

    let (store, mut feed) = open(&path);
    assert!(change_log::missing_triggers(&sh).expect("check").is_empty());
    sh.execute("UPDATE message SET title = 'Hallo' WHERE id = 1", [])
        .expect("update");
    let set = tokio::time::timeout(Duration::from_secs(10), feed.recv())
        .await
        .expect("published within 10 s")
        .expect("feed");
    let ops: Vec<_> = set
        .changes
        .iter()
        .map(|c| (c.collection, c.id, c.op))
        .collect();
    assert_eq!(ops, vec![(Collection::Message, 1, Op::Update)]);
    store.shutdown().await.expect("shutdown");
}
