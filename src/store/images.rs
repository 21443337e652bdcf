//! Reading an item's uploaded image back (they are written with the item, in
//! [`super::write`]): one indexed read on the quick lane per request.

use rusqlite::OptionalExtension;

use super::{Readers, StoreError};

/// A stored image file, as `GET /api/files/item/{id}/{filename}` serves it.
#[derive(Debug, Clone)]
pub struct ImageFile {
    /// As sniffed at upload, sent as `Content-Type`.
    pub content_type: String,
    /// The content hash the file is named by, sent as its `ETag`.
    pub etag: String,
    /// The file itself (at most `limits.max_upload_bytes`).
    pub bytes: Vec<u8>,
}

/// The image `filename` of item `item_id`, if there is one.
pub async fn find(
    readers: &Readers,
    item_id: i64,
    filename: String,
) -> Result<Option<ImageFile>, StoreError> {
    readers
        .read(move |conn| -> Result<_, StoreError> {
            Ok(conn
                .query_row(
                    "SELECT content_type, etag, bytes FROM image WHERE item_id = ?1 AND filename = ?2",
                    rusqlite::params![item_id, filename],
                    |r| {
                        Ok(ImageFile {
                            content_type: r.get(0)?,
                            etag: r.get(1)?,
                            bytes: r.get(2)?,
                        })
                    },
                )
                .optional()?)
        })
        .await
}
