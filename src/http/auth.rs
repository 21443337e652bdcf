//! Sessions, socket tokens and who-is-this (SPEC 6, and the socket-authentication lines of
//! SPEC 2): `/api/session*`, [`Auth::identify`] for every API request, and
//! [`crate::channels::Authenticate`] for every socket upgrade. One concern a file: `login`
//! (log in and out, the session cookie), `socket` (socket tokens: issued here, checked at
//! every upgrade and join), `origin` (which pages may log in or out), `limiter` and
//! `password_checks` (what logins may cost), `session_watch` (sessions ended elsewhere),
//! `token` (the browser-held secrets). Accounts live in [`crate::accounts`]; the rows of
//! users and sessions in [`crate::store::accounts`] and [`crate::store::sessions`].
//!
//! Invariant: a session or socket token is never logged and never stored in clear — the
//! database keeps the SHA-256 of session tokens, and socket tokens are checked by signature.
//! Every check reads the `session` row (on the store's quick lane, off the async threads), so
//! a logout (or `kaffediem user passwd` from the shell) ends a session at once, socket tokens
//! issued for it included; the sockets it let in are closed by the logout, or within
//! [`session_watch::CHECK_EVERY`] when it ended elsewhere, and each of their joins reads the
//! row again first.

pub mod limiter;
mod login;
pub mod password_checks;
pub mod session_watch;
mod socket;
pub mod token;

use std::sync::{Arc, RwLock};

use hyper::HeaderMap;

use crate::accounts;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::secret::AdminToken;
use crate::store::{sessions, Store, StoreError};

use limiter::Limiter;
use password_checks::PasswordChecks;
use token::{session_cookie, token_hash, CookieAttrs};

pub use crate::store::sessions::Identity;

/// Sessions, socket tokens, login rate limiting, the bootstrap admin.
pub struct Auth {
    store: Store,
    /// The daemon's clock, so tests can step past an expiry instead of waiting for it.
    clock: Arc<dyn Clock>,
    /// Signs socket tokens; 256 random bits kept in `kaffediem_meta`, so tokens survive a
    /// restart and a restored backup keeps accepting them.
    secret: Vec<u8>,
    settings: RwLock<Settings>,
    limiter: Limiter,
    /// Bounds the Argon2 work of logins (`auth.password_checks`, `auth.password_check_queue`;
    /// read at start): each check holds ~19 MiB while it runs.
    password_checks: PasswordChecks,
    /// The sessions open sockets were let in by, and as whom: the session watch closes the
    /// sockets of an admin demoted meanwhile.
    vouched: session_watch::Vouched,
    /// `access.admin_token`, the one copy every check reads (the API's bearer, `/metrics`,
    /// sockets); the configuration reload replaces it in place.
    admin_token: AdminToken,
    /// Told the id of every session that ended — a logout, or one the session watch or a join
    /// found gone (the server closes its sockets).
    on_revoke: std::sync::OnceLock<Box<dyn Fn(i64) + Send + Sync>>,
}

/// What [`Auth::set_config`] may change while running.
#[derive(Debug, Clone)]
struct Settings {
    cookie: CookieAttrs,
    session_days: u32,
    socket_token_seconds: u32,
    attempts_per_minute: u32,
    /// Read at start only: turning it on needs the loopback check of [`Auth::check_config`].
    dev_auto_login: bool,
}

impl Settings {
    fn from_config(config: &Config) -> Settings {
        Settings {
            cookie: CookieAttrs {
                same_site: config.http.cookie_same_site,
                secure: config.http.cookie_secure,
            },
            session_days: config.auth.session_days,
            socket_token_seconds: config.auth.socket_token_seconds,
            attempts_per_minute: config.auth.login_attempts_per_minute,
            dev_auto_login: config.auth.dev_auto_login,
        }
    }

    fn session_seconds(&self) -> i64 {
        i64::from(self.session_days) * 86_400
    }
}

impl Auth {
    /// Refuse configurations that must not start: `auth.dev_auto_login` hands out an admin
    /// session to anyone who asks, so it is allowed only on a loopback address.
    pub fn check_config(config: &Config) -> Result<(), String> {
        let bind = config.http.bind;
        if config.auth.dev_auto_login && !bind.is_loopback() {
            return Err(format!(
                "auth.dev_auto_login = true logs anyone in as admin, so it needs a loopback http.bind, but http.bind is {bind}: set http.bind = \"127.0.0.1\" (or KAFFEDIEM_BIND=127.0.0.1), or turn dev_auto_login off"
            ));
        }
        Ok(())
    }

    /// Load (or create) the socket-token secret, create the first admin when there are no
    /// users, and get ready to check sessions.
    pub async fn open(store: &Store, config: &Config) -> Result<Arc<Auth>, StoreError> {
        Auth::open_with_clock(store, config, Arc::new(SystemClock)).await
    }

