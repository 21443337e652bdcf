//! Sessions end in ways the daemon does not see happen: `kaffediem user passwd` in another
//! process, a row deleted or an expiry edited in the `sqlite3` shell, a user deleted, or simply
//! the expiry passing. Every [`CHECK_EVERY`] the sessions behind open sockets are read back;
//! the sockets of one that has ended are closed (1001), so their clients reconnect and are
//! judged afresh. A join also rechecks its socket's session at once ([`Auth::recheck`]).

use std::collections::HashSet;
use std::sync::{Arc, Weak};
use std::time::Duration;

use rusqlite::OptionalExtension;
use tokio::task::JoinHandle;

use crate::channels::Credential;
use crate::store::StoreError;

use super::token::sql_time;
use super::Auth;

/// How often the sessions of open sockets are checked: a socket keeps an ended session's
/// rights at most this long (its joins are rechecked at once). One indexed read per session
/// with sockets, so cheap even with thousands of sockets.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// What a session vouches for now: its user and whether they are an admin. `None`: the
/// session has ended (deleted, expired, or its user is gone).
pub(super) fn session_now(
    conn: &rusqlite::Connection,
    session_id: i64,
    now: &str,
) -> Result<Option<(i64, bool)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT u.id, u.is_admin FROM session s JOIN user u ON u.id = s.user_id \
         WHERE s.id = ?1 AND s.expires_at > ?2",
    )?;
    Ok(stmt
        .query_row(rusqlite::params![session_id, now], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?)
}

impl Auth {
    /// Check, every [`CHECK_EVERY`], the sessions behind the sockets `socket_ids` names (the
    /// endpoint's [`crate::phoenix::Endpoint::socket_ids`]), and revoke those that have ended
    /// (the [`Auth::on_session_revoked`] hook closes their sockets). Stops when `socket_ids`
    /// answers `None` (the endpoint is gone) or the `Auth` is dropped.
    pub fn watch_sessions(
        self: &Arc<Self>,
        socket_ids: impl Fn() -> Option<HashSet<String>> + Send + 'static,
    ) -> JoinHandle<()> {
        let auth = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(CHECK_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(ids) = socket_ids() else { return };
                let sessions: Vec<i64> = ids
                    .iter()
                    .filter_map(|id| match Credential::from_socket_id(id) {
                        Credential::Session(session) => Some(session),
                        _ => None,
                    })
                    .collect();
                if sessions.is_empty() {
                    continue;
                }
                let Some(auth) = Weak::upgrade(&auth) else {
                    return;
                };
                auth.revoke_ended(sessions).await;
            }
        })
    }

    /// Revoke those of `sessions` that have ended.
    async fn revoke_ended(&self, sessions: Vec<i64>) {
        let now = sql_time(self.clock.now());
        let ended = self
            .store
            .readers
            .read(move |conn| -> Result<Vec<i64>, StoreError> {
                let mut ended = Vec::new();
                for session in sessions {
                    if session_now(conn, session, &now)?.is_none() {
                        ended.push(session);
                    }
                }
                Ok(ended)
            })
            .await;
        match ended {
            Ok(ended) => {
                for session_id in ended {
                    tracing::info!(session_id, "session ended; closing its sockets");
                    self.revoked(session_id);
                }
            }
            // Retried on the next tick; joins are rechecked meanwhile.
            Err(e) => tracing::warn!(error = %e, "cannot check the sessions of open sockets"),
        }
    }
}
