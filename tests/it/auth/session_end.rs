//! A session ends however it ends — `kaffediem user passwd` from another process, its row
//! deleted or its expiry moved in the `sqlite3` shell, its user deleted, its time running out —
//! and the sockets it let in are closed (1001: the client reconnects and is judged afresh), and
//! a join on such a socket is judged by the session as it is now, not as it was at connect.

use hyper::StatusCode;
use serde_json::json;

use super::cli::{cli, succeeded};
use super::{
    add_user, admin_cookie, daemon, daemon_with, login_cookie, reason, socket_token, upgrade,
    ADMIN_EMAIL,
};
use crate::support::{Daemon, Socket};

/// An admin socket (by socket token) on `notifications:admin`, and its session's cookie.
async fn admin_socket(d: &Daemon) -> (Socket, String, String) {
    let cookie = admin_cookie(d).await;
    let token = socket_token(d, &cookie).await;
    let mut socket = d.socket(&format!("token={token}")).await;
    socket.join_ok("notifications:admin", json!({})).await;
    (socket, cookie, token)
}

/// A customer's socket (by cookie) on their own notifications, to show it is left alone.
async fn bystander(d: &Daemon) -> Socket {
    let id = add_user(d, "ola@example.com", "ola's password", false);
    let cookie = login_cookie(d, "ola@example.com", "ola's password").await;
    let mut socket = upgrade(d, "", &[("cookie", &cookie)])
        .await
        .expect("upgrade");
    socket
        .join_ok(&format!("notifications:user:{id}"), json!({}))
        .await;
    socket
}

/// The socket was closed for its client to reconnect, and the old token no longer connects.
async fn assert_closed(d: &Daemon, socket: &mut Socket, token: &str) {
    assert_eq!(socket.close_code().await, 1001);
    let again = upgrade(d, &format!("&token={token}"), &[]).await;
    assert_eq!(again.err(), Some(StatusCode::FORBIDDEN));
}

/// Another session's socket is still open and still hears what it joined.
async fn assert_still_open(bystander: &mut Socket) {
    bystander.join_ok("collection:status", json!({})).await;
}

