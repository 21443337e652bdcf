//! The checks themselves: what counts and what does not.
use super::capture_trigger;
use super::scan::{child_modules, Found, Scan, Scope};
use syn::visit::Visit;

fn scan(file: &str, module: &[&str], text: &str) -> Vec<Found> {
    let ast = syn::parse_file(text).expect("parse");
    let mut scan = Scan {
        file: file.into(),
        main: file == "src/main.rs",
        scopes: vec![Scope {
            module: module.iter().map(|s| s.to_string()).collect(),
            children: child_modules(&ast.items),
        }],
        in_test: 0,
        found: Vec::new(),
    };
    scan.visit_file(&ast);
    scan.found
}

fn paths(found: &[Found]) -> Vec<String> {
    found
        .iter()
        .map(|f| format!("{}@{}", f.path.join("::"), f.line))
        .collect()
}

#[test]
fn tidy_paths_resolve_and_prose_does_not_count() {
    let text = r#"
//! Uses `crate::http::App` in prose only.
use crate::{http::{self, forwarded::IpRange}, store};
use super::super::http::cors;
use http::HeaderMap;
/// See crate::http::auth.
fn f() {
let s = "crate::http::x and rusqlite::Connection";
let _ = crate::http::error(1);
tracing::warn!(error = %rusqlite::Error::InvalidQuery, "{}", s);
conn.query_row("SELECT 1", [], |r| r.get(0));
}
#[cfg(test)]
mod tests {
use rusqlite::Connection;
}
"#;
    let found = scan("src/ops/metrics.rs", &["ops", "metrics"], text);
    let got = paths(&found);
    for expected in [
        "crate::http@3",
        "crate::http::forwarded::IpRange@3",
        "crate::store@3",
        "crate::http::cors@4",
        "http::HeaderMap@5",
        "crate::http::error@9",
        "rusqlite::Error::InvalidQuery@10",
        ".::query_row@11",
    ] {
        assert!(got.contains(&expected.to_string()), "{expected} in {got:?}");
    }
    assert!(
        !got.iter().any(|p| p.contains("auth")
            || p.contains("App")
            || p.contains("@8")
            || p.contains("@15")),
        "prose, strings or test code counted: {got:?}"
    );
}

#[test]
fn tidy_child_modules_resolve_against_their_parent() {
    let found = scan(
        "src/lib.rs",
        &[],
        "pub mod http;\nfn f() { http::serve(); }\n",
    );
    assert_eq!(paths(&found), ["crate::http::serve@2"]);
    let found = scan("src/main.rs", &[], "use kaffediem::http::App;\n");
    assert_eq!(paths(&found), ["crate::http::App@1"]);
}

#[test]
fn tidy_capture_triggers_are_told_from_the_others() {
    let counted = "CREATE TRIGGER x AFTER INSERT ON category BEGIN\n    UPDATE kaffediem_meta SET value = value + 1 WHERE key = 'v';\nEND";
    assert_eq!(capture_trigger(counted, "category"), Some("INSERT"));
    let logged = "CREATE TRIGGER y AFTER DELETE ON \"order\" BEGIN INSERT INTO change_log (t, id) VALUES ('order', OLD.id); END";
    assert_eq!(capture_trigger(logged, "order"), Some("DELETE"));
    let touch = "CREATE TRIGGER category_touch AFTER UPDATE ON category\nWHEN NEW.updated_at IS OLD.updated_at BEGIN\n    UPDATE category SET updated_at = 1 WHERE id = NEW.id;\nEND";
    assert_eq!(
        capture_trigger(touch, "category"),
        None,
        "writes only its own table"
    );
    // Logged before the row changes, to a change log, named anyhow.
    let before = "CREATE TRIGGER \"order_update_captured\" BEFORE UPDATE ON \"order\" BEGIN\n    INSERT INTO kaffediem_changes (collection, row_id, op) VALUES ('order', OLD.id, CASE WHEN NEW.id IS OLD.id THEN 'update' ELSE 'delete' END);\nEND";
    assert_eq!(capture_trigger(before, "order"), Some("UPDATE"));
    let partial = "CREATE TRIGGER z AFTER UPDATE OF name ON category BEGIN UPDATE kaffediem_meta SET value = 1; END";
    assert_eq!(
        capture_trigger(partial, "category"),
        None,
        "misses other columns"
    );
}
