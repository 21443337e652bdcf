//! Reading an item's stored image (the bytes are written with the item, in `write`).

use rusqlite::{Connection, OptionalExtension};

use super::StoreError;

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
