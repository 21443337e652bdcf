//! Sessions end in ways the daemon does not see happen: `kaffediem user passwd` in another
//! process, a row deleted or an expiry edited in the `sqlite3` shell, a user deleted, or simply
//! the expiry passing. Every [`CHECK_EVERY`] the sessions behind open sockets are read back;
//! the sockets of one that has ended are closed (1001), so their clients reconnect and are
//! judged afresh. So are the sockets of an admin demoted meanwhile: their admin topics must
//! not go on. A join also rechecks its socket's session at once ([`crate::channels::Authenticate::recheck`]).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::channels::Credential;
use crate::store::sessions;

use super::Auth;

/// How often the sessions of open sockets are checked: a socket keeps an ended session's
/// rights at most this long (its joins are rechecked at once). One indexed read per session
/// with sockets, so cheap even with thousands of sockets.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The sessions sockets were let in by, and whether any of them as an admin: a demotion
/// closes those sockets. Entries of sessions without sockets are pruned by the watch, so this
/// holds at most one entry per open socket.
#[derive(Debug, Default)]
pub(super) struct Vouched {
    /// Session id → (some socket of it has admin rights, the sweep epoch it was last seen in).
    sessions: Mutex<HashMap<i64, (bool, u64)>>,
    /// Bumped before every sweep reads the endpoint's sockets, so an entry recorded since the
    /// previous sweep is not pruned for missing from that read.
    epoch: AtomicU64,
}

impl Vouched {
    /// A socket was let in by `session_id`, as an admin or not.
    pub(super) fn record(&self, session_id: i64, admin: bool) {
        let epoch = self.epoch.load(Ordering::Acquire);
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let entry = sessions.entry(session_id).or_insert((false, epoch));
        *entry = (entry.0 || admin, epoch);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, (bool, u64)>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }
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
                let Some(auth) = Weak::upgrade(&auth) else {
                    return;
                };
                let epoch = auth.vouched.epoch.fetch_add(1, Ordering::AcqRel);
                let Some(ids) = socket_ids() else { return };
                let sessions: HashSet<i64> = ids
                    .iter()
                    .filter_map(|id| match Credential::from_socket_id(id) {
                        Credential::Session(session) => Some(session),
                        _ => None,
                    })
                    .collect();
                // Sessions whose sockets are all gone need no watching. One recorded since the
                // last sweep is kept: its socket may have been named just after the read above.
                auth.vouched
                    .lock()
                    .retain(|session, (_, seen)| sessions.contains(session) || *seen >= epoch);
                if sessions.is_empty() {
                    continue;
                }
                auth.revoke_ended(sessions.into_iter().collect()).await;
            }
        })
    }

    /// Revoke those of `sessions` that have ended, or whose admin sockets lost the right.
    async fn revoke_ended(&self, sessions: Vec<i64>) {
        let found = sessions::vouching(&self.store.readers, sessions, self.clock.now()).await;
        match found {
            Ok(found) => {
                for (session_id, now) in found {
                    let admin = now.map(|(_, admin)| admin);
                    let demoted = {
                        let mut vouched = self.vouched.lock();
                        let was_admin = vouched.get(&session_id).is_some_and(|v| v.0);
                        let demoted = admin == Some(false) && was_admin;
                        if admin.is_none() || demoted {
                            // Its sockets reconnect and are recorded afresh.
                            vouched.remove(&session_id);
                        }
                        demoted
                    };
                    if admin.is_none() {
                        tracing::info!(session_id, "session ended; closing its sockets");
                        self.revoked(session_id);
                    } else if demoted {
                        tracing::info!(
                            session_id,
                            "user is no longer an admin; closing the sockets of their session"
                        );
                        self.revoked(session_id);
                    }
                }
            }
            // Retried on the next tick; joins are rechecked meanwhile.
            Err(e) => tracing::warn!(error = %e, "cannot check the sessions of open sockets"),
        }
    }
}
