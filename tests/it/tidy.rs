//! The boundaries `ARCHITECTURE.md` promises, checked on the source tree, in the spirit of
//! rust-analyzer's tidy tests: each rule below fails naming `file:line` and what crossed.
//!
//! The library's files under `src/` are read as Rust (`syn`): `use` trees (groups expanded),
//! paths in code, and paths inside macro invocations (`format!`, `params!`, `tracing::warn!`).
//! Comments, doc comments and string literals are never looked at, so prose that names a
//! module does not count. Paths are resolved the way the compiler would for these rules:
//! `crate::`, `self::` and `super::` against the file's module (inline `mod` blocks included),
//! a first segment that is a child module of the current one as that module, anything else
//! as an external crate (`http::HeaderMap` in `ops` is the `http` crate, not `crate::http`).
//! In `main.rs` (its own crate), `kaffediem::` is the library. Items under `#[cfg(test)]`
//! are test code and exempt: the rules are about what the daemon runs. `src/bin/` holds other
//! crates (the bench), with rules of their own.
//!
//! The rules:
//!
//! - **SQL stays in the store.** `rusqlite` is named only in `src/store/**`, `src/ops/backup*`
//!   and `src/ops/check*` (they work on a file with SQLite's own backup API and integrity
//!   checks) and `src/import/**` (the importer reads the old backend's file). Elsewhere, not
//!   even through a connection the store hands out: calling rusqlite's SQL-running methods
//!   (`execute`, `execute_batch`, `prepare`, `prepare_cached`, `query_row`, `query_map`,
//!   `query_and_then`, `pragma_update`, `pragma_query_value`) counts too.
//! - **Nothing below `http` names it.** `crate::http` is named only by `src/http/**` and what
//!   sits above it in `ARCHITECTURE.md`'s codemap: `src/server.rs` (wiring for `serve`),
//!   `src/main.rs` (the CLI) and `src/lib.rs` (the module list). `store`, `channels`,
//!   `phoenix`, `ops`, `accounts`, `config` and `clock` are below it: what they share with
//!   `http` lives in them, or below both.
//! - **`phoenix` knows nothing of the café.** `src/phoenix/**` names nothing of this crate
//!   outside `crate::phoenix`: it is a generic Phoenix Channels library, and an application
//!   plugs in through `SocketHandler` and `Channel`.
//! - **Every collection is captured.** In a database the daemon itself created, every
//!   collection table (`store::Collection::ALL`) has a trigger (`BEFORE` or `AFTER`) for each
//!   of INSERT, UPDATE (of any column: no `UPDATE OF`) and DELETE that writes a table other
//!   than the collection itself (a counter, a change log) — whatever the triggers are named.
//!   Without them another process's writes (the `sqlite3` shell) to that table are never
//!   published and no other test notices.

use std::collections::HashSet;

use kaffediem::store::Collection;

use crate::support::Daemon;
use scan::{everything, Found};

mod checks;
mod scan;

/// Where rusqlite may be named (paths relative to the repository, `/`-separated prefixes).
const SQLITE_ALLOWED: [&str; 4] = [
    "src/store/",
    "src/ops/backup",
    "src/ops/check",
    "src/import/",
];

/// The files that may name `crate::http`: the room itself and what is above it.
fn above_or_in_http(file: &str) -> bool {
    file.starts_with("src/http/") || ["src/server.rs", "src/main.rs", "src/lib.rs"].contains(&file)
}

fn report(rule: &str, offences: &[Found]) {
    let list: Vec<String> = offences.iter().map(Found::to_string).collect();
    assert!(
        list.is_empty(),
        "{rule}: {} place(s):\n  {}",
        list.len(),
        list.join("\n  ")
    );
}

fn starts_with(path: &[String], prefix: &[&str]) -> bool {
    path.len() >= prefix.len() && path.iter().zip(prefix).all(|(a, b)| a == b)
}

#[test]
fn tidy_sqlite_is_used_only_in_the_store() {
    let offences: Vec<Found> = everything()
        .into_iter()
        .filter(|f| !SQLITE_ALLOWED.iter().any(|p| f.file.starts_with(p)))
        .filter(|f| starts_with(&f.path, &["rusqlite"]) || starts_with(&f.path, &["."]))
        .collect();
    report(
        "rusqlite named, or SQL run, outside src/store, src/ops/backup*, src/ops/check*, src/import",
        &offences,
    );
}

