//! The rows `kaffediem check` names: values typed in with the `sqlite3` shell that the daemon
//! can only serve with a stand-in, or that make an item unorderable. Each is one line, "table
//! id column: what is wrong (what the daemon does with it)", so the operator can fix it.

use rusqlite::types::ValueRef;
use rusqlite::Connection;

use crate::store::orders::{in_bounds, MAX_NOK};
use crate::store::records::normalize_timestamp;

/// At most this many rows are named (a damaged import could have thousands).
const MAX_NAMED: usize = 200;

/// Every bad row found, one line each, and how many were not named past [`MAX_NAMED`].
pub fn bad_rows(conn: &Connection) -> rusqlite::Result<(Vec<String>, usize)> {
    let mut found = Found::default();
    for table in TABLES {
        texts(conn, table, &mut found)?;
        stamps(conn, table.name, &mut found)?;
    }
    prices(conn, "item", "price_nok", &mut found)?;
    prices(
        conn,
        "customization_value",
        "price_increment_nok",
        &mut found,
    )?;
    dangling(
        conn,
        "item",
        "category_id",
        "category",
        "the item cannot be ordered",
        &mut found,
    )?;
    dangling(
        conn,
        "customization_value",
        "belongs_to",
        "customization_key",
        "the value cannot be chosen",
        &mut found,
    )?;
    json_lists(conn, &mut found)?;
    counters(conn, &mut found)?;
    capture_triggers(conn, &mut found);
    Ok((found.named, found.more))
}

#[derive(Default)]
struct Found {
    named: Vec<String>,
    more: usize,
}

impl Found {
    fn add(&mut self, table: &str, id: impl std::fmt::Display, column: &str, what: String) {
        if self.named.len() < MAX_NAMED {
            self.named.push(format!("{table} {id} {column}: {what}"));
        } else {
            self.more += 1;
        }
    }
}

/// A collection table and its text columns that records show as names.
struct Table {
    name: &'static str,
    texts: &'static [&'static str],
}

const TABLES: &[Table] = &[
    Table {
        name: "category",
        texts: &["name"],
    },
    Table {
        name: "item",
        texts: &["name"],
    },
    Table {
        name: "customization_key",
        texts: &["name"],
    },
    Table {
        name: "customization_value",
        texts: &["name"],
    },
    Table {
        name: "message",
        texts: &["title"],
    },
    Table {
        name: "status",
        texts: &[],
    },
    Table {
        name: "order",
        texts: &["uuid", "state"],
    },
];

fn quoted(table: &str) -> String {
    format!("\"{table}\"")
}

/// Names that are not text: a BLOB is shown (and copied into orders) as UTF-8, lossily.
fn texts(conn: &Connection, table: &Table, found: &mut Found) -> rusqlite::Result<()> {
    for column in table.texts {
        let sql = format!(
            "SELECT id, {column} FROM {} WHERE typeof({column}) != 'text'",
            quoted(table.name)
        );
        let mut stmt = conn.prepare(&sql)?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let id: i64 = r.get(0)?;
            let what = match r.get_ref(1)? {
                ValueRef::Blob(b) => format!(
                    "a BLOB, not text (shown as \"{}\")",
                    String::from_utf8_lossy(b)
                ),
                ValueRef::Null => "NULL, not text (shown as \"\")".into(),
                ValueRef::Integer(i) => format!("the number {i}, not text"),
                ValueRef::Real(f) => format!("the number {f}, not text"),
                ValueRef::Text(_) => continue,
            };
            found.add(table.name, id, column, what);
        }
    }
    Ok(())
}

/// `inserted_at` / `updated_at` that are not timestamps (served as a stand-in).
fn stamps(conn: &Connection, table: &str, found: &mut Found) -> rusqlite::Result<()> {
    let sql = format!("SELECT id, inserted_at, updated_at FROM {}", quoted(table));
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        for (i, column) in [(1, "inserted_at"), (2, "updated_at")] {
            let value = r.get_ref(i)?;
            let readable = match value {
                ValueRef::Text(t) => std::str::from_utf8(t)
                    .ok()
                    .and_then(normalize_timestamp)
                    .is_some(),
                _ => false,
            };
            if !readable {
                found.add(
                    table,
                    id,
                    column,
                    format!(
                        "{} is not a timestamp (served as the other stamp, or 1970-01-01)",
                        show(value)
                    ),
                );
            }
        }
    }
    Ok(())
}

