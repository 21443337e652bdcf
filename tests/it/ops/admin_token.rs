//! `access.admin_token` is one secret read by every check: after a reload that changes it, the
//! old token opens nothing over HTTP (as a socket credential it is refused too, see
//! `reload::admin_token_change_closes_the_sockets_that_used_the_old_one`) and the new one
//! opens what the old one did.

use super::*;

async fn create_message(addr: SocketAddr, token: &str, title: &str) -> u16 {
    call(addr, "POST", "/api/collections/message/records")
        .header("authorization", &format!("Bearer {token}"))
        .json(&json!({ "title": title }))
        .send()
        .await
        .status
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloaded_admin_token_replaces_the_old_one_for_api_writes() {
    let site = Site::new();
    let config = site.path("kaffediem.toml");
    std::fs::write(&config, "[access]\nadmin_token = \"old-secret\"\n").expect("write");
    let mut daemon =
        Daemon::start(site.command(&["--config", config.to_str().expect("utf-8"), "serve"]));
    assert_eq!(
        create_message(daemon.addr, "old-secret", "before").await,
        201
    );
    assert_eq!(
        create_message(daemon.addr, "new-secret", "early").await,
        401
    );

    std::fs::write(&config, "[access]\nadmin_token = \"new-secret\"\n").expect("write");
    daemon.wait_for_log(&["access.admin_token changed"]);
    assert_eq!(
        create_message(daemon.addr, "old-secret", "stale").await,
        401
    );
    assert_eq!(
        create_message(daemon.addr, "new-secret", "after").await,
        201
    );

    daemon.terminate();
    assert!(daemon.wait().success());
}
