//! The menu, the messages and the status: old rows to Kaffediem rows, each change named.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use rusqlite::Connection;

use super::model::{Cafe, Category, Item, Key, Message, Stamps, Status, Value};
use super::report::Report;
use super::values::{self, Row};
use super::{images, source, ImportError};
use crate::store::orders::price;

/// A price column as whole NOK: the integer column of the last migration, or the decimal
/// column of older files. Fractions are rounded and named; a price beyond what Kaffediem
/// accepts (SPEC 10) becomes 0 with the row disabled.
fn price(row: &Row, columns: &[&str], what: &str, why: &mut Vec<String>, enable: &mut bool) -> i64 {
    let Some(column) = columns.iter().find(|c| row.has(c)) else {
        why.push(format!("no {what} column; 0 NOK"));
        return 0;
    };
    let raw = row.raw(column);
    let Some(number) = values::number(raw) else {
        if !matches!(raw, rusqlite::types::ValueRef::Null) {
            why.push(format!(
                "unreadable {column} {:?}; 0 NOK",
                values::text(raw).unwrap_or_default()
            ));
        }
        return 0;
    };
    match values::whole_nok(number) {
        Some(nok) if price::in_bounds(nok) => {
            if nok as f64 != number {
                why.push(format!("{column} {number} rounded to {nok} NOK"));
            }
            nok
        }
        _ => {
            why.push(format!(
                "{column} {number} is beyond ±{} NOK; set to 0 and disabled",
                price::MAX_NOK
            ));
            *enable = false;
            0
        }
    }
}

fn id(row: &Row, table: &str, report: &mut Report) -> Option<i64> {
    report.read(table);
    let id = row.int("id");
    if id.is_none() {
        report.skipped(table, "?", "no readable id");
    }
    id
}

