//! Placing an order (SPEC 5.2), as one writer job: check every item and customization
//! against the current menu, copy names and prices into the order's snapshot, price it, and
//! number it for the café's local day — all inside the insert's transaction, so concurrent
//! placements never share a `day_id`.

mod lookup;
pub mod price;

use std::collections::{HashMap, HashSet};

use jiff::tz::TimeZone;
use jiff::Timestamp;
use rusqlite::{OptionalExtension, Transaction};
use serde_json::{json, Map, Value};

pub use price::{in_bounds, item_total, stored_nok, Choice, MAX_NOK};

use super::records::{format_timestamp, Collection};
use super::write::{self, invalid, Errors, WriteError};
use super::{RecordCtx, StoreError};
use lookup::{Key, Lookup, MenuItem, MenuValue};

/// The first `day_id` of every local day.
pub const FIRST_DAY_ID: i64 = 101;

/// Where an order is on its way to the customer (SPEC 4), in the order it passes the states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OrderState {
    Received,
    Production,
    Completed,
    Dispatched,
}

impl OrderState {
    /// Every state, in the order an order passes through them.
    pub const ALL: [OrderState; 4] = [
        OrderState::Received,
        OrderState::Production,
        OrderState::Completed,
        OrderState::Dispatched,
    ];

    /// The state as stored and sent (`"received"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            OrderState::Received => "received",
            OrderState::Production => "production",
            OrderState::Completed => "completed",
            OrderState::Dispatched => "dispatched",
        }
    }

    /// The state named `name` exactly; `None` for anything else (a shell-edited row may hold
    /// any text).
    pub fn parse(name: &str) -> Option<OrderState> {
        OrderState::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// What the core decides on about an order (filters, the `"today"` window, `new_order` and
/// `order_ready`), typed once where the record is read back; the JSON goes to the edges.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderFacts {
    pub inserted_at: Timestamp,
    pub customer_id: Option<i64>,
    /// `None`: the row holds no state we know (a shell-edited row).
    pub state: Option<OrderState>,
    pub day_id: Option<i64>,
}

impl OrderFacts {
    /// The facts of an order record as it is rendered (SPEC 4). `None` when its
    /// `inserted_at` is not an instant (a record the filters cannot place).
    pub fn of_record(record: &Value) -> Option<OrderFacts> {
        let inserted_at = record.get("inserted_at")?.as_str()?.parse().ok()?;
        Some(OrderFacts {
            inserted_at,
            customer_id: record.get("customer_id").and_then(Value::as_i64),
            state: record
                .get("state")
                .and_then(Value::as_str)
                .and_then(OrderState::parse),
            day_id: record.get("day_id").and_then(Value::as_i64),
        })
    }
}

/// What the placement did.
#[derive(Debug)]
pub struct Placed {
    /// The order as the API renders it.
    pub record: Value,
    /// `false` when an order with the request's `uuid` already existed (nothing was written).
    pub created: bool,
}

/// Who the order is for: admins may name any customer; everybody else orders as themself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Customer {
    /// Use the body's `customer_id` (null or absent: none).
    AsGiven,
    /// Ignore the body: the order is this user's.
    Forced(i64),
}

/// How much one order may hold (SPEC 10, `[limits]`): what one customer can make the writer,
/// the file and every order screen carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderLimits {
    /// `limits.max_order_lines`: lines (items) in one order.
    pub max_lines: usize,
    /// `limits.max_order_bytes`: the order's record as stored and broadcast, in JSON bytes.
    pub max_bytes: usize,
}

