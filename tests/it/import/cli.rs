//! The command itself: what it writes, what it reports, what it refuses, and that the old
//! file stays as it was.

use super::fixture::{fingerprint, Kaffebase, BUILT_IN_ADMIN};
use super::{counts, import, report};
use crate::support::process::{error_line, text, Site};

fn clean(site: &Site) -> std::path::PathBuf {
    let kb = Kaffebase::create(&site.path("kaffebase_prod.db"));
    kb.clean_cafe();
    kb.close()
}

fn ids(site: &Site, sql: &str) -> Vec<i64> {
    let db = site.shell();
    let mut stmt = db.prepare(sql).expect("prepare");
    let rows = stmt.query_map([], |r| r.get(0)).expect("query");
    rows.map(|r| r.expect("row")).collect()
}

#[test]
fn a_clean_cafe_comes_over_whole_with_its_ids_and_the_old_file_is_not_touched() {
    let site = Site::new();
    let old = clean(&site);
    let before = fingerprint(&old);

    let report = report(&import(&site, &old, &[]));

    assert_eq!(counts(&report, "users"), [3, 3, 1, 0], "{report}");
    assert_eq!(counts(&report, "category"), [3, 3, 0, 0], "{report}");
    assert_eq!(counts(&report, "customization_key"), [3, 3, 0, 0]);
    assert_eq!(counts(&report, "customization_value"), [6, 6, 0, 0]);
    // Kanelbolle's image is a local path and no --images was given: named, not guessed.
    assert_eq!(counts(&report, "item"), [4, 4, 1, 0]);
    assert!(
        report.contains(
            "item 4: altered: image \"/images/kanelbolle.png\" is a local path: give --images DIR"
        ),
        "{report}"
    );
    assert_eq!(counts(&report, "order"), [4, 4, 0, 0], "{report}");
    assert_eq!(counts(&report, "message"), [1, 1, 0, 0]);
    assert_eq!(counts(&report, "status"), [1, 1, 0, 0]);
    // Ends with the exact command that serves this database.
    let last = report
        .trim_end()
        .lines()
        .last()
        .expect("a last line")
        .trim();
    assert_eq!(
        last,
        format!("KAFFEDIEM_DB={} kaffediem serve", site.db().display())
    );

    // The old file: same bytes, same mtime, and no companion files left beside it.
    assert!(fingerprint(&old) == before, "the old file changed");
    for suffix in ["-wal", "-shm", "-journal"] {
        let companion = format!("{}{suffix}", old.display());
        assert!(
            !std::path::Path::new(&companion).exists(),
            "{companion} appeared"
        );
    }

    assert_eq!(ids(&site, "SELECT id FROM item ORDER BY id"), [1, 2, 3, 4]);
    assert_eq!(ids(&site, "SELECT id FROM user ORDER BY id"), [1, 2, 3]);
    assert_eq!(
        ids(&site, r#"SELECT id FROM "order" ORDER BY id"#),
        [1, 2, 3, 4]
    );
    assert_eq!(
        ids(&site, r#"SELECT day_id FROM "order" ORDER BY id"#),
        [101, 102, 101, 102]
    );
    // Latte + oat milk (50) and a bun (35); latte + oat milk, small (100 %): 50.
    assert_eq!(
        ids(&site, r#"SELECT total_nok FROM "order" ORDER BY id"#),
        [45, 35, 85, 50]
    );
    let hashes: Vec<String> = {
        let db = site.shell();
        let mut stmt = db
            .prepare("SELECT password_hash FROM user ORDER BY id")
            .expect("prepare");
        let rows = stmt.query_map([], |r| r.get(0)).expect("query");
        rows.map(|r| r.expect("row")).collect()
    };
    assert!(
        hashes[0].starts_with("!locked"),
        "the built-in admin is locked"
    );
    assert!(
        hashes[1].starts_with("$2b$04$"),
        "bcrypt kept: {}",
        hashes[1]
    );

    // The built-in admin: loud, with the way out.
    assert!(report.contains("!!!!!!!!"), "{report}");
    assert!(
        report.contains(&format!(
            "{BUILT_IN_ADMIN} (user 1, admin) had the old backend's public password"
        )),
        "{report}"
    );
    assert!(report.contains(&format!(
        "imported LOCKED. To use it, set a new password: kaffediem user passwd --email {BUILT_IN_ADMIN}"
    )));

    // `kaffediem check` is happy with the result, and says the schema version.
    let check = site.run(&["check"]);
    assert!(check.status.success(), "{}", text(&check.stderr));
    let version = format!("version {}", kaffediem::store::schema::SCHEMA_VERSION);
    assert!(
        text(&check.stdout).contains(&version),
        "{}",
        text(&check.stdout)
    );
}

#[test]
fn odd_rows_are_each_skipped_or_altered_and_named() {
    let site = Site::new();
    let kb = Kaffebase::create(&site.path("old.db"));
    kb.clean_cafe();
    kb.odd_rows();
    let old = kb.close();

    let report = report(&import(&site, &old, &[]));
    for expected in [
        "users 5: skipped: duplicate email KARI@kafe.no (user 2 has it",
        "users 6: altered: no password in the old file: locked (kaffediem user passwd --email nopass@kafe.no)",
        "item 9: skipped: \"Muffin\": item without category",
        "item 10: skipped: \"Rundstykke\": its category 77 does not exist",
        "item 8: altered: price_nok 39.5 rounded to 40 NOK",
        "customization_value 20: skipped: value of an unknown key 99",
        "category 4: altered: unreadable inserted_at \"i går\"; valid_customizations names unknown key 42; dropped",
        "status 2: altered: message 99 does not exist; no message",
        "order 5: altered: line 0 (Kakao): kept the 56 NOK charged; SPEC 5.2 on whole-NOK prices gives 55 NOK",
        "order 6: altered: unknown state \"served\"; dispatched; line 0 (Kakao) price 39.5 rounded to 40 NOK",
        "order 7: altered: unreadable inserted_at \"last tuesday\"; no items_data; no items",
        "order 8: altered: items_data is not a JSON list (\"not json\"); no items",
        "day numbers were handed to more than one order of the same day",
        "order 9: altered: no inserted_at; stamped ",
        "customer 5 was a duplicate account of user 2; now user 2's",
    ] {
        assert!(report.contains(expected), "missing {expected:?} in:\n{report}");
    }
    assert_eq!(counts(&report, "users"), [5, 4, 2, 1], "{report}");
    assert_eq!(counts(&report, "item"), [8, 6, 2, 2], "{report}");

    let db = site.shell();
    let one = |sql: &str| -> i64 { db.query_row(sql, [], |r| r.get(0)).expect(sql) };
    assert_eq!(one("SELECT price_nok FROM item WHERE id = 8"), 40);
    assert_eq!(one("SELECT price_nok FROM item WHERE id = 11"), 55);
    assert_eq!(one(r#"SELECT total_nok FROM "order" WHERE id = 5"#), 56);
    assert_eq!(one("SELECT count(*) FROM item WHERE id IN (9, 10)"), 0);
    assert_eq!(one("SELECT count(*) FROM user WHERE id = 5"), 0);
    assert_eq!(one(r#"SELECT customer_id FROM "order" WHERE id = 9"#), 2);
    // Order 7's stamp came from its updated_at; the two 105s of one day are both kept.
    let stamp: String = db
        .query_row(r#"SELECT inserted_at FROM "order" WHERE id = 7"#, [], |r| {
            r.get(0)
        })
        .expect("stamp");
    assert_eq!(stamp, "2025-11-18T09:00:00.000000Z");
    assert_eq!(one(r#"SELECT count(*) FROM "order" WHERE day_id = 105"#), 2);
    let state: String = db
        .query_row(r#"SELECT state FROM "order" WHERE id = 6"#, [], |r| {
            r.get(0)
        })
        .expect("state");
    assert_eq!(state, "dispatched");
}

#[test]
fn a_second_import_is_refused_unless_replace_which_takes_the_old_file_again() {
    let site = Site::new();
    let old = clean(&site);
    report(&import(&site, &old, &[]));
    site.shell()
        .execute(
            r#"INSERT INTO "order" (id, uuid, day_id, items) VALUES (500, 'typed-in', 103, '[]')"#,
            [],
        )
        .expect("an order made after the import");

    let again = import(&site, &old, &[]);
    assert!(!again.status.success(), "a second import must be refused");
    let why = error_line(&again);
    assert!(why.contains("already has café data (3 category"), "{why}");
    assert!(why.contains("--replace"), "{why}");
    assert_eq!(
        ids(&site, r#"SELECT id FROM "order" ORDER BY id"#),
        [1, 2, 3, 4, 500]
    );

    let replaced = report(&import(&site, &old, &["--replace"]));
    assert_eq!(counts(&replaced, "order"), [4, 4, 0, 0]);
    assert_eq!(
        ids(&site, r#"SELECT id FROM "order" ORDER BY id"#),
        [1, 2, 3, 4]
    );
    assert_eq!(ids(&site, "SELECT id FROM category ORDER BY id"), [1, 2, 3]);
    assert_eq!(ids(&site, "SELECT id FROM user ORDER BY id"), [1, 2, 3]);
    // A new order still gets an id never handed out before (not 500 again, not 5).
    let next: i64 = site
        .shell()
        .query_row(
            r#"INSERT INTO "order" (uuid) VALUES ('new') RETURNING id"#,
            [],
            |r| r.get(0),
        )
        .expect("insert");
    assert_eq!(next, 501);
}

#[test]
fn a_dry_run_reports_and_writes_nothing() {
    let site = Site::new();
    let old = clean(&site);
    let dry = report(&import(&site, &old, &["--dry-run"]));
    assert!(dry.starts_with("Dry run:"), "{dry}");
    assert_eq!(counts(&dry, "order"), [4, 4, 0, 0]);
    assert!(dry.contains("kaffediem user passwd --email kaffediem@asvg.codes"));
    assert!(dry.trim_end().ends_with("kaffediem serve"), "{dry}");
    assert!(!site.db().exists(), "a dry run created the database");
    assert!(
        !site.path("kaffediem.db.lock").exists(),
        "a dry run left a lock file"
    );

    // On a database that has a café, a dry run tells that the import would be refused.
    report(&import(&site, &old, &[]));
    let refused = import(&site, &old, &["--dry-run"]);
    assert!(!refused.status.success());
    assert!(error_line(&refused).contains("already has café data"));
}

#[test]
fn a_write_that_fails_half_way_leaves_the_target_as_it_was() {
    let site = Site::new();
    let old = clean(&site);
    {
        let mut conn = kaffediem::store::schema::open_connection(&site.db()).expect("open");
        kaffediem::store::schema::migrate(&mut conn, &site.db()).expect("migrate");
        conn.execute_batch(
            r#"CREATE TRIGGER disk_on_fire BEFORE INSERT ON "order" WHEN NEW.id = 3
               BEGIN SELECT RAISE(ABORT, 'disk on fire'); END;"#,
        )
        .expect("trigger");
    }
    let out = import(&site, &old, &[]);
    assert!(!out.status.success());
    let why = error_line(&out);
    assert!(
        why.contains("nothing was written") && why.contains("disk on fire"),
        "{why}"
    );
    let db = site.shell();
    let one = |sql: &str| -> i64 { db.query_row(sql, [], |r| r.get(0)).expect(sql) };
    assert_eq!(one("SELECT count(*) FROM category"), 0);
    assert_eq!(one("SELECT count(*) FROM user"), 0);
    assert_eq!(one(r#"SELECT count(*) FROM "order""#), 0);
    assert_eq!(
        one("SELECT open FROM status WHERE id = 1"),
        0,
        "the fresh status stays"
    );
}

#[test]
fn many_orders_show_a_progress_line_on_a_terminal_and_nothing_when_piped() {
    let site = Site::new();
    let kb = Kaffebase::create(&site.path("big.db"));
    kb.clean_cafe();
    kb.many_orders_today(20_000);
    let old = kb.close();

    let piped = import(&site, &old, &["--dry-run"]);
    let dry = report(&piped);
    assert_eq!(counts(&dry, "order"), [20_004, 20_004, 0, 0]);
    assert!(text(&piped.stderr).is_empty(), "{}", text(&piped.stderr));
    assert!(!dry.contains('\r'));

    // On a terminal (a pty from `script`): one line, rewritten in place, then cleared.
    let command = format!(
        "{} import kaffebase {}",
        crate::support::process::BIN,
        old.display()
    );
    let mut script = std::process::Command::new("script");
    script
        .args(["-qec", &command, "/dev/null"])
        .current_dir(site.path(""))
        .env("KAFFEDIEM_DB", site.db())
        .env_remove("RUST_LOG")
        .env_remove("KAFFEDIEM_CONFIG")
        .stdin(std::process::Stdio::null());
    let out = crate::support::process::run(script);
    let screen = text(&out.stdout);
    assert!(out.status.success(), "{screen}");
    let drawn = screen.matches("orders: ").count();
    assert!(
        drawn >= 2,
        "the progress line was drawn {drawn} times:\n{screen}"
    );
    assert!(
        screen.contains("writing orders: 20004/20004 (100%)"),
        "{screen}"
    );
    // Rewritten in place: carriage returns, no line per tick.
    assert!(screen.matches('\r').count() >= drawn);
    assert!(screen.lines().count() < 60, "{screen}");
    assert_eq!(ids(&site, r#"SELECT count(*) FROM "order""#), [20_004]);
}

#[test]
fn newest_rows_still_in_the_old_files_wal_are_imported_and_the_file_is_not_written() {
    let site = Site::new();
    let kb = Kaffebase::create(&site.path("crashed.db"));
    kb.conn
        .pragma_update(None, "wal_autocheckpoint", 0)
        .expect("no checkpoints");
    kb.clean_cafe();
    // The old backend is still running (or crashed): its last commits are only in the -wal.
    let before = fingerprint(&kb.path);
    let wal = std::path::PathBuf::from(format!("{}-wal", kb.path.display()));
    assert!(std::fs::metadata(&wal).expect("a -wal").len() > 0);

    let report = report(&import(&site, &kb.path, &[]));
    assert_eq!(counts(&report, "order"), [4, 4, 0, 0], "{report}");
    assert!(fingerprint(&kb.path) == before, "the old file changed");
    assert_eq!(ids(&site, "SELECT id FROM item ORDER BY id"), [1, 2, 3, 4]);
    drop(kb);
}