    /// [`Auth::open`] with the daemon's clock.
    pub async fn open_with_clock(
        store: &Store,
        config: &Config,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Auth>, StoreError> {
        let secret = load_or_create_secret(store).await?;
        bootstrap(store, config).await?;
        // Make the decoy hash now, so the first login for an unknown email costs what any
        // other login costs (and no async thread computes it).
        let _ = tokio::task::spawn_blocking(accounts::decoy_hash).await;
        let settings = Settings::from_config(config);
        if settings.dev_auto_login {
            tracing::warn!(
                "auth.dev_auto_login is on: GET /api/session logs any caller in as the first admin; never use it outside development"
            );
        }
        if settings.cookie.same_site == crate::config::SameSite::None && !settings.cookie.secure {
            tracing::warn!(
                "http.cookie_same_site = \"None\" without http.cookie_secure = true: browsers drop such cookies"
            );
        }
        Ok(Arc::new(Auth {
            store: store.clone(),
            clock,
            secret,
            settings: RwLock::new(settings),
            limiter: Limiter::default(),
            password_checks: PasswordChecks::new(
                config.auth.password_checks,
                config.auth.password_check_queue,
            ),
            vouched: session_watch::Vouched::default(),
            admin_token: AdminToken::new(&config.access.admin_token),
            on_revoke: std::sync::OnceLock::new(),
        }))
    }

    /// Have `f` told the id of every session that ends — a logout, or an end found by
    /// [`Auth::watch_sessions`] or [`crate::channels::Authenticate::recheck`] — once it is gone from the database (to
    /// close the sockets it authenticated). Set once; later calls are ignored.
    pub fn on_session_revoked(&self, f: impl Fn(i64) + Send + Sync + 'static) {
        let _ = self.on_revoke.set(Box::new(f));
    }

    /// Tell the [`Auth::on_session_revoked`] hook that `session_id` has ended.
    fn revoked(&self, session_id: i64) {
        if let Some(revoked) = self.on_revoke.get() {
            revoked(session_id);
        }
    }

    /// `access.admin_token`: check it here, and replace it here on a reload.
    pub fn admin_token(&self) -> &AdminToken {
        &self.admin_token
    }

    /// Apply a reloaded configuration (cookie attributes, rate limits, token lifetime).
    /// `auth.dev_auto_login` keeps its value from the start; the admin token is replaced
    /// through [`Auth::admin_token`] (its holders' sockets are closed when it changes).
    pub fn set_config(&self, config: &Config) {
        let mut settings = self.settings.write().unwrap_or_else(|e| e.into_inner());
        let dev_auto_login = settings.dev_auto_login;
        *settings = Settings {
            dev_auto_login,
            ..Settings::from_config(config)
        };
    }

    fn settings(&self) -> Settings {
        self.settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Who sent this request: a valid, unexpired, unrevoked `kaffediem_session` cookie.
    pub async fn identify(&self, headers: &HeaderMap) -> Option<Identity> {
        self.session(headers).await.map(|hit| hit.identity)
    }

    async fn session(&self, headers: &HeaderMap) -> Option<sessions::Session> {
        let hash = token_hash(session_cookie(headers)?);
        let found = sessions::find(&self.store.readers, hash, self.clock.now()).await;
        found.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot check a session; treating the request as anonymous");
            None
        })
    }
}

/// The socket-token key: 256 random bits made once and kept in the database.
async fn load_or_create_secret(store: &Store) -> Result<Vec<u8>, StoreError> {
    let fresh = hex::encode(crate::secret::random_bytes());
    let stored = sessions::socket_key(&store.writer, fresh).await?;
    match hex::decode(&stored) {
        Ok(secret) if secret.len() >= 32 => Ok(secret),
        _ => Err(StoreError::Unavailable(
            "kaffediem_meta.socket_secret is not 64 or more hex digits; delete that row to have a new secret made".into(),
        )),
    }
}

async fn bootstrap(store: &Store, config: &Config) -> Result<(), StoreError> {
    let b = &config.bootstrap;
    let created = accounts::bootstrap_admin(
        &store.readers,
        &store.writer,
        &b.admin_email,
        &b.admin_password,
    )
    .await
    .map_err(|e| match e {
        accounts::AccountError::Store(e) => e,
        other => StoreError::Unavailable(format!(
            "cannot create the first admin (bootstrap.admin_email): {other}"
        )),
    })?;
    match created {
        Some((user, Some(password))) => tracing::warn!(
            "created the first admin {} with the generated password {password} — it is shown only this once: log in and change it with `kaffediem user passwd --email {}`",
            user.email,
            user.email
        ),
        Some((user, None)) => tracing::info!(
            "created the first admin {} with bootstrap.admin_password",
            user.email
        ),
        None => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_auto_login_needs_a_loopback_bind() {
        let mut config = Config::default();
        config.auth.dev_auto_login = true;
        let err = Auth::check_config(&config).unwrap_err();
        assert!(err.contains("http.bind"), "{err}");
        config.http.bind = [127, 0, 0, 1].into();
        assert!(Auth::check_config(&config).is_ok());
        config.http.bind = "::1".parse().unwrap();
        assert!(Auth::check_config(&config).is_ok());
    }
}
