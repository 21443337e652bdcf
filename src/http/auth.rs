//! Sessions, socket tokens and who-is-this (SPEC 6, and the socket-authentication lines of
//! SPEC 2): `/api/session*`, [`Auth::identify`] for every API request, and
//! [`crate::channels::Authenticate`] for every socket upgrade (in `socket.rs`). Accounts live
//! in [`crate::accounts`]; the browser-held secrets (tokens, cookies) in [`token`].
//!
//! Invariant: a session or socket token is never logged and never stored in clear — the
//! database keeps the SHA-256 of session tokens, and socket tokens are checked by signature.
//! Every check reads the `session` row, so a logout (or `kaffediem user passwd` from the
//! shell) ends a session at once, socket tokens issued for it included; the sockets it let
//! in are closed by the logout, or within [`session_watch::CHECK_EVERY`] when it ended
//! elsewhere, and each of their joins reads the row again first.

pub mod limiter;
pub mod password_checks;
pub mod session_watch;
mod socket;
pub mod token;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::http::Incoming;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::header::{self, HeaderValue};
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use jiff::{SignedDuration, Timestamp};
use rusqlite::OptionalExtension;
use serde::Deserialize;
use serde_json::json;

use crate::accounts::{self, User};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::store::{Store, StoreError};

use super::api::ApiError;
use super::cors::Cors;
use super::{error, json_response, Body};
use limiter::{Key, Limiter};
use password_checks::PasswordChecks;
use token::{session_cookie, sql_time, token_hash, CookieAttrs, SocketClaim};

/// A logged-in user, as the API sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user_id: i64,
    pub name: String,
    pub email: String,
    pub is_admin: bool,
}

/// Largest login body read; `{email, password}` needs a few hundred bytes.
const MAX_LOGIN_BODY: usize = 16 * 1024;

/// `kaffediem_meta` key of the socket-token signing secret.
const SECRET_KEY: &str = "socket_secret";

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
    /// [`Authenticate::viewer`] is synchronous (it runs inside the upgrade), while the reader
    /// pool is async; this one read-only connection answers its single indexed lookup.
    socket_conn: Mutex<rusqlite::Connection>,
    /// The sessions open sockets were let in by, and as whom: the session watch closes the
    /// sockets of an admin demoted meanwhile.
    vouched: session_watch::Vouched,
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
    /// The interim admin credential: a socket param `token` equal to it is not a socket token.
    admin_token: String,
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
            admin_token: config.access.admin_token.clone(),
            dev_auto_login: config.auth.dev_auto_login,
        }
    }

    fn session_seconds(&self) -> i64 {
        i64::from(self.session_days) * 86_400
    }
}

