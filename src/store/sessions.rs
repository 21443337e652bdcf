//! The `session` table and the socket-token key in `kaffediem_meta`. A session row is found by
//! the SHA-256 of its token (made and hashed in `http::auth`; the token itself is never
//! stored). Every check reads the row, on the quick lane ([`Readers`]), so a logout or
//! `kaffediem user passwd` ends a session at once; rows are written by the writer thread.

use jiff::Timestamp;
use rusqlite::OptionalExtension;

use super::records::format_timestamp;
use super::{Readers, StoreError, Writer};

/// A logged-in user, as the API sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user_id: i64,
    pub name: String,
    pub email: String,
    pub is_admin: bool,
}

/// A valid session: which row (socket tokens are bound to it), and whose.
#[derive(Debug, Clone)]
pub struct Session {
    /// The row's id: socket tokens are bound to it, and sockets are named `session:<id>`.
    pub id: i64,
    /// Whose session it is, as their user row reads now.
    pub identity: Identity,
}

/// `kaffediem_meta` key of the socket-token signing key.
const SOCKET_KEY: &str = "socket_secret";

/// The unexpired session whose token hashes to `token_hash`.
pub async fn find(
    readers: &Readers,
    token_hash: String,
    now: Timestamp,
) -> Result<Option<Session>, StoreError> {
    let now = format_timestamp(now);
    readers
        .read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT s.id, u.id, u.name, u.email, u.is_admin FROM session s \
                 JOIN user u ON u.id = s.user_id WHERE s.token_hash = ?1 AND s.expires_at > ?2",
            )?;
            Ok(stmt
                .query_row([&token_hash, &now], |row| {
                    Ok(Session {
                        id: row.get(0)?,
                        identity: Identity {
                            user_id: row.get(1)?,
                            name: row.get(2)?,
                            email: row.get(3)?,
                            is_admin: row.get(4)?,
                        },
                    })
                })
                .optional()?)
        })
        .await
}

/// What each of `sessions` vouches for at `now`: its user and whether they are an admin, or
/// `None` when it has ended (deleted, expired, or its user is gone). One indexed read each.
pub async fn vouching(
    readers: &Readers,
    sessions: Vec<i64>,
    now: Timestamp,
) -> Result<Vec<(i64, Option<(i64, bool)>)>, StoreError> {
    let now = format_timestamp(now);
    readers
        .read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT u.id, u.is_admin FROM session s JOIN user u ON u.id = s.user_id \
                 WHERE s.id = ?1 AND s.expires_at > ?2",
            )?;
            sessions
                .into_iter()
                .map(|session| {
                    let found = stmt
                        .query_row(rusqlite::params![session, now], |r| {
                            Ok((r.get(0)?, r.get(1)?))
                        })
                        .optional()?;
                    Ok((session, found))
                })
                .collect()
        })
        .await
}

/// What one session vouches for at `now` ([`vouching`] for one).
pub async fn vouches(
    readers: &Readers,
    session: i64,
    now: Timestamp,
) -> Result<Option<(i64, bool)>, StoreError> {
    let found = vouching(readers, vec![session], now).await?;
    Ok(found.into_iter().next().and_then(|(_, found)| found))
}

/// A new session for `user_id` until `expires`; expired rows are swept on the way (of no use
/// to anyone, and logins are rare enough to do it here).
pub async fn start(
    writer: &Writer,
    token_hash: String,
    user_id: i64,
    now: Timestamp,
    expires: Timestamp,
) -> Result<(), StoreError> {
    let (now, expires) = (format_timestamp(now), format_timestamp(expires));
    writer
        .write(move |tx| -> Result<(), StoreError> {
            tx.execute("DELETE FROM session WHERE expires_at <= ?1", [&now])?;
            tx.execute(
                "INSERT INTO session (token_hash, user_id, expires_at) VALUES (?1, ?2, ?3)",
                rusqlite::params![token_hash, user_id, expires],
            )?;
            Ok(())
        })
        .await
}

/// End the session whose token hashes to `token_hash`; its id, if there was one.
pub async fn end(writer: &Writer, token_hash: String) -> Result<Option<i64>, StoreError> {
    writer
        .write(move |tx| -> Result<Option<i64>, StoreError> {
            let sql = "DELETE FROM session WHERE token_hash = ?1 RETURNING id";
            Ok(tx.query_row(sql, [token_hash], |r| r.get(0)).optional()?)
        })
        .await
}

/// End every session of `user_id`, inside a write.
pub(super) fn end_all_of(tx: &rusqlite::Transaction<'_>, user_id: i64) -> Result<(), StoreError> {
    tx.execute("DELETE FROM session WHERE user_id = ?1", [user_id])?;
    Ok(())
}

/// The socket-token signing key as stored (hex): `fresh` is stored first if there is none,
/// so the key survives restarts and a restored backup keeps accepting its tokens.
pub async fn socket_key(writer: &Writer, fresh: String) -> Result<String, StoreError> {
    writer
        .write(move |tx| -> Result<String, StoreError> {
            tx.execute(
                "INSERT OR IGNORE INTO kaffediem_meta (key, value) VALUES (?1, ?2)",
                [SOCKET_KEY, &fresh],
            )?;
            Ok(tx.query_row(
                "SELECT CAST(value AS TEXT) FROM kaffediem_meta WHERE key = ?1",
                [SOCKET_KEY],
                |r| r.get(0),
            )?)
        })
        .await
}
