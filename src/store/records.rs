//! Collections, rows and their JSON shapes (SPEC 4). CONTRACT STUB: the store helper replaces
//! the bodies.

use super::StoreError;

/// The seven collections, each one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Collection {
    Category,
    Item,
    CustomizationKey,
    CustomizationValue,
    Message,
    Status,
    Order,
}

impl Collection {
    pub const ALL: [Collection; 7] = [
        Collection::Category,
        Collection::Item,
        Collection::CustomizationKey,
        Collection::CustomizationValue,
        Collection::Message,
        Collection::Status,
        Collection::Order,
    ];

    /// The name used in topics and URLs (`customization_key`), also the table name.
    pub fn name(self) -> &'static str {
        match self {
            Collection::Category => "category",
            Collection::Item => "item",
            Collection::CustomizationKey => "customization_key",
            Collection::CustomizationValue => "customization_value",
            Collection::Message => "message",
            Collection::Status => "status",
            Collection::Order => "order",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Collection::ALL.into_iter().find(|c| c.name() == name)
    }

    /// Whether a change to this collection changes the menu tree.
    pub fn is_menu(self) -> bool {
        matches!(
            self,
            Collection::Category
                | Collection::Item
                | Collection::CustomizationKey
                | Collection::CustomizationValue
        )
    }
}

/// How records are rendered: item `image` is an absolute URL built from this base.
#[derive(Debug, Clone, Default)]
pub struct RecordCtx {
    /// e.g. `http://kaffediem.local:4000` (no trailing slash).
    pub public_url: String,
}

/// Which orders to list (SPEC 3.1 options, SPEC 5 query parameters).
#[derive(Debug, Clone, Default)]
pub struct OrderQuery {
    /// Orders inserted at or after this instant.
    pub since: Option<jiff::Timestamp>,
    pub customer_id: Option<i64>,
    pub state: Option<String>,
}

/// Every record of `collection`, in snapshot order (SPEC 3.1).
pub fn list(
    _conn: &rusqlite::Connection,
    _collection: Collection,
    _ctx: &RecordCtx,
) -> Result<Vec<serde_json::Value>, StoreError> {
    todo!()
}

/// Orders matching `query`, oldest first (`inserted_at`, then `id`).
pub fn list_orders(
    _conn: &rusqlite::Connection,
    _query: &OrderQuery,
    _ctx: &RecordCtx,
) -> Result<Vec<serde_json::Value>, StoreError> {
    todo!()
}

/// One record, or `None`.
pub fn get(
    _conn: &rusqlite::Connection,
    _collection: Collection,
    _id: i64,
    _ctx: &RecordCtx,
) -> Result<Option<serde_json::Value>, StoreError> {
    todo!()
}
