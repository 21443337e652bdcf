//! A typo in `log.level` (`"warning"`, `"bogus!!"`) must not turn all logging off — with it
//! the line holding the first admin's generated password. Refused at start (one line naming
//! the key and the accepted values) and on reload (the running level kept), like any bad value.

use crate::support::process::{error_line, text, Daemon, Site};

#[test]
fn an_unknown_log_level_is_a_start_up_error_naming_the_key_and_the_accepted_values() {
    let site = Site::new();
    for level in ["warning", "bogus!!", "kaffediem=loud", "INFO,,="] {
        std::fs::write(
            site.path("kaffediem.toml"),
            format!("[log]\nlevel = \"{level}\"\n"),
        )
        .expect("write config");
        let out = site.run(&["--config", "kaffediem.toml", "serve"]);
        assert!(!out.status.success(), "log.level = {level:?} was accepted");
        let line = error_line(&out);
        assert!(
            line.contains("log.level") && line.contains("error, warn, info, debug, trace, off"),
            "{level}: {line}"
        );
        assert_eq!(
            text(&out.stderr).lines().count(),
            1,
            "{}",
            text(&out.stderr)
        );
    }
    // Levels in any case, and per-module directives, are fine.
    for level in ["WARN", "kaffediem=debug,info", "off"] {
        std::fs::write(
            site.path("kaffediem.toml"),
            format!("[log]\nlevel = \"{level}\"\n"),
        )
        .expect("write config");
        let out = site.run(&["--config", "kaffediem.toml", "check"]);
        assert!(
            !error_line(&out).contains("log.level"),
            "{level}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn an_unknown_log_level_in_a_reload_is_rejected_and_logging_goes_on() {
    let site = Site::new();
    let config = site.path("kaffediem.toml");
    std::fs::write(&config, "[log]\nlevel = \"info\"\n").expect("write");
    let mut daemon =
        Daemon::start(site.command(&["--config", config.to_str().expect("utf-8"), "serve"]));
    // The file watcher starts just after the port is bound: an edit before it is not seen.
    daemon.wait_for_log(&["watching", "for configuration changes"]);
    std::fs::write(&config, "[log]\nlevel = \"warning\"\n").expect("write");
    daemon.wait_for_log(&["not reloaded", "log.level"]);
    // Still logging at info: the next good edit is reported.
    std::fs::write(&config, "[log]\nlevel = \"debug\"\n").expect("write");
    daemon.wait_for_log(&["log level is now `debug`"]);
    daemon.terminate();
    assert!(daemon.wait().success());
}
