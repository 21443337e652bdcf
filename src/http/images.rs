//! Item images (SPEC 5.4): uploads are recognised by their bytes (PNG, JPEG, WebP, AVIF) and
//! stored inside the database; `GET /api/files/item/{id}/{filename}` serves them with an
//! `ETag`. File names are derived from the content, so a URL never changes meaning and may be
//! cached for good.

use bytes::Bytes;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};
use sha2::{Digest, Sha256};

use super::api::ApiError;
use super::{empty, App, Body};
use crate::store;
use crate::store::images::ImageFile;
use crate::store::write::Image;

/// Hex digits of the SHA-256 kept as the ETag (128 bits: collisions are not a concern).
const ETAG_HEX: usize = 32;

/// The content type and file extension of an image format we accept, from its magic bytes.
pub fn sniff(bytes: &[u8]) -> Option<(&'static str, &'static str)> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Some(("image/png", "png"));
    }
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Some(("image/jpeg", "jpg"));
    }
    if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        return Some(("image/webp", "webp"));
    }
    if is_avif(bytes) {
        return Some(("image/avif", "avif"));
    }
    None
}

/// An ISO-BMFF `ftyp` box whose major or compatible brands include `avif` or `avis`.
fn is_avif(bytes: &[u8]) -> bool {
    if bytes.len() < 16 || &bytes[4..8] != b"ftyp" {
        return false;
    }
    let size = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    let end = size.clamp(16, bytes.len());
    let brands = std::iter::once(&bytes[8..12]).chain(bytes[16..end].chunks_exact(4));
    brands
        .into_iter()
        .any(|brand| brand == b"avif" || brand == b"avis")
}

/// Check uploaded bytes and name them; `None` when they are not an accepted image.
pub fn check(bytes: Bytes) -> Option<Image> {
    let (content_type, ext) = sniff(&bytes)?;
    let digest = Sha256::digest(&bytes);
    let mut etag = hex::encode(digest);
    etag.truncate(ETAG_HEX);
    Some(Image {
        filename: format!("{etag}.{ext}"),
        content_type,
        bytes: bytes.to_vec(),
        etag,
    })
}

/// `GET /api/files/item/{id}/{filename}`.
pub async fn serve(
    app: &App,
    headers: &HeaderMap,
    item_id: i64,
    filename: String,
) -> Result<Response<Body>, ApiError> {
    let found = store::images::find(&app.store.readers, item_id, filename).await?;
    let Some(ImageFile {
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
    fn formats_are_told_by_their_bytes() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n....").unwrap().0, "image/png");
        assert_eq!(
            sniff(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0]).unwrap().0,
            "image/jpeg"
        );
        assert_eq!(sniff(b"RIFF\x10\0\0\0WEBPVP8 ").unwrap().0, "image/webp");
        let avif = b"\0\0\0\x1cftypmif1\0\0\0\0mif1avifmiaf";
        assert_eq!(sniff(avif).unwrap().0, "image/avif");
        assert!(sniff(b"GIF89a......").is_none());
        assert!(sniff(b"<svg xmlns=").is_none());
        assert!(sniff(b"").is_none());
    }

    #[test]
    fn stored_names_follow_the_content() {
        let a = check(Bytes::from_static(b"\x89PNG\r\n\x1a\nA")).unwrap();
        let b = check(Bytes::from_static(b"\x89PNG\r\n\x1a\nB")).unwrap();
        assert_ne!(a.filename, b.filename);
        assert!(a.filename.ends_with(".png"));
        assert_eq!(a.etag.len(), ETAG_HEX);
    }

    #[test]
    fn if_none_match_accepts_lists_and_weak_tags() {
        assert!(etag_matches("\"x\", W/\"abc\"", "\"abc\""));
        assert!(etag_matches("*", "\"abc\""));
        assert!(!etag_matches("\"abd\"", "\"abc\""));
    }
}
