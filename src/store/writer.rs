//! The single writer thread. CONTRACT STUB: the store helper replaces the bodies.

use super::StoreError;

/// Handle to the writer thread. Cheap to clone.
#[derive(Clone)]
pub struct Writer {}

impl Writer {
    /// Run `f` inside one write transaction on the writer thread. `Ok` commits: the commit
    /// gets the next `seq` and its changes are published on the change feed. `Err` rolls back
    /// and nothing is published.
    pub async fn write<T, E, F>(&self, _f: F) -> Result<T, E>
    where
        F: FnOnce(&rusqlite::Transaction<'_>) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        todo!()
    }
}
