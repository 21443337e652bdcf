//! Item images (SPEC 5.4): what an accepted image is — recognised by its bytes (PNG, JPEG,
//! WebP, AVIF), named after its content so a URL never changes meaning and may be cached for
//! good — and reading one back. The bytes are written with the item, in `write`.

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension};
use sha2::{Digest, Sha256};

use super::write::Image;
use super::StoreError;

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

/// An image as served at `/api/files/item/{id}/{filename}`.
#[derive(Debug, Clone)]
pub struct StoredImage {
    /// The `Content-Type` it was sniffed as on upload.
    pub content_type: String,
    /// Hex SHA-256 prefix of the bytes: the HTTP `ETag`.
    pub etag: String,
    pub bytes: Vec<u8>,
}

/// The image of item `item_id` stored under `filename`, if there is one.
pub fn find(
    conn: &Connection,
    item_id: i64,
    filename: &str,
) -> Result<Option<StoredImage>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT content_type, etag, bytes FROM image WHERE item_id = ?1 AND filename = ?2",
            rusqlite::params![item_id, filename],
            |r| {
                Ok(StoredImage {
                    content_type: r.get(0)?,
                    etag: r.get(1)?,
                    bytes: r.get(2)?,
                })
            },
        )
        .optional()?)
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
}
