//! Orders: the old `items_data` snapshot becomes Kaffediem's (SPEC 4), with the prices and the
//! total the customer was charged. The old frontend priced with floating point; Kaffediem
//! prices whole NOK exactly (SPEC 5.2). Where the two give different totals, the order keeps
//! what was charged and the report says so.

use std::collections::{BTreeMap, HashMap, HashSet};

use jiff::tz::TimeZone;
use rusqlite::Connection;
use serde_json::{json, Value as Json};

use super::model::{Cafe, Order, Stamps};
use super::report::{Progress, Report};
use super::values;
use super::{source, ImportError};
use crate::store::orders::price::{self, Choice};
use crate::store::orders::OrderState;

/// What the snapshot conversion looks up in the imported menu.
struct Menu {
    /// Value id → `constant_price` (the old snapshot does not record it).
    constant: HashMap<i64, bool>,
    /// Key id → `label_color` (stored for completeness; served from the current key).
    colors: HashMap<i64, Option<String>>,
    /// Item id → (name, price), for a snapshot line that lacks them.
    items: HashMap<i64, (String, i64)>,
}

pub fn read(
    conn: &Connection,
    now: &str,
    time_zone: &TimeZone,
    cafe: &mut Cafe,
    report: &mut Report,
    progress: &mut Progress,
) -> Result<(), ImportError> {
    let menu = Menu {
        constant: cafe
            .values
            .iter()
            .map(|v| (v.id, v.constant_price))
            .collect(),
        colors: cafe
            .keys
            .iter()
            .map(|k| (k.id, k.label_color.clone()))
            .collect(),
        items: cafe
            .items
            .iter()
            .map(|i| (i.id, (i.name.clone(), i.price_nok)))
            .collect(),
    };
    let total = source::count(conn, "order")?;
    let merged = cafe.merged_users.clone();
    let mut uuids = HashSet::new();
    // (local day, day_id) → orders, for the note on numbers the old backend handed out twice.
    let mut days: BTreeMap<(String, i64), Vec<i64>> = BTreeMap::new();
    let mut done = 0;
    source::each_row(conn, "order", |row| {
        done += 1;
        progress.tick("reading orders", done, total);
        report.read("order");
        let Some(id) = row.int("id") else {
            report.skipped("order", "?", "no readable id");
            return Ok(());
        };
        let mut why = Vec::new();
        let stamps = Stamps::of(&row, now, &mut why);
        let mut uuid = row.text("uuid").unwrap_or_default().trim().to_owned();
        if uuid.is_empty() || uuids.contains(&uuid) {
            let fresh = uuid::Uuid::new_v4().to_string();
            why.push(if uuid.is_empty() {
                format!("no uuid; given {fresh}")
            } else {
                format!("uuid {uuid} used twice; given {fresh}")
            });
            uuid = fresh;
        }
        uuids.insert(uuid.clone());
        let day_id = row.int("day_id").unwrap_or_else(|| {
            why.push(format!(
                "unreadable day_id {:?}; 0",
                row.text("day_id").unwrap_or_default()
            ));
            0
        });
        if matches!(row.raw("inserted_at"), rusqlite::types::ValueRef::Null) {
            why.push(format!("no inserted_at; stamped {}", stamps.inserted_at));
        }
        let mut customer_id = match row.raw("customer_id") {
            rusqlite::types::ValueRef::Null => None,
            raw => values::int(raw).or_else(|| {
                why.push(format!(
                    "unreadable customer_id {:?}; none",
                    values::text(raw).unwrap_or_default()
                ));
                None
            }),
        };
        if let Some(kept) = customer_id.and_then(|c| merged.get(&c)) {
            why.push(format!(
                "customer {} was a duplicate account of user {kept}; now user {kept}'s",
                customer_id.unwrap_or_default()
            ));
            customer_id = Some(*kept);
        }
        let stored_state = row.text("state").unwrap_or_default();
        let state = stored_state.trim().to_lowercase();
        let state = if OrderState::parse(&state).is_some() {
            state
        } else {
            why.push(format!("unknown state {stored_state:?}; dispatched"));
            "dispatched".to_owned()
        };
        let (items, total_nok) = snapshot(row.text("items_data"), &menu, &mut why);
        if let Some(day) = local_day(&stamps.inserted_at, time_zone) {
            days.entry((day, day_id)).or_default().push(id);
        }
        cafe.orders.push(Order {
            id,
            uuid,
            customer_id,
            day_id,
            state,
            missing_information: row.flag("missing_information", false),
            items,
            total_nok,
            stamps,
        });
        report.kept("order", id, why);
        Ok(())
    })?;
    progress.done();
    let shared: Vec<_> = days.iter().filter(|(_, ids)| ids.len() > 1).collect();
    if !shared.is_empty() {
        let examples: Vec<String> = shared
            .iter()
            .take(5)
            .map(|((day, n), ids)| {
                let shown: Vec<String> = ids.iter().take(4).map(i64::to_string).collect();
                let more = if ids.len() > 4 { ", …" } else { "" };
                format!("{day} #{n}: orders {}{more}", shown.join(", "))
            })
            .collect();
        report.notes.push(format!(
            "{} day numbers were handed to more than one order of the same day by the old backend; kept as they were (e.g. {})",
            shared.len(),
            examples.join(", ")
        ));
    }
    Ok(())
}

