//! Collections, rows and their JSON shapes (SPEC 4).
//!
//! One function per collection turns a row into the JSON record that snapshots, change events
//! and the HTTP API all share. Rows may have been typed in by hand with the `sqlite3` shell, so
//! reading is lenient: a junk value becomes a sensible default and a warning, never a panic.

use std::collections::HashMap;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, Row};
use serde_json::{json, Map, Value};

use super::{Stop, StoreError};

mod record;
pub use record::Record;

/// The seven collections, each one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Collection {
    Category,
    Item,
    CustomizationKey,
    CustomizationValue,
    Message,
    Status,
    Order,
}

impl Collection {
    pub const ALL: [Collection; 7] = [
        Collection::Category,
        Collection::Item,
        Collection::CustomizationKey,
        Collection::CustomizationValue,
        Collection::Message,
        Collection::Status,
        Collection::Order,
    ];

    /// The name used in topics and URLs (`customization_key`), also the table name.
    pub fn name(self) -> &'static str {
        match self {
            Collection::Category => "category",
            Collection::Item => "item",
            Collection::CustomizationKey => "customization_key",
            Collection::CustomizationValue => "customization_value",
            Collection::Message => "message",
            Collection::Status => "status",
            Collection::Order => "order",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Collection::ALL.into_iter().find(|c| c.name() == name)
    }

    /// Whether a change to this collection changes the menu tree.
    pub fn is_menu(self) -> bool {
        matches!(
            self,
            Collection::Category
                | Collection::Item
                | Collection::CustomizationKey
                | Collection::CustomizationValue
        )
    }

    /// The table name quoted for SQL (`"order"` is a keyword).
    pub fn table(self) -> &'static str {
        match self {
            Collection::Order => "\"order\"",
            other => other.name(),
        }
    }

    /// `SELECT` of this collection's columns (aliased `t`), ready for a `WHERE` / `ORDER BY`.
    fn select(self) -> &'static str {
        match self {
            Collection::Category => {
                "SELECT t.id, t.name, t.sort_order, t.enable, t.valid_customizations, \
                 t.inserted_at, t.updated_at FROM category t"
            }
            Collection::Item => {
                "SELECT t.id, t.name, t.price_nok, t.category_id, c.name, t.image, t.enable, \
                 t.sort_order, t.inserted_at, t.updated_at \
                 FROM item t LEFT JOIN category c ON c.id = t.category_id"
            }
            Collection::CustomizationKey => {
                "SELECT t.id, t.name, t.enable, t.label_color, t.default_value, \
                 t.multiple_choice, t.sort_order, t.inserted_at, t.updated_at \
                 FROM customization_key t"
            }
            Collection::CustomizationValue => {
                "SELECT t.id, t.name, t.price_increment_nok, t.constant_price, t.belongs_to, \
                 t.enable, t.sort_order, t.inserted_at, t.updated_at FROM customization_value t"
            }
            Collection::Message => {
                "SELECT t.id, t.title, t.subtitle, t.inserted_at, t.updated_at FROM message t"
            }
            Collection::Status => {
                "SELECT t.id, t.open, t.show_message, t.message_id, t.inserted_at, t.updated_at \
                 FROM status t"
            }
            Collection::Order => {
                "SELECT t.id, t.uuid, t.customer_id, t.day_id, t.state, t.missing_information, \
                 t.items, t.total_nok, t.inserted_at, t.updated_at FROM \"order\" t"
            }
        }
    }

    /// Snapshot order (SPEC 3.1); `id` last so that the order is total.
    fn order_by(self) -> &'static str {
        match self {
            Collection::Category
            | Collection::Item
            | Collection::CustomizationKey
            | Collection::CustomizationValue => " ORDER BY t.sort_order, t.name, t.id",
            Collection::Message => " ORDER BY t.title, t.id",
            Collection::Status => " ORDER BY t.id",
            Collection::Order => " ORDER BY t.inserted_at, t.id",
        }
    }
}

/// How records are rendered: item `image` is an absolute URL built from this base.
#[derive(Debug, Clone, Default)]
pub struct RecordCtx {
    /// e.g. `http://kaffediem.local:4000` (no trailing slash).
    pub public_url: String,
}

/// Which orders to list (SPEC 3.1 options, SPEC 5 query parameters).
#[derive(Debug, Clone, Default)]
pub struct OrderQuery {
    /// Orders inserted at or after this instant.
    pub since: Option<jiff::Timestamp>,
    pub customer_id: Option<i64>,
    pub state: Option<super::orders::OrderState>,
}

