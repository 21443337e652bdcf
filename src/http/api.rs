//! The JSON API under `/api/` (SPEC 5): collections, the menu, item image files. Errors are
//! one enum, [`ApiError`], turned into the status codes and JSON shapes of SPEC 5.1 in one
//! place; a 500 is a bug and is logged with the request it answered.
//!
//! Permissions (SPEC 6): reads are public when `access.public_read`; creating an order needs a
//! logged-in user; every other write needs an admin. Besides a session, scripts may act as an
//! admin with `Authorization: Bearer <access.admin_token>` (when that setting is not empty).

pub mod body;
pub mod collections;

use crate::http::Incoming;
use hyper::header::{self, HeaderMap};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Map, Value};

use super::{error, json_response, method_not_allowed, App, Body};
use crate::store::write::WriteError;
use crate::store::{self, menu, StoreError};

/// Why a request was not answered with what it asked for.
#[derive(Debug)]
pub enum ApiError {
    /// Malformed JSON, wrong content type, broken multipart: 400 `{"errors":{"body":[..]}}`.
    BadRequest(String),
    /// Not logged in: 401.
    Unauthorized,
    /// Logged in without the right: 403.
    Forbidden,
    /// A login with a wrong email or password: 401.
    BadCredentials,
    /// Too many at once or too often (logins): 429 with `Retry-After` in seconds.
    TooManyRequests { why: &'static str, retry_after: u64 },
    /// A write from a page on a foreign origin (cross-site request forgery): 403.
    CrossSite,
    /// Unknown collection, record, file or route: 404.
    NotFound(&'static str),
    /// The route exists but not with this method: 405 with `Allow`.
    MethodNotAllowed(&'static str),
    /// Body over the limit (in bytes): 413.
    TooLarge(usize),
    /// The body did not arrive in time: 408.
    TimedOut,
    /// Validation: 422 `{"errors": {...}}`.
    Invalid(Map<String, Value>),
    /// The database cannot take writes (read-only, full, busy, shutting down): 503.
    Unavailable(String),
    /// Anything else: 500, logged.
    Internal(String),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(why) => ApiError::Unavailable(why),
            StoreError::Closed => ApiError::Unavailable("the daemon is shutting down".into()),
            StoreError::Sqlite(e) if store::cannot_write(&e) => {
                ApiError::Unavailable(e.to_string())
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<WriteError> for ApiError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Invalid(errors) => ApiError::Invalid(errors),
            WriteError::NotFound => ApiError::NotFound("record not found"),
            WriteError::Store(e) => e.into(),
        }
    }
}

impl ApiError {
    pub fn into_response(self, method: &Method, path: &str) -> Response<Body> {
        match self {
            ApiError::BadRequest(why) => {
                json_response(StatusCode::BAD_REQUEST, &json!({"errors": {"body": [why]}}))
            }
            ApiError::Unauthorized => error(StatusCode::UNAUTHORIZED, "not logged in"),
            ApiError::Forbidden => error(StatusCode::FORBIDDEN, "admins only"),
            ApiError::BadCredentials => {
                error(StatusCode::UNAUTHORIZED, "invalid email or password")
            }
            ApiError::TooManyRequests { why, retry_after } => {
                let mut response = error(StatusCode::TOO_MANY_REQUESTS, why);
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from(retry_after));
                response
            }
            ApiError::CrossSite => error(
                StatusCode::FORBIDDEN,
                "writes from this origin are refused; list the frontend in http.allowed_origins",
            ),
            ApiError::NotFound(what) => error(StatusCode::NOT_FOUND, what),
            ApiError::MethodNotAllowed(allow) => method_not_allowed(allow),
            ApiError::TooLarge(limit) => error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("request body is larger than {limit} bytes"),
            ),
            ApiError::TimedOut => error(
                StatusCode::REQUEST_TIMEOUT,
                "the request body did not arrive in time",
            ),
            ApiError::Invalid(errors) => json_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                &json!({ "errors": errors }),
            ),
            ApiError::Unavailable(why) => {
                tracing::warn!(%method, path, reason = %why, "database cannot take writes");
                error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    &format!(
                        "the database cannot take writes right now ({why}); try again shortly"
                    ),
                )
            }
            ApiError::Internal(why) => {
                tracing::error!(%method, path, error = %why, "internal error answering a request");
                error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
            }
        }
    }
}

/// Who sent a request, as far as permissions go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    Anonymous,
    /// A user with a session.
    User {
        id: i64,
        admin: bool,
    },
    /// A script holding `access.admin_token`: an admin who is no particular user.
    AdminToken,
}

impl Caller {
    pub fn is_admin(self) -> bool {
        matches!(self, Caller::AdminToken | Caller::User { admin: true, .. })
    }

