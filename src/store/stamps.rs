//! The newest time stamped in the database: the floor of the café's clock
//! ([`crate::clock::CafeClock`]) and what `kaffediem check` compares with this machine's clock.

use jiff::Timestamp;
use rusqlite::Connection;

use super::records::{normalize_timestamp, Collection};
use super::StoreError;

/// The newest `inserted_at` or `updated_at` of any record, `None` for an empty database.
/// Values that are not timestamps (a typo made in the `sqlite3` shell) are skipped.
pub fn newest(conn: &Connection) -> Result<Option<Timestamp>, StoreError> {
    let mut newest: Option<Timestamp> = None;
    for collection in Collection::ALL {
        for column in ["inserted_at", "updated_at"] {
            // Only values that start like a year can be stamps; `MAX` of text would
            // otherwise pick any letter over every date.
            let sql = format!(
                "SELECT MAX({column}) FROM {} WHERE {column} GLOB '[0-9][0-9][0-9][0-9]-*'",
                collection.table()
            );
            let max: Option<String> = conn.query_row(&sql, [], |r| r.get(0))?;
            let parsed = max
                .as_deref()
                .and_then(normalize_timestamp)
                .and_then(|s| s.parse::<Timestamp>().ok());
            if let Some(at) = parsed {
                newest = Some(newest.map_or(at, |n| n.max(at)));
            }
        }
    }
    Ok(newest)
}
