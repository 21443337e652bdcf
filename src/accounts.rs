//! Café accounts: the rules for users (valid emails and passwords, the first admin) and
//! their Argon2id password hashes. Used by the daemon (login, the first admin) and by
//! `kaffediem user add|passwd|list`; the rows are kept by [`crate::store::accounts`], through
//! the writer and the quick read lane like every other table, so the CLI runs beside the
//! daemon (which sees its writes as foreign commits).
//!
//! Invariant: a password hash goes from [`hash_password`] into the `user` table (through
//! `store::accounts`) and back into [`verify_password`], nowhere else — [`User`] has no hash
//! field, so nothing can return or log one by accident.

use std::sync::LazyLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use jiff::Timestamp;

use crate::secret::{random_bytes, random_token};
use crate::store::{self, Readers, StoreError, Writer};

pub use crate::store::accounts::{NewUser, User};

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
    static DECOY: LazyLock<String> =
        LazyLock::new(|| hash_password(&random_token()).unwrap_or_default());
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

/// Every user, by id.
pub async fn list(readers: &Readers) -> Result<Vec<User>, AccountError> {
    Ok(store::accounts::list(readers).await?)
}

/// Create a user with a password. The hash is computed here, off the writer thread.
pub async fn add(writer: &Writer, new: NewUser, password: &str) -> Result<User, AccountError> {
    let (email, hash) = checked(&new.email, password).await?;
    let new = NewUser { email, ..new };
    let taken = new.email.clone();
    store::accounts::add(writer, new, hash)
        .await?
        .ok_or(AccountError::EmailTaken(taken))
}

/// Give the user with `email` a new password and end all their sessions (the usual reason
/// for a new password is that the old one leaked).
pub async fn set_password(
    writer: &Writer,
    email: &str,
    password: &str,
) -> Result<User, AccountError> {
    let (email, hash) = checked(email, password).await?;
    store::accounts::set_password(writer, email.clone(), hash, Timestamp::now())
        .await?
        .ok_or(AccountError::NoSuchUser(email))
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
    if store::accounts::any(readers).await? {
        return Ok(None);
    }
    let email = check_email(email)?;
    let generated = configured_password.is_empty().then(random_token);
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
    let created = store::accounts::add_first(writer, new, hash).await?;
    Ok(created.map(|user| (user, generated)))
}

/// The email as stored and the password's hash, once both pass the rules.
async fn checked(email: &str, password: &str) -> Result<(String, String), AccountError> {
    let email = check_email(email)?;
    check_password(password)?;
    Ok((email, hash_blocking(password).await?))
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
