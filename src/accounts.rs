//! Café accounts: users and their Argon2id password hashes. Used by the daemon (login, the
//! first admin) and by `kaffediem user add|passwd|list`.
//!
//! Invariant: a password hash goes from [`hash_password`] into the `user` table and back into
//! [`verify_password`], nowhere else — [`User`] has no hash field, so nothing can return or
//! log one by accident.

use std::sync::LazyLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use jiff::Timestamp;
use rusqlite::{params, OptionalExtension};

use crate::http::auth::token::{random_bytes, sql_time};
use crate::store::{Readers, StoreError, Writer};

/// A user as anyone outside this module sees them: never with the hash.
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

/// What can go wrong managing accounts.
#[derive(Debug)]
pub enum AccountError {
    Store(StoreError),
    /// `user add` with an email that already has an account (emails compare case-insensitively).
    EmailTaken(String),
    /// No account has this email.
    NoSuchUser(String),
    /// Input refused before touching the database (empty email, short password).
    Invalid(String),
    /// Argon2 failed (out of memory, or a corrupt stored hash).
    Hash(String),
}

impl std::fmt::Display for AccountError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AccountError::Store(e) => write!(f, "{e}"),
            AccountError::EmailTaken(email) => {
                write!(f, "a user with email {email} already exists")
            }
            AccountError::NoSuchUser(email) => write!(f, "no user has email {email}"),
            AccountError::Invalid(why) => f.write_str(why),
            AccountError::Hash(why) => write!(f, "password hashing failed: {why}"),
        }
    }
}

impl std::error::Error for AccountError {}

impl From<StoreError> for AccountError {
    fn from(e: StoreError) -> Self {
        AccountError::Store(e)
    }
}

impl From<rusqlite::Error> for AccountError {
    fn from(e: rusqlite::Error) -> Self {
        AccountError::Store(StoreError::Sqlite(e))
    }
}

/// Argon2id (v19, m = 19 MiB, t = 2, p = 1: the crate's defaults, OWASP's first choice) in PHC
/// string form. Slow on purpose: call it off the async threads.
pub fn hash_password(password: &str) -> Result<String, AccountError> {
    let salt = SaltString::encode_b64(&random_bytes()[..16])
        .map_err(|e| AccountError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| AccountError::Hash(e.to_string()))
}

/// Does `password` match the stored `hash`? A malformed hash matches nothing. Slow on purpose.
/// A bcrypt hash (an account imported from the old backend) is checked as bcrypt; the login
/// then replaces it with Argon2id ([`is_bcrypt`]).
pub fn verify_password(hash: &str, password: &str) -> bool {
    if is_bcrypt(hash) {
        // A cost past the old backend's (12) by far is no hash of ours: one check would hold
        // a password-check slot for minutes.
        use std::str::FromStr;
        return bcrypt::HashParts::from_str(hash).is_ok_and(|p| p.get_cost() <= 16)
            && bcrypt::verify(password, hash).unwrap_or(false);
    }
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// Whether `hash` is bcrypt (`$2a$`, `$2b$`, `$2y$`), kept from the old backend until the
/// user's next login re-hashes the password with Argon2id.
pub fn is_bcrypt(hash: &str) -> bool {
    hash.starts_with("$2")
}

/// A hash no password matches in practice, with the same cost as a real one: a login for an
/// unknown email verifies against it, so timing does not tell which emails have accounts.
pub fn decoy_hash() -> &'static str {
    static DECOY: LazyLock<String> = LazyLock::new(|| {
        hash_password(&crate::http::auth::token::random_token()).unwrap_or_default()
    });
    &DECOY
}

/// A password worth storing: not empty and at least 8 characters.
pub fn check_password(password: &str) -> Result<(), AccountError> {
    if password.chars().count() < 8 {
        return Err(AccountError::Invalid(
            "the password must have at least 8 characters".into(),
        ));
    }
    Ok(())
}

fn check_email(email: &str) -> Result<String, AccountError> {
    let email = email.trim();
    if email.is_empty() || !email.contains('@') || email.chars().any(char::is_whitespace) {
        return Err(AccountError::Invalid(format!(
            "`{email}` is not an email address"
        )));
    }
    Ok(email.to_owned())
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

/// The user with `email` (case-insensitive) and their stored hash, for checking a login.
pub fn find_for_login(
    conn: &rusqlite::Connection,
    email: &str,
) -> Result<Option<(User, String)>, StoreError> {
    let sql = format!("SELECT {USER_COLUMNS}, password_hash FROM user WHERE email = ?1");
    Ok(conn
        .query_row(&sql, [email.trim()], |row| {
            Ok((user_row(row)?, row.get(5)?))
        })
        .optional()?)
}

/// The admin with the lowest id (`auth.dev_auto_login` logs in as them).
pub fn first_admin(conn: &rusqlite::Connection) -> Result<Option<User>, StoreError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM user WHERE is_admin = 1 ORDER BY id LIMIT 1");
    Ok(conn.query_row(&sql, [], user_row).optional()?)
}

