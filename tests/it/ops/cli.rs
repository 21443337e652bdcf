//! The command line: help everywhere, and start-up errors as one line naming the fix.

use super::*;

#[test]
fn help_and_version_are_there_for_every_command() {
    let site = Site::new();
    let version = site.run(&["--version"]);
    assert!(version.status.success());
    assert!(text(&version.stdout).contains(env!("CARGO_PKG_VERSION")));
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["backup", "--help"],
        &["check", "--help"],
        &["demo", "--help"],
    ] {
        let out = site.run(args);
        assert!(out.status.success(), "{args:?}");
        assert!(text(&out.stdout).contains("Usage:"), "{args:?}");
    }
    let help = text(&site.run(&["--help"]).stdout);
    for command in ["serve", "backup", "check", "demo"] {
        assert!(help.contains(command), "{command} missing from --help");
    }
}

#[test]
fn port_in_use_is_one_line_naming_the_port() {
    let site = Site::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    let mut cmd = site.command(&["serve"]);
    cmd.env("KAFFEDIEM_PORT", &port);
    let out = run(cmd);
    assert!(!out.status.success());
    let line = error_line(&out);
    assert!(line.contains(&format!(":{port}")), "{line}");
    assert!(line.contains("KAFFEDIEM_PORT"), "{line}");
}

#[test]
fn unwritable_database_path_is_one_line_naming_the_path() {
    let site = Site::new();
    // A regular file where the database directory should be: refused even for root.
    let not_a_dir = site.path("not-a-directory");
    std::fs::write(&not_a_dir, "x").expect("write");
    let db = not_a_dir.join("kaffediem.db");
    let mut cmd = site.command(&["serve"]);
    cmd.env("KAFFEDIEM_DB", &db);
    let out = run(cmd);
    assert!(!out.status.success());
    let line = error_line(&out);
    assert!(line.contains(&not_a_dir.display().to_string()), "{line}");
    assert!(line.contains("KAFFEDIEM_DB"), "{line}");
}

#[test]
fn unknown_config_key_is_one_line_naming_key_and_file() {
    let site = Site::new();
    let config = site.path("kaffediem.toml");
    std::fs::write(&config, "[http]\nprot = 4000\n").expect("write");
    let out = site.run(&["--config", config.to_str().expect("utf-8"), "serve"]);
    assert!(!out.status.success());
    let line = error_line(&out);
    assert!(line.contains("prot"), "{line}");
    assert!(line.contains(&config.display().to_string()), "{line}");
}

#[test]
fn database_from_a_newer_kaffediem_is_refused_with_the_fix() {
    let site = Site::new();
    site.demo_db();
    site.shell()
        .pragma_update(None, "user_version", 999)
        .expect("set user_version");
    let out = site.run(&["serve"]);
    assert!(!out.status.success());
    let line = error_line(&out);
    assert!(line.contains("999"), "{line}");
    assert!(line.contains("upgrade kaffediem"), "{line}");
}
