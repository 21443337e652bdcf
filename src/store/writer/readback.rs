//! Inside the open transaction: the commit's `seq`, and its changed rows read back as records.

use std::sync::Arc;

use rusqlite::Connection;

use super::super::capture;
use super::super::change_log::Drained;
use super::super::orders::OrderFacts;
use super::super::{menu, records, Change, ChangeSet, Collection, Op, StoreError};
use super::Engine;

/// What [`Engine::prepare`] read inside the transaction: the change set, and what the
/// category names become once it is published.
pub(super) struct Prepared {
    pub(super) set: ChangeSet,
    /// Each category whose name changed, with the new one (`None`: the category is gone).
    pub(super) names: Vec<(i64, Option<String>)>,
}

impl Engine {
    /// Inside the open transaction: bump `seq`, read the changed rows back (and the items of
    /// a renamed category, whose records changed with it), rebuild the menu if needed.
    pub(super) fn prepare(
        &self,
        conn: &Connection,
        drained: &Drained,
    ) -> Result<Prepared, StoreError> {
        let changes = &drained.changes;
        let seq = capture::next_seq(conn, self.seq)?;
        // Kept as a floor for `seq` (see `capture::recover_seq`); readers look at the change
        // log to tell whether everything is published.
        conn.prepare_cached(
            "INSERT INTO kaffediem_meta (key, value) \
             SELECT 'published_version', value FROM kaffediem_meta WHERE key = 'collections_version' \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )?
        .execute([])?;
        let mut out = Vec::with_capacity(changes.len());
        let colors = match changes.iter().any(|c| c.0 == Collection::Order) {
            true => Some(records::label_colors(conn)?),
            false => None,
        };
        for &(collection, id, op) in changes {
            let record = match op {
                Op::Delete => None,
                _ => records::get_with(conn, collection, id, &self.ctx, colors.as_ref())?,
            };
            // A row logged as written but gone now is a delete (an `INSERT OR REPLACE`
            // replaced it away).
            let op = if record.is_none() { Op::Delete } else { op };
            out.push(Change {
                collection,
                id,
                op,
                record: record.map(Arc::new),
                before: match collection {
                    Collection::Order => drained.before.get(&id).and_then(OrderFacts::of_record),
                    _ => None,
                },
            });
        }
        let names = self.names.renamed(&out);
        if !names.is_empty() {
            capture::republish_items(conn, &self.ctx, &names, &mut out)?;
        }
        let menu = if changes.iter().any(|c| c.0.is_menu()) {
            Some(Arc::new(menu::build_published(conn, &self.ctx)?))
        } else {
            None
        };
        let set = ChangeSet {
            seq,
            changes: out,
            menu,
            new_day: None,
        };
        Ok(Prepared { set, names })
    }
}
