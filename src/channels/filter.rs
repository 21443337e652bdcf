//! An order subscriber's filter (SPEC 3.1): which orders it sees, in its snapshot and in its
//! live stream. The options it comes from are parsed in [`super::query`].

use crate::store::orders::OrderFacts;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::Timestamp;

/// Where an order subscriber's window starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FromDate {
    /// No lower bound.
    Any,
    /// Local midnight of the current day; rolls forward at every local midnight.
    Today,
    /// Local midnight of a fixed day.
    Day(Date),
}

/// One subscriber's order filter. Subscribers with equal filters share one group, so a change
/// is matched once per distinct filter, not once per socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OrderFilter {
    pub from: FromDate,
    pub customer_id: Option<i64>,
}

impl OrderFilter {
    pub const ALL: OrderFilter = OrderFilter {
        from: FromDate::Any,
        customer_id: None,
    };

    /// The instant the window starts at, given today's local date.
    pub fn since(&self, today: Date, tz: &TimeZone) -> Option<Timestamp> {
        match self.from {
            FromDate::Any => None,
            FromDate::Today => Some(local_midnight(today, tz)),
            FromDate::Day(day) => Some(local_midnight(day, tz)),
        }
    }

    /// Whether an order with these attributes is in the window.
    pub fn matches(&self, order: &OrderFacts, since: Option<Timestamp>) -> bool {
        if let Some(customer) = self.customer_id {
            if order.customer_id != Some(customer) {
                return false;
            }
        }
        since.is_none_or(|since| order.inserted_at >= since)
    }
}

/// The instant local `day` begins in `tz` (handles days that do not start at 00:00).
pub fn local_midnight(day: Date, tz: &TimeZone) -> Timestamp {
    day.to_zoned(tz.clone())
        .and_then(|z| z.start_of_day())
        .map(|z| z.timestamp())
        .unwrap_or(Timestamp::MIN)
}

/// Today's local date at `now`.
pub fn local_date(now: Timestamp, tz: &TimeZone) -> Date {
    now.to_zoned(tz.clone()).date()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn midnight_is_local() {
        let tz = TimeZone::get("Europe/Oslo").unwrap();
        let m = local_midnight(jiff::civil::date(2026, 7, 1), &tz);
        assert_eq!(m.to_string(), "2026-06-30T22:00:00Z");
    }
}
