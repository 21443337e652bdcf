//! Validated creates, updates and deletes of the catalog, message, status and order rows, each
//! meant to run inside one writer transaction (`store.writer.write(|tx| ...)`). Bodies are the
//! JSON (or multipart text) the frontend sends; what comes back is the record as
//! [`records::get`] renders it, read inside the same transaction.
//!
//! Server-owned fields (`id`, `inserted_at`, `updated_at`, `category_name`, order `items`,
//! `day_id`, `uuid`, `total_nok`) and unknown fields are ignored, never an error. Placing an
//! order is a different job with its own rules: see [`super::orders`].

use jiff::Timestamp;
use rusqlite::types::Value as Sql;
use rusqlite::{OptionalExtension, Transaction};
use serde_json::{json, Map, Value};

use super::records::{self, format_timestamp, Collection};
use super::{orders, RecordCtx, StoreError};

/// Why a write did not happen. The transaction rolls back in every case.
#[derive(Debug)]
pub enum WriteError {
    /// The body breaks a rule: `{"field": ["message", ...]}` (values may nest, as order items do).
    Invalid(Map<String, Value>),
    /// The record to update or delete does not exist.
    NotFound,
    /// The database failed (or cannot take writes right now).
    Store(StoreError),
}

impl From<StoreError> for WriteError {
    fn from(e: StoreError) -> Self {
        WriteError::Store(e)
    }
}