/// Join `topic` and insist it is refused as unauthorized — or that the socket is closed
/// before the join is answered, which refuses it all the same.
async fn assert_join_refused(socket: &mut Socket, topic: &str) {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let r = socket.make_ref();
    let join = json!([r, r, topic, "phx_join", {}]);
    let sent = futures_util::SinkExt::send(&mut socket.ws, Message::Text(join.to_string().into()));
    if sent.await.is_err() {
        return;
    }
    loop {
        let frame = tokio::time::timeout(crate::support::WAIT, socket.ws.next())
            .await
            .expect("an answer to the join");
        match frame {
            Some(Ok(Message::Text(text))) => {
                let frame: serde_json::Value = serde_json::from_str(&text).expect("json");
                if frame[1] == json!(r) && frame[3] == "phx_reply" {
                    assert_eq!(frame[4]["status"], "error", "{frame}");
                    assert_eq!(reason(&frame[4]), "unauthorized", "{frame}");
                    return;
                }
            }
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
            Some(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn passwd_from_the_cli_closes_the_users_sockets() {
    let d = daemon().await;
    let (mut socket, _, token) = admin_socket(&d).await;
    let mut by_cookie = {
        let cookie = admin_cookie(&d).await;
        let mut s = upgrade(&d, "", &[("cookie", &cookie)])
            .await
            .expect("upgrade");
        s.join_ok("notifications:admin", json!({})).await;
        s
    };
    let mut other = bystander(&d).await;
    succeeded(
        &cli(
            &d,
            &["user", "passwd", "--email", ADMIN_EMAIL],
            "a new password\n",
        )
        .await,
    );
    assert_closed(&d, &mut socket, &token).await;
    assert_eq!(by_cookie.close_code().await, 1001);
    assert_still_open(&mut other).await;
    d.stop().await;
}

#[tokio::test]
async fn a_session_row_deleted_in_the_shell_closes_its_sockets() {
    let d = daemon().await;
    let (mut socket, _, token) = admin_socket(&d).await;
    let mut other = bystander(&d).await;
    let deleted = d
        .shell()
        .execute(
            "DELETE FROM session WHERE user_id = (SELECT id FROM user WHERE email = ?1)",
            [ADMIN_EMAIL],
        )
        .expect("delete session");
    assert_eq!(deleted, 1);
    assert_closed(&d, &mut socket, &token).await;
    assert_still_open(&mut other).await;
    d.stop().await;
}

#[tokio::test]
async fn a_session_expired_in_the_shell_closes_its_sockets() {
    let d = daemon().await;
    let (mut socket, _, token) = admin_socket(&d).await;
    d.shell()
        .execute(
            "UPDATE session SET expires_at = '2000-01-01 00:00:00' \
             WHERE user_id = (SELECT id FROM user WHERE email = ?1)",
            [ADMIN_EMAIL],
        )
        .expect("expire session");
    assert_closed(&d, &mut socket, &token).await;
    d.stop().await;
}

#[tokio::test]
async fn a_session_running_out_of_time_closes_its_sockets() {
    let d = daemon_with(|c| {
        c.auth.session_days = 1;
        // The socket token must outlive the session for this to be the session's doing.
        c.auth.socket_token_seconds = 3 * 86_400;
    })
    .await;
    let (mut socket, _, _) = admin_socket(&d).await;
    let mut anonymous = d.socket("").await;
    anonymous.join_ok("collection:status", json!({})).await;
    d.clock
        .set(jiff::Timestamp::now() + jiff::SignedDuration::from_hours(25));
    assert_eq!(socket.close_code().await, 1001);
    assert_still_open(&mut anonymous).await;
    d.stop().await;
}

#[tokio::test]
async fn a_user_deleted_in_the_shell_loses_their_sockets() {
    let d = daemon().await;
    let id = add_user(&d, "kari@example.com", "kari's password", true);
    let cookie = login_cookie(&d, "kari@example.com", "kari's password").await;
    let token = socket_token(&d, &cookie).await;
    let mut socket = d.socket(&format!("token={token}")).await;
    socket.join_ok("notifications:admin", json!({})).await;
    // The sqlite3 shell does not enforce foreign keys by default: the session row stays.
    let shell = d.shell();
    shell
        .execute_batch("PRAGMA foreign_keys = OFF")
        .expect("foreign keys off");
    shell
        .execute("DELETE FROM user WHERE id = ?1", [id])
        .expect("delete user");
    assert_closed(&d, &mut socket, &token).await;
    d.stop().await;
}

/// A join is judged by the session as it is at the join: a socket whose session was deleted
/// a moment ago cannot join `notifications:admin` (it is refused, or already closed).
#[tokio::test]
async fn a_privileged_join_rechecks_the_session() {
    let d = daemon().await;
    let cookie = admin_cookie(&d).await;
    let token = socket_token(&d, &cookie).await;
    let mut socket = d.socket(&format!("token={token}")).await;
    d.shell()
        .execute("DELETE FROM session", [])
        .expect("delete sessions");
    assert_join_refused(&mut socket, "notifications:admin").await;
    d.stop().await;
}

/// Demoted in the shell after connecting as an admin: the socket's session still holds, but
/// its next admin join is judged by who the user is now (refused; or the socket is closed by
/// the watch first).
#[tokio::test]
async fn an_admin_demoted_in_the_shell_cannot_join_admin_topics_any_more() {
    let d = daemon().await;
    let cookie = admin_cookie(&d).await;
    let token = socket_token(&d, &cookie).await;
    let mut socket = d.socket(&format!("token={token}")).await;
    d.shell()
        .execute(
            "UPDATE user SET is_admin = 0 WHERE email = ?1",
            [ADMIN_EMAIL],
        )
        .expect("demote");
    assert_join_refused(&mut socket, "notifications:admin").await;
    d.stop().await;
}

/// Demoted in the shell while joined to `notifications:admin`: the socket is closed, and the
/// same socket token reconnects without admin rights.
#[tokio::test]
async fn an_admin_demoted_in_the_shell_loses_the_admin_topics_already_joined() {
    let d = daemon().await;
    let (mut socket, _, token) = admin_socket(&d).await;
    let mut other = bystander(&d).await;
    d.shell()
        .execute(
            "UPDATE user SET is_admin = 0 WHERE email = ?1",
            [ADMIN_EMAIL],
        )
        .expect("demote");
    assert_eq!(socket.close_code().await, 1001);
    let mut again = d.socket(&format!("token={token}")).await;
    let reply = again.join("notifications:admin", json!({})).await;
    assert_eq!(reason(&reply), "unauthorized", "{reply}");
    // Still logged in, as who they are now: their own topic joins.
    again.join_ok("notifications:user:1", json!({})).await;
    assert_still_open(&mut other).await;
    d.stop().await;
}
