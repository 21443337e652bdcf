//! The change log (`kaffediem_changes`, see `schema.sql`): which collection rows changed since
//! the daemon last published, written by triggers whoever writes (the daemon or the `sqlite3`
//! shell), drained by the writer in the transaction that publishes them.
//!
//! The triggers are generated here from [`Collection::ALL`], so a new collection gets them by
//! being listed there: [`ensure_triggers`] creates them on a fresh or upgraded file and puts
//! back any that went missing, and [`missing_triggers`] is what `kaffediem check` and the tests
//! look at. Finding what another process changed costs the rows it changed, not a scan of
//! every table.

use std::collections::{HashMap, HashSet};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use serde_json::{json, Value};

use super::capture::{collapse, RowChange};
use super::records::{format_timestamp, normalize_timestamp};
use super::{Collection, Op, StoreError};

/// The triggers that log one collection's row changes: `(name, CREATE TRIGGER …)`.
///
/// - after an INSERT: `create`;
/// - before an INSERT: `update` for each row the statement may replace (`INSERT OR REPLACE`
///   deletes it without firing DELETE triggers): the row then counts as changed, not created,
///   and a row replaced away reads back as gone (a `delete`);
/// - before an UPDATE: `update`, or, when the id changes, `delete` of the old id and `create`
///   of the new one, after `update` for each row an `UPDATE OR REPLACE` may replace;
/// - before a DELETE: `delete`.
///
/// Updates and deletes are logged before the row changes, so that rows a foreign key's
/// `ON DELETE` action changes come after the row that caused them, as they happened. Every
/// change also bumps `collections_version`. `unique` lists the collection's UNIQUE column
/// sets besides the id (the order's `uuid`).
pub fn triggers(collection: Collection, unique: &[Vec<String>]) -> Vec<(String, String)> {
    let n = collection.name();
    let t = format!("\"{n}\"");
    let log = "INSERT INTO kaffediem_changes (collection, row_id, op, before)";
    let old = before(collection, "OLD.");
    let row = before(collection, "");
    let bump = "UPDATE kaffediem_meta SET value = value + 1 WHERE key = 'collections_version';";
    let same_key: String = unique
        .iter()
        .map(|cols| {
            let each: Vec<String> = cols
                .iter()
                .map(|c| format!("\"{c}\" = NEW.\"{c}\""))
                .collect();
            format!(" OR ({})", each.join(" AND "))
        })
        .collect();
    let key_changed: String = unique
        .iter()
        .flatten()
        .map(|c| format!(" OR NEW.\"{c}\" IS NOT OLD.\"{c}\""))
        .collect();
    vec![
        (
            format!("{n}_insert_captured"),
            format!(
                "CREATE TRIGGER \"{n}_insert_captured\" AFTER INSERT ON {t} BEGIN\n    \
                 {log} VALUES ('{n}', NEW.id, 'create', NULL);\n    {bump}\nEND"
            ),
        ),
        (
            format!("{n}_replace_captured"),
            format!(
                "CREATE TRIGGER \"{n}_replace_captured\" BEFORE INSERT ON {t} BEGIN\n    \
                 {log} SELECT '{n}', id, 'update', {row} FROM {t} WHERE id = NEW.id{same_key};\nEND"
            ),
        ),
        (
            format!("{n}_update_captured"),
            format!(
                "CREATE TRIGGER \"{n}_update_captured\" BEFORE UPDATE ON {t} BEGIN\n    \
                 {log} SELECT '{n}', id, 'update', {row} FROM {t} \
                 WHERE (NEW.id IS NOT OLD.id{key_changed}) \
                 AND id IS NOT OLD.id AND (id = NEW.id{same_key});\n    \
                 {log} VALUES ('{n}', OLD.id, \
                 CASE WHEN NEW.id IS OLD.id THEN 'update' ELSE 'delete' END, {old});\n    \
                 {log} SELECT '{n}', NEW.id, 'create', NULL WHERE NEW.id IS NOT OLD.id;\n    \
                 {bump}\nEND"
            ),
        ),
        (
            format!("{n}_delete_captured"),
            format!(
                "CREATE TRIGGER \"{n}_delete_captured\" BEFORE DELETE ON {t} BEGIN\n    \
                 {log} VALUES ('{n}', OLD.id, 'delete', {old});\n    {bump}\nEND"
            ),
        ),
    ]
}

/// What the log keeps of a row as it was (`row` prefixes its columns: `OLD.`, or nothing in
/// a `SELECT` from the table): for an order, the fields screens filter on (see
/// [`super::Change::before`]); `NULL` for the other collections.
fn before(collection: Collection, row: &str) -> String {
    match collection {
        Collection::Order => format!(
            "json_object('inserted_at', {row}inserted_at, 'updated_at', {row}updated_at, \
             'customer_id', {row}customer_id, 'state', {row}state, 'day_id', {row}day_id)"
        ),
        _ => "NULL".to_owned(),
    }
}

