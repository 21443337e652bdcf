//! The `user` table: café accounts and their stored password hashes. The hashes are made and
//! checked in [`crate::accounts`]; this module only keeps them. Reads run on the quick lane
//! ([`Readers`]), writes on the writer thread like every other table's.

use rusqlite::{params, OptionalExtension};

use super::records::format_timestamp;
use super::{sessions, Readers, StoreError, Writer};

/// A user as anyone outside the account code sees them: never with the hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub email: String,
    pub name: String,
    pub username: Option<String>,
    pub is_admin: bool,
}

/// The fields of a user to create.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: String,
    pub name: String,
    pub username: Option<String>,
    pub is_admin: bool,
}

const USER_COLUMNS: &str = "id, email, name, username, is_admin";

fn user_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: row.get(0)?,
        email: row.get(1)?,
        name: row.get(2)?,
        username: row.get(3)?,
        is_admin: row.get(4)?,
    })
}

/// The user with `email` and their stored hash, for checking a login.
pub async fn find_for_login(
    readers: &Readers,
    email: String,
) -> Result<Option<(User, String)>, StoreError> {
    readers
        .read(move |conn| {
            let sql = format!("SELECT {USER_COLUMNS}, password_hash FROM user WHERE email = ?1");
            let mut stmt = conn.prepare_cached(&sql)?;
            Ok(stmt
                .query_row([email.trim()], |row| Ok((user_row(row)?, row.get(5)?)))
                .optional()?)
        })
        .await
}

/// The admin with the lowest id (`auth.dev_auto_login` logs in as them).
pub async fn first_admin(readers: &Readers) -> Result<Option<User>, StoreError> {
    readers
        .read(|conn| {
            let sql =
                format!("SELECT {USER_COLUMNS} FROM user WHERE is_admin = 1 ORDER BY id LIMIT 1");
            Ok(conn.query_row(&sql, [], user_row).optional()?)
        })
        .await
}

/// Every user, by id.
pub async fn list(readers: &Readers) -> Result<Vec<User>, StoreError> {
    readers
        .read(|conn| {
            let sql = format!("SELECT {USER_COLUMNS} FROM user ORDER BY id");
            let mut stmt = conn.prepare(&sql)?;
            let users = stmt
                .query_map([], user_row)?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(users)
        })
        .await
}

/// Whether any user exists.
pub async fn any(readers: &Readers) -> Result<bool, StoreError> {
    readers
        .read(|conn| -> Result<bool, StoreError> {
            Ok(conn.query_row("SELECT EXISTS (SELECT 1 FROM user)", [], |r| r.get(0))?)
        })
        .await
}

/// Create `new` with the password hash `hash`. `None`: a user with that email exists.
pub async fn add(writer: &Writer, new: NewUser, hash: String) -> Result<Option<User>, StoreError> {
    writer
        .write(move |tx| {
            let taken: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM user WHERE email = ?1)",
                [&new.email],
                |r| r.get(0),
            )?;
            if taken {
                return Ok(None);
            }
            insert(tx, &new, &hash).map(Some)
        })
        .await
}

/// Create `new` only when there are no users at all (the first admin). `None`: there are.
pub async fn add_first(
    writer: &Writer,
    new: NewUser,
    hash: String,
) -> Result<Option<User>, StoreError> {
    writer
        .write(move |tx| {
            // Checked inside the write: another process may have added a user meanwhile.
            let has_users: bool =
                tx.query_row("SELECT EXISTS (SELECT 1 FROM user)", [], |r| r.get(0))?;
            if has_users {
                return Ok(None);
            }
            insert(tx, &new, &hash).map(Some)
        })
        .await
}

fn insert(tx: &rusqlite::Transaction<'_>, new: &NewUser, hash: &str) -> Result<User, StoreError> {
    let sql = format!(
        "INSERT INTO user (email, name, username, is_admin, password_hash) \
         VALUES (?1, ?2, ?3, ?4, ?5) RETURNING {USER_COLUMNS}"
    );
    Ok(tx.query_row(
        &sql,
        params![new.email, new.name, new.username, new.is_admin, hash],
        user_row,
    )?)
}

/// Store `hash` as the password of the user with `email` and end all their sessions (the
/// usual reason for a new password is that the old one leaked). `None`: no such user.
pub async fn set_password(
    writer: &Writer,
    email: String,
    hash: String,
    now: jiff::Timestamp,
) -> Result<Option<User>, StoreError> {
    let now = format_timestamp(now);
    writer
        .write(move |tx| {
            let sql = format!(
                "UPDATE user SET password_hash = ?2, updated_at = ?3 WHERE email = ?1 \
                 RETURNING {USER_COLUMNS}"
            );
            let user = tx
                .query_row(&sql, params![email, hash, now], user_row)
                .optional()?;
            if let Some(user) = &user {
                sessions::end_all_of(tx, user.id)?;
            }
            Ok(user)
        })
        .await
}
