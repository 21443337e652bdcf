//! `kaffediem user add|passwd|list` as the real binary, on the database of a running daemon.

use std::process::{Command, Stdio};

use hyper::StatusCode;

use super::{add_user, daemon, get_session, login, login_cookie, ADMIN_EMAIL};
use crate::support::Daemon;

/// Run `kaffediem user ...` on the daemon's database with `stdin` piped in.
pub(super) async fn cli(d: &Daemon, args: &[&str], stdin: &str) -> std::process::Output {
    let db = d.db.clone();
    let dir = db.parent().unwrap().to_owned();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let stdin = stdin.to_owned();
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = Command::new(env!("CARGO_BIN_EXE_kaffediem"))
            .args(&args)
            .env("KAFFEDIEM_DB", &db)
            .env_remove("KAFFEDIEM_CONFIG")
            .env("RUST_LOG", "warn")
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kaffediem");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

pub(super) fn succeeded(out: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test]
async fn user_add_then_login_with_that_password() {
    let d = daemon().await;
    let out = cli(
        &d,
        &[
            "user",
            "add",
            "--email",
            "Ola@Example.com",
            "--name",
            "Ola",
            "--username",
            "ola",
        ],
        "ola's password\n",
    )
    .await;
    succeeded(&out);
    let reply = login(&d, "ola@example.com", "ola's password").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.json()["data"]["name"], "Ola");
    assert_eq!(reply.json()["data"]["is_admin"], false);
    let again = cli(
        &d,
        &["user", "add", "--email", "ola@example.com", "--name", "Ola"],
        "another password\n",
    )
    .await;
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    d.stop().await;
}

#[tokio::test]
async fn user_add_refuses_a_short_password() {
    let d = daemon().await;
    let out = cli(
        &d,
        &["user", "add", "--email", "a@b.c", "--name", "A"],
        "short\n",
    )
    .await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 8"));
    d.stop().await;
}

#[tokio::test]
async fn user_list_shows_users_and_never_a_hash() {
    let d = daemon().await;
    succeeded(
        &cli(
            &d,
            &[
                "user",
                "add",
                "--email",
                "kim@example.com",
                "--name",
                "Kim",
                "--admin",
            ],
            "kim's password\n",
        )
        .await,
    );
    let out = cli(&d, &["user", "list"], "").await;
    let stdout = succeeded(&out);
    assert!(stdout.contains(ADMIN_EMAIL), "{stdout}");
    assert!(stdout.contains("kim@example.com"), "{stdout}");
    assert!(!stdout.contains("argon2"), "{stdout}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("argon2"));
    d.stop().await;
}

#[tokio::test]
async fn user_passwd_changes_the_password_and_ends_sessions() {
    let d = daemon().await;
    add_user(&d, "kari@example.com", "old password", false);
    let cookie = login_cookie(&d, "kari@example.com", "old password").await;
    succeeded(
        &cli(
            &d,
            &["user", "passwd", "--email", "KARI@example.com"],
            "new password\n",
        )
        .await,
    );
    assert_eq!(
        get_session(&d, &cookie).await.status,
        StatusCode::NO_CONTENT
    );
    let old = login(&d, "kari@example.com", "old password").await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED);
    let new = login(&d, "kari@example.com", "new password").await;
    assert_eq!(new.status, StatusCode::OK);
    let unknown = cli(
        &d,
        &["user", "passwd", "--email", "nobody@example.com"],
        "new password\n",
    )
    .await;
    assert!(!unknown.status.success());
    d.stop().await;
}
