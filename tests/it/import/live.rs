//! Importing while the daemon serves: the import is a foreign writer, and each screen gets
//! the imported café as one resync (a rejoin with a fresh snapshot), not thousands of events.

use std::process::{Command, Stdio};

use serde_json::{json, Value};

use super::fixture::{Kaffebase, KARI};
use super::report;
use crate::support::accounts::{ADMIN_EMAIL, ADMIN_PASSWORD};
use crate::support::http::call;
use crate::support::process::{run, BIN};
use crate::support::{Daemon, Socket};

/// Read frames until every topic in `topics` has either its `change` or a `phx_error`
/// answered by a rejoin (as the official client does) and its reply; returns each topic's
/// newest payload (the change's record, or the rejoin's snapshot) and how many change events
/// came. Frames of other topics that arrive while a rejoin is pending are not lost.
async fn settle(socket: &mut Socket, topics: &[(&str, Value)]) -> (Vec<Value>, usize) {
    let mut got: Vec<Option<Value>> = vec![None; topics.len()];
    let mut rejoins: Vec<(String, usize)> = Vec::new();
    let mut changes = 0;
    while got.iter().any(Option::is_none) || !rejoins.is_empty() {
        let frame = socket.recv().await;
        if frame[3] == "phx_reply" {
            if let Some(at) = rejoins.iter().position(|(r, _)| frame[1] == json!(r)) {
                let (_, i) = rejoins.remove(at);
                assert_eq!(frame[4]["status"], "ok", "{frame}");
                got[i] = Some(frame[4]["response"].clone());
            }
            continue;
        }
        let Some(i) = topics.iter().position(|(t, _)| frame[2] == *t) else {
            continue;
        };
        match frame[3].as_str() {
            Some("change") => {
                changes += 1;
                got[i] = Some(frame[4]["record"].clone());
            }
            Some("phx_error") => {
                let r = socket.make_ref();
                socket
                    .send(json!([r, r, topics[i].0, "phx_join", topics[i].1]))
                    .await;
                rejoins.push((r, i));
            }
            _ => {}
        }
    }
    (got.into_iter().flatten().collect(), changes)
}

#[tokio::test]
async fn screens_get_an_import_made_while_serving_as_one_resync_each() {
    let daemon = Daemon::start(false, |c| {
        c.bootstrap.admin_email = ADMIN_EMAIL.into();
        c.bootstrap.admin_password = ADMIN_PASSWORD.into();
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kb = Kaffebase::create(&dir.path().join("kaffebase_prod.db"));
    kb.clean_cafe();
    // Today's busy morning: more orders than a screen's queue could take as events.
    kb.many_orders_today(1500);
    let old = kb.close();
    let old_path = old.to_str().expect("utf-8").to_owned();

    let mut screen = daemon.socket("").await;
    let today = json!({"options": {"from_date": "today"}});
    let orders = screen.join_ok("collection:order", today.clone()).await;
    assert_eq!(orders["items"], json!([]));
    screen.join_ok("collection:menu", json!({})).await;
    screen.join_ok("collection:status", json!({})).await;

    let mut cmd = Command::new(BIN);
    cmd.args(["import", "kaffebase", old.to_str().expect("utf-8")])
        .current_dir(dir.path())
        .env("KAFFEDIEM_DB", &daemon.db)
        .env_remove("KAFFEDIEM_CONFIG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    let out = tokio::task::spawn_blocking(move || run(cmd))
        .await
        .expect("import ran");
    let report = report(&out);
    assert!(
        report.contains("is serving") && report.contains("already"),
        "{report}"
    );
    // The first admin the daemon made had id 1, which the old backend's user 1 needs.
    assert!(
        report.contains(&format!("the target's account {ADMIN_EMAIL} is now user 4")),
        "{report}"
    );

    let topics = [
        ("collection:order", today.clone()),
        ("collection:menu", json!({})),
        ("collection:status", json!({})),
    ];
    let (latest, changes) = settle(&mut screen, &topics).await;
    let orders = latest[0]["items"]
        .as_array()
        .expect("a fresh order snapshot");
    assert_eq!(orders.len(), 1502, "every order of today, in one snapshot");
    assert!(changes < 10, "{changes} change events instead of a resync");
    let tree = latest[1]["tree"].as_array().expect("the imported menu");
    let menu_names: Vec<&str> = tree.iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(menu_names, ["Kaffe", "Te", "Bakst"]);
    let status = if latest[2]["items"].is_array() {
        latest[2]["items"][0].clone()
    } else {
        latest[2].clone()
    };
    assert_eq!(status["open"], true, "{status}");

    // Kari's bcrypt password works on the running daemon and is re-hashed at once.
    let login = |email: &str, password: &str| {
        call(daemon.addr, "POST", "/api/session")
            .json(&json!({"email": email, "password": password}))
    };
    let kari = login(KARI.0, KARI.1).send().await;
    assert_eq!(kari.status, 200);
    let cookie = kari
        .header("set-cookie")
        .and_then(|c| c.split(';').next())
        .expect("a session cookie")
        .to_owned();
    let hash: String = daemon
        .shell()
        .query_row("SELECT password_hash FROM user WHERE id = 2", [], |r| {
            r.get(0)
        })
        .expect("hash");
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    // The daemon's own first admin still logs in, under its new id.
    let admin = login(ADMIN_EMAIL, ADMIN_PASSWORD).send().await;
    assert_eq!(admin.status, 200, "{}", admin.text());
    assert_eq!(admin.json()["data"]["id"], 4);

    // Again with --replace, still while serving: the accounts are the old file's again, so
    // Kari's session here is over and her bcrypt hash is back until her next login.
    let session = || call(daemon.addr, "GET", "/api/session").header("cookie", &cookie);
    assert_eq!(session().send().await.status, 200);
    let mut again = Command::new(BIN);
    again
        .args(["import", "kaffebase", old_path.as_str(), "--replace"])
        .current_dir(dir.path())
        .env("KAFFEDIEM_DB", &daemon.db)
        .env_remove("KAFFEDIEM_CONFIG")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    let replaced = super::report(
        &tokio::task::spawn_blocking(move || run(again))
            .await
            .expect("ran"),
    );
    assert!(
        replaced.contains("--replace: the target's 4 accounts"),
        "{replaced}"
    );
    assert_ne!(
        session().send().await.status,
        200,
        "the old session still works"
    );
    assert_eq!(login(KARI.0, KARI.1).send().await.status, 200);
    daemon.stop().await;
}
