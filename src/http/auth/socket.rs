//! Socket authentication (SPEC 2): the 1.8 client's `authToken`, the `token` socket param,
//! or the session cookie on the upgrade request. Synchronous, as the upgrade is: the session
//! row is read on the [`Auth`]'s own reader connection.

use rusqlite::OptionalExtension;

use crate::channels::{Authenticate, Credential, Viewer};
use crate::phoenix::{ConnectInfo, Refused};

use super::session_watch::session_now;
use super::token::{self, session_cookie, sql_time, token_hash};
use super::{lookup_session, Auth};

impl Auth {
    /// The viewer a socket token vouches for, if its signature, expiry and session hold.
    fn socket_token_viewer(&self, token: &str) -> Result<Viewer, Refused> {
        let claim = token::verify(&self.secret, token, self.clock.now())
            .map_err(|e| Refused(e.to_string()))?;
        let now = sql_time(self.clock.now());
        let conn = self.socket_conn.lock().unwrap_or_else(|e| e.into_inner());
        let admin = conn
            .prepare_cached(
                "SELECT u.is_admin FROM session s JOIN user u ON u.id = s.user_id \
                 WHERE s.id = ?1 AND s.user_id = ?2 AND s.expires_at > ?3",
            )
            .and_then(|mut stmt| {
                stmt.query_row(
                    rusqlite::params![claim.session_id, claim.user_id, now],
                    |r| r.get::<_, bool>(0),
                )
                .optional()
            });
        match admin {
            Ok(Some(admin)) => {
                self.vouched.record(claim.session_id, admin);
                Ok(Viewer {
                    // Set by `Cafe::connect` from the socket's address.
                    client: None,
                    user_id: Some(claim.user_id),
                    admin,
                    credential: Credential::Session(claim.session_id),
                })
            }
            Ok(None) => Err(Refused("the socket token's session has ended".into())),
            Err(e) => {
                tracing::warn!(error = %e, "cannot check a socket token");
                Err(Refused("cannot check the socket token".into()))
            }
        }
    }

    /// The viewer behind a session cookie sent with the upgrade. A stale cookie makes an
    /// anonymous socket, not a refused one: a public screen with an old cookie must still
    /// connect.
    fn cookie_viewer(&self, cookie: &str) -> Option<Viewer> {
        let hash = token_hash(cookie);
        let now = sql_time(self.clock.now());
        let conn = self.socket_conn.lock().unwrap_or_else(|e| e.into_inner());
        match lookup_session(&conn, &hash, &now) {
            Ok(hit) => hit.map(|hit| {
                self.vouched.record(hit.session_id, hit.identity.is_admin);
                Viewer {
                    client: None,
                    user_id: Some(hit.identity.user_id),
                    admin: hit.identity.is_admin,
                    credential: Credential::Session(hit.session_id),
                }
            }),
            Err(e) => {
                tracing::warn!(error = %e, "cannot check a session cookie on a socket");
                None
            }
        }
    }
}

impl Authenticate for Auth {
    /// The 1.8 client's `authToken`, else the `token` param, else the session cookie.
    fn viewer(&self, info: &ConnectInfo) -> Result<Option<Viewer>, Refused> {
        let admin_token = self.settings().admin_token;
        let is_admin_token = |t: &str| {
            !admin_token.is_empty() && constant_time_eq(t.as_bytes(), admin_token.as_bytes())
        };
        if let Some(token) = info.auth_token.as_deref().filter(|t| !t.is_empty()) {
            if is_admin_token(token) {
                return Ok(Some(Viewer {
                    client: None,
                    user_id: None,
                    admin: true,
                    credential: Credential::AdminToken,
                }));
            }
            return self.socket_token_viewer(token).map(Some);
        }
        if let Some(token) = info.params.get("token").filter(|t| !t.is_empty()) {
            if is_admin_token(token) {
                // The interim admin credential: `Cafe::connect` grants admin for it.
                return Ok(None);
            }
            return self.socket_token_viewer(token).map(Some);
        }
        Ok(session_cookie(&info.headers).and_then(|cookie| self.cookie_viewer(cookie)))
    }

    /// Read the socket's session again: an ended one closes the socket (and this join is
    /// anonymous), a changed user (demoted, say) joins with their rights as they are now.
    fn recheck(&self, viewer: &Viewer) -> Option<Viewer> {
        let Credential::Session(session_id) = viewer.credential else {
            return Some(viewer.clone());
        };
        let now = sql_time(self.clock.now());
        let found = {
            let conn = self.socket_conn.lock().unwrap_or_else(|e| e.into_inner());
            session_now(&conn, session_id, &now)
        };
        match found {
            Ok(Some((user_id, admin))) => Some(Viewer {
                client: None,
                user_id: Some(user_id),
                admin,
                credential: viewer.credential,
            }),
            Ok(None) => {
                tracing::info!(
                    session_id,
                    "a join found its session ended; closing its sockets"
                );
                self.revoked(session_id);
                None
            }
            Err(e) => {
                // Cannot tell: this join gets no rights, and the socket stays for the session
                // watch to judge.
                tracing::warn!(error = %e, "cannot recheck a socket's session");
                Some(Viewer::default())
            }
        }
    }
}

/// Compare secrets without an early exit that would time how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
