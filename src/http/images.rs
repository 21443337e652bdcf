//! Item images (SPEC 5.4) over HTTP: `GET /api/files/item/{id}/{filename}` serves them with an
//! `ETag`. What an accepted image is (told by its bytes, named by its content) is the store's
//! (`store::images`); this re-exports its check for the upload path.

use bytes::Bytes;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};

use super::api::ApiError;
use super::{empty, App, Body};
pub use crate::store::images::check;
use crate::store::images::{self, StoredImage};

/// `GET /api/files/item/{id}/{filename}`.
pub async fn serve(
    app: &App,
    headers: &HeaderMap,
    item_id: i64,
    filename: String,
) -> Result<Response<Body>, ApiError> {
    let found = app
        .store
        .readers
        .read(move |conn| images::find(conn, item_id, &filename))
        .await?;
    let Some(StoredImage {
        content_type,
        etag,
        bytes,
    }) = found
    else {
        return Err(ApiError::NotFound("image not found"));
    };
    let tag = format!("\"{etag}\"");
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|list| etag_matches(list, &tag));
    let mut response = if fresh {
        empty(StatusCode::NOT_MODIFIED)
    } else {
        let mut response = Response::new(Body::new(Bytes::from(bytes)));
        if let Ok(ct) = HeaderValue::from_str(&content_type) {
            response.headers_mut().insert(header::CONTENT_TYPE, ct);
        }
        response
    };
    let h = response.headers_mut();
    if let Ok(tag) = HeaderValue::from_str(&tag) {
        h.insert(header::ETAG, tag);
    }
    // The name is derived from the bytes, so the same URL always means the same image.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(response)
}

/// `If-None-Match`: `*`, or a list of (possibly weak) tags one of which is ours.
fn etag_matches(list: &str, tag: &str) -> bool {
    list.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == tag
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_accepts_lists_and_weak_tags() {
        assert!(etag_matches("\"x\", W/\"abc\"", "\"abc\""));
        assert!(etag_matches("*", "\"abc\""));
        assert!(!etag_matches("\"abd\"", "\"abc\""));
    }
}
