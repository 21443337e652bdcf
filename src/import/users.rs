//! Accounts of the old backend: bcrypt hashes kept (checked at login, re-hashed with Argon2id
//! on the first one), the built-in admin with the published password locked.

use std::collections::HashMap;
use std::str::FromStr;

use rusqlite::Connection;

use super::model::{Cafe, Stamps, User};
use super::report::Report;
use super::{source, ImportError};

/// The admin a migration of the old backend created in every database.
pub const BUILT_IN_ADMIN: &str = "kaffediem@asvg.codes";
/// Its password, published in the old backend's source.
const BUILT_IN_PASSWORD: &str = "kaffediem";

/// What a locked account holds instead of a hash: no password matches it (it is neither a
/// PHC string nor bcrypt), and `kaffediem user passwd` replaces it.
pub fn locked(why: &str) -> String {
    format!("!locked: {why}")
}

/// bcrypt costs an old hash may have. Above this, one login would hold a Pi's core for
/// minutes: such a hash is not from the old backend (it used 12).
const MAX_COST: u32 = 16;

pub fn read(
    conn: &Connection,
    now: &str,
    cafe: &mut Cafe,
    report: &mut Report,
) -> Result<(), ImportError> {
    let mut emails: HashMap<String, i64> = HashMap::new();
    source::each_row(conn, "users", |row| {
        report.read("users");
        let Some(id) = row.int("id") else {
            report.skipped("users", "?", "no readable id");
            return Ok(());
        };
        let email = row.text("email").unwrap_or_default().trim().to_owned();
        if email.is_empty() || !email.contains('@') {
            report.skipped("users", id, &format!("no email address ({email:?})"));
            return Ok(());
        }
        let folded = email.to_lowercase();
        if let Some(first) = emails.get(&folded) {
            cafe.merged_users.insert(id, *first);
            report.skipped(
                "users",
                id,
                &format!("duplicate email {email} (user {first} has it; emails compare case-insensitively)"),
            );
            return Ok(());
        }
        emails.insert(folded, id);
        let mut why = Vec::new();
        let stamps = Stamps::of(&row, now, &mut why);
        let is_admin = row.flag("is_admin", false);
        let stored = row.text("hashed_password").unwrap_or_default();
        let password_hash = match bcrypt::HashParts::from_str(stored.trim()) {
            Ok(parts) if parts.get_cost() <= MAX_COST => {
                let built_in = email.eq_ignore_ascii_case(BUILT_IN_ADMIN);
                // Only admins are worth the check (a bcrypt check is slow on purpose).
                if (built_in || is_admin)
                    && bcrypt::verify(BUILT_IN_PASSWORD, stored.trim()).unwrap_or(false)
                {
                    why.push("its password is the published `kaffediem`: locked".into());
                    report.loud.push(format!(
                        "{email} (user {id}, admin) had the old backend's public password `kaffediem`."
                    ));
                    report.loud.push(format!(
                        "It is imported LOCKED. To use it, set a new password: kaffediem user passwd --email {email}"
                    ));
                    locked("the published default password")
                } else {
                    stored.trim().to_owned()
                }
            }
            Ok(parts) => {
                why.push(format!(
                    "bcrypt cost {} is beyond {MAX_COST}: locked (kaffediem user passwd --email {email})",
                    parts.get_cost()
                ));
                locked("bcrypt cost too high")
            }
            Err(_) if stored.trim().is_empty() => {
                why.push(format!(
                    "no password in the old file: locked (kaffediem user passwd --email {email})"
                ));
                locked("no password")
            }
            Err(_) => {
                why.push(format!(
                    "password hash is not bcrypt: locked (kaffediem user passwd --email {email})"
                ));
                locked("unreadable hash")
            }
        };
        cafe.users.push(User {
            id,
            email,
            name: row.text("name").unwrap_or_default(),
            username: row.text("username").filter(|u| !u.trim().is_empty()),
            is_admin,
            password_hash,
            stamps,
        });
        report.kept("users", id, why);
        Ok(())
    })
}
