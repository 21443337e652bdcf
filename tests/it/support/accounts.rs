//! Accounts for permission tests: log in over HTTP, or write a customer into the file and log
//! it in, as a café's admin would with `kaffediem user add`.

use serde_json::json;

use super::http::call;
use super::Daemon;

pub const ADMIN_EMAIL: &str = "admin@kaffediem.local";
/// Use with `config.bootstrap.admin_password = ADMIN_PASSWORD.into()`.
pub const ADMIN_PASSWORD: &str = "bootstrap password";

/// Log in; returns `kaffediem_session=...` for a `Cookie` header.
pub async fn login(daemon: &Daemon, email: &str, password: &str) -> String {
    let reply = call(daemon.addr, "POST", "/api/session")
        .json(&json!({"email": email, "password": password}))
        .send()
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let set_cookie = reply.header("set-cookie").expect("a session cookie");
    set_cookie
        .split(';')
        .next()
        .expect("cookie pair")
        .trim()
        .to_owned()
}

/// A customer account written into the file; returns its id and a logged-in cookie.
pub async fn customer(daemon: &Daemon, email: &str) -> (i64, String) {
    let hash = kaffediem::accounts::hash_password("kaffe er godt").expect("hash");
    let id: i64 = daemon
        .shell()
        .query_row(
            "INSERT INTO user (email, name, is_admin, password_hash) VALUES (?1, 'Ola', 0, ?2) \
             RETURNING id",
            rusqlite::params![email, hash],
            |r| r.get(0),
        )
        .expect("insert user");
    (id, login(daemon, email, "kaffe er godt").await)
}
