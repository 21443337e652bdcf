//! Whose orders show whose customer (SPEC 6): an order's `customer_id` is shown only to
//! admins and to that customer; every other reader — HTTP lists and records, join
//! snapshots, resumed changes, live broadcasts — gets the order without it, and may filter
//! by customer only for itself. Public screens keep everything else.

use serde_json::Value;

/// Who reads an order, as far as its `customer_id` is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Reader {
    /// Sees every customer.
    Admin,
    /// A logged-in customer: sees its own id on its own orders.
    Customer(i64),
    /// Anonymous: the public display, a student's laptop.
    #[default]
    Public,
}

impl Reader {
    /// The reader a socket or request is, from its user and admin flag.
    pub fn of(user_id: Option<i64>, admin: bool) -> Reader {
        match (admin, user_id) {
            (true, _) => Reader::Admin,
            (false, Some(id)) => Reader::Customer(id),
            (false, None) => Reader::Public,
        }
    }

    /// Whether this reader may see that an order belongs to `customer`.
    pub fn sees(self, customer: i64) -> bool {
        match self {
            Reader::Admin => true,
            Reader::Customer(id) => id == customer,
            Reader::Public => false,
        }
    }

    /// Whether this reader may filter orders by `customer` (only its own id; admins: any).
    pub fn may_filter_by(self, customer: i64) -> bool {
        self.sees(customer)
    }
}

/// The customer an order record belongs to, when it names one.
pub fn customer_of(record: &Value) -> Option<i64> {
    record.get("customer_id").and_then(Value::as_i64)
}

/// Remove `customer_id` from an order record unless `reader` may see it.
/// A `null` customer says nothing about anyone and stays.
pub fn redact_order(record: &mut Value, reader: Reader) {
    let hidden = customer_of(record).is_some_and(|customer| !reader.sees(customer));
    if let (true, Value::Object(fields)) = (hidden, record) {
        fields.remove("customer_id");
    }
}

/// [`redact_order`] on the `record` of a `change` payload (`{"action","record","seq"}`).
pub fn redact_change(change: &mut Value, reader: Reader) {
    if let Some(record) = change.get_mut("record") {
        redact_order(record, reader);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_admins_and_the_customer_see_the_customer() {
        let order = json!({"id": 1, "customer_id": 7, "day_id": 101});
        let shown = |reader| {
            let mut record = order.clone();
            redact_order(&mut record, reader);
            record.get("customer_id").is_some()
        };
        assert!(shown(Reader::Admin));
        assert!(shown(Reader::Customer(7)));
        assert!(!shown(Reader::Customer(8)));
        assert!(!shown(Reader::Public));
        let mut record = order.clone();
        redact_order(&mut record, Reader::Public);
        assert_eq!(record, json!({"id": 1, "day_id": 101}), "the rest stays");
    }

    #[test]
    fn filters_by_customer_are_for_oneself_or_admins() {
        assert!(Reader::Admin.may_filter_by(3));
        assert!(Reader::Customer(3).may_filter_by(3));
        assert!(!Reader::Customer(4).may_filter_by(3));
        assert!(!Reader::Public.may_filter_by(3));
        assert_eq!(Reader::of(Some(3), true), Reader::Admin);
        assert_eq!(Reader::of(Some(3), false), Reader::Customer(3));
        assert_eq!(Reader::of(None, false), Reader::Public);
    }
}
