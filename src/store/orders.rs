//! Placing an order (SPEC 5.2), as one writer job: check every item and customization
//! against the current menu, copy names and prices into the order's snapshot, price it, and
//! number it for the café's local day — all inside the insert's transaction, so concurrent
//! placements never share a `day_id`.

use std::collections::HashMap;

use jiff::tz::TimeZone;
use jiff::Timestamp;
use rusqlite::{OptionalExtension, Transaction};
use serde_json::{json, Map, Value};

use super::records::Collection;
use super::write::{self, invalid, Errors, WriteError, STATES};
use super::{RecordCtx, StoreError};

/// The first `day_id` of every local day.
pub const FIRST_DAY_ID: i64 = 101;

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

/// Place the order described by `body` (the frontend's
/// `{customer_id, items: [{item, customizations: [{key, value: [id]}]}], state,
/// missing_information, uuid}`).
pub fn place(
    tx: &Transaction<'_>,
    body: &Map<String, Value>,
    customer: Customer,
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
    let state = match body.get("state") {
        None | Some(Value::Null) => "received".to_owned(),
        Some(Value::String(s)) if STATES.contains(&s.as_str()) => s.clone(),
        Some(_) => {
            errors.add(
                "state",
                "must be one of received, production, completed, dispatched",
            );
            String::new()
        }
    };
    let missing_information = match body.get("missing_information") {
        None | Some(Value::Null) => false,
        Some(v) => match write::coerce(write::Kind::Bool, v) {
            Ok(rusqlite::types::Value::Integer(b)) => b == 1,
            _ => {
                errors.add("missing_information", "must be true or false");
                false
            }
        },
    };
    let lines = match body.get("items") {
        Some(Value::Array(items)) if !items.is_empty() => {
            let mut lines = Vec::with_capacity(items.len());
            let mut item_errors = Vec::with_capacity(items.len());
            let mut any = false;
            for entry in items {
                match order_line(tx, entry)? {
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

    let total_nok: i64 = lines.iter().map(|l| l["total"].as_i64().unwrap_or(0)).sum();
    let day_id = next_day_id(tx, now, tz)?;
    let at = write::stamp(now);
    let uuid = uuid.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    tx.execute(
        "INSERT INTO \"order\" (uuid, customer_id, day_id, state, missing_information, items, \
         total_nok, inserted_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
        rusqlite::params![
            uuid,
            customer_id,
            day_id,
            state,
            missing_information,
            Value::Array(lines).to_string(),
            total_nok,
            at
        ],
    )?;
    let id = tx.last_insert_rowid();
    Ok(Placed {
        record: write::read_back(tx, Collection::Order, id, ctx)?,
        created: true,
    })
}

/// The order already placed with `uuid`. A user may not claim another customer's uuid.
fn existing(
    tx: &Transaction<'_>,
    uuid: &str,
    customer: Customer,
    ctx: &RecordCtx,
) -> Result<Option<Value>, WriteError> {
    let found: Option<(i64, Option<i64>)> = tx
        .query_row(
            "SELECT id, customer_id FROM \"order\" WHERE uuid = ?1",
            [uuid],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
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

/// `max(day_id)` of the orders inserted since the local midnight before `now`, plus one; 101
/// for the day's first order. Must run in the transaction that inserts the order.
pub fn next_day_id(tx: &Transaction<'_>, now: Timestamp, tz: &TimeZone) -> Result<i64, StoreError> {
    let midnight = now
        .to_zoned(tz.clone())
        .start_of_day()
        .map(|z| z.timestamp())
        .unwrap_or(now);
    // Stored stamps are RFC 3339 UTC text with a `Z`, so text order is time order.
    let max: Option<i64> = tx.query_row(
        "SELECT MAX(day_id) FROM \"order\" WHERE inserted_at >= ?1",
        [write::stamp(midnight)],
        |r| r.get(0),
    )?;
    Ok(match max {
        Some(max) if max >= FIRST_DAY_ID => max + 1,
        _ => FIRST_DAY_ID,
    })
}

/// A chosen customization value, as priced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    pub increment_nok: i64,
    /// `true`: add the increment in NOK; `false`: multiply by `increment / 100`.
    pub constant_price: bool,
}

/// The frontend's price rule: `ceil((price + constant increments) × Π(increment / 100))`,
/// computed exactly in integers (floating point would charge 56 for 50 × 110 %).
pub fn item_total(price_nok: i64, choices: &[Choice]) -> i64 {
    let base: i128 = i128::from(price_nok)
        + choices
            .iter()
            .filter(|c| c.constant_price)
            .map(|c| i128::from(c.increment_nok))
            .sum::<i128>();
    let mut numerator = base;
    let mut denominator: i128 = 1;
    for c in choices.iter().filter(|c| !c.constant_price) {
        match (
            numerator.checked_mul(i128::from(c.increment_nok)),
            denominator.checked_mul(100),
        ) {
            (Some(n), Some(d)) => {
                numerator = n;
                denominator = d;
            }
            // Absurd menus (dozens of multipliers): fall back to floating point.
            _ => return float_total(price_nok, choices),
        }
    }
    let q = numerator.div_euclid(denominator);
    let total = if numerator.rem_euclid(denominator) == 0 {
        q
    } else {
        q + 1
    };
    i64::try_from(total).unwrap_or(i64::MAX)
}

fn float_total(price_nok: i64, choices: &[Choice]) -> i64 {
    let mut add = price_nok as f64;
    let mut factor = 1.0;
    for c in choices {
        if c.constant_price {
            add += c.increment_nok as f64;
        } else {
            factor *= c.increment_nok as f64 / 100.0;
        }
    }
    (add * factor).ceil() as i64
}

struct MenuItem {
    name: String,
    price_nok: i64,
    enable: bool,
    category: String,
    valid_customizations: Vec<i64>,
}

struct Key {
    name: String,
    multiple_choice: bool,
    label_color: Option<String>,
}

struct MenuValue {
    name: String,
    increment_nok: i64,
    constant_price: bool,
    belongs_to: i64,
}

/// Check one entry of `items` and build its snapshot line; the inner `Err` is that entry's
/// errors (the outer one a database failure).
fn order_line(tx: &Transaction<'_>, entry: &Value) -> Result<Result<Value, Errors>, StoreError> {
    let mut errors = Errors::default();
    let Some(entry) = entry.as_object() else {
        errors.add("item", "must be an object with item and customizations");
        return Ok(Err(errors));
    };
    let Some(item_id) = entry.get("item").and_then(write::int) else {
        errors.add("item", "must be an item id");
        return Ok(Err(errors));
    };
    let Some(item) = menu_item(tx, item_id)? else {
        errors.add("item", "not found");
        return Ok(Err(errors));
    };
    if !item.enable {
        errors.add("item", "is not available");
    }
    let requested = match entry.get("customizations") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => list.clone(),
        Some(_) => {
            errors.add("customizations", "must be a list");
            Vec::new()
        }
    };

    let mut snapshot = Vec::new();
    let mut choices = Vec::new();
    let mut per_entry = Vec::with_capacity(requested.len());
    let mut any = false;
    let mut values_per_key: HashMap<i64, usize> = HashMap::new();
    for c in &requested {
        let mut e = Errors::default();
        customization(
            tx,
            c,
            &item,
            &mut values_per_key,
            &mut e,
            |key_id, key, value_id, value| {
                choices.push(Choice {
                    increment_nok: value.increment_nok,
                    constant_price: value.constant_price,
                });
                snapshot.push(json!({
                    "key_id": key_id,
                    "key_name": key.name,
                    "value_id": value_id,
                    "value_name": value.name,
                    "price_change": value.increment_nok,
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
    Ok(Ok(json!({
        "item_id": item_id,
        "name": item.name,
        "price": item.price_nok,
        "category": item.category,
        "customizations": snapshot,
        "total": item_total(item.price_nok, &choices),
    })))
}

/// Check one `{key, value: [ids]}` against the item's category and the menu; hand every
/// accepted value to `accept`.
fn customization(
    tx: &Transaction<'_>,
    c: &Value,
    item: &MenuItem,
    values_per_key: &mut HashMap<i64, usize>,
    e: &mut Errors,
    mut accept: impl FnMut(i64, &Key, i64, &MenuValue),
) -> Result<(), StoreError> {
    let Some(c) = c.as_object() else {
        e.add("key", "must be an object with key and value");
        return Ok(());
    };
    let Some(key_id) = c.get("key").and_then(write::int) else {
        e.add("key", "must be a customization key id");
        return Ok(());
    };
    let Some(key) = menu_key(tx, key_id)? else {
        e.add("key", "not found");
        return Ok(());
    };
    if !item.valid_customizations.contains(&key_id) {
        e.add(
            "key",
            format!("{} is not a choice for {}", key.name, item.category),
        );
        return Ok(());
    }
    // The frontend sends a list; a single id is accepted too.
    let ids: Vec<Option<i64>> = match c.get("value") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => list.iter().map(write::int).collect(),
        Some(single) => vec![write::int(single)],
    };
    let count = values_per_key.entry(key_id).or_default();
    *count += ids.len();
    if !key.multiple_choice && *count > 1 {
        e.add("value", format!("{} takes only one value", key.name));
        return Ok(());
    }
    for id in ids {
        let Some(value_id) = id else {
            e.add("value", "must be a list of customization value ids");
            continue;
        };
        match menu_value(tx, value_id)? {
            None => e.add("value", format!("{value_id} not found")),
            Some(v) if v.belongs_to != key_id => e.add(
                "value",
                format!("{} is not a choice of {}", v.name, key.name),
            ),
            Some(v) => accept(key_id, &key, value_id, &v),
        }
    }
    Ok(())
}

fn menu_item(tx: &Transaction<'_>, id: i64) -> Result<Option<MenuItem>, StoreError> {
    Ok(tx
        .query_row(
            "SELECT i.name, i.price_nok, i.enable, c.name, c.valid_customizations \
             FROM item i LEFT JOIN category c ON c.id = i.category_id WHERE i.id = ?1",
            [id],
            |r| {
                let list: Option<String> = r.get(4)?;
                Ok(MenuItem {
                    name: r.get(0)?,
                    price_nok: r.get(1)?,
                    enable: r.get(2)?,
                    category: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
                    valid_customizations: parse_ids(list.as_deref().unwrap_or("[]")),
                })
            },
        )
        .optional()?)
}

fn menu_key(tx: &Transaction<'_>, id: i64) -> Result<Option<Key>, StoreError> {
    Ok(tx
        .query_row(
            "SELECT name, multiple_choice, label_color FROM customization_key WHERE id = ?1",
            [id],
            |r| {
                Ok(Key {
                    name: r.get(0)?,
                    multiple_choice: r.get(1)?,
                    label_color: r.get(2)?,
                })
            },
        )
        .optional()?)
}

fn menu_value(tx: &Transaction<'_>, id: i64) -> Result<Option<MenuValue>, StoreError> {
    Ok(tx
        .query_row(
            "SELECT name, price_increment_nok, constant_price, belongs_to \
             FROM customization_value WHERE id = ?1",
            [id],
            |r| {
                Ok(MenuValue {
                    name: r.get(0)?,
                    increment_nok: r.get(1)?,
                    constant_price: r.get(2)?,
                    belongs_to: r.get(3)?,
                })
            },
        )
        .optional()?)
}

/// `valid_customizations` as stored: a JSON list of ids (numbers or numeric strings, since the
/// shell may write either).
fn parse_ids(text: &str) -> Vec<i64> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(list)) => list.iter().filter_map(write::int).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(n: i64) -> Choice {
        Choice {
            increment_nok: n,
            constant_price: true,
        }
    }

    fn times(percent: i64) -> Choice {
        Choice {
            increment_nok: percent,
            constant_price: false,
        }
    }

    #[test]
    fn plain_item_costs_its_price() {
        assert_eq!(item_total(45, &[]), 45);
    }

    #[test]
    fn constant_values_add_and_others_multiply_then_round_up() {
        assert_eq!(item_total(45, &[add(5)]), 50);
        assert_eq!(item_total(45, &[add(5), times(150)]), 75);
        assert_eq!(item_total(45, &[times(110)]), 50); // 49.5 → 50
        assert_eq!(item_total(50, &[times(110)]), 55); // exactly 55, not 56
        assert_eq!(item_total(40, &[times(50), times(50)]), 10);
    }

    #[test]
    fn ids_are_read_from_numbers_or_strings() {
        assert_eq!(parse_ids("[1, \"2\"]"), vec![1, 2]);
        assert_eq!(parse_ids("garbage"), Vec::<i64>::new());
    }
}