/// The UNIQUE column sets of `collection`'s table other than its id, as the file declares them
/// (indexes on expressions cannot be matched by a trigger and are left out).
fn unique_columns(
    conn: &Connection,
    collection: Collection,
) -> Result<Vec<Vec<String>>, StoreError> {
    let table = collection.name();
    let mut indexes = conn.prepare(
        "SELECT name FROM pragma_index_list(?1) WHERE \"unique\" = 1 AND origin <> 'pk'",
    )?;
    let names: Vec<String> = indexes
        .query_map([table], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut out = Vec::new();
    for index in names {
        let mut columns = conn.prepare("SELECT name FROM pragma_index_info(?1) ORDER BY seqno")?;
        let columns: Vec<Option<String>> = columns
            .query_map([&index], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        if let Some(columns) = columns.into_iter().collect::<Option<Vec<String>>>() {
            out.push(columns);
        }
    }
    Ok(out)
}

/// The change-log triggers every collection should have and `conn`'s file lacks.
pub fn missing_triggers(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut missing = Vec::new();
    let mut exists = conn.prepare(
        "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'trigger' AND name = ?1)",
    )?;
    for collection in Collection::ALL {
        for (name, _) in triggers(collection, &[]) {
            if !exists.query_row([&name], |r| r.get::<_, bool>(0))? {
                missing.push(name);
            }
        }
    }
    Ok(missing)
}

/// Create the change-log triggers of every collection on `conn` (inside the caller's
/// transaction), replacing any of the same name.
pub fn create_triggers(conn: &Connection) -> Result<(), StoreError> {
    for collection in Collection::ALL {
        let unique = unique_columns(conn, collection)?;
        for (name, sql) in triggers(collection, &unique) {
            conn.execute_batch(&format!("DROP TRIGGER IF EXISTS \"{name}\";\n{sql};"))?;
        }
    }
    Ok(())
}

/// Put back the change-log triggers if any is missing (an admin dropped one in the shell):
/// without them the daemon would never hear of the shell's writes to that collection.
pub fn ensure_triggers(conn: &mut Connection) -> Result<(), StoreError> {
    let missing = missing_triggers(conn)?;
    if missing.is_empty() {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    create_triggers(&tx)?;
    tx.commit()?;
    tracing::warn!(
        missing = %missing.join(", "),
        "change-capture triggers were missing and have been put back; \
         writes made meanwhile by other processes were not published"
    );
    Ok(())
}

/// Whether the log holds rows nobody has published yet.
pub fn pending(conn: &Connection) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM kaffediem_changes LIMIT 1")?
        .query_row([], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Where the log ends now: [`drain`] after it takes only what is written from here on.
pub fn mark(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn
        .prepare_cached("SELECT coalesce(max(id), 0) FROM kaffediem_changes")?
        .query_row([], |r| r.get(0))?)
}

/// What a job or a foreign commit left in the log: one net change per row, and for each
/// order that was there before, its filter fields as they were.
#[derive(Debug, Default)]
pub struct Drained {
    /// Net change per row, in first-touch order.
    pub changes: Vec<RowChange>,
    /// Order id → the order's fields before the commit, in the record's JSON shape
    /// (`inserted_at` normalized like the record's, `customer_id`, `state`, `day_id`).
    pub before: HashMap<i64, Value>,
}

/// Take the rows of the log after `after` (inside the publishing transaction). Rows naming
/// no collection (written by hand) are dropped.
pub fn drain(conn: &Connection, after: i64) -> Result<Drained, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT collection, row_id, op, before FROM kaffediem_changes WHERE id > ?1 ORDER BY id",
    )?;
    let mut rows = stmt.query([after])?;
    let mut ops = Vec::new();
    let mut before = HashMap::new();
    let mut seen = HashSet::new();
    while let Some(row) = rows.next()? {
        let name: Option<String> = row.get(0).ok();
        let id: Option<i64> = row.get(1).ok();
        let op: Option<String> = row.get(2).ok();
        let (Some(collection), Some(id)) = (name.as_deref().and_then(Collection::from_name), id)
        else {
            continue;
        };
        let op = match op.as_deref() {
            Some("create") => Op::Create,
            Some("delete") => Op::Delete,
            _ => Op::Update,
        };
        // The first entry of a row tells how it was before the commit.
        if collection == Collection::Order && seen.insert(id) {
            let fields: Option<String> = row.get(3).ok().flatten();
            if let Some(fields) = fields.as_deref().and_then(order_before) {
                before.insert(id, fields);
            }
        }
        ops.push((collection, id, op));
    }
    drop(rows);
    conn.prepare_cached("DELETE FROM kaffediem_changes WHERE id > ?1")?
        .execute([after])?;
    Ok(Drained {
        changes: collapse(&ops),
        before,
    })
}

/// An order's logged fields in the record's shape; a junk `inserted_at` read as the record
/// shows it (its `updated_at`, else the epoch).
fn order_before(logged: &str) -> Option<Value> {
    let fields: Value = serde_json::from_str(logged).ok()?;
    let stamp = |key: &str| {
        fields
            .get(key)
            .and_then(Value::as_str)
            .and_then(normalize_timestamp)
    };
    let inserted_at = stamp("inserted_at")
        .or_else(|| stamp("updated_at"))
        .unwrap_or_else(|| format_timestamp(jiff::Timestamp::UNIX_EPOCH));
    Some(json!({
        "inserted_at": inserted_at,
        "customer_id": fields.get("customer_id").and_then(Value::as_i64),
        "state": fields.get("state").and_then(Value::as_str).unwrap_or_default(),
        "day_id": fields.get("day_id").and_then(Value::as_i64),
    }))
}

/// Forget what the log holds (at start: rows written while no daemon ran are in every
/// snapshot already, and nobody is subscribed to hear of them).
pub fn discard(conn: &Connection) -> Result<usize, StoreError> {
    Ok(conn.execute("DELETE FROM kaffediem_changes", [])?)
}