/// Prices that are not whole NOK within the bounds: the item or value cannot be ordered.
fn prices(conn: &Connection, table: &str, column: &str, found: &mut Found) -> rusqlite::Result<()> {
    let sql = format!(
        "SELECT id, {column} FROM {table} \
         WHERE typeof({column}) != 'integer' OR {column} NOT BETWEEN -{MAX_NOK} AND {MAX_NOK}"
    );
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        let value = r.get_ref(1)?;
        let sound = crate::store::orders::stored_nok(value).is_some_and(in_bounds);
        let what = if sound {
            format!("{} is not an integer (read as whole NOK)", show(value))
        } else {
            format!(
                "{} is not a whole number of NOK within ±{MAX_NOK} (orders of it are refused)",
                show(value)
            )
        };
        found.add(table, id, column, what);
    }
    Ok(())
}

/// References to rows that are gone (deleted from the shell with foreign keys off).
fn dangling(
    conn: &Connection,
    table: &str,
    column: &str,
    target: &str,
    consequence: &str,
    found: &mut Found,
) -> rusqlite::Result<()> {
    let sql = format!(
        "SELECT t.id, t.{column} FROM {table} t \
         WHERE NOT EXISTS (SELECT 1 FROM {target} x WHERE x.id = t.{column})"
    );
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let id: i64 = r.get(0)?;
        let what = format!(
            "{target} {} does not exist ({consequence})",
            show(r.get_ref(1)?)
        );
        found.add(table, id, column, what);
    }
    Ok(())
}

/// JSON columns that are not lists: `category.valid_customizations` (served as `[]`) and
/// `order.items` (served as `[]`: the order shows no items).
fn json_lists(conn: &Connection, found: &mut Found) -> rusqlite::Result<()> {
    for (table, column) in [("category", "valid_customizations"), ("order", "items")] {
        let sql = format!(
            "SELECT id, {column} FROM {} \
             WHERE NOT (typeof({column}) = 'text' AND json_valid({column}) \
                        AND json_type({column}) = 'array')",
            quoted(table)
        );
        let mut stmt = conn.prepare(&sql)?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let id: i64 = r.get(0)?;
            let what = format!("{} is not a JSON list (served as [])", show(r.get_ref(1)?));
            found.add(table, id, column, what);
        }
    }
    Ok(())
}

/// The daemon's counters in `kaffediem_meta` must be numbers (see `capture::recover_seq`).
fn counters(conn: &Connection, found: &mut Found) -> rusqlite::Result<()> {
    for key in ["seq", "collections_version", "published_version"] {
        let value: Option<String> = match conn.query_row(
            "SELECT value FROM kaffediem_meta WHERE key = ?1",
            [key],
            |r| {
                Ok(match r.get_ref(0)? {
                    ValueRef::Integer(i) if i >= 0 => None,
                    other => Some(show(other)),
                })
            },
        ) {
            Ok(v) => v,
            Err(rusqlite::Error::QueryReturnedNoRows) => Some("missing".into()),
            Err(e) => return Err(e),
        };
        if let Some(value) = value {
            let what = if key == "seq" {
                format!("{value} is not a number (the daemon continues from the change counters)")
            } else {
                format!("{value} is not a number")
            };
            found.add("kaffediem_meta", key, "value", what);
        }
    }
    Ok(())
}

/// Every collection's change-log triggers must be there (see `store::change_log`): without
/// one, the sqlite3 shell's writes to that collection reach no screen.
fn capture_triggers(conn: &Connection, found: &mut Found) {
    // A file too old to have the change log is reported by the schema version check.
    let has_log = conn
        .query_row(
            "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'kaffediem_changes'",
            [],
            |_| Ok(()),
        )
        .is_ok();
    if !has_log {
        return;
    }
    if let Ok(missing) = crate::store::change_log::missing_triggers(conn) {
        for name in missing {
            found.add(
                "trigger",
                name,
                "sql",
                "missing: the sqlite3 shell's writes to this collection are not published \
                 (the daemon puts it back at its next start)"
                    .into(),
            );
        }
    }
}

/// A stored value as the operator would type it, cut short.
fn show(value: ValueRef<'_>) -> String {
    let shown = match value {
        ValueRef::Null => "NULL".to_owned(),
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(f) => f.to_string(),
        ValueRef::Text(t) => format!("'{}'", String::from_utf8_lossy(t)),
        ValueRef::Blob(b) => format!("a {}-byte BLOB", b.len()),
    };
    if shown.chars().count() > 60 {
        format!("{}…", shown.chars().take(60).collect::<String>())
    } else {
        shown
    }
}
