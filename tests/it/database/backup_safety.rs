//! `kaffediem backup DEST` never writes over the live database or its `-wal`/`-shm`, however
//! DEST is spelled, and `--force` replaces only a regular file.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use crate::support::process::{error_line, text, Daemon, Site};

/// (device, inode) of `path`: which file it is, whatever the spelling.
fn identity(path: &Path) -> (u64, u64) {
    let meta = std::fs::metadata(path).expect("stat");
    (meta.dev(), meta.ino())
}

fn backup(site: &Site, dest: &str) -> std::process::Output {
    site.run(&["backup", "--force", dest])
}

#[test]
fn backup_refuses_every_spelling_of_the_live_database_and_its_wal_and_shm() {
    let site = Site::new();
    site.demo_db();
    let mut daemon = Daemon::start(site.command(&["serve"]));
    let db = site.db();
    let live = identity(&db);
    let dir = db.parent().expect("dir").to_owned();
    let dir_name = dir.file_name().expect("dir name").to_str().expect("utf-8");
    std::os::unix::fs::symlink(&db, site.path("link-to-live.db")).expect("symlink");
    let spellings = [
        db.to_str().expect("utf-8").to_owned(),
        "kaffediem.db".to_owned(),
        "./kaffediem.db".to_owned(),
        format!("../{dir_name}/kaffediem.db"),
        format!("{}/./kaffediem.db", dir.display()),
        "link-to-live.db".to_owned(),
        "kaffediem.db-wal".to_owned(),
        format!("../{dir_name}/kaffediem.db-shm"),
        "kaffediem.db-journal".to_owned(),
        "kaffediem.db.lock".to_owned(),
        "kaffediem.db.highwater".to_owned(),
    ];
    for dest in &spellings {
        let out = backup(&site, dest);
        assert!(
            !out.status.success(),
            "backup --force {dest} was accepted: it would replace the live database"
        );
        let line = error_line(&out);
        assert!(line.contains("live database"), "{dest}: {line}");
    }
    // The daemon still has the file it opened, and it is still the one at the path.
    assert_eq!(identity(&db), live);
    assert!(std::fs::symlink_metadata(site.path("link-to-live.db"))
        .expect("link")
        .file_type()
        .is_symlink());
    let health = site.run(&["check"]);
    assert!(health.status.success(), "{}", text(&health.stderr));
    daemon.terminate();
    assert!(daemon.wait().success());
}

#[test]
fn backup_force_replaces_only_a_regular_file() {
    let site = Site::new();
    site.demo_db();
    // A FIFO, a directory, a device node and a symlink are never replaced by a backup.
    let fifo = site.path("pipe");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    std::fs::create_dir(site.path("a-dir")).expect("dir");
    std::os::unix::fs::symlink("/dev/null", site.path("null-link")).expect("symlink");
    for dest in ["pipe", "a-dir", "null-link", "/dev/null"] {
        let out = backup(&site, dest);
        assert!(!out.status.success(), "backup --force {dest} was accepted");
        assert!(!error_line(&out).is_empty());
    }
    let kind = std::fs::symlink_metadata(&fifo).expect("fifo").file_type();
    use std::os::unix::fs::FileTypeExt;
    assert!(kind.is_fifo(), "the FIFO was replaced");
    assert!(std::fs::metadata("/dev/null")
        .expect("/dev/null")
        .file_type()
        .is_char_device());
    assert!(std::fs::symlink_metadata(site.path("null-link"))
        .expect("link")
        .file_type()
        .is_symlink());

    // A regular file is replaced, by a new file (rename from beside it), never written through.
    let old = site.path("old-backup.db");
    std::fs::write(&old, b"yesterday").expect("write");
    let hard = site.path("hard-link-to-old.db");
    std::fs::hard_link(&old, &hard).expect("hard link");
    let out = backup(&site, "old-backup.db");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(std::fs::read(&hard).expect("read"), b"yesterday");
    let copy = rusqlite::Connection::open(&old).expect("open backup");
    let items: i64 = copy
        .query_row("SELECT count(*) FROM item", [], |r| r.get(0))
        .expect("items");
    assert!(items > 0);
    // Nothing is left beside it.
    let left: Vec<String> = std::fs::read_dir(site.path("."))
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("partial"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
