//! Which orders a client asks for, parsed here once for both doors: the options of a
//! `collection:order` join (SPEC 3.1) and the query string of an HTTP list (SPEC 5, 10). Same
//! rules, same error objects; [`OrderOptions::query`] turns either into the store's
//! [`OrderQuery`] against the café's day.

use jiff::civil::Date;
use jiff::tz::TimeZone;
use serde_json::{json, Map, Value};

use super::filter::{FromDate, OrderFilter};
use crate::store::orders::OrderState;
use crate::store::records::Window;
use crate::store::{Collection, OrderQuery};

/// A bad option or parameter: field name → `["why"]`, the `errors` of a join's
/// `invalid options` reply and of an HTTP 422.
pub type Errors = Map<String, Value>;

/// Which orders: the window and customer (both doors), the state (lists only: a screen follows
/// an order through every state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderOptions {
    pub filter: OrderFilter,
    pub state: Option<OrderState>,
}

impl OrderOptions {
    /// A join payload's `"options"` (absent or null: every order). Unknown keys are ignored.
    pub fn from_join_payload(payload: &Value) -> Result<OrderFilter, Errors> {
        match payload.get("options") {
            None | Some(Value::Null) => Ok(OrderFilter::ALL),
            Some(Value::Object(options)) => {
                let mut errors = Errors::new();
                let filter = filter(options, &mut errors);
                errors.is_empty().then_some(filter).ok_or(errors)
            }
            Some(_) => Err(errors_of("options", "must be an object")),
        }
    }

    /// An order list's query pairs (as `http::api::query_pairs` decodes them: every value a
    /// string, read by the same rules as a join's).
    pub fn from_query(pairs: &Map<String, Value>) -> Result<OrderOptions, Errors> {
        let mut errors = Errors::new();
        let filter = filter(pairs, &mut errors);
        let state = match pairs.get("state") {
            None => None,
            Some(v) => match v.as_str().and_then(OrderState::parse) {
                Some(state) => Some(state),
                None => {
                    errors.insert(
                        "state".into(),
                        json!(["must be one of received, production, completed, dispatched"]),
                    );
                    None
                }
            },
        };
        errors
            .is_empty()
            .then_some(OrderOptions { filter, state })
            .ok_or(errors)
    }

    /// The window without `from_date` is the last `days` local days (up to `today`) when
    /// `days` is given (a join, an unpaged list: `limits.order_snapshot_days`).
    pub fn bounded(mut self, today: Date, days: Option<u32>) -> OrderOptions {
        if let (FromDate::Any, Some(days)) = (self.filter.from, days) {
            self.filter.from = FromDate::Day(default_first_day(today, days));
        }
        self
    }

    /// The store's query on `today` in `tz`.
    pub fn query(&self, today: Date, tz: &TimeZone) -> OrderQuery {
        OrderQuery {
            since: self.filter.since(today, tz),
            customer_id: self.filter.customer_id,
            state: self.state,
        }
    }
}

impl From<OrderFilter> for OrderOptions {
    fn from(filter: OrderFilter) -> OrderOptions {
        OrderOptions {
            filter,
            state: None,
        }
    }
}

/// `from_date` (`"today"` | `YYYY-MM-DD`) and `customer_id` (an integer, or a string of one).
fn filter(options: &Map<String, Value>, errors: &mut Errors) -> OrderFilter {
    const BAD_DATE: &str = "must be \"today\" or a date YYYY-MM-DD";
    let from = match options.get("from_date") {
        None | Some(Value::Null) => FromDate::Any,
        Some(Value::String(s)) if s == "today" => FromDate::Today,
        Some(Value::String(s)) => match s.parse::<Date>() {
            Ok(day) if s.len() == 10 => FromDate::Day(day),
            _ => {
                errors.insert("from_date".into(), json!([BAD_DATE]));
                FromDate::Any
            }
        },
        Some(_) => {
            errors.insert("from_date".into(), json!([BAD_DATE]));
            FromDate::Any
        }
    };
    let customer_id = match options.get("customer_id") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if n.as_i64().is_some() => n.as_i64(),
        Some(Value::String(s)) if s.trim().parse::<i64>().is_ok() => s.trim().parse().ok(),
        Some(_) => {
            errors.insert("customer_id".into(), json!(["must be an integer"]));
            None
        }
    };
    OrderFilter { from, customer_id }
}

fn errors_of(field: &str, why: &str) -> Errors {
    Errors::from_iter([(field.to_owned(), json!([why]))])
}

/// The first local day an order join without `from_date` sees: today and the `days - 1`
/// before it (`limits.order_snapshot_days`, SPEC 3.1).
pub fn default_first_day(today: Date, days: u32) -> Date {
    let back = i64::from(days.max(1)) - 1;
    today
        .checked_sub(jiff::Span::new().days(back))
        .unwrap_or(Date::MIN)
}

/// Largest `perPage` (SPEC 10).
pub const MAX_PER_PAGE: usize = 500;
/// `perPage` when only `page` is given.
pub const DEFAULT_PER_PAGE: usize = 100;

