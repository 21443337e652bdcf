//! Writing the converted café into a Kaffediem database, in one transaction the caller
//! commits (or, for a dry run, a fresh in-memory database it throws away).

use rusqlite::{params, Connection, Transaction};

use super::model::Cafe;
use super::report::{Progress, Report};
use super::ImportError;

/// Collection tables whose rows make a database "have café data" (the status row every
/// database starts with does not count).
const CAFE_TABLES: [&str; 6] = [
    "category",
    "item",
    "customization_key",
    "customization_value",
    "message",
    "order",
];

/// What the target holds before the import.
#[derive(Debug, Default)]
pub struct Existing {
    /// Café tables with rows, and how many.
    pub cafe: Vec<(&'static str, i64)>,
    /// Accounts: id, email.
    pub users: Vec<(i64, String)>,
}

pub fn existing(conn: &Connection) -> Result<Existing, ImportError> {
    let mut found = Existing::default();
    for table in CAFE_TABLES {
        let n: i64 = conn
            .query_row(&format!("SELECT count(*) FROM \"{table}\""), [], |r| {
                r.get(0)
            })
            .map_err(ImportError::write)?;
        if n > 0 {
            found.cafe.push((table, n));
        }
    }
    let mut stmt = conn
        .prepare("SELECT id, email FROM user ORDER BY id")
        .map_err(ImportError::write)?;
    found.users = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .and_then(|rows| rows.collect())
        .map_err(ImportError::write)?;
    Ok(found)
}

/// Refuse, before anything is written, a target that already has a café (unless replacing),
/// or an account the import would have to overwrite.
pub fn refuse(existing: &Existing, cafe: &Cafe, replace: bool) -> Result<(), ImportError> {
    if replace {
        return Ok(());
    }
    if !existing.cafe.is_empty() {
        let what: Vec<String> = existing
            .cafe
            .iter()
            .map(|(t, n)| format!("{n} {t}"))
            .collect();
        return Err(ImportError::Refused(format!(
            "the target database already has café data ({}); nothing was written. Give --replace to replace it (and its accounts) with the old backend's",
            what.join(", ")
        )));
    }
    for (id, email) in &existing.users {
        if let Some(u) = cafe
            .users
            .iter()
            .find(|u| u.email.eq_ignore_ascii_case(email))
        {
            return Err(ImportError::Refused(format!(
                "the target database already has an account {email} (user {id}), and the old backend has one too (user {}); nothing was written. Give --replace to take the old backend's accounts instead",
                u.id
            )));
        }
    }
    Ok(())
}

/// Write `cafe` into `tx`. Accounts already in the target whose ids the import needs are
/// renumbered above every imported id (with their sessions), and said so.
pub fn write(
    tx: &Transaction<'_>,
    cafe: &Cafe,
    existing: &Existing,
    replace: bool,
    report: &mut Report,
    progress: &mut Progress,
) -> Result<(), ImportError> {
    let e = ImportError::write;
    if replace {
        tx.execute_batch(
            r#"DELETE FROM session; DELETE FROM image; DELETE FROM "order"; DELETE FROM item;
               DELETE FROM category; DELETE FROM customization_value;
               DELETE FROM customization_key; DELETE FROM status; DELETE FROM message;
               DELETE FROM user;"#,
        )
        .map_err(e)?;
    } else {
        renumber_users(tx, cafe, existing, report)?;
    }
    for u in &cafe.users {
        tx.execute(
            "INSERT INTO user (id, email, name, username, is_admin, password_hash, inserted_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![u.id, u.email, u.name, u.username, u.is_admin, u.password_hash,
                    u.stamps.inserted_at, u.stamps.updated_at],
        )
        .map_err(e)?;
    }
    for m in &cafe.messages {
        tx.execute(
            "INSERT INTO message (id, title, subtitle, inserted_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![m.id, m.title, m.subtitle, m.stamps.inserted_at, m.stamps.updated_at],
        )
        .map_err(e)?;
    }
    if !cafe.statuses.is_empty() {
        // The old café's status replaces the one every Kaffediem database starts with.
        tx.execute("DELETE FROM status", []).map_err(e)?;
    }
    for s in &cafe.statuses {
        tx.execute(
            "INSERT INTO status (id, open, show_message, message_id, inserted_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                s.id,
                s.open,
                s.show_message,
                s.message_id,
                s.stamps.inserted_at,
                s.stamps.updated_at
            ],
        )
        .map_err(e)?;
    }
    for c in &cafe.categories {
        tx.execute(
            "INSERT INTO category (id, name, sort_order, enable, valid_customizations, inserted_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![c.id, c.name, c.sort_order, c.enable, c.valid_customizations,
                    c.stamps.inserted_at, c.stamps.updated_at],
        )
        .map_err(e)?;
    }
    for k in &cafe.keys {
        tx.execute(
            "INSERT INTO customization_key (id, name, enable, label_color, default_value, multiple_choice, \
             sort_order, inserted_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![k.id, k.name, k.enable, k.label_color, k.default_value, k.multiple_choice,
                    k.sort_order, k.stamps.inserted_at, k.stamps.updated_at],
        )
        .map_err(e)?;
    }
    for v in &cafe.values {
        tx.execute(
            "INSERT INTO customization_value (id, name, price_increment_nok, constant_price, belongs_to, \
             enable, sort_order, inserted_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![v.id, v.name, v.price_increment_nok, v.constant_price, v.belongs_to, v.enable,
                    v.sort_order, v.stamps.inserted_at, v.stamps.updated_at],
        )
        .map_err(e)?;
    }
    for i in &cafe.items {
        tx.execute(
            "INSERT INTO item (id, name, price_nok, category_id, image, enable, sort_order, inserted_at, updated_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![i.id, i.name, i.price_nok, i.category_id, i.image, i.enable, i.sort_order,
                    i.stamps.inserted_at, i.stamps.updated_at],
        )
        .map_err(e)?;
        if let Some(img) = &i.upload {
            tx.execute(
                "INSERT INTO image (item_id, filename, content_type, bytes, etag) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![i.id, img.filename, img.content_type, img.bytes, img.etag],
            )
            .map_err(e)?;
        }
    }
    let mut insert = tx
        .prepare(
            r#"INSERT INTO "order" (id, uuid, customer_id, day_id, state, missing_information, items,
               total_nok, inserted_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"#,
        )
        .map_err(e)?;
    let total = cafe.orders.len();
    for (n, o) in cafe.orders.iter().enumerate() {
        insert
            .execute(params![
                o.id,
                o.uuid,
                o.customer_id,
                o.day_id,
                o.state,
                o.missing_information,
                o.items,
                o.total_nok,
                o.stamps.inserted_at,
                o.stamps.updated_at
            ])
            .map_err(e)?;
        progress.tick("writing orders", n + 1, total);
    }
    progress.done();
    Ok(())
}

