//! Change capture: what a commit changed, as rows of the seven collection tables.
//!
//! Every commit's row changes, ours or another process's (the `sqlite3` shell), are written by
//! triggers into the change log (`change_log`), which the writer drains in the transaction that
//! publishes them; [`collapse`] makes one net change per row of them.
//!
//! A row's JSON can also depend on another table: an item carries its category's name
//! (`category_name`). [`CategoryNames`] remembers the names items show, so that a commit that
//! renames, deletes or recreates a category republishes the items it did not touch itself.
//!
//! And the `seq` of change sets: read, recovered at start, handed out, repaired.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use rusqlite::types::ValueRef;
use rusqlite::Connection;

use super::{records, Change, Collection, Op, RecordCtx, StoreError};

/// One row's change: which table, which rowid, how.
pub type RowChange = (Collection, i64, Op);

/// Collapse logged row operations to one net change per row, in first-touch order:
/// create+update → create, create+delete → nothing, delete+insert of a rowid → update. A row
/// whose first operation is not a create was there before (the log writes `update` for a
/// row an `INSERT OR REPLACE` replaces).
pub fn collapse(ops: &[RowChange]) -> Vec<RowChange> {
    let mut order: Vec<(Collection, i64)> = Vec::new();
    let mut first_last: HashMap<(Collection, i64), (Op, Op)> = HashMap::new();
    for &(c, id, op) in ops {
        first_last
            .entry((c, id))
            .and_modify(|fl| fl.1 = op)
            .or_insert_with(|| {
                order.push((c, id));
                (op, op)
            });
    }
    order
        .into_iter()
        .filter_map(|(c, id)| {
            let (first, last) = first_last[&(c, id)];
            let before = first != Op::Create;
            let after = last != Op::Delete;
            let op = match (before, after) {
                (false, true) => Op::Create,
                (true, true) => Op::Update,
                (true, false) => Op::Delete,
                (false, false) => return None,
            };
            Some((c, id, op))
        })
        .collect()
}

/// The name of every category as of the last published commit: what its items showed as
/// `category_name`. Only categories are tracked (a few dozen rows); a commit's change set is
/// compared with it to find items whose record changed without their row changing.
#[derive(Default)]
pub struct CategoryNames {
    names: HashMap<i64, String>,
}

impl CategoryNames {
    pub fn scan(conn: &Connection) -> Result<CategoryNames, StoreError> {
        Ok(CategoryNames {
            names: records::category_names(conn)?,
        })
    }

    /// The name items of category `id` show; `None` when there is no such category (they
    /// show `null`).
    pub fn get(&self, id: i64) -> Option<&str> {
        self.names.get(&id).map(String::as_str)
    }

    /// Record a category's new name (`None`: it is gone); returns the previous one.
    pub fn set(&mut self, id: i64, name: Option<String>) -> Option<String> {
        match name {
            Some(name) => self.names.insert(id, name),
            None => self.names.remove(&id),
        }
    }

    /// The categories among `changes` whose name, as items show it, differs from the one
    /// last published (renamed, deleted, or created under an id items already point to),
    /// each with its new name (`None`: gone).
    pub fn renamed(&self, changes: &[Change]) -> Vec<(i64, Option<String>)> {
        changes
            .iter()
            .filter(|c| c.collection == Collection::Category)
            .filter_map(|c| {
                let name = c.record.as_deref().and_then(|r| r["name"].as_str());
                (name != self.get(c.id)).then(|| (c.id, name.map(str::to_owned)))
            })
            .collect()
    }
}

/// Append to `changes` an `update` for every item of the `renamed` categories that the
/// commit did not change itself (those are read back already): their `category_name` is
/// new, so subscribers of `collection:item` and the change log must see them, in the same
/// change set as the category. Read inside the transaction, like every other record.
pub fn republish_items(
    conn: &Connection,
    ctx: &RecordCtx,
    renamed: &[(i64, Option<String>)],
    changes: &mut Vec<Change>,
) -> Result<(), StoreError> {
    let touched: HashSet<i64> = changes
        .iter()
        .filter(|c| c.collection == Collection::Item)
        .map(|c| c.id)
        .collect();
    for (category, _) in renamed {
        for id in records::items_in_category(conn, *category)? {
            if touched.contains(&id) {
                continue;
            }
            if let Some(record) = records::get_with(conn, Collection::Item, id, ctx, None)? {
                changes.push(Change {
                    collection: Collection::Item,
                    id,
                    op: Op::Update,
                    record: Some(Arc::new(record)),
                    before: None,
                });
            }
        }
    }
    Ok(())
}

/// `kaffediem_meta.seq` as stored, when it is a number a commit could have had (a shell may
/// have written `'abc'`, a negative number, or deleted the row).
fn stored_seq(conn: &Connection) -> Result<Result<u64, String>, StoreError> {
    use rusqlite::OptionalExtension;
    let value = conn
        .query_row(
            "SELECT value FROM kaffediem_meta WHERE key = 'seq'",
            [],
            |r| Ok(describe(r.get_ref(0)?)),
        )
        .optional()?;
    Ok(match value {
        Some(Ok(seq)) => Ok(seq),
        Some(Err(what)) => Err(what),
        None => Err("missing".into()),
    })
}

