//! `kaffediem backup` and `kaffediem check`, beside a daemon that is serving and writing.

use super::*;

#[test]
fn backup_and_check_while_orders_are_written_hold_every_order_committed_before() {
    let site = Site::new();
    site.demo_db();
    let mut daemon = Daemon::start(site.command(&["serve"]));
    let orders = OrderStream::start(&site);
    let before = orders.committed();
    let file = site.path("backup.db");
    let out = site.run(&["backup", file.to_str().expect("utf-8")]);
    assert!(out.status.success(), "backup: {}", text(&out.stderr));
    // `check` reads the live file too, beside the daemon and the writer.
    let live = site.run(&["check"]);
    assert!(live.status.success(), "check: {}", text(&live.stderr));
    let later = orders.committed();
    orders.wait_for(later + 5);
    let (_shell, _) = orders.stop();

    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file)
        .expect("backup")
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o077,
        0,
        "a backup holds password hashes: owner only"
    );
    let copy = rusqlite::Connection::open(&file).expect("open backup");
    assert_eq!(integrity(&copy), "ok");
    assert_orders_present(&copy, before);
    // One consistent snapshot: the orders in it are exactly 1..=k for some k.
    let (count, max): (i64, i64) = copy
        .query_row(
            r#"SELECT count(*), coalesce(max(customer_id), 0) FROM "order" WHERE customer_id > 0"#,
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("count");
    assert_eq!(count, max, "a gap in the copied orders");
    drop(copy);

    // The backup is a database `check` accepts.
    let mut check = site.command(&["check"]);
    check.env("KAFFEDIEM_DB", &file);
    let checked = run(check);
    assert!(checked.status.success(), "{}", text(&checked.stderr));

    let again = site.run(&["backup", file.to_str().expect("utf-8")]);
    assert!(
        !again.status.success(),
        "an existing backup is never replaced silently"
    );
    assert!(
        error_line(&again).contains("--force"),
        "{}",
        error_line(&again)
    );
    let forced = site.run(&["backup", "--force", file.to_str().expect("utf-8")]);
    assert!(forced.status.success(), "{}", text(&forced.stderr));

    daemon.terminate();
    assert!(daemon.wait().success());
}

#[test]
fn check_passes_a_good_database_and_fails_a_damaged_broken_or_newer_one() {
    let site = Site::new();
    site.demo_db();
    let good = site.run(&["check"]);
    assert!(good.status.success(), "{}", text(&good.stderr));
    let report = text(&good.stdout);
    assert!(report.contains("integrity     ok"), "{report}");
    assert!(report.contains("result        ok"), "{report}");

    // Damaged: every page after the first overwritten.
    let damaged = site.path("damaged.db");
    std::fs::copy(site.db(), &damaged).expect("copy");
    let mut bytes = std::fs::read(&damaged).expect("read");
    for b in bytes.iter_mut().skip(4096) {
        *b = 0x41;
    }
    std::fs::write(&damaged, &bytes).expect("write");
    let mut cmd = site.command(&["check"]);
    cmd.env("KAFFEDIEM_DB", &damaged);
    let out = run(cmd);
    assert!(!out.status.success());
    assert!(error_line(&out).contains("backup"), "{}", error_line(&out));

    // A broken reference, as a careless `sqlite3` session (foreign keys off) leaves it.
    let broken = site.path("broken.db");
    std::fs::copy(site.db(), &broken).expect("copy");
    let conn = rusqlite::Connection::open(&broken).expect("open");
    conn.pragma_update(None, "foreign_keys", false)
        .expect("foreign keys off");
    conn.execute(
        "INSERT INTO item (name, category_id) VALUES ('Ghost', 999999)",
        [],
    )
    .expect("insert");
    drop(conn);
    let mut cmd = site.command(&["check"]);
    cmd.env("KAFFEDIEM_DB", &broken);
    let out = run(cmd);
    assert!(!out.status.success());
    assert!(error_line(&out).contains("item"), "{}", error_line(&out));

    // Newer: a schema version this build does not know.
    site.shell()
        .pragma_update(None, "user_version", 999)
        .expect("set user_version");
    let out = site.run(&["check"]);
    assert!(!out.status.success());
    assert!(
        error_line(&out).contains("upgrade kaffediem"),
        "{}",
        error_line(&out)
    );

    let mut missing = site.command(&["check"]);
    missing.env("KAFFEDIEM_DB", site.path("nothing-here.db"));
    let out = run(missing);
    assert!(!out.status.success());
    assert!(error_line(&out).contains("nothing-here.db"));
}
