//! The menu tree and its indexes (SPEC 3.2). CONTRACT STUB: the store helper replaces it.

use super::{RecordCtx, StoreError};

/// Build `{"tree": [...], "indexes": {...}}` from the current menu tables.
pub fn build(
    _conn: &rusqlite::Connection,
    _ctx: &RecordCtx,
) -> Result<serde_json::Value, StoreError> {
    todo!()
}