/// Every user, by id.
pub async fn list(readers: &Readers) -> Result<Vec<User>, AccountError> {
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

/// Create a user with a password. The hash is computed here, off the writer thread.
pub async fn add(writer: &Writer, new: NewUser, password: &str) -> Result<User, AccountError> {
    let email = check_email(&new.email)?;
    check_password(password)?;
    let hash = hash_blocking(password).await?;
    let new = NewUser { email, ..new };
    writer
        .write(move |tx| {
            let taken: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM user WHERE email = ?1)",
                [&new.email],
                |r| r.get(0),
            )?;
            if taken {
                return Err(AccountError::EmailTaken(new.email));
            }
            insert_user(tx, &new, &hash)
        })
        .await
}

fn insert_user(
    tx: &rusqlite::Transaction<'_>,
    new: &NewUser,
    hash: &str,
) -> Result<User, AccountError> {
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

/// Give the user with `email` a new password and end all their sessions (the usual reason
/// for a new password is that the old one leaked).
pub async fn set_password(
    writer: &Writer,
    email: &str,
    password: &str,
) -> Result<User, AccountError> {
    let email = check_email(email)?;
    check_password(password)?;
    let hash = hash_blocking(password).await?;
    let now = sql_time(Timestamp::now());
    writer
        .write(move |tx| {
            let sql = format!(
                "UPDATE user SET password_hash = ?2, updated_at = ?3 WHERE email = ?1 \
                 RETURNING {USER_COLUMNS}"
            );
            let user = tx
                .query_row(&sql, params![email, hash, now], user_row)
                .optional()?
                .ok_or_else(|| AccountError::NoSuchUser(email.clone()))?;
            tx.execute("DELETE FROM session WHERE user_id = ?1", [user.id])?;
            Ok(user)
        })
        .await
}

/// On a database without users, create the first admin. With `configured_password` empty a
/// random one is generated and returned, so the caller can show it once. `Ok(None)` when
/// users already exist.
pub async fn bootstrap_admin(
    readers: &Readers,
    writer: &Writer,
    email: &str,
    configured_password: &str,
) -> Result<Option<(User, Option<String>)>, AccountError> {
    let has_users: bool = readers
        .read(|conn| -> Result<bool, StoreError> {
            Ok(conn.query_row("SELECT EXISTS (SELECT 1 FROM user)", [], |r| r.get(0))?)
        })
        .await?;
    if has_users {
        return Ok(None);
    }
    let email = check_email(email)?;
    let generated = configured_password
        .is_empty()
        .then(crate::http::auth::token::random_token);
    let password = generated
        .as_deref()
        .unwrap_or(configured_password)
        .to_owned();
    let hash = hash_blocking(&password).await?;
    let new = NewUser {
        name: "Admin".into(),
        email,
        username: None,
        is_admin: true,
    };
    let created = writer
        .write(move |tx| {
            // Checked again inside the write: another process may have added a user since.
            let has_users: bool =
                tx.query_row("SELECT EXISTS (SELECT 1 FROM user)", [], |r| r.get(0))?;
            if has_users {
                return Ok(None);
            }
            insert_user(tx, &new, &hash).map(Some)
        })
        .await?;
    Ok(created.map(|user| (user, generated)))
}

async fn hash_blocking(password: &str) -> Result<String, AccountError> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| AccountError::Hash(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_argon2id_and_verifies_only_its_password() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password(&hash, "correct horse"));
        assert!(!verify_password(&hash, "wrong horse"));
        assert!(!verify_password("not a hash", "correct horse"));
    }

    #[test]
    fn an_imported_bcrypt_hash_verifies_only_its_password() {
        let hash = bcrypt::hash("gammel kaffe", 4).unwrap();
        assert!(is_bcrypt(&hash));
        assert!(verify_password(&hash, "gammel kaffe"));
        assert!(!verify_password(&hash, "ny kaffe"));
        assert!(!verify_password("!locked: no password", ""));
    }

    #[test]
    fn short_passwords_and_odd_emails_are_refused() {
        assert!(check_password("short").is_err());
        assert!(check_email("no-at-sign").is_err());
        assert_eq!(check_email(" a@b.c ").unwrap(), "a@b.c");
    }
}
