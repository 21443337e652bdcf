//! Logging in and out, and the session cookie (SPEC 6): `POST /api/session` checks a password
//! and starts a session, `GET /api/session` says who the cookie belongs to (or, with
//! `auth.dev_auto_login`, logs the caller in as the first admin), `DELETE /api/session` ends
//! it. Login attempts are charged to the [`super::limiter`] before the password check, and the
//! check runs in [`super::password_checks`].

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Limited};
use hyper::header::{self, HeaderValue};
use hyper::{HeaderMap, Request, Response, StatusCode};
use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;
use serde_json::json;

use crate::accounts::{self, User};
use crate::http::api::ApiError;
use crate::http::{empty, json_response, Body, Incoming};
use crate::store::{accounts as users, sessions};

use super::limiter::Key;
use super::token::{self, session_cookie, token_hash};
use super::{Auth, Identity, Settings};

/// Largest login body read; `{email, password}` needs a few hundred bytes.
const MAX_LOGIN_BODY: usize = 16 * 1024;

impl Auth {
    /// `POST /api/session`: check `{email, password}` and start a session (its cookie).
    pub(crate) async fn login(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
    ) -> Result<Response<Body>, ApiError> {
        let credentials = read_login(req).await?;
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
            return Err(ApiError::TooManyRequests {
                why: "too many failed logins; try again later",
                retry_after: retry_after(wait),
            });
        }
        let refund = || keys.iter().for_each(|key| self.limiter.refund(key));
        let found = users::find_for_login(&self.store.readers, credentials.email.clone()).await;
        let found = found.inspect_err(|_| refund())?;
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
            return Err(ApiError::TooManyRequests {
                why: "too many logins at once; try again in a moment",
                retry_after: 1,
            });
        };
        let Some(user) = user.filter(|_| matches) else {
            return Err(ApiError::BadCredentials);
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
    async fn start_session(
        &self,
        user: &User,
        settings: &Settings,
    ) -> Result<Response<Body>, ApiError> {
        let token = crate::secret::random_token();
        let now = self.clock.now();
        let expires = now
            .checked_add(SignedDuration::from_secs(settings.session_seconds()))
            .unwrap_or(Timestamp::MAX);
        sessions::start(
            &self.store.writer,
            token_hash(&token),
            user.id,
            now,
            expires,
        )
        .await?;
        tracing::info!(user_id = user.id, "logged in");
        let identity = Identity {
            user_id: user.id,
            name: user.name.clone(),
            email: user.email.clone(),
            is_admin: user.is_admin,
        };
        let max_age = u64::try_from(settings.session_seconds()).unwrap_or(0);
        let cookie = token::set_cookie(&token, max_age, settings.cookie);
        Ok(with_cookie(
            json_response(StatusCode::OK, &data(&identity)),
            &cookie,
        ))
    }

    /// `GET /api/session`: who the session cookie belongs to; 204 for nobody.
    pub(crate) async fn current(&self, headers: &HeaderMap) -> Result<Response<Body>, ApiError> {
        if let Some(session) = self.session(headers).await {
            return Ok(json_response(StatusCode::OK, &data(&session.identity)));
        }
        let settings = self.settings();
        if !settings.dev_auto_login {
            return Ok(empty(StatusCode::NO_CONTENT));
        }
        match users::first_admin(&self.store.readers).await? {
            Some(admin) => {
                tracing::warn!(
                    user_id = admin.id,
                    "auth.dev_auto_login: logging a caller in as the first admin"
                );
                self.start_session(&admin, &settings).await
            }
            None => Ok(empty(StatusCode::NO_CONTENT)),
        }
    }

    /// `DELETE /api/session`: end the cookie's session (its sockets are closed) and forget
    /// the cookie.
    pub(crate) async fn logout(&self, headers: &HeaderMap) -> Result<Response<Body>, ApiError> {
        if let Some(token) = session_cookie(headers) {
            if let Some(session_id) = sessions::end(&self.store.writer, token_hash(token)).await? {
                self.revoked(session_id);
            }
        }
        Ok(with_cookie(
            empty(StatusCode::NO_CONTENT),
            &token::clear_cookie(self.settings().cookie),
        ))
    }
}

#[derive(Deserialize)]
struct Credentials {
    email: String,
    password: String,
}

async fn read_login(req: Request<Incoming>) -> Result<Credentials, ApiError> {
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
        return Err(ApiError::BadRequest(
            "expected a JSON body (Content-Type: application/json)".into(),
        ));
    }
    let body = match Limited::new(req.into_body(), MAX_LOGIN_BODY)
        .collect()
        .await
    {
        Ok(body) => body.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Err(ApiError::TooLarge(MAX_LOGIN_BODY))
        }
        Err(_) => return Err(ApiError::BadRequest("could not read the body".into())),
    };
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("expected {{\"email\", \"password\"}}: {e}")))
}

fn data(identity: &Identity) -> serde_json::Value {
    json!({"data": {"id": identity.user_id, "name": identity.name, "is_admin": identity.is_admin}})
}

fn with_cookie(mut response: Response<Body>, cookie: &str) -> Response<Body> {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// Whole seconds to wait, rounded up, at least one.
fn retry_after(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after(Duration::ZERO), 1);
    }
}
