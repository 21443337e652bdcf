//! The demo café. CONTRACT STUB: the store helper replaces it.

use super::{StoreError, Writer};

/// Fill an empty database with a realistic café menu, messages and an open status.
/// Does nothing (returns `false`) when the menu already has categories.
pub async fn load(_writer: &Writer) -> Result<bool, StoreError> {
    todo!()
}
