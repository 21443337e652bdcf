//! Configuration hot reload: live keys apply at once, restart-only keys are logged, a broken
//! edit keeps the running configuration.

use super::*;

use tokio_tungstenite::tungstenite::client::IntoClientRequest;

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
    // The file watcher starts just after the port is bound: an edit before it is not seen.
    daemon.wait_for_log(&["watching", "for configuration changes"]);
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

/// A failed login from 127.0.0.1 (the proxy) on behalf of `client`.
async fn forwarded_login(daemon: &Daemon, client: &str, email: &str) -> u16 {
    call(daemon.addr, "POST", "/api/session")
        .header("x-forwarded-for", client)
        .json(&json!({"email": email, "password": "wrong"}))
        .send()
        .await
        .status
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_proxies_edit_applies_at_once() {
    let site = Site::new();
    let config = site.path("kaffediem.toml");
    let limit = "[auth]\nlogin_attempts_per_minute = 2\n";
    std::fs::write(&config, limit).expect("write");
    let mut daemon =
        Daemon::start(site.command(&["--config", config.to_str().expect("utf-8"), "serve"]));
    // Not trusted yet: every client shares the peer's limit, whatever the header says.
    assert_eq!(forwarded_login(&daemon, "203.0.113.7", "a1@x").await, 401);
    assert_eq!(forwarded_login(&daemon, "203.0.113.7", "a2@x").await, 401);
    assert_eq!(forwarded_login(&daemon, "198.51.100.9", "b1@x").await, 429);

    // A bad entry is refused with the key and the value; nothing changes.
    std::fs::write(
        &config,
        format!("{limit}[http]\ntrusted_proxies = [\"10.0.0.0/33\"]\n"),
    )
    .expect("write");
    daemon.wait_for_log(&["not reloaded", "http.trusted_proxies", "10.0.0.0/33"]);

    std::fs::write(
        &config,
        format!("{limit}[http]\ntrusted_proxies = [\"127.0.0.1\", \"::1\"]\n"),
    )
    .expect("write");
    daemon.wait_for_log(&["http.trusted_proxies", "applied"]);
    assert_eq!(forwarded_login(&daemon, "198.51.100.9", "b2@x").await, 401);

    // Socket log lines name the forwarded client, not the proxy (WebSocket and long poll).
    let mut req = daemon.ws_url().into_client_request().expect("request");
    let headers = req.headers_mut();
    headers.insert("origin", "https://elsewhere.example".parse().unwrap());
    headers.insert("x-forwarded-for", "192.0.2.33".parse().unwrap());
    match tokio_tungstenite::connect_async(req).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 403)
        }
        other => panic!("upgrade from a foreign origin not refused: {other:?}"),
    }
    daemon.wait_for_log(&["refused socket: origin", "192.0.2.33"]);
    let poll = call(daemon.addr, "GET", "/socket/longpoll?vsn=2.0.0")
        .header("origin", "https://elsewhere.example")
        .header("forwarded", "for=\"[2001:db8::7]:4711\"")
        .send()
        .await;
    assert_eq!(poll.json()["status"], 403, "{}", poll.text());
    daemon.wait_for_log(&["refused long poll: origin", "[2001:db8::7]:4711"]);

    daemon.terminate();
    assert!(daemon.wait().success());
}

/// Changing `access.admin_token` takes the old token's rights away from sockets already open:
/// they are closed (1001), and reconnecting with the old token is refused (403) like any other
/// bad token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_token_change_closes_the_sockets_that_used_the_old_one() {
    let site = Site::new();
    let config = site.path("kaffediem.toml");
    std::fs::write(&config, "[access]\nadmin_token = \"old-secret\"\n").expect("write");
    let mut daemon =
        Daemon::start(site.command(&["--config", config.to_str().expect("utf-8"), "serve"]));
    let url = |query: &str| format!("ws://{}/socket/websocket?vsn=2.0.0{query}", daemon.addr);
    let mut admin = Socket::connect(&url("&token=old-secret")).await;
    admin.join_ok("notifications:admin", json!({})).await;
    let mut screen = Socket::connect(&url("")).await;
    screen.join_ok("collection:status", json!({})).await;

    std::fs::write(&config, "[access]\nadmin_token = \"new-secret\"\n").expect("write");
    assert_eq!(admin.close_code().await, 1001);
    daemon.wait_for_log(&["access.admin_token changed"]);
    match tokio_tungstenite::connect_async(url("&token=old-secret")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(answer)) => {
            assert_eq!(answer.status().as_u16(), 403)
        }
        other => panic!("the old token still connects: {:?}", other.map(|_| ())),
    }
    let mut fresh = Socket::connect(&url("&token=new-secret")).await;
    fresh.join_ok("notifications:admin", json!({})).await;
    // The anonymous screen was never touched.
    screen.join_ok("collection:message", json!({})).await;

    daemon.terminate();
    assert!(daemon.wait().success());
}
