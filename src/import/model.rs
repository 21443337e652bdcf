//! The café as it will be written into Kaffediem: rows already converted and checked, with
//! the old ids.

use super::values::{self, Row};
use crate::store::write::Image;

/// `inserted_at` and `updated_at` in Kaffediem's stored form.
#[derive(Debug, Clone)]
pub struct Stamps {
    pub inserted_at: String,
    pub updated_at: String,
}

impl Stamps {
    /// The row's stamps; an unreadable one is replaced by the other (or by `now`) and named
    /// in `why`; a null one (nullable in most old tables) quietly so.
    pub fn of(row: &Row, now: &str, why: &mut Vec<String>) -> Stamps {
        let mut read = |column: &str| match values::timestamp(row.raw(column)) {
            Ok(stamp) => stamp,
            Err(text) => {
                why.push(format!("unreadable {column} {text}"));
                None
            }
        };
        let inserted = read("inserted_at");
        let updated = read("updated_at");
        let inserted_at = inserted
            .clone()
            .or_else(|| updated.clone())
            .unwrap_or_else(|| now.to_owned());
        let updated_at = updated.unwrap_or_else(|| inserted_at.clone());
        Stamps {
            inserted_at,
            updated_at,
        }
    }
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: i64,
    pub email: String,
    pub name: String,
    pub username: Option<String>,
    pub is_admin: bool,
    /// The old bcrypt hash as is (checked at login, replaced by Argon2id on the first one), or
    /// a locked marker no password matches.
    pub password_hash: String,
    pub stamps: Stamps,
}

#[derive(Debug, Clone)]
pub struct Message {
    pub id: i64,
    pub title: String,
    pub subtitle: Option<String>,
    pub stamps: Stamps,
}

#[derive(Debug, Clone)]
pub struct Status {
    pub id: i64,
    pub open: bool,
    pub show_message: bool,
    pub message_id: Option<i64>,
    pub stamps: Stamps,
}

#[derive(Debug, Clone)]
pub struct Category {
    pub id: i64,
    pub name: String,
    pub sort_order: i64,
    pub enable: bool,
    /// JSON array of key ids that exist in the import.
    pub valid_customizations: String,
    pub stamps: Stamps,
}

#[derive(Debug, Clone)]
pub struct Key {
    pub id: i64,
    pub name: String,
    pub enable: bool,
    pub label_color: Option<String>,
    pub default_value: Option<String>,
    pub multiple_choice: bool,
    pub sort_order: i64,
    pub stamps: Stamps,
}

#[derive(Debug, Clone)]
pub struct Value {
    pub id: i64,
    pub name: String,
    pub price_increment_nok: i64,
    pub constant_price: bool,
    pub belongs_to: i64,
    pub enable: bool,
    pub sort_order: i64,
    pub stamps: Stamps,
}

#[derive(Debug, Clone)]
pub struct Item {
    pub id: i64,
    pub name: String,
    pub price_nok: i64,
    pub category_id: i64,
    /// The `image` column: an image URL kept as the old frontend had it, or the stored
    /// file name of `upload`.
    pub image: Option<String>,
    /// Bytes imported from `--images`, stored like an upload.
    pub upload: Option<Image>,
    pub enable: bool,
    pub sort_order: i64,
    pub stamps: Stamps,
}

#[derive(Debug, Clone)]
pub struct Order {
    pub id: i64,
    pub uuid: String,
    pub customer_id: Option<i64>,
    pub day_id: i64,
    pub state: String,
    pub missing_information: bool,
    /// The Kaffediem snapshot (SPEC 4) as JSON text.
    pub items: String,
    pub total_nok: i64,
    pub stamps: Stamps,
}

/// Everything to write, in the order it is written (referenced rows first).
#[derive(Debug, Default)]
pub struct Cafe {
    pub users: Vec<User>,
    pub messages: Vec<Message>,
    pub statuses: Vec<Status>,
    pub categories: Vec<Category>,
    pub keys: Vec<Key>,
    pub values: Vec<Value>,
    pub items: Vec<Item>,
    pub orders: Vec<Order>,
    /// Users skipped as a duplicate email → the user kept with that email: their orders
    /// follow the person, so the customer's history stays whole.
    pub merged_users: std::collections::HashMap<i64, i64>,
}