/// Accounts of the target (a first admin the daemon made, say) whose id an imported account
/// has move to fresh ids, taking their sessions along: orders name their customer by the old
/// backend's ids, so those win.
fn renumber_users(
    tx: &Transaction<'_>,
    cafe: &Cafe,
    existing: &Existing,
    report: &mut Report,
) -> Result<(), ImportError> {
    let e = ImportError::write;
    let taken: std::collections::HashSet<i64> = cafe.users.iter().map(|u| u.id).collect();
    let sequence: i64 = tx
        .query_row(
            "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'user'), 0)",
            [],
            |r| r.get(0),
        )
        .map_err(e)?;
    let mut next = existing
        .users
        .iter()
        .map(|(id, _)| *id)
        .chain(taken.iter().copied())
        .chain([sequence])
        .max()
        .unwrap_or(0);
    // Sessions point at the old id until they are moved too; checked at commit.
    tx.pragma_update(None, "defer_foreign_keys", true)
        .map_err(e)?;
    for (id, email) in existing.users.iter().filter(|(id, _)| taken.contains(id)) {
        next += 1;
        tx.execute("UPDATE user SET id = ?2 WHERE id = ?1", params![id, next])
            .map_err(e)?;
        tx.execute(
            "UPDATE session SET user_id = ?2 WHERE user_id = ?1",
            params![id, next],
        )
        .map_err(e)?;
        report.notes.push(format!(
            "the target's account {email} is now user {next} (was {id}: the old backend's user {id} keeps its id)"
        ));
    }
    Ok(())
}
