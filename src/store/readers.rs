//! The reader connection pool. CONTRACT STUB: the store helper replaces the bodies.

use super::StoreError;

/// A pool of read-only connections. Cheap to clone.
#[derive(Clone)]
pub struct Readers {}

impl Readers {
    /// Run `f` on a reader connection off the async threads.
    pub async fn read<T, E, F>(&self, _f: F) -> Result<T, E>
    where
        F: FnOnce(&rusqlite::Connection) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        todo!()
    }
}