/// Place the order described by `body` (the frontend's
/// `{customer_id, items: [{item, customizations: [{key, value: [id]}]}], state,
/// missing_information, uuid}`).
///
/// Every value a line chooses is checked against the menu, and a line can choose each value
/// of the menu at most once: so however large the body (up to `limits.max_body_bytes`), the
/// work and the stored record are bounded by the menu and `limits`, never by what was sent.
pub fn place(
    tx: &Transaction<'_>,
    body: &Map<String, Value>,
    customer: Customer,
    limits: OrderLimits,
    now: Timestamp,
    tz: &TimeZone,
    ctx: &RecordCtx,
) -> Result<Placed, WriteError> {
    let uuid = match body.get("uuid") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= 200 => Some(s.clone()),
        Some(_) => return Err(invalid("uuid", "must be a non-empty string")),
    };
    if let Some(uuid) = &uuid {
        if let Some(existing) = existing(tx, uuid, customer, ctx)? {
            return Ok(Placed {
                record: existing,
                created: false,
            });
        }
    }

    let mut errors = Errors::default();
    let customer_id = match customer {
        Customer::Forced(id) => Some(id),
        Customer::AsGiven => match body.get("customer_id") {
            None | Some(Value::Null) => None,
            Some(v) => match write::int(v) {
                Some(id) => Some(id),
                None => {
                    errors.add("customer_id", "must be an integer or null");
                    None
                }
            },
        },
    };
    // Only admins move an order through the kitchen (SPEC 6): a customer's order starts as
    // `received` with nothing missing, whatever the body says.
    let (state, missing_information) = match customer {
        Customer::Forced(_) => (OrderState::Received, false),
        Customer::AsGiven => (order_state(body, &mut errors), missing(body, &mut errors)),
    };
    let lines = match body.get("items") {
        Some(Value::Array(items)) if items.len() > limits.max_lines => {
            errors.add(
                "items",
                format!(
                    "an order holds at most {} lines (limits.max_order_lines); this one has {}",
                    limits.max_lines,
                    items.len()
                ),
            );
            Vec::new()
        }
        Some(Value::Array(items)) if !items.is_empty() => {
            let mut lookup = Lookup::default();
            let mut lines = Vec::with_capacity(items.len());
            let mut item_errors = Vec::with_capacity(items.len());
            let mut any = false;
            for entry in items {
                match order_line(tx, &mut lookup, entry)? {
                    Ok(line) => {
                        lines.push(line);
                        item_errors.push(json!({}));
                    }
                    Err(e) => {
                        any = true;
                        item_errors.push(Value::Object(e.into_map()));
                    }
                }
            }
            if any {
                errors.nest("items", Value::Array(item_errors));
            }
            lines
        }
        Some(Value::Array(_)) | None | Some(Value::Null) => {
            errors.add("items", "can't be empty");
            Vec::new()
        }
        Some(_) => {
            errors.add("items", "must be a list of items");
            Vec::new()
        }
    };
    errors.check()?;

    let total_nok = lines
        .iter()
        .try_fold(0i64, |sum, line| sum.checked_add(line.total))
        .ok_or_else(|| invalid("total_nok", "the order's total is too large"))?;
    let items = Value::Array(lines.into_iter().map(|l| l.snapshot).collect()).to_string();
    // The stored items are most of the record: refuse early without writing anything.
    too_large(items.len(), limits)?;
    let day_id = next_day_id(tx, now, tz)?;
    let at = format_timestamp(now);
    let uuid = uuid.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    tx.prepare_cached(
        "INSERT INTO \"order\" (uuid, customer_id, day_id, state, missing_information, items, \
         total_nok, inserted_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
    )?
    .execute(rusqlite::params![
        uuid,
        customer_id,
        day_id,
        state.as_str(),
        missing_information,
        items,
        total_nok,
        at
    ])?;
    let id = tx.last_insert_rowid();
    let record = write::read_back(tx, Collection::Order, id, ctx)?;
    // Measured on what every order screen would receive; the `Err` rolls the insert back.
    too_large(record.to_string().len(), limits)?;
    Ok(Placed {
        record,
        created: true,
    })
}

/// The 422 for an order whose record would be larger than `limits.max_order_bytes`.
fn too_large(bytes: usize, limits: OrderLimits) -> Result<(), WriteError> {
    if bytes <= limits.max_bytes {
        return Ok(());
    }
    Err(invalid(
        "items",
        &format!(
            "the order is too large ({bytes} bytes; at most {} by limits.max_order_bytes): \
             split it into smaller orders",
            limits.max_bytes
        ),
    ))
}

/// The body's `state` (admins only): absent means `received`.
fn order_state(body: &Map<String, Value>, errors: &mut Errors) -> OrderState {
    match body.get("state") {
        None | Some(Value::Null) => OrderState::Received,
        Some(given) => given
            .as_str()
            .and_then(OrderState::parse)
            .unwrap_or_else(|| {
                errors.add(
                    "state",
                    "must be one of received, production, completed, dispatched",
                );
                OrderState::Received
            }),
    }
}

/// The body's `missing_information` (admins only): absent means `false`.
fn missing(body: &Map<String, Value>, errors: &mut Errors) -> bool {
    match body.get("missing_information") {
        None | Some(Value::Null) => false,
        Some(v) => match write::coerce(write::Kind::Bool, v) {
            Ok(rusqlite::types::Value::Integer(b)) => b == 1,
            _ => {
                errors.add("missing_information", "must be true or false");
                false
            }
        },
    }
}

