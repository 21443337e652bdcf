//! Reading the old backend's columns leniently: every value as the old file may hold it
//! (Ecto's types, older migrations' decimals, rows typed in by hand), and a clear "no" for
//! what cannot be read, so the report can name the row.

use std::collections::HashMap;

use rusqlite::types::{Value, ValueRef};

/// One row of a source table, by column name (the old schema's column order changed over
/// its migrations, so nothing is read by position).
pub struct Row {
    values: HashMap<String, Value>,
}

impl Row {
    pub fn read(columns: &[String], row: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
        let mut values = HashMap::with_capacity(columns.len());
        for (i, name) in columns.iter().enumerate() {
            values.insert(name.to_ascii_lowercase(), row.get::<_, Value>(i)?);
        }
        Ok(Row { values })
    }

    /// The raw value of `column`; `Null` when the column is missing or empty.
    pub fn raw(&self, column: &str) -> ValueRef<'_> {
        self.values
            .get(column)
            .map(ValueRef::from)
            .unwrap_or(ValueRef::Null)
    }

    pub fn has(&self, column: &str) -> bool {
        self.values.contains_key(column)
    }

    pub fn int(&self, column: &str) -> Option<i64> {
        int(self.raw(column))
    }

    pub fn text(&self, column: &str) -> Option<String> {
        text(self.raw(column))
    }

    /// A boolean stored as 0/1 (or `true`/`false` text, from a hand-edited row); `default`
    /// for null or anything unreadable.
    pub fn flag(&self, column: &str, default: bool) -> bool {
        match self.raw(column) {
            ValueRef::Integer(i) => i != 0,
            ValueRef::Real(f) => f != 0.0,
            ValueRef::Text(t) => match String::from_utf8_lossy(t).trim().to_lowercase().as_str() {
                "1" | "true" | "t" | "yes" => true,
                "0" | "false" | "f" | "no" | "" => false,
                _ => default,
            },
            _ => default,
        }
    }
}

/// An integer id or count: an integer, an integral real, or digits as text.
pub fn int(value: ValueRef<'_>) -> Option<i64> {
    match value {
        ValueRef::Integer(i) => Some(i),
        ValueRef::Real(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(f as i64),
        ValueRef::Text(t) => std::str::from_utf8(t).ok()?.trim().parse().ok(),
        _ => None,
    }
}

/// Text as stored (numbers as their decimal form); `None` for null.
pub fn text(value: ValueRef<'_>) -> Option<String> {
    match value {
        ValueRef::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Integer(i) => Some(i.to_string()),
        ValueRef::Real(f) => Some(f.to_string()),
        ValueRef::Blob(b) => Some(String::from_utf8_lossy(b).into_owned()),
        ValueRef::Null => None,
    }
}

/// A price as a number of NOK, as stored: an integer, a REAL or decimal text.
pub fn number(value: ValueRef<'_>) -> Option<f64> {
    match value {
        ValueRef::Integer(i) => Some(i as f64),
        ValueRef::Real(f) if f.is_finite() => Some(f),
        ValueRef::Text(t) => std::str::from_utf8(t)
            .ok()?
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite()),
        _ => None,
    }
}

/// A price from a JSON snapshot (`45.0`, `45`, or `"45.0"`).
pub fn json_number(value: Option<&serde_json::Value>) -> Option<f64> {
    match value? {
        serde_json::Value::Number(n) => n.as_f64().filter(|f| f.is_finite()),
        serde_json::Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    }
}

/// An id from a JSON snapshot (`3` or `"3"`).
pub fn json_id(value: Option<&serde_json::Value>) -> Option<i64> {
    match value? {
        serde_json::Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64)),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Whole NOK from a decimal price, rounded half away from zero (`40.0` → 40, `45.5` → 46).
pub fn whole_nok(price: f64) -> Option<i64> {
    let rounded = price.round();
    (rounded.is_finite() && rounded.abs() < 9.0e15).then_some(rounded as i64)
}

/// A timestamp in any form the old file holds (`…Z` with or without microseconds, naive
/// without `Z`, a space for the `T`) in Kaffediem's stored form. `Err` carries the text for
/// the report; `Ok(None)` is a null.
pub fn timestamp(value: ValueRef<'_>) -> Result<Option<String>, String> {
    match value {
        ValueRef::Null => Ok(None),
        ValueRef::Text(t) => {
            let s = String::from_utf8_lossy(t);
            if s.trim().is_empty() {
                return Ok(None);
            }
            crate::store::records::normalize_timestamp(&s)
                .map(Some)
                .ok_or_else(|| format!("{s:?}"))
        }
        other => Err(format!("{:?}", text(other).unwrap_or_default())),
    }
}

/// `category.valid_customizations`: a JSON array of key ids, as numbers or (older rows)
/// strings. `Err` when it is not such an array.
pub fn id_list(stored: &str) -> Result<Vec<i64>, String> {
    let parsed: serde_json::Value =
        serde_json::from_str(stored.trim()).map_err(|_| format!("{stored:?} is not JSON"))?;
    let serde_json::Value::Array(entries) = parsed else {
        return Err(format!("{stored:?} is not a list"));
    };
    entries
        .iter()
        .map(|e| json_id(Some(e)).ok_or_else(|| format!("{e} is not a key id")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_timestamp_form_of_the_old_file_reads_and_junk_is_named() {
        let read = |s: &str| timestamp(ValueRef::Text(s.as_bytes()));
        let micro = "2025-11-17T10:21:33.123456Z";
        assert_eq!(read(micro).unwrap().as_deref(), Some(micro));
        for form in [
            "2025-11-17T10:21:33Z",
            "2025-11-17T10:21:33",
            "2025-11-17 10:21:33",
        ] {
            assert_eq!(
                read(form).unwrap().as_deref(),
                Some("2025-11-17T10:21:33.000000Z"),
                "{form}"
            );
        }
        assert!(read("yesterday").is_err());
        assert_eq!(timestamp(ValueRef::Null), Ok(None));
    }

    #[test]
    fn key_lists_take_numbers_and_strings() {
        assert_eq!(id_list("[1,2]").unwrap(), vec![1, 2]);
        assert_eq!(id_list(r#"["1", "3"]"#).unwrap(), vec![1, 3]);
        assert!(id_list("{}").is_err());
        assert!(id_list(r#"["milk"]"#).is_err());
    }

    #[test]
    fn decimal_prices_round_to_whole_nok() {
        assert_eq!(whole_nok(40.0), Some(40));
        assert_eq!(whole_nok(45.5), Some(46));
        assert_eq!(number(ValueRef::Text(b"40.0")), Some(40.0));
    }
}