    /// Reads: anyone when `public_read`, else any logged-in caller.
    pub fn may_read(self, public_read: bool) -> Result<(), ApiError> {
        if public_read || self != Caller::Anonymous {
            Ok(())
        } else {
            Err(ApiError::Unauthorized)
        }
    }

    /// Catalog, message, status writes and order changes.
    pub fn must_be_admin(self) -> Result<(), ApiError> {
        match self {
            Caller::Anonymous => Err(ApiError::Unauthorized),
            c if c.is_admin() => Ok(()),
            _ => Err(ApiError::Forbidden),
        }
    }
}

/// Identify the caller: a session (via [`super::auth::Auth`]), or the admin token.
pub async fn caller(app: &App, headers: &HeaderMap) -> Caller {
    if let Some(identity) = app.auth.identify(headers).await {
        return Caller::User {
            id: identity.user_id,
            admin: identity.is_admin,
        };
    }
    match app.auth.admin_token().in_bearer(headers) {
        true => Caller::AdminToken,
        false => Caller::Anonymous,
    }
}

/// `GET /api/menu`: the whole tree.
pub async fn menu(app: &App, req: &Request<Incoming>) -> Result<Response<Body>, ApiError> {
    caller(app, req.headers())
        .await
        .may_read(app.settings().public_read)?;
    let ctx = app.record_ctx(req.headers());
    // The whole tree is a bulk read: on the snapshot lane, never in front of logins and
    // orders however many clients ask for it.
    let tree = app
        .store
        .snapshots
        .read(move |conn| menu::build(conn, &ctx))
        .await?;
    Ok(json_response(StatusCode::OK, &tree))
}

/// `GET /api/files/item/{id}/{filename}`: an item's image (`filename` as it came in the path).
pub async fn item_image(
    app: &App,
    req: &Request<Incoming>,
    id: i64,
    filename: &str,
) -> Result<Response<Body>, ApiError> {
    caller(app, req.headers())
        .await
        .may_read(app.settings().public_read)?;
    let filename = path_segment(filename);
    super::images::serve(app, req.headers(), id, filename).await
}

/// The query string's `key=value` pairs (`application/x-www-form-urlencoded`: `%XX` and `+`
/// decoded, a broken escape kept as it came; a repeated key: the last wins). The socket
/// transports read theirs the same way (`phoenix::transport::parse_query`).
pub fn query_pairs(query: Option<&str>) -> Map<String, Value> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .map(|(key, value)| (key.into_owned(), Value::String(value.into_owned())))
        .collect()
}

/// A path segment with its `%XX` escapes decoded (`+` is a plus in a path).
pub fn path_segment(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_are_decoded() {
        let q = query_pairs(Some("from_date=2026-03-01&customer_id=%37&state=a+b&x"));
        assert_eq!(q["from_date"], "2026-03-01");
        assert_eq!(q["customer_id"], "7");
        assert_eq!(q["state"], "a b");
        assert_eq!(q["x"], "");
        assert_eq!(query_pairs(Some("v=bad%zz%"))["v"], "bad%zz%");
        // `from_str_radix` takes a sign: the decoder this replaced read `%+9` as a tab.
        assert_eq!(query_pairs(Some("perPage=2%+9"))["perPage"], "2% 9");
        assert_eq!(path_segment("a+b%20c.png"), "a+b c.png");
    }

    #[test]
    fn a_database_that_cannot_take_writes_is_a_503_not_a_500() {
        let status = |e: StoreError| {
            ApiError::from(e)
                .into_response(&Method::POST, "/api/x")
                .status()
        };
        assert_eq!(status(StoreError::Unavailable("disk full".into())), 503);
        assert_eq!(status(StoreError::Closed), 503);
        let read_only = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_READONLY),
            None,
        );
        assert_eq!(status(StoreError::Sqlite(read_only)), 503);
        // Not ours to write (a changed owner): the Pi's state, not a bug.
        let denied = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_PERM),
            None,
        );
        assert_eq!(status(StoreError::Sqlite(denied)), 503);
        assert_eq!(
            status(StoreError::Sqlite(rusqlite::Error::InvalidQuery)),
            500
        );
    }

    #[test]
    fn only_admins_write_and_anonymous_is_told_to_log_in() {
        assert!(matches!(
            Caller::Anonymous.must_be_admin(),
            Err(ApiError::Unauthorized)
        ));
        assert!(matches!(
            Caller::User {
                id: 1,
                admin: false
            }
            .must_be_admin(),
            Err(ApiError::Forbidden)
        ));
        assert!(Caller::AdminToken.must_be_admin().is_ok());
        assert!(Caller::Anonymous.may_read(true).is_ok());
        assert!(Caller::Anonymous.may_read(false).is_err());
    }
}
