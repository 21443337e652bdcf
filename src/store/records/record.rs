//! A record as the channels receive it: the JSON edges send, and an order's typed facts.

use serde_json::Value;

use super::Collection;
use crate::store::orders::OrderFacts;

/// A record read back after a commit: its JSON as snapshots and the API render it (SPEC 4),
/// and for an order the facts the channels decide on, read once here rather than parsed
/// again from the JSON by every filter. Dereferences to the JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub json: Value,
    /// An order's facts; `None` for other collections (and an order whose `inserted_at` is
    /// not an instant).
    pub order: Option<OrderFacts>,
}

impl Record {
    /// The record of `collection` rendered as `json`.
    pub fn new(collection: Collection, json: Value) -> Record {
        let order = match collection {
            Collection::Order => OrderFacts::of_record(&json),
            _ => None,
        };
        Record { json, order }
    }
}

/// Its JSON text.
impl std::fmt::Display for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.json.fmt(f)
    }
}

impl std::ops::Deref for Record {
    type Target = Value;

    fn deref(&self) -> &Value {
        &self.json
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::orders::OrderState;
    use serde_json::json;

    #[test]
    fn an_order_record_carries_its_facts_typed_and_other_records_none() {
        let order = Record::new(
            Collection::Order,
            json!({"id": 3, "customer_id": 7, "day_id": 101, "state": "completed",
                   "inserted_at": "2026-03-01T09:15:02.123456Z"}),
        );
        let facts = order.order.clone().expect("an order's facts");
        assert_eq!(facts.state, Some(OrderState::Completed));
        assert_eq!(facts.customer_id, Some(7));
        assert_eq!(facts.day_id, Some(101));
        assert_eq!(facts.inserted_at.to_string(), "2026-03-01T09:15:02.123456Z");
        // The JSON goes out as it was rendered.
        assert_eq!(order["state"], "completed");
        // A shell-edited state we do not know is no state, never "completed".
        let odd = Record::new(
            Collection::Order,
            json!({"id": 4, "state": "Completed ", "inserted_at": "2026-03-01T09:15:02Z"}),
        );
        assert_eq!(odd.order.and_then(|f| f.state), None);
        let item = Record::new(
            Collection::Item,
            json!({"id": 1, "inserted_at": "2026-03-01T09:15:02Z"}),
        );
        assert_eq!(item.order, None);
    }
}