fn local_day(stamp: &str, tz: &TimeZone) -> Option<String> {
    let ts: jiff::Timestamp = stamp.parse().ok()?;
    Some(ts.to_zoned(tz.clone()).date().to_string())
}

/// The Kaffediem snapshot and total of one order's `items_data`.
fn snapshot(stored: Option<String>, menu: &Menu, why: &mut Vec<String>) -> (String, i64) {
    let Some(stored) = stored.filter(|s| !s.trim().is_empty()) else {
        why.push("no items_data; no items".into());
        return ("[]".into(), 0);
    };
    let lines = match serde_json::from_str::<Json>(&stored) {
        Ok(Json::Array(lines)) => lines,
        Ok(Json::Null) => {
            why.push("items_data is null; no items".into());
            return ("[]".into(), 0);
        }
        _ => {
            let shown: String = stored.chars().take(60).collect();
            why.push(format!(
                "items_data is not a JSON list ({shown:?}); no items"
            ));
            return ("[]".into(), 0);
        }
    };
    let mut out = Vec::with_capacity(lines.len());
    let mut total: i64 = 0;
    for (i, entry) in lines.iter().enumerate() {
        let Some((line, charged)) = line(i, entry, menu, why) else {
            continue;
        };
        total = total.saturating_add(charged);
        out.push(line);
    }
    (Json::Array(out).to_string(), total)
}

/// One item line: `None` (and a reason) when it is not an item at all.
fn line(i: usize, entry: &Json, menu: &Menu, why: &mut Vec<String>) -> Option<(Json, i64)> {
    let Some(obj) = entry.as_object() else {
        why.push(format!("line {i} is not an item ({entry}); dropped"));
        return None;
    };
    let item_id = values::json_id(obj.get("item_id"));
    let known = item_id.and_then(|id| menu.items.get(&id));
    let name = match obj.get("name").and_then(Json::as_str) {
        Some(n) => n.to_owned(),
        None => match known {
            Some((n, _)) => {
                why.push(format!(
                    "line {i} has no name; the item's current name {n:?}"
                ));
                n.clone()
            }
            None => {
                why.push(format!("line {i} has no name and no known item; \"?\""));
                "?".to_owned()
            }
        },
    };
    let price_float = match values::json_number(obj.get("price")) {
        Some(p) => p,
        None => {
            let p = known.map_or(0, |(_, p)| *p);
            why.push(format!(
                "line {i} ({name}) has no price; the item's current {p} NOK"
            ));
            p as f64
        }
    };
    let price_nok = nok(price_float, &format!("line {i} ({name}) price"), why);
    let mut customizations = Vec::new();
    let mut choices = Vec::new();
    let (mut adds, mut factor) = (0.0_f64, 1.0_f64);
    let listed = obj.get("customizations").and_then(Json::as_array);
    for c in listed.into_iter().flatten() {
        let Some(c) = c.as_object() else {
            why.push(format!(
                "line {i} ({name}): a customization is not an object; dropped"
            ));
            continue;
        };
        let key_id = values::json_id(c.get("key_id"));
        let value_id = values::json_id(c.get("value_id"));
        let change = values::json_number(c.get("price_change")).unwrap_or(0.0);
        let constant = match value_id.and_then(|v| menu.constant.get(&v)) {
            Some(constant) => *constant,
            None => {
                let stored = c.get("constant_price").and_then(Json::as_bool);
                if stored.is_none() {
                    why.push(format!(
                        "line {i} ({name}): value {value_id:?} is gone from the menu; its price change counted as NOK"
                    ));
                }
                stored.unwrap_or(true)
            }
        };
        if constant {
            adds += change;
        } else {
            factor *= change / 100.0;
        }
        let change_nok = nok(change, &format!("line {i} ({name}) price_change"), why);
        choices.push(Choice {
            increment_nok: change_nok,
            constant_price: constant,
        });
        let color = key_id.and_then(|k| menu.colors.get(&k).cloned().flatten());
        customizations.push(json!({
            "key_id": key_id,
            "key_name": c.get("key_name").cloned().unwrap_or(Json::Null),
            "value_id": value_id,
            "value_name": c.get("value_name").cloned().unwrap_or(Json::Null),
            "price_change": change_nok,
            "constant_price": constant,
            "label_color": color,
        }));
    }
    // What the old frontend charged: its rule, in floating point.
    let charged_float = ((price_float + adds) * factor).ceil();
    let exact = price::item_total(price_nok, &choices);
    let charged = if charged_float.is_finite() && charged_float.abs() < 9.0e15 {
        charged_float as i64
    } else {
        exact.unwrap_or(0)
    };
    if exact != Some(charged) {
        let exact = exact.map_or("no total".to_owned(), |e| format!("{e} NOK"));
        why.push(format!(
            "line {i} ({name}): kept the {charged} NOK charged; SPEC 5.2 on whole-NOK prices gives {exact}"
        ));
    }
    Some((
        json!({
            "item_id": item_id,
            "name": name,
            "price": price_nok,
            "category": obj.get("category").and_then(Json::as_str).unwrap_or_default(),
            "customizations": customizations,
            "total": charged,
        }),
        charged,
    ))
}

/// A float price in whole NOK; a fraction is named.
fn nok(value: f64, what: &str, why: &mut Vec<String>) -> i64 {
    let whole = values::whole_nok(value).unwrap_or(0);
    if whole as f64 != value {
        why.push(format!("{what} {value} rounded to {whole} NOK"));
    }
    whole
}