/// A non-negative integer, or what the value is instead.
fn describe(value: ValueRef<'_>) -> Result<u64, String> {
    match value {
        ValueRef::Integer(i) => u64::try_from(i).map_err(|_| format!("{i}")),
        ValueRef::Null => Err("NULL".into()),
        ValueRef::Real(f) => Err(format!("{f}")),
        ValueRef::Text(t) => Err(format!("'{}'", String::from_utf8_lossy(t))),
        ValueRef::Blob(b) => Err(format!("a {}-byte BLOB", b.len())),
    }
}

fn store_seq(conn: &Connection, seq: u64) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO kaffediem_meta (key, value) VALUES ('seq', ?1) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [i64::try_from(seq).unwrap_or(i64::MAX)],
    )?;
    Ok(())
}

/// The `seq` to continue from at start. `seq` never goes backwards — a client resuming with
/// `{"since": seq}` would otherwise be replayed the wrong changes — so when the stored value
/// is not a number (edited in with the shell), continue from `published_version` or
/// `collections_version`, whichever is higher: every change set changes at least one
/// collection row and each row change bumps `collections_version` (see `schema.sql`), so
/// neither is below any `seq` ever handed out. The recovered value is written back, so
/// readers see a number. `known` is a `seq` known from elsewhere (the high-water mark
/// beside the database, see `epoch`), also a floor. When no counter is a number either,
/// refuse to start: guessing could replay wrong changes to every screen.
pub fn recover_seq(conn: &Connection, known: Option<u64>) -> Result<u64, StoreError> {
    let found = match stored_seq(conn)? {
        Ok(seq) => return Ok(seq),
        Err(found) => found,
    };
    let mut floor = known;
    for key in ["published_version", "collections_version"] {
        let sql = "SELECT value FROM kaffediem_meta WHERE key = ?1";
        let value = conn
            .query_row(sql, [key], |r| Ok(describe(r.get_ref(0)?).ok()))
            .unwrap_or(None);
        floor = floor.max(value);
    }
    let Some(seq) = floor else {
        return Err(StoreError::Unavailable(format!(
            "kaffediem_meta.seq is {found}, not a number, and no other counter says where it \
             was: set it to at least the last seq clients saw with the sqlite3 shell \
             (UPDATE kaffediem_meta SET value = N WHERE key = 'seq')"
        )));
    };
    tracing::warn!(
        found = %found,
        seq,
        "kaffediem_meta.seq is not a number; continuing from the change counters so that no seq is reused"
    );
    store_seq(conn, seq)?;
    Ok(seq)
}

/// Inside the open transaction: the next `seq`, above both the stored one and `last` (the
/// highest this process has published, which a shell edit of the stored one cannot lower),
/// written back as an integer.
pub fn next_seq(conn: &Connection, last: u64) -> Result<u64, StoreError> {
    let stored = match stored_seq(conn)? {
        Ok(seq) => seq,
        Err(found) => {
            tracing::warn!(found = %found, last, "kaffediem_meta.seq is not a number; continuing after the last one published");
            0
        }
    };
    let next = stored.max(last) + 1;
    store_seq(conn, next)?;
    Ok(next)
}

/// Put `seq` back to `last` when another process made it junk or lowered it, so readers
/// (who take a snapshot's `seq` from it) never see it go back or fail to read it. `true`
/// when it had to.
pub fn repair_seq(conn: &Connection, last: u64) -> Result<bool, StoreError> {
    match stored_seq(conn)? {
        Ok(seq) if seq >= last => Ok(false),
        found => {
            tracing::warn!(found = ?found, last, "kaffediem_meta.seq was changed by another process; put back");
            store_seq(conn, last)?;
            Ok(true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: Collection = Collection::Item;

    #[test]
    fn collapse_merges_ops_per_row() {
        let ops = [
            (C, 1, Op::Create),
            (C, 1, Op::Update),
            (C, 2, Op::Create),
            (C, 2, Op::Delete),
            (C, 3, Op::Delete),
            (C, 3, Op::Create),
            (C, 4, Op::Update),
            (C, 5, Op::Delete),
        ];
        let got = collapse(&ops);
        assert_eq!(
            got,
            vec![
                (C, 1, Op::Create),
                (C, 3, Op::Update),
                (C, 4, Op::Update),
                (C, 5, Op::Delete)
            ]
        );
        // INSERT OR REPLACE over an existing row: logged as update (it was there), then create.
        assert_eq!(
            collapse(&[(C, 9, Op::Update), (C, 9, Op::Create)]),
            vec![(C, 9, Op::Update)]
        );
    }
}
