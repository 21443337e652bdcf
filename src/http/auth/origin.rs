//! Which pages may log in or out: a login or logout is a write, judged by the one origin rule
//! of every API write ([`Cors::may_write`]) — a foreign page could otherwise log a visitor into
//! its own account, or the admin out. And no cache may keep an answer that says who someone
//! is.

use hyper::header::{self, HeaderValue};
use hyper::{HeaderMap, Response};

use crate::http::api::ApiError;
use crate::http::cors::Cors;
use crate::http::Body;

/// `Err(CrossSite)` unless the request comes from a page that may write.
pub(crate) fn from_writing_page(cors: &Cors, headers: &HeaderMap) -> Result<(), ApiError> {
    match cors.may_write(headers) {
        true => Ok(()),
        false => Err(ApiError::CrossSite),
    }
}

/// `response` marked `Cache-Control: no-store`: every answer under `/api/session` carries who
/// someone is (or was).
pub(crate) fn no_store(mut response: Response<Body>) -> Response<Body> {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