/// What an HTTP list asks for: a page (or none: the newest, bounded) and, for orders, which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListQuery {
    /// `page` (from 1) and `perPage` (1 to [`MAX_PER_PAGE`]); `None` when neither is given.
    pub page: Option<Window>,
    /// The order options (the default, every order, for other collections).
    pub orders: OrderOptions,
}

impl ListQuery {
    /// Parse a list's query pairs. Paging is checked first: a bad page is the answer even
    /// when the order options are bad too.
    pub fn parse(collection: Collection, pairs: &Map<String, Value>) -> Result<ListQuery, Errors> {
        let page = paging(pairs)?;
        let orders = match collection {
            Collection::Order => OrderOptions::from_query(pairs)?,
            _ => OrderFilter::ALL.into(),
        };
        Ok(ListQuery { page, orders })
    }
}

fn paging(pairs: &Map<String, Value>) -> Result<Option<Window>, Errors> {
    let number = |key: &str, max: usize| -> Result<Option<usize>, Value> {
        match pairs.get(key).and_then(Value::as_str) {
            None => Ok(None),
            Some(v) => match v.trim().parse::<usize>() {
                Ok(n) if (1..=max).contains(&n) => Ok(Some(n)),
                _ if max == usize::MAX => Err(json!(["must be a whole number from 1"])),
                _ => Err(json!([format!("must be a whole number from 1 to {max}")])),
            },
        }
    };
    let mut errors = Errors::new();
    let page = number("page", usize::MAX).unwrap_or_else(|e| {
        errors.insert("page".into(), e);
        None
    });
    let per_page = number("perPage", MAX_PER_PAGE).unwrap_or_else(|e| {
        errors.insert("perPage".into(), e);
        None
    });
    if !errors.is_empty() {
        return Err(errors);
    }
    if page.is_none() && per_page.is_none() {
        return Ok(None);
    }
    let limit = per_page.unwrap_or(DEFAULT_PER_PAGE);
    let offset = page.unwrap_or(1).saturating_sub(1).saturating_mul(limit);
    Ok(Some(Window::Page { offset, limit }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(query: &[(&str, &str)]) -> Map<String, Value> {
        query
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect()
    }

    #[test]
    fn join_options_parse() {
        let f = OrderOptions::from_join_payload(
            &json!({"options": {"from_date": "today", "customer_id": "7", "x": 1}}),
        )
        .unwrap();
        assert_eq!(f.from, FromDate::Today);
        assert_eq!(f.customer_id, Some(7));
        let f = OrderOptions::from_join_payload(&json!({"options": {"from_date": "2026-03-01"}}))
            .unwrap();
        assert_eq!(f.from, FromDate::Day(jiff::civil::date(2026, 3, 1)));
        assert_eq!(
            OrderOptions::from_join_payload(&json!({})).unwrap(),
            OrderFilter::ALL
        );
        assert_eq!(
            OrderOptions::from_join_payload(&json!({"options": [1]})).unwrap_err(),
            errors_of("options", "must be an object")
        );
    }

    #[test]
    fn a_bad_option_gets_the_same_errors_through_either_door() {
        let join = OrderOptions::from_join_payload(
            &json!({"options": {"from_date": "yesterday", "customer_id": "1.5"}}),
        )
        .unwrap_err();
        let list = OrderOptions::from_query(&pairs(&[
            ("from_date", "yesterday"),
            ("customer_id", "1.5"),
        ]))
        .unwrap_err();
        assert_eq!(join, list);
        assert_eq!(join.len(), 2);
    }

    #[test]
    fn lists_filter_by_state_and_page() {
        let q = ListQuery::parse(
            Collection::Order,
            &pairs(&[("state", "completed"), ("page", "3"), ("perPage", "10")]),
        )
        .unwrap();
        assert_eq!(q.orders.state, Some(OrderState::Completed));
        assert_eq!(
            q.page,
            Some(Window::Page {
                offset: 20,
                limit: 10
            })
        );
        let bad = ListQuery::parse(Collection::Order, &pairs(&[("state", "eaten")]));
        assert!(bad.unwrap_err().contains_key("state"));
        // Other collections take no order options.
        let q = ListQuery::parse(Collection::Item, &pairs(&[("state", "eaten")])).unwrap();
        assert_eq!(q.orders, OrderFilter::ALL.into());
    }

    #[test]
    fn an_unbounded_window_gets_the_default_days() {
        let today = jiff::civil::date(2026, 3, 10);
        let o = OrderOptions::from(OrderFilter::ALL).bounded(today, Some(7));
        assert_eq!(o.filter.from, FromDate::Day(jiff::civil::date(2026, 3, 4)));
        let o = OrderOptions::from(OrderFilter::ALL).bounded(today, None);
        assert_eq!(o.filter.from, FromDate::Any);
        assert_eq!(default_first_day(today, 0), today);
    }
}
