//! The menu rows an order is checked against, read leniently: rows typed in with the `sqlite3`
//! shell may hold a name as a BLOB or a price as text. A name is read the way records show it
//! (UTF-8, lossily), so the order copies what the customer saw on the menu; a price that is
//! not a number, and a reference to a row that is gone, are that line's 422, never a 500.

use std::collections::HashMap;

use rusqlite::{OptionalExtension, Transaction};
use serde_json::Value;

use super::price::stored_nok;
use crate::store::records::{boolean, int, text};
use crate::store::{write, StoreError};

/// An orderable item as the order snapshot needs it.
pub struct MenuItem {
    pub name: String,
    /// `None`: the stored price is not a number (see [`stored_nok`]).
    pub price_nok: Option<i64>,
    pub enable: bool,
    /// `None`: the item's category is gone (deleted from the shell).
    pub category: Option<String>,
    pub valid_customizations: Vec<i64>,
}

pub struct Key {
    pub name: String,
    pub multiple_choice: bool,
    pub label_color: Option<String>,
}

pub struct MenuValue {
    pub name: String,
    /// `None`: the stored increment is not a number.
    pub increment_nok: Option<i64>,
    pub constant_price: bool,
    /// `None`: junk in the column (it then belongs to no key).
    pub belongs_to: Option<i64>,
}

/// The keys and value counts one placement has looked at, read once each: an order names the
/// same key on many lines, and the frontend names a multiple-choice key once per value.
#[derive(Default)]
pub struct Lookup {
    keys: HashMap<i64, Option<std::rc::Rc<Key>>>,
    /// How many values each key has in the menu (`None`: not read yet). Bounds how many
    /// values one line may choose of a key, before any of them is looked up.
    value_counts: Option<HashMap<i64, usize>>,
}

impl Lookup {
    pub fn key(
        &mut self,
        tx: &Transaction<'_>,
        id: i64,
    ) -> Result<Option<std::rc::Rc<Key>>, StoreError> {
        if let Some(key) = self.keys.get(&id) {
            return Ok(key.clone());
        }
        let key = menu_key(tx, id)?.map(std::rc::Rc::new);
        self.keys.insert(id, key.clone());
        Ok(key)
    }

    /// The number of values `key` has in the menu.
    pub fn value_count(&mut self, tx: &Transaction<'_>, key: i64) -> Result<usize, StoreError> {
        if self.value_counts.is_none() {
            let mut stmt = tx.prepare_cached(
                "SELECT belongs_to, COUNT(*) FROM customization_value GROUP BY belongs_to",
            )?;
            let rows = stmt.query_map([], |r| Ok((int(r, 0), int(r, 1))))?;
            let mut counts = HashMap::new();
            for row in rows {
                let (key, n) = row?;
                *counts.entry(key).or_insert(0) += usize::try_from(n).unwrap_or(0);
            }
            self.value_counts = Some(counts);
        }
        Ok(self
            .value_counts
            .as_ref()
            .and_then(|c| c.get(&key))
            .copied()
            .unwrap_or(0))
    }
}

pub fn menu_item(tx: &Transaction<'_>, id: i64) -> Result<Option<MenuItem>, StoreError> {
    Ok(tx
        .prepare_cached(
            "SELECT i.name, i.price_nok, i.enable, c.id, c.name, c.valid_customizations \
             FROM item i LEFT JOIN category c ON c.id = i.category_id WHERE i.id = ?1",
        )?
        .query_row([id], |r| {
            let category = match r.get_ref(3)? {
                rusqlite::types::ValueRef::Null => None,
                _ => Some(text(r, 4)),
            };
            Ok(MenuItem {
                name: text(r, 0),
                price_nok: stored_nok(r.get_ref(1)?),
                enable: boolean(r, 2),
                category,
                valid_customizations: parse_ids(&text(r, 5)),
            })
        })
        .optional()?)
}

fn menu_key(tx: &Transaction<'_>, id: i64) -> Result<Option<Key>, StoreError> {
    Ok(tx
        .prepare_cached(
            "SELECT name, multiple_choice, label_color FROM customization_key WHERE id = ?1",
        )?
        .query_row([id], |r| {
            Ok(Key {
                name: text(r, 0),
                multiple_choice: boolean(r, 1),
                label_color: match r.get_ref(2)? {
                    rusqlite::types::ValueRef::Null => None,
                    _ => Some(text(r, 2)),
                },
            })
        })
        .optional()?)
}

pub fn menu_value(tx: &Transaction<'_>, id: i64) -> Result<Option<MenuValue>, StoreError> {
    Ok(tx
        .prepare_cached(
            "SELECT name, price_increment_nok, constant_price, belongs_to \
             FROM customization_value WHERE id = ?1",
        )?
        .query_row([id], |r| {
            Ok(MenuValue {
                name: text(r, 0),
                increment_nok: stored_nok(r.get_ref(1)?),
                constant_price: boolean(r, 2),
                belongs_to: stored_nok(r.get_ref(3)?),
            })
        })
        .optional()?)
}

/// `valid_customizations` as stored: a JSON list of ids (numbers or numeric strings, since the
/// shell may write either).
pub fn parse_ids(text: &str) -> Vec<i64> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(list)) => list.iter().filter_map(write::int).collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_read_from_numbers_or_strings() {
        assert_eq!(parse_ids("[1, \"2\"]"), vec![1, 2]);
        assert_eq!(parse_ids("garbage"), Vec::<i64>::new());
    }
}