impl From<rusqlite::Error> for WriteError {
    /// Through [`StoreError`]'s own conversion, which tells "cannot write now" from a bug.
    fn from(e: rusqlite::Error) -> Self {
        WriteError::Store(StoreError::from(e))
    }
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WriteError::Invalid(errors) => write!(f, "invalid: {}", Value::Object(errors.clone())),
            WriteError::NotFound => f.write_str("not found"),
            WriteError::Store(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for WriteError {}

/// Collects field errors in the `{"field": ["message"]}` shape.
#[derive(Debug, Default)]
pub struct Errors(Map<String, Value>);

impl Errors {
    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        let list = self
            .0
            .entry(field.to_owned())
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(list) = list {
            list.push(Value::String(message.into()));
        }
    }

    /// Put a nested value (an object, or a list of per-entry objects) under `field`.
    pub fn nest(&mut self, field: &str, value: Value) {
        self.0.insert(field.to_owned(), value);
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(())` when nothing was added, else the 422 error.
    pub fn check(self) -> Result<(), WriteError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(WriteError::Invalid(self.0))
        }
    }

    pub fn into_map(self) -> Map<String, Value> {
        self.0
    }
}

/// A single-field 422.
pub fn invalid(field: &str, message: &str) -> WriteError {
    let mut errors = Errors::default();
    errors.add(field, message);
    WriteError::Invalid(errors.into_map())
}

/// An uploaded item image whose bytes were checked to be an image format we serve.
#[derive(Debug, Clone)]
pub struct Image {
    /// Stored name, served at `/api/files/item/{id}/{filename}`.
    pub filename: String,
    pub content_type: &'static str,
    pub bytes: Vec<u8>,
    /// Hex SHA-256 prefix of the bytes; the HTTP `ETag`.
    pub etag: String,
}

/// The type a body field must have; text parts of a multipart body are coerced to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    NullableText,
    Int,
    NullableInt,
    Bool,
    /// `category.valid_customizations`: a list of customization key ids.
    KeyIds,
    /// `customization_key.default_value`: a value id, kept as the string the frontend sends.
    ValueId,
    /// `order.state`.
    State,
}

/// A column a client may write.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub kind: Kind,
    /// Must be present (and not null) on create.
    pub required: bool,
}

const fn field(name: &'static str, kind: Kind, required: bool) -> Field {
    Field {
        name,
        kind,
        required,
    }
}

use Kind::*;

const CATEGORY: &[Field] = &[
    field("name", Text, true),
    field("sort_order", Int, false),
    field("enable", Bool, false),
    field("valid_customizations", KeyIds, false),
];

const ITEM: &[Field] = &[
    field("name", Text, true),
    field("price_nok", Int, true),
    field("category_id", Int, true),
    field("enable", Bool, false),
    field("sort_order", Int, false),
];

const CUSTOMIZATION_KEY: &[Field] = &[
    field("name", Text, true),
    field("enable", Bool, false),
    field("label_color", NullableText, false),
    field("default_value", ValueId, false),
    field("multiple_choice", Bool, false),
    field("sort_order", Int, false),
];

const CUSTOMIZATION_VALUE: &[Field] = &[
    field("name", Text, true),
    field("price_increment_nok", Int, false),
    field("constant_price", Bool, false),
    field("belongs_to", Int, true),
    field("enable", Bool, false),
    field("sort_order", Int, false),
];

const MESSAGE: &[Field] = &[
    field("title", Text, false),
    field("subtitle", NullableText, false),
];

const STATUS: &[Field] = &[
    field("open", Bool, false),
    field("show_message", Bool, false),
    field("message_id", NullableInt, false),
];

const ORDER: &[Field] = &[
    field("customer_id", NullableInt, false),
    field("state", State, false),
    field("missing_information", Bool, false),
];

/// The writable fields of `collection` (for `order`: what an admin may PATCH).
pub fn fields(collection: Collection) -> &'static [Field] {
    match collection {
        Collection::Category => CATEGORY,
        Collection::Item => ITEM,
        Collection::CustomizationKey => CUSTOMIZATION_KEY,
        Collection::CustomizationValue => CUSTOMIZATION_VALUE,
        Collection::Message => MESSAGE,
        Collection::Status => STATUS,
        Collection::Order => ORDER,
    }
}

/// Convert one body value to its column value, or say what is wrong with it. Strings are
/// accepted for numbers and booleans because multipart text parts (and some form code) send
/// `"45"` and `"true"`.
pub fn coerce(kind: Kind, value: &Value) -> Result<Sql, &'static str> {
    match kind {
        Kind::Text => match value {
            Value::String(s) => Ok(Sql::Text(s.clone())),
            _ => Err("must be a string"),
        },
        Kind::NullableText => match value {
            Value::Null => Ok(Sql::Null),
            Value::String(s) => Ok(Sql::Text(s.clone())),
            _ => Err("must be a string or null"),
        },
        Kind::Int => int(value).map(Sql::Integer).ok_or("must be an integer"),
        Kind::NullableInt => match value {
            Value::Null => Ok(Sql::Null),
            Value::String(s) if s.trim().is_empty() || s == "null" => Ok(Sql::Null),
            other => int(other)
                .map(Sql::Integer)
                .ok_or("must be an integer or null"),
        },
        Kind::Bool => boolean(value)
            .map(|b| Sql::Integer(b.into()))
            .ok_or("must be true or false"),
        Kind::KeyIds => key_ids(value)
            .map(|ids| Sql::Text(json!(ids).to_string()))
            .ok_or("must be a list of customization key ids"),
        Kind::ValueId => match value {
            Value::Null => Ok(Sql::Null),
            Value::String(s) => Ok(Sql::Text(s.clone())),
            Value::Number(n) if n.is_i64() => Ok(Sql::Text(n.to_string())),
            _ => Err("must be a customization value id (a string) or null"),
        },
        Kind::State => match value {
            Value::String(s) if super::orders::OrderState::parse(s).is_some() => {
                Ok(Sql::Text(s.clone()))
            }
            _ => Err("must be one of received, production, completed, dispatched"),
        },
    }
}

/// An integer from a JSON number without a fraction, or a string holding one.
pub fn int(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn boolean(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_i64() {
            Some(0) => Some(false),
            Some(1) => Some(true),
            _ => None,
        },
        Value::String(s) => match s.trim() {
            "true" | "1" | "on" => Some(true),
            "false" | "0" | "off" | "" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

/// A list of ids; a string is read as JSON (`"[1,2]"`) or comma-separated (`"1,2"`), which
/// is how a multipart form sends a list.
fn key_ids(value: &Value) -> Option<Vec<i64>> {
    match value {
        Value::Null => Some(Vec::new()),
        Value::Array(list) => list.iter().map(int).collect(),
        Value::String(s) => {
            let s = s.trim();
            if s.starts_with('[') {
                key_ids(&serde_json::from_str(s).ok()?)
            } else if s.is_empty() {
                Some(Vec::new())
            } else {
                s.split(',').map(|p| p.trim().parse().ok()).collect()
            }
        }
        _ => None,
    }
}

/// Read the writable fields of `body`: the columns to set, or the 422. With `create`, required
/// fields must be present.
fn columns(
    collection: Collection,
    body: &Map<String, Value>,
    create: bool,
) -> Result<Vec<(&'static str, Sql)>, WriteError> {
    let mut errors = Errors::default();
    let mut columns = Vec::new();
    for f in fields(collection) {
        let given = body
            .get(f.name)
            .or_else(|| alias(collection, f.name).and_then(|a| body.get(a)));
        match given {
            None if create && f.required => errors.add(f.name, "can't be blank"),
            Some(Value::Null) if f.required => errors.add(f.name, "can't be blank"),
            // Null for a column with a default means "no value": the default on create, the
            // current value on update (forms send null for fields left empty).
            None | Some(Value::Null) if !nullable(f.kind) => {}
            None => {}
            Some(value) => match coerce(f.kind, value) {
                Ok(Sql::Text(t)) if f.required && t.trim().is_empty() => {
                    errors.add(f.name, "can't be blank")
                }
                Ok(Sql::Integer(n)) if n < 0 && f.name == "price_nok" => {
                    errors.add(f.name, "must be 0 or more")
                }
                // SPEC 10: prices and increments stay within ±100 000 NOK, so no order total
                // can come near overflowing (and a typo of three extra zeros is caught).
                Ok(Sql::Integer(n)) if is_price(f.name) && !orders::in_bounds(n) => {
                    errors.add(f.name, format!("must be within ±{} NOK", orders::MAX_NOK))
                }
                Ok(sql) => columns.push((f.name, sql)),
                Err(message) => errors.add(f.name, message),
            },
        }
    }
    errors.check()?;
    Ok(columns)
}

/// The columns holding NOK (a price, or a value's increment: NOK or a percentage).
fn is_price(column: &str) -> bool {
    matches!(column, "price_nok" | "price_increment_nok")
}

/// Older frontends name two references without the `_id`: items send `category`, the status
/// sends `message`. Read them when the canonical name is absent.
fn alias(collection: Collection, field: &str) -> Option<&'static str> {
    match (collection, field) {
        (Collection::Item, "category_id") => Some("category"),
        (Collection::Status, "message_id") => Some("message"),
        _ => None,
    }
}

/// Whether null is a value of this kind (rather than "not given").
fn nullable(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::NullableText | Kind::NullableInt | Kind::ValueId | Kind::KeyIds
    )
}

fn exists(tx: &Transaction<'_>, collection: Collection, id: i64) -> Result<bool, StoreError> {
    let sql = format!("SELECT 1 FROM {} WHERE id = ?1", collection.table());
    Ok(tx
        .prepare_cached(&sql)?
        .query_row([id], |_| Ok(()))
        .optional()?
        .is_some())
}

/// References the new values make must point at existing rows.
fn check_references(
    tx: &Transaction<'_>,
    collection: Collection,
    columns: &[(&'static str, Sql)],
) -> Result<(), WriteError> {
    let mut errors = Errors::default();
    for (name, value) in columns {
        let target = match (collection, *name) {
            (Collection::Item, "category_id") => Collection::Category,
            (Collection::CustomizationValue, "belongs_to") => Collection::CustomizationKey,
            (Collection::Status, "message_id") => Collection::Message,
            (Collection::Category, "valid_customizations") => {
                if let Sql::Text(list) = value {
                    let ids: Vec<i64> = serde_json::from_str(list).unwrap_or_default();
                    for id in ids {
                        if !exists(tx, Collection::CustomizationKey, id)? {
                            errors.add(name, format!("customization key {id} not found"));
                        }
                    }
                }
                continue;
            }
            _ => continue,
        };
        if let Sql::Integer(id) = value {
            if !exists(tx, target, *id)? {
                errors.add(name, "not found");
            }
        }
    }
    errors.check()
}

/// Insert a record from `body` and return it as the API renders it. `image` only for items.
pub fn create(
    tx: &Transaction<'_>,
    collection: Collection,
    body: &Map<String, Value>,
    image: Option<&Image>,
    now: Timestamp,
    ctx: &RecordCtx,
) -> Result<Value, WriteError> {
    if collection == Collection::Order {
        // Orders carry a snapshot and a day number; they go through `orders::place`.
        return Err(invalid("items", "orders are placed with their items"));
    }
    let mut columns = columns(collection, body, true)?;
    check_references(tx, collection, &columns)?;
    if let Some(image) = image {
        columns.push(("image", Sql::Text(image.filename.clone())));
    }
    let at = format_timestamp(now);
    columns.push(("inserted_at", Sql::Text(at.clone())));
    columns.push(("updated_at", Sql::Text(at)));
    let names: Vec<&str> = columns.iter().map(|(n, _)| *n).collect();
    let marks = vec!["?"; columns.len()].join(", ");
    let sql = format!(
        "INSERT INTO {} ({}) VALUES ({marks})",
        collection.table(),
        names.join(", ")
    );
    tx.prepare_cached(&sql)?
        .execute(rusqlite::params_from_iter(
            columns.into_iter().map(|(_, v)| v),
        ))?;
    let id = tx.last_insert_rowid();
    if let Some(image) = image {
        store_image(tx, id, image)?;
    }
    read_back(tx, collection, id, ctx)
}

/// Change the fields present in `body` (PATCH and PUT alike) and bump `updated_at`.
pub fn update(
    tx: &Transaction<'_>,
    collection: Collection,
    id: i64,
    body: &Map<String, Value>,
    image: Option<&Image>,
    now: Timestamp,
    ctx: &RecordCtx,
) -> Result<Value, WriteError> {
    if !exists(tx, collection, id)? {
        return Err(WriteError::NotFound);
    }
    let mut columns = columns(collection, body, false)?;
    check_references(tx, collection, &columns)?;
    if let Some(image) = image {
        store_image(tx, id, image)?;
        columns.push(("image", Sql::Text(image.filename.clone())));
    }
    columns.push(("updated_at", Sql::Text(format_timestamp(now))));
    let sets: Vec<String> = columns.iter().map(|(n, _)| format!("{n} = ?")).collect();
    let sql = format!(
        "UPDATE {} SET {} WHERE id = ?",
        collection.table(),
        sets.join(", ")
    );
    let params = columns
        .into_iter()
        .map(|(_, v)| v)
        .chain(std::iter::once(Sql::Integer(id)));
    tx.prepare_cached(&sql)?
        .execute(rusqlite::params_from_iter(params))?;
    read_back(tx, collection, id, ctx)
}

/// Delete a record, refusing to orphan items (category) or values (key).
pub fn delete(
    tx: &Transaction<'_>,
    collection: Collection,
    id: i64,
    now: Timestamp,
) -> Result<(), WriteError> {
    if !exists(tx, collection, id)? {
        return Err(WriteError::NotFound);
    }
    let dependants = match collection {
        Collection::Category => Some(("items", "SELECT COUNT(*) FROM item WHERE category_id = ?1")),
        Collection::CustomizationKey => Some((
            "values",
            "SELECT COUNT(*) FROM customization_value WHERE belongs_to = ?1",
        )),
        _ => None,
    };
    if let Some((field, sql)) = dependants {
        let count: i64 = tx.query_row(sql, [id], |r| r.get(0))?;
        if count > 0 {
            let what = if field == "items" {
                "category still has items; move or delete them first"
            } else {
                "customization key still has values; delete them first"
            };
            return Err(invalid(field, what));
        }
    }
    match collection {
        // Whether or not foreign keys are enforced on this connection, leave nothing dangling.
        Collection::Item => {
            tx.execute("DELETE FROM image WHERE item_id = ?1", [id])?;
        }
        Collection::Message => {
            tx.execute(
                "UPDATE status SET message_id = NULL, updated_at = ?2 WHERE message_id = ?1",
                rusqlite::params![id, format_timestamp(now)],
            )?;
        }
        _ => {}
    }
    let sql = format!("DELETE FROM {} WHERE id = ?1", collection.table());
    tx.execute(&sql, [id])?;
    Ok(())
}

fn store_image(tx: &Transaction<'_>, item_id: i64, image: &Image) -> Result<(), StoreError> {
    tx.execute(
        "INSERT OR REPLACE INTO image (item_id, filename, content_type, bytes, etag) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
        rusqlite::params![
            item_id,
            image.filename,
            image.content_type,
            image.bytes,
            image.etag
        ],
    )?;
    Ok(())
}

/// The record as every reader sees it, read inside the write transaction.
pub fn read_back(
    tx: &Transaction<'_>,
    collection: Collection,
    id: i64,
    ctx: &RecordCtx,
) -> Result<Value, WriteError> {
    records::get(tx, collection, id, ctx)?
        .ok_or_else(|| WriteError::Store(StoreError::Sqlite(rusqlite::Error::QueryReturnedNoRows)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_parts_coerce_to_field_types() {
        assert_eq!(coerce(Kind::Int, &json!("45")), Ok(Sql::Integer(45)));
        assert_eq!(coerce(Kind::Int, &json!(45.0)), Ok(Sql::Integer(45)));
        assert_eq!(coerce(Kind::Bool, &json!("true")), Ok(Sql::Integer(1)));
        assert_eq!(coerce(Kind::Bool, &json!(false)), Ok(Sql::Integer(0)));
        assert_eq!(
            coerce(Kind::KeyIds, &json!("1,2")),
            Ok(Sql::Text("[1,2]".into()))
        );
        assert_eq!(
            coerce(Kind::KeyIds, &json!(["3", 4])),
            Ok(Sql::Text("[3,4]".into()))
        );
        assert_eq!(coerce(Kind::NullableInt, &json!(null)), Ok(Sql::Null));
    }

    #[test]
    fn wrong_types_are_named() {
        assert!(coerce(Kind::Int, &json!("forty")).is_err());
        assert!(coerce(Kind::Int, &json!(4.5)).is_err());
        assert!(coerce(Kind::Bool, &json!("maybe")).is_err());
        assert!(coerce(Kind::Text, &json!(3)).is_err());
        assert!(coerce(Kind::State, &json!("eaten")).is_err());
    }

    #[test]
    fn default_value_is_kept_as_the_string_sent() {
        assert_eq!(
            coerce(Kind::ValueId, &json!("12")),
            Ok(Sql::Text("12".into()))
        );
        assert_eq!(coerce(Kind::ValueId, &json!(null)), Ok(Sql::Null));
    }

    #[test]
    fn missing_required_fields_are_listed_on_create_only() {
        let body = json!({"id": 0, "price_nok": "x"});
        let Err(WriteError::Invalid(errors)) =
            columns(Collection::Item, body.as_object().unwrap(), true)
        else {
            panic!("expected 422");
        };
        assert!(errors.contains_key("name"));
        assert!(errors.contains_key("category_id"));
        assert!(errors.contains_key("price_nok"));
        assert!(!errors.contains_key("id"));
        let update = columns(Collection::Item, &Map::new(), false).expect("empty update");
        assert!(update.is_empty());
        let blank = json!({"name": "  ", "price_nok": -1});
        let Err(WriteError::Invalid(errors)) =
            columns(Collection::Item, blank.as_object().unwrap(), false)
        else {
            panic!("expected 422");
        };
        assert!(errors.contains_key("name") && errors.contains_key("price_nok"));
        for (collection, body) in [
            (Collection::Item, json!({"price_nok": 100_001})),
            (Collection::Item, json!({"price_nok": i64::MAX})),
            (
                Collection::CustomizationValue,
                json!({"price_increment_nok": -100_001}),
            ),
            (
                Collection::CustomizationValue,
                json!({"price_increment_nok": "9e18"}),
            ),
        ] {
            assert!(
                columns(collection, body.as_object().unwrap(), false).is_err(),
                "{body}"
            );
        }
        let edge = json!({"price_increment_nok": -100_000});
        assert!(columns(
            Collection::CustomizationValue,
            edge.as_object().unwrap(),
            false
        )
        .is_ok());
    }

    #[test]
    fn older_frontends_reference_names_are_understood() {
        let body = json!({"name": "Te", "price_nok": 30, "category": "3"});
        let set = columns(Collection::Item, body.as_object().unwrap(), true).unwrap();
        assert!(set.contains(&("category_id", Sql::Integer(3))));
        let body = json!({"message": null});
        let set = columns(Collection::Status, body.as_object().unwrap(), false).unwrap();
        assert_eq!(set, vec![("message_id", Sql::Null)]);
    }

    #[test]
    fn null_for_a_defaulted_field_means_not_given() {
        let body = json!({"name": "Te", "sort_order": null, "enable": null});
        let set = columns(Collection::Category, body.as_object().unwrap(), true).unwrap();
        assert_eq!(set, vec![("name", Sql::Text("Te".into()))]);
        let body = json!({"message_id": null});
        let set = columns(Collection::Status, body.as_object().unwrap(), false).unwrap();
        assert_eq!(set, vec![("message_id", Sql::Null)]);
    }
}