/// A valid session: who, and which row (socket tokens are bound to it).
#[derive(Debug, Clone)]
struct SessionHit {
    session_id: i64,
    identity: Identity,
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
        let socket_conn = open_socket_conn(config)?;
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
            socket_conn: Mutex::new(socket_conn),
            vouched: session_watch::Vouched::default(),
            on_revoke: std::sync::OnceLock::new(),
        }))
    }

    /// Have `f` told the id of every session that ends — a logout, or an end found by
    /// [`Auth::watch_sessions`] or [`Auth::recheck`] — once it is gone from the database (to
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

    /// Apply a reloaded configuration (cookie attributes, rate limits, token lifetime, the
    /// admin token). `auth.dev_auto_login` keeps its value from the start.
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

    async fn session(&self, headers: &HeaderMap) -> Option<SessionHit> {
        let hash = token_hash(session_cookie(headers)?);
        let now = sql_time(self.clock.now());
        let found = self
            .store
            .readers
            .read(move |conn| lookup_session(conn, &hash, &now))
            .await;
        found.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot check a session; treating the request as anonymous");
            None
        })
    }

    /// Answer `/api/session` (POST login, GET current, DELETE logout) and
    /// `/api/session/token`; `Err(req)` hands back any other request untouched (including
    /// `OPTIONS`, which the CORS layer answers).
    /// `cors` judges, as for every API write, whether a login or logout comes from a page
    /// that may write (a foreign page could otherwise log a visitor into its own account, or
    /// the admin out).
    pub async fn route(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
        cors: &Cors,
    ) -> Result<Response<Body>, Request<Incoming>> {
        let path = req.uri().path();
        if !matches!(path, "/api/session" | "/api/session/token") || req.method() == Method::OPTIONS
        {
            return Err(req);
        }
        let token_route = path == "/api/session/token";
        let writes = matches!(*req.method(), Method::POST | Method::DELETE) && !token_route;
        let mut response = match (req.method(), token_route) {
            _ if writes && !cors.may_write(req.headers()) => {
                let (method, path) = (req.method().clone(), path.to_owned());
                ApiError::CrossSite.into_response(&method, &path)
            }
            (&Method::POST, false) => self.login(req, peer).await,
            (&Method::GET, false) => self.current(req.headers()).await,
            (&Method::DELETE, false) => self.logout(req.headers()).await,
            (&Method::GET, true) => self.socket_token(req.headers()).await,
            (_, false) => method_not_allowed("GET, POST, DELETE"),
            (_, true) => method_not_allowed("GET"),
        };
        // Answers here carry who someone is; no cache may keep them.
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Ok(response)
    }

    async fn login(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        let credentials = match read_login(req).await {
            Ok(c) => c,
            Err(response) => return response,
        };
        let settings = self.settings();
        let keys = [
            Key::Addr(peer.ip()),
            Key::Email(credentials.email.trim().to_lowercase()),
        ];
        // Charged before the password check: parallel attempts see each other's charge, so
        // no more than the limit of them ever reach a hash.
        if let Err(wait) = self
            .limiter
            .charge(&keys, settings.attempts_per_minute, Instant::now())
        {
            return too_many_attempts(wait);
        }
        let refund = || keys.iter().for_each(|key| self.limiter.refund(key));
        let email = credentials.email.clone();
        let found = self
            .store
            .readers
            .read(move |conn| accounts::find_for_login(conn, &email))
            .await;
        let found = match found {
            Ok(found) => found,
            Err(e) => {
                refund();
                return store_failure("login", &e);
            }
        };
        let (user, hash) = match found {
            Some((user, hash)) => (Some(user), hash),
            None => (None, accounts::decoy_hash().to_owned()),
        };
        // The Argon2 work happens whether or not the email exists, so the answer's timing
        // does not tell which emails have accounts.
        let password = credentials.password;
        // An account imported with its bcrypt hash gets Argon2id at its first login.
        let rehash = accounts::is_bcrypt(&hash).then(|| password.clone());
        let checked = self
            .password_checks
            .run(move || accounts::verify_password(&hash, &password))
            .await;
        let Ok(matches) = checked else {
            // Never checked: the attempt does not count against anyone.
            refund();
            return too_many_checks();
        };
        let Some(user) = user.filter(|_| matches) else {
            return error(StatusCode::UNAUTHORIZED, "invalid email or password");
        };
        self.limiter.refund(&keys[0]);
        self.limiter.clear(&keys[1]);
        if let Some(password) = rehash {
            match accounts::set_password(&self.store.writer, &user.email, &password).await {
                Ok(_) => {
                    tracing::info!(user_id = user.id, "bcrypt password re-hashed with Argon2id")
                }
                Err(e) => tracing::warn!(user_id = user.id, error = %e, "kept the bcrypt hash"),
            }
        }
        self.start_session(&user, &settings).await
    }

    /// A new session for `user`: the row, and the answer that sets its cookie.
    async fn start_session(&self, user: &User, settings: &Settings) -> Response<Body> {
        let token = token::random_token();
        let hash = token_hash(&token);
        let now = self.clock.now();
        let expires = now
            .checked_add(SignedDuration::from_secs(settings.session_seconds()))
            .unwrap_or(Timestamp::MAX);
        let (now, expires) = (sql_time(now), sql_time(expires));
        let user_id = user.id;
        let created = self
            .store
            .writer
            .write(move |tx| -> Result<(), StoreError> {
                // Expired rows are of no use to anyone; logins are rare enough to sweep here.
                tx.execute("DELETE FROM session WHERE expires_at <= ?1", [&now])?;
                tx.execute(
                    "INSERT INTO session (token_hash, user_id, expires_at) VALUES (?1, ?2, ?3)",
                    rusqlite::params![hash, user_id, expires],
                )?;
                Ok(())
            })
            .await;
        if let Err(e) = created {
            return store_failure("creating a session", &e);
        }
        tracing::info!(user_id, "logged in");
        let identity = Identity {
            user_id: user.id,
            name: user.name.clone(),
            email: user.email.clone(),
            is_admin: user.is_admin,
        };
        let max_age = u64::try_from(settings.session_seconds()).unwrap_or(0);
        let cookie = token::set_cookie(&token, max_age, settings.cookie);
        with_cookie(json_response(StatusCode::OK, &data(&identity)), &cookie)
    }

    async fn current(&self, headers: &HeaderMap) -> Response<Body> {
        if let Some(hit) = self.session(headers).await {
            return json_response(StatusCode::OK, &data(&hit.identity));
        }
        let settings = self.settings();
        if !settings.dev_auto_login {
            return empty(StatusCode::NO_CONTENT);
        }
        let admin = self.store.readers.read(accounts::first_admin).await;
        match admin {
            Ok(Some(admin)) => {
                tracing::warn!(
                    user_id = admin.id,
                    "auth.dev_auto_login: logging a caller in as the first admin"
                );
                self.start_session(&admin, &settings).await
            }
            Ok(None) => empty(StatusCode::NO_CONTENT),
            Err(e) => store_failure("dev auto login", &e),
        }
    }

    async fn logout(&self, headers: &HeaderMap) -> Response<Body> {
        if let Some(token) = session_cookie(headers) {
            let hash = token_hash(token);
            let deleted = self
                .store
                .writer
                .write(move |tx| -> Result<Option<i64>, StoreError> {
                    let sql = "DELETE FROM session WHERE token_hash = ?1 RETURNING id";
                    Ok(tx.query_row(sql, [hash], |r| r.get(0)).optional()?)
                })
                .await;
            match deleted {
                Ok(Some(session_id)) => self.revoked(session_id),
                Ok(None) => {}
                Err(e) => return store_failure("logout", &e),
            }
        }
        with_cookie(
            empty(StatusCode::NO_CONTENT),
            &token::clear_cookie(self.settings().cookie),
        )
    }

    async fn socket_token(&self, headers: &HeaderMap) -> Response<Body> {
        let Some(hit) = self.session(headers).await else {
            return error(StatusCode::UNAUTHORIZED, "not logged in");
        };
        let seconds = i64::from(self.settings().socket_token_seconds);
        let expires = self.clock.now().as_second().saturating_add(seconds);
        let claim = SocketClaim {
            user_id: hit.identity.user_id,
            session_id: hit.session_id,
            expires,
        };
        let expires_at = Timestamp::from_second(expires)
            .map(|t| t.to_string())
            .unwrap_or_default();
        json_response(
            StatusCode::OK,
            &json!({"token": token::sign(&self.secret, claim), "expires_at": expires_at}),
        )
    }
}