#[test]
fn tidy_nothing_below_http_names_it() {
    let offences: Vec<Found> = everything()
        .into_iter()
        .filter(|f| !above_or_in_http(&f.file))
        .filter(|f| starts_with(&f.path, &["crate", "http"]))
        .collect();
    report(
        "crate::http named below it (only src/http, server.rs, main.rs, lib.rs may)",
        &offences,
    );
}

#[test]
fn tidy_phoenix_knows_nothing_of_the_cafe() {
    let offences: Vec<Found> = everything()
        .into_iter()
        .filter(|f| f.file.starts_with("src/phoenix/"))
        .filter(|f| {
            starts_with(&f.path, &["crate"]) && !starts_with(&f.path, &["crate", "phoenix"])
        })
        .collect();
    report(
        "src/phoenix names the café (anything of this crate outside crate::phoenix)",
        &offences,
    );
}

/// The change event a row trigger's SQL fires on (`BEFORE` or `AFTER` it), and whether it writes a table other
/// than `table` (`UPDATE t`, `INSERT ... INTO t`, `REPLACE INTO t`, `DELETE FROM t`).
fn capture_trigger(sql: &str, table: &str) -> Option<&'static str> {
    // Words, lowercased, quotes dropped; `--` comments cut.
    let text: String = sql
        .lines()
        .map(|l| l.split("--").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
        .replace(['"', '`', '[', ']'], " ")
        .replace(';', " ; ");
    let words: Vec<&str> = text.split_whitespace().collect();
    let on = words.iter().position(|w| *w == "on")?;
    let head = &words[..on];
    // (`INSTEAD OF` triggers are on views, never on a collection's table.)
    if !head.contains(&"after") && !head.contains(&"before") {
        return None;
    }
    let event = match () {
        _ if head.contains(&"insert") => "INSERT",
        _ if head.contains(&"delete") => "DELETE",
        // `UPDATE OF col` misses changes to the other columns.
        _ if head.contains(&"update") && !head.contains(&"of") => "UPDATE",
        _ => return None,
    };
    let begin = words.iter().position(|w| *w == "begin")?;
    let body = &words[begin..];
    let written = body.iter().enumerate().filter_map(|(k, word)| match *word {
        // `UPDATE [OR IGNORE] t`
        "update" if body.get(k + 1) == Some(&"or") => body.get(k + 3),
        "update" => body.get(k + 1),
        // `INSERT [OR ...] INTO t`, `REPLACE INTO t`
        "into" => body.get(k + 1),
        "delete" if body.get(k + 1) == Some(&"from") => body.get(k + 2),
        _ => None,
    });
    let writes_elsewhere = written
        .map(|t| t.trim_start_matches("main."))
        .any(|t| t != table);
    writes_elsewhere.then_some(event)
}

#[tokio::test]
async fn tidy_every_collection_table_has_change_capture_triggers() {
    // A fresh database, created by the daemon's own start-up.
    let daemon = Daemon::start(false, |_| {}).await;
    let shell = daemon.shell();
    let mut statement = shell
        .prepare("SELECT tbl_name, sql FROM sqlite_master WHERE type = 'trigger'")
        .expect("prepare");
    let triggers: Vec<(String, String)> = statement
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    let mut missing = Vec::new();
    for collection in Collection::ALL {
        let table = collection.name();
        let covered: HashSet<&str> = triggers
            .iter()
            .filter(|(on, _)| on == table)
            .filter_map(|(_, sql)| capture_trigger(sql, table))
            .collect();
        for event in ["INSERT", "UPDATE", "DELETE"] {
            if !covered.contains(event) {
                missing.push(format!("{table}: {event}"));
            }
        }
    }
    drop(statement);
    drop(shell);
    daemon.stop().await;
    assert!(
        missing.is_empty(),
        "collection tables without a change-capture trigger (writes of the sqlite3 shell to \
         them would never be published): {missing:?}"
    );
}