pub fn read(
    conn: &Connection,
    now: &str,
    images_dir: Option<&Path>,
    max_image_bytes: usize,
    cafe: &mut Cafe,
    report: &mut Report,
) -> Result<(), ImportError> {
    source::each_row(conn, "message", |row| {
        let Some(id) = id(&row, "message", report) else {
            return Ok(());
        };
        let mut why = Vec::new();
        let stamps = Stamps::of(&row, now, &mut why);
        cafe.messages.push(Message {
            id,
            title: row.text("title").unwrap_or_default(),
            subtitle: row.text("subtitle"),
            stamps,
        });
        report.kept("message", id, why);
        Ok(())
    })?;
    let messages: HashSet<i64> = cafe.messages.iter().map(|m| m.id).collect();

    source::each_row(conn, "status", |row| {
        let Some(id) = id(&row, "status", report) else {
            return Ok(());
        };
        let mut why = Vec::new();
        let stamps = Stamps::of(&row, now, &mut why);
        let mut message_id = row.int("message_id");
        if let Some(m) = message_id.filter(|m| !messages.contains(m)) {
            why.push(format!("message {m} does not exist; no message"));
            message_id = None;
        }
        cafe.statuses.push(Status {
            id,
            open: row.flag("open", false),
            show_message: row.flag("show_message", false),
            message_id,
            stamps,
        });
        report.kept("status", id, why);
        Ok(())
    })?;

    // Keys before categories (which list them) and values (which belong to them).
    let mut key_rows = Vec::new();
    source::each_row(conn, "customization_key", |row| {
        key_rows.push(row);
        Ok(())
    })?;
    let mut key_ids = HashSet::new();
    for row in &key_rows {
        if let Some(id) = row.int("id") {
            key_ids.insert(id);
        }
    }
    source::each_row(conn, "customization_value", |row| {
        let Some(id) = id(&row, "customization_value", report) else {
            return Ok(());
        };
        let belongs_to = match row.int("belongs_to") {
            Some(key) if key_ids.contains(&key) => key,
            Some(key) => {
                report.skipped(
                    "customization_value",
                    id,
                    &format!(
                        "value of an unknown key {key} ({:?})",
                        row.text("name").unwrap_or_default()
                    ),
                );
                return Ok(());
            }
            None => {
                report.skipped("customization_value", id, "belongs to no key");
                return Ok(());
            }
        };
        let mut why = Vec::new();
        let stamps = Stamps::of(&row, now, &mut why);
        let mut enable = row.flag("enable", false);
        let increment = price(
            &row,
            &["price_increment_nok", "price_increment"],
            "price increment",
            &mut why,
            &mut enable,
        );
        cafe.values.push(Value {
            id,
            name: row.text("name").unwrap_or_default(),
            price_increment_nok: increment,
            constant_price: row.flag("constant_price", false),
            belongs_to,
            enable,
            sort_order: row.int("sort_order").unwrap_or(0),
            stamps,
        });
        report.kept("customization_value", id, why);
        Ok(())
    })?;
    let value_key: HashMap<i64, i64> = cafe.values.iter().map(|v| (v.id, v.belongs_to)).collect();

    for row in key_rows {
        let Some(id) = id(&row, "customization_key", report) else {
            continue;
        };
        let mut why = Vec::new();
        let stamps = Stamps::of(&row, now, &mut why);
        let default_value = match row.text("default_value").map(|d| d.trim().to_owned()) {
            None => None,
            Some(d) if d.is_empty() => None,
            Some(d) => match d.parse::<i64>() {
                Ok(v) if value_key.get(&v) == Some(&id) => Some(v.to_string()),
                _ => {
                    why.push(format!(
                        "default value {d:?} is not a value of this key; none"
                    ));
                    None
                }
            },
        };
        cafe.keys.push(Key {
            id,
            name: row.text("name").unwrap_or_default(),
            enable: row.flag("enable", false),
            label_color: row.text("label_color").filter(|c| !c.trim().is_empty()),
            default_value,
            multiple_choice: row.flag("multiple_choice", false),
            sort_order: row.int("sort_order").unwrap_or(0),
            stamps,
        });
        report.kept("customization_key", id, why);
    }

    source::each_row(conn, "category", |row| {
        let Some(id) = id(&row, "category", report) else {
            return Ok(());
        };
        let mut why = Vec::new();
        let stamps = Stamps::of(&row, now, &mut why);
        let stored = row.text("valid_customizations").unwrap_or_default();
        let listed = if stored.trim().is_empty() {
            Vec::new()
        } else {
            match values::id_list(&stored) {
                Ok(ids) => ids,
                Err(e) => {
                    why.push(format!("valid_customizations {e}; none"));
                    Vec::new()
                }
            }
        };
        let mut valid = Vec::new();
        for key in listed {
            if !key_ids.contains(&key) {
                why.push(format!(
                    "valid_customizations names unknown key {key}; dropped"
                ));
            } else if !valid.contains(&key) {
                valid.push(key);
            }
        }
        cafe.categories.push(Category {
            id,
            name: row.text("name").unwrap_or_default(),
            sort_order: row.int("sort_order").unwrap_or(0),
            enable: row.flag("enable", false),
            valid_customizations: serde_json::to_string(&valid).unwrap_or_else(|_| "[]".into()),
            stamps,
        });
        report.kept("category", id, why);
        Ok(())
    })?;
    let categories: HashSet<i64> = cafe.categories.iter().map(|c| c.id).collect();

    source::each_row(conn, "item", |row| {
        let Some(id) = id(&row, "item", report) else {
            return Ok(());
        };
        let name = row.text("name").unwrap_or_default();
        let category_id = match row.int("category_id") {
            Some(c) if categories.contains(&c) => c,
            Some(c) => {
                report.skipped(
                    "item",
                    id,
                    &format!("{name:?}: its category {c} does not exist"),
                );
                return Ok(());
            }
            None => {
                report.skipped("item", id, &format!("{name:?}: item without category"));
                return Ok(());
            }
        };
        let mut why = Vec::new();
        let stamps = Stamps::of(&row, now, &mut why);
        let mut enable = row.flag("enable", false);
        let price_nok = price(
            &row,
            &["price_nok", "price"],
            "price",
            &mut why,
            &mut enable,
        );
        let (image, upload) = match row.text("image").map(|i| i.trim().to_owned()) {
            None => (None, None),
            Some(i) if i.is_empty() => (None, None),
            Some(i) => match images::resolve(&i, images_dir, max_image_bytes) {
                images::Resolved::Url(url) => (Some(url), None),
                images::Resolved::Stored(upload) => {
                    report.images += 1;
                    (Some(upload.filename.clone()), Some(upload))
                }
                images::Resolved::Missing(reason) => {
                    why.push(format!("image {i:?} {reason}; no image"));
                    (None, None)
                }
            },
        };
        cafe.items.push(Item {
            id,
            name,
            price_nok,
            category_id,
            image,
            upload,
            enable,
            sort_order: row.int("sort_order").unwrap_or(0),
            stamps,
        });
        report.kept("item", id, why);
        Ok(())
    })?;
    Ok(())
}