/// The session whose token hashes to `hash`, if it has not expired by `now` (both SQL text).
fn lookup_session(
    conn: &rusqlite::Connection,
    hash: &str,
    now: &str,
) -> Result<Option<SessionHit>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT s.id, u.id, u.name, u.email, u.is_admin FROM session s \
         JOIN user u ON u.id = s.user_id WHERE s.token_hash = ?1 AND s.expires_at > ?2",
    )?;
    Ok(stmt
        .query_row([hash, now], |row| {
            Ok(SessionHit {
                session_id: row.get(0)?,
                identity: Identity {
                    user_id: row.get(1)?,
                    name: row.get(2)?,
                    email: row.get(3)?,
                    is_admin: row.get(4)?,
                },
            })
        })
        .optional()?)
}

async fn load_or_create_secret(store: &Store) -> Result<Vec<u8>, StoreError> {
    let fresh = token::hex(&token::random_bytes());
    let stored = store
        .writer
        .write(move |tx| -> Result<String, StoreError> {
            tx.execute(
                "INSERT OR IGNORE INTO kaffediem_meta (key, value) VALUES (?1, ?2)",
                [SECRET_KEY, &fresh],
            )?;
            Ok(tx.query_row(
                "SELECT CAST(value AS TEXT) FROM kaffediem_meta WHERE key = ?1",
                [SECRET_KEY],
                |r| r.get(0),
            )?)
        })
        .await?;
    match token::unhex(&stored) {
        Some(secret) if secret.len() >= 32 => Ok(secret),
        _ => Err(StoreError::Unavailable(format!(
            "kaffediem_meta.{SECRET_KEY} is not 64 or more hex digits; delete that row to have a new secret made"
        ))),
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

/// A reader connection like the pool's (the store's settings, `query_only`).
fn open_socket_conn(config: &Config) -> Result<rusqlite::Connection, StoreError> {
    let conn = crate::store::schema::open_connection(&config.database.path)?;
    conn.pragma_update(None, "query_only", true)?;
    Ok(conn)
}

#[derive(Deserialize)]
struct Credentials {
    email: String,
    password: String,
}

async fn read_login(req: Request<Incoming>) -> Result<Credentials, Response<Body>> {
    let bad =
        |why: &str| json_response(StatusCode::BAD_REQUEST, &json!({"errors": {"body": [why]}}));
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    if !content_type
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("application/json")
    {
        return Err(bad("expected a JSON body (Content-Type: application/json)"));
    }
    let body = match Limited::new(req.into_body(), MAX_LOGIN_BODY)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(error(StatusCode::PAYLOAD_TOO_LARGE, "body too large"))
        }
        Err(_) => return Err(bad("could not read the body")),
    };
    serde_json::from_slice(&body)
        .map_err(|e| bad(&format!("expected {{\"email\", \"password\"}}: {e}")))
}

fn data(identity: &Identity) -> serde_json::Value {
    json!({"data": {"id": identity.user_id, "name": identity.name, "is_admin": identity.is_admin}})
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

fn with_cookie(mut response: Response<Body>, cookie: &str) -> Response<Body> {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

fn too_many_attempts(wait: Duration) -> Response<Body> {
    let mut response = error(
        StatusCode::TOO_MANY_REQUESTS,
        "too many failed logins; try again later",
    );
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
    response
}

/// Every password-check slot is taken: come back in a second (no hash was computed).
fn too_many_checks() -> Response<Body> {
    let mut response = error(
        StatusCode::TOO_MANY_REQUESTS,
        "too many logins at once; try again in a moment",
    );
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(1u32));
    response
}

fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut response = error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

fn store_failure(context: &str, e: &StoreError) -> Response<Body> {
    match e {
        StoreError::Unavailable(_) | StoreError::Closed => {
            tracing::warn!(error = %e, "{context}: database unavailable");
            error(StatusCode::SERVICE_UNAVAILABLE, "database unavailable")
        }
        _ => {
            tracing::error!(error = %e, "{context} failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
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

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let response = too_many_attempts(Duration::from_millis(1500));
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
    }
}