/// Every record of `collection`, in snapshot order (SPEC 3.1).
pub fn list(
    conn: &Connection,
    collection: Collection,
    ctx: &RecordCtx,
) -> Result<Vec<Value>, StoreError> {
    if collection == Collection::Order {
        return list_orders(conn, &OrderQuery::default(), ctx);
    }
    let sql = format!("{}{}", collection.select(), collection.order_by());
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map([], |row| Ok(to_json(collection, row, ctx, None)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Orders matching `query`, oldest first (`inserted_at`, then `id`).
pub fn list_orders(
    conn: &Connection,
    query: &OrderQuery,
    ctx: &RecordCtx,
) -> Result<Vec<Value>, StoreError> {
    let (clauses, params) = order_clauses(query);
    let mut sql = String::from(Collection::Order.select());
    sql.push_str(&clauses);
    sql.push_str(Collection::Order.order_by());
    let colors = label_colors(conn)?;
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(params), |row| {
        Ok(to_json(Collection::Order, row, ctx, Some(&colors)))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// How much of a list one read returns (SPEC 3.1 bounded snapshots, SPEC 10 HTTP lists).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// At most this many records, the newest kept (by `inserted_at`, then `id`), returned in
    /// snapshot order: a join snapshot or an unpaged HTTP list.
    Newest(usize),
    /// Records `offset..offset + limit` in snapshot order: HTTP `page` / `perPage`.
    Page { offset: usize, limit: usize },
}

/// One bounded read of a collection.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    /// The records, in snapshot order.
    pub records: Vec<Value>,
    /// How many records match, whatever the window (HTTP `X-Total-Count`).
    pub total: u64,
    /// The window left out matching records that a [`Window::Newest`] read would otherwise
    /// have held (a join reply then says `"truncated": true`).
    pub truncated: bool,
}

/// Rows between two checks of a bulk read's [`Stop`]: a few milliseconds of work.
const ROWS_PER_CHUNK: usize = 256;

/// The records of `collection` matching `query` (orders only; other collections take the
/// default query), within `window`, reading no further once `stop` is requested.
pub fn list_bounded(
    conn: &Connection,
    collection: Collection,
    query: &OrderQuery,
    window: Window,
    ctx: &RecordCtx,
    stop: &Stop,
) -> Result<Listed, StoreError> {
    stop.check()?;
    let (clauses, mut params) = match collection {
        Collection::Order => order_clauses(query),
        _ => (String::new(), Vec::new()),
    };
    let table = collection.table();
    let total: i64 = conn
        .prepare_cached(&format!("SELECT count(*) FROM {table} t{clauses}"))?
        .query_row(rusqlite::params_from_iter(params.iter()), |r| r.get(0))?;
    let total = total.max(0) as u64;
    let to_i64 = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
    let (sql, truncated) = match window {
        Window::Newest(n) => {
            params.push(to_i64(n).into());
            let sql = format!(
                "{} WHERE t.id IN (SELECT t.id FROM {table} t{clauses} \
                 ORDER BY t.inserted_at DESC, t.id DESC LIMIT ?){}",
                collection.select(),
                collection.order_by()
            );
            (sql, total > n as u64)
        }
        Window::Page { offset, limit } => {
            params.push(to_i64(limit).into());
            params.push(to_i64(offset).into());
            let sql = format!(
                "{}{clauses}{} LIMIT ? OFFSET ?",
                collection.select(),
                collection.order_by()
            );
            (sql, false)
        }
    };
    let colors = match collection {
        Collection::Order => Some(label_colors(conn)?),
        _ => None,
    };
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(rusqlite::params_from_iter(params))?;
    let mut records = Vec::new();
    while let Some(row) = rows.next()? {
        if records.len() % ROWS_PER_CHUNK == ROWS_PER_CHUNK - 1 {
            stop.check()?;
        }
        records.push(to_json(collection, row, ctx, colors.as_ref()));
    }
    Ok(Listed {
        records,
        total,
        truncated,
    })
}

/// ` WHERE ...` (or nothing) and its parameters for an order query.
fn order_clauses(query: &OrderQuery) -> (String, Vec<rusqlite::types::Value>) {
    let mut params: Vec<rusqlite::types::Value> = Vec::new();
    let mut clauses: Vec<&str> = Vec::new();
    if let Some(since) = query.since {
        clauses.push("t.inserted_at >= ?");
        params.push(format_timestamp(since).into());
    }
    if let Some(customer) = query.customer_id {
        clauses.push("t.customer_id = ?");
        params.push(customer.into());
    }
    if let Some(state) = &query.state {
        clauses.push("t.state = ?");
        params.push(state.as_str().to_owned().into());
    }
    match clauses.is_empty() {
        true => (String::new(), params),
        false => (format!(" WHERE {}", clauses.join(" AND ")), params),
    }
}

/// The fields order filters and notifications look at, for every order: much lighter than
/// the full records when the fan-out starts on a year of orders.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderFields {
    pub id: i64,
    pub inserted_at: jiff::Timestamp,
    pub customer_id: Option<i64>,
    /// `None`: the row holds no state we know (a shell-edited row).
    pub state: Option<super::orders::OrderState>,
    pub day_id: Option<i64>,
}

/// [`OrderFields`] of every order inserted at or after `since` (a junk `inserted_at` read as
/// the record shows it): the orders of the café day, not the history.
pub fn order_fields(
    conn: &Connection,
    since: jiff::Timestamp,
) -> Result<Vec<OrderFields>, StoreError> {
    // A range of the `inserted_at` index. Junk stamps that start with a letter sort after
    // every date, so they are read too, and kept if the record shows them as recent.
    let mut stmt = conn.prepare_cached(
        r#"SELECT id, inserted_at, customer_id, state, day_id, updated_at FROM "order"
           WHERE inserted_at >= ?1"#,
    )?;
    let rows = stmt.query_map([format_timestamp(since)], |r| {
        // As the record shows it (see `timestamp`): an order with a junk stamp still counts.
        let at = timestamp(r, 1, 5).as_str().map(str::to_owned);
        Ok((
            r.get::<_, i64>(0)?,
            at,
            r.get::<_, Option<i64>>(2).ok().flatten(),
            r.get::<_, Option<String>>(3)
                .ok()
                .flatten()
                .and_then(|s| super::orders::OrderState::parse(&s)),
            r.get::<_, Option<i64>>(4).ok().flatten(),
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, at, customer_id, state, day_id) = row?;
        let Some(inserted_at) = at
            .as_deref()
            .and_then(normalize_timestamp)
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .filter(|at| *at >= since)
        else {
            continue;
        };
        out.push(OrderFields {
            id,
            inserted_at,
            customer_id,
            state,
            day_id,
        });
    }
    Ok(out)
}

/// One record, or `None`.
pub fn get(
    conn: &Connection,
    collection: Collection,
    id: i64,
    ctx: &RecordCtx,
) -> Result<Option<Value>, StoreError> {
    let colors = match collection {
        Collection::Order => Some(label_colors(conn)?),
        _ => None,
    };
    Ok(get_with(conn, collection, id, ctx, colors.as_ref())?.map(|r| r.json))
}

/// [`get`] with the keys' label colours already read (from [`label_colors`]), for reading
/// many orders back after one commit.
pub(crate) fn get_with(
    conn: &Connection,
    collection: Collection,
    id: i64,
    ctx: &RecordCtx,
    colors: Option<&HashMap<i64, Value>>,
) -> Result<Option<Record>, StoreError> {
    let sql = format!("{} WHERE t.id = ?1", collection.select());
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query([id])?;
    match rows.next()? {
        Some(row) => Ok(Some(Record::new(
            collection,
            to_json(collection, row, ctx, colors),
        ))),
        None => Ok(None),
    }
}

/// The canonical stored form of an instant, and the one formatter of it: RFC 3339 UTC,
/// microseconds, `Z` (`2026-03-01T09:15:02.123456Z`). Every stamp the daemon writes or
/// compares in SQL (`inserted_at`/`updated_at` from the injectable clock, a session's
/// `expires_at`) goes through this, so that text comparison orders correctly.
pub fn format_timestamp(ts: jiff::Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string()
}

/// Normalize a stored timestamp (any RFC 3339 form, or SQLite's `YYYY-MM-DD HH:MM:SS[.fff]`
/// meaning UTC) to the canonical form. `None` when it is not a timestamp at all.
pub fn normalize_timestamp(stored: &str) -> Option<String> {
    let stored = stored.trim();
    if let Ok(ts) = stored.parse::<jiff::Timestamp>() {
        return Some(format_timestamp(ts));
    }
    let civil = stored.parse::<jiff::civil::DateTime>().ok()?;
    let ts = civil.to_zoned(jiff::tz::TimeZone::UTC).ok()?.timestamp();
    Some(format_timestamp(ts))
}

/// The name of every category, exactly as its items show it in `category_name` (an item
/// whose category is missing shows `null`).
pub(crate) fn category_names(conn: &Connection) -> Result<HashMap<i64, String>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT id, name FROM category")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, text(r, 1))))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The ids of the items whose `category_id` is `category`.
pub(crate) fn items_in_category(conn: &Connection, category: i64) -> Result<Vec<i64>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT id FROM item WHERE category_id = ?1 ORDER BY id")?;
    let rows = stmt.query_map([category], |r| r.get::<_, i64>(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Current `label_color` of every customization key, for order serialization.
pub(crate) fn label_colors(conn: &Connection) -> Result<HashMap<i64, Value>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT id, label_color FROM customization_key")?;
    let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, opt_text(r, 1))))?;
    let mut colors = HashMap::new();
    for row in rows {
        let (id, color) = row?;
        colors.insert(id, color);
    }
    Ok(colors)
}

/// One row of `collection.select()` as its JSON record.
fn to_json(
    collection: Collection,
    r: &Row<'_>,
    ctx: &RecordCtx,
    colors: Option<&HashMap<i64, Value>>,
) -> Value {
    let id = int(r, 0);
    match collection {
        Collection::Category => json!({
            "id": id,
            "name": text(r, 1),
            "sort_order": int(r, 2),
            "enable": boolean(r, 3),
            "valid_customizations": id_list(r, 4, id),
            "inserted_at": timestamp(r, 5, 6),
            "updated_at": timestamp(r, 6, 5),
        }),
        Collection::Item => json!({
            "id": id,
            "name": text(r, 1),
            "price_nok": int(r, 2),
            "category_id": opt_int(r, 3),
            "category_name": opt_text(r, 4),
            "image": image_url(ctx, id, r),
            "enable": boolean(r, 6),
            "sort_order": int(r, 7),
            "inserted_at": timestamp(r, 8, 9),
            "updated_at": timestamp(r, 9, 8),
        }),
        Collection::CustomizationKey => json!({
            "id": id,
            "name": text(r, 1),
            "enable": boolean(r, 2),
            "label_color": opt_text(r, 3),
            "default_value": opt_text(r, 4),
            "multiple_choice": boolean(r, 5),
            "sort_order": int(r, 6),
            "inserted_at": timestamp(r, 7, 8),
            "updated_at": timestamp(r, 8, 7),
        }),
        Collection::CustomizationValue => json!({
            "id": id,
            "name": text(r, 1),
            "price_increment_nok": int(r, 2),
            "constant_price": boolean(r, 3),
            "belongs_to": opt_int(r, 4),
            "enable": boolean(r, 5),
            "sort_order": int(r, 6),
            "inserted_at": timestamp(r, 7, 8),
            "updated_at": timestamp(r, 8, 7),
        }),
        Collection::Message => json!({
            "id": id,
            "title": text(r, 1),
            "subtitle": opt_text(r, 2),
            "inserted_at": timestamp(r, 3, 4),
            "updated_at": timestamp(r, 4, 3),
        }),
        Collection::Status => json!({
            "id": id,
            "open": boolean(r, 1),
            "show_message": boolean(r, 2),
            "message_id": opt_int(r, 3),
            "inserted_at": timestamp(r, 4, 5),
            "updated_at": timestamp(r, 5, 4),
        }),
        Collection::Order => json!({
            "id": id,
            "uuid": text(r, 1),
            "customer_id": opt_int(r, 2),
            "day_id": int(r, 3),
            "state": text(r, 4),
            "missing_information": boolean(r, 5),
            "items": order_items(r, 6, id, colors),
            "total_nok": int(r, 7),
            "inserted_at": timestamp(r, 8, 9),
            "updated_at": timestamp(r, 9, 8),
        }),
    }
}

/// The order's item snapshot, with each customization's `label_color` taken from the current
/// key (the stored one is kept when the key is gone).
fn order_items(r: &Row<'_>, idx: usize, id: i64, colors: Option<&HashMap<i64, Value>>) -> Value {
    let stored = text(r, idx);
    let mut items = match serde_json::from_str::<Value>(&stored) {
        Ok(Value::Array(items)) => items,
        _ => {
            tracing::warn!(order = id, "order.items is not a JSON array; serving []");
            return Value::Array(Vec::new());
        }
    };
    let Some(colors) = colors else {
        return Value::Array(items);
    };
    for item in &mut items {
        let Some(customizations) = item.get_mut("customizations").and_then(Value::as_array_mut)
        else {
            continue;
        };
        for c in customizations.iter_mut().filter_map(Value::as_object_mut) {
            let key = c.get("key_id").and_then(Value::as_i64);
            if let Some(color) = key.and_then(|k| colors.get(&k)) {
                c.insert("label_color".into(), color.clone());
            }
        }
    }
    Value::Array(items)
}

/// `{public_url}/api/files/item/{id}/{filename}`, or null without an image. An absolute
/// `http(s)` URL (an image the old backend's frontend linked to, kept by the import) is
/// served as it is.
fn image_url(ctx: &RecordCtx, id: i64, r: &Row<'_>) -> Value {
    match opt_text(r, 5) {
        Value::String(url) if url.starts_with("https://") || url.starts_with("http://") => {
            Value::String(url)
        }
        Value::String(name) if !name.is_empty() => Value::String(format!(
            "{}/api/files/item/{id}/{}",
            ctx.public_url.trim_end_matches('/'),
            percent_encode(&name)
        )),
        _ => Value::Null,
    }
}

/// Percent-encode everything but RFC 3986 unreserved characters, for a URL path segment.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// Lenient column readers: a shell user may store text where a number belongs.

pub(crate) fn int(r: &Row<'_>, idx: usize) -> i64 {
    match r.get_ref(idx) {
        Ok(ValueRef::Integer(i)) => i,
        Ok(ValueRef::Real(f)) => f as i64,
        Ok(ValueRef::Text(t)) => std::str::from_utf8(t)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0),
        _ => 0,
    }
}

fn opt_int(r: &Row<'_>, idx: usize) -> Value {
    match r.get_ref(idx) {
        Ok(ValueRef::Null) | Err(_) => Value::Null,
        _ => Value::from(int(r, idx)),
    }
}

pub(crate) fn boolean(r: &Row<'_>, idx: usize) -> bool {
    match r.get_ref(idx) {
        Ok(ValueRef::Text(t)) => matches!(
            std::str::from_utf8(t).map(str::trim),
            Ok("1" | "true" | "TRUE" | "True")
        ),
        _ => int(r, idx) != 0,
    }
}

pub(crate) fn text(r: &Row<'_>, idx: usize) -> String {
    match r.get_ref(idx) {
        Ok(ValueRef::Text(t)) | Ok(ValueRef::Blob(t)) => String::from_utf8_lossy(t).into_owned(),
        Ok(ValueRef::Integer(i)) => i.to_string(),
        Ok(ValueRef::Real(f)) => f.to_string(),
        _ => String::new(),
    }
}

fn opt_text(r: &Row<'_>, idx: usize) -> Value {
    match r.get_ref(idx) {
        Ok(ValueRef::Null) | Err(_) => Value::Null,
        _ => Value::String(text(r, idx)),
    }
}

/// A stored stamp in the canonical form. One that is not a timestamp (typed in with the
/// shell) is served as its sibling (`inserted_at` ↔ `updated_at`), else as the Unix epoch:
/// screens and order filters need a time to place the record by, and a record they cannot
/// place would never be shown or broadcast (`kaffediem check` names the row).
fn timestamp(r: &Row<'_>, idx: usize, sibling: usize) -> Value {
    let stored = text(r, idx);
    if let Some(ts) = normalize_timestamp(&stored) {
        return Value::String(ts);
    }
    let fallback = normalize_timestamp(&text(r, sibling))
        .unwrap_or_else(|| format_timestamp(jiff::Timestamp::UNIX_EPOCH));
    tracing::warn!(
        id = int(r, 0),
        value = %stored,
        served = %fallback,
        "stored timestamp is not a timestamp; serving a stand-in (see kaffediem check)"
    );
    Value::String(fallback)
}

/// A JSON array of integer ids (`valid_customizations`); junk becomes `[]`.
fn id_list(r: &Row<'_>, idx: usize, id: i64) -> Value {
    let stored = text(r, idx);
    match serde_json::from_str::<Value>(&stored) {
        Ok(Value::Array(ids)) => Value::Array(
            ids.iter()
                .filter_map(|v| {
                    v.as_i64()
                        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
                })
                .map(Value::from)
                .collect(),
        ),
        _ => {
            tracing::warn!(
                category = id,
                "category.valid_customizations is not a JSON array; serving []"
            );
            Value::Array(Vec::new())
        }
    }
}

/// A record's fields as a mutable map (used by the menu to add children).
pub(crate) fn into_object(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::format_timestamp;

    #[test]
    fn stamps_have_fixed_width_microseconds_and_z() {
        let ts: jiff::Timestamp = "2026-03-01T09:15:02.1234567Z".parse().unwrap();
        assert_eq!(format_timestamp(ts), "2026-03-01T09:15:02.123456Z");
        let whole = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        assert_eq!(format_timestamp(whole), "2027-01-15T08:00:00.000000Z");
    }
}
