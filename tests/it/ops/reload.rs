//! Configuration hot reload: live keys apply at once, restart-only keys are logged, a broken
//! edit keeps the running configuration.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_origin_edit_applies_at_once_and_a_broken_edit_keeps_it() {
    let site = Site::new();
    let config = site.path("kaffediem.toml");
    std::fs::write(&config, "[http]\nallowed_origins = []\n").expect("write");
    let mut daemon =
        Daemon::start(site.command(&["--config", config.to_str().expect("utf-8"), "serve"]));
    let screens = "https://screens.example";
    assert_eq!(daemon.upgrade_status(screens).await, 403);

    std::fs::write(
        &config,
        format!("[http]\nallowed_origins = [\"{screens}\"]\n"),
    )
    .expect("write");
    let deadline = Instant::now() + WAIT;
    while daemon.upgrade_status(screens).await != 101 {
        assert!(
            Instant::now() < deadline,
            "origin not allowed after the edit:\n{}",
            daemon.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    daemon.wait_for_log(&["http.allowed_origins", "applied"]);

    // A restart-only key: logged, not applied.
    std::fs::write(
        &config,
        format!("[http]\nallowed_origins = [\"{screens}\"]\n[cafe]\ntime_zone = \"UTC\"\n"),
    )
    .expect("write");
    daemon.wait_for_log(&["cafe.time_zone", "needs a restart"]);

    // A broken edit: logged with key and file; the old rule stays, the daemon keeps serving.
    std::fs::write(&config, "[http]\nallowed_origins = []\nprot = 1\n").expect("write");
    daemon.wait_for_log(&["not reloaded", "prot", &config.display().to_string()]);
    assert_eq!(daemon.upgrade_status(screens).await, 101);
    assert_eq!(
        daemon.upgrade_status("https://elsewhere.example").await,
        403
    );
    let health = call(daemon.addr, "GET", "/healthz").send().await;
    assert_eq!(health.status.as_u16(), 200);

    daemon.terminate();
    assert!(daemon.wait().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_level_edit_applies_at_once() {
    let site = Site::new();
    let config = site.path("kaffediem.toml");
    std::fs::write(&config, "[log]\nlevel = \"info\"\n").expect("write");
    let mut daemon =
        Daemon::start(site.command(&["--config", config.to_str().expect("utf-8"), "serve"]));
    std::fs::write(&config, "[log]\nlevel = \"warn\"\n").expect("write");
    // Warnings still show...
    std::fs::write(
        &config,
        "[log]\nlevel = \"warn\"\n[cafe]\ntime_zone = \"UTC\"\n",
    )
    .expect("write");
    daemon.wait_for_log(&["cafe.time_zone", "needs a restart"]);
    // ...information does not: this reload's "applied" line is suppressed.
    let screens = "https://screens.example";
    std::fs::write(
        &config,
        format!("[log]\nlevel = \"warn\"\n[http]\nallowed_origins = [\"{screens}\"]\n"),
    )
    .expect("write");
    let deadline = Instant::now() + WAIT;
    while daemon.upgrade_status(screens).await != 101 {
        assert!(Instant::now() < deadline, "origin edit not applied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    std::fs::write(
        &config,
        format!("[log]\nlevel = \"info\"\n[http]\nallowed_origins = [\"{screens}\"]\n"),
    )
    .expect("write");
    daemon.wait_for_log(&["log level is now `info`"]);
    let log = daemon.log();
    assert!(!log.contains("http.allowed_origins applied"), "{log}");

    daemon.terminate();
    assert!(daemon.wait().success());
}