/// The order already placed with `uuid`. A user may not claim another customer's uuid.
fn existing(
    tx: &Transaction<'_>,
    uuid: &str,
    customer: Customer,
    ctx: &RecordCtx,
) -> Result<Option<Value>, WriteError> {
    let found: Option<(i64, Option<i64>)> = tx
        .prepare_cached("SELECT id, customer_id FROM \"order\" WHERE uuid = ?1")?
        .query_row([uuid], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let Some((id, owner)) = found else {
        return Ok(None);
    };
    if let Customer::Forced(me) = customer {
        if owner != Some(me) {
            return Err(invalid("uuid", "is already used by another order"));
        }
    }
    write::read_back(tx, Collection::Order, id, ctx).map(Some)
}

/// The highest `day_id` of the orders inserted at or after `?1` (a stored stamp): the truth,
/// read from `order_inserted` alone (it holds `day_id` since schema version 4).
pub const NEXT_DAY_ID_SQL: &str =
    "SELECT MAX(+day_id) FROM \"order\" WHERE inserted_at >= ?1 AND typeof(day_id) = 'integer'";

/// The triggers that keep `kaffediem_meta`'s `day_max` the highest `day_id` of the orders
/// inserted at or after its `day_start`, whoever writes the order (the daemon, the `sqlite3`
/// shell, `kaffediem import`): an insert, or an update of either column, raises it. A delete
/// leaves it as it was, so a deleted order's number is not handed out again that day.
/// Without a `day_start` they do nothing. Created with the schema (version 4) and put back at
/// start if dropped.
pub const DAY_MAX_TRIGGERS: &str = r#"
CREATE TRIGGER IF NOT EXISTS order_day_max_insert AFTER INSERT ON "order"
WHEN NEW.inserted_at >= (SELECT value FROM kaffediem_meta WHERE key = 'day_start') BEGIN
    UPDATE kaffediem_meta SET value = NEW.day_id
    WHERE key = 'day_max' AND typeof(NEW.day_id) = 'integer'
      AND (value IS NULL OR NEW.day_id > value);
END;
CREATE TRIGGER IF NOT EXISTS order_day_max_update AFTER UPDATE OF inserted_at, day_id ON "order"
WHEN NEW.inserted_at >= (SELECT value FROM kaffediem_meta WHERE key = 'day_start') BEGIN
    UPDATE kaffediem_meta SET value = NEW.day_id
    WHERE key = 'day_max' AND typeof(NEW.day_id) = 'integer'
      AND (value IS NULL OR NEW.day_id > value);
END;
"#;

/// The names of [`DAY_MAX_TRIGGERS`].
pub const DAY_MAX_TRIGGER_NAMES: [&str; 2] = ["order_day_max_insert", "order_day_max_update"];

/// How many of [`DAY_MAX_TRIGGER_NAMES`] the file holds.
pub fn day_max_triggers(conn: &rusqlite::Connection) -> Result<usize, StoreError> {
    let n: i64 = conn
        .prepare_cached(
            "SELECT count(*) FROM sqlite_schema \
             WHERE type = 'trigger' AND tbl_name = 'order' AND name IN (?1, ?2)",
        )?
        .query_row(DAY_MAX_TRIGGER_NAMES, |r| r.get(0))?;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// `max(day_id)` of the orders inserted since the local midnight before `now`, plus one; 101
/// for the day's first order. Must run in the transaction that inserts the order.
///
/// The maximum comes from `kaffediem_meta` (`day_max`, kept by [`DAY_MAX_TRIGGERS`]) when it
/// was counted from this very midnight (`day_start`) under this very schema (`day_schema`:
/// SQLite bumps `schema_version` on every `CREATE` or `DROP`, so a dropped trigger shows):
/// three key lookups, however many orders the day holds. Otherwise — the day's first order, a
/// schema change, the triggers missing — it reads the orders of the day
/// ([`NEXT_DAY_ID_SQL`]) and, when both triggers are there, counts from here on.
pub fn next_day_id(tx: &Transaction<'_>, now: Timestamp, tz: &TimeZone) -> Result<i64, StoreError> {
    let midnight = now
        .to_zoned(tz.clone())
        .start_of_day()
        .map(|z| z.timestamp())
        .unwrap_or(now);
    let start = format_timestamp(midnight);
    let kept: Option<Option<i64>> = tx
        .prepare_cached(
            "SELECT m.value FROM kaffediem_meta s, kaffediem_meta v, kaffediem_meta m \
             WHERE s.key = 'day_start' AND s.value = ?1 \
               AND v.key = 'day_schema' \
               AND v.value = (SELECT schema_version FROM pragma_schema_version) \
               AND m.key = 'day_max' AND typeof(m.value) IN ('integer', 'null')",
        )?
        .query_row([&start], |r| r.get(0))
        .optional()?;
    let max = match kept {
        Some(max) => max,
        None => {
            // Stored stamps are RFC 3339 UTC text with a `Z`, so text order is time order.
            // `+day_id` keeps SQLite from answering MAX through the `order_day` index, which
            // walks down past days' higher numbers until it meets one of today's (the whole
            // history, late in a day with few orders); the `order_inserted` range reads
            // today's index entries only, no order row (about a page per hundred orders).
            let max: Option<i64> = tx
                .prepare_cached(NEXT_DAY_ID_SQL)?
                .query_row([&start], |r| r.get(0))?;
            if day_max_triggers(tx)? == DAY_MAX_TRIGGER_NAMES.len() {
                tx.prepare_cached(
                    "INSERT INTO kaffediem_meta (key, value) VALUES \
                         ('day_start', ?1), ('day_max', ?2), \
                         ('day_schema', (SELECT schema_version FROM pragma_schema_version)) \
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                )?
                .execute(rusqlite::params![start, max])?;
            }
            max
        }
    };
    Ok(match max {
        Some(max) if max >= FIRST_DAY_ID => max + 1,
        _ => FIRST_DAY_ID,
    })
}

/// One checked line of an order.
struct Line {
    /// What is stored and shown: `{item_id, name, price, category, customizations, total}`.
    snapshot: Value,
    total: i64,
}

/// What one line has chosen so far, per key: how a repeated key or value is told from the
/// frontend's one-entry-per-value form of a multiple-choice key.
type Chosen = HashMap<i64, HashSet<i64>>;

/// Check one entry of `items` and build its line; the inner `Err` is that entry's errors (the
/// outer one a database failure).
fn order_line(
    tx: &Transaction<'_>,
    lookup: &mut Lookup,
    entry: &Value,
) -> Result<Result<Line, Errors>, StoreError> {
    let mut errors = Errors::default();
    let Some(entry) = entry.as_object() else {
        errors.add("item", "must be an object with item and customizations");
        return Ok(Err(errors));
    };
    let Some(item_id) = entry.get("item").and_then(write::int) else {
        errors.add("item", "must be an item id");
        return Ok(Err(errors));
    };
    let Some(item) = lookup::menu_item(tx, item_id)? else {
        errors.add("item", "not found");
        return Ok(Err(errors));
    };
    let (price_nok, category) = match sound_item(&item) {
        Ok(sound) => sound,
        Err(why) => {
            errors.add("item", why);
            return Ok(Err(errors));
        }
    };
    if !item.enable {
        errors.add("item", "is not available");
    }
    let requested: &[Value] = match entry.get("customizations") {
        None | Some(Value::Null) => &[],
        Some(Value::Array(list)) => list,
        Some(_) => {
            errors.add("customizations", "must be a list");
            &[]
        }
    };
    // Each entry names a key and brings at least one new value (or is a key's only, empty,
    // entry), so at most `most` can be right. One more is checked entry by entry (and gets
    // its precise error); far more are refused at once, before any is looked up, so the
    // work and the error stay as small as the menu.
    let mut most = item.valid_customizations.len();
    for key in &item.valid_customizations {
        most += lookup.value_count(tx, *key)?;
    }
    if requested.len() > most + 1 {
        errors.add(
            "customizations",
            format!(
                "{} has at most {most} choices; {} were sent",
                item.name,
                requested.len()
            ),
        );
        return Ok(Err(errors));
    }

    let mut snapshot = Vec::new();
    let mut choices = Vec::new();
    let mut per_entry = Vec::with_capacity(requested.len());
    let mut any = false;
    let mut chosen = Chosen::new();
    for c in requested {
        let mut e = Errors::default();
        customization(
            tx,
            lookup,
            c,
            &item,
            &mut chosen,
            &mut e,
            |key_id, key, value_id, value, increment_nok| {
                choices.push(Choice {
                    increment_nok,
                    constant_price: value.constant_price,
                });
                snapshot.push(json!({
                    "key_id": key_id,
                    "key_name": key.name,
                    "value_id": value_id,
                    "value_name": value.name,
                    "price_change": increment_nok,
                    "constant_price": value.constant_price,
                    "label_color": key.label_color,
                }));
            },
        )?;
        any |= !e.is_empty();
        per_entry.push(Value::Object(e.into_map()));
    }
    if any {
        errors.nest("customizations", Value::Array(per_entry));
    }
    if !errors.is_empty() {
        return Ok(Err(errors));
    }
    let Some(total) = item_total(price_nok, &choices) else {
        errors.add("item", format!("the total of {} is too large", item.name));
        return Ok(Err(errors));
    };
    Ok(Ok(Line {
        snapshot: json!({
            "item_id": item_id,
            "name": item.name,
            "price": price_nok,
            "category": category,
            "customizations": snapshot,
            "total": total,
        }),
        total,
    }))
}

/// The item's price and category name, or why the item cannot be sold as it is stored (a row
/// edited in with the shell): the line's 422, naming the item, for an admin to fix.
fn sound_item(item: &MenuItem) -> Result<(i64, &str), String> {
    let Some(category) = item.category.as_deref() else {
        return Err(format!("item {} has no category", item.name));
    };
    match item.price_nok {
        Some(price) if in_bounds(price) => Ok((price, category)),
        Some(_) => Err(format!(
            "the price of {} is out of range (at most {MAX_NOK} NOK): fix it in the menu",
            item.name
        )),
        None => Err(format!(
            "the price of {} is not a number: fix it in the menu",
            item.name
        )),
    }
}

/// Check one `{key, value: [ids]}` against the item's category, the menu and what the line
/// chose before; hand every accepted value (with its increment) to `accept`. Stops at the
/// first fault of the entry, so the errors stay as small as the menu.
fn customization(
    tx: &Transaction<'_>,
    lookup: &mut Lookup,
    c: &Value,
    item: &MenuItem,
    chosen: &mut Chosen,
    e: &mut Errors,
    mut accept: impl FnMut(i64, &Key, i64, &MenuValue, i64),
) -> Result<(), StoreError> {
    let Some(c) = c.as_object() else {
        e.add("key", "must be an object with key and value");
        return Ok(());
    };
    let Some(key_id) = c.get("key").and_then(write::int) else {
        e.add("key", "must be a customization key id");
        return Ok(());
    };
    let Some(key) = lookup.key(tx, key_id)? else {
        e.add("key", "not found");
        return Ok(());
    };
    if !item.valid_customizations.contains(&key_id) {
        let category = item.category.as_deref().unwrap_or_default();
        e.add(
            "key",
            format!("{} is not a choice for {category}", key.name),
        );
        return Ok(());
    }
    // The frontend sends a list; a single id is accepted too.
    let ids: Vec<i64> = match c.get("value") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => match list.iter().map(write::int).collect() {
            Some(ids) => ids,
            None => {
                e.add("value", "must be a list of customization value ids");
                return Ok(());
            }
        },
        Some(single) => match write::int(single) {
            Some(id) => vec![id],
            None => {
                e.add("value", "must be a list of customization value ids");
                return Ok(());
            }
        },
    };
    let given_before = chosen.contains_key(&key_id);
    let values = chosen.entry(key_id).or_default();
    // A single-choice key takes one value, in one entry; a multiple-choice key may come once
    // per value (the frontend's form), but each entry must bring a value.
    if !key.multiple_choice && (ids.len() > 1 || (given_before && !ids.is_empty())) {
        e.add("value", format!("{} takes only one value", key.name));
        return Ok(());
    }
    if given_before && ids.is_empty() {
        e.add("key", format!("{} is given twice", key.name));
        return Ok(());
    }
    let available = lookup.value_count(tx, key_id)?;
    if values.len() + ids.len() > available {
        e.add(
            "value",
            format!(
                "{} has {available} values; {} were chosen",
                key.name,
                values.len() + ids.len()
            ),
        );
        return Ok(());
    }
    for value_id in ids {
        if !values.insert(value_id) {
            e.add("value", format!("{value_id} is chosen twice"));
            return Ok(());
        }
        let Some(value) = lookup::menu_value(tx, value_id)? else {
            e.add("value", format!("{value_id} not found"));
            return Ok(());
        };
        if value.belongs_to != Some(key_id) {
            e.add(
                "value",
                format!("{} is not a choice of {}", value.name, key.name),
            );
            return Ok(());
        }
        match value.increment_nok {
            Some(nok) if in_bounds(nok) => accept(key_id, &key, value_id, &value, nok),
            _ => {
                e.add(
                    "value",
                    format!(
                        "the price of {} is not a number within {MAX_NOK} NOK: fix it in the menu",
                        value.name
                    ),
                );
                return Ok(());
            }
        }
    }
    Ok(())
}
